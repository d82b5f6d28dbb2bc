"""Corpora from the student's own samples: on-policy preference pairs and self-training rows.

The samples come from :mod:`clarify.own_samples` (k reasonings per question, each scored at its
answer slot as the cot mode scores it). A pair's chosen side is a correct own reasoning and the
gold answer, its rejected side a wrong one and its own answer, in exactly the text the cot mode
scores; self-training keeps one correct own reasoning per question and falls back (teacher,
rationalisation or drop) for the rest. Both are label-balanced like every corpus.
"""

from __future__ import annotations

import logging
import random
from collections import Counter

from clarify.corpora import _check, _mix, _steps, balance, usable_teacher_rows
from clarify.errors import InputError
from clarify.harvest import quotes_hint
from clarify.prompts import REASONING_HEADER, answer_completion, answer_prompt, reasoning_context, reasoning_prompt

log = logging.getLogger(__name__)


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
