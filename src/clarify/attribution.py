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
* Adaptive points (``tolerance``): per prompt, start at ``steps`` and double until the error is
  within ``tolerance`` of ``max(|f(E) - f(B)|, min_margin_change)`` or ``max_steps`` is reached;
  the path points are batched (``batch_size`` per forward/backward pass). Per-point gradient rows
  are cached, so the nested rules (``clenshawcurtis``, ``simpson``) reuse every point when they
  double (``steps + 1`` gradients in all); Gauss-Legendre and midpoints do not nest and recompute
  (at most twice the cost of their last level).
* Shares: |attribution| on the question, the draft's first guess (with its reason), its
  clarifying sub-questions, an unsplit draft (unparsed), and the template; they sum to 1. The
  seed's criterion is read on the sub-questions (:func:`attribution_verdict`), over the questions
  whose attributions converged (:func:`summarize_attribution`).

Near an all-zero input the first RMSNorm makes ``f`` change steeply for small ``a``, so the
"zero" baseline needs many more steps than "pad" to converge; check ``relative_error``. Real
models need more points than tiny ones: on Gemma-3-270M one question's error against a margin
difference of 38 was 44 / 7.1 / 1.2 at 32 / 128 / 512 midpoints and 26 / 2.0 at 32 / 128
Gauss-Legendre points.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .batching import in_halving_batches
from .errors import InputError
from .numerics import require_finite
from .prompts import answer_prompt, draft_context_parts, question_line
from .scoring import answer_tokens
from .stats import bootstrap_mean_ci

BASELINES = ("pad", "zero")
#: Quadrature rules along the path. Gauss-Legendre (Captum's default) and the midpoint rule do not
#: nest: doubling their points recomputes every gradient. Composite Simpson on a grid of ``steps``
#: intervals (``steps + 1`` points, both ends included) nests: doubling reuses every point.
#: Clenshaw-Curtis (``steps + 1`` Chebyshev extrema, both ends included) nests too and, like
#: Gauss-Legendre, converges fast on a smooth path (exact for polynomials of degree ``steps``).
METHODS = ("gausslegendre", "riemann_middle", "simpson", "clenshawcurtis")

#: The parts of an answer-slot prompt that attribution shares are reported on. A draft splits
#: into its first guess (with its reason), its clarifying sub-questions, and "unsplit" (an
#: unparsed draft's raw text, or a context given as a plain string); everything else is template.
SEGMENTS = ("question", "guess", "subquestions", "unsplit", "template")
_DRAFT_PARTS = {"guess": "guess", "questions": "subquestions", "unparsed": "unsplit"}

#: Completeness tolerance relative to the margin change (``attribution.tolerance``'s default).
DEFAULT_TOLERANCE = 0.05

#: The per-question CSV's columns, in order (see :func:`attribute`).
ATTRIBUTION_COLUMNS = [
    "qid", "gold", "n_tokens", "question_tokens", "draft_tokens", "guess_tokens", "subquestion_tokens",
    "margin", "baseline_margin", "margin_change", "attribution_sum", "completeness_error", "relative_error",
    "steps", "points_evaluated", "converged", "small_change", "draft_share", "guess_share", "subquestions_share",
    "draft_unsplit_share", "question_share", "template_share", "top_tokens",
]

#: The share columns; guess + subquestions + draft_unsplit + question + template = 1 per question.
SHARE_COLUMNS = ["guess_share", "subquestions_share", "draft_unsplit_share", "question_share", "template_share"]


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


