"""The student's own samples: sampling + answer-slot scoring, on-policy pairs, self-training."""

from __future__ import annotations

import json
import runpy
import zlib
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from clarify import corpora, own_corpora, own_samples
from clarify.errors import InputError
from clarify.io import read_jsonl, write_jsonl
from clarify.models import load_model, load_tokenizer
from clarify.prompts import (
    REASONING_HEADER,
    answer_completion,
    answer_prompt,
    hinted_reasoning_prompt,
    reasoning_completion,
    reasoning_context,
    reasoning_from_generation,
    reasoning_prompt,
)
from clarify.scoring import score_questions

RECORDS = [{"qid": f"q{i:02d}", "question": f"Is thing {i} a  kind of  thing?", "answer": i % 3 != 0}
           for i in range(12)]  # 8 yes, 4 no
SETTINGS = {"samples": 4, "temperature": 1.0, "seed": 0, "max_new_tokens": 8, "batch_size": 16}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model({"path": str(tiny_model_dir)}, {"dtype": "float32"}), load_tokenizer(str(tiny_model_dir))


def context_margin(context: str) -> float:
    """A deterministic stand-in for the answer slot: a margin fixed by the reasoning text."""
    return (zlib.crc32(context.encode()) % 2001 - 1000) / 100


def fake_scorer(model, tokenizer, records, contexts, batch_size=16, progress=True, desc=""):
    margins = [context_margin(c) for c in contexts]
    frame = pd.DataFrame({"qid": [r["qid"] for r in records], "gold": [bool(r["answer"]) for r in records],
                          "logp_yes": [m / 2 for m in margins], "logp_no": [-m / 2 for m in margins]})
    frame["margin"] = frame["logp_yes"] - frame["logp_no"]
    frame["pred"] = frame["margin"] > 0
    frame["correct"] = frame["pred"] == frame["gold"]
    return frame


def sample(qid, question, gold, index, pred, context=None, hinted=False, text=None):
    context = context if context is not None else f"{REASONING_HEADER}\n1. Step {index} of {qid}."
    return {"qid": qid, "question": question, "gold": gold, "sample": index, "hinted": hinted,
            "text": text if text is not None else context.split("\n", 1)[-1], "context": context,
            "logp_yes": 0.0, "logp_no": 0.0, "margin": 1.0 if pred else -1.0, "pred": pred,
            "correct": pred == gold, "n_tokens": 5, "hit_limit": False}


def teacher_row(qid, question, gold, status="agreed", steps=("Fact one.", "Fact two.")):
    return {"qid": qid, "question": question, "gold": gold, "status": status, "steps": list(steps)}


# --- sampling with the tiny model --------------------------------------------------------------

def test_samples_are_scored_exactly_as_the_cot_mode_scores_and_are_seeded(tiny):
    model, tokenizer = tiny
    settings = {**SETTINGS, "samples": 3}
    rows = own_samples.sample_own_reasonings(model, tokenizer, RECORDS[:3], settings, progress=False)
    assert [(r["qid"], r["sample"]) for r in rows] == [(rec["qid"], j) for rec in RECORDS[:3] for j in range(3)]
    assert all(not r["hinted"] for r in rows)
    assert all(r["context"] == reasoning_from_generation(r["text"]) for r in rows)
    assert len({r["text"] for r in rows if r["qid"] == "q00"}) > 1  # k different samples
    expanded = [rec for rec in RECORDS[:3] for _ in range(3)]
    again = score_questions(model, tokenizer, expanded, [r["context"] for r in rows], batch_size=2, progress=False)
    assert [r["pred"] for r in rows] == again["pred"].tolist()
    assert [r["correct"] for r in rows] == again["correct"].tolist()
    assert [r["margin"] for r in rows] == pytest.approx(again["margin"].tolist(), abs=1e-4)
    assert rows == own_samples.sample_own_reasonings(model, tokenizer, RECORDS[:3], settings, progress=False)
    other = own_samples.sample_own_reasonings(model, tokenizer, RECORDS[:1], {**settings, "seed": 1}, progress=False)
    assert [r["text"] for r in other] != [r["text"] for r in rows[:3]]


