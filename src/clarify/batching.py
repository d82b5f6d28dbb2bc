"""Batches that shrink when the GPU runs out of memory: one loop for generation, scoring and attribution."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def in_halving_batches(order: Sequence[int], batch_size: int, run_batch: Callable[[list[int]], None], *,
                       model, desc: str, noun: str, progress: bool = True) -> int:
    """Call ``run_batch(rows)`` on consecutive slices of ``order``, ``batch_size`` rows each.

    A slice that runs out of GPU memory is retried at half the size, and the rest go on at that
    size: set the batch size high and the largest that fits is used. ``noun`` names a row in the
    warning ("sequences", "prompts"). Returns the batch size it ended at, for the caller's next loop.
    """
    start = 0
    with tqdm(total=len(order), desc=desc, unit=noun.rstrip("s"), disable=not progress) as bar:
        while start < len(order):
            rows = list(order[start:start + batch_size])
            try:
                run_batch(rows)
            except torch.OutOfMemoryError:
                if len(rows) == 1:
                    raise
                batch_size = max(1, len(rows) // 2)                      # a short last slice halves from its own size
                log.warning("%s: out of memory at %d %s a batch; going on with %d", desc, len(rows), noun, batch_size)
                if model.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            start += len(rows)
            bar.update(len(rows))
    return batch_size
