"""Intervals and paired tests for accuracies (every number in the report carries one)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from statsmodels.stats.contingency_tables import mcnemar as _mcnemar
from statsmodels.stats.proportion import proportion_confint


@dataclass(frozen=True)
class Accuracy:
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{100 * self.accuracy:.1f}% [{100 * self.ci_low:.1f}, {100 * self.ci_high:.1f}] (n={self.n})"


def wilson(correct: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a proportion (sensible at small n and near 0 or 1)."""
    if n == 0:
        return 0.0, 1.0
    low, high = proportion_confint(correct, n, alpha=alpha, method="wilson")
    return float(low), float(high)


def accuracy(correct_flags) -> Accuracy:
    """Accuracy of a boolean vector with its Wilson 95% interval."""
    flags = np.asarray(correct_flags, dtype=bool)
    n, k = int(flags.size), int(flags.sum())
    low, high = wilson(k, n)
    return Accuracy(n=n, correct=k, accuracy=k / n if n else 0.0, ci_low=low, ci_high=high)


def mcnemar(correct_a, correct_b) -> dict:
    """Exact McNemar test on paired correctness; ``b_only`` counts questions only B got right."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("paired test needs the same questions in the same order")
    a_only = int((a & ~b).sum())
    b_only = int((~a & b).sum())
    table = [[int((a & b).sum()), a_only], [b_only, int((~a & ~b).sum())]]
    p = 1.0 if a_only + b_only == 0 else float(_mcnemar(table, exact=True).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p_value": p}


def bootstrap_mean_ci(values, seed: int = 0, resamples: int = 10000, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (seeded, so the report is reproducible)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)
