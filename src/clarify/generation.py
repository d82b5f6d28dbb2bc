"""Batched text generation: drafts, chains of reasoning, and anything else a model writes.

Generated text is only ever an intermediate (DESIGN section 5): the answer is scored at the
answer slot, never parsed from what is generated here. Prompts are sorted by length and
left-padded to the longest in their batch; each sequence stops at the first stop string (its
answer line) or EOS, and a batch ends when all of its rows have stopped.

Sampling is seeded per sample, not per batch: row (prompt, j) draws its noise from its own
generator, seeded from (seed, j, the prompt text), and picks ``argmax(logits / T + Gumbel)``,
which is an exact draw from ``softmax(logits / T)`` (the Gumbel-max trick). A sample's noise
therefore does not depend on which other prompts share its batch, on the batch size, or on how
many questions are evaluated, and two runs with the same seed and batch size give the same text.
The logits themselves are not batch-invariant on a GPU: in bf16 they change in the last bits with
the batch's shape, which flips an occasional token (on an H200, Qwen2.5-1.5B's cot predictions
agreed on 85.6-98.8% of questions between batch 256 and 512; docs/results/qwen1.5b/grid_run2).
Temperature 0 is greedy decoding, and then the k samples of a prompt are one generation, copied.
"""

from __future__ import annotations

import hashlib

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .batching import in_halving_batches


class SeededGumbelSampler(LogitsProcessor):
    """Turn greedy decoding into sampling at ``temperature`` with one random stream per row.

    Each row's generator draws one uniform vector over the vocabulary per step, so the t-th
    token of a row depends only on that row's seed, its own text so far, and the model.
    """

    def __init__(self, seeds: list[int], temperature: float, device):
        if temperature <= 0:
            raise ValueError(f"sampling temperature must be > 0 (got {temperature}); use 0 for greedy")
        self.temperature = float(temperature)
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab = scores.shape[-1]
        uniform = torch.stack([torch.rand(vocab, generator=g, device=scores.device) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(uniform.dtype).tiny)))
        return scores.float() / self.temperature + gumbel


