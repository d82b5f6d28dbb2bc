"""The LLM judge of clarifying sub-questions: prompts, verdict parsing, both-order combination
with canned judges, the summary statistics, and the openai backend through the fake server
(two requests per question, cache, the judge's own spend cap, no key in the output)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import fake_openai_server
from clarify.errors import InputError
from clarify.judge import judge_pairs, make_judge, summarize
from clarify.parsing import parse_verdict
from clarify.prompts import judge_prompt
from clarify.teacher import SpendCapReached, Teacher
from fake_openai_server import FakeOpenAIServer
from harvest_child import teacher_defaults

MARK = "Was the MARKED fact checked?"


def shown_sets(prompt: str) -> tuple[list[str], list[str]]:
    """The sub-questions a judge prompt shows as Set 1 and Set 2."""
    match = re.search(r"\nSet 1:\n(.*?)\n\nSet 2:\n(.*?)\n\n", prompt, re.DOTALL)
    assert match, prompt

    def items(block: str) -> list[str]:
        return [] if block == "(none)" else [line[2:] for line in block.splitlines()]

    return items(match.group(1)), items(match.group(2))


def marker_reply(prompt: str) -> str:
    """Prefers whichever set holds the marked sub-question (a tie if neither or both do)."""
    first, second = shown_sets(prompt)
    one, two = MARK in first, MARK in second
    verdict = "1" if one and not two else "2" if two and not one else "tie"
    return f"Set {verdict} asks what matters.\nVerdict: {verdict}" if verdict != "tie" else "Verdict: tie"


class CannedJudge(Teacher):
    """A judge whose reply is ``reply(prompt)``; no cache, records every prompt it was sent."""

    backend = "canned"
    uses_cache = False

    def __init__(self, reply):
        super().__init__({"model": "canned"}, role="judge")
        self.reply = reply
        self.prompts: list[str] = []

    def _complete_uncached(self, items, record) -> None:
        for key, request in items:
            assert request.kind == "judge" and request.sample_index == 0
            assert set(request.record) == {"qid"}  # nothing else (no gold answer) reaches the judge
            self.prompts.append(request.prompt)
            text = self.reply(request.prompt)
            record(key, self._completion(text, len(request.prompt.split()), len(text.split()), 0.0, 0.0, "stop"))


def item(qid: str, a: list[str], b: list[str], question: str | None = None) -> dict:
    return {"qid": qid, "question": question or f"Is thing {qid} real?", "questions_a": a, "questions_b": b}


ITEMS = [
    item("q1", [MARK, "Who made it?"], ["When was it made?"]),        # A has the marker
    item("q2", ["Who made it?"], ["Where is it?", MARK]),             # B has it
    item("q3", [MARK], ["How big is it?"]),                            # A
    item("q4", ["Who?"], ["What?"]),                                   # neither: tie
    item("q5", [], [MARK]),                                            # A wrote none: B
]


# --- the prompt ----------------------------------------------------------------------------

def test_prompt_shows_both_sets_none_and_the_verdict_format_only():
    prompt = judge_prompt("Is  water\nwet?", ["Is water a liquid?", "  "], [])
    assert "Yes/no question: Is water wet?" in prompt
    assert shown_sets(prompt) == (["Is water a liquid?"], [])
    assert "Set 2:\n(none)" in prompt
    for verdict in ("Verdict: 1", "Verdict: 2", "Verdict: tie"):
        assert verdict in prompt
    # no model names, no answer: the prompt is a function of the question and the two sets only
    assert not re.search(r"model|questions_a|questions_b|gold|correct answer is", prompt, re.IGNORECASE)
    assert judge_prompt("Q?", ["a?"], ["b?"]) != judge_prompt("Q?", ["b?"], ["a?"])
    assert parse_verdict(prompt) == "invalid"  # echoing the instructions is not a verdict


# --- parse_verdict -------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Set 1 is more relevant.\nVerdict: 1", "first"),
    ("Verdict: 2", "second"),
    ("verdict: TIE", "tie"),
    ("VERDICT: Set 1", "first"),
    ("**Verdict:** Set 2", "second"),
    ("**Verdict: 1**", "first"),
    ("Final verdict: equal", "tie"),
    ("Verdict: 2 (Set 2 settles the question)", "second"),
    ("Verdict: [1]", "first"),
    ("Verdict: 1\nOn reflection, Set 2 covers more.\nVerdict: 2", "second"),  # the last line counts
    ("Verdict: 2\nVerdict: unsure", "invalid"),
    ("1", "first"),
    ("  2.\n", "second"),
    ("Tie", "tie"),
    ("Set 1", "first"),
    ("I prefer Set 1", "invalid"),
    ("Verdict: 1, 2 or tie", "invalid"),
    ("Verdict: 1/2/tie", "invalid"),
    ("Verdict: 1 or 2", "invalid"),
    ("Verdict: 12", "invalid"),
    ("Verdict:", "invalid"),
    ("", "invalid"),
    (None, "invalid"),
])
def test_parse_verdict(text, expected):
    assert parse_verdict(text) == expected


# --- judge_pairs with canned judges --------------------------------------------------------

def test_the_marked_model_wins_in_both_orders():
    judge = CannedJudge(marker_reply)
    frame = judge_pairs(judge, ITEMS, progress=False)
    assert list(frame.columns) == ["qid", "verdict_ab", "verdict_ba", "score_a", "outcome", "position_flip",
                                   "reason", "text_ab", "text_ba", "prompt_tokens", "completion_tokens", "cost_usd"]
    assert len(judge.prompts) == 2 * len(ITEMS)
    assert frame["qid"].tolist() == [i["qid"] for i in ITEMS]
    assert frame["verdict_ab"].tolist() == ["a", "b", "a", "tie", "b"]
    assert frame["verdict_ba"].tolist() == ["a", "b", "a", "tie", "b"]
    assert frame["score_a"].tolist() == [1.0, 0.0, 1.0, 0.5, 0.0]
    assert frame["outcome"].tolist() == ["a", "b", "a", "tie", "b"]
    assert not frame["position_flip"].any() and (frame["reason"] == "").all()
    # each question shown once in each order: Set 1 = A, then Set 1 = B
    for index, it in enumerate(ITEMS):
        assert shown_sets(judge.prompts[2 * index]) == (it["questions_a"], it["questions_b"])
        assert shown_sets(judge.prompts[2 * index + 1]) == (it["questions_b"], it["questions_a"])
    assert frame.loc[0, "text_ab"].endswith("Verdict: 1") and frame.loc[0, "text_ba"].endswith("Verdict: 2")
    summary = summarize(frame)
    assert (summary["wins_a"], summary["wins_b"], summary["ties"], summary["invalid"]) == (2, 2, 1, 0)
    assert summary["win_rate"] == pytest.approx(0.5)


def test_pure_position_bias_is_a_tie_everywhere():
    judge = CannedJudge(lambda prompt: "1")
    frame = judge_pairs(judge, ITEMS, progress=False)
    assert (frame["verdict_ab"] == "a").all() and (frame["verdict_ba"] == "b").all()
    assert (frame["outcome"] == "tie").all() and frame["position_flip"].all()
    summary = summarize(frame)
    assert summary["win_rate"] == 0.5 and summary["ties"] == len(ITEMS) and summary["position_flips"] == len(ITEMS)
    assert summary["wins_a"] == summary["wins_b"] == 0 and summary["p_value"] == 1.0
    assert summary["ci_low"] == summary["ci_high"] == 0.5
    # always "Set 2" is the same bias the other way
    frame2 = judge_pairs(CannedJudge(lambda prompt: "Verdict: Set 2"), ITEMS, progress=False)
    assert (frame2["verdict_ab"] == "b").all() and frame2["position_flip"].all()
    assert (frame2["outcome"] == "tie").all()


def test_ties_invalid_replies_and_mixed_orders():
    replies = {  # (qid, order) -> reply; the order is read from which set the prompt shows first
        ("q1", "ab"): "Verdict: tie", ("q1", "ba"): "Verdict: tie",          # explicit tie
        ("q2", "ab"): "No idea.", ("q2", "ba"): "Verdict: maybe",            # both invalid
        ("q3", "ab"): "Verdict: 1", ("q3", "ba"): "Verdict: tie",            # A, tie -> A (0.75)
        ("q4", "ab"): "Verdict: tie", ("q4", "ba"): "Verdict: 1",            # tie, B -> B (0.25)
        ("q5", "ab"): "Verdict: 2", ("q5", "ba"): "garbage",                 # B, invalid -> B (0.25)
    }
    by_prompt = {}
    for it in ITEMS:
        by_prompt[judge_prompt(it["question"], it["questions_a"], it["questions_b"])] = (it["qid"], "ab")
        by_prompt[judge_prompt(it["question"], it["questions_b"], it["questions_a"])] = (it["qid"], "ba")
    frame = judge_pairs(CannedJudge(lambda prompt: replies[by_prompt[prompt]]), ITEMS, progress=False)
    assert frame["verdict_ab"].tolist() == ["tie", "invalid", "a", "tie", "b"]
    assert frame["verdict_ba"].tolist() == ["tie", "invalid", "tie", "b", "invalid"]
    assert frame["score_a"].tolist() == [0.5, 0.5, 0.75, 0.25, 0.25]
    assert frame["outcome"].tolist() == ["tie", "tie", "a", "b", "b"]
    assert not frame["position_flip"].any()
    summary = summarize(frame)
    assert summary["invalid"] == 3 and summary["ties"] == 2
    assert (summary["wins_a"], summary["wins_b"]) == (1, 2)
    assert summary["win_rate"] == pytest.approx(2.25 / 5)


def test_both_empty_makes_no_call_and_long_texts_are_truncated():
    judge = CannedJudge(lambda prompt: "x" * 2000 + "\nVerdict: 1")
    items = [item("e1", [], []), item("e2", ["  "], None), item("q1", ["Who?"], [])]
    frame = judge_pairs(judge, items, progress=False)
    assert len(judge.prompts) == 2  # only q1
    assert "Set 2:\n(none)" in judge.prompts[0] and "Set 1:\n(none)" in judge.prompts[1]
    skipped = frame.iloc[:2]
    assert (skipped["verdict_ab"] == "skipped").all() and (skipped["verdict_ba"] == "skipped").all()
    assert (skipped["reason"] == "no_questions").all() and (skipped["outcome"] == "tie").all()
    assert (skipped["score_a"] == 0.5).all() and not skipped["position_flip"].any()
    assert (skipped["text_ab"] == "").all()
    assert frame.loc[2, "reason"] == "" and frame.loc[2, "position_flip"]
    assert len(frame.loc[2, "text_ab"]) == 500
    # nothing to judge at all: no call, still a frame
    empty_judge = CannedJudge(lambda prompt: pytest.fail("called"))
    assert judge_pairs(empty_judge, [item("e", [], [])], progress=False)["reason"].tolist() == ["no_questions"]
    assert judge_pairs(empty_judge, [], progress=False).empty


# --- summarize -----------------------------------------------------------------------------

def hand_frame(scores: list[float]) -> pd.DataFrame:
    outcome = ["a" if s > 0.5 else "b" if s < 0.5 else "tie" for s in scores]
    return pd.DataFrame({"qid": [f"q{i}" for i in range(len(scores))], "verdict_ab": "tie", "verdict_ba": "tie",
                         "score_a": scores, "outcome": outcome, "position_flip": False, "reason": "",
                         "text_ab": "", "text_ba": ""})


def test_summarize_on_a_hand_built_frame():
    frame = hand_frame([1.0, 1.0, 1.0, 0.75, 0.0, 0.5, 0.5, 0.25])
    frame.loc[3, "verdict_ba"] = "invalid"
    frame.loc[5, ["verdict_ab", "verdict_ba", "position_flip"]] = ["a", "b", True]
    summary = summarize(frame, seed=1, resamples=4000)
    assert (summary["n"], summary["wins_a"], summary["wins_b"], summary["ties"]) == (8, 4, 2, 2)
    assert summary["invalid"] == 1 and summary["position_flips"] == 1
    assert summary["win_rate"] == pytest.approx(5.0 / 8)
    # exact two-sided sign test, 4 of 6: 2 * (C(6,4) + C(6,5) + C(6,6)) / 2^6 = 44 / 64
    assert summary["p_value"] == pytest.approx(44 / 64)
    assert 0.0 <= summary["ci_low"] < summary["win_rate"] < summary["ci_high"] <= 1.0
    assert summarize(frame, seed=1, resamples=4000) == summary  # deterministic for a fixed seed
    other = summarize(frame, seed=2, resamples=4000)
    assert (other["ci_low"], other["ci_high"]) != (summary["ci_low"], summary["ci_high"])
    # the interval is the percentile bootstrap of the mean
    rng = np.random.default_rng(1)
    scores = frame["score_a"].to_numpy()
    means = np.concatenate([scores[rng.integers(0, 8, size=(1000, 8))].mean(axis=1) for _ in range(4)])
    assert (summary["ci_low"], summary["ci_high"]) == tuple(np.percentile(means, [2.5, 97.5]))


def test_summarize_sign_test_edges():
    strong = summarize(hand_frame([1.0] * 10 + [0.5] * 3), resamples=500)
    assert strong["p_value"] == pytest.approx(2 / 2 ** 10) and strong["wins_a"] == 10 and strong["ties"] == 3
    assert strong["ci_high"] == 1.0
    assert summarize(hand_frame([0.5, 0.5]))["p_value"] == 1.0
    empty = summarize(hand_frame([]))
    assert empty["n"] == 0 and empty["p_value"] == 1.0 and np.isnan(empty["win_rate"])


# --- make_judge and the openai backend -----------------------------------------------------

@pytest.fixture
def judge_server(api_key, monkeypatch):
    """The fake OpenAI server, answering judge prompts with :func:`marker_reply`."""
    monkeypatch.setattr(fake_openai_server, "teacher_text", lambda answer, prompt, seed: marker_reply(prompt))
    with FakeOpenAIServer(api_key=api_key) as server:
        yield server


def judge_settings(server, **overrides) -> dict:
    settings = dict(teacher_defaults(), backend="openai", base_url=server.base_url, temperature=0.0,
                    max_tokens=64, concurrency=4, timeout_s=5.0, max_retries=1)
    settings.update(overrides)
    return settings


def test_make_judge_checks_the_backend(monkeypatch, tmp_path):
    for backend in ("gold", None, "claude"):
        with pytest.raises(InputError, match=r"^judge.backend: .* is not one of openai, hf"):
            make_judge(dict(teacher_defaults(), backend=backend))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"^judge.backend is openai but OPENAI_API_KEY is not set"):
        make_judge(dict(teacher_defaults(), backend="openai"), cache_path=False)


def test_openai_judge_both_orders_cached_rerun_and_no_key(judge_server, api_key, tmp_path):
    server = judge_server
    cache = tmp_path / "cache" / "judge.sqlite"
    judge = make_judge(judge_settings(server, cache=str(cache)))
    assert judge.role == "judge" and judge.backend == "openai"
    frame = judge_pairs(judge, ITEMS + [item("e", [], [])], progress=False)
    judge.close()
    seen = server.snapshot()
    assert len(seen) == 2 * len(ITEMS) and judge.spend.requests_made == 2 * len(ITEMS)
    prompts = [record["body"]["messages"][-1]["content"] for record in seen]
    for it in ITEMS:  # both orders reached the server
        shown = [shown_sets(p) for p in prompts if f"Is thing {it['qid']} real?" in p]
        assert sorted(shown) == sorted([(it["questions_a"], it["questions_b"]),
                                        (it["questions_b"], it["questions_a"])])
    assert frame["outcome"].tolist() == ["a", "b", "a", "tie", "b", "tie"]
    assert frame["reason"].tolist()[-1] == "no_questions"
    assert cache.exists()

    rerun = make_judge(judge_settings(server), cache_path=cache)
    again = judge_pairs(rerun, ITEMS + [item("e", [], [])], progress=False)
    assert len(server.snapshot()) == len(seen)  # zero new requests
    assert rerun.spend.requests_made == 0 and rerun.spend.cache_hits == 2 * len(ITEMS)
    assert rerun.spend.cost_usd == 0
    pd.testing.assert_frame_equal(again, frame)

    dumped = frame.to_json() + frame.to_csv() + repr(summarize(frame)) + repr(judge) + repr(judge.spend.as_dict())
    assert api_key not in dumped
    assert api_key.encode() not in cache.read_bytes()


def test_openai_judge_has_its_own_spend_cap(judge_server, tmp_path):
    judge = make_judge(judge_settings(judge_server, concurrency=1, max_total_tokens=1),
                       cache_path=tmp_path / "judge.sqlite")
    with pytest.raises(SpendCapReached) as info:
        judge_pairs(judge, ITEMS, progress=False)
    message = str(info.value)
    assert message.startswith("judge spend cap reached (judge.max_total_tokens)")
    assert "teacher" not in message
    assert judge.cap_reached() == ["judge.max_total_tokens"]
    assert judge.spend.requests_made == 1 == len(judge_server.paid())


def test_hf_judge_on_the_tiny_model_gives_invalid_ties(tiny_model_dir, tmp_path):
    settings = dict(teacher_defaults(), backend="hf", model=str(tiny_model_dir), max_tokens=8,
                    temperature=0.0, concurrency=4)
    judge = make_judge(settings, cache_path=tmp_path / "hf.sqlite")
    assert judge.role == "judge" and judge.backend == "hf"
    frame = judge_pairs(judge, ITEMS[:2], progress=False)
    assert judge.spend.requests_made == 4
    # a random model writes junk: unreadable verdicts count as ties
    summary = summarize(frame)
    assert summary["invalid"] == 4 and summary["ties"] == 2 and summary["win_rate"] == 0.5
    judge.close()
    rerun = make_judge(settings, cache_path=tmp_path / "hf.sqlite")
    pd.testing.assert_frame_equal(judge_pairs(rerun, ITEMS[:2], progress=False), frame)
    assert rerun._model is None and rerun.spend.requests_made == 0  # served from the cache


# --- the rule's logic, in the library ----------------------------------------------------------

def test_judge_models_compares_every_pair_from_the_drafts_files(tmp_path):
    from clarify.judge import judge_models

    def drafts(name: str, marked: set[str]) -> str:
        path = tmp_path / f"{name}.parquet"
        generated = [f"Yes - because.\nQuestions: {MARK if qid in marked else 'Who made it?'} Where?"
                     for qid in ("q1", "q2", "q3")]
        pd.DataFrame({"qid": ["q1", "q2", "q3"], "generated": generated}).to_parquet(path)
        return str(path)

    paths = {"phaseC": drafts("c", {"q1", "q2"}), "phaseA": drafts("a", {"q3"}), "base": drafts("b", set())}
    questions = {qid: f"Is thing {qid} real?" for qid in ("q1", "q2", "q3")}
    judge = CannedJudge(marker_reply)
    table, summaries = judge_models(judge, questions, paths, [["phaseC", "phaseA"], ["phaseC", "base"]],
                                    max_questions=None, seed=0, progress=False)
    assert list(table.columns[:3]) == ["model_a", "model_b", "qid"] and len(table) == 6
    assert [(s["model_a"], s["model_b"], s["wins_a"], s["wins_b"]) for s in summaries] == [
        ("phaseC", "phaseA", 2, 1), ("phaseC", "base", 2, 0)]
    short, _ = judge_models(CannedJudge(marker_reply), questions, paths, [["phaseC", "phaseA"]],
                            max_questions=2, progress=False)
    assert short["qid"].tolist() == ["q1", "q2"]
    other = tmp_path / "other.parquet"
    pd.DataFrame({"qid": ["q9"], "generated": ["Yes - x.\nQuestions: Who?"]}).to_parquet(other)
    with pytest.raises(InputError, match="phaseC and odd drafted different questions"):
        judge_models(judge, questions, {**paths, "odd": str(other)}, [["phaseC", "odd"]], progress=False)


def test_the_judges_unreadable_replies_are_final_in_the_cache(judge_server, tmp_path, monkeypatch):
    monkeypatch.setattr(fake_openai_server, "teacher_text", lambda answer, prompt, seed: "I cannot decide.")
    judge = make_judge(judge_settings(judge_server), cache_path=tmp_path / "judge.sqlite")
    assert judge.reask_invalid is False
    judge_pairs(judge, ITEMS[:2], progress=False)
    judge.close()
    rerun = make_judge(judge_settings(judge_server), cache_path=tmp_path / "judge.sqlite")
    frame = judge_pairs(rerun, ITEMS[:2], progress=False)
    assert rerun.spend.requests_made == 0 and (frame["verdict_ab"] == "invalid").all()
