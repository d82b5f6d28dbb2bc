"""Teacher harvest: majority vote, disagreement handling, accounting (fake teacher, no network)."""

from __future__ import annotations

import re

import pytest

from clarify import corpora, harvest as hv
from clarify.errors import InputError
from clarify.teacher import Completion
from clarify.prompts import answer_word, rationalization_prompt, teacher_prompt

# These tests are about votes over invalid samples: they accept any share of them knowingly.
SETTINGS = {"backend": "fake", "model": "fake-1", "samples": 3, "on_disagreement": "rationalize",
            "rationalize_samples": 2, "accept_invalid_fraction": 1.0}


def response_text(final, steps, extra=""):
    verdict = "INVALID" if final is None else answer_word(final).upper()
    numbered = "\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1))
    return ("## Teaching Analysis\nGood start.\n\n## Step-by-Step Reasoning\n" + numbered + extra
            + f"\n\n## Final Assessment\nBased on this analysis, the answer is: **{verdict}**")


class FakeTeacher:
    """Answers from ``script(request) -> final | dict(final=, parse_ok=, text=, steps=)``."""

    backend, model = "fake", "fake-1"

    def __init__(self, script):
        self.script = script
        self.calls: list[list] = []

    @property
    def requests(self):
        return [request for call in self.calls for request in call]

    def complete_many(self, requests, progress=True):
        self.calls.append(list(requests))
        out = []
        for request in requests:
            spec = self.script(request)
            if not isinstance(spec, dict):
                spec = {"final": spec}
            final = spec["final"]
            parse_ok = spec.get("parse_ok", final is not None)
            qid = request.record["qid"]
            steps = spec.get("steps", [f"{qid} {request.kind} {request.sample_index} step a",
                                       f"{qid} {request.kind} {request.sample_index} step b"])
            steps = steps if parse_ok else []
            text = spec.get("text", response_text(final, steps))
            out.append(Completion(text=text, prompt_tokens=100, completion_tokens=50,
                                      cost_usd=0.001, latency_s=0.1, cached=False, backend="fake",
                                      model="fake-1", final=final if parse_ok or spec.get("keep_final") else None,
                                      steps=steps, parse_ok=parse_ok))
        return out


def make_records(n_yes, n_no):
    records = [{"qid": f"y{i:03d}", "question": f"Is yes question {i} true?", "answer": True,
                "facts": [], "decomposition": []} for i in range(n_yes)]
    records += [{"qid": f"n{i:03d}", "question": f"Is no question {i} true?", "answer": False,
                 "facts": [], "decomposition": []} for i in range(n_no)]
    return records


def make_drafts(records):
    return {r["qid"]: {"qid": r["qid"], "question": r["question"], "gold": r["answer"],
                       "raw": "Yes - because. Questions: what? why?", "guess": True,
                       "reason": "because", "questions": ["what?", "why?"], "parse_ok": True,
                       "n_tokens": 10, "hit_limit": False} for r in records}


def settings(**overrides):
    return {**SETTINGS, **overrides}


def by_qid(rows):
    return {row["qid"]: row for row in rows}


# --- vote --------------------------------------------------------------------------------------

@pytest.mark.parametrize("finals, majority", [
    ([True, True, False], True),
    ([False, None, None], False),
    ([True, False], None),
    ([True, False, None], None),
    ([None, None, None], None),
    ([], None),
])
def test_majority_vote(finals, majority):
    vote = hv.majority_vote(finals)
    assert vote["majority"] is majority
    assert vote["yes"] + vote["no"] + vote["invalid"] == len(finals)


