"""Split the normalised records and sample from them: seeded, label-stratified, leak-free.

Splits are disjoint by qid and by normalised question text (exact duplicates never straddle
splits); every sample is label-balanced. The test split is only ever scored.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
from collections import Counter

from clarify.data import normalise_question
from clarify.errors import InputError

log = logging.getLogger(__name__)


def _check_fraction(value, key: str) -> float:
    """A split fraction must be a number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise InputError(f"{key}: must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def _by_label(records: list[dict]) -> dict[bool, list[dict]]:
    """Records grouped by answer (True first), each list sorted by qid."""
    ordered = sorted(records, key=lambda record: record["qid"])
    return {label: [r for r in ordered if r["answer"] is label] for label in (True, False)}


def _stratified_subset(records: list[dict], size: int, rng: random.Random) -> list[dict]:
    """A seeded subset of ``size`` records keeping the label proportions (rounded)."""
    labels = _by_label(records)
    n_yes = min(round(size * len(labels[True]) / len(records)), len(labels[True]))
    n_no = size - n_yes
    subset = []
    for label, count in ((True, n_yes), (False, n_no)):
        pool = list(labels[label])
        rng.shuffle(pool)
        subset.extend(pool[:count])
    return subset


def _question_groups(records: list[dict]) -> list[list[dict]]:
    """Records grouped by normalised question; groups and members sorted by qid."""
    groups: dict[str, list[dict]] = {}
    for record in sorted(records, key=lambda r: r["qid"]):
        groups.setdefault(normalise_question(record["question"]), []).append(record)
    return sorted(groups.values(), key=lambda group: group[0]["qid"])


def _group_label(group: list[dict]) -> bool:
    """A group's stratum: its most common answer (ties go to its first record by qid)."""
    return Counter(record["answer"] for record in group).most_common(1)[0][0]


def _take(groups: list[list[dict]], target: int) -> tuple[list[list[dict]], list[list[dict]]]:
    """Walk ``groups`` in order, taking each that fits under ``target`` records in total."""
    taken, rest, count = [], [], 0
    for group in groups:
        if count + len(group) <= target:
            taken.append(group)
            count += len(group)
        else:
            rest.append(group)
    return taken, rest


def _flatten(groups: list[list[dict]]) -> list[dict]:
    """The records of ``groups``, in order."""
    return [record for group in groups for record in group]


def split_records(
    records: list[dict],
    test_fraction: float = 0.3,
    dev_fraction: float = 0.1,
    seed: int = 0,
    max_questions: int | None = None,
) -> dict[str, list[dict]]:
    """Split records into ``{"train", "dev", "test"}``, label-stratified and seeded.

    With an int ``max_questions`` below ``len(records)`` a seeded label-stratified subset
    of that size is drawn first. Records sharing a normalised question form one group that
    lands in one split. Per label (True, then False; a mixed group counts under its most
    common answer) the groups, sorted by qid, are shuffled with ``random.Random(seed)``;
    groups go to test while they fit under ``round(test_fraction * n_label)`` records, then
    from the remainder to dev under ``round(dev_fraction * n_remaining_label)``; the rest
    is train. Each split is sorted by qid. Qids are expected to be unique (as
    :func:`load_records` guarantees).
    """
    test_fraction = _check_fraction(test_fraction, "data.test_fraction")
    dev_fraction = _check_fraction(dev_fraction, "data.dev_fraction")
    if len({record["qid"] for record in records}) != len(records):
        raise ValueError("split_records needs unique qids; load records with load_records")
    rng = random.Random(seed)
    if max_questions is not None:
        if isinstance(max_questions, bool) or not isinstance(max_questions, int) or (
            max_questions < 1
        ):
            raise InputError(
                f"data.max_questions: must be a positive integer or null, got {max_questions!r}"
            )
        if max_questions < len(records):
            records = _stratified_subset(records, max_questions, rng)

    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    groups = _question_groups(records)
    for label in (True, False):
        stratum = [group for group in groups if _group_label(group) is label]
        rng.shuffle(stratum)
        n_label = sum(len(group) for group in stratum)
        test, rest = _take(stratum, round(test_fraction * n_label))
        dev, train = _take(rest, round(dev_fraction * sum(len(group) for group in rest)))
        for name, chosen in (("test", test), ("dev", dev), ("train", train)):
            splits[name].extend(_flatten(chosen))

    if not splits["test"]:
        raise InputError(
            f"data.test_fraction: {test_fraction} of {len(records)} records leaves the test "
            "split empty"
        )
    if not splits["train"]:
        raise InputError(
            f"data.dev_fraction: data.test_fraction={test_fraction} and "
            f"data.dev_fraction={dev_fraction} leave no training records out of {len(records)}"
        )
    return {name: sorted(split, key=lambda r: r["qid"]) for name, split in splits.items()}


def sample_balanced(records: list[dict], n, seed: int = 0) -> list[dict]:
    """Draw ``n`` label-balanced records (or ``"all"`` of them), sorted by qid.

    An int ``n`` takes ``ceil(n/2)`` records from the label with more records (True on a
    tie) and ``floor(n/2)`` from the other. Each label's records, sorted by qid, are
    shuffled with ``random.Random(seed)`` and a prefix is taken, so for one seed a smaller
    sample is a subset of a larger one. Too few records of a label, or ``n <= 0``, raises
    an :class:`InputError` naming ``data.train_samples``.
    """
    if n == "all":
        return sorted(records, key=lambda r: r["qid"])
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise InputError(f"data.train_samples: must be a positive integer or 'all', got {n!r}")
    labels = _by_label(records)
    major = len(labels[True]) >= len(labels[False])
    wanted = {major: math.ceil(n / 2), (not major): n // 2}
    if any(len(labels[label]) < wanted[label] for label in (True, False)):
        raise InputError(
            f"data.train_samples: {n} needs {wanted[True]} yes and {wanted[False]} no "
            f"records, but only {len(labels[True])} yes and {len(labels[False])} no are available"
        )
    rng = random.Random(seed)
    sample = []
    for label in (True, False):
        pool = list(labels[label])
        rng.shuffle(pool)
        sample.extend(pool[: wanted[label]])
    return sorted(sample, key=lambda r: r["qid"])


def class_mix(records: list[dict]) -> dict:
    """Counts of yes/no answers: ``{"n", "yes", "no", "yes_frac"}`` (0.0 when empty)."""
    yes = sum(1 for record in records if record["answer"])
    return {
        "n": len(records),
        "yes": yes,
        "no": len(records) - yes,
        "yes_frac": yes / len(records) if records else 0.0,
    }


def file_sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def first_questions(path: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """A split file's questions in qid order, the first ``limit`` of them (None = all): the
    questions every eval job (and the per-epoch dev check) scores."""
    from .io import read_jsonl

    records = sorted(read_jsonl(path), key=lambda r: r["qid"])
    return records[:limit] if limit else records
