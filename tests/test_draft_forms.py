"""Drafts with a first guess (the default, byte-identical to the seed's format) and without one
(``drafts.include_guess: false``): request, parsing, context, stored raw text, scoring."""

import numpy as np
import pytest

from clarify.drafts import draft_from_raw, generate_drafts
from clarify.models import load_model, load_tokenizer
from clarify.prompts import answer_prompt, draft_context, draft_cue, draft_request, parse_draft, parse_raw_draft
from clarify.scoring import score_prompts, score_questions

GUESS_REQUEST = (
    "Give your first guess to the yes/no question with a brief reason, then the clarifying sub-questions you "
    "would need answered to be sure. Use exactly this format:\nAnswer: <Yes/No> - <brief reasoning>\n"
    "Questions: <focused question>? <key uncertainty>?\n\nQuestion: Is the sky blue?\nAnswer:"
)


def test_default_draft_prompts_are_unchanged():
    assert draft_request("Is  the sky blue?") == GUESS_REQUEST
    assert draft_request("Is the sky blue?", include_guess=True) == GUESS_REQUEST
    parsed = parse_draft(" No - too cold.\nQuestions: How cold? Is ice solid?")
    assert parsed == {"guess": False, "reason": "too cold.", "questions": ["How cold?", "Is ice solid?"],
                      "parse_ok": True}
    assert draft_context(parsed) == "Draft guess: No - too cold.\nDraft questions: How cold? Is ice solid?"
    assert draft_context({**parse_draft(" junk"), "raw": "Answer: junk"}) == "Draft: junk"
    assert draft_context({**parse_draft(" Maybe\nQuestions: What?"), "raw": "Answer: Maybe Questions: What?"}) \
        == "Draft: Maybe Questions: What?"
    assert draft_cue() == "Answer:"
    assert draft_from_raw("Answer: Yes - warm.\nQuestions: Why?") == {
        "raw": "Answer: Yes - warm.\nQuestions: Why?", "guess": True, "reason": "warm.", "questions": ["Why?"],
        "parse_ok": True}


def test_request_without_a_guess_asks_only_for_questions():
    request = draft_request("Is  the sky blue?", include_guess=False)
    assert request.endswith("\n\nQuestion: Is the sky blue?\nQuestions:")
    assert "Answer" not in request and "guess" not in request.lower()
    assert draft_cue(False) == "Questions:"


@pytest.mark.parametrize("text, questions, ok", [
    (" How cold is it? Is ice solid?", ["How cold is it?", "Is ice solid?"], True),
    (" Questions: How cold? \nAnswer: No", ["How cold?"], True),
    (" Is it? trailing words", ["Is it?"], True),
    (" no question here", [], False),
    ("", [], False),
])
def test_parse_draft_without_a_guess(text, questions, ok):
    parsed = parse_draft(text, include_guess=False)
    assert parsed == {"guess": None, "reason": "", "questions": questions, "parse_ok": ok}
    assert parse_raw_draft("Questions:" + text) == parsed


def test_context_without_a_guess_shows_only_the_questions():
    draft = draft_from_raw("Questions: How cold is it? Is ice solid?")
    assert draft["parse_ok"] and draft["guess"] is None
    assert draft_context(draft) == "Draft questions: How cold is it? Is ice solid?"
    unparsed = draft_from_raw("Questions: nothing to ask")
    assert not unparsed["parse_ok"] and draft_context(unparsed) == "Draft: Questions: nothing to ask"


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model({"path": str(tiny_model_dir)}, {"dtype": "float32"}), load_tokenizer(str(tiny_model_dir))


def test_draft_without_a_guess_is_generated_parsed_and_scored(tiny):
    model, tokenizer = tiny
    records = [{"qid": "a", "question": "Is the sky blue?", "answer": True},
               {"qid": "b", "question": "Did Aristotle use a laptop?", "answer": False}]
    settings = {"max_new_tokens": 6, "batch_size": 2, "do_sample": False, "temperature": 0.7, "seed": 0,
                "include_guess": False}
    rows = generate_drafts(model, tokenizer, records, settings, progress=False)
    assert all(r["raw"].startswith("Questions:") and r["guess"] is None for r in rows)
    assert [draft_from_raw(r["raw"]) for r in rows] == [
        {k: r[k] for k in ("raw", "guess", "reason", "questions", "parse_ok")} for r in rows]
    # A parsed no-guess draft (the tiny model writes junk, so parse one by hand) scores like any context.
    drafts = [draft_from_raw("Questions: What colour is air? Is it day?"), draft_from_raw(rows[1]["raw"])]
    contexts = [draft_context(d) for d in drafts]
    assert contexts[0] == "Draft questions: What colour is air? Is it day?"
    frame = score_questions(model, tokenizer, records, contexts, batch_size=2, progress=False)
    scored = score_prompts(model, tokenizer, [answer_prompt(r["question"], c) for r, c in zip(records, contexts)],
                           batch_size=1, progress=False)
    assert len(frame) == 2 and np.isfinite(scored).all()
    np.testing.assert_allclose(frame["margin"], scored[:, 0] - scored[:, 1], atol=1e-4)
