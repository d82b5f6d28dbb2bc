"""What a model-running rule script does first: log to the rule's log file, use the rule's
threads, and load the prepared student with the job's adapter (if its rule declares one)."""

from __future__ import annotations

import logging


def start_model_job(smk, name: str) -> logging.Logger:
    """Log to ``smk.log[0]`` (and stderr), use ``smk.threads``; the ``clarify.<name>`` logger."""
    import torch

    from .logs import setup_logging

    setup_logging(smk.log[0])
    torch.set_num_threads(smk.threads)
    return logging.getLogger(f"clarify.{name}")


def job_student(smk):
    """``(model, tokenizer)``: the prepared student of input ``student`` with input ``adapter``, if any."""
    from .models import load_student

    return load_student(smk.input.student, smk.params.student, smk.params.quantization,
                        adapter=smk.input.get("adapter"))
