"""The benchmark's paired ratios and their confidence interval (benchmarks/stats.py)."""

from __future__ import annotations

import random
import statistics

import pytest

from benchmarks.stats import bootstrap_ci, pair_ratios


def test_pair_ratios_estimate_the_overhead_closer_than_pooled_medians() -> None:
    # A shared VM: the speed of the moment (shared by the two samples of a pair) varies by
    # +-25 %, each sample has its own 2 % jitter, and the extension truly costs 4 % more.
    rng = random.Random(3)
    pair_err, pooled_err = [], []
    for _ in range(200):
        speed = [1 + rng.uniform(-0.25, 0.25) for _ in range(24)]
        plain = [2.0 * s * rng.gauss(1, 0.02) for s in speed]
        ext = [2.08 * s * rng.gauss(1, 0.02) for s in speed]
        pair_err.append(abs(statistics.median(pair_ratios(plain, ext)) - 1.04))
        pooled_err.append(abs(statistics.median(ext) / statistics.median(plain) - 1.04))
    assert statistics.mean(pair_err) < statistics.mean(pooled_err) / 1.5


def test_pair_ratios_refuse_unpaired_samples() -> None:
    with pytest.raises(ValueError, match="unpaired samples: 2 plain, 1 extension"):
        pair_ratios([1.0, 2.0], [1.0])


def test_pair_ratios_skip_empty_plain_samples() -> None:
    assert pair_ratios([0.0, 2.0], [1.0, 3.0]) == [1.5]


def test_bootstrap_ci_covers_the_true_ratio_and_narrows_with_more_pairs() -> None:
    rng = random.Random(7)
    few = [1.03 + rng.gauss(0, 0.05) for _ in range(12)]
    many = [1.03 + rng.gauss(0, 0.05) for _ in range(400)]
    lo_few, hi_few = bootstrap_ci(few)
    lo_many, hi_many = bootstrap_ci(many)
    assert lo_few <= statistics.median(few) <= hi_few
    assert lo_many < 1.03 < hi_many
    assert hi_many - lo_many < (hi_few - lo_few) / 2
    assert bootstrap_ci(few) == (lo_few, hi_few)  # seeded: the same file, the same table


@pytest.mark.parametrize(
    ("values", "level", "message"),
    [([], 0.95, "no values"), ([1.0], 1.0, "level must be between 0 and 1")],
)
def test_bootstrap_ci_refuses_bad_input(values: list[float], level: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(values, level=level)
