"""Ratios of paired samples and how far noise could move them.

Why pairs: the runner alternates the two servers (ABBA) within a round, so the n-th plain sample
and the n-th extension sample were measured within a second of each other, at the same speed of
a shared VM, which varies by 10-20 % over minutes. Their ratio cancels what the two share; the
ratio of medians pooled over a whole run keeps it in its spread. Why a confidence interval: a
ratio of 1.03 from 24 noisy pairs says little without the range the noise allows.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["best_cpu", "bootstrap_ci", "pair_ratios"]


def pair_ratios(plain: Sequence[float], extension: Sequence[float]) -> list[float]:
    """extension / plain of the samples taken side by side (same round, same repeat)."""
    if len(plain) != len(extension):
        raise ValueError(f"unpaired samples: {len(plain)} plain, {len(extension)} extension")
    return [e / p for p, e in zip(plain, extension, strict=True) if p > 0]


def bootstrap_ci(
    values: Sequence[float], level: float = 0.95, resamples: int = 4000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``values``.

    Seeded, so that a results file and the table printed from it agree run after run.
    """
    if not values:
        raise ValueError("no values to bootstrap")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, not {level}")
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    tail = (1 - level) / 2
    lo = medians[int(tail * (resamples - 1))]
    hi = medians[round((1 - tail) * (resamples - 1))]
    return lo, hi


def best_cpu(
    fn: Callable[[], Any], reps: int, clock: Callable[[], float] = time.process_time
) -> float:
    """Least time by ``clock`` (default: this process's CPU time) over ``reps`` runs of ``fn``:
    on a shared machine the wall time of one run can double while something else runs, its CPU
    time does not."""
    best = float("inf")
    for _ in range(reps):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best