def test_agreeing_questions_use_first_parsed_sample_ending_in_gold():
    records = make_records(2, 2)

    def script(req):
        gold = req.record["answer"]
        # sample 0 wrong, sample 1 right but unparsed steps, sample 2 right and parsed
        return [not gold, {"final": gold, "parse_ok": False, "keep_final": True}, gold][req.sample_index]

    teacher = FakeTeacher(script)
    rows, table = hv.harvest(records, make_drafts(records), teacher, settings(), progress=False)
    assert len(teacher.calls) == 1 and len(teacher.requests) == 3 * 4
    for row in rows:
        assert row["status"] == "agreed" and row["drop_reason"] is None
        assert row["vote"]["majority"] is row["gold"]
        assert row["steps"] == [f"{row['qid']} teach 2 step a", f"{row['qid']} teach 2 step b"]
        assert row["steps_sample_index"] == 2
        assert row["final_text"] == row["samples"][2]["text"]
        assert [s["sample_index"] for s in row["samples"]] == [0, 1, 2]
        assert row["totals"]["tokens"] == 3 * 150 and row["totals"]["samples"] == 3
        assert row["backend"] == "fake" and row["model"] == "fake-1"
    # prompts are the contract's teacher prompt with the student's draft
    drafts = make_drafts(records)
    for req in teacher.requests:
        assert req.prompt == teacher_prompt(req.record["question"], drafts[req.record["qid"]])
        assert req.kind == "teach" and req.hint is None


def test_drop_mode_reasons_and_tie_is_invalid():
    records = make_records(3, 0)
    finals = {"y000": [False, False, True],   # wrong majority
              "y001": [True, False, None],    # tie -> invalid
              "y002": [None, None, None]}     # all invalid
    teacher = FakeTeacher(lambda r: finals[r.record["qid"]][r.sample_index])
    rows, table = hv.harvest(records, None, teacher, settings(on_disagreement="drop"), progress=False)
    rows = by_qid(rows)
    assert rows["y000"]["status"] == "dropped" and rows["y000"]["drop_reason"] == "disagreed"
    assert rows["y001"]["vote"] == {"yes": 1, "no": 1, "invalid": 1, "majority": None}
    assert rows["y001"]["drop_reason"] == "invalid" and rows["y002"]["drop_reason"] == "invalid"
    assert all(row["steps"] == [] for row in rows.values())
    assert len(teacher.calls) == 1 and len(teacher.requests) == 9
    all_row = table[-1]
    assert all_row["dropped"] == 3 and all_row["invalid_vote"] == 2
    assert all_row["drop_disagreed"] == 1 and all_row["drop_invalid"] == 2


def test_keep_gold_uses_wrong_majority_steps_and_says_so():
    records = make_records(1, 2)
    finals = {"y000": [None, False, False],
              "n000": [{"final": True, "parse_ok": False}] * 3,   # nothing parses
              "n001": [True, False, None]}                          # tie
    teacher = FakeTeacher(lambda r: finals[r.record["qid"]][r.sample_index])
    rows, table = hv.harvest(records, None, teacher, settings(on_disagreement="keep_gold"), progress=False)
    rows = by_qid(rows)
    assert {row["status"] for row in rows.values()} == {"kept_gold"}
    assert rows["y000"]["steps"] == ["y000 teach 1 step a", "y000 teach 1 step b"]
    assert rows["y000"]["steps_from"] == "wrong_majority_sample"
    assert rows["n000"]["steps"] == [] and rows["n000"]["steps_from"] is None
    assert rows["n001"]["steps"] == ["n001 teach 1 step a", "n001 teach 1 step b"]  # the gold one
    assert rows["n001"]["steps_from"] == "gold_sample"
    assert len(teacher.requests) == 9
    assert table[-1]["kept_gold"] == 3 and table[-1]["invalid_vote"] == 2
    # a kept_gold row with no steps is skipped by the corpus builder, and counted
    used, counts = corpora.usable_teacher_rows(list(rows.values()))
    assert counts == {"used": 2, "dropped": 0, "no_steps": 1}


