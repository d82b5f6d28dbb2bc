"""How the report writes numbers, tables and model names (shared by every report section)."""

from __future__ import annotations

import math


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def pp(value: float) -> str:
    """Signed percentage points; never "-0.0"."""
    return f"{round(value, 1) + 0.0:+.1f} pp"


def interval(low: float, high: float) -> str:
    """``[52.9, 60.3]``: a 95% interval of a proportion, in percent."""
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def format_accuracy(acc) -> str:
    """``56.6% [52.9, 60.3]``: accuracy with its Wilson 95% interval, in percent."""
    return f"{pct(acc.accuracy)} {interval(acc.ci_low, acc.ci_high)}"


def format_p(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "-"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


#: Display names of the scored models; Phase C rounds and grid variants by pattern.
MODEL_NAMES = {"base": "base", "phaseA": "Phase A (answer-only SFT)", "phaseB": "Phase B (CoT distillation)",
               "phaseC": "Phase C (DPO)"}


def display_name(model: str) -> str:
    if model.startswith("phaseC_round"):
        return f"Phase C round {model.removeprefix('phaseC_round')}"
    if model.startswith("variant_"):
        return f"variant {model.removeprefix('variant_')}"
    return MODEL_NAMES.get(model, model)


def device(log: dict) -> str:
    """The machine a training or DPO log ran on: the accelerator's name where the log has it (logs written
    before ``device_name`` existed say only "cuda" or "cpu"; "-" where neither is known)."""
    return log.get("device_name") or log.get("device") or "-"


def peak_memory(log: dict) -> str:
    """The most GPU memory a training or DPO run allocated (its log's ``peak_gpu_gib``), or "-" on CPU and in
    logs from before it was recorded."""
    value = log.get("peak_gpu_gib")
    return "-" if value is None else f"{value:.2f} GiB"


def skipped_steps(log: dict) -> str:
    """Optimizer steps skipped for non-finite gradients (clarify.numerics), with their numbers."""
    steps = log.get("nonfinite_steps", [])
    if not steps:
        return "0"
    shown = ", ".join(str(s) for s in steps[:5]) + (", ..." if len(steps) > 5 else "")
    return f"{len(steps)} (step {shown})"
