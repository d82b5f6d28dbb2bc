"""Corpora and preference pairs: label balance, determinism, and the one prompt contract."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from clarify import corpora
from clarify.errors import InputError
from clarify.prompts import (
    answer_completion,
    answer_prompt,
    draft_context,
    reasoning_context,
    reasoning_prompt,
)


def rows_with(n_yes, n_no):
    rows = [{"qid": f"y{i:03d}", "answer": True} for i in range(n_yes)]
    rows += [{"qid": f"n{i:03d}", "answer": False} for i in range(n_no)]
    random.Random(1).shuffle(rows)
    return rows


def mix(rows, key="answer"):
    counts = Counter(bool(row[key]) for row in rows)
    return counts[True], counts[False]


def teacher_row(qid, question, gold, status="agreed", steps=("Fact one.", "Fact two.")):
    return {"qid": qid, "question": question, "gold": gold, "status": status,
            "drop_reason": "disagreed" if status == "dropped" else None,
            "steps": list(steps) if status != "dropped" else []}


def draft(guess, parse_ok=True, questions=("Who built it?", "When?"), reason="it seems so", raw=None):
    return {"qid": "x", "question": "q", "gold": True,
            "raw": raw if raw is not None else "Yes - it seems so\nQuestions: Who built it? When?",
            "guess": guess, "reason": reason, "questions": list(questions), "parse_ok": parse_ok,
            "n_tokens": 12, "hit_limit": False}


# --- balance -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n_yes, n_no", [(13, 41), (40, 9), (1, 7), (25, 25)])
def test_upsample_balances_and_keeps_every_original(n_yes, n_no):
    rows = rows_with(n_yes, n_no)
    out = corpora.balance(rows, "upsample", seed=3)
    yes, no = mix(out)
    assert yes == no == max(n_yes, n_no)
    assert all(any(o is row for o in out) for row in rows)  # originals kept, unchanged
    counts = Counter(row["qid"] for row in out)
    majority = "y" if n_yes >= n_no else "n"
    assert all(counts[q] == 1 for q in counts if q.startswith(majority))  # majority untouched
    minority = [c for q, c in counts.items() if not q.startswith(majority)]
    assert max(minority) - min(minority) <= 1  # copies spread evenly
    assert [row["qid"] for row in out] == sorted(row["qid"] for row in out)


@pytest.mark.parametrize("n_yes, n_no", [(13, 41), (40, 9), (25, 25)])
def test_downsample_keeps_every_minority_row(n_yes, n_no):
    rows = rows_with(n_yes, n_no)
    out = corpora.balance(rows, "downsample", seed=3)
    yes, no = mix(out)
    assert yes == no == min(n_yes, n_no)
    minority = "y" if n_yes <= n_no else "n"
    assert {r["qid"] for r in rows if r["qid"].startswith(minority)} <= {r["qid"] for r in out}
    assert len({r["qid"] for r in out}) == len(out)


def test_balance_is_deterministic_and_order_independent():
    rows = rows_with(10, 37)
    for mode in ("upsample", "downsample"):
        first = corpora.balance(rows, mode, seed=7)
        again = corpora.balance(list(reversed(rows)), mode, seed=7)
        assert [r["qid"] for r in first] == [r["qid"] for r in again]
        others = {tuple(r["qid"] for r in corpora.balance(rows, mode, seed=s)) for s in range(5)}
        assert len(others) > 1  # the seed matters


def test_balance_none_and_edge_cases():
    rows = rows_with(3, 9)
    out = corpora.balance(rows, "none", seed=0)
    assert sorted(r["qid"] for r in out) == sorted(r["qid"] for r in rows) and mix(out) == (3, 9)
    assert corpora.balance([], "upsample", seed=0) == []
    with pytest.raises(InputError, match="no 'yes' examples"):
        corpora.balance(rows_with(0, 4), "upsample", seed=0)
    with pytest.raises(InputError, match="corpus.balance"):
        corpora.balance(rows, "reweight", seed=0)
    pairs = [{"qid": r["qid"], "gold": r["answer"]} for r in rows]
    assert mix(corpora.balance(pairs, "upsample", 0, label=lambda p: p["gold"]), "gold") == (9, 9)


def test_balance_logs_class_mix(caplog):
    with caplog.at_level("INFO", logger="clarify.corpora"):
        corpora.balance(rows_with(2, 6), "upsample", seed=0)
    assert "yes 2 / no 6" in caplog.text and "yes 6 / no 6" in caplog.text


# --- Track A / Track B -------------------------------------------------------------------------

def test_baseline_uses_the_direct_answer_prompt():
    records = [{"qid": f"q{i}", "question": f"Is  thing {i}\nreal?", "answer": i % 4 == 0,
                "facts": [], "decomposition": []} for i in range(12)]
    out = corpora.build_baseline(records, "upsample", seed=0)
    assert mix(out) == (9, 9)
    questions = {r["qid"]: r["question"] for r in records}
    for row in out:
        assert row["prompt"] == answer_prompt(questions[row["qid"]])
        assert row["prompt"] + row["completion"] == \
            answer_prompt(questions[row["qid"]]) + answer_completion(row["answer"])
        assert row["source"] == "gold_label"
        assert set(row) == {"qid", "prompt", "completion", "answer", "source"}


def test_cot_uses_kept_rows_with_steps_and_the_eval_reasoning_shape():
    rows = [
        teacher_row("a", "Is A a yes?", True),
        teacher_row("b", "Is B a yes?", True, status="rationalized", steps=["One  fact", " ", "Two\nfacts"]),
        teacher_row("c", "Is C a no?", False, status="kept_gold"),
        teacher_row("d", "Is D a no?", False, status="kept_gold", steps=[]),  # no steps: skipped
        teacher_row("e", "Is E a no?", False, status="dropped"),
        teacher_row("f", "Is F a no?", False),
    ]
    out = corpora.build_cot(rows, "none", seed=0)
    assert [r["qid"] for r in out] == ["a", "b", "c", "f"]
    assert {r["qid"]: r["source"] for r in out} == {"a": "agreed", "b": "rationalized",
                                                    "c": "kept_gold", "f": "agreed"}
    teacher = {r["qid"]: r for r in rows}
    for row in out:
        t = teacher[row["qid"]]
        steps = [s for s in t["steps"] if s.strip()]
        assert row["answer"] is t["gold"]
        assert row["prompt"] == reasoning_prompt(t["question"])  # what cot mode generates from
        assert row["prompt"] + row["completion"] == \
            answer_prompt(t["question"], reasoning_context(steps)) + answer_completion(t["gold"])
    assert "2. Two facts\nAnswer: Yes" in out[1]["completion"]
    assert corpora.usable_teacher_rows(rows)[1] == {"used": 4, "dropped": 1, "no_steps": 1}
    assert mix(corpora.build_cot(rows, "upsample", seed=0)) == (2, 2)


# --- pairs -------------------------------------------------------------------------------------

def test_pairs_shape_rejected_answers_and_tags():
    rows = [
        teacher_row("a", "Is A a yes?", True),                          # draft guessed wrong
        teacher_row("b", "Is B a yes?", True, status="rationalized"),   # draft right
        teacher_row("c", "Is C a no?", False, status="kept_gold"),      # draft unparsed
        teacher_row("d", "Is D a no?", False),                          # draft wrong, no questions
        teacher_row("e", "Is E a no?", False),                          # draft wrong
        teacher_row("f", "Is F a no?", False, status="dropped"),        # no pair
        teacher_row("g", "Is G a yes?", True),                          # empty draft text
    ]
    drafts = {"a": draft(False), "b": draft(True),
              "c": draft(None, parse_ok=False, questions=(), reason="", raw="Maybe, the ship that"),
              "d": draft(True, parse_ok=False, questions=()), "e": draft(True), "f": draft(True),
              "g": draft(None, parse_ok=False, questions=(), reason="", raw="")}
    pairs = corpora.build_pairs(rows, drafts, seed=0, mode="none")
    by_qid = {p["qid"]: p for p in pairs}
    assert sorted(by_qid) == ["a", "b", "c", "d", "e", "g"]
    assert {q: p["rejected_from"] for q, p in by_qid.items()} == {
        "a": "student_draft", "b": "flipped_answer", "c": "flipped_answer",
        "d": "flipped_answer", "e": "student_draft", "g": "flipped_answer"}
    teacher = {r["qid"]: r for r in rows}
    for qid, pair in by_qid.items():
        t, d = teacher[qid], drafts[qid]
        assert set(pair) == {"qid", "prompt", "chosen", "rejected", "gold", "rejected_from",
                             "teacher_status"}
        assert pair["teacher_status"] == t["status"] and pair["gold"] is t["gold"]
        assert pair["prompt"] == reasoning_prompt(t["question"], d)
        context = draft_context(d) + "\n" + reasoning_context(t["steps"])
        assert pair["prompt"] + pair["chosen"] == \
            answer_prompt(t["question"], context) + answer_completion(t["gold"])
        # the rejected completion always ends in the opposite of gold
        assert pair["chosen"].endswith("Answer:" + answer_completion(t["gold"]))
        assert pair["rejected"].endswith("Answer:" + answer_completion(not t["gold"]))
        if pair["rejected_from"] == "student_draft":
            draft_steps = d["questions"] + [d["reason"]]
            assert pair["prompt"] + pair["rejected"] == answer_prompt(
                t["question"], draft_context(d) + "\n" + reasoning_context(draft_steps)
            ) + answer_completion(not t["gold"])
        else:
            assert pair["rejected"] == pair["chosen"].rsplit("Answer:", 1)[0] + "Answer:" + \
                answer_completion(not t["gold"])


def test_pairs_are_balanced_by_gold_and_need_drafts():
    rows = [teacher_row(f"y{i}", f"Yes question {i}?", True) for i in range(3)]
    rows += [teacher_row(f"n{i}", f"No question {i}?", False) for i in range(8)]
    drafts = {r["qid"]: draft(not r["gold"]) for r in rows}
    pairs = corpora.build_pairs(rows, drafts, seed=4)
    assert mix(pairs, "gold") == (8, 8)
    assert pairs == corpora.build_pairs(list(reversed(rows)), drafts, seed=4)
    summary = corpora.corpus_summary(pairs)
    assert summary["yes"] == summary["no"] == 8 and summary["rejected_from"] == {"student_draft": 16}
    with pytest.raises(InputError, match="no draft for qid y0"):
        corpora.build_pairs(rows, {k: v for k, v in drafts.items() if k != "y0"}, seed=0)


def test_corpus_summary():
    rows = [{"qid": "a", "prompt": "", "completion": "", "answer": True, "source": "agreed"},
            {"qid": "b", "prompt": "", "completion": "", "answer": False, "source": "agreed"},
            {"qid": "c", "prompt": "", "completion": "", "answer": False, "source": "kept_gold"}]
    assert corpora.corpus_summary(rows) == {"n": 3, "yes": 1, "no": 2, "yes_frac": 0.3333,
                                            "sources": {"agreed": 2, "kept_gold": 1}}
    assert corpora.corpus_summary([])["n"] == 0


# --- multi-task Phase B ------------------------------------------------------------------------

def test_mix_answer_only_keeps_both_formats_and_balance():
    records = [{"qid": f"q{i}", "question": f"Is {i} odd?", "answer": i % 3 == 0} for i in range(9)]
    teacher = [teacher_row(r["qid"], r["question"], r["answer"]) for r in records]
    cot = corpora.build_cot(teacher, "none", seed=0)  # 3 yes / 6 no
    baseline = corpora.build_baseline(records, "upsample", seed=0)  # 6 / 6
    mixed = corpora.mix_answer_only(cot, baseline, "upsample", seed=0)
    assert mix(mixed) == (12, 12)  # 9 yes / 12 no, the yes rows upsampled
    assert all(any(m is row for m in mixed) for row in cot + baseline)  # every row of both kept
    questions = {r["qid"]: r["question"] for r in records}
    prompts = Counter("reasoning" if row["prompt"] == reasoning_prompt(questions[row["qid"]]) else
                      "direct" if row["prompt"] == answer_prompt(questions[row["qid"]]) else "other"
                      for row in mixed)
    assert prompts["other"] == 0 and prompts["reasoning"] >= 9 and prompts["direct"] >= 12
    assert prompts["reasoning"] + prompts["direct"] == 24
    assert mix(corpora.mix_answer_only(cot, baseline, "none", seed=0)) == (9, 12)
    with pytest.raises(InputError, match="Track A corpus is empty"):
        corpora.mix_answer_only(cot, [], "upsample", seed=0)
