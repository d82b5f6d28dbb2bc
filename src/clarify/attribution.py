"""Integrated-gradients attribution of the answer-slot margin to the prompt's tokens.

This module is the one place the attribution is defined:

* The margin is ``f = log P(" Yes") - log P(" No")`` at the answer slot, exactly as
  :func:`clarify.scoring.score_prompts` computes it: the prompt is tokenised with
  ``add_special_tokens=True`` and the answer ids come from :func:`clarify.scoring.answer_tokens`.
  When an answer is several tokens, its continuation is appended and teacher-forced (one pass
  per candidate) and its token log-probs are summed; the continuation's embeddings stay at
  their real values and are not attributed.
* ``f`` is read as a function of the input embeddings ``E`` (``model.get_input_embeddings()``,
  passed as ``inputs_embeds``). The baseline ``B`` is, per position, the pad token's embedding
  (``baseline="pad"``) or zeros (``baseline="zero"``); special tokens (BOS, ...) and, with
  ``keep_first_token`` (the default), the prompt's first token keep their real embedding in
  ``B``, so their attribution is exactly 0. The first position is a causal LM's attention sink:
  a model without BOS (Qwen2.5) puts its sink on the first real token, and replacing that with
  pad makes ``f`` so steep along the path that no affordable number of points integrates it. On
  Qwen2.5-Coder-1.5B (6 test questions, 128 Gauss-Legendre points, H100) the mean relative
  completeness error was 11.1 (median 4.2) with the first token interpolated and 0.025 (median
  0.018) with it kept (``docs/results/qwen1.5b/probe.json``). With BOS the first token is BOS and
  nothing changes.
* With ``E_a = B + a (E - B)`` and quadrature points ``a_k`` with weights ``w_k`` on [0, 1]
  (Gauss-Legendre by default, as Captum; or midpoints ``(k + 0.5) / steps`` with equal weights),
  ``attribution_i = sum_d (E - B)_{i,d} * sum_k w_k dF/dE_{a_k}[i, d]``.
* ``completeness_error = |sum_i attribution_i - (f(E) - f(B))|``; it shrinks as ``steps`` grows.

Near an all-zero input the first RMSNorm makes ``f`` change steeply for small ``a``, so the
"zero" baseline needs many more steps than "pad" to converge; check ``relative_error``. Real
models need more points than tiny ones: on Gemma-3-270M one question's error against a margin
difference of 38 was 44 / 7.1 / 1.2 at 32 / 128 / 512 midpoints and 26 / 2.0 at 32 / 128
Gauss-Legendre points.
"""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .errors import InputError
from .numerics import require_finite
from .prompts import answer_prompt, question_line
from .scoring import answer_tokens

BASELINES = ("pad", "zero")
METHODS = ("gausslegendre", "riemann_middle")


