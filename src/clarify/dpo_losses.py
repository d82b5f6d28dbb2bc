"""Phase C preference losses (DESIGN section 7), as pure functions of per-pair log-probs.

Every function takes the summed completion log-probs of the policy and the reference for the
chosen and rejected completion of each pair (1-D tensors of equal length) and returns the
per-pair losses; :func:`preference_loss` reduces them to the training loss by name. With

    h_w = log pi(y_w|x) - log pi_ref(y_w|x),   h_l = log pi(y_l|x) - log pi_ref(y_l|x),
    m = h_w - h_l,

* ``sigmoid``: standard DPO, -log sigmoid(beta * m).
* ``cal_batch_mean``: the seed's wording of Cal-DPO: subtract the batch mean of m (detached)
  before the sigmoid, -log sigmoid(beta * (m - mean(m))).
* ``cal_paper``: Cal-DPO (Xiao et al., 2024; official code): the DPO term on the un-scaled
  log-ratio difference plus squared penalties pulling h_w to 1/(2 beta) and h_l to
  -1/(2 beta): -log sigmoid(m) + cal_weight * 0.5 * [(h_w - 1/(2b))^2 + (h_l + 1/(2b))^2].
* ``dr_drop_top``: the seed's wording of Dr-DPO: standard DPO on the pairs that remain after
  dropping the noisiest ones, the noise score being the per-pair DPO loss. Which pairs are
  dropped is decided by a threshold (see :func:`drop_threshold`); pairs whose current loss is
  above it contribute nothing.
* ``dr_paper``: Dr. DPO (Wu et al., 2024): -beta' * log(mean_i exp(-loss_i / beta')) over the
  micro-batch, loss_i the per-pair DPO loss. It depends on the micro-batch size (a batch of
  one is plain DPO), so the trainer logs that size.
* ``rpo``: DPO + NLL (Pang et al., 2024, iterative reasoning preference optimisation): the
  sigmoid loss plus ``rpo_alpha`` times the chosen completion's length-normalised NLL,
  -log sigmoid(beta * m) - rpo_alpha * log pi(y_w|x) / |y_w|; it keeps the chosen reasoning
  likely while the margin grows. Needs ``chosen_tokens`` (|y_w| per pair).

The forms are a registry, :data:`LOSSES` (name -> function of :class:`PairTerms`); adding a
form is one function, one registry line and its formula test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

def log_ratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected) -> tuple[torch.Tensor, torch.Tensor]:
    """(h_w, h_l): the policy/reference log-ratios of the chosen and rejected completions."""
    return policy_chosen - ref_chosen, policy_rejected - ref_rejected


def sigmoid_losses(h_w, h_l, beta: float) -> torch.Tensor:
    """Per-pair standard DPO loss, -log sigmoid(beta * (h_w - h_l))."""
    return -F.logsigmoid(beta * (h_w - h_l))


def cal_batch_mean_losses(h_w, h_l, beta: float) -> torch.Tensor:
    """Per-pair loss with the batch-mean margin (detached) subtracted before the sigmoid."""
    margin = h_w - h_l
    return -F.logsigmoid(beta * (margin - margin.detach().mean()))


def cal_paper_losses(h_w, h_l, beta: float, cal_weight: float = 1.0) -> torch.Tensor:
    """Per-pair Cal-DPO loss: un-scaled DPO term plus calibration penalties (weight ``cal_weight``)."""
    target = 1.0 / (2.0 * beta)
    penalty = 0.5 * ((h_w - target) ** 2 + (h_l + target) ** 2)
    return -F.logsigmoid(h_w - h_l) + cal_weight * penalty


def drop_threshold(noise_scores: torch.Tensor, fraction: float) -> float:
    """The noise score above which a pair is dropped so that the top ``fraction`` go.

    ``noise_scores`` are per-pair DPO losses of every pair under the current model, computed
    once before the robust epoch. Returns +inf when nothing is to be dropped.

    A NaN score (a pair whose log-probs are not finite) counts as the noisiest: it is among the
    dropped, and the threshold is computed from the finite scores, never NaN.
    """
    scores = noise_scores.detach().flatten()
    scores = torch.where(torch.isnan(scores), torch.full_like(scores, math.inf), scores)
    n = scores.numel()
    k = int(math.floor(fraction * n))
    if k <= 0:
        return math.inf
    if k >= n:
        return -math.inf
    ordered = torch.sort(scores, descending=True).values
    if not torch.isfinite(ordered[k]):
        # more than k scores are non-finite: keep only the finite ones
        return float(torch.finfo(scores.dtype).max)
    if not torch.isfinite(ordered[k - 1]):
        # the k-th largest is a non-finite pair: just above the (k+1)-th largest
        return float(torch.nextafter(ordered[k], ordered[k - 1]))
    # halfway between the k-th and (k+1)-th largest score, in the scores' own precision: exactly
    # the top k are above it when they differ, and a score recomputed with rounding noise stays
    # on its side
    return float((ordered[k - 1] + ordered[k]) / 2)


@dataclass(frozen=True)
class PairTerms:
    """What a loss form may use: the log-ratios, the policy's chosen log-probs and the settings."""

    h_w: torch.Tensor
    h_l: torch.Tensor
    policy_chosen: torch.Tensor
    chosen_tokens: torch.Tensor | None
    beta: float
    cal_weight: float = 1.0
    dr_beta: float = 1.0
    rpo_alpha: float = 1.0
    threshold: float = math.inf


