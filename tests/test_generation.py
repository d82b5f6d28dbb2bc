import pytest
import torch

from clarify.drafts import draft_summary, generate_drafts
from clarify.generation import SeededGumbelSampler, _finish, generate, generate_samples
from clarify.models import load_model, load_tokenizer
from clarify.prompts import draft_context, draft_request, parse_draft

RECORDS = [
    {"qid": "a", "question": "Is the sky blue?", "answer": True},
    {"qid": "b", "question": "Could a llama birth twice during the War in Vietnam (1945-46)?", "answer": False},
    {"qid": "c", "question": "Did Aristotle use a laptop?", "answer": False},
]
SETTINGS = {"max_new_tokens": 12, "batch_size": 2, "do_sample": False, "temperature": 0.7, "seed": 0}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model({"path": str(tiny_model_dir)}, {"dtype": "float32"}), load_tokenizer(str(tiny_model_dir))


def test_greedy_generation_does_not_depend_on_batching(tiny):
    model, tokenizer = tiny
    prompts = [draft_request(r["question"]) for r in RECORDS]
    batched = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=3, progress=False)
    single = [generate(model, tokenizer, [p], max_new_tokens=8, batch_size=1, progress=False)[0] for p in prompts]
    assert batched == single


def test_length_limit_and_token_counts(tiny):
    model, tokenizer = tiny
    out = generate(model, tokenizer, [draft_request("Is the sky blue?")], max_new_tokens=5, progress=False)[0]
    # a random model does not emit EOS in 5 tokens: it is cut by the limit, and says so
    assert out["hit_limit"] and out["n_tokens"] == 5
    assert len(tokenizer(out["text"], add_special_tokens=False)["input_ids"]) == 5


def test_sampling_is_seeded(tiny):
    model, tokenizer = tiny
    prompts = [draft_request(r["question"]) for r in RECORDS]
    kwargs = dict(max_new_tokens=8, do_sample=True, temperature=1.0, progress=False)
    assert generate(model, tokenizer, prompts, seed=3, **kwargs) == generate(model, tokenizer, prompts, seed=3, **kwargs)
    assert generate(model, tokenizer, prompts, seed=3, **kwargs) != generate(model, tokenizer, prompts, seed=4, **kwargs)


def test_stop_strings_end_generation_early(tiny):
    model, tokenizer = tiny
    prompt = draft_request("Is the sky blue?")
    free = generate(model, tokenizer, [prompt], max_new_tokens=10, progress=False)[0]
    stop_at = free["text"][:2]
    cut = generate(model, tokenizer, [prompt], max_new_tokens=10, stop=[stop_at], progress=False)[0]
    assert free["text"].startswith(cut["text"]) and len(cut["text"]) < len(free["text"])
    assert stop_at not in cut["text"] and not cut["hit_limit"]


def test_finish_cuts_at_the_first_stop_string(tiny):
    _, tokenizer = tiny
    ids = tokenizer(" Yes - big.\nQuestions: Why?\n\nQuestion: next", add_special_tokens=False)["input_ids"]
    out = _finish(tokenizer, ids, eos_ids=[tokenizer.eos_token_id], max_new_tokens=len(ids), stop=["\n\n", "\nQuestion:"])
    assert out["text"] == " Yes - big.\nQuestions: Why?"
    assert out["n_tokens"] == len(tokenizer(out["text"], add_special_tokens=False)["input_ids"])
    assert not out["hit_limit"]
    ended = _finish(tokenizer, ids[:3] + [tokenizer.eos_token_id, 5, 6], [tokenizer.eos_token_id], 6, [])
    assert ended["n_tokens"] == 3 and not ended["hit_limit"]
    full = _finish(tokenizer, ids[:4], [tokenizer.eos_token_id], 4, [])
    assert full["hit_limit"]


