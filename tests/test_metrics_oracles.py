"""The hand-written metrics against reference implementations (test-only dependencies).

SSIM against scikit-image, ROC AUC against scikit-learn, the Fréchet distance against a
formula built on ``scipy.linalg.sqrtm`` and the k-NN precision, recall, density and coverage
against the authors' ``prdc`` package, on seeded random cases and hypothesis examples, edge
cases included: ties in the AUC scores, flat and minimum-size images, singular and
near-singular covariances, sets larger than one block of distances.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prdc import compute_prdc
from scipy import linalg
from skimage.metrics import structural_similarity
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_auc_score

from malgan import metrics

SEEDS = range(6)
HYPOTHESIS_EXAMPLES = 60
# SSIM and AUC agree to rounding; the two square-root methods of the FD differ a little more.
SSIM_ATOL = 1e-10
AUC_ATOL = 1e-12
FD_RTOL = 1e-6
# Near-singular covariances: an absolute slack relative to the covariances' total variance.
FD_SCALE_ATOL = 1e-6


# SSIM.


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """scikit-image's SSIM with the parameters of the Gaussian-window definition in metrics."""
    # scikit-image sizes the Gaussian window as 2 * int(truncate * sigma + 0.5) + 1 taps.
    truncate = (metrics.SSIM_WINDOW // 2) / metrics.SSIM_SIGMA
    return float(
        structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=metrics.SSIM_SIGMA,
            truncate=truncate,
            use_sample_covariance=False,
            data_range=metrics.SSIM_DATA_RANGE,
            K1=metrics.SSIM_K1,
            K2=metrics.SSIM_K2,
            channel_axis=-1 if a.ndim == 3 else None,
        )
    )