def sample_seed(seed: int, sample: int, prompt: str) -> int:
    """The seed of sample ``sample`` of ``prompt``: stable across runs, machines and batchings."""
    digest = hashlib.sha256(f"{seed}\x00{sample}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def generate_samples(model, tokenizer, prompts: list[str], num_samples: int, max_new_tokens: int,
                     batch_size: int = 16, temperature: float = 0.0, seed: int = 0,
                     stop: list[str] | None = None, progress: bool = True,
                     desc: str = "generating") -> list[list[dict]]:
    """``num_samples`` continuations of each prompt: a list of dicts per prompt, in order.

    Each dict is ``{"text", "n_tokens", "hit_limit"}`` (see :func:`generate`); sample j of a
    prompt is seeded from (seed, j, prompt). Temperature 0 is greedy: one generation per prompt,
    copied ``num_samples`` times.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1 (got {num_samples})")
    per_prompt = 1 if temperature == 0 else num_samples
    outputs = _generate_rows(model, tokenizer, [p for p in prompts for _ in range(per_prompt)],
                             [j for _ in prompts for j in range(per_prompt)], max_new_tokens, batch_size,
                             temperature, seed, stop, progress, desc)
    grouped = [outputs[n * per_prompt:(n + 1) * per_prompt] for n in range(len(prompts))]
    if per_prompt == 1:
        grouped = [[dict(group[0]) for _ in range(num_samples)] for group in grouped]
    return grouped


@torch.inference_mode()
def _generate_rows(model, tokenizer, prompts: list[str], samples: list[int], max_new_tokens: int, batch_size: int,
                   temperature: float, seed: int, stop: list[str] | None, progress: bool, desc: str) -> list[dict]:
    """Generate one row per (prompt, sample number); results in row order.

    Rows are sorted by prompt length (longest first; a prompt's samples stay side by side) and
    batched ``batch_size`` rows at a time, left-padded to the longest in the batch. A batch that
    runs out of GPU memory is retried at half the size, and the rest go on at that size: set the
    batch size high and the largest that fits is used (the samples do not depend on it).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (got {temperature})")
    stop = list(stop or [])
    ids_of = {text: tokenizer(text, add_special_tokens=True)["input_ids"] for text in dict.fromkeys(prompts)}
    order = sorted(range(len(prompts)), key=lambda r: -len(ids_of[prompts[r]]))
    results: list[dict | None] = [None] * len(prompts)
    eos_ids = _eos_ids(model, tokenizer)
    model.eval()

    def run_batch(rows: list[int]) -> None:
        new_tokens = _generate_batch(model, tokenizer, [ids_of[prompts[r]] for r in rows],
                                     [sample_seed(seed, samples[r], prompts[r]) for r in rows],
                                     max_new_tokens, temperature, stop, eos_ids)
        for position, r in enumerate(rows):
            results[r] = _finish(tokenizer, new_tokens[position], eos_ids, max_new_tokens, stop)

    in_halving_batches(order, batch_size, run_batch, model=model, desc=desc, noun="sequences", progress=progress)
    return results  # type: ignore[return-value]


def _generate_batch(model, tokenizer, encoded: list[list[int]], seeds: list[int], max_new_tokens: int,
                    temperature: float, stop: list[str], eos_ids: list[int]) -> list[list[int]]:
    """One left-padded ``model.generate`` call; the new token ids of each row.

    Every row stops at EOS or its first stop string (transformers' ``StopStringCriteria`` marks
    the row finished and pads it from then on); the call returns when all rows have stopped.
    """
    batch = tokenizer.pad({"input_ids": encoded}, padding=True, return_tensors="pt")
    batch = {key: value.to(model.device) for key, value in batch.items()}
    kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, "temperature": None, "top_p": None,
              "top_k": None, "pad_token_id": tokenizer.pad_token_id, "eos_token_id": eos_ids}
    if temperature > 0:
        kwargs["logits_processor"] = LogitsProcessorList([SeededGumbelSampler(seeds, temperature, model.device)])
    if stop:
        kwargs.update(stop_strings=stop, tokenizer=tokenizer)
    output = model.generate(**batch, **kwargs)
    return output[:, batch["input_ids"].shape[1]:].tolist()


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 16,
             do_sample: bool = False, temperature: float = 0.7, seed: int = 0,
             stop: list[str] | None = None, progress: bool = True, desc: str = "generating") -> list[dict]:
    """Continue each prompt; return ``{"text", "n_tokens", "hit_limit"}`` per prompt, in order.

    ``text`` is cut at the first of the ``stop`` strings (which is not included); ``n_tokens``
    counts the generated tokens kept before the cut (EOS excluded) and ``hit_limit`` says the
    model was still writing when ``max_new_tokens`` ran out. Greedy unless ``do_sample``. A
    sample is seeded from (seed, n, prompt) where n counts earlier copies of the same prompt in
    ``prompts``: a prompt repeated k times gets k different samples, the same ones as
    ``generate_samples(..., k)``, whatever the batching.
    """
    seen: dict[str, int] = {}
    samples = []
    for prompt in prompts:
        samples.append(seen.get(prompt, 0))
        seen[prompt] = samples[-1] + 1
    return _generate_rows(model, tokenizer, prompts, samples, max_new_tokens, batch_size,
                          temperature if do_sample else 0.0, seed, stop, progress, desc)


def _eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _finish(tokenizer, ids: list[int], eos_ids: list[int], max_new_tokens: int, stop: list[str]) -> dict:
    pad = tokenizer.pad_token_id
    ended = False
    kept = []
    for token in ids:
        if token in eos_ids:
            ended = True
            break
        if token == pad and pad not in eos_ids:
            ended = True
            break
        kept.append(token)
    text = tokenizer.decode(kept, skip_special_tokens=True)
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    if cut >= 0:
        text = text[:cut]
        ended = True
        kept = tokenizer(text, add_special_tokens=False)["input_ids"]
    hit_limit = not ended and len(ids) >= max_new_tokens
    return {"text": text, "n_tokens": len(kept), "hit_limit": hit_limit}
