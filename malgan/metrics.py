"""Evaluation metrics as small pure-numpy functions: intervals, recovery, FID, AUC, SSIM, OOD
scores (the distance-based figures, k-NN diversity and membership, are in ``malgan.diversity``)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

# The distance-based figures live in malgan.diversity; their names stay importable from here.
from malgan.diversity import (  # noqa: F401
    DISTANCE_BATCH,
    DIVERSITY_K,
    DIVERSITY_METRICS,
    as_features,
    knn_radii,
    member_share,
    memorization_share,
    nearest_distances,
    precision_recall_density_coverage,
)

# Two-sided 95% normal quantile.
Z_95 = 1.96
# Class index of the positive class (Parasitized) in labels and probability columns.
POSITIVE = 0
# SSIM constants of Wang et al. 2004 (also scikit-image's defaults for 8-bit data).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_DATA_RANGE = 255.0
# Default share of the covariance replaced by a scaled identity in fit_gaussian.
DEFAULT_SHRINKAGE = 1e-3
MS_PER_SECOND = 1000.0
LATENCY_PERCENTILE = 95.0


def wilson_interval(successes: int, n: int, *, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Args:
        successes: Number of successes, 0 <= successes <= n.
        n: Number of trials; with no trials the interval is the whole of [0, 1].
        z: Normal quantile (1.96 for a two-sided 95% interval).

    Returns:
        ``(low, high)``, clipped to [0, 1].

    Raises:
        ValueError: If the counts are inconsistent or z is negative.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if z < 0:
        raise ValueError(f"z must be >= 0, got {z}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def recovery(proba: npt.ArrayLike, intended: int) -> dict:
    """Share of generated cells that the classifier assigns to the class they were made for.

    Args:
        proba: Classifier probabilities [N, classes].
        intended: Class index the cells were generated as.

    Returns:
        ``{"rate", "ci_low", "ci_high", "n"}``: the share whose argmax is ``intended`` (NaN when
        N == 0) and its 95% Wilson interval.
    """
    proba = as_features("proba", proba)
    if not 0 <= intended < proba.shape[1]:
        raise ValueError(f"intended must be a class index below {proba.shape[1]}, got {intended}")
    n = proba.shape[0]
    hits = int((proba.argmax(axis=1) == intended).sum())
    low, high = wilson_interval(hits, n)
    rate = hits / n if n else math.nan
    return {"rate": rate, "ci_low": low, "ci_high": high, "n": n}


def gaussian_stats(feats: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features, as used by the Fréchet distance.

    Args:
        feats: Features [N >= 2, F].

    Returns:
        ``(mu [F], sigma [F, F])`` in float64; sigma is the unbiased (N - 1) covariance.
    """
    feats = as_features("feats", feats)
    if feats.shape[0] < 2:
        raise ValueError(f"need at least 2 feature rows, got {feats.shape[0]}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False).reshape(feats.shape[1], -1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance_from_stats(
    mu_a: npt.ArrayLike, sigma_a: npt.ArrayLike, mu_b: npt.ArrayLike, sigma_b: npt.ArrayLike
) -> float:
    """Fréchet distance between two Gaussians.

    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))``, where the trace of the
    square root is the sum of square roots of the eigenvalues of the symmetric matrix
    ``sqrt(S_a) S_b sqrt(S_a)`` (same eigenvalues as S_a S_b). Computed in float64; covariances
    are symmetrised and negative eigenvalues from rounding are clipped to 0.

    Returns:
        The distance, clipped at 0.
    """
    mu_a = np.asarray(mu_a, dtype=np.float64)
    mu_b = np.asarray(mu_b, dtype=np.float64)
    sigma_a = np.asarray(sigma_a, dtype=np.float64)
    sigma_b = np.asarray(sigma_b, dtype=np.float64)
    dim = mu_a.shape[0]
    if mu_a.shape != (dim,) or mu_b.shape != (dim,):
        raise ValueError(f"means must be vectors of equal length, got {mu_a.shape}, {mu_b.shape}")
    if sigma_a.shape != (dim, dim) or sigma_b.shape != (dim, dim):
        raise ValueError(f"covariances must have shape ({dim}, {dim})")
    sigma_a = (sigma_a + sigma_a.T) / 2
    sigma_b = (sigma_b + sigma_b.T) / 2
    root_a = _psd_sqrt(sigma_a)
    product = root_a @ sigma_b @ root_a
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    trace_root = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu_a - mu_b
    distance = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_root
    return max(float(distance), 0.0)


