"""Answer-slot scoring: the one way any model's answer is read (DESIGN section 5).

For each prompt ending at the answer slot, the scorer compares log P(" Yes") and log P(" No")
as whole continuations. When both continuations are a single token (the usual case) one
forward pass per question gives both, and only the last position's logits are computed. When
a tokenizer splits a continuation into several tokens, each candidate gets its own pass over
prompt + continuation and its token log-probs are summed. Batches are left-padded with
explicit position ids, so a question's score does not depend on what it was batched with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .batching import in_halving_batches
from .errors import InputError
from .numerics import require_finite
from .prompts import ANSWER_TEXT, answer_prompt


@dataclass(frozen=True)
class AnswerTokens:
    """Token ids of the two answer continuations, as this tokenizer splits them."""

    yes: tuple[int, ...]
    no: tuple[int, ...]

    @property
    def single_token(self) -> bool:
        return len(self.yes) == 1 and len(self.no) == 1


def answer_tokens(tokenizer, prompt: str | None = None) -> AnswerTokens:
    """Find the ids that follow ``prompt`` for " Yes" and " No".

    The continuation ids are the difference between tokenising prompt + continuation and the
    prompt alone, so they are exactly the ids a model trained on ``prompt + " Yes"`` sees.
    """
    prompt = prompt if prompt is not None else answer_prompt("Is this an example?")
    base = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    found = {}
    for answer, text in ANSWER_TEXT.items():
        full = tokenizer(prompt + text, add_special_tokens=False)["input_ids"]
        if full[: len(base)] != base or len(full) == len(base):
            raise InputError(
                f"tokenizer: {text!r} does not tokenise as a continuation of the answer prompt "
                f"(prompt ids {base[-3:]}, with answer {full[-4:]}); the answer slot cannot be scored"
            )
        found[answer] = tuple(full[len(base):])
    if found[True] == found[False]:
        raise InputError("tokenizer: ' Yes' and ' No' map to the same token ids")
    return AnswerTokens(yes=found[True], no=found[False])


def _left_pad(sequences: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def _continuation_logprob(model, prompts: list[list[int]], continuation: tuple[int, ...], pad_id: int):
    """Sum of log P(continuation | prompt) per prompt, from one left-padded pass."""
    n = len(continuation)
    inputs = [p + list(continuation[:-1]) for p in prompts]
    ids, mask, positions = _left_pad(inputs, pad_id, model.device)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=n).logits
    logprobs = torch.log_softmax(logits[:, -n:, :].float(), dim=-1)
    target = torch.tensor(continuation, device=logprobs.device).expand(len(prompts), n)
    return logprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(-1)


@torch.inference_mode()
def score_prompts(model, tokenizer, prompts: list[str], batch_size: int = 16,
                  progress: bool = True, desc: str = "scoring") -> np.ndarray:
    """Return an ``(n, 2)`` array of [log P(" Yes"), log P(" No")] for each prompt.

    Prompts are sorted by length (longest first, so memory trouble shows on the first batch)
    and padded only to the longest in their batch; results come back in the input order. A
    batch that runs out of GPU memory is retried at half the size and the rest go on at that
    size, as in generation: set the batch size high and the largest that fits is used.
    """
    if not prompts:
        return np.zeros((0, 2), dtype=np.float64)
    tokens = answer_tokens(tokenizer, prompts[0])
    encoded = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    pad_id = tokenizer.pad_token_id
    out = np.zeros((len(prompts), 2), dtype=np.float64)
    model.eval()

    def run_batch(idx: list[int]) -> None:
        yes, no = _score_batch(model, [encoded[i] for i in idx], tokens, pad_id)
        out[idx, 0] = yes.double().cpu().numpy()
        out[idx, 1] = no.double().cpu().numpy()

    in_halving_batches(order, batch_size, run_batch, model=model, desc=desc, noun="prompts", progress=progress)
    require_finite(out, f"{desc}: answer-slot log-probabilities")
    return out


def _score_batch(model, batch: list[list[int]], tokens: AnswerTokens, pad_id: int):
    """log P(yes) and log P(no) of one left-padded batch of encoded prompts."""
    if tokens.single_token:
        ids, mask, positions = _left_pad(batch, pad_id, model.device)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
        logprobs = torch.log_softmax(logits[:, -1, :].float(), dim=-1)
        return logprobs[:, tokens.yes[0]], logprobs[:, tokens.no[0]]
    return (_continuation_logprob(model, batch, tokens.yes, pad_id),
            _continuation_logprob(model, batch, tokens.no, pad_id))


def score_questions(model, tokenizer, records: list[dict], contexts: list[str | None] | None = None,
                    batch_size: int = 16, progress: bool = True, desc: str = "scoring") -> pd.DataFrame:
    """Score each record's answer slot; one row per question.

    Columns: qid, gold, logp_yes, logp_no, margin (yes minus no), pred, correct.
    """
    contexts = contexts if contexts is not None else [None] * len(records)
    prompts = [answer_prompt(r["question"], c) for r, c in zip(records, contexts)]
    scores = score_prompts(model, tokenizer, prompts, batch_size=batch_size, progress=progress, desc=desc)
    frame = pd.DataFrame({
        "qid": [r["qid"] for r in records],
        "gold": [bool(r["answer"]) for r in records],
        "logp_yes": scores[:, 0],
        "logp_no": scores[:, 1],
    })
    frame["margin"] = frame["logp_yes"] - frame["logp_no"]
    frame["pred"] = frame["margin"] > 0
    frame["correct"] = frame["pred"] == frame["gold"]
    return frame
