"""Distances between sets of features: nearest neighbours, memorisation, k-NN precision,
recall, density and coverage, and membership, computed block by block in pure numpy."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

# Neighbours of the k-NN manifold estimate of precision, recall, density and coverage (the value
# of Kynkäänniemi et al. 2019 and Naeem et al. 2020).
DIVERSITY_K = 5
# The four k-NN figures, in the order they are shown.
DIVERSITY_METRICS = ("precision", "recall", "density", "coverage")
# Rows per block of a pairwise-distance computation: a block of distances is [BATCH, M] float64.
DISTANCE_BATCH = 1024


def as_features(name: str, x: npt.ArrayLike) -> np.ndarray:
    """``x`` as a finite float64 matrix [N, F], or a ValueError naming ``name``."""
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape [N, F], got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def nearest_distances(
    query: npt.ArrayLike, reference: npt.ArrayLike, *, batch: int = 1024
) -> np.ndarray:
    """Euclidean distance from each query row to its nearest reference row.

    Works block by block (``batch`` x ``batch``) so memory stays bounded for large sets. The
    nearest row is found with ``|q|^2 + |r|^2 - 2 q.r`` accumulated in float64 and clipped at 0;
    the returned distance is then recomputed directly as ``|q - r|`` for that row, because the
    expansion loses precision to cancellation when the distance is small next to the norms
    (an exact copy gives exactly 0, which matters for memorisation checks).

    Args:
        query: Features [N, F].
        reference: Features [M >= 1, F].
        batch: Rows per block.

    Returns:
        float32 distances [N].
    """
    query = as_features("query", query)
    reference = as_features("reference", reference)
    if query.shape[1] != reference.shape[1]:
        raise ValueError(
            f"query has {query.shape[1]} features but reference has {reference.shape[1]}"
        )
    if reference.shape[0] == 0:
        raise ValueError("reference must hold at least one row")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    ref_sq = np.einsum("mf,mf->m", reference, reference)  # [M]
    best = np.full(query.shape[0], np.inf)
    nearest = np.zeros(query.shape[0], dtype=np.int64)
    for q0 in range(0, query.shape[0], batch):
        block = query[q0 : q0 + batch]
        block_sq = np.einsum("nf,nf->n", block, block)[:, None]  # [B, 1]
        for r0 in range(0, reference.shape[0], batch):
            squared = (
                block_sq
                + ref_sq[None, r0 : r0 + batch]
                - 2.0 * block @ reference[r0 : r0 + batch].T
            )  # [B, batch]
            index = squared.argmin(axis=1)
            value = squared[np.arange(len(block)), index]
            closer = value < best[q0 : q0 + batch]
            best[q0 : q0 + batch] = np.where(closer, value, best[q0 : q0 + batch])
            nearest[q0 : q0 + batch] = np.where(closer, index + r0, nearest[q0 : q0 + batch])
    return np.linalg.norm(query - reference[nearest], axis=1).astype(np.float32)


def memorization_share(
    gen_dist: npt.ArrayLike, real_dist: npt.ArrayLike, *, percentile: float = 1.0
) -> dict:
    """Share of generated cells suspiciously close to the training set.

    The threshold is the given percentile of ``real_dist`` (nearest-neighbour distances from
    held-out real cells to the training set); a generator that does not copy its training data
    puts about ``percentile`` % of its cells at or below it.

    Args:
        gen_dist: Nearest-training distances of generated cells [N].
        real_dist: Nearest-training distances of held-out real cells [M >= 1].
        percentile: Percentile of ``real_dist`` in [0, 100] used as the threshold.

    Returns:
        ``{"threshold", "share", "n"}``; share is the fraction of ``gen_dist <= threshold``
        (NaN when N == 0).
    """
    gen = np.asarray(gen_dist, dtype=np.float64).ravel()
    real = np.asarray(real_dist, dtype=np.float64).ravel()
    if real.size == 0:
        raise ValueError("real_dist must hold at least one distance")
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    threshold = float(np.percentile(real, percentile))
    share = float((gen <= threshold).mean()) if gen.size else math.nan
    return {"threshold": threshold, "share": share, "n": int(gen.size)}


def _distance_blocks(query: np.ndarray, reference: np.ndarray, batch: int):
    """Euclidean distances [B, M] from each block of ``batch`` query rows to every reference row.

    Yields ``(start, distances)``; ``|q|^2 + |r|^2 - 2 q.r`` in float64, clipped at 0.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    ref_sq = np.einsum("mf,mf->m", reference, reference)  # [M]
    for start in range(0, query.shape[0], batch):
        block = query[start : start + batch]
        squared = np.einsum("nf,nf->n", block, block)[:, None] + ref_sq - 2.0 * block @ reference.T
        yield start, np.sqrt(np.clip(squared, 0.0, None))  # [B, M]