def frechet_distance(feats_a: npt.ArrayLike, feats_b: npt.ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID on given features).

    Args:
        feats_a: Features [N, F].
        feats_b: Features [M, F].

    Returns:
        The distance (>= 0); see :func:`frechet_distance_from_stats`.
    """
    mu_a, sigma_a = gaussian_stats(feats_a)
    mu_b, sigma_b = gaussian_stats(feats_b)
    return frechet_distance_from_stats(mu_a, sigma_a, mu_b, sigma_b)


def roc_auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic.

    Tied scores get their average rank, so a positive-negative tie counts one half.

    Args:
        scores: Scores [N]; higher means more likely positive.
        labels: Binary labels [N] (bool or 0/1); true / 1 marks a positive.

    Returns:
        The AUC in [0, 1], or NaN when only one class is present (the AUC is undefined then).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.size} vs {labels.size}")
    if not np.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinite values")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be binary (0/1 or bool)")
    positive = labels.astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # 1-based average ranks
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def confusion_matrix(pred: npt.ArrayLike, labels: npt.ArrayLike, k: int = 2) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        pred: Predicted class indices [N].
        labels: True class indices [N].
        k: Number of classes.

    Returns:
        int64 [k, k]; rows are true classes and columns predicted classes.
    """
    pred = np.asarray(pred).ravel()
    labels = np.asarray(labels).ravel()
    if pred.shape != labels.shape:
        raise ValueError(f"pred and labels differ in length: {pred.size} vs {labels.size}")
    for name, values in (("pred", pred), ("labels", labels)):
        if values.size and not (
            np.issubdtype(values.dtype, np.integer) and values.min() >= 0 and values.max() < k
        ):
            raise ValueError(f"{name} must be integer class indices in [0, {k})")
    counts = np.bincount(labels.astype(np.int64) * k + pred.astype(np.int64), minlength=k * k)
    return counts.reshape(k, k).astype(np.int64)