def _chebyshev_alpha(k: int, n: int) -> float:
    """``(1 - cos(pi k / n)) / 2 = sin(pi k / 2n)^2``, computed from the reduced fraction k/n.

    The same fraction gives the same float at every level, so node ``k`` of ``n`` intervals is
    bit-identical to node ``2k`` of ``2n`` and the path cache (keyed by alpha) reuses it.
    """
    g = math.gcd(k, n)
    return math.sin(math.pi * (k // g) / (2 * (n // g))) ** 2


def _clenshaw_curtis_weights(n: int) -> np.ndarray:
    """Clenshaw-Curtis weights of the ``n + 1`` Chebyshev extrema on [0, 1]; they sum to 1.

    The rule integrates the Chebyshev interpolant at the extrema exactly, so its weights are the
    DCT-I of the Chebyshev moments ``m_j = int_{-1}^{1} T_j = 2 / (1 - j^2)`` (j even; 0 for j
    odd): ``w_k = c_k / n * sum''_j m_j cos(pi j k / n)`` on [0, 1] (``c_0 = c_n = 1/2``, else 1;
    ``''`` halves the first and last terms), computed by one FFT of the moments' even extension
    (Waldvogel, BIT 46 (2006) 195-202). The rule is exact for polynomials of degree ``n``.
    """
    j = np.arange(n + 1)
    moments = np.zeros(n + 1)
    moments[::2] = 2.0 / (1.0 - j[::2].astype(np.float64) ** 2)
    cosine_sums = np.fft.rfft(np.concatenate([moments, moments[-2:0:-1]])).real[:n + 1] / 2
    weights = cosine_sums / n
    weights[[0, -1]] /= 2
    return weights


def path_points(steps: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Alphas on [0, 1] and their quadrature weights (summing to 1)."""
    if method == "riemann_middle":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    if method == "simpson":
        if steps < 2 or steps % 2:
            raise InputError(f"attribution.steps: simpson needs an even number of intervals >= 2, got {steps}")
        weights = np.ones(steps + 1)
        weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
        return np.arange(steps + 1) / steps, weights / (3 * steps)
    if method == "clenshawcurtis":
        if steps < 1:
            raise InputError(f"attribution.steps: clenshawcurtis needs a number of intervals >= 1, got {steps}")
        alphas = np.array([_chebyshev_alpha(k, steps) for k in range(steps + 1)])
        return alphas, _clenshaw_curtis_weights(steps)
    raise InputError(f"attribution.method: must be one of {METHODS}, got {method!r}")


def check_settings(settings: dict) -> None:
    """Raise InputError for ``attribution`` settings that cannot run (before any model is loaded)."""
    steps, max_steps = settings["steps"], settings.get("max_steps")
    tolerance, batch_size = settings.get("tolerance"), settings["batch_size"]
    if settings["baseline"] not in BASELINES:
        raise InputError(f"attribution.baseline: must be one of {BASELINES}, got {settings['baseline']!r}")
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"attribution.steps: must be an integer >= 1, got {steps!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < steps):
        raise InputError(f"attribution.max_steps: must be an integer >= attribution.steps ({steps}), got {max_steps!r}")
    if tolerance is not None and not tolerance > 0:
        raise InputError(f"attribution.tolerance: must be > 0, got {tolerance!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"attribution.batch_size: must be an integer >= 1, got {batch_size!r}")
    path_points(steps, settings["method"])  # the method, and the steps it accepts


class _Path:
    """The straight path from the baseline embeddings to the prompt's, for one prompt.

    ``contributions(alphas)`` gives, per alpha, each token's ``sum_d (E - B)_{i,d} dF/dE_a[i, d]``;
    every quadrature rule is a weighted sum of these rows. Rows are cached by alpha, so a rule
    whose points nest (clenshawcurtis, simpson) evaluates each gradient once however often it doubles.
    """

    def __init__(self, model, tokenizer, prompt: str, baseline: str, keep_first_token: bool, batch_size: int):
        encoded = tokenizer(prompt, add_special_tokens=True, return_offsets_mapping=True)
        self.ids = list(encoded["input_ids"])
        special_ids = set(tokenizer.all_special_ids)
        special = [i in special_ids for i in self.ids]
        fixed = [sp or (keep_first_token and position == 0) for position, sp in enumerate(special)]
        self.offsets = [(0, 0) if sp else (int(s), int(e)) for sp, (s, e) in zip(special, encoded["offset_mapping"])]
        self.tokens = [tokenizer.convert_ids_to_tokens(i) if sp else prompt[s:e]
                       for i, sp, (s, e) in zip(self.ids, special, self.offsets)]
        self.model = model
        self.answer = answer_tokens(tokenizer, prompt)
        self.keep = _accepts_logits_to_keep(model)
        self.cache: dict[float, np.ndarray] = {}
        self.batch_size = batch_size                                         # halved on out-of-memory
        model.eval()
        embedding = model.get_input_embeddings()
        device = self.device = embedding.weight.device
        with torch.inference_mode(False), torch.enable_grad():
            def embed(token_ids):
                return embedding(torch.tensor([list(token_ids)], dtype=torch.long, device=device))[0].detach()

            self.real = embed(self.ids)                                       # (T, D), model dtype
            base = embed([tokenizer.pad_token_id]).expand_as(self.real) if baseline == "pad" \
                else torch.zeros_like(self.real)
            mask = torch.tensor(fixed, device=device).unsqueeze(-1)
            self.base = torch.where(mask, self.real, base)
            self.delta = self.real.float() - self.base.float()
            self.continuations = [embed(c[:-1]).unsqueeze(0) for c in (self.answer.yes, self.answer.no)]
            with torch.no_grad():
                ends = _margins(model, torch.stack([self.real, self.base]), self.answer, self.continuations, self.keep)
        self.margin, self.baseline_margin = (float(v) for v in ends)
        require_finite([self.margin, self.baseline_margin],
                       "attribution: the answer margin at the prompt and at the baseline")

    def contributions(self, alphas: np.ndarray) -> np.ndarray:
        """(len(alphas), T) float64: per alpha, each token's gradient-times-delta along the path.

        A batch of path points that runs out of GPU memory is retried at half the size (attribution
        shares the GPU with other jobs in a real run); ``self.batch_size`` keeps the size that fit.
        """
        missing = [float(a) for a in dict.fromkeys(float(a) for a in alphas) if float(a) not in self.cache]

        def run_batch(rows: list[int]) -> None:
            chunk = [missing[i] for i in rows]
            a = torch.tensor(chunk, dtype=torch.float32, device=self.device).view(-1, 1, 1)
            path = (self.base.float() + a * self.delta).to(self.real.dtype).requires_grad_(True)
            values = _margins(self.model, path, self.answer, self.continuations, self.keep)
            (grad,) = torch.autograd.grad(values.sum(), path)
            grad_rows = (grad.float() * self.delta).sum(-1).double().cpu().numpy()
            for alpha, row in zip(chunk, grad_rows):
                self.cache[alpha] = row

        with torch.inference_mode(False), torch.enable_grad():
            self.batch_size = in_halving_batches(range(len(missing)), self.batch_size, run_batch, model=self.model,
                                                 desc="attribution path", noun="points", progress=False)
        return np.stack([self.cache[float(a)] for a in alphas])


def integrated_gradients(model, tokenizer, prompt: str, steps: int = 50, baseline: str = "pad",
                         batch_size: int = 16, method: str = "gausslegendre", keep_first_token: bool = True,
                         max_steps: int | None = None, tolerance: float | None = None,
                         min_margin_change: float = 0.0) -> dict:
    """IG attribution of the answer-slot margin of ``prompt`` to its tokens (see module docstring).

    Fixed (``tolerance`` None): ``steps`` points of ``method``. Adaptive (``tolerance`` given):
    start at ``steps`` and double until ``completeness_error <= tolerance * max(|f(E) - f(B)|,
    min_margin_change)`` or the next doubling would pass ``max_steps`` (default ``steps``).

    Returns ``{"input_ids", "tokens", "offsets" ((0, 0) for special tokens), "attributions"
    (float64, one per token), "margin", "baseline_margin", "completeness_error", "steps" (of the
    last level), "points_evaluated" (gradients computed, over every level), "converged" (None when
    fixed), "history" ([(steps, completeness_error)] per level)}``.
    """
    max_steps = steps if max_steps is None else max_steps
    check_settings({"steps": steps, "max_steps": max_steps, "tolerance": tolerance, "batch_size": batch_size,
                    "baseline": baseline, "method": method})
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"attribution: needs a fast tokenizer (character offsets); got {type(tokenizer).__name__}")
    if baseline == "pad" and tokenizer.pad_token_id is None:
        raise InputError("attribution.baseline: 'pad' needs a tokenizer with a pad token; use 'zero'")

    path = _Path(model, tokenizer, prompt, baseline, keep_first_token, batch_size)
    change = path.margin - path.baseline_margin
    allowed = None if tolerance is None else tolerance * max(abs(change), min_margin_change)
    history, level, evaluated = [], steps, 0
    while True:
        alphas, weights = path_points(level, method)
        evaluated += sum(float(a) not in path.cache for a in alphas)
        attributions = weights @ path.contributions(alphas)
        require_finite(attributions, "attribution: integrated gradients")
        error = abs(float(attributions.sum()) - change)
        history.append((level, error))
        if allowed is None or error <= allowed or 2 * level > max_steps:
            break
        level *= 2
    return {
        "input_ids": path.ids, "tokens": path.tokens, "offsets": path.offsets, "attributions": attributions,
        "margin": path.margin, "baseline_margin": path.baseline_margin, "completeness_error": error,
        "steps": level, "points_evaluated": evaluated,
        "converged": None if allowed is None else bool(error <= allowed), "history": history,
    }


def draft_prompt(question: str, context: str | dict | None) -> tuple[str, dict[str, tuple[int, int]]]:
    """``answer_prompt(question, context)`` and the character spans of its parts inside it.

    ``context`` is a draft (a dict, shown with :func:`clarify.prompts.draft_context`) or a context
    string. Spans: ``"question"`` (the question text), ``"draft"`` (the whole context; absent when
    it is empty) and the draft's parts: ``"guess"`` (the "Draft guess: ..." line and the newline
    after it), ``"subquestions"`` (the "Draft questions: ..." line), or ``"unsplit"`` (an unparsed
    draft, or a context string, whose parts are not known). The parts tile the draft span.
    """
    parts = draft_context_parts(context) if isinstance(context, dict) else \
        [("unparsed", context.strip())] if context and context.strip() else []
    text = "\n".join(t for _, t in parts)
    prompt = answer_prompt(question, text)
    line = question_line(question)
    spans = {"question": (len(line) - len(" ".join(question.split())), len(line))}
    if text.strip():
        start = len(line) + 1
        spans["draft"] = (start, start + len(text.strip()))
        for position, (name, part) in enumerate(parts):
            end = start + len(part) + (1 if position < len(parts) - 1 else 0)
            spans[_DRAFT_PARTS[name]] = (start, end)
            start = end
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


def attribute(model, tokenizer, records: list[dict], drafts: list[dict | str | None] | None, *, steps: int = 50,
              baseline: str = "pad", batch_size: int = 16, method: str = "gausslegendre",
              keep_first_token: bool = True, max_steps: int | None = None, tolerance: float = DEFAULT_TOLERANCE,
              min_margin_change: float = 0.0, progress: bool = True) -> pd.DataFrame:
    """IG attribution for each record's answer-slot prompt; one row per record (see module docstring).

    ``drafts``: per record its draft (a dict: the shares split into guess and sub-questions), a
    context string (its share is ``draft_unsplit_share``), or None (question only).
    Columns, in :data:`ATTRIBUTION_COLUMNS` order: qid, gold; token counts (n_tokens,
    question_tokens, draft_tokens, guess_tokens, subquestion_tokens); margin, baseline_margin,
    margin_change, attribution_sum, completeness_error, relative_error (error / max(|change|,
    1e-6)); steps (of the last level), points_evaluated, converged (error <= ``tolerance`` *
    max(|change|, min_margin_change); ``max_steps`` None = ``steps``: no doubling), small_change
    (|change| < min_margin_change); shares of |attribution|: draft_share (= guess + subquestions
    + draft_unsplit), guess_share, subquestions_share, draft_unsplit_share, question_share,
    template_share (draft + question + template = 1); top_tokens.
    """
    drafts = drafts if drafts is not None else [None] * len(records)
    if len(drafts) != len(records):
        raise InputError(f"attribution: {len(records)} records but {len(drafts)} drafts")
    rows = []
    for record, draft in tqdm(list(zip(records, drafts)), desc="attribution", unit="question",
                              disable=not progress):
        prompt, spans = draft_prompt(record["question"], draft)
        result = integrated_gradients(model, tokenizer, prompt, steps=steps, baseline=baseline,
                                      batch_size=batch_size, method=method, keep_first_token=keep_first_token,
                                      max_steps=max_steps, tolerance=tolerance, min_margin_change=min_margin_change)
        attributions = result["attributions"]
        parts = {name: spans[name] for name in SEGMENTS if name in spans}
        labels = _segments(result["offsets"], parts)
        shares = segment_shares(result["offsets"], attributions, parts)
        change = result["margin"] - result["baseline_margin"]
        relative = result["completeness_error"] / max(abs(change), 1e-6)
        draft_parts = [n for n in ("guess", "subquestions", "unsplit") if n in spans]
        rows.append({
            "qid": record["qid"], "gold": bool(record["answer"]), "n_tokens": len(result["input_ids"]),
            "question_tokens": labels.count("question"), "draft_tokens": sum(labels.count(n) for n in draft_parts),
            "guess_tokens": labels.count("guess"), "subquestion_tokens": labels.count("subquestions"),
            "margin": result["margin"], "baseline_margin": result["baseline_margin"], "margin_change": change,
            "attribution_sum": float(attributions.sum()), "completeness_error": result["completeness_error"],
            "relative_error": relative, "steps": result["steps"], "points_evaluated": result["points_evaluated"],
            "converged": result["converged"], "small_change": bool(abs(change) < min_margin_change),
            "draft_share": sum(shares.get(n, 0.0) for n in draft_parts),
            "guess_share": shares.get("guess", 0.0), "subquestions_share": shares.get("subquestions", 0.0),
            "draft_unsplit_share": shares.get("unsplit", 0.0), "question_share": shares["question"],
            "template_share": shares["template"], "top_tokens": _top_tokens(result["tokens"], attributions),
        })
    return pd.DataFrame(rows, columns=ATTRIBUTION_COLUMNS)


# --- per model ---------------------------------------------------------------------------------

def summarize_attribution(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per model (in order of appearance), from the per-question table (:data:`ATTRIBUTION_COLUMNS`
    plus ``model``).

    Questions with ``small_change`` (|margin change| < ``attribution.min_margin_change``) are
    counted (``n_small_change``) and left out of everything else: a relative error on a change of
    0.04 says nothing. Over the rest (``n_measured``): ``n_converged``, ``converged_share``,
    ``error_share`` (sum |error| / sum |margin change|), ``median_relative_error``,
    ``median_steps``, ``max_steps_used``, ``mean_points``. Over the converged ones only: the mean
    shares (:data:`SHARE_COLUMNS` and ``draft_share``), bootstrap intervals of ``draft_share`` and
    ``subquestions_share`` (``*_low``/``*_high``), and the mean draft, guess and sub-question tokens.
    """
    rows = []
    for model, frame in table.groupby("model", sort=False):
        small = frame["small_change"].astype(bool)
        measured = frame[~small]
        converged = measured[measured["converged"].astype(bool)]
        change = measured["margin_change"].abs().sum()
        row = {"model": model, "n": len(frame), "n_small_change": int(small.sum()), "n_measured": len(measured),
               "n_converged": len(converged),
               "converged_share": len(converged) / len(measured) if len(measured) else float("nan"),
               "error_share": measured["completeness_error"].sum() / change if change > 0 else float("nan"),
               "median_relative_error": float(measured["relative_error"].median()),
               "median_steps": float(frame["steps"].median()), "max_steps_used": int(frame["steps"].max()),
               "mean_points": float(frame["points_evaluated"].mean())}
        for column in ["draft_share", *SHARE_COLUMNS, "draft_tokens", "guess_tokens", "subquestion_tokens"]:
            row[column] = float(converged[column].mean()) if len(converged) else float("nan")
        for column, name in [("draft_share", "draft"), ("subquestions_share", "subquestions")]:
            row[f"{name}_low"], row[f"{name}_high"] = bootstrap_mean_ci(converged[column], seed=seed)
        rows.append(row)
    return pd.DataFrame(rows)


def attribution_verdict(summary: dict | pd.Series, target_share: float, min_converged_share: float,
                        tolerance: float = DEFAULT_TOLERANCE) -> tuple[str, str]:
    """The seed's attribution criterion for one model's :func:`summarize_attribution` row, read on
    the clarifying sub-questions: ("met" | "not met" | "not measured", the evidence or the reason).

    Measured only when at least ``min_converged_share`` of the questions whose margin changed
    converged (completeness error within ``tolerance``); then met when the mean sub-question share
    over the converged questions is at least ``target_share``.
    """
    measured, converged = int(summary["n_measured"]), int(summary["n_converged"])
    if measured == 0:
        return "not measured", (f"no question's margin changed by attribution.min_margin_change or more "
                                f"({int(summary['n_small_change'])} too small)")
    share = converged / measured
    counts = f"{converged}/{measured} questions converged within {tolerance:.0%}"
    if share < min_converged_share:
        return "not measured", (f"only {counts} ({share:.0%} < {min_converged_share:.0%}); error "
                                f"{summary['error_share']:.1%} of the summed margin change: raise attribution.max_steps")
    verdict = "met" if summary["subquestions_share"] >= target_share else "not met"
    return verdict, (f"sub-question share {summary['subquestions_share']:.1%} (guess {summary['guess_share']:.1%}) "
                     f"over {counts}")
