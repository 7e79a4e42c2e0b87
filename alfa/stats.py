"""Intervals every reported figure carries (judge agreement here; reward-model and policy evaluation later).
A bottom-layer module: plain arithmetic, imported by any stage."""

from __future__ import annotations

import math


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: honest at small n and near 0 or 1, unlike the normal
    approximation. (nan, nan) when n is 0."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_mean(values, groups=None, n_boot: int = 2000, seed: int = 0) -> dict:
    """{"value", "ci_low", "ci_high"}: the mean of `values` with a 95% percentile bootstrap interval, resampling
    whole groups when `groups` is given (the posts: items of one post are not independent). Every value counts;
    the caller never drops a zero or a failure before calling this."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return {"value": None, "ci_low": None, "ci_high": None}
    keys = np.arange(values.size) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    n_groups = int(keys.max()) + 1
    sums = np.bincount(keys, weights=values, minlength=n_groups)
    counts = np.bincount(keys, minlength=n_groups)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"value": float(values.mean()), "ci_low": float(low), "ci_high": float(high)}