def test_own_sample_pairs_chosen_correct_rejected_wrong_balanced(tiny, monkeypatch):
    """Check (c): real sampling from the tiny model, the answer slot replaced by a deterministic
    function of the reasoning text (a random tiny model answers "Yes" to almost everything)."""
    model, tokenizer = tiny
    monkeypatch.setattr(own_samples, "score_questions", fake_scorer)
    rows = own_samples.sample_own_reasonings(model, tokenizer, RECORDS[:8], SETTINGS, progress=False)
    pairs, accounting = own_corpora.pairs_from_own_samples(rows, seed=0, mode="upsample")
    assert accounting["questions_paired"] >= 4 and accounting["questions"] == 8
    assert accounting["questions_paired"] + accounting["only_correct"] + accounting["only_wrong"] \
        + accounting["correct_without_reasoning"] == 8
    counts = Counter(p["gold"] for p in pairs)
    assert counts[True] == counts[False] == accounting["yes"] == accounting["no"] > 0
    questions = {r["qid"]: r for r in RECORDS}
    by_sample = {(r["qid"], r["sample"]): r for r in rows}
    for pair in pairs:
        record, gold = questions[pair["qid"]], pair["gold"]
        assert gold is record["answer"] and pair["prompt"] == reasoning_prompt(record["question"])
        assert pair["chosen"].endswith("\nAnswer:" + answer_completion(gold))
        assert pair["rejected"].endswith("\nAnswer:" + answer_completion(not gold))
        for side, answer, must_be_correct in (("chosen", gold, True), ("rejected", not gold, False)):
            drawn = by_sample[(pair["qid"], pair[f"{side}_sample"])]
            assert drawn["correct"] is must_be_correct and drawn["pred"] is answer
            # exactly the text the cot mode scored, then the answer the slot gave
            assert pair["prompt"] + pair[side] == answer_prompt(record["question"], drawn["context"]) \
                + answer_completion(answer)
            scored = pair["prompt"] + pair[side][: -len(answer_completion(answer))]
            rescored = fake_scorer(None, None, [record], [scored.split("\n", 1)[1].rsplit("\nAnswer:", 1)[0]])
            assert bool(rescored["correct"][0]) is must_be_correct


def test_self_training_samples_rationalise_only_unsolved_questions_scored_without_hint(tiny, monkeypatch):
    model, tokenizer = tiny
    rows = own_samples.self_training_samples(model, tokenizer, RECORDS[:6], {**SETTINGS, "samples": 2},
                                             fallback="rationalize", progress=False)
    plain = [r for r in rows if not r["hinted"]]
    hinted = [r for r in rows if r["hinted"]]
    unsolved = {r["qid"] for r in own_samples.questions_without_correct(RECORDS[:6], plain)}
    assert unsolved and {r["qid"] for r in hinted} == unsolved and len(hinted) == 2 * len(unsolved)
    records = {r["qid"]: r for r in RECORDS}
    # the hint is in the prompt only: the reasoning is scored after the plain answer prompt
    again = score_questions(model, tokenizer, [records[r["qid"]] for r in hinted], [r["context"] for r in hinted],
                            progress=False)
    assert [r["correct"] for r in hinted] == again["correct"].tolist()
    assert hinted_reasoning_prompt("Is it?", True) == "Question: Is it?\nHint: the answer is Yes.\nReasoning:\n"
    calls = []
    monkeypatch.setattr(own_samples, "sample_own_reasonings",
                        lambda *args, **kwargs: calls.append(kwargs.get("hint", False)) or plain)
    assert own_samples.self_training_samples(model, tokenizer, RECORDS[:6], SETTINGS, fallback="teacher") == plain
    assert calls == [False]  # no rationalisation unless the fallback starts with it