def test_rationalize_statuses_reasons_and_request_count():
    records = make_records(3, 3)
    hint_text = response_text(True, ["a", "b"], extra="\n3. The hint says the answer is yes.")

    def script(req):
        qid, gold = req.record["qid"], req.record["answer"]
        if req.kind == "teach":
            return gold if qid in ("y000", "n000") else not gold
        # rationalisations (sample_index 3, 4)
        return {
            "y001": [{"final": True, "text": hint_text}, True],        # first quotes hint, second ok
            "y002": [{"final": True, "text": hint_text}] * 2,         # always quotes hint
            "n001": [True, True],                                     # still wrong
            "n002": [{"final": False, "parse_ok": False}, True],      # unparsed + wrong -> wrong
        }[qid][req.sample_index - 3]

    teacher = FakeTeacher(script)
    rows, table = hv.harvest(records, make_drafts(records), teacher, settings(), progress=False)
    assert len(teacher.calls) == 2
    assert len(teacher.requests) == 3 * 6 + 2 * 4  # samples x questions + rationalize x disagreeing
    hinted = teacher.calls[1]
    assert all(r.kind == "rationalize" and r.hint is r.record["answer"] for r in hinted)
    assert sorted({r.sample_index for r in hinted}) == [3, 4]
    drafts = make_drafts(records)
    assert all(r.prompt == rationalization_prompt(r.record["question"], drafts[r.record["qid"]],
                                                  r.record["answer"]) for r in hinted)
    keys = [(r.record["qid"], r.sample_index, r.kind) for r in teacher.requests]
    assert len(set(keys)) == len(keys)

    rows = by_qid(rows)
    assert rows["y000"]["status"] == rows["n000"]["status"] == "agreed"
    assert rows["y001"]["status"] == "rationalized"
    assert rows["y001"]["steps"] == ["y001 rationalize 4 step a", "y001 rationalize 4 step b"]
    assert rows["y001"]["steps_from"] == "rationale"
    assert [(s["kind"], s["sample_index"]) for s in rows["y001"]["samples"]] == [
        ("teach", 0), ("teach", 1), ("teach", 2), ("rationalize", 3), ("rationalize", 4)]
    assert (rows["y002"]["status"], rows["y002"]["drop_reason"]) == ("dropped", "rationale_quotes_hint")
    assert (rows["n001"]["status"], rows["n001"]["drop_reason"]) == ("dropped", "rationale_wrong")
    assert rows["n002"]["drop_reason"] == "rationale_wrong"
    assert all(rows[q]["steps"] == [] for q in ("y002", "n001", "n002"))
    assert len(rows["n000"]["samples"]) == 3  # agreeing questions are not asked again


def test_rationalize_unparsed_reason_and_no_second_call_when_all_agree():
    records = make_records(1, 1)
    teacher = FakeTeacher(lambda r: None if r.kind == "teach" and r.record["qid"] == "y000"
                          else ({"final": None} if r.kind == "rationalize" else r.record["answer"]))
    rows, _ = hv.harvest(records, None, teacher, settings(samples=1, rationalize_samples=3), progress=False)
    rows = by_qid(rows)
    assert rows["y000"]["drop_reason"] == "rationale_unparsed" and rows["y000"]["vote"]["majority"] is None
    assert len(teacher.requests) == 2 + 3

    agreeable = FakeTeacher(lambda r: r.record["answer"])
    hv.harvest(records, None, agreeable, settings(), progress=False)
    assert len(agreeable.calls) == 1


@pytest.mark.parametrize("text", [
    "Using the hint, the answer is yes.",
    "I was told the answer is YES, and indeed...",
    "Since the correct answer is YES, the ship must be...",
    "The given answer of yes is consistent.",
    "We are given that the answer is no.",
    "As instructed, I reason to NO.",
    "The answer was provided in the prompt.",
])
def test_quotes_hint_positive(text):
    assert hv.quotes_hint(text)


@pytest.mark.parametrize("text", [
    response_text(True, ["USS Iwo Jima recovered Apollo 13.", "It was named after a battle."]),
    "Given these facts, the answer is yes.",
    "The trophy is given to the winning team each year.",
    "Thinking it through step by step, the answer is: **NO**",
])
def test_quotes_hint_negative(text):
    assert not hv.quotes_hint(text)


