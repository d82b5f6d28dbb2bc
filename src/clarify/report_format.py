"""How the report writes numbers and tables (shared by every report section)."""

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
