"""The statistics behind a run's reward-health signals (:mod:`rewardq.storage.health`), on numpy arrays:
Spearman's rank correlation and the two-sample Kolmogorov-Smirnov test of drift.

numpy and scipy (in the ``worker`` extra) are imported inside the functions, so that importing
``rewardq.storage`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

P_BELOW = 0.001
"""The drift test's default p threshold: about one stationary step in a thousand is flagged by chance."""

MIN_COUNT = 20
"""The drift test's default fewest ``ok`` values on each side."""

MIN_CORRELATED = 3
"""Fewest pairs a correlation is computed over (with two, any two distinct pairs give ±1)."""


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ranks with ties averaged, as :func:`rewardq.storage.diff.ranks`);
    None with fewer than :data:`MIN_CORRELATED` pairs or when either side is constant."""
    import numpy as np
    from scipy.stats import rankdata

    if len(xs) < MIN_CORRELATED:
        return None
    rx, ry = rankdata(xs), rankdata(ys)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    sxx, syy = float(np.dot(rx, rx)), float(np.dot(ry, ry))
    if sxx == 0 or syy == 0:
        return None
    return max(-1.0, min(1.0, float(np.dot(rx, ry)) / math.sqrt(sxx * syy)))


@dataclass(frozen=True, slots=True)
class DriftTest:
    """How a step's values are tested against the run's earlier steps: a two-sample Kolmogorov-Smirnov
    test (two-sided, the asymptotic p-value of ``scipy.stats.ks_2samp(method="asymp")``) of the step's
    ``ok`` values against the pooled ``ok`` values of the earlier steps (all of them, or the ``window``
    steps before it). A step is flagged when ``p < p_below`` and both sides have at least ``min_count``
    values; with fewer, it is not tested."""

    p_below: float = P_BELOW
    min_count: int = MIN_COUNT
    window: int | None = None

    @property
    def name(self) -> str:
        return "two-sample Kolmogorov-Smirnov"

    @property
    def reference(self) -> str:
        """The earlier steps a step is compared with, in words."""
        return "all earlier steps" if self.window is None else f"the {self.window} steps before"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": self.reference,
            "window": self.window,
            "p_below": self.p_below,
            "min_count": self.min_count,
        }


@dataclass(frozen=True, slots=True)
class Drift:
    """One step's test: the KS statistic (the largest gap between the two empirical CDFs), its p-value,
    how many earlier values it was tested against, the shift of the mean, and whether it is flagged."""

    ks: float
    p: float
    reference: int
    mean_shift: float  # step mean - reference mean
    flagged: bool


def ks_drift(step: Any, reference: Any, test: DriftTest) -> Drift | None:
    """The test of sorted array ``step`` against sorted array ``reference``; None when either has fewer
    than ``test.min_count`` values.

    The empirical CDFs' largest gap is reached at one of the step's values or just below one (between
    two of them the step's CDF is flat and the reference's only rises), so it is found with two binary
    searches of the reference per step value: O(n log m), the pooled reference is never re-sorted."""
    import numpy as np
    from scipy.stats import kstwo

    n, m = len(step), len(reference)
    if n < test.min_count or m < test.min_count:
        return None
    at = np.searchsorted(step, step, side="right") / n
    below = np.searchsorted(step, step, side="left") / n
    ref_at = np.searchsorted(reference, step, side="right") / m
    ref_below = np.searchsorted(reference, step, side="left") / m
    d = float(max(np.max(np.abs(at - ref_at)), np.max(np.abs(below - ref_below))))
    p = float(np.clip(kstwo.sf(d, round(n * m / (n + m))), 0.0, 1.0))
    shift = float(np.mean(step) - np.mean(reference))
    return Drift(ks=d, p=p, reference=m, mean_shift=shift, flagged=p < test.p_below)


def drift_by_step(values: Sequence[tuple[int, Any]], test: DriftTest) -> dict[int, Drift | None]:
    """``{step: drift}`` for one reward, ``values`` being its (step, sorted array of ok values) in step
    order. The pool of all earlier values is kept sorted by merging each step in (O(m) a step)."""
    import numpy as np

    out: dict[int, Drift | None] = {}
    pool = np.empty(0)
    for i, (step, current) in enumerate(values):
        if test.window is None:
            reference = pool
        else:
            earlier = [v for s, v in values[max(0, i - test.window) : i] if s >= step - test.window]
            reference = np.sort(np.concatenate(earlier)) if earlier else np.empty(0)
        out[step] = ks_drift(current, reference, test)
        if test.window is None:
            pool = np.insert(pool, np.searchsorted(pool, current), current)
    return out


def population_std(values: Any) -> float | None:
    """The population standard deviation (divisor n, as ``rewardq audit stats``) of an array; exactly 0.0
    when every value is equal; None if empty."""
    if len(values) == 0:
        return None
    if values.min() == values.max():
        return 0.0
    return float(values.std())


def quantiles(values: Any) -> tuple[float | None, float | None]:
    """The 10th and 90th percentiles (linear interpolation, numpy's default) of an array; None if empty."""
    import numpy as np

    if len(values) == 0:
        return None, None
    p10, p90 = np.percentile(values, [10, 90])
    return float(p10), float(p90)
