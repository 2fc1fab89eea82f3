"""Latent-space math in pure numpy: sampling, interpolation and edit directions."""

from __future__ import annotations

import math
import operator

import numpy as np
import numpy.typing as npt

# Truncation thresholds below this make rejection sampling take thousands of draws per entry.
# The one default seed of the dashboard's pages, malgan-synth and the tests that mirror them:
# the same seed gives the same cell everywhere.
DEFAULT_SEED = 7
MIN_TRUNCATION = 0.01
# Below this angle (radians) two directions are treated as parallel and lerped.
PARALLEL_ANGLE = 1e-6
# Within this angle (radians) of pi two directions are treated as opposite.
OPPOSITE_ANGLE = 1e-4
# Vectors with a smaller norm have no usable direction.
ZERO_NORM = 1e-30
# Classifier scores are clipped to [SCORE_EPS, 1 - SCORE_EPS] so that their logit is finite.
SCORE_EPS = 1e-6
# Ridge penalty of the InterFaceGAN fit (small next to z^T z, which grows with the sample size).
DEFAULT_RIDGE = 1.0
# Components whose singular value is below this fraction of the largest carry no signal (the
# Gram matrix squares singular values, so rounding noise sits near 1e-8 of the largest).
SINGULAR_RTOL = 1e-6


def _float_dtype(*arrays: np.ndarray) -> np.dtype:
    """Floating dtype of the inputs' result type (float64 for integer inputs)."""
    dtype = np.result_type(*arrays)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def _non_negative_int(name: str, value: int) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")
    return number


def sample_z(
    seed: int, n: int, z_dim: int, *, truncation: float | None = None, start: int = 0
) -> np.ndarray:
    """Draws standard-normal latent vectors, one generator per row.

    Row i comes from ``np.random.default_rng([seed, start + i])``, so cell i of a seed is the
    same whatever ``n`` is, and ``sample_z(s, 5, d)[2:]`` equals ``sample_z(s, 3, d, start=2)``.

    Args:
        seed: Non-negative seed shared by all rows.
        n: Number of rows (may be 0).
        z_dim: Length of each vector (>= 1).
        truncation: BigGAN truncation threshold: entries with ``|x| > truncation`` are redrawn
            from the same row generator until inside. ``None`` or a value <= 0 means no
            truncation. The bound is checked on the float32 values.
        start: Index of the first row.

    Returns:
        float32 array of shape [n, z_dim].

    Raises:
        ValueError: If an argument is out of range, or ``truncation`` is NaN or below
            ``MIN_TRUNCATION``.
    """
    seed = _non_negative_int("seed", seed)
    n = _non_negative_int("n", n)
    start = _non_negative_int("start", start)
    z_dim = _non_negative_int("z_dim", z_dim)
    if z_dim < 1:
        raise ValueError(f"z_dim must be >= 1, got {z_dim}")
    limit = None
    if truncation is not None:
        truncation = float(truncation)
        if math.isnan(truncation):
            raise ValueError("truncation must be a number or None, got NaN")
        if truncation > 0:
            if truncation < MIN_TRUNCATION:
                raise ValueError(
                    f"truncation must be >= {MIN_TRUNCATION} (or <= 0 for none), got {truncation}"
                )
            limit = np.float32(truncation)

    out = np.empty((n, z_dim), dtype=np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, start + i])
        row = rng.standard_normal(z_dim).astype(np.float32)
        if limit is not None:
            outside = np.abs(row) > limit
            while outside.any():
                row[outside] = rng.standard_normal(int(outside.sum())).astype(np.float32)
                outside = np.abs(row) > limit
        out[i] = row
    return out


def _prepare_t(t: npt.ArrayLike) -> np.ndarray:
    """Returns t as float64 shaped to broadcast against [..., D] vectors."""
    t = np.asarray(t, dtype=np.float64)
    if t.ndim >= 1 and not (t.ndim >= 2 and t.shape[-1] == 1):
        t = t[..., None]  # [N] -> [N, 1]
    return t


