"""Guards against NaN and inf in training and scoring.

A non-finite gradient that reaches the optimizer makes every adapter weight NaN, and a NaN
model still "answers": ``NaN > 0`` is False, so it predicts "No" for every question and the
report shows a plausible majority-class accuracy. That happened once (Qwen2.5-1.5B, Phase C
in bf16 on an H100: NaN from step 5 on, every score 53.3%). So:

* :func:`nonfinite_guard` is a ``TrainerCallback`` for every phase: before each optimizer
  step it checks the gradients; a step with a NaN or inf gradient is skipped (its gradients
  are dropped, so AdamW leaves the weights and its moments alone, as AMP's GradScaler does)
  and logged with the step number. ``max_consecutive`` skipped steps in a row mean the run
  has diverged: it stops with :class:`NonFiniteError` and nothing is written.
* :func:`require_finite_parameters` refuses to save an adapter with a non-finite weight.
* :func:`require_finite` refuses scores (or attributions) that are not finite.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_NONFINITE = 5


class NonFiniteError(RuntimeError):
    """NaN or inf where a number must be finite: training diverged or a model is corrupt."""


def _gradients(optimizer) -> list[torch.Tensor]:
    return [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


def gradients_finite(optimizer) -> bool:
    """Whether every gradient the optimizer is about to apply is finite (one device sync)."""
    grads = _gradients(optimizer)
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def drop_gradients(optimizer) -> None:
    """Set every gradient to None: ``optimizer.step()`` then skips those parameters entirely."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


def nonfinite_guard(phase: str, max_consecutive: int = MAX_CONSECUTIVE_NONFINITE, describe=None):
    """A ``TrainerCallback`` that skips optimizer steps with non-finite gradients (see module docstring).

    ``describe`` (optional, no arguments) returns a short text about the step's batch that is
    logged with the skip, e.g. which log-probabilities were NaN. The callback's ``skipped``
    lists the 1-based numbers of the skipped steps.
    """
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState

    class NonFiniteGuard(TrainerCallback, ExportableState):
        def __init__(self):
            self.skipped: list[int] = []
            self.consecutive = 0

        def state(self) -> dict:  # saved with each checkpoint: a resumed run still lists earlier skips
            return {"args": {}, "attributes": {"skipped": self.skipped, "consecutive": self.consecutive}}

        def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            if optimizer is None or gradients_finite(optimizer):
                self.consecutive = 0
                return control
            step = state.global_step + 1
            drop_gradients(optimizer)
            self.skipped.append(step)
            self.consecutive += 1
            detail = f" ({describe()})" if describe is not None else ""
            log.warning("%s: step %d has non-finite gradients%s; skipped (%d skipped so far)",
                        phase, step, detail, len(self.skipped))
            if self.consecutive >= max_consecutive:
                raise NonFiniteError(
                    f"{phase}: training diverged: {self.consecutive} optimizer steps in a row had NaN/inf gradients "
                    f"(steps {step - self.consecutive + 1}-{step}{detail}); nothing was written. Try a lower "
                    f"{phase}.learning_rate or float32 ({phase}.bf16: false)")
            return control

    return NonFiniteGuard()


def require_finite_parameters(model, what: str, adapter_only: bool = False) -> None:
    """Raise :class:`NonFiniteError` if a trainable parameter of ``model`` (with ``adapter_only``:
    a LoRA weight, trainable or not) holds NaN or inf."""
    bad = [name for name, p in model.named_parameters()
           if ("lora_" in name if adapter_only else p.requires_grad) and not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteError(f"{what}: {len(bad)} adapter tensors hold NaN/inf (first: {bad[0]})")


def nonfinite_summary(**tensors: torch.Tensor) -> str:
    """Which of the named tensors hold NaN/inf, e.g. 'chosen 2/8 NaN/inf'; '' when all are finite."""
    parts = []
    for name, tensor in tensors.items():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            parts.append(f"{name} {bad}/{tensor.numel()} NaN/inf")
    return ", ".join(parts)


def require_finite(values, what: str) -> None:
    """Raise :class:`NonFiniteError` if ``values`` (array-like) has a NaN or inf."""
    array = np.asarray(values, dtype=np.float64)
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise NonFiniteError(f"{what}: {bad} of {array.size} values are NaN/inf; the model's weights or its "
                             "activations are not finite (a diverged adapter, or an overflow in low precision)")