def _accepts_logits_to_keep(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def _logprobs(model, embeds: torch.Tensor, n: int, keep: bool) -> torch.Tensor:
    """float32 log-probs of the last ``n`` positions of each row of ``embeds``."""
    kwargs = {"logits_to_keep": n} if keep else {}
    logits = model(inputs_embeds=embeds, use_cache=False, **kwargs).logits[:, -n:, :]
    return torch.log_softmax(logits.float(), dim=-1)


def _margins(model, embeds: torch.Tensor, tokens, continuations, keep: bool) -> torch.Tensor:
    """f for each row of ``embeds`` (n, T, D), in float32."""
    if tokens.single_token:
        logprobs = _logprobs(model, embeds, 1, keep)[:, -1]
        return logprobs[:, tokens.yes[0]] - logprobs[:, tokens.no[0]]
    summed = []
    for ids, cont in zip((tokens.yes, tokens.no), continuations):
        full = torch.cat([embeds, cont.expand(len(embeds), -1, -1)], dim=1)
        logprobs = _logprobs(model, full, len(ids), keep)
        target = torch.tensor(ids, device=logprobs.device).expand(len(embeds), len(ids))
        summed.append(logprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(-1))
    return summed[0] - summed[1]


def path_points(steps: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Alphas on [0, 1] and their quadrature weights (summing to 1)."""
    if method == "riemann_middle":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    raise InputError(f"attribution.method: must be one of {METHODS}, got {method!r}")


def integrated_gradients(model, tokenizer, prompt: str, steps: int = 50, baseline: str = "pad",
                         batch_size: int = 16, method: str = "gausslegendre", keep_first_token: bool = True) -> dict:
    """IG attribution of the answer-slot margin of ``prompt`` to its tokens (see module docstring).

    Returns ``{"input_ids", "tokens", "offsets" ((0, 0) for special tokens), "attributions"
    (float64, one per token), "margin", "baseline_margin", "completeness_error"}``.
    """
    if baseline not in BASELINES:
        raise InputError(f"attribution.baseline: must be one of {BASELINES}, got {baseline!r}")
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"attribution.steps: must be an integer >= 1, got {steps!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"attribution.batch_size: must be an integer >= 1, got {batch_size!r}")
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"attribution: needs a fast tokenizer (character offsets); got {type(tokenizer).__name__}")
    if baseline == "pad" and tokenizer.pad_token_id is None:
        raise InputError("attribution.baseline: 'pad' needs a tokenizer with a pad token; use 'zero'")

    encoded = tokenizer(prompt, add_special_tokens=True, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    special_ids = set(tokenizer.all_special_ids)
    special = [i in special_ids for i in ids]
    fixed = [sp or (keep_first_token and position == 0) for position, sp in enumerate(special)]
    offsets = [(0, 0) if sp else (int(s), int(e)) for sp, (s, e) in zip(special, encoded["offset_mapping"])]
    tokens = [tokenizer.convert_ids_to_tokens(i) if sp else prompt[s:e]
              for i, sp, (s, e) in zip(ids, special, offsets)]
    answer = answer_tokens(tokenizer, prompt)
    keep = _accepts_logits_to_keep(model)

    model.eval()
    embedding = model.get_input_embeddings()
    device = embedding.weight.device
    with torch.inference_mode(False), torch.enable_grad():
        def embed(token_ids):
            return embedding(torch.tensor([list(token_ids)], dtype=torch.long, device=device))[0].detach()

        real = embed(ids)                                             # (T, D), model dtype
        base = embed([tokenizer.pad_token_id]).expand_as(real) if baseline == "pad" else torch.zeros_like(real)
        mask = torch.tensor(fixed, device=device).unsqueeze(-1)
        base = torch.where(mask, real, base)
        delta = real.float() - base.float()
        continuations = [embed(c[:-1]).unsqueeze(0) for c in (answer.yes, answer.no)]
        with torch.no_grad():
            ends = _margins(model, torch.stack([real, base]), answer, continuations, keep)
        margin, baseline_margin = (float(v) for v in ends)
        require_finite([margin, baseline_margin], "attribution: the answer margin at the prompt and at the baseline")

        points, point_weights = path_points(steps, method)
        alphas = torch.tensor(points, dtype=torch.float32, device=device)
        weights = torch.tensor(point_weights, dtype=torch.float32, device=device)
        grad_sum = torch.zeros_like(delta)
        for chunk, chunk_weights in zip(alphas.split(batch_size), weights.split(batch_size)):
            path = (base.float() + chunk.view(-1, 1, 1) * delta).to(real.dtype).requires_grad_(True)
            values = _margins(model, path, answer, continuations, keep)
            (grad,) = torch.autograd.grad(values.sum(), path)
            grad_sum += (grad.float() * chunk_weights.view(-1, 1, 1)).sum(0)
        attributions = (delta * grad_sum).sum(-1).double().cpu().numpy()
        require_finite(attributions, "attribution: integrated gradients")

    return {
        "input_ids": ids, "tokens": tokens, "offsets": offsets, "attributions": attributions,
        "margin": margin, "baseline_margin": baseline_margin,
        "completeness_error": abs(float(attributions.sum()) - (margin - baseline_margin)),
    }


def draft_prompt(question: str, context: str | None) -> tuple[str, dict[str, tuple[int, int]]]:
    """``answer_prompt(question, context)`` and the character spans of the question text and of
    the draft context inside it: ``{"question": (s, e), "draft": (s, e)}`` (no "draft" when the
    context is empty)."""
    prompt = answer_prompt(question, context)
    line = question_line(question)
    spans = {"question": (len(line) - len(" ".join(question.split())), len(line))}
    if context and context.strip():
        start = len(line) + 1
        spans["draft"] = (start, start + len(context.strip()))
    return prompt, spans


def _segments(offsets, spans: dict[str, tuple[int, int]]) -> list[str]:
    """Each token's segment: the first span (by position) its char span overlaps, else 'template'."""
    ordered = sorted(spans.items(), key=lambda item: item[1])
    return [next((name for name, (s, e) in ordered if start < e and end > s), "template")
            for start, end in offsets]


def segment_shares(offsets, attributions, spans: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Share of total |attribution| on the tokens of each named span; the rest is 'template'.

    Keys: each span name and 'template'; values sum to 1 (all 0 when the total is 0).
    """
    magnitude = np.abs(np.asarray(attributions, dtype=np.float64))
    labels = np.array(_segments(offsets, spans), dtype=object)
    total = magnitude.sum()
    return {name: float(magnitude[labels == name].sum() / total) if total > 0 else 0.0
            for name in [*spans, "template"]}


def _top_tokens(tokens, attributions, k: int = 5) -> str:
    order = np.argsort(-np.abs(attributions), kind="stable")[:k]
    return " ".join(f"{(tokens[i].strip() or tokens[i])!r}({attributions[i]:+.2f})" for i in order)


def attribute(model, tokenizer, records: list[dict], contexts: list[str | None], *, steps: int = 50,
              baseline: str = "pad", batch_size: int = 16, method: str = "gausslegendre",
              keep_first_token: bool = True, progress: bool = True) -> pd.DataFrame:
    """IG attribution for each record's answer-slot prompt; one row per record (see module docstring).

    Columns: qid, gold, n_tokens, question_tokens, draft_tokens, margin, baseline_margin,
    attribution_sum, completeness_error, relative_error, draft_share, question_share,
    template_share, top_tokens.
    """
    contexts = contexts if contexts is not None else [None] * len(records)
    if len(contexts) != len(records):
        raise InputError(f"attribution: {len(records)} records but {len(contexts)} contexts")
    rows = []
    for record, context in tqdm(list(zip(records, contexts)), desc="attribution", unit="question",
                                disable=not progress):
        prompt, spans = draft_prompt(record["question"], context)
        result = integrated_gradients(model, tokenizer, prompt, steps=steps, baseline=baseline,
                                      batch_size=batch_size, method=method, keep_first_token=keep_first_token)
        attributions = result["attributions"]
        labels = _segments(result["offsets"], spans)
        shares = segment_shares(result["offsets"], attributions, spans)
        change = result["margin"] - result["baseline_margin"]
        rows.append({
            "qid": record["qid"], "gold": bool(record["answer"]), "n_tokens": len(result["input_ids"]),
            "question_tokens": labels.count("question"), "draft_tokens": labels.count("draft"),
            "margin": result["margin"], "baseline_margin": result["baseline_margin"],
            "attribution_sum": float(attributions.sum()), "completeness_error": result["completeness_error"],
            "relative_error": result["completeness_error"] / max(abs(change), 1e-6),
            "draft_share": shares.get("draft", 0.0), "question_share": shares["question"],
            "template_share": shares["template"], "top_tokens": _top_tokens(result["tokens"], attributions),
        })
    return pd.DataFrame(rows)