def test_drafts_keep_every_question_and_flag_unparsed(tiny):
    model, tokenizer = tiny
    rows = generate_drafts(model, tokenizer, RECORDS, SETTINGS, progress=False)
    assert [r["qid"] for r in rows] == ["a", "b", "c"]
    assert [r["gold"] for r in rows] == [True, False, False]
    assert all(r["raw"].startswith("Answer:") for r in rows)
    assert not any(r["parse_ok"] for r in rows)  # a random model writes junk: kept, flagged, counted
    summary = draft_summary(rows)
    assert summary["n"] == 3 and summary["parse_ok"] == 0 and summary["hit_limit"] == 3


@pytest.mark.parametrize("text, guess, questions, ok", [
    (" Yes - llamas are fast.\nQuestions: How long is a llama pregnancy? When was the war?", True,
     ["How long is a llama pregnancy?", "When was the war?"], True),
    (" no, it is too small\nQuestion: Is it small?", False, ["Is it small?"], True),
    (" Yes", True, [], False),
    (" Maybe - unsure\nQuestions: What?", None, ["What?"], False),
    ("", None, [], False),
])
def test_parse_draft(text, guess, questions, ok):
    parsed = parse_draft(text)
    assert (parsed["guess"], parsed["questions"], parsed["parse_ok"]) == (guess, questions, ok)


def test_draft_context_never_repeats_the_answer_cue():
    parsed = parse_draft(" Yes - llamas are fast.\nQuestions: How long? When?")
    context = draft_context(parsed)
    assert context == "Draft guess: Yes - llamas are fast.\nDraft questions: How long? When?"
    assert "Answer:" not in draft_context({**parse_draft(" junk"), "raw": "Answer: junk"})


def test_samples_do_not_depend_on_batching_or_neighbours(tiny):
    """Each sample draws from its own seeded stream: batch size and batch-mates change nothing."""
    model, tokenizer = tiny
    prompts = [draft_request(r["question"]) for r in RECORDS]
    kwargs = dict(max_new_tokens=8, temperature=1.0, seed=5, progress=False)
    together = generate_samples(model, tokenizer, prompts, 3, batch_size=9, **kwargs)
    apart = generate_samples(model, tokenizer, prompts, 3, batch_size=2, **kwargs)
    alone = generate_samples(model, tokenizer, prompts[1:2], 3, batch_size=1, **kwargs)
    assert together == apart and together[1] == alone[0]
    assert any(len({s["text"] for s in per_prompt}) > 1 for per_prompt in together)
    single = generate(model, tokenizer, prompts, do_sample=True, batch_size=1, **kwargs)
    assert single == [per_prompt[0] for per_prompt in together]
    # a prompt repeated k times gets k different samples: the same as generate_samples(k)
    repeated = generate(model, tokenizer, [p for p in prompts for _ in range(3)], do_sample=True, batch_size=4, **kwargs)
    assert repeated == [s for per_prompt in together for s in per_prompt]


def test_sampler_is_an_exact_draw_at_the_temperature():
    """Gumbel-max on logits / T picks each token with probability softmax(logits / T)."""
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    sampler = SeededGumbelSampler([123], temperature=0.5, device="cpu")
    counts = torch.zeros(4)
    for _ in range(20000):
        counts[sampler(None, logits).argmax()] += 1
    expected = torch.softmax(logits[0] / 0.5, -1)
    assert torch.allclose(counts / counts.sum(), expected, atol=0.01)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SeededGumbelSampler([1], temperature=0.0, device="cpu")


def test_out_of_memory_halves_the_batch_and_changes_nothing(tiny, monkeypatch, caplog):
    model, tokenizer = tiny
    prompts = [draft_request(r["question"]) for r in RECORDS]
    kwargs = dict(max_new_tokens=6, temperature=1.0, seed=2, progress=False)
    expected = generate_samples(model, tokenizer, prompts, 2, batch_size=6, **kwargs)
    real, sizes = model.generate, []

    def small_memory(**batch):
        sizes.append(batch["input_ids"].shape[0])
        if batch["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(**batch)

    monkeypatch.setattr(model, "generate", small_memory)
    assert generate_samples(model, tokenizer, prompts, 2, batch_size=6, **kwargs) == expected
    assert sizes == [6, 3] + [1] * 6 and "out of memory at 6 sequences a batch; going on with 3" in caplog.text
