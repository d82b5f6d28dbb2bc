"""The parsers on a corpus of real chat-model replies (issue 18).

tests/data/replies/teacher.jsonl and judge.jsonl hold replies of a real chat model to the
project's own teacher, rationalization and judge prompts (made by generate.py there, turned into
fixtures by expect.py). Each record's ``expected`` is what the reply says, read by a person:
the final yes/no answer, the steps of the Step-by-Step Reasoning section (one per top-level
item, its sub-bullets and continuation lines folded in, markdown removed), the judge's verdict,
and for a reply that states no answer, the reason it is refused (:data:`TEACHER_REASONS`).
Every committed reply is a test; the parse rate on replies that state an answer must be 100%.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from clarify.parsing import TEACHER_REASONS, VERDICT_REASONS, parse_judge_reply, parse_teacher_reply

REPLIES = Path(__file__).resolve().parent / "data" / "replies"
# reasons that mean "the reply states no usable answer" (the rest, no_steps, is a reply with an
# answer but no steps to teach from)
NO_ANSWER = {"empty", "no_final_section", "no_answer", "contradictory_answer"}
MARKDOWN = re.compile(r"\*\*|__|`|^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s|^#")


def _load(name: str) -> list[dict]:
    path = REPLIES / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


TEACHER = _load("teacher.jsonl")
JUDGE = _load("judge.jsonl")
needs_corpus = pytest.mark.skipif(not TEACHER or not JUDGE, reason=(
    "no real-reply corpus in tests/data/replies/ (teacher.jsonl, judge.jsonl): make it with generate.py "
    "and expect.py there"))


@needs_corpus
def test_the_corpus_is_a_few_dozen_well_formed_replies():
    assert len(TEACHER) >= 20 and len(JUDGE) >= 5
    ids = [r["id"] for r in TEACHER + JUDGE]
    assert len(ids) == len(set(ids))
    for record in TEACHER:
        expected = record["expected"]
        assert record["kind"] in ("teacher", "rationalize") and record["reply"].strip() and record["model"]
        assert expected["final"] in (True, False, None)
        assert expected["reason"] is None or expected["reason"] in TEACHER_REASONS
        # an answer and steps, or a reason; an answer with no steps is refused for the steps
        parses = expected["final"] is not None and bool(expected["steps"])
        assert (expected["reason"] is None) == parses, record["id"]
        if expected["final"] is None:
            assert expected["reason"] in NO_ANSWER, record["id"]
    for record in JUDGE:
        expected = record["expected"]
        assert expected["verdict"] in ("first", "second", "tie", "invalid")
        assert (expected["reason"] is None) == (expected["verdict"] != "invalid")
        assert expected["reason"] is None or expected["reason"] in VERDICT_REASONS


@pytest.mark.parametrize("record", TEACHER, ids=[r["id"] for r in TEACHER])
def test_teacher_reply(record):
    reply = parse_teacher_reply(record["reply"])
    expected = record["expected"]
    assert reply.final == expected["final"]
    assert reply.steps == expected["steps"]
    assert reply.reason == expected["reason"]
    for step in reply.steps:  # steps enter the Track B corpus and the pairs as plain text
        assert not MARKDOWN.search(step), step
        assert "\n" not in step and step == step.strip()


@pytest.mark.parametrize("record", JUDGE, ids=[r["id"] for r in JUDGE])
def test_judge_reply(record):
    reply = parse_judge_reply(record["reply"])
    assert (reply.verdict, reply.reason) == (record["expected"]["verdict"], record["expected"]["reason"])


@needs_corpus
def test_every_reply_that_states_an_answer_parses():
    """The issue's parse rate: 100% of the replies with an answer; the others refused, with the reason."""
    answered = [r for r in TEACHER if r["expected"]["final"] is not None]
    parsed = [r["id"] for r in answered if parse_teacher_reply(r["reply"]).final == r["expected"]["final"]]
    assert answered and len(parsed) == len(answered), sorted({r["id"] for r in answered} - set(parsed))
    for record in TEACHER:
        if record["expected"]["final"] is None:
            reason = parse_teacher_reply(record["reply"]).reason
            assert reason in NO_ANSWER and reason == record["expected"]["reason"], record["id"]


@needs_corpus
def test_every_judge_reply_with_a_verdict_is_read():
    stated = [r for r in JUDGE if r["expected"]["verdict"] != "invalid"]
    assert stated and all(parse_judge_reply(r["reply"]).verdict == r["expected"]["verdict"] for r in stated)
    for record in JUDGE:
        if record["expected"]["verdict"] == "invalid":
            assert parse_judge_reply(record["reply"]).reason == record["expected"]["reason"]


# --- replies without an answer: each real reply cut where max_tokens could have cut it ---------

_FINAL_HEADING = re.compile(r"^.*final\s+assessment", re.IGNORECASE | re.MULTILINE)
_BOLD_ANSWER = re.compile(r"\*\*\s*(?:yes|no)\b", re.IGNORECASE)
_VERDICT = re.compile(r"verdict\s*:", re.IGNORECASE)


@pytest.mark.parametrize("record", TEACHER, ids=[r["id"] for r in TEACHER])
def test_a_reply_cut_before_its_answer_is_refused(record):
    """Every committed reply, cut before its Final Assessment heading and then right before its
    bolded answer (``the answer is: ``), is refused with the matching reason, not guessed."""
    text = record["reply"]
    heading = list(_FINAL_HEADING.finditer(text))[-1]
    before_heading = parse_teacher_reply(text[:heading.start()])
    assert (before_heading.final, before_heading.reason) == (None, "no_final_section")
    answer = list(_BOLD_ANSWER.finditer(text))[-1]
    assert answer.start() > heading.start()
    before_answer = parse_teacher_reply(text[:answer.start()])
    assert (before_answer.final, before_answer.reason) == (None, "no_answer")


@pytest.mark.parametrize("record", JUDGE, ids=[r["id"] for r in JUDGE])
def test_a_judge_reply_cut_before_its_verdict_is_refused(record):
    text = record["reply"]
    cut = list(_VERDICT.finditer(text))[-1].start()
    assert parse_judge_reply(text[:cut]) == ("invalid", "no_verdict")