def knn_radii(
    feats: npt.ArrayLike, *, k: int = DIVERSITY_K, batch: int = DISTANCE_BATCH
) -> np.ndarray:
    """Distance from each row to its k-th nearest other row: the radius of its k-NN ball.

    Args:
        feats: Features [N > k, F].
        k: Neighbour rank; the row itself (distance 0) is not counted.
        batch: Rows per block of distances.

    Returns:
        float64 radii [N].
    """
    feats = as_features("feats", feats)
    if not 1 <= k < feats.shape[0]:
        raise ValueError(f"need 1 <= k < N, got k={k}, N={feats.shape[0]}")
    radii = np.empty(feats.shape[0])
    for start, dist in _distance_blocks(feats, feats, batch):
        rows = np.arange(dist.shape[0])
        # The row's own distance is 0 up to rounding; set it so that it is the smallest.
        dist[rows, start + rows] = 0.0
        radii[start : start + len(dist)] = np.partition(dist, k, axis=1)[:, k]
    return radii


def precision_recall_density_coverage(
    real: npt.ArrayLike,
    fake: npt.ArrayLike,
    *,
    k: int = DIVERSITY_K,
    batch: int = DISTANCE_BATCH,
) -> dict:
    """k-NN precision and recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al.
    2020) of a fake sample against a real one.

    Each real row spans a ball out to its k-th nearest real neighbour, each fake row one out to its
    k-th nearest fake neighbour; inclusion is strict (``distance < radius``), as in the authors'
    ``prdc`` package. Precision is the share of fake rows inside some real ball (realism), recall
    the share of real rows inside some fake ball (variety), density the mean count of real balls
    holding a fake row divided by k (1 for a fake sample spread like the real one), coverage the
    share of real balls holding at least one fake row. Computed block by block: memory is
    O(batch x max(N, M)) whatever the sizes.

    Args:
        real: Real features [N > k, F].
        fake: Fake features [M > k, F].
        k: Neighbours of the k-NN balls.
        batch: Rows per block of distances.

    Returns:
        ``{"precision", "recall", "density", "coverage", "k", "n_real", "n_fake"}``.
    """
    real = as_features("real", real)
    fake = as_features("fake", fake)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real has {real.shape[1]} features but fake has {fake.shape[1]}")
    real_radii = knn_radii(real, k=k, batch=batch)  # [N]
    fake_radii = knn_radii(fake, k=k, batch=batch)  # [M]
    inside_real = np.zeros(fake.shape[0], dtype=np.int64)  # real balls holding each fake row
    recalled = np.zeros(real.shape[0], dtype=bool)
    nearest_fake = np.full(real.shape[0], np.inf)
    for start, dist in _distance_blocks(fake, real, batch):  # [B, N]
        stop = start + len(dist)
        inside_real[start:stop] = (dist < real_radii[None, :]).sum(axis=1)
        recalled |= (dist < fake_radii[start:stop, None]).any(axis=0)
        nearest_fake = np.minimum(nearest_fake, dist.min(axis=0))
    return {
        "precision": float((inside_real > 0).mean()),
        "recall": float(recalled.mean()),
        "density": float(inside_real.mean() / k),
        "coverage": float((nearest_fake < real_radii).mean()),
        "k": k,
        "n_real": int(real.shape[0]),
        "n_fake": int(fake.shape[0]),
    }


def member_share(
    query: npt.ArrayLike,
    members: npt.ArrayLike,
    non_members: npt.ArrayLike,
    *,
    batch: int = DISTANCE_BATCH,
) -> dict:
    """Share of query rows whose nearest row of ``members`` + ``non_members`` is a member.

    With equal-size sets of training cells (members) and cells of unseen patients (non-members),
    a query drawn like the non-members sits near 0.5; a generator that copies training cells sits
    above. An exact tie counts as a member.

    Args:
        query: Features [Q, F].
        members: Features [N >= 1, F].
        non_members: Features [M >= 1, F].
        batch: Rows per block of distances.

    Returns:
        ``{"share", "n", "n_members", "n_non_members"}``; share is NaN when Q == 0.
    """
    query = as_features("query", query)
    members = as_features("members", members)
    non_members = as_features("non_members", non_members)
    if not (query.shape[1] == members.shape[1] == non_members.shape[1]):
        raise ValueError("query, members and non_members must have the same number of features")
    if len(members) == 0 or len(non_members) == 0:
        raise ValueError("members and non_members must each hold at least one row")
    to_member = np.empty(query.shape[0])
    to_other = np.empty(query.shape[0])
    for target, pool in ((to_member, members), (to_other, non_members)):
        for start, dist in _distance_blocks(query, pool, batch):
            target[start : start + len(dist)] = dist.min(axis=1)
    share = float((to_member <= to_other).mean()) if query.shape[0] else math.nan
    return {
        "share": share,
        "n": int(query.shape[0]),
        "n_members": int(members.shape[0]),
        "n_non_members": int(non_members.shape[0]),
    }
