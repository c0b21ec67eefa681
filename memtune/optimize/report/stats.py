"""Percentile-bootstrap statistics over per-question scores (pure functions, numpy only).

LOCOMO's questions cluster in a handful of conversations (10, 7 in the dev split): questions about one conversation
share its memories and succeed or fail together, so resampling questions as if independent gives CIs that are too
narrow. Every function here therefore takes the questions' `clusters` (conversation ids) and draws a TWO-STAGE
(clustered) bootstrap: each resample draws as many conversations as there are, with replacement, then, within
each drawn conversation, as many of its questions as it has, with replacement; the resample mean is the mean over
all questions drawn. With `clusters=None` every question is its own cluster (the plain question bootstrap).

`resample_means` draws the resample means, `bootstrap_ci` gives a mean with its CI, `paired_bootstrap` the mean
paired difference of two runs on the same questions with its CI and P(difference > 0).
"""

from __future__ import annotations

import numpy as np

_MAX_ELEMENTS = 1 << 22  # cap on one (resamples x clusters x largest cluster) draw block: 4M indices, ~32 MB


def _as_float_array(values, name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{name}: cannot bootstrap an empty sample")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: {int((~np.isfinite(x)).sum())} non-finite values (NaN/inf); drop or fix them first")
    return x


def _cluster_layout(n: int, clusters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, offsets, sizes): `order` sorts the items by cluster; cluster c holds order[offsets[c]:+sizes[c]]."""
    if clusters is None:
        return np.arange(n), np.arange(n), np.ones(n, dtype=np.int64)
    labels = np.asarray(clusters).ravel()
    if labels.size != n:
        raise ValueError(f"clusters: {labels.size} labels for {n} values; give one cluster (conversation) per value")
    _, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return order, offsets, sizes


def resample_means(values, resamples: int = 2000, seed: int = 0, clusters=None) -> np.ndarray:
    """Means of `resamples` two-stage bootstrap resamples of `values` (see the module doc; `clusters` gives each
    value's conversation, None = each value its own cluster).

    Vectorised in blocks of at most ~4M drawn indices. Deterministic given (values, clusters, resamples, seed)."""
    x = _as_float_array(values)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    order, offsets, sizes = _cluster_layout(x.size, clusters)
    xs = x[order]
    k, widest = sizes.size, int(sizes.max())
    rng = np.random.default_rng(seed)
    out = np.empty(resamples, dtype=np.float64)
    rows = max(1, _MAX_ELEMENTS // (k * widest))
    within = np.arange(widest)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        drawn = rng.integers(0, k, size=(stop - start, k))  # stage 1: conversations, with replacement
        n_c = sizes[drawn]
        if widest == 1:  # singleton clusters: stage 2 is the identity
            out[start:stop] = xs[offsets[drawn]].mean(axis=1)
            continue
        # stage 2: n_c questions of each drawn conversation, with replacement (positions past n_c are masked)
        pos = np.floor(rng.random((stop - start, k, widest)) * n_c[..., None]).astype(np.int64)
        mask = within < n_c[..., None]
        picked = np.where(mask, xs[offsets[drawn][..., None] + np.minimum(pos, n_c[..., None] - 1)], 0.0)
        out[start:stop] = picked.sum(axis=(1, 2)) / n_c.sum(axis=1)
    return out


def bootstrap_ci(
    values, resamples: int = 2000, seed: int = 0, alpha: float = 0.05, clusters=None
) -> tuple[float, float, float]:
    """Sample mean and percentile-bootstrap (1 - alpha) CI, clustered by `clusters` -> (mean, lo, hi)."""
    x = _as_float_array(values)
    means = resample_means(x, resamples, seed, clusters)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(lo), float(hi)


def paired_bootstrap(
    a, b, resamples: int = 2000, seed: int = 0, alpha: float = 0.05, clusters=None
) -> tuple[float, float, float, float]:
    """Paired difference b - a (item i of `a` and `b` is the same question) -> (mean diff, lo, hi, p_gt0).

    Resamples the per-item differences (two-stage by `clusters`, the questions' conversations); p_gt0 is the
    share of resamples whose mean difference is > 0."""
    xa, xb = _as_float_array(a, "a"), _as_float_array(b, "b")
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples differ in length: {xa.size} vs {xb.size}")
    d = xb - xa
    means = resample_means(d, resamples, seed, clusters)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(d.mean()), float(lo), float(hi), float((means > 0).mean())