def test_sampling_settings_from_config_sections():
    pairs = {"source": "own_samples", "samples": 4, "temperature": 0.7, "seed": 42, "max_new_tokens": 160,
             "batch_size": 16, "pairs_per_question": 1}
    assert own_samples.sampling_settings("pairs", pairs) == {"samples": 4, "temperature": 0.7, "seed": 42,
                                                            "max_new_tokens": 160, "batch_size": 16}
    phase_b = {"seed": 7, "batch_size": 32, "self_train_batch_size": 8, "self_train_samples": 3,
               "self_train_temperature": 0.5, "self_train_max_new_tokens": 99, "self_train_fallback": "teacher"}
    assert own_samples.sampling_settings("self_train", phase_b) == {"samples": 3, "temperature": 0.5, "seed": 7,
                                                                   "max_new_tokens": 99, "batch_size": 8}
    with pytest.raises(InputError, match="unknown purpose"):
        own_samples.sampling_settings("judge", pairs)
    with pytest.raises(InputError, match="temperature must be above 0"):
        own_samples.sample_own_reasonings(None, None, RECORDS, {**SETTINGS, "temperature": 0})
    with pytest.raises(InputError, match="record 0 has no 'answer'"):
        own_samples.sample_own_reasonings(None, None, [{"qid": "a", "question": "q"}], SETTINGS)


# --- pairs from samples (no model) -------------------------------------------------------------

def test_pairs_accounting_and_what_makes_no_pair():
    rows = [sample("a", "Is A?", True, 0, True), sample("a", "Is A?", True, 1, False),   # mixed
            sample("b", "Is B?", False, 0, False), sample("b", "Is B?", False, 1, False),  # only correct
            sample("c", "Is C?", True, 0, False), sample("c", "Is C?", True, 1, False),    # only wrong
            sample("d", "Is D?", False, 0, False, context=REASONING_HEADER),               # correct, empty
            sample("d", "Is D?", False, 1, True),
            sample("e", "Is E?", False, 0, False), sample("e", "Is E?", False, 1, True),   # mixed
            sample("e", "Is E?", False, 2, False, hinted=True)]                            # ignored
    pairs, accounting = own_corpora.pairs_from_own_samples(rows, seed=0, mode="none")
    assert [p["qid"] for p in pairs] == ["a", "e"]
    assert accounting == {"questions": 5, "samples": 10, "correct_samples": 5, "hit_limit_samples": 0,
                          "questions_paired": 2, "only_correct": 1, "only_wrong": 1,
                          "correct_without_reasoning": 1, "pairs_before_balance": 2,
                          "pairs_chosen_hit_limit": 0, "pairs": 2,
                          "yes": 1, "no": 1, "yes_frac": 0.5}
    a = pairs[0]
    assert a["chosen"] == reasoning_completion(["Step 0 of a."], True)
    assert a["rejected"] == reasoning_completion(["Step 1 of a."], False)
    assert (a["chosen_sample"], a["rejected_sample"], a["rejected_from"], a["source"]) == (0, 1, "own_sample", "own_samples")
    summary = corpora.corpus_summary(pairs)
    assert summary["sources"] == {"own_samples": 2} and summary["rejected_from"] == {"own_sample": 2}