def noisy_pair(
    rng: np.random.Generator, shape: tuple[int, ...], noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 image with smooth structure and a copy with Gaussian noise of ``noise`` levels."""
    a = rng.integers(0, 256, shape).astype(np.float64)
    a = (a + np.roll(a, 1, axis=0) + np.roll(a, 1, axis=1)) / 3.0
    b = a + rng.normal(0.0, noise, shape)
    return np.clip(a, 0, 255).astype(np.uint8), np.clip(b, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(64, 64, 3), (32, 48), (11, 11, 1), (11, 20, 3)])
def test_ssim_matches_scikit_image(seed: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(seed)
    a, b = noisy_pair(rng, shape, noise=10.0 * (seed + 1))
    assert metrics.ssim(a, b) == pytest.approx(reference_ssim(a, b), abs=SSIM_ATOL)


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    height=st.integers(metrics.SSIM_WINDOW, 40),
    width=st.integers(metrics.SSIM_WINDOW, 40),
    channels=st.sampled_from([1, 3]),
    noise=st.floats(0.0, 120.0),
)
def test_ssim_matches_scikit_image_on_any_pair(seed, height, width, channels, noise) -> None:
    a, b = noisy_pair(np.random.default_rng(seed), (height, width, channels), noise)
    assert metrics.ssim(a, b) == pytest.approx(reference_ssim(a, b), abs=SSIM_ATOL)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(0, 0, id="both-black"),
        pytest.param(255, 255, id="both-white"),
        pytest.param(0, 255, id="black-vs-white"),
        pytest.param(30, 200, id="two-flat-greys"),
    ],
)
def test_ssim_of_flat_images_matches_scikit_image(first: int, second: int) -> None:
    # Zero variance everywhere: only the stabilising constants keep the ratio defined.
    a = np.full((16, 16, 3), first, np.uint8)
    b = np.full((16, 16, 3), second, np.uint8)
    assert metrics.ssim(a, b) == pytest.approx(reference_ssim(a, b), abs=SSIM_ATOL)


def test_ssim_of_an_image_and_its_negative_matches_scikit_image() -> None:
    a, _ = noisy_pair(np.random.default_rng(0), (64, 64, 3), noise=0.0)
    negative = 255 - a
    assert metrics.ssim(a, negative) == pytest.approx(reference_ssim(a, negative), abs=SSIM_ATOL)
    assert metrics.ssim(a, a) == pytest.approx(reference_ssim(a, a)) == pytest.approx(1.0)


# ROC AUC.


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [2, 7, 200])
def test_auc_matches_scikit_learn_on_continuous_scores(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)  # both classes present
    scores = rng.normal(size=n) + labels
    expected = roc_auc_score(labels, scores)
    assert metrics.roc_auc(scores, labels) == pytest.approx(expected, abs=AUC_ATOL)


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None)
@given(
    pairs=st.lists(
        # Few distinct scores, so ties between and within the classes are the rule.
        st.tuples(st.sampled_from([0.0, 0.25, 0.5, 0.5000001, 1.0, -3.0]), st.booleans()),
        min_size=2,
        max_size=60,
    ).filter(lambda pairs: len({label for _, label in pairs}) == 2)
)
def test_auc_matches_scikit_learn_with_ties(pairs: list[tuple[float, bool]]) -> None:
    scores = np.array([score for score, _ in pairs])
    labels = np.array([label for _, label in pairs])
    expected = roc_auc_score(labels, scores)
    assert metrics.roc_auc(scores, labels) == pytest.approx(expected, abs=AUC_ATOL)


@pytest.mark.parametrize(
    ("scores", "labels"),
    [
        pytest.param([0.3] * 6, [1, 0, 1, 0, 0, 1], id="all-tied"),
        pytest.param([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], id="perfect"),
        pytest.param([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], id="reversed"),
        pytest.param([0.5, 0.1, 0.2, 0.3, 0.4], [1, 0, 0, 0, 0], id="one-positive"),
        pytest.param([0.5, 0.5, 0.2, 0.5], [1, 0, 0, 0], id="positive-tied-with-negatives"),
        pytest.param([1e-300, 0.0, -1e-300, 0.0], [1, 0, 0, 1], id="tiny-gaps"),
    ],
)
def test_auc_edge_cases_match_scikit_learn(scores: list[float], labels: list[int]) -> None:
    expected = roc_auc_score(np.array(labels), np.array(scores))
    assert metrics.roc_auc(scores, labels) == pytest.approx(expected, abs=AUC_ATOL)
    as_bool = np.array(labels, dtype=bool)
    assert metrics.roc_auc(scores, as_bool) == pytest.approx(expected, abs=AUC_ATOL)


@pytest.mark.parametrize("label", [0, 1])
def test_auc_with_one_class_is_nan_as_in_scikit_learn(label: int) -> None:
    scores, labels = np.array([0.1, 0.7, 0.4]), np.full(3, label)
    assert math.isnan(metrics.roc_auc(scores, labels))
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(roc_auc_score(labels, scores))


# Fréchet distance.


def reference_frechet(
    mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray
) -> float:
    """The usual FID formula, ``tr(sqrtm(S_a S_b))`` taken by ``scipy.linalg.sqrtm``."""
    with warnings.catch_warnings():
        # sqrtm warns on the singular products that these tests feed it on purpose.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(sigma_a @ sigma_b)
    diff = mu_a - mu_b
    return float(
        diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(np.real(root))
    )


def random_covariance(rng: np.random.Generator, dim: int, eigenvalues: np.ndarray) -> np.ndarray:
    """A covariance with the given eigenvalues along random orthogonal axes."""
    axes, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (axes * eigenvalues) @ axes.T


def assert_matches_reference(mu_a, sigma_a, mu_b, sigma_b) -> None:
    scale = float(np.trace(sigma_a) + np.trace(sigma_b))
    expected = max(reference_frechet(mu_a, sigma_a, mu_b, sigma_b), 0.0)
    got = metrics.frechet_distance_from_stats(mu_a, sigma_a, mu_b, sigma_b)
    assert got == pytest.approx(expected, rel=FD_RTOL, abs=FD_SCALE_ATOL * scale)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("rows", "dim"), [(200, 8), (50, 50), (500, 3)])
def test_frechet_matches_sqrtm_on_features(seed: int, rows: int, dim: int) -> None:
    rng = np.random.default_rng(seed)
    feats_a = rng.standard_normal((rows, dim)) @ rng.standard_normal((dim, dim))
    feats_b = 2.0 * rng.standard_normal((rows, dim)) + rng.standard_normal(dim)
    mu_a, sigma_a = metrics.gaussian_stats(feats_a)
    mu_b, sigma_b = metrics.gaussian_stats(feats_b)
    expected = reference_frechet(mu_a, sigma_a, mu_b, sigma_b)
    got = metrics.frechet_distance(feats_a, feats_b)
    assert got == pytest.approx(expected, rel=FD_RTOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("rows", "dim"), [(8, 16), (3, 10), (2, 5)])
def test_frechet_matches_sqrtm_with_fewer_rows_than_features(
    seed: int, rows: int, dim: int
) -> None:
    # The covariances have rank rows - 1 < dim: singular, as with small FID sets.
    rng = np.random.default_rng(seed)
    mu_a, sigma_a = metrics.gaussian_stats(rng.standard_normal((rows, dim)))
    mu_b, sigma_b = metrics.gaussian_stats(rng.standard_normal((rows, dim)) + 1.0)
    assert_matches_reference(mu_a, sigma_a, mu_b, sigma_b)


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    dim=st.integers(1, 12),
    smallest_a=st.sampled_from([1e-12, 1e-9, 1e-6, 1e-3, 1.0]),
    smallest_b=st.sampled_from([1e-12, 1e-9, 1e-6, 1e-3, 1.0]),
    largest=st.floats(1.0, 1e3),
)
def test_frechet_matches_sqrtm_near_singular(seed, dim, smallest_a, smallest_b, largest) -> None:
    # Eigenvalues spread over up to 15 orders of magnitude.
    rng = np.random.default_rng(seed)
    sigma_a = random_covariance(rng, dim, np.geomspace(smallest_a, largest, dim))
    sigma_b = random_covariance(rng, dim, np.geomspace(smallest_b, largest, dim)[::-1])
    mu_a, mu_b = rng.standard_normal(dim), rng.standard_normal(dim)
    assert_matches_reference(mu_a, sigma_a, mu_b, sigma_b)


def test_frechet_edge_cases_match_sqrtm() -> None:
    rng = np.random.default_rng(0)
    dim = 6
    sigma = random_covariance(rng, dim, np.geomspace(1e-10, 1.0, dim))
    mu = rng.standard_normal(dim)
    zero = np.zeros((dim, dim))
    rank_one = np.outer(mu, mu)
    cases = [
        (mu, sigma, mu, sigma),  # identical near-singular Gaussians: 0
        (mu, zero, mu + 1.0, zero),  # two points: the squared distance of the means
        (mu, sigma, mu, zero),  # a Gaussian against a point
        (mu, rank_one, -mu, sigma),  # rank one against near-singular
    ]
    for case in cases:
        assert_matches_reference(*case)
    assert metrics.frechet_distance_from_stats(mu, zero, mu + 1.0, zero) == pytest.approx(dim)


# Precision, recall, density and coverage.


def feature_sets(seed: int, n_real: int, n_fake: int, dim: int, shift: float, spread: float):
    """A real Gaussian sample and a fake one, shifted and narrowed or widened."""
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n_real, dim))
    fake = shift + spread * rng.standard_normal((n_fake, dim))
    return real, fake


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("n_real", "n_fake", "dim", "shift", "spread", "batch"),
    [
        (200, 200, 8, 0.0, 1.0, 64),  # alike
        (300, 150, 16, 0.5, 0.4, 100),  # a narrow, shifted fake: precise, little variety
        (150, 300, 32, 0.0, 2.0, 7),  # a wide fake: varied, imprecise
        (120, 90, 512, 0.2, 0.8, 1024),  # the classifier's width, one block
    ],
)
def test_prdc_matches_the_prdc_package(seed, n_real, n_fake, dim, shift, spread, batch) -> None:
    real, fake = feature_sets(seed, n_real, n_fake, dim, shift, spread)
    ours = metrics.precision_recall_density_coverage(real, fake, k=5, batch=batch)
    expected = compute_prdc(real, fake, nearest_k=5)
    for name in metrics.DIVERSITY_METRICS:
        assert ours[name] == pytest.approx(float(expected[name]), abs=1e-12), name
    assert (ours["n_real"], ours["n_fake"], ours["k"]) == (n_real, n_fake, 5)


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    # The package needs more than k + 1 cells on each side (it partitions at k + 1).
    n_real=st.integers(8, 60),
    n_fake=st.integers(8, 60),
    k=st.integers(1, 6),
    shift=st.floats(-2.0, 2.0),
    spread=st.sampled_from([0.1, 0.5, 1.0, 3.0]),
    batch=st.integers(1, 70),
)
def test_prdc_matches_the_prdc_package_on_any_sample(
    seed, n_real, n_fake, k, shift, spread, batch
) -> None:
    real, fake = feature_sets(seed, n_real, n_fake, 3, shift, spread)
    ours = metrics.precision_recall_density_coverage(real, fake, k=k, batch=batch)
    expected = compute_prdc(real, fake, nearest_k=k)
    for name in metrics.DIVERSITY_METRICS:
        assert ours[name] == pytest.approx(float(expected[name]), abs=1e-12), name
