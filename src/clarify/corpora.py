"""Training corpora (Track A, Track B) and Phase C preference pairs, label-balanced.

Every prompt and completion comes from :mod:`clarify.prompts`, and every row is checked
against the evaluator's own shape: ``prompt + completion == answer_prompt(Q, context) +
answer_completion(answer)`` for the context the evaluator shows (none for Track A, the
reasoning block for Track B, the draft then the reasoning block for pairs). So training and
evaluation inputs cannot drift apart (the seed's format mismatch, DESIGN section 6.3).

Every corpus is balanced by gold label by construction (:func:`balance`), because the seed's
filtered Track B corpus was 71.5% "No" and its model learned to say "No" (section 6.1).

Preference pairs are balanced too (by gold = the chosen answer). The rejected completion
always ends in the opposite answer, so every pair also pushes the answer slot towards the
chosen answer; with 70% "No" pairs the DPO margin would teach a "No" prior the same way the
seed's SFT corpus did. Balancing makes the chosen answers 50/50, so that push cancels out
across the corpus and what is left to learn is the reasoning that leads to the right answer.

Two pair sources (``pairs.source``): ``teacher_vs_draft`` (:func:`build_pairs`, the seed's:
the teacher's text against the student's draft, separable by style alone) and ``own_samples``
(:func:`clarify.own_corpora.pairs_from_own_samples`: a correct own reasoning against a wrong own reasoning, both in
the text the ``cot`` eval mode scores). Self-training (:func:`clarify.own_corpora.self_training_corpus`) keeps a
correct own reasoning per question, with a configured fallback for the rest; multi-task Phase B
(:func:`mix_answer_only`) trains on the Track B and Track A corpora together.

Rows::

    corpus: {"qid", "prompt", "completion", "answer": bool, "source": str}
    pairs:  {"qid", "prompt", "chosen", "rejected", "gold": bool,
             "rejected_from": "student_draft" | "flipped_answer", "teacher_status": str}
    own pairs: {"qid", "prompt", "chosen", "rejected", "gold": bool, "rejected_from": "own_sample",
                "source": "own_samples", "chosen_sample", "rejected_sample": int,
                "chosen_margin", "rejected_margin": float}
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Callable

from clarify.errors import InputError
from clarify.harvest import KEPT_STATUSES
from clarify.prompts import (
    answer_completion,
    answer_prompt,
    draft_context,
    reasoning_completion,
    reasoning_context,
    reasoning_prompt,
)

log = logging.getLogger(__name__)

BALANCE_MODES = ("upsample", "downsample", "none")


# --- balancing ---------------------------------------------------------------------------------

def _mix(rows: list[dict], label: Callable[[dict], bool]) -> dict:
    yes = sum(1 for row in rows if label(row))
    return {"n": len(rows), "yes": yes, "no": len(rows) - yes,
            "yes_frac": round(yes / len(rows), 4) if rows else 0.0}


def balance(rows: list[dict], mode: str, seed: int,
            label: Callable[[dict], bool] = lambda row: row["answer"]) -> list[dict]:
    """Balance ``rows`` by ``label`` (yes/no).

    * ``upsample``: every row is kept; the minority class gets extra copies (whole passes
      over the minority, then a seeded sample without replacement for the remainder), so
      the classes end equal and no minority row is copied twice more than another.
    * ``downsample``: every minority row is kept; a seeded sample of the majority is kept.
    * ``none``: rows as they are.

    Deterministic for a seed and independent of the input order (sampling happens over rows
    sorted by qid). The result is sorted stably by qid, copies right after their original;
    copies are new dicts. Logs the class mix before and after. One class empty while the
    other is not cannot be balanced: :class:`InputError`.
    """
    if mode not in BALANCE_MODES:
        raise InputError(f"config: corpus.balance: {mode!r} is not one of {list(BALANCE_MODES)}")
    before = _mix(rows, label)
    order = sorted(range(len(rows)), key=lambda i: str(rows[i].get("qid", "")))
    tagged = [(i, 0) for i in order]  # (row index, copy number)
    if mode != "none" and rows:
        yes = [i for i in order if label(rows[i])]
        no = [i for i in order if not label(rows[i])]
        minority, majority = (yes, no) if len(yes) < len(no) else (no, yes)
        if not minority and majority:
            which = "yes" if minority is yes else "no"
            raise InputError(f"cannot balance a corpus of {len(rows)} rows: no '{which}' examples")
        rng = random.Random(seed)
        if mode == "upsample":
            gap = len(majority) - len(minority)
            copies = Counter()
            for _ in range(gap // len(minority)):
                copies.update(minority)
            copies.update(rng.sample(minority, gap % len(minority)))
            tagged += [(i, k) for i in minority for k in range(1, copies[i] + 1)]
        else:
            keep = set(minority) | set(rng.sample(majority, len(minority)))
            tagged = [(i, k) for i, k in tagged if i in keep]
    position = {i: p for p, i in enumerate(order)}
    tagged.sort(key=lambda item: (position[item[0]], item[1]))
    result = [rows[i] if k == 0 else dict(rows[i]) for i, k in tagged]
    after = _mix(result, label)
    log.info("balance(%s, seed=%d): %d rows, yes %d / no %d (%.1f%% yes) -> %d rows, "
             "yes %d / no %d (%.1f%% yes)", mode, seed, before["n"], before["yes"], before["no"],
             100 * before["yes_frac"], after["n"], after["yes"], after["no"], 100 * after["yes_frac"])
    return result


# --- Track A -----------------------------------------------------------------------------------

def build_baseline(sample_records: list[dict], mode: str, seed: int) -> list[dict]:
    """Track A: ``answer_prompt(Q)`` -> ``answer_completion(gold)`` for every sampled question."""
    rows = []
    for record in sample_records:
        gold = bool(record["answer"])
        rows.append({"qid": record["qid"], "prompt": answer_prompt(record["question"]),
                     "completion": answer_completion(gold), "answer": gold, "source": "gold_label"})
    log.info("Track A corpus: %d questions", len(rows))
    return balance(rows, mode, seed)


# --- Track B -----------------------------------------------------------------------------------

def _steps(row: dict) -> list[str]:
    return [" ".join(str(step).split()) for step in row.get("steps") or [] if str(step).strip()]


def usable_teacher_rows(teacher_rows: list[dict]) -> tuple[list[dict], dict]:
    """The teacher rows a corpus can use (kept status and at least one step), plus counts.

    Counts: ``{"used": n, "dropped": n, "no_steps": n}`` (``dropped`` = status dropped,
    ``no_steps`` = kept status whose reasoning did not parse into steps).
    """
    used, counts = [], Counter(used=0, dropped=0, no_steps=0)
    for row in teacher_rows:
        if row["status"] not in KEPT_STATUSES:
            counts["dropped"] += 1
        elif not _steps(row):
            counts["no_steps"] += 1
        else:
            counts["used"] += 1
            used.append(row)
    return used, dict(counts)


def _check(prompt: str, completion: str, question: str, context: str, answer: bool, qid) -> None:
    expected = answer_prompt(question, context) + answer_completion(answer)
    if prompt + completion != expected:
        raise ValueError(f"qid {qid}: training text does not match the evaluator's prompt "
                         f"shape:\n{prompt + completion!r}\n!=\n{expected!r}")


def build_cot(teacher_rows: list[dict], mode: str, seed: int) -> list[dict]:
    """Track B: ``reasoning_prompt(Q)`` -> ``reasoning_completion(steps, gold)``.

    Uses rows with a kept status (agreed, rationalized, kept_gold) and steps; the others are
    skipped and counted in the log (:func:`usable_teacher_rows`). ``source`` is the status.
    """
    used, counts = usable_teacher_rows(teacher_rows)
    rows = []
    for row in used:
        steps, gold = _steps(row), bool(row["gold"])
        prompt = reasoning_prompt(row["question"])
        completion = reasoning_completion(steps, gold)
        _check(prompt, completion, row["question"], reasoning_context(steps), gold, row["qid"])
        rows.append({"qid": row["qid"], "prompt": prompt, "completion": completion,
                     "answer": gold, "source": row["status"]})
    log.info("Track B corpus: %d of %d teacher rows used (%d dropped by the harvest, "
             "%d kept without steps); sources %s", counts["used"], len(teacher_rows),
             counts["dropped"], counts["no_steps"], dict(Counter(r["source"] for r in rows)))
    return balance(rows, mode, seed)


# --- Phase C pairs -----------------------------------------------------------------------------

def _draft_steps(draft: dict) -> list[str]:
    parts = list(draft.get("questions") or []) + [draft.get("reason") or ""]
    return [" ".join(str(part).split()) for part in parts if str(part).strip()]


def build_pairs(teacher_rows: list[dict], drafts: dict[str, dict], seed: int,
                mode: str = "upsample") -> list[dict]:
    """Phase C preference pairs for the kept teacher rows with steps.

    prompt = ``reasoning_prompt(Q, draft)``; chosen = ``reasoning_completion(teacher steps,
    gold)``; rejected = the student's own draft (its sub-questions then its reason) ending in
    its wrong guess when the draft parsed and guessed wrong (``rejected_from:
    "student_draft"``), else the teacher's steps with the flipped answer
    (``"flipped_answer"``). The rejected answer is always ``not gold``. Balanced by gold with
    :func:`balance` (see the module docstring for why). A missing draft is an
    :class:`InputError`; text that would not match the evaluator's shape is a ValueError.
    """
    used, counts = usable_teacher_rows(teacher_rows)
    pairs = []
    for row in used:
        qid, question, gold = row["qid"], row["question"], bool(row["gold"])
        if qid not in drafts:
            raise InputError(f"student drafts: no draft for qid {qid} (needed for its preference pair)")
        draft, steps = drafts[qid], _steps(row)
        prompt = reasoning_prompt(question, draft)
        chosen = reasoning_completion(steps, gold)
        draft_steps = _draft_steps(draft)
        if draft.get("parse_ok") and draft.get("guess") is not None \
                and bool(draft["guess"]) != gold and draft_steps:
            rejected_steps, rejected_from = draft_steps, "student_draft"
        else:
            rejected_steps, rejected_from = steps, "flipped_answer"
        rejected = reasoning_completion(rejected_steps, not gold)
        draft_ctx = draft_context(draft)
        _check(prompt, chosen, question, draft_ctx + "\n" + reasoning_context(steps), gold, qid)
        _check(prompt, rejected, question, draft_ctx + "\n" + reasoning_context(rejected_steps),
               not gold, qid)
        pairs.append({"qid": qid, "prompt": prompt, "chosen": chosen, "rejected": rejected,
                      "gold": gold, "rejected_from": rejected_from, "teacher_status": row["status"]})
    log.info("preference pairs: %d of %d teacher rows (%d dropped by the harvest, %d kept "
             "without steps); rejected from %s",
             len(pairs), len(teacher_rows), counts["dropped"], counts["no_steps"],
             dict(Counter(p["rejected_from"] for p in pairs)))
    return balance(pairs, mode, seed, label=lambda pair: pair["gold"])


# --- multi-task Phase B ------------------------------------------------------------------------

def mix_answer_only(cot_rows: list[dict], baseline_rows: list[dict], mode: str, seed: int) -> list[dict]:
    """Multi-task Phase B (``phase_b.mix_answer_only``): Track B and Track A rows in one corpus.

    Both keep their own prompts (``reasoning_prompt`` and ``answer_prompt``), so one adapter
    learns to reason before the answer slot and to answer directly. The union is balanced by
    gold with :func:`balance` (a no-op when both inputs are already balanced).
    """
    for name, rows in (("Track B", cot_rows), ("Track A", baseline_rows)):
        if not rows:
            raise InputError(f"multi-task Phase B: the {name} corpus is empty")
    mixed = balance([*cot_rows, *baseline_rows], mode, seed)
    log.info("multi-task Phase B corpus: %d Track B + %d Track A rows -> %d", len(cot_rows),
             len(baseline_rows), len(mixed))
    return mixed


# --- summaries ---------------------------------------------------------------------------------

def corpus_summary(rows: list[dict]) -> dict:
    """``{"n", "yes", "no", "yes_frac", "sources"}`` (+ ``rejected_from`` for pairs).

    The label is ``answer`` for corpus rows and ``gold`` (the chosen answer) for pairs.
    """
    def label(row):
        return bool(row["answer"] if "answer" in row else row["gold"])

    summary = _mix(rows, label)
    summary["sources"] = dict(sorted(Counter(
        row.get("source", row.get("teacher_status")) for row in rows).items()))
    if any("rejected_from" in row for row in rows):
        summary["rejected_from"] = dict(sorted(Counter(row["rejected_from"] for row in rows).items()))
    return summary
