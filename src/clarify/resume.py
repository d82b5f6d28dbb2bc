"""Resumable state belongs to the settings that made it (DESIGN section 8).

A rule that checkpoints (SFT epochs, DPO epochs) keeps its state in a work directory that
carries a fingerprint: a hash of the rule's params and of its inputs' contents. On the next
run :func:`open_work_dir` compares fingerprints; a mismatch (other settings, other inputs, or
state from before fingerprints existed) empties the directory, with one log line saying why,
so an adapter trained under old settings is never resumed as the new one.
:func:`last_complete_checkpoint` skips a checkpoint that a kill during its save left
half-written.

Inputs are hashed by content (sha256), not by size and mtime: Snakemake's ``--touch``, a copy
or a checkout changes mtimes without changing what training would see, and a rerun that
throws away hours of training for that is worse than reading the inputs once (corpora and
LoRA adapters are megabytes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

from .io import write_text

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def content_digest(path: str | Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, in sorted order)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: input to fingerprint does not exist")
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else "").encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def fingerprint(params: dict, inputs: list[str | Path] = ()) -> str:
    """One hash of the params (as canonical JSON) and the inputs' contents (in the given order)."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for path in inputs:
        digest.update(content_digest(path).encode())
    return digest.hexdigest()[:16]


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ between two nested dicts."""
    changed = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


def open_work_dir(work_dir: str | Path, fingerprint: str, params: dict | None = None) -> Path:
    """The work directory, emptied first unless it was made under ``fingerprint``.

    ``params`` (optional, stored beside the fingerprint) lets the log line name the settings
    that changed. Returns the directory, which exists afterwards.
    """
    work_dir = Path(work_dir)
    marker = work_dir / FINGERPRINT_FILE
    stored = json.loads(marker.read_text()) if marker.is_file() else None
    if stored is not None and stored.get("fingerprint") == fingerprint:
        return work_dir
    if work_dir.is_dir() and any(work_dir.iterdir()):
        if stored is None:
            why = "it carries no settings fingerprint"
        else:
            keys = changed_keys(stored.get("params") or {}, params or {}) if params is not None else []
            why = (f"its settings differ ({', '.join(keys)})" if keys
                   else f"its settings or inputs differ (fingerprint {stored.get('fingerprint')} -> {fingerprint})")
        log.warning("%s: starting fresh, the saved state was made by another run: %s", work_dir, why)
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    write_text(marker, json.dumps({"fingerprint": fingerprint, "params": params}, indent=2, default=str))
    return work_dir


def last_complete_checkpoint(work_dir: str | Path, required_files: list[str | tuple[str, ...]]) -> Path | None:
    """The newest ``checkpoint-N`` holding every required file; newer incomplete ones are removed.

    An entry of ``required_files`` may be a tuple of alternatives (e.g. safetensors or bin
    weights). A checkpoint missing one (what a kill during its save leaves) cannot be resumed;
    it is deleted, with a log line, so the trainer's own checkpoint rotation never sees it.
    """
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return None
    checkpoints = sorted((p for p in work_dir.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)),
                         key=lambda p: int(_CHECKPOINT.match(p.name).group(1)), reverse=True)
    for checkpoint in checkpoints:
        missing = [names for names in required_files
                   if not any((checkpoint / name).is_file() for name in ((names,) if isinstance(names, str) else names))]
        if not missing:
            return checkpoint
        shown = ", ".join(n if isinstance(n, str) else " or ".join(n) for n in missing)
        log.warning("%s: incomplete (no %s), skipped and removed", checkpoint, shown)
        shutil.rmtree(checkpoint)
    return None


def restore_callback_states(trainer, checkpoint: str | Path) -> list[str]:
    """Set the attributes of ``trainer``'s ``ExportableState`` callbacks to those saved in ``checkpoint``.

    The Trainer saves them in ``trainer_state.json`` (``stateful_callbacks``) with every
    checkpoint. Its own restore (``restore_callback_states_from_checkpoint``) builds new callback
    objects from saved constructor arguments, which callbacks holding a tokenizer or data cannot
    give; here the existing objects are kept and only their saved attributes are set. Returns
    the names of the callbacks restored.
    """
    from transformers.trainer_callback import ExportableState

    stored = json.loads((Path(checkpoint) / "trainer_state.json").read_text()).get("stateful_callbacks") or {}
    restored = []
    for name, saved in stored.items():
        saved = saved if isinstance(saved, list) else [saved]
        callbacks = [cb for cb in trainer.callback_handler.callbacks
                     if isinstance(cb, ExportableState) and type(cb).__name__ == name]
        for callback, state in zip(callbacks, saved):
            for attribute, value in state.get("attributes", {}).items():
                setattr(callback, attribute, value)
            restored.append(name)
    return restored
