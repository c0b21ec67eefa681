"""Percentile-bootstrap statistics over per-question scores (pure functions, numpy only).

`resample_means` draws the resample means, `bootstrap_ci` gives a mean with its CI, `paired_bootstrap` the mean
paired difference of two runs on the same questions with its CI and P(difference > 0).
"""

from __future__ import annotations

import numpy as np

_MAX_ELEMENTS = 1 << 22  # cap on one (resamples x n) index block: 4M int32 indices = 16 MB, plus the gathered floats


def _as_float_array(values, name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{name}: cannot bootstrap an empty sample")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: {int((~np.isfinite(x)).sum())} non-finite values (NaN/inf); drop or fix them first")
    return x


def resample_means(values, resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """Means of `resamples` bootstrap resamples (with replacement, same size) of `values`.

    Vectorised: draws a (rows, n) index matrix per block, blocks sized so one block holds at most ~4M indices
    (all 2,000 resamples of 1,400 questions fit in one block). Deterministic given (values, resamples, seed)."""
    x = _as_float_array(values)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    n = x.size
    rng = np.random.default_rng(seed)
    out = np.empty(resamples, dtype=np.float64)
    rows = max(1, _MAX_ELEMENTS // n)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=np.int64 if n > 2**31 - 1 else np.int32)
        out[start:stop] = x[idx].mean(axis=1)
    return out


def bootstrap_ci(values, resamples: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """Sample mean and percentile-bootstrap (1 - alpha) CI over the items of `values` -> (mean, lo, hi)."""
    x = _as_float_array(values)
    means = resample_means(x, resamples, seed)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(lo), float(hi)


def paired_bootstrap(
    a, b, resamples: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float, float]:
    """Paired difference b - a (item i of `a` and `b` is the same question) -> (mean diff, lo, hi, p_gt0).

    Resamples the per-item differences; p_gt0 is the share of resamples whose mean difference is > 0."""
    xa, xb = _as_float_array(a, "a"), _as_float_array(b, "b")
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples differ in length: {xa.size} vs {xb.size}")
    d = xb - xa
    means = resample_means(d, resamples, seed)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(d.mean()), float(lo), float(hi), float((means > 0).mean())