def _mean(per_pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
    return per_pair, per_pair.mean(), None


def sigmoid_form(t: PairTerms):
    return _mean(sigmoid_losses(t.h_w, t.h_l, t.beta))


def cal_batch_mean_form(t: PairTerms):
    return _mean(cal_batch_mean_losses(t.h_w, t.h_l, t.beta))


def cal_paper_form(t: PairTerms):
    return _mean(cal_paper_losses(t.h_w, t.h_l, t.beta, t.cal_weight))


def dr_drop_top_form(t: PairTerms):
    per_pair = sigmoid_losses(t.h_w, t.h_l, t.beta)
    kept = per_pair.detach() <= t.threshold  # False for a NaN loss: a non-finite pair is dropped
    # a non-finite pair enters the loss as a zero margin behind where(), so neither the loss nor
    # the gradient of its log-probs is NaN (NaN * 0 is NaN); a batch whose pairs are all
    # dropped contributes a zero loss that still has a graph
    finite = torch.isfinite(t.h_w.detach()) & torch.isfinite(t.h_l.detach())
    safe = sigmoid_losses(torch.where(finite, t.h_w, 0.0), torch.where(finite, t.h_l, 0.0), t.beta)
    loss = torch.where(kept, safe, torch.zeros_like(safe)).sum() / kept.sum().clamp(min=1)
    return per_pair, loss, kept


def dr_paper_form(t: PairTerms):
    per_pair = sigmoid_losses(t.h_w, t.h_l, t.beta)
    loss = -t.dr_beta * (torch.logsumexp(-per_pair / t.dr_beta, dim=0) - math.log(per_pair.numel()))
    return per_pair, loss, None


def rpo_losses(h_w, h_l, policy_chosen, chosen_tokens, beta: float, rpo_alpha: float = 1.0) -> torch.Tensor:
    """Per-pair DPO + NLL: -log sigmoid(beta * m) - rpo_alpha * log pi(y_w|x) / |y_w|."""
    nll = -policy_chosen / chosen_tokens.to(policy_chosen.dtype).clamp(min=1)
    return sigmoid_losses(h_w, h_l, beta) + rpo_alpha * nll


def rpo_form(t: PairTerms):
    if t.chosen_tokens is None:
        raise ValueError("loss 'rpo' needs chosen_tokens (the chosen completion's token count per pair)")
    return _mean(rpo_losses(t.h_w, t.h_l, t.policy_chosen, t.chosen_tokens, t.beta, t.rpo_alpha))


#: name -> loss form: a function of :class:`PairTerms` returning (per-pair losses, loss, kept mask or None).
LOSSES: dict[str, Callable[[PairTerms], tuple]] = {
    "sigmoid": sigmoid_form,
    "cal_batch_mean": cal_batch_mean_form,
    "cal_paper": cal_paper_form,
    "dr_drop_top": dr_drop_top_form,
    "dr_paper": dr_paper_form,
    "rpo": rpo_form,
}


def preference_loss(kind: str, policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float, *,
                    cal_weight: float = 1.0, dr_beta: float = 1.0, rpo_alpha: float = 1.0,
                    threshold: float = math.inf, chosen_tokens: torch.Tensor | None = None) -> dict:
    """The training loss of one micro-batch under loss ``kind``.

    Returns ``{"loss": scalar, "per_pair": per-pair losses, "kept": bool mask, "dropped": int,
    "h_w": ..., "h_l": ...}``. ``threshold`` is used by ``dr_drop_top`` only, ``chosen_tokens``
    (token count of each chosen completion) by ``rpo`` only.
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; known: {', '.join(LOSSES)}")
    h_w, h_l = log_ratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    terms = PairTerms(h_w=h_w, h_l=h_l, policy_chosen=policy_chosen, chosen_tokens=chosen_tokens, beta=beta,
                      cal_weight=cal_weight, dr_beta=dr_beta, rpo_alpha=rpo_alpha, threshold=threshold)
    per_pair, loss, kept = LOSSES[kind](terms)
    if kept is None:
        kept = torch.ones_like(h_w, dtype=torch.bool)
    return {"loss": loss, "per_pair": per_pair, "kept": kept, "dropped": int((~kept).sum()),
            "h_w": h_w, "h_l": h_l}
