"""Opt-in training speed-ups, each with a one-line fallback where this machine cannot use it.

* ``use_liger_kernel`` (phase_a, phase_b, phase_c): TRL's ``use_liger_kernel``; when training
  starts, transformers patches the model with Liger's Triton kernels (RMSNorm, RoPE, SwiGLU).
  TRL 1.16 already computes the loss through its own fused LM head (log-probs in chunks, never the
  ``(batch, length, vocab)`` logits), so it switches Liger's fused linear cross-entropy off.
  Needs the ``liger-kernel`` package and a CUDA GPU (Triton); elsewhere a True setting logs one
  line and trains without it. Liger is what lets Phase A's default (micro-batch 32 x 1) train
  without gradient checkpointing within 8 GiB (7.6 GiB on an H200; 9.9 GiB without Liger on an
  H100), so where a CUDA GPU lacks the package the fallback also turns checkpointing on
  (:func:`resolve_liger`); on CPU nothing else changes (no memory budget to keep).
* ``padding_free`` (phase_a, phase_b): TRL's collator concatenates a batch's examples into one row
  with restarting ``position_ids`` and no attention mask: no pad token is computed. transformers
  turns the positions into a block-diagonal mask (sdpa, eager, flex attention) or into varlen
  kernels (flash attention). TRL 1.16's ``DPOTrainer`` ignores ``padding_free``, so Phase C has
  no such setting.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def liger_unavailable() -> str | None:
    """Why Liger kernels cannot run here, or None when they can."""
    from transformers.utils import is_liger_kernel_available

    if not is_liger_kernel_available():
        return "the liger-kernel package (>= 0.3) is not installed"
    if not torch.cuda.is_available():
        return "Liger's Triton kernels need a CUDA GPU"
    return None


def use_liger_kernel(requested: bool, where: str) -> bool:
    """``requested``, unless this machine cannot run Liger: then one log line and False."""
    if not requested:
        return False
    reason = liger_unavailable()
    if reason:
        log.warning("%s.use_liger_kernel: %s; training without Liger kernels", where, reason)
        return False
    return True


def resolve_liger(settings: dict, where: str) -> dict:
    """``settings`` as this machine trains them: ``use_liger_kernel`` off where Liger cannot run.

    One log line where it falls back. On a CUDA GPU without the liger-kernel package the
    fallback also turns ``gradient_checkpointing`` on when it was off: Liger's memory savings are
    what let the phase run without it. On CPU only Liger is dropped.
    """
    if not settings.get("use_liger_kernel"):
        return settings
    reason = liger_unavailable()
    if reason is None:
        return settings
    settings = {**settings, "use_liger_kernel": False}
    if torch.cuda.is_available() and settings.get("gradient_checkpointing") is False:
        settings["gradient_checkpointing"] = True
        log.warning("%s.use_liger_kernel: %s; training without Liger kernels and WITH gradient checkpointing "
                    "(micro-batch %s without Liger's memory savings would not fit 8 GiB without it)",
                    where, reason, settings.get("batch_size"))
    else:
        log.warning("%s.use_liger_kernel: %s; training without Liger kernels", where, reason)
    return settings


def padding_free_unavailable(attn_implementation: str | None) -> str | None:
    """Why padding-free batches cannot be trained with this attention implementation, or None."""
    attn = attn_implementation or "sdpa"
    if attn.startswith("flash_attention"):
        from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

        available = is_flash_attn_3_available() if attn == "flash_attention_3" else is_flash_attn_2_available()
        return None if available else f"attention {attn} needs the flash-attn package, which is not installed"
    import transformers.masking_utils as masking

    if not hasattr(masking, "find_packed_sequence_indices"):
        return (f"attention {attn}: this transformers version builds no block-diagonal mask from position_ids "
                "(needs transformers' packed-sequence masks)")
    if attn not in {"sdpa", "eager", "flex_attention"}:
        return f"attention {attn} is not known to support packed sequences"
    return None


def use_padding_free(requested: bool, model, where: str) -> bool:
    """``requested``, unless ``model``'s attention cannot separate packed examples: then one log line and False."""
    if not requested:
        return False
    config = getattr(model, "config", None)
    reason = padding_free_unavailable(getattr(config, "_attn_implementation", None))
    if reason:
        log.warning("%s.padding_free: %s; training with padded batches", where, reason)
        return False
    return True
