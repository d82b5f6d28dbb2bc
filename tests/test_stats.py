import math

import pytest

from clarify.stats import accuracy, mcnemar, wilson


def test_wilson_matches_the_closed_form():
    k, n, z = 408, 687, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = wilson(k, n)
    assert low == pytest.approx(centre - half, abs=1e-9)
    assert high == pytest.approx(centre + half, abs=1e-9)


def test_wilson_edges_stay_inside_unit_interval():
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and wilson(0, 10)[1] < 0.35
    assert wilson(10, 10)[1] == pytest.approx(1.0) and wilson(10, 10)[0] > 0.65
    assert wilson(0, 0) == (0.0, 1.0)


def test_accuracy_counts():
    acc = accuracy([True, False, True, True])
    assert (acc.n, acc.correct, acc.accuracy) == (4, 3, 0.75)
    assert acc.ci_low < 0.75 < acc.ci_high


def test_mcnemar_exact_binomial():
    a = [True] * 10 + [False] * 2 + [True] * 5
    b = [False] * 10 + [True] * 2 + [True] * 5
    result = mcnemar(a, b)
    assert (result["a_only"], result["b_only"]) == (10, 2)
    # two-sided exact binomial on 12 discordant pairs with 2 successes: 2 * P(X <= 2)
    expected = 2 * sum(math.comb(12, i) for i in range(3)) / 2 ** 12
    assert result["p_value"] == pytest.approx(expected)
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])
