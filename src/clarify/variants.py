"""The variant grid (DESIGN section 7): named overrides of the Phase B / Phase C recipe.

``variants:`` in the config is a list of ``{name, until?, drafts?, corpus?, pairs?, phase_b?,
phase_c?}``. Each variant is one more scored model. Its settings are the main config with its
overrides merged in (dicts key by key, everything else replaced), validated against the same
schema as the main config, so a typo in a variant is a one-line error before any job.

What a variant trains follows from what it overrides, so nothing is trained twice:

* ``corpus`` or ``phase_b`` overridden: its own Phase B (from the main Phase A, as Phase B does),
  under ``models/variants/{name}/phase_b``; else the main Phase B serves it.
* ``until: phase_c`` (the default when ``pairs`` or ``phase_c`` is overridden): its own pairs and
  Phase C from its Phase B, under ``models/variants/{name}/phase_c``; that is the scored model.
* ``until: phase_b`` (the default otherwise): its Phase B is the scored model.
* ``drafts`` overridden: its own student drafts (the base student with its draft settings), used
  for its draft-mode scores, its ablations and, with ``pairs.source: teacher_vs_draft``, its pairs.
  The teacher harvest and the corpora stay the main ones (the gold teacher does not read drafts;
  an API teacher does, and a variant does not pay for a second harvest).

A variant whose scored model and settings would equal a main model's is refused: it would only
repeat a row of the report.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from .errors import InputError

SECTIONS = ("drafts", "corpus", "pairs", "phase_b", "phase_c")
PHASE_B_SECTIONS = ("corpus", "phase_b")
PHASE_C_SECTIONS = ("pairs", "phase_c")
STAGES = ("phase_b", "phase_c")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
#: model names the main DAG already scores (a variant may not shadow one)
RESERVED = ("base", "phaseA", "phaseB", "phaseC")

MAIN_PHASE_B = "models/cot_phaseB"
MAIN_PAIRS = "data/pairs.jsonl"
MAIN_DRAFTS = "data/student_drafts.jsonl"


def merge(base: dict, override: dict) -> dict:
    """``base`` with ``override`` merged in: dicts key by key, lists and scalars replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass(frozen=True)
class Variant:
    """One named recipe of the grid and the artifacts it owns."""

    name: str
    until: str
    overrides: dict
    config: dict = field(repr=False)  # the whole merged and validated config

    @property
    def own_phase_b(self) -> bool:
        return any(section in self.overrides for section in PHASE_B_SECTIONS)

    @property
    def own_drafts(self) -> bool:
        return "drafts" in self.overrides

    @property
    def own_phase_c(self) -> bool:
        return self.until == "phase_c"

    @property
    def root(self) -> str:
        return f"models/variants/{self.name}"

    @property
    def phase_b_adapter(self) -> str:
        return f"{self.root}/phase_b" if self.own_phase_b else MAIN_PHASE_B

    @property
    def phase_c_adapter(self) -> str:
        return f"{self.root}/phase_c"

    @property
    def adapter(self) -> str:
        """The adapter this variant is scored as."""
        return self.phase_c_adapter if self.own_phase_c else self.phase_b_adapter

    @property
    def drafts_file(self) -> str:
        return f"data/variants/{self.name}/student_drafts.jsonl" if self.own_drafts else MAIN_DRAFTS

    @property
    def own_pairs(self) -> bool:
        """Pairs of its own: they come from its own Phase B, pair settings or drafts."""
        return self.own_phase_c and (self.own_phase_b or "pairs" in self.overrides or self.own_drafts)

    @property
    def pairs_file(self) -> str:
        return f"data/variants/{self.name}/pairs.jsonl" if self.own_pairs else MAIN_PAIRS

    def section(self, name: str) -> dict:
        return self.config[name]


def resolve_variants(config: dict, validate=None) -> dict[str, Variant]:
    """The variants of ``config`` by name, each merged and (with ``validate``) checked.

    ``validate(merged_config)`` checks one merged config and raises :class:`InputError`; its
    message is prefixed with the variant's key so the user sees which entry is wrong.
    """
    entries = config.get("variants") or []
    variants: dict[str, Variant] = {}
    for index, entry in enumerate(entries):
        where = f"variants[{index}]"
        if not isinstance(entry, dict):
            raise InputError(f"config key {where}: must be a mapping with a 'name', got {entry!r}")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise InputError(f"config key {where}.name: {name!r} must be lower-case letters, digits and '_' "
                             "(starting with a letter, at most 40)")
        if name in RESERVED:
            raise InputError(f"config key {where}.name: {name!r} is a main model's name ({', '.join(RESERVED)})")
        if name in variants:
            raise InputError(f"config key {where}.name: {name!r} names two variants")
        unknown = sorted(set(entry) - {"name", "until", *SECTIONS})
        if unknown:
            raise InputError(f"config key {where}.{unknown[0]}: unknown key (allowed: name, until, "
                             f"{', '.join(SECTIONS)})")
        overrides = {section: entry[section] for section in SECTIONS if section in entry}
        for section, value in overrides.items():
            if not isinstance(value, dict) or not value:
                raise InputError(f"config key {where}.{section}: must be a non-empty mapping of overrides")
        until = entry.get("until") or ("phase_c" if any(s in overrides for s in PHASE_C_SECTIONS) else "phase_b")
        if until not in STAGES:
            raise InputError(f"config key {where}.until: {until!r} is not one of {list(STAGES)}")
        if until == "phase_b" and any(s in overrides for s in PHASE_C_SECTIONS):
            raise InputError(f"config key {where}.until: phase_b, but the variant overrides "
                             f"{', '.join(s for s in PHASE_C_SECTIONS if s in overrides)} (used only by Phase C)")
        if not overrides:
            raise InputError(f"config key {where}: variant {name!r} overrides nothing "
                             f"(give at least one of {', '.join(SECTIONS)})")
        if until == "phase_b" and not any(s in overrides for s in PHASE_B_SECTIONS) and "drafts" not in overrides:
            raise InputError(f"config key {where}: variant {name!r} would be the main Phase B model")
        merged = merge({key: value for key, value in config.items() if key != "variants"}, overrides)
        if validate is not None:
            try:
                validate(merged)
            except InputError as exc:
                message = str(exc).removeprefix("config key ")
                raise InputError(f"config key {where}: {message}") from None
        variants[name] = Variant(name=name, until=until, overrides=overrides, config=merged)
    return variants
