"""Tests for the latent-space math: sampling, interpolation, directions and .npy files."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from malgan.errors import LatentError
from malgan.latent import (
    attribute_direction,
    interpolate,
    lerp,
    move,
    principal_directions,
    sample_z,
    slerp,
)
from malgan.latent_files import latent_from_npy, latent_to_npy

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)
ATOL = 1e-9

coords = st.floats(-10.0, 10.0, allow_nan=False, width=64)
dims = st.integers(1, 8)
ts = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def vector_pairs(draw, min_dim=1):
    """Pairs of vectors, biased toward zero, parallel and opposite cases."""
    dim = draw(st.integers(min_dim, 8))
    a = draw(hnp.arrays(np.float64, dim, elements=coords))
    kind = draw(st.sampled_from(["free", "parallel", "opposite", "zero", "same"]))
    if kind == "free":
        b = draw(hnp.arrays(np.float64, dim, elements=coords))
    elif kind == "parallel":
        b = a * draw(st.floats(0.1, 5.0))
    elif kind == "opposite":
        b = -a * draw(st.floats(0.1, 5.0))
    elif kind == "zero":
        b = np.zeros(dim)
    else:
        b = a.copy()
    return a, b


def _scale(a, b):
    return 1.0 + max(np.linalg.norm(a), np.linalg.norm(b))


@PROPERTY_SETTINGS
@given(vector_pairs())
def test_slerp_endpoints_exact(pair):
    a, b = pair
    out = slerp(a, b, np.array([0.0, 1.0]))
    np.testing.assert_array_equal(out[0], a)
    np.testing.assert_array_equal(out[1], b)


@PROPERTY_SETTINGS
@given(vector_pairs(), st.lists(ts, min_size=1, max_size=5))
def test_slerp_always_finite(pair, t):
    a, b = pair
    out = slerp(a, b, np.array(t))
    assert out.shape == (len(t), a.size)
    assert np.isfinite(out).all()


@PROPERTY_SETTINGS
@given(vector_pairs(), ts)
def test_slerp_symmetric(pair, t):
    a, b = pair
    np.testing.assert_allclose(slerp(a, b, t), slerp(b, a, 1.0 - t), atol=1e-6 * _scale(a, b))


@PROPERTY_SETTINGS
@given(vector_pairs(min_dim=2), ts)
def test_slerp_keeps_norm_when_norms_equal(pair, t):
    a, b = pair
    norm = np.linalg.norm(a)
    nb = np.linalg.norm(b)
    if nb > 0:
        b = b * (norm / nb)
    if norm == 0 or np.linalg.norm(b) == 0:
        return
    out = slerp(a, b, t)
    assert np.linalg.norm(out) == pytest.approx(norm, rel=1e-9)


@PROPERTY_SETTINGS
@given(vector_pairs(min_dim=2), ts)
def test_slerp_interpolates_norm_linearly(pair, t):
    a, b = pair
    if np.linalg.norm(a) == 0 or np.linalg.norm(b) == 0:
        return
    expected = (1 - t) * np.linalg.norm(a) + t * np.linalg.norm(b)
    assert np.linalg.norm(slerp(a, b, t)) == pytest.approx(expected, rel=1e-9, abs=ATOL)


def test_slerp_follows_great_circle():
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.0, 1.0, 0.0])
    out = slerp(a, b, 0.5)
    np.testing.assert_allclose(out, [np.sqrt(0.5), np.sqrt(0.5), 0.0], atol=ATOL)


def test_slerp_parallel_matches_lerp():
    a = np.array([1.0, 2.0, 3.0])
    t = np.linspace(0, 1, 7)
    np.testing.assert_allclose(slerp(a, 3 * a, t), lerp(a, 3 * a, t), atol=ATOL)


def test_slerp_opposite_path_is_orthogonal_at_midpoint():
    a = np.array([0.6, 0.8, 0.0, 0.0])
    mid = slerp(a, -a, 0.5)
    assert np.linalg.norm(mid) == pytest.approx(1.0)
    assert abs(mid @ a) < ATOL
    np.testing.assert_array_equal(mid, slerp(-a, a, 0.5))


def test_slerp_nearly_opposite_is_continuous_in_t():
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([-1.0, 1e-9, 0.0])
    path = slerp(a, b, np.linspace(0, 1, 101))
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert steps.max() < 0.05


def test_slerp_batched_shapes_and_dtype():
    a = np.ones((4, 3), np.float32)
    b = -np.ones((4, 3), np.float32)
    assert slerp(a, b, 0.3).shape == (4, 3)
    assert slerp(a, b, np.full(4, 0.3)).shape == (4, 3)
    assert slerp(a, b, np.full((4, 1), 0.3)).dtype == np.float32
    assert slerp(a[0], b[0], np.linspace(0, 1, 5)).shape == (5, 3)


def test_lerp_endpoints_and_midpoint():
    a, b = np.array([1.0, -2.0]), np.array([3.0, 4.0])
    out = lerp(a, b, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(out[[0, 2]], [a, b])
    np.testing.assert_allclose(out[1], [2.0, 1.0])


@pytest.mark.parametrize("method", ["slerp", "lerp"])
def test_interpolate_endpoints_exact(method):
    a, b = sample_z(0, 2, 16)
    out = interpolate(a, b, 9, method=method)
    assert out.shape == (9, 16)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], a)
    np.testing.assert_array_equal(out[-1], b)


def test_interpolate_rejects_bad_arguments():
    a = np.zeros(3)
    with pytest.raises(ValueError, match="steps"):
        interpolate(a, a, 1)
    with pytest.raises(ValueError, match="method"):
        interpolate(a, a, 3, method="cubic")
    with pytest.raises(ValueError, match="equal length"):
        interpolate(a, np.zeros(4), 3)


def test_move_batched():
    z = np.zeros((3, 2), np.float32)
    out = move(z, np.array([1.0, 0.0]), np.array([1.0, 2.0, -1.0]))
    np.testing.assert_allclose(out, [[1, 0], [2, 0], [-1, 0]])
    assert out.dtype == np.float32
    np.testing.assert_allclose(move(np.ones(2), np.array([0.0, 1.0]), 2.0), [1.0, 3.0])


def test_sample_z_deterministic_and_float32():
    first = sample_z(7, 5, 12)
    assert first.dtype == np.float32
    assert first.shape == (5, 12)
    np.testing.assert_array_equal(first, sample_z(7, 5, 12))
    assert not np.array_equal(first, sample_z(8, 5, 12))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 6), st.integers(1, 6))
def test_sample_z_prefix_stable(seed, n, extra):
    short = sample_z(seed, n, 8)
    long = sample_z(seed, n + extra, 8)
    np.testing.assert_array_equal(short, long[:n])
    np.testing.assert_array_equal(sample_z(seed, extra, 8, start=n), long[n:])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 1000), st.floats(0.05, 2.0))
def test_sample_z_truncation_bound(seed, truncation):
    z = sample_z(seed, 4, 64, truncation=truncation)
    assert (np.abs(z) <= np.float32(truncation)).all()


def test_sample_z_truncation_off_for_none_and_non_positive():
    plain = sample_z(3, 4, 32)
    np.testing.assert_array_equal(sample_z(3, 4, 32, truncation=0.0), plain)
    np.testing.assert_array_equal(sample_z(3, 4, 32, truncation=-1.0), plain)


def test_sample_z_empty_and_invalid():
    assert sample_z(0, 0, 5).shape == (0, 5)
    with pytest.raises(ValueError, match="n must be"):
        sample_z(0, -1, 5)
    with pytest.raises(ValueError, match="z_dim"):
        sample_z(0, 1, 0)
    with pytest.raises(ValueError, match="seed"):
        sample_z(-1, 1, 5)
    with pytest.raises(ValueError, match="truncation"):
        sample_z(0, 1, 5, truncation=float("nan"))


def test_principal_directions_recovers_planted_direction():
    rng = np.random.default_rng(0)
    z_dim, n = 16, 3000
    z = rng.standard_normal((n, z_dim))
    planted = rng.standard_normal(z_dim)
    planted /= np.linalg.norm(planted)
    loadings = rng.standard_normal(40)
    # One strong factor driven by the planted direction, plus weak unrelated noise.
    activations = 5.0 * np.outer(z @ planted, loadings) + 0.1 * rng.standard_normal((n, 40))
    directions, sigmas = principal_directions(z, activations, 3)
    assert directions.shape == (3, z_dim)
    assert directions.dtype == np.float32
    assert sigmas.shape == (3,)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, rtol=1e-5)
    assert abs(directions[0] @ planted) > 0.99
    assert sigmas[0] == pytest.approx(np.std(z @ directions[0]), rel=1e-4)
    # The sign rule makes the largest-magnitude entry positive.
    for row in directions:
        assert row[np.argmax(np.abs(row))] > 0


def test_principal_directions_validates():
    z = np.zeros((5, 3))
    with pytest.raises(ValueError, match="rows"):
        principal_directions(z, np.zeros((4, 2)), 1)
    with pytest.raises(ValueError, match="k must be"):
        principal_directions(z, np.ones((5, 2)), 3)
    with pytest.raises(ValueError, match="varying"):
        principal_directions(z, np.ones((5, 2)), 1)


def test_attribute_direction_recovers_planted_direction():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((800, 32))
    planted = rng.standard_normal(32)
    planted /= np.linalg.norm(planted)
    scores = 1.0 / (1.0 + np.exp(-(3.0 * z @ planted + 0.3 * rng.standard_normal(800))))
    direction = attribute_direction(z, scores)
    assert direction.dtype == np.float32
    assert np.linalg.norm(direction) == pytest.approx(1.0, rel=1e-5)
    assert direction @ planted > 0.97
    # Moving along the direction raises the score, even with the sign of the data flipped.
    assert attribute_direction(z, 1.0 - scores) @ planted < -0.97


def test_attribute_direction_handles_saturated_scores():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((300, 8))
    scores = (z[:, 2] > 0).astype(float)  # hard 0/1 scores: the clip keeps logits finite
    direction = attribute_direction(z, scores)
    assert np.isfinite(direction).all()
    assert direction[2] > 0.9


def test_attribute_direction_validates():
    z = np.zeros((4, 3))
    with pytest.raises(ValueError, match="probabilities"):
        attribute_direction(z, np.array([0.1, 0.2, 1.5, 0.3]))
    with pytest.raises(ValueError, match="shape"):
        attribute_direction(z, np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="do not vary"):
        attribute_direction(np.random.default_rng(0).standard_normal((4, 3)), np.full(4, 0.5))


@pytest.mark.parametrize("shape", [(8,), (3, 8)])
def test_npy_round_trip(shape):
    z = np.random.default_rng(0).standard_normal(shape)
    out = latent_from_npy(latent_to_npy(z), z_dim=8)
    assert out.dtype == np.float32
    assert out.shape == (1 if len(shape) == 1 else shape[0], 8)
    np.testing.assert_array_equal(out, z.astype(np.float32).reshape(-1, 8))


def _npy(array, **kwargs):
    buffer = io.BytesIO()
    np.save(buffer, array, **kwargs)
    return buffer.getvalue()


def test_npy_accepts_float64_and_int():
    np.testing.assert_array_equal(latent_from_npy(_npy(np.arange(4.0)), z_dim=4), [[0, 1, 2, 3]])
    assert latent_from_npy(_npy(np.arange(4)), z_dim=4).dtype == np.float32


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"hello, this is text", "not a .npy file"),
        (b"%PDF-1.7 ...", "not a .npy file"),
        (b"PK\x03\x04rest-of-zip", "npz"),
        (_npy(np.array([{"a": 1}], dtype=object), allow_pickle=True), "Python objects"),
        (_npy(np.zeros((3, 7))), r"holds shape \(3, 7\) but this model needs 8 values per cell"),
        (_npy(np.zeros(7)), r"shape \(7,\)"),
        (_npy(np.zeros((2, 2, 8))), r"\[N, 8\]"),
        (_npy(np.float64(1.0)), r"shape \(\)"),
        (_npy(np.zeros((0, 8))), "no latent vectors"),
        (_npy(np.array([[0.0] * 7 + [np.nan]])), "NaN or infinite"),
        (_npy(np.array([[0.0] * 7 + [np.inf]])), "NaN or infinite"),
        (_npy(np.full(8, 1e300)), "too large"),
        (_npy(np.array(["abcdefgh"] * 8)), "must be numbers"),
        (_npy(np.zeros(8, complex)), "must be numbers"),
        (_npy(np.zeros((4, 8)))[:-5], "truncated"),
        (b"\x93NUMPY\x01\x00garbage", "damaged"),
    ],
    ids=[
        "empty",
        "text",
        "pdf",
        "npz",
        "pickle",
        "wrong-z-dim",
        "wrong-length",
        "3d",
        "scalar",
        "no-rows",
        "nan",
        "inf",
        "overflow",
        "strings",
        "complex",
        "truncated",
        "bad-header",
    ],
)
def test_npy_rejects(data, match):
    with pytest.raises(LatentError, match=match):
        latent_from_npy(data, z_dim=8)


def test_latent_error_is_value_error():
    assert issubclass(LatentError, ValueError)


def test_latent_to_npy_rejects_bad_input():
    with pytest.raises(LatentError):
        latent_to_npy(np.zeros((2, 2, 2)))
    with pytest.raises(LatentError):
        latent_to_npy(np.array([np.nan, 1.0]))
    with pytest.raises(LatentError):
        latent_to_npy(np.array(["a", "b"]))