def test_pairs_are_balanced_seeded_and_order_independent():
    rows = []
    for i in range(9):
        gold = i < 2  # 2 yes questions, 7 no questions
        rows += [sample(f"q{i}", f"Question {i}?", gold, j, (j % 2 == 0) == gold) for j in range(4)]
    pairs, accounting = own_corpora.pairs_from_own_samples(rows, seed=3, mode="upsample", pairs_per_question=2)
    assert accounting["pairs_before_balance"] == 18 and accounting["yes"] == accounting["no"] == 14
    assert Counter(p["gold"] for p in pairs) == {True: 14, False: 14}
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    assert len({(p["qid"], p["chosen_sample"], p["rejected_sample"]) for p in pairs if not p["gold"]}) == 14
    assert pairs == own_corpora.pairs_from_own_samples(list(reversed(rows)), seed=3, mode="upsample",
                                                   pairs_per_question=2)[0]
    draws = {tuple((p["chosen_sample"], p["rejected_sample"]) for p in
                   own_corpora.pairs_from_own_samples(rows, seed=s, mode="none")[0]) for s in range(6)}
    assert len(draws) > 1
    with pytest.raises(InputError, match="pairs_per_question"):
        own_corpora.pairs_from_own_samples(rows, seed=0, pairs_per_question=0)
    with pytest.raises(InputError, match="no 'yes' examples"):
        own_corpora.pairs_from_own_samples([r for r in rows if not r["gold"]], seed=0)


def test_identical_reasoning_samples_count_once():
    rows = [sample("a", "Is A?", True, j, True, context=f"{REASONING_HEADER}\n1. Same.") for j in range(3)]
    rows += [sample("a", "Is A?", True, 3, False)]
    pairs, _ = own_corpora.pairs_from_own_samples(rows, seed=0, mode="none", pairs_per_question=5)
    assert len(pairs) == 1


# --- self-training corpus ----------------------------------------------------------------------

def self_train_rows():
    return [
        sample("a", "Is A?", True, 0, False), sample("a", "Is A?", True, 1, True),          # own
        sample("b", "Is B?", False, 0, True), sample("b", "Is B?", False, 1, True),         # no correct
        sample("b", "Is B?", False, 0, False, hinted=True,
               context=f"{REASONING_HEADER}\n1. B is not so."),                              # good rationale
        sample("c", "Is C?", False, 0, True),                                                # no correct
        sample("c", "Is C?", False, 0, False, hinted=True, context=f"{REASONING_HEADER}\n1. As the hint says, no.",
               text="1. As the hint says, no."),                                             # quotes hint
        sample("d", "Is D?", True, 0, False),                                                # no correct
        sample("d", "Is D?", True, 0, False, hinted=True),                                   # rationale wrong
        sample("e", "Is E?", True, 0, False, context=REASONING_HEADER),                      # empty, wrong
        sample("e", "Is E?", True, 1, True, context=REASONING_HEADER),                       # correct but empty
    ]


TEACHER = [teacher_row("a", "Is A?", True), teacher_row("b", "Is B?", False),
           teacher_row("c", "Is C?", False, steps=("C is a fact.",)),
           teacher_row("d", "Is D?", True, status="dropped"), teacher_row("e", "Is E?", True, steps=())]


@pytest.mark.parametrize("fallback, sources, reasons", [
    ("teacher", {"a": "own", "b": "teacher", "c": "teacher"},
     {"no_teacher_example": 2}),
    ("rationalize", {"a": "own", "b": "own_rationalized", "c": "teacher"},
     {"no_teacher_example": 2}),
    ("drop", {"a": "own"}, {"no_correct_sample": 4}),
])
def test_self_training_corpus_fallbacks_and_accounting(fallback, sources, reasons):
    rows, accounting = own_corpora.self_training_corpus(self_train_rows(), TEACHER, fallback, seed=0, mode="none")
    assert {r["qid"]: r["source"] for r in rows} == sources
    assert accounting["drop_reasons"] == reasons and accounting["dropped"] == sum(reasons.values())
    assert accounting["kept_own"] == 1 and accounting["questions"] == 5
    assert accounting["kept_own"] + accounting["own_rationalized"] + accounting["teacher"] \
        + accounting["dropped"] == accounting["questions"]
    questions = {r["qid"]: r for r in self_train_rows()}
    teacher = {t["qid"]: t for t in TEACHER}
    for row in rows:
        q = questions[row["qid"]]
        assert set(row) == {"qid", "prompt", "completion", "answer", "source"}
        assert row["answer"] is q["gold"] and row["prompt"] == reasoning_prompt(q["question"])
        if row["source"] == "teacher":  # the same text Track B trains on
            built = {r["qid"]: r for r in corpora.build_cot(TEACHER, "none", 0)}
            assert row["completion"] == built[row["qid"]]["completion"]
            assert row["completion"] == reasoning_completion(teacher[row["qid"]]["steps"], q["gold"])
        else:
            assert "hint" not in row["completion"].lower() and row["completion"].endswith(
                "Answer:" + answer_completion(q["gold"]))
    assert {r["qid"]: r["completion"] for r in rows}["a"] == reasoning_completion(["Step 1 of a."], True)


