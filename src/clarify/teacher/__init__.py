"""The teacher: turns teacher prompts into parsed completions, through a persistent cache.

Backends share one interface (:meth:`Teacher.complete_many`) and are chosen by
``teacher.backend`` / ``judge.backend`` from :data:`BACKENDS` (DESIGN section 4):

* ``gold``: StrategyQA's own decompositions and facts, offline (:mod:`.gold`);
* ``openai``: any OpenAI-compatible API (:mod:`.openai`);
* ``hf``: a local transformers model, loaded like the student (:mod:`.hf`).

The shared core (:mod:`.core`: cache, de-duplication, canonical completions) and the spend
ledger and caps (:mod:`.spend`) serve them all. Adding a backend is one module with a
:class:`Teacher` subclass plus one line in :data:`BACKENDS` (the schema test then asks for its
name in the schema's enum). Everything here imports without torch or the openai client.
"""

from __future__ import annotations

import os

from ..errors import InputError
from .core import Completion, Request, Teacher, TeacherRequestsFailed
from .gold import GoldTeacher, gold_response
from .hf import HFTeacher
from .openai import OpenAITeacher, env_setting
from .spend import SpendCapReached, SpendTracker

#: Every backend by its config name; make_teacher, the judge, the schema test and the rules'
#: resource decisions read this.
BACKENDS: dict[str, type[Teacher]] = {
    "gold": GoldTeacher,
    "openai": OpenAITeacher,
    "hf": HFTeacher,
}

__all__ = ["BACKENDS", "Completion", "Request", "SpendCapReached", "SpendTracker", "Teacher",
           "TeacherRequestsFailed", "backend_class", "backend_needs_api_key", "backend_needs_gpu",
           "env_setting", "gold_response", "judge_backends", "make_teacher"]


def backend_class(name: str, role: str = "teacher") -> type[Teacher]:
    """The class registered as ``name``; an unknown name is a one-line InputError."""
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise InputError(f"{role}.backend: {name!r} is not one of {', '.join(BACKENDS)}") from None


def backend_needs_gpu(name: str) -> bool:
    """Whether a rule that runs backend ``name`` needs a GPU (False for an unknown or "none")."""
    return bool(getattr(BACKENDS.get(name), "needs_gpu", False))


def backend_needs_api_key(name: str) -> bool:
    """Whether backend ``name`` reads OPENAI_API_KEY (False for an unknown or "none")."""
    return bool(getattr(BACKENDS.get(name), "needs_api_key", False))


def judge_backends() -> list[str]:
    """The backends that can judge, in registry order."""
    return [name for name, cls in BACKENDS.items() if cls.can_judge]


def make_teacher(settings: dict, cache_path: str | os.PathLike | None = None,
                 role: str = "teacher", **options) -> Teacher:
    """The client for ``settings`` (the config's ``teacher`` section, defaults filled).

    ``cache_path`` defaults to ``settings["cache"]``; pass ``False`` for no persistent cache
    (tests). The gold teacher never caches (it is instant and deterministic). ``role`` names
    the client in messages, logs and the spend ledger (``"judge"`` for :mod:`clarify.judge`);
    ``options`` go to the backend (``reask_invalid``).
    """
    cls = backend_class(settings.get("backend", "gold"), role)
    if cache_path is False:
        cache_path = ""
    return cls(settings, cache_path, role, **options)