def test_one_row_per_question_and_accounting_matches_rows():
    records = make_records(7, 5)
    statuses = {}

    def script(req):
        index = int(req.record["qid"][1:])
        gold = req.record["answer"]
        if req.kind == "rationalize":
            return gold if index % 2 else not gold
        return [gold, not gold, None][index % 3]

    for mode in hv.ON_DISAGREEMENT:
        rows, table = hv.harvest(records, make_drafts(records), FakeTeacher(script),
                                 settings(on_disagreement=mode, samples=2), progress=False)
        assert [row["qid"] for row in rows] == [r["qid"] for r in records]
        statuses[mode] = {row["status"] for row in rows}
        assert [t["label"] for t in table] == ["yes", "no", "all"]
        for entry in table:
            group = [row for row in rows if entry["label"] == "all"
                     or row["gold"] is (entry["label"] == "yes")]
            assert entry["total"] == len(group)
            assert sum(entry[s] for s in hv.STATUSES) == entry["total"]
            for status in hv.STATUSES:
                assert entry[status] == sum(row["status"] == status for row in group)
            assert entry["invalid_vote"] == sum(row["vote"]["majority"] is None for row in group)
            assert sum(entry[f"drop_{r}"] for r in hv.DROP_REASONS) == entry["dropped"]
            assert entry["samples"] == sum(len(row["samples"]) for row in group)
        assert table[0]["total"] + table[1]["total"] == table[2]["total"] == len(records)
        text = hv.format_accounting(table)
        lines = text.splitlines()
        assert len(lines) == 5 and lines[0].startswith("| label | total | agreed")
        assert "| all | 12 |" in text
    assert statuses["drop"] == {"agreed", "dropped"}
    assert statuses["keep_gold"] == {"agreed", "kept_gold"}
    assert statuses["rationalize"] == {"agreed", "rationalized", "dropped"}


def test_bad_inputs_are_clear_errors():
    records = make_records(2, 0)
    teacher = FakeTeacher(lambda r: True)
    with pytest.raises(InputError, match="no draft for qid y001"):
        hv.harvest(records, {"y000": make_drafts(records)["y000"]}, teacher, settings(), progress=False)
    with pytest.raises(InputError, match="duplicate qid"):
        hv.harvest(records + records[:1], None, teacher, settings(), progress=False)
    with pytest.raises(InputError, match="on_disagreement"):
        hv.harvest(records, None, teacher, settings(on_disagreement="ignore"), progress=False)

    class ShortTeacher(FakeTeacher):
        def complete_many(self, requests, progress=True):
            return super().complete_many(requests)[:-1]

    with pytest.raises(RuntimeError, match="completions for"):
        hv.harvest(records, None, ShortTeacher(lambda r: True), settings(), progress=False)


# --- the seed's failure: 31.5% disagreement, mostly on "Yes" -----------------------------------

def seed_scenario_teacher(can_rationalize):
    """Wrong (all samples) on 52 of 100 Yes and 11 of 100 No questions: 63/200 = 31.5%."""
    def wrong(record):
        index = int(record["qid"][1:])
        return index < (52 if record["answer"] else 11)

    def script(req):
        gold = req.record["answer"]
        if req.kind == "rationalize":
            return gold if can_rationalize else not gold
        return (not gold) if wrong(req.record) else gold
    return FakeTeacher(script)


def test_seed_failure_drop_then_corpus_rebalances():
    records = make_records(100, 100)
    rows, table = hv.harvest(records, make_drafts(records), seed_scenario_teacher(False),
                             settings(on_disagreement="drop"), progress=False)
    yes, no, total = table
    assert total["dropped"] == 63 and total["agreed"] == 137
    assert (yes["agreed"], no["agreed"]) == (48, 89)  # kept set ~65% "No": the seed's skew
    corpus = corpora.build_cot(rows, "upsample", seed=0)
    summary = corpora.corpus_summary(corpus)
    assert abs(summary["yes"] - summary["no"]) <= 1
    assert summary["n"] == 2 * 89
    assert {row["qid"] for row in corpus} == {row["qid"] for row in rows if row["status"] == "agreed"}


def test_seed_failure_rationalize_keeps_everything():
    records = make_records(100, 100)
    teacher = seed_scenario_teacher(True)
    rows, table = hv.harvest(records, make_drafts(records), teacher, settings(), progress=False)
    assert table[-1]["agreed"] == 137 and table[-1]["rationalized"] == 63
    assert table[-1]["dropped"] == 0
    assert len(teacher.requests) == 3 * 200 + 2 * 63
    corpus = corpora.build_cot(rows, "upsample", seed=0)
    assert corpora.corpus_summary(corpus) | {"sources": None} == {
        "n": 200, "yes": 100, "no": 100, "yes_frac": 0.5, "sources": None}


