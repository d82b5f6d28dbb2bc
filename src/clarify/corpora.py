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
(:func:`pairs_from_own_samples`: a correct own reasoning against a wrong own reasoning, both in
the text the ``cot`` eval mode scores). Self-training (:func:`self_training_corpus`) keeps a
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
from clarify.harvest import KEPT_STATUSES, quotes_hint
from clarify.prompts import (
    REASONING_HEADER,
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


# --- the student's own samples (on-policy pairs, self-training) ---------------------------------

def own_completion(question: str, context: str, answer: bool, qid=None) -> tuple[str, str]:
    """``(prompt, completion)`` for an own reasoning ``context`` followed by ``answer``.

    ``context`` is the reasoning block the ``cot`` mode scored the sample after
    (``reasoning_from_generation``); prompt is ``reasoning_prompt(Q)`` (what Phase B trained on
    and the ``cot`` mode generates from) and prompt + completion is exactly the scored text
    ``answer_prompt(Q, context)`` plus the answer.
    """
    prompt = reasoning_prompt(question)
    full = answer_prompt(question, context) + answer_completion(answer)
    if not full.startswith(prompt):
        raise ValueError(f"qid {qid}: own reasoning {context[:60]!r} is not a reasoning block "
                         f"(it must start with {REASONING_HEADER!r})")
    completion = full[len(prompt):]
    _check(prompt, completion, question, context, answer, qid)
    return prompt, completion


def has_reasoning(sample: dict) -> bool:
    """A sample wrote at least one character of reasoning (an empty one teaches skipping it)."""
    return sample["context"].strip() != REASONING_HEADER


def _by_question(samples: list[dict], hinted: bool = False) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in samples:
        if bool(row.get("hinted", False)) == hinted:
            groups.setdefault(row["qid"], []).append(row)
    return groups


def _distinct(samples: list[dict]) -> list[dict]:
    seen, kept = set(), []
    for row in sorted(samples, key=lambda r: r["sample"]):
        if row["context"] not in seen:
            seen.add(row["context"])
            kept.append(row)
    return kept


def _rng(seed: int, qid) -> random.Random:
    return random.Random(f"{seed}:{qid}")  # per question: independent of order and other questions


def pairs_from_own_samples(samples: list[dict], seed: int, mode: str = "upsample",
                           pairs_per_question: int = 1) -> tuple[list[dict], dict]:
    """On-policy preference pairs from the student's own scored samples (``pairs.source: own_samples``).

    Per question, chosen = a correct own reasoning (with reasoning text) followed by the gold
    answer, rejected = a wrong own reasoning followed by its own (wrong) answer; both are the
    exact text the ``cot`` mode scored. Up to ``pairs_per_question`` distinct (chosen, rejected)
    combinations are drawn, seeded per question. Questions whose samples are all correct, all
    wrong, or correct only without reasoning make no pair and are counted. Balanced by gold with
    :func:`balance`, like :func:`build_pairs`. Hinted samples are ignored.

    Returns ``(pairs, accounting)``; accounting: questions, samples, correct_samples,
    hit_limit_samples, questions_paired, only_correct, only_wrong, correct_without_reasoning,
    pairs_before_balance, pairs_chosen_hit_limit (chosen reasoning cut by the length limit),
    pairs, yes, no, yes_frac.
    """
    if pairs_per_question < 1:
        raise InputError(f"config: pairs.pairs_per_question must be at least 1, got {pairs_per_question}")
    groups = _by_question(samples)
    counts = Counter()
    pairs = []
    for qid, rows in groups.items():
        correct = _distinct([r for r in rows if r["correct"] and has_reasoning(r)])
        wrong = _distinct([r for r in rows if not r["correct"]])
        if not wrong:
            counts["only_correct"] += 1
            continue
        if not any(r["correct"] for r in rows):
            counts["only_wrong"] += 1
            continue
        if not correct:
            counts["correct_without_reasoning"] += 1
            continue
        counts["questions_paired"] += 1
        combos = [(c, w) for c in correct for w in wrong]
        _rng(seed, qid).shuffle(combos)
        for chosen, rejected in combos[:pairs_per_question]:
            question, gold = chosen["question"], bool(chosen["gold"])
            if bool(rejected["pred"]) == gold or bool(chosen["pred"]) != gold:
                raise ValueError(f"qid {qid}: sample correctness disagrees with its prediction")
            prompt, chosen_text = own_completion(question, chosen["context"], gold, qid)
            _, rejected_text = own_completion(question, rejected["context"], not gold, qid)
            pairs.append({"qid": qid, "prompt": prompt, "chosen": chosen_text, "rejected": rejected_text,
                          "gold": gold, "rejected_from": "own_sample", "source": "own_samples",
                          "chosen_sample": int(chosen["sample"]), "rejected_sample": int(rejected["sample"]),
                          "chosen_margin": float(chosen["margin"]),
                          "rejected_margin": float(rejected["margin"])})
    plain = [row for rows in groups.values() for row in rows]
    by_sample = {(row["qid"], row["sample"]): row for row in plain}
    accounting = {
        "questions": len(groups), "samples": len(plain),
        "correct_samples": sum(bool(r["correct"]) for r in plain),
        "hit_limit_samples": sum(bool(r.get("hit_limit")) for r in plain),
        "questions_paired": counts["questions_paired"], "only_correct": counts["only_correct"],
        "only_wrong": counts["only_wrong"], "correct_without_reasoning": counts["correct_without_reasoning"],
        "pairs_before_balance": len(pairs),
        "pairs_chosen_hit_limit": sum(bool(by_sample[(p["qid"], p["chosen_sample"])].get("hit_limit"))
                                      for p in pairs),
    }
    log.info("own-sample pairs: %d pairs from %d of %d questions (%d only correct, %d only wrong, "
             "%d correct only without reasoning)", len(pairs), counts["questions_paired"], len(groups),
             counts["only_correct"], counts["only_wrong"], counts["correct_without_reasoning"])
    pairs = balance(pairs, mode, seed, label=lambda pair: pair["gold"])
    accounting.update(pairs=len(pairs), **{k: v for k, v in _mix(pairs, lambda p: p["gold"]).items() if k != "n"})
    return pairs, accounting


def _rationalized(question_rows: dict, teacher: dict, qid, question: str, gold: bool):
    """A hinted own sample that leads to gold without the hint and does not mention it."""
    hinted = _distinct(question_rows["hinted"].get(qid, []))
    if not hinted:
        return None, "no_rationalization"
    good = [r for r in hinted if r["correct"] and has_reasoning(r)]
    clean = [r for r in good if not quotes_hint(r["text"])]
    if not clean:
        return None, "rationale_quotes_hint" if good else "rationale_wrong"
    return ("own_rationalized", _rng(question_rows["seed"], qid).choice(clean)["context"]), None


def _teacher_example(question_rows: dict, teacher: dict, qid, question: str, gold: bool):
    """The teacher's Track B example for the question (a kept harvest row with steps)."""
    row = teacher.get(qid)
    if row is None:
        return None, "no_teacher_example"
    return ("teacher", reasoning_context(_steps(row))), None


#: Each fallback for a question with no correct own sample: ``(source, reasoning context)`` or
#: ``(None, drop reason)``. A config name is a chain of them, tried in order.
FALLBACKS = {"rationalize": _rationalized, "teacher": _teacher_example}
FALLBACK_CHAINS = {"rationalize": ("rationalize", "teacher"), "teacher": ("teacher",), "drop": ()}


def fallback_chain(name: str) -> tuple[str, ...]:
    """The fallbacks ``phase_b.self_train_fallback: name`` tries, in order."""
    if name not in FALLBACK_CHAINS:
        raise InputError(f"config: phase_b.self_train_fallback: {name!r} is not one of {list(FALLBACK_CHAINS)}")
    return FALLBACK_CHAINS[name]


def self_training_corpus(samples: list[dict], teacher_rows: list[dict], fallback: str, seed: int,
                         mode: str = "upsample") -> tuple[list[dict], dict]:
    """A Track B corpus from the student's own correct reasonings (STaR-style self-training).

    Per question (every qid among the unhinted samples): a correct own sample with reasoning,
    drawn seeded per question (``source: own``); else the ``fallback`` chain
    (:data:`FALLBACK_CHAINS`): ``rationalize`` = a hinted sample (``hinted: true``) that gives the
    gold answer when scored without the hint and does not mention the hint
    (``own_rationalized``), then the teacher's example; ``teacher`` = the teacher's Track B
    example for the question (a kept harvest row with steps; ``teacher``); ``drop`` = none.
    Rows are in the Track B format (prompt ``reasoning_prompt(Q)``, completion reasoning +
    gold answer) and balanced by gold with :func:`balance`.

    Returns ``(rows, accounting)``; accounting: questions, samples, correct_samples, kept_own,
    own_rationalized, teacher, dropped, drop_reasons, before_balance (class mix), n, yes, no,
    yes_frac (after balance).
    """
    chain = fallback_chain(fallback)
    teacher = {row["qid"]: row for row in usable_teacher_rows(teacher_rows)[0]}
    question_rows = {"hinted": _by_question(samples, hinted=True), "seed": seed}
    groups = _by_question(samples)
    rows, sources, reasons = [], Counter(), Counter()
    for qid, group in groups.items():
        question, gold = group[0]["question"], bool(group[0]["gold"])
        correct = _distinct([r for r in group if r["correct"] and has_reasoning(r)])
        found, reason = None, "no_correct_sample"
        if correct:
            found = ("own", _rng(seed, qid).choice(correct)["context"])
        for name in chain if found is None else ():
            found, reason = FALLBACKS[name](question_rows, teacher, qid, question, gold)
            if found is not None:
                break
        if found is None:
            reasons[reason] += 1
            continue
        source, context = found
        prompt, completion = own_completion(question, context, gold, qid)
        rows.append({"qid": qid, "prompt": prompt, "completion": completion, "answer": gold, "source": source})
        sources[source] += 1
    plain = [row for group in groups.values() for row in group]
    accounting = {"questions": len(groups), "samples": len(plain),
                  "correct_samples": sum(bool(r["correct"]) for r in plain),
                  "kept_own": sources["own"], "own_rationalized": sources["own_rationalized"],
                  "teacher": sources["teacher"], "dropped": sum(reasons.values()),
                  "drop_reasons": dict(sorted(reasons.items())), "before_balance": _mix(rows, lambda r: r["answer"])}
    log.info("self-training corpus (fallback %s): %d questions, %d own, %d rationalised, %d teacher, "
             "%d dropped %s", fallback, len(groups), sources["own"], sources["own_rationalized"],
             sources["teacher"], accounting["dropped"], accounting["drop_reasons"])
    rows = balance(rows, mode, seed)
    accounting.update(_mix(rows, lambda r: r["answer"]))
    return rows, accounting


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