def test_self_training_rationalize_drop_reasons_without_teacher():
    rows, accounting = own_corpora.self_training_corpus(self_train_rows(), [], "rationalize", seed=0, mode="none")
    assert {r["qid"]: r["source"] for r in rows} == {"a": "own", "b": "own_rationalized"}
    assert accounting["drop_reasons"] == {"no_teacher_example": 3}


def test_self_training_corpus_is_balanced_and_checks_fallback():
    rows = [sample(f"y{i}", f"Yes {i}?", True, 0, True) for i in range(5)]
    rows += [sample(f"n{i}", f"No {i}?", False, 0, False) for i in range(2)]
    out, accounting = own_corpora.self_training_corpus(rows, [], "drop", seed=1, mode="upsample")
    assert Counter(r["answer"] for r in out) == {True: 5, False: 5}
    assert accounting["before_balance"] == {"n": 7, "yes": 5, "no": 2, "yes_frac": 0.7143}
    assert (accounting["n"], accounting["yes_frac"]) == (10, 0.5)
    with pytest.raises(InputError, match="self_train_fallback"):
        own_corpora.self_training_corpus(rows, [], "keep_gold", seed=0)


def test_own_completion_is_the_scored_text():
    context = reasoning_context(["One  fact", "Two"])
    prompt, completion = own_corpora.own_completion("Is  it?", context, False)
    assert prompt + completion == answer_prompt("Is it?", context) + answer_completion(False)
    prompt, completion = own_corpora.own_completion("Is it?", REASONING_HEADER + "\n", True)
    assert completion == "Answer: Yes"
    with pytest.raises(ValueError, match="not a reasoning block"):
        own_corpora.own_completion("Is it?", "Draft: something", True)


# --- the rule scripts (run as Snakemake runs them, with a stand-in ``snakemake`` object) -------

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


def run_script(name, tmp_path, inputs, outputs, **params):
    from snakemake.iocontainers import Namedlist

    smk = SimpleNamespace(input=Namedlist(fromdict=inputs), output=Namedlist(fromdict=outputs),
                          params=Namedlist(fromdict=params), log=[str(tmp_path / f"{name}.log")], threads=1)
    runpy.run_path(str(SCRIPTS / f"{name}.py"), init_globals={"snakemake": smk})


CORPUS = {"balance": "upsample", "seed": 0}
PAIRS = {"source": "own_samples", "samples": 4, "temperature": 0.7, "seed": 0, "max_new_tokens": 160,
         "batch_size": 16, "pairs_per_question": 1}


