"""Intervals every reported figure carries, and the seeded hash alfa samples by. A bottom-layer module: plain
arithmetic, imported by any stage.

`rate` is what a reported rate uses (accuracy, win rate, flag rate, premature answers): Wilson's interval for
independent items, which keeps its width at 0% and 100% (a percentile bootstrap collapses there: "100% (100%-100%)"
on 30 cases); a group bootstrap where items are grouped (the variants of one problem, the turns of one post), never
narrower than Wilson's. `bootstrap_mean` is for means that are no rate (a difference, a score in nats)."""

from __future__ import annotations

import hashlib
import math


def seeded_hash(key: str, seed: int | str | None = None) -> str:
    """A stable pseudo-random rank for `key` (sha256 of "seed:key", or of key alone): the same on every machine
    and run, and independent of row order. alfa's samples and splits sort by it (judge, review, card, splits)."""
    return hashlib.sha256((key if seed is None else f"{seed}:{key}").encode()).hexdigest()


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


def rate(values, groups=None, seed: int = 0) -> dict:
    """{"value", "ci_low", "ci_high", "n", "interval"} of a rate: the mean of `values` in [0, 1] (a success 1, a
    failure 0, a tie 0.5), every value counted. Independent items (no `groups`, or one item a group): the Wilson
    interval. Grouped items: a bootstrap over groups, widened to at least the Wilson interval of the same mean and
    count, so a rate of 0 or 1 still has an interval. `interval` names which."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0, "interval": "none (no items)"}
    low, high = wilson(sum(values), n)
    out = {"value": sum(values) / n, "ci_low": low, "ci_high": high, "n": n, "interval": "wilson"}
    if groups is not None and len(set(groups)) < n:
        boot = bootstrap_mean(values, groups, seed=seed)
        out |= {"ci_low": min(low, boot["ci_low"]), "ci_high": max(high, boot["ci_high"])}
        out["interval"] = "group bootstrap (at least wilson)"
    return out
