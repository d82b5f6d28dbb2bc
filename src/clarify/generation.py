"""Batched text generation: drafts, chains of reasoning, and anything else a model writes.

Generated text is only ever an intermediate (DESIGN section 5): the answer is scored at the
answer slot, never parsed from what is generated here. Prompts are sorted by length and
left-padded to the longest in their batch; greedy by default, seeded when sampling.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 16,
             do_sample: bool = False, temperature: float = 0.7, seed: int = 0,
             stop: list[str] | None = None, progress: bool = True, desc: str = "generating") -> list[dict]:
    """Continue each prompt; return ``{"text", "n_tokens", "hit_limit"}`` per prompt, in order.

    ``text`` is cut at the first of the ``stop`` strings (which is not included); ``n_tokens``
    counts the generated tokens kept before the cut (EOS excluded) and ``hit_limit`` says the
    model was still writing when ``max_new_tokens`` ran out.
    """
    stop = list(stop or [])
    encoded = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    results: list[dict | None] = [None] * len(prompts)
    eos_ids = _eos_ids(model, tokenizer)
    model.eval()
    batches = list(range(0, len(order), batch_size))
    for number, start in enumerate(tqdm(batches, desc=desc, unit="batch", disable=not progress)):
        idx = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, padding=True, return_tensors="pt")
        batch = {key: value.to(model.device) for key, value in batch.items()}
        kwargs = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                  "pad_token_id": tokenizer.pad_token_id, "eos_token_id": eos_ids}
        if do_sample:
            torch.manual_seed(seed + number)
            kwargs.update(temperature=temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=tokenizer)
        output = model.generate(**batch, **kwargs)
        new_tokens = output[:, batch["input_ids"].shape[1]:]
        for row, i in enumerate(idx):
            results[i] = _finish(tokenizer, new_tokens[row].tolist(), eos_ids, max_new_tokens, stop)
    return results  # type: ignore[return-value]


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
