import numpy as np
import pytest
import torch

from clarify import scoring
from clarify.models import load_model, load_tokenizer, prepare_student
from clarify.prompts import ANSWER_CUE, answer_completion, answer_prompt
from clarify.scoring import AnswerTokens, answer_tokens, score_prompts, score_questions

QUESTIONS = [
    "Is the sky blue?",
    "Could a llama birth twice during the War in Vietnam (1945-46)?",
    "Would a Monoamine Oxidase candy bar cheer up a depressed friend who takes many medications daily?",
    "Is a platypus a mammal?",
    "Did Aristotle use a laptop?",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    manifest = prepare_student(str(tiny_model_dir), out / "hf", out / "manifest.json")
    return load_model(manifest, {"dtype": "float32"}), load_tokenizer(manifest["path"])


def brute_force(model, tokenizer, prompt, continuation):
    """log P(continuation | prompt) from one unpadded pass with full logits."""
    ids = tokenizer(prompt)["input_ids"] + list(continuation)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    logprobs = torch.log_softmax(logits.float(), -1)
    start = len(ids) - len(continuation)
    return sum(logprobs[start + j - 1, tok].item() for j, tok in enumerate(continuation))


def test_prompt_ends_at_answer_slot_and_completion_is_what_is_scored():
    prompt = answer_prompt("  Is   the sky blue? ", context="Answer: Yes - it is\nQuestions: Why?")
    assert prompt.startswith("Question: Is the sky blue?\n")
    assert prompt.endswith("\n" + ANSWER_CUE)
    assert "Questions: Why?" in prompt
    assert answer_prompt("Q?") == "Question: Q?\nAnswer:"
    assert answer_completion(True) == " Yes" and answer_completion(False) == " No"


def test_answer_tokens_are_the_continuation_ids(tiny):
    _, tokenizer = tiny
    tokens = answer_tokens(tokenizer)
    prompt = answer_prompt("Is the sky blue?")
    assert tokenizer(prompt + " Yes")["input_ids"] == tokenizer(prompt)["input_ids"] + list(tokens.yes)
    assert tokens.yes != tokens.no


def test_batched_mixed_lengths_match_one_at_a_time(tiny):
    model, tokenizer = tiny
    prompts = [answer_prompt(q) for q in QUESTIONS]
    lengths = {len(tokenizer(p)["input_ids"]) for p in prompts}
    assert len(lengths) > 2, "the test needs prompts of different lengths"
    batched = score_prompts(model, tokenizer, prompts, batch_size=5, progress=False)
    single = np.vstack([score_prompts(model, tokenizer, [p], batch_size=1, progress=False) for p in prompts])
    np.testing.assert_allclose(batched[:, 0] - batched[:, 1], single[:, 0] - single[:, 1], atol=1e-4)
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_single_token_scores_equal_full_logit_computation(tiny):
    model, tokenizer = tiny
    tokens = answer_tokens(tokenizer)
    prompt = answer_prompt(QUESTIONS[1])
    got = score_prompts(model, tokenizer, [prompt, answer_prompt(QUESTIONS[0])], batch_size=2, progress=False)[0]
    assert got[0] == pytest.approx(brute_force(model, tokenizer, prompt, tokens.yes), abs=1e-4)
    assert got[1] == pytest.approx(brute_force(model, tokenizer, prompt, tokens.no), abs=1e-4)


def test_multi_token_continuations_are_summed_over_tokens(tiny, monkeypatch):
    """A tokenizer that splits ' Yes' into two ids is scored on the whole continuation."""
    model, tokenizer = tiny
    real = answer_tokens(tokenizer)
    fake = AnswerTokens(yes=(real.yes[0], real.no[0]), no=(real.no[0],))
    monkeypatch.setattr(scoring, "answer_tokens", lambda tok, prompt=None: fake)
    prompts = [answer_prompt(q) for q in QUESTIONS]
    got = score_prompts(model, tokenizer, prompts, batch_size=3, progress=False)
    for row, prompt in enumerate(prompts):
        assert got[row, 0] == pytest.approx(brute_force(model, tokenizer, prompt, fake.yes), abs=1e-4)
        assert got[row, 1] == pytest.approx(brute_force(model, tokenizer, prompt, fake.no), abs=1e-4)


def test_score_questions_frame(tiny):
    model, tokenizer = tiny
    records = [{"qid": f"q{i}", "question": q, "answer": i % 2 == 0} for i, q in enumerate(QUESTIONS)]
    frame = score_questions(model, tokenizer, records, batch_size=2, progress=False)
    assert list(frame.columns) == ["qid", "gold", "logp_yes", "logp_no", "margin", "pred", "correct"]
    assert list(frame["qid"]) == [r["qid"] for r in records]
    assert (frame["pred"] == (frame["logp_yes"] > frame["logp_no"])).all()
    assert (frame["correct"] == (frame["pred"] == frame["gold"])).all()
    assert (frame["logp_yes"] < 0).all() and (frame["logp_no"] < 0).all()


def test_out_of_memory_halves_the_scoring_batch_and_changes_nothing(tiny, monkeypatch, caplog):
    """The own-sample scorer ran out of memory at 1,024 prompts a batch on a shared GPU: it must
    go on at half the size with the same scores, not fail the job."""
    model, tokenizer = tiny
    prompts = [answer_prompt(f"Is {n} a number that people like{'?' * (n % 3 + 1)}") for n in range(7)]
    expected = score_prompts(model, tokenizer, prompts, batch_size=7, progress=False)
    real, sizes = model.forward, []

    def small_memory(*args, **kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "forward", small_memory)
    got = score_prompts(model, tokenizer, prompts, batch_size=7, progress=False)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert sizes[:2] == [7, 3] and all(size <= 2 for size in sizes[2:])
    assert "out of memory at 7 prompts a batch; going on with 3" in caplog.text