def lerp(a: npt.ArrayLike, b: npt.ArrayLike, t: npt.ArrayLike) -> np.ndarray:
    """Linear interpolation ``(1 - t) * a + t * b``, batched over the leading axes.

    Args:
        a: Start vectors, shape [..., D] or [D].
        b: End vectors, broadcastable against ``a``.
        t: Scalar, [N] or [N, 1] interpolation weights; 0 gives ``a`` and 1 gives ``b`` exactly.

    Returns:
        The interpolated vectors in the inputs' floating dtype.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    dtype = _float_dtype(a, b)
    t = _prepare_t(t)
    out = (1.0 - t) * a.astype(np.float64) + t * b.astype(np.float64)
    return out.astype(dtype)


def _norm(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x, axis=-1, keepdims=True)


def _safe(x: np.ndarray) -> np.ndarray:
    """Replaces zeros by ones so that divisions by x are finite; masked results are discarded."""
    return np.where(x > 0, x, 1.0)


def _angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle between unit vectors, accurate near 0 and pi (unlike arccos of the dot product)."""
    return 2.0 * np.arctan2(_norm(u - v), _norm(u + v))


def _slerp_unit(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Great-circle interpolation between unit vectors that are not nearly opposite."""
    omega = _angle(u, v)
    sin_omega = np.sin(omega)
    parallel = omega < PARALLEL_ANGLE
    denominator = _safe(np.where(parallel, 0.0, sin_omega))
    coef_u = np.where(parallel, 1.0 - t, np.sin((1.0 - t) * omega) / denominator)
    coef_v = np.where(parallel, t, np.sin(t * omega) / denominator)
    return coef_u * u + coef_v * v


def slerp(a: npt.ArrayLike, b: npt.ArrayLike, t: npt.ArrayLike) -> np.ndarray:
    """Spherical interpolation, batched over the leading axes; never returns NaN for finite input.

    The direction moves along the great circle from ``a/|a|`` to ``b/|b|``, and the norm is
    interpolated linearly between |a| and |b|, so it is kept when |a| == |b|.

    Guards:
        * Nearly parallel directions (angle below ``PARALLEL_ANGLE``) are lerped, where the
          great circle and the chord agree.
        * Nearly opposite directions (within ``OPPOSITE_ANGLE`` of pi) have no unique great
          circle. The path then goes through a fixed midpoint ``p``: the unit axis e_k with the
          smallest ``|d_k|``, where d is the normalised difference ``a/|a| - b/|b|``, made
          orthogonal to d. The path is ``a -> p`` for t <= 0.5 and ``p -> b`` after. ``p`` is
          the same for (a, b) and (b, a), so the path does not depend on the order.
        * A zero vector has no direction, and in one dimension opposite vectors have no
          orthogonal midpoint: both cases fall back to :func:`lerp`, whose norm is not
          interpolated.

    Args:
        a: Start vectors, shape [..., D] or [D].
        b: End vectors, broadcastable against ``a``.
        t: Scalar, [N] or [N, 1] interpolation weights; 0 gives ``a`` and 1 gives ``b`` exactly.

    Returns:
        The interpolated vectors in the inputs' floating dtype.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    dtype = _float_dtype(a, b)
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    t = _prepare_t(t)

    norm_a = _norm(a64)
    norm_b = _norm(b64)
    degenerate = (norm_a <= ZERO_NORM) | (norm_b <= ZERO_NORM)
    unit_a = a64 / _safe(norm_a)
    unit_b = b64 / _safe(norm_b)
    opposite = _angle(unit_a, unit_b) > math.pi - OPPOSITE_ANGLE

    # Fixed midpoint for opposite directions; its sign does not depend on the order of a and b.
    diff = unit_a - unit_b
    diff = diff / _safe(_norm(diff))
    axis = np.argmin(np.abs(diff), axis=-1)[..., None]
    basis = (np.arange(diff.shape[-1]) == axis).astype(np.float64)
    midpoint = basis - np.take_along_axis(diff, axis, axis=-1) * diff
    midpoint_norm = _norm(midpoint)
    degenerate = degenerate | (opposite & (midpoint_norm <= 0.5))  # only for D == 1
    midpoint = midpoint / _safe(midpoint_norm)

    regular = _slerp_unit(unit_a, unit_b, t)
    via_midpoint = np.where(
        t <= 0.5,
        _slerp_unit(unit_a, midpoint, 2.0 * t),
        _slerp_unit(midpoint, unit_b, 2.0 * t - 1.0),
    )
    direction = np.where(opposite, via_midpoint, regular)
    direction = direction / _safe(_norm(direction))
    out = direction * ((1.0 - t) * norm_a + t * norm_b)

    out = np.where(degenerate, lerp(a64, b64, t), out)
    a64, b64, out = np.broadcast_arrays(a64, b64, out)
    out = np.where(t == 0.0, a64, np.where(t == 1.0, b64, out))
    return out.astype(dtype)


def interpolate(
    a: npt.ArrayLike, b: npt.ArrayLike, steps: int, *, method: str = "slerp"
) -> np.ndarray:
    """Evenly spaced points from ``a`` to ``b``, both endpoints included exactly.

    Args:
        a: Start vector [D].
        b: End vector [D].
        steps: Number of points (>= 2).
        method: ``"slerp"`` or ``"lerp"``.

    Returns:
        Array [steps, D] in the inputs' floating dtype; row 0 is ``a`` and the last row is ``b``.

    Raises:
        ValueError: For vectors that are not 1-D or differ in length, fewer than two steps or
            an unknown method.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be vectors of equal length, got {a.shape} and {b.shape}")
    steps = _non_negative_int("steps", steps)
    if steps < 2:
        raise ValueError(f"steps must be >= 2 to include both endpoints, got {steps}")
    functions = {"slerp": slerp, "lerp": lerp}
    if method not in functions:
        raise ValueError(f"method must be one of {sorted(functions)}, got {method!r}")
    return functions[method](a, b, np.linspace(0.0, 1.0, steps))


def move(z: npt.ArrayLike, direction: npt.ArrayLike, amount: npt.ArrayLike) -> np.ndarray:
    """Moves latent vectors along a direction: ``z + amount * direction``.

    Args:
        z: Latent vectors [N, D] or [D].
        direction: Direction [D] (or [N, D]).
        amount: Scalar or [N] step lengths, one per row.

    Returns:
        The moved vectors, in ``z``'s floating dtype.
    """
    z = np.asarray(z)
    amount = np.asarray(amount, dtype=np.float64)
    if amount.ndim == 1:
        amount = amount[:, None]  # [N] -> [N, 1]
    out = z.astype(np.float64) + amount * np.asarray(direction, dtype=np.float64)
    return out.astype(_float_dtype(z))


def _orient(rows: np.ndarray) -> np.ndarray:
    """Flips each row so that its largest-magnitude entry is positive (a deterministic sign)."""
    largest = np.take_along_axis(rows, np.argmax(np.abs(rows), axis=-1)[..., None], axis=-1)
    return np.where(largest < 0, -rows, rows)


def _check_z(z: npt.ArrayLike) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 2 or z.shape[1] < 1:
        raise ValueError(f"z must have shape [N >= 2, z_dim], got {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("z holds NaN or infinite values")
    return z


def principal_directions(
    z: npt.ArrayLike, activations: npt.ArrayLike, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Interpretable edit directions in z (GANSpace, Härkönen et al. 2020).

    PCA of the centred activations (computed from the smaller of the two Gram matrices, which
    gives the same components as an SVD) finds the main axes of variation of an early
    generator layer. Each component is transferred to latent space by least-squares regression
    of z on the PCA coordinates: row j of the coefficient matrix is the z-direction that moves
    component j. Rows are normalised to unit length and signed so that their largest-magnitude
    entry is positive.

    Args:
        z: Latent vectors [N, z_dim] that produced the activations.
        activations: Layer activations [N, ...] (flattened to [N, A]).
        k: Number of directions, 1 <= k <= min(N - 1, A).

    Returns:
        ``(directions, sigmas)``: float32 unit rows [k, z_dim], strongest component first, and
        float32 [k] standard deviations of ``z @ direction`` over the sample (a natural step
        size for sliders).

    Raises:
        ValueError: For mismatched shapes, an out-of-range k, non-finite input or activations
            with fewer than k varying components.
    """
    z = _check_z(z)
    acts = np.asarray(activations, dtype=np.float64)
    n = z.shape[0]
    if acts.shape[0] != n:
        raise ValueError(f"z has {n} rows but activations have {acts.shape[0]}")
    acts = acts.reshape(n, -1)  # [N, A]
    if not np.isfinite(acts).all():
        raise ValueError("activations hold NaN or infinite values")
    k = _non_negative_int("k", k)
    if not 1 <= k <= min(n - 1, acts.shape[1]):
        raise ValueError(f"k must be between 1 and {min(n - 1, acts.shape[1])}, got {k}")

    centred = acts - acts.mean(axis=0)
    # PCA through the eigen-decomposition of the smaller Gram matrix: the same components as an
    # SVD of the centred activations, at a fraction of the cost when A is large.
    wide = centred.shape[1] >= n
    if wide:
        eigenvalues, vectors = np.linalg.eigh(centred @ centred.T)  # [N, N]
    else:
        eigenvalues, vectors = np.linalg.eigh(centred.T @ centred)  # [A, A]
    order = np.argsort(eigenvalues)[::-1][:k]
    singular = np.sqrt(np.clip(eigenvalues[order], 0.0, None))
    if singular[k - 1] <= SINGULAR_RTOL * singular[0] or singular[0] == 0:
        raise ValueError(f"the activations have fewer than {k} varying principal components")
    # [N, k] PCA coordinates: U S from the row Gram matrix, X V from the column one.
    coords = vectors[:, order] * singular if wide else centred @ vectors[:, order]
    z_centred = z - z.mean(axis=0)
    coefficients, *_ = np.linalg.lstsq(coords, z_centred, rcond=None)  # [k, z_dim]
    lengths = _norm(coefficients)
    if (lengths <= ZERO_NORM).any():
        raise ValueError("a principal component does not depend on z")
    directions = _orient(coefficients / lengths)
    sigmas = (z @ directions.T).std(axis=0)
    return directions.astype(np.float32), sigmas.astype(np.float32)


def attribute_direction(
    z: npt.ArrayLike, scores: npt.ArrayLike, *, ridge: float = DEFAULT_RIDGE
) -> np.ndarray:
    """Latent direction that raises a classifier score (InterFaceGAN, Shen et al. 2020).

    A linear boundary is fitted in z: ridge least squares of ``logit(clip(score))`` on the
    centred z. The fitted weight vector, normalised, points to higher scores: its projection
    has a non-negative covariance with the logits by construction.

    Args:
        z: Latent vectors [N, z_dim].
        scores: Probabilities [N] in [0, 1] (e.g. P(parasitized) for each generated cell).
        ridge: Non-negative penalty on the squared weight norm.

    Returns:
        float32 unit vector [z_dim].

    Raises:
        ValueError: For mismatched shapes, scores outside [0, 1], a negative ridge or scores
            that do not vary with z.
    """
    z = _check_z(z)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (z.shape[0],):
        raise ValueError(f"scores must have shape ({z.shape[0]},), got {scores.shape}")
    if not (np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()):
        raise ValueError("scores must be probabilities in [0, 1]")
    if not ridge >= 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")

    clipped = np.clip(scores, SCORE_EPS, 1.0 - SCORE_EPS)
    logits = np.log(clipped) - np.log1p(-clipped)
    z_centred = z - z.mean(axis=0)
    gram = z_centred.T @ z_centred + ridge * np.eye(z.shape[1])
    weights = np.linalg.lstsq(gram, z_centred.T @ (logits - logits.mean()), rcond=None)[0]
    length = float(np.linalg.norm(weights))
    if length <= ZERO_NORM:
        raise ValueError("the scores do not vary with z, so no direction can be fitted")
    return (weights / length).astype(np.float32)