def test_build_pairs_script_dispatches_on_the_pairs_source(tmp_path):
    samples = tmp_path / "samples.jsonl"
    write_jsonl(samples, [sample("a", "Is A?", True, 0, True), sample("a", "Is A?", True, 1, False),
                          sample("b", "Is B?", False, 0, True), sample("b", "Is B?", False, 1, False)])
    out = {"pairs": str(tmp_path / "pairs.jsonl"), "accounting": str(tmp_path / "pairs.json")}
    run_script("build_pairs", tmp_path, {"samples": str(samples)}, out, corpus=CORPUS, pairs=PAIRS)
    pairs = read_jsonl(out["pairs"])
    assert [(p["qid"], p["rejected_from"]) for p in pairs] == [("a", "own_sample"), ("b", "own_sample")]
    assert json.loads(Path(out["accounting"]).read_text())["source"] == "own_samples"

    teacher, drafts = tmp_path / "teacher.jsonl", tmp_path / "drafts.jsonl"
    write_jsonl(teacher, [teacher_row("a", "Is A?", True), teacher_row("b", "Is B?", False)])
    write_jsonl(drafts, [{"qid": q, "raw": "Answer: Maybe", "guess": None, "parse_ok": False} for q in "ab"])
    run_script("build_pairs", tmp_path, {"teacher": str(teacher), "drafts": str(drafts)},
               {"pairs": out["pairs"]}, corpus=CORPUS, pairs={**PAIRS, "source": "teacher_vs_draft"})
    assert {p["rejected_from"] for p in read_jsonl(out["pairs"])} == {"flipped_answer"}
    Path(out["pairs"]).unlink()
    run_script("build_pairs", tmp_path, {"teacher": str(teacher), "drafts": str(drafts)},
               {"pairs": out["pairs"]}, corpus=CORPUS)  # the seed's rule: no pairs settings
    assert {p["rejected_from"] for p in read_jsonl(out["pairs"])} == {"flipped_answer"}


def test_build_corpora_script_builds_the_declared_corpora(tmp_path):
    sample_file, teacher, samples = tmp_path / "sample.jsonl", tmp_path / "teacher.jsonl", tmp_path / "own.jsonl"
    write_jsonl(sample_file, [{"qid": q, "question": f"Is {q}?", "answer": q != "c"} for q in "abc"])
    write_jsonl(teacher, [teacher_row(q, f"Is {q}?", q != "c") for q in "abc"])
    write_jsonl(samples, self_train_rows())
    out = {name: str(tmp_path / f"{name}.jsonl") for name in ("cot", "phase_b", "self_train")}
    out["accounting"] = str(tmp_path / "self_train.json")
    run_script("build_corpora", tmp_path, {"sample": str(sample_file), "teacher": str(teacher),
                                           "samples": str(samples)}, out,
               corpus=CORPUS, mix_answer_only=True, fallback="teacher")
    cot, mixed = read_jsonl(out["cot"]), read_jsonl(out["phase_b"])
    assert len(cot) == 4 and len(mixed) == 8
    assert Counter(r["source"] for r in mixed) == {"agreed": 4, "gold_label": 4}
    assert {r["source"] for r in read_jsonl(out["self_train"])} == {"own", "teacher"}
    assert json.loads(Path(out["accounting"]).read_text())["kept_own"] == 1


def test_sample_own_script_writes_scored_samples_and_rationalisations(tmp_path, tiny_model_dir):
    from clarify.models import prepare_student

    student = tmp_path / "student"
    student.mkdir()
    prepare_student(str(tiny_model_dir), student / "hf", student / "manifest.json")
    records = tmp_path / "records.jsonl"
    write_jsonl(records, RECORDS[:3])
    phase_b = {"seed": 0, "batch_size": 8, "self_train_batch_size": 8, "self_train_samples": 2,
               "self_train_temperature": 1.0, "self_train_max_new_tokens": 6, "self_train_fallback": "rationalize"}
    out = {"samples": str(tmp_path / "samples.jsonl")}
    run_script("sample_own", tmp_path, {"student": str(student), "records": str(records)}, out,
               purpose="self_train", settings=phase_b, student={"dtype": "float32"},
               quantization={"load_in_4bit": False})
    rows = read_jsonl(out["samples"])
    plain = [r for r in rows if not r["hinted"]]
    assert [(r["qid"], r["sample"]) for r in plain] == [(q["qid"], j) for q in RECORDS[:3] for j in range(2)]
    unsolved = {r["qid"] for r in own_samples.questions_without_correct(RECORDS[:3], plain)}
    assert {r["qid"] for r in rows if r["hinted"]} == unsolved