def classification_report(proba: npt.ArrayLike, labels: npt.ArrayLike) -> dict:
    """Binary classifier summary with Parasitized (index 0) as the positive class.

    Args:
        proba: Probabilities [N, 2]; column 0 is P(parasitized).
        labels: True class indices [N] (0 = Parasitized, 1 = Uninfected).

    Returns:
        ``{"accuracy", "auc", "sensitivity", "specificity", "confusion", "n"}``. Sensitivity is
        the share of Parasitized cells predicted Parasitized, specificity the share of Uninfected
        cells predicted Uninfected (NaN when a class is absent), auc uses column 0 as the score
        of the positive class, and confusion is a JSON-ready nested list (rows true, columns
        predicted).
    """
    proba = as_features("proba", proba)
    if proba.shape[1] != 2:
        raise ValueError(f"proba must have 2 columns, got {proba.shape[1]}")
    labels = np.asarray(labels).ravel()
    if labels.shape != (proba.shape[0],):
        raise ValueError(f"labels must have length {proba.shape[0]}, got {labels.size}")
    confusion = confusion_matrix(proba.argmax(axis=1), labels, k=2)
    per_class = confusion.sum(axis=1)
    n = int(per_class.sum())

    def share(count: int, total: int) -> float:
        return count / total if total else math.nan

    return {
        "accuracy": share(int(np.trace(confusion)), n),
        "auc": roc_auc(proba[:, POSITIVE], labels == POSITIVE),
        "sensitivity": share(int(confusion[0, 0]), int(per_class[0])),
        "specificity": share(int(confusion[1, 1]), int(per_class[1])),
        "confusion": confusion.tolist(),
        "n": n,
    }


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    weights = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def _filter_valid(maps: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' convolution over axes 1 (rows) and 2 (columns) of [S, H, W, C]."""
    size = window.size
    rows = maps.shape[1] - size + 1
    cols = maps.shape[2] - size + 1
    out = sum(w * maps[:, i : i + rows] for i, w in enumerate(window))
    return sum(w * out[:, :, j : j + cols] for j, w in enumerate(window))


def ssim(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Structural similarity of two 8-bit images (Wang et al. 2004).

    Gaussian window of 11 taps with sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255, population
    (not sample) variances, computed per channel over window positions that fit inside the
    image, then averaged over channels and positions. This matches the standard definition used
    by scikit-image's ``structural_similarity`` with ``gaussian_weights=True,
    use_sample_covariance=False, data_range=255``.

    Args:
        a: Image [H, W, C] or [H, W], H and W >= 11.
        b: Image of the same shape.

    Returns:
        The mean SSIM (1.0 for identical images).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3 or min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"images must be [H, W(, C)] with H, W >= {SSIM_WINDOW}, got {a.shape}")
    c1 = (SSIM_K1 * SSIM_DATA_RANGE) ** 2
    c2 = (SSIM_K2 * SSIM_DATA_RANGE) ** 2
    stacked = np.stack([a, b, a * a, b * b, a * b])  # [5, H, W, C]
    mu_a, mu_b, mean_aa, mean_bb, mean_ab = _filter_valid(stacked, _gaussian_window())
    var_a = mean_aa - mu_a * mu_a
    var_b = mean_bb - mu_b * mu_b
    cov = mean_ab - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    denominator = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float((numerator / denominator).mean())


def summarize_latencies(seconds: npt.ArrayLike) -> dict:
    """Median and 95th percentile of latencies.

    Args:
        seconds: Durations in seconds.

    Returns:
        ``{"median_ms", "p95_ms", "n"}`` in milliseconds (NaN when empty).
    """
    values = np.asarray(seconds, dtype=np.float64).ravel() * MS_PER_SECOND
    if values.size == 0:
        return {"median_ms": math.nan, "p95_ms": math.nan, "n": 0}
    return {
        "median_ms": float(np.median(values)),
        "p95_ms": float(np.percentile(values, LATENCY_PERCENTILE)),
        "n": int(values.size),
    }


def fit_gaussian(
    features: npt.ArrayLike, *, shrinkage: float = DEFAULT_SHRINKAGE
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision of a Gaussian fitted to in-distribution features.

    The covariance is shrunk toward a scaled identity (Ledoit-Wolf style target):
    ``(1 - shrinkage) * S + shrinkage * (tr(S) / F) * I``, which keeps it invertible even when
    there are fewer rows than features.

    Args:
        features: Features [N >= 2, F].
        shrinkage: Weight of the identity target, in (0, 1].

    Returns:
        ``(mean [F], precision [F, F])`` in float64.

    Raises:
        ValueError: For too few rows, a shrinkage outside (0, 1] or features that do not vary.
    """
    if not 0.0 < shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage}")
    mean, covariance = gaussian_stats(features)
    dim = covariance.shape[0]
    scale = np.trace(covariance) / dim
    if scale <= 0:
        raise ValueError("the features do not vary, so no covariance can be fitted")
    shrunk = (1.0 - shrinkage) * covariance + shrinkage * scale * np.eye(dim)
    eigenvalues, eigenvectors = np.linalg.eigh((shrunk + shrunk.T) / 2)
    precision = (eigenvectors / eigenvalues) @ eigenvectors.T
    return mean, (precision + precision.T) / 2


def ood_score(features: npt.ArrayLike, mean: npt.ArrayLike, precision: npt.ArrayLike) -> np.ndarray:
    """Mahalanobis distance of each feature row from a fitted Gaussian.

    Args:
        features: Features [N, F].
        mean: Mean [F] from :func:`fit_gaussian`.
        precision: Precision matrix [F, F] from :func:`fit_gaussian`.

    Returns:
        float32 distances [N]; larger means further from the training distribution.
    """
    features = as_features("features", features)
    mean = np.asarray(mean, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    dim = features.shape[1]
    if mean.shape != (dim,) or precision.shape != (dim, dim):
        raise ValueError(
            f"mean and precision must have shapes ({dim},) and ({dim}, {dim}), "
            f"got {mean.shape} and {precision.shape}"
        )
    centred = features - mean
    squared = ((centred @ precision) * centred).sum(axis=1)
    return np.sqrt(np.clip(squared, 0.0, None)).astype(np.float32)