# --- against the fake OpenAI server: invalid replies, canonical bytes --------------------------

def openai_harvest_settings(server, **overrides):
    from harvest_child import teacher_defaults

    return {**teacher_defaults(), "backend": "openai", "base_url": server.base_url, "samples": 3,
            "on_disagreement": "drop", "concurrency": 4, "timeout_s": 5.0, "max_retries": 1, **overrides}


def test_invalid_samples_fail_the_harvest_and_a_rerun_asks_again_for_exactly_those(api_key, tmp_path):
    from clarify.cache import CallCache
    from clarify.teacher import make_teacher
    from fake_openai_server import FakeOpenAIServer

    records = make_records(10, 10)
    cache = tmp_path / "teacher.sqlite"
    with FakeOpenAIServer(api_key=api_key, seed=4, rate_unparsed=0.3) as server:
        settings = openai_harvest_settings(server)
        asked_again = []
        for run in range(10):
            before = len(server.snapshot())
            with make_teacher(settings, cache_path=cache) as teacher:
                try:
                    rows, table = hv.harvest(records, None, teacher, settings, progress=False)
                    break
                except hv.InvalidTeacherSamples as exc:
                    message = str(exc)
            invalid = int(re.search(r"^teacher: (\d+) of 60 samples are invalid", message).group(1))
            assert "\n" not in message and "a rerun asks again for exactly those" in message
            assert f"accept_invalid_fraction >= {invalid / 60:.4f}" in message
            new = server.snapshot()[before:]
            unparsed = {r["key"] for r in new if r["outcome"] == "unparsed"}
            assert len(unparsed) == invalid  # the count is exact
            asked_again.append(unparsed)
            if run:  # a rerun sent exactly the requests that were invalid before
                assert {r["key"] for r in new} == asked_again[-2]
        else:
            pytest.fail("the harvest never completed")
        assert run >= 1 and teacher.spend.requests_made == len(asked_again[-1])
        assert table[-1]["invalid_samples"] == 0
        counts = server.paid_counts()
        assert all(counts[key] == 1 + sum(key in keys for keys in asked_again) for key in counts)
        with CallCache(cache) as stored:  # every paid reply counted once, invalid ones included
            assert stored.spent("teacher")["tokens"] == sum(server.paid_tokens())

        # or accept them knowingly: one run, invalid votes kept
        fresh = tmp_path / "fresh.sqlite"
        accepting = openai_harvest_settings(server, accept_invalid_fraction=0.5)
        with make_teacher(accepting, cache_path=fresh) as teacher:
            rows, table = hv.harvest(records, None, teacher, accepting, progress=False)
    assert table[-1]["samples"] == 60


def test_a_harvest_served_from_the_cache_writes_the_same_bytes(api_key, tmp_path):
    from clarify.io import write_jsonl
    from clarify.teacher import make_teacher
    from fake_openai_server import FakeOpenAIServer

    records = make_records(4, 4)
    with FakeOpenAIServer(api_key=api_key, delay_s=0.0137) as server:
        settings = openai_harvest_settings(server, on_disagreement="rationalize")
        for run in ("live", "cached"):
            with make_teacher(settings, cache_path=tmp_path / "teacher.sqlite") as teacher:
                rows, table = hv.harvest(records, make_drafts(records), teacher, settings, progress=False)
            write_jsonl(tmp_path / f"{run}.jsonl", rows)
            if run == "live":
                assert teacher.spend.requests_made > 24 and teacher.spend.cache_hits == 0  # both rounds
                latencies = [s["latency_s"] for row in rows for s in row["samples"]]
                assert all(latency > 0.0137 for latency in latencies)
        assert teacher.spend.requests_made == 0
    assert (tmp_path / "cached.jsonl").read_bytes() == (tmp_path / "live.jsonl").read_bytes()
