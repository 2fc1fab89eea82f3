"""Tests for the evaluation metrics against hand-computed and brute-force values."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from malgan.metrics import (
    classification_report,
    confusion_matrix,
    fit_gaussian,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    knn_radii,
    member_share,
    memorization_share,
    nearest_distances,
    ood_score,
    precision_recall_density_coverage,
    recovery,
    roc_auc,
    ssim,
    summarize_latencies,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (30, 100, 0.2189, 0.3958),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (50, 100, 0.4038, 0.5962),
    ],
)
def test_wilson_interval_known_values(successes, n, low, high):
    got = wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_edge_cases():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(30, 100, z=2.576)
    assert low < 0.2189 and high > 0.3958
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


def test_recovery():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    result = recovery(proba, 0)
    assert result["rate"] == pytest.approx(0.75)
    assert result["n"] == 4
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(wilson_interval(3, 4))
    assert recovery(proba, 1)["rate"] == pytest.approx(0.25)
    assert math.isnan(recovery(np.zeros((0, 2)), 0)["rate"])


def test_gaussian_stats_matches_numpy():
    feats = np.random.default_rng(0).standard_normal((50, 4))
    mu, sigma = gaussian_stats(feats)
    np.testing.assert_allclose(mu, feats.mean(axis=0))
    np.testing.assert_allclose(sigma, np.cov(feats.T))
    assert gaussian_stats(feats[:, :1])[1].shape == (1, 1)


def test_frechet_identical_sets_is_zero():
    feats = np.random.default_rng(1).standard_normal((200, 8))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)


def test_frechet_shifted_means_gives_squared_norm():
    rng = np.random.default_rng(2)
    feats = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6))
    shift = rng.standard_normal(6)
    # Shifting every row keeps the covariance identical, so only |shift|^2 remains.
    assert frechet_distance(feats, feats + shift) == pytest.approx(shift @ shift, rel=1e-6)


def test_frechet_diagonal_closed_form():
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    got = frechet_distance_from_stats(mu_a, np.diag(var_a), mu_b, np.diag(var_b))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_non_commuting_covariances():
    # Rotated covariances do not commute; tr sqrt(S1 S2) from an explicit eigen-decomposition.
    s1 = np.array([[2.0, 0.5], [0.5, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 3.0]])
    eigenvalues = np.linalg.eigvals(s1 @ s2).real
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eigenvalues).sum()
    got = frechet_distance_from_stats(np.zeros(2), s1, np.zeros(2), s2)
    assert got == pytest.approx(expected, rel=1e-10)
    swapped = frechet_distance_from_stats(np.zeros(2), s2, np.zeros(2), s1)
    assert swapped == pytest.approx(got, rel=1e-10)


def test_frechet_one_dimensional():
    rng = np.random.default_rng(3)
    a = rng.normal(1.0, 2.0, (400, 1))
    b = rng.normal(-1.0, 0.5, (300, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_frechet_rank_deficient_is_finite():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((5, 20))  # fewer rows than features: singular covariance
    b = rng.standard_normal((5, 20))
    distance = frechet_distance(a, b)
    assert np.isfinite(distance) and distance >= 0


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40), st.integers(1, 40), st.integers(1, 7))
def test_nearest_distances_matches_brute_force(seed, n, m, batch):
    rng = np.random.default_rng(seed)
    query = rng.standard_normal((n, 5))
    reference = rng.standard_normal((m, 5))
    expected = np.linalg.norm(query[:, None] - reference[None], axis=2).min(axis=1)
    got = nearest_distances(query, reference, batch=batch)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_nearest_distances_exact_match_is_zero():
    reference = np.random.default_rng(5).standard_normal((10, 3)) * 100
    got = nearest_distances(reference[[2, 7]], reference)
    np.testing.assert_array_equal(got, [0.0, 0.0])


def test_memorization_share():
    real = np.arange(1, 101, dtype=float)  # 1st percentile = 1.99
    result = memorization_share(np.array([0.5, 1.5, 2.5, 10.0]), real, percentile=1.0)
    assert result["threshold"] == pytest.approx(1.99)
    assert result["share"] == pytest.approx(0.5)
    assert result["n"] == 4


def test_knn_radii_on_a_line():
    points = np.array([[0.0], [1.0], [3.0], [6.0]])
    # Second-nearest other point: 0 -> 3, 1 -> 2, 3 -> 3, 6 -> 5.
    np.testing.assert_allclose(knn_radii(points, k=2, batch=3), [3.0, 2.0, 3.0, 5.0])
    with pytest.raises(ValueError, match="k < N"):
        knn_radii(points, k=4)


def test_prdc_of_a_sample_against_itself_and_a_far_one():
    real = np.random.default_rng(1).standard_normal((80, 6))
    same = precision_recall_density_coverage(real, real.copy(), k=5, batch=17)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] >= 1.0
    far = precision_recall_density_coverage(real, real + 100.0, k=5)
    assert all(far[name] == 0.0 for name in ("precision", "recall", "density", "coverage"))


def test_prdc_of_a_collapsed_fake_is_precise_but_covers_little():
    rng = np.random.default_rng(2)
    real = rng.standard_normal((400, 4))
    collapsed = 0.05 * rng.standard_normal((400, 4))  # one mode: the centre
    result = precision_recall_density_coverage(real, collapsed, k=5)
    assert result["precision"] == 1.0
    assert result["recall"] < 0.1
    assert result["coverage"] < 0.2


def test_member_share():
    rng = np.random.default_rng(3)
    members, others = rng.standard_normal((50, 5)), rng.standard_normal((50, 5))
    assert member_share(members[:20] + 1e-6, members, others)["share"] == 1.0
    assert member_share(others[:20], members, others)["share"] == 0.0
    unseen = member_share(rng.standard_normal((2000, 5)), members, others, batch=64)
    assert 0.4 < unseen["share"] < 0.6
    assert (unseen["n"], unseen["n_members"], unseen["n_non_members"]) == (2000, 50, 50)
    assert np.isnan(member_share(np.zeros((0, 5)), members, others)["share"])


def _brute_auc(scores, labels):
    positives = scores[labels == 1]
    negatives = scores[labels == 0]
    wins = (positives[:, None] > negatives[None]).sum()
    ties = (positives[:, None] == negatives[None]).sum()
    return (wins + 0.5 * ties) / (positives.size * negatives.size)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1)), min_size=2, max_size=40).filter(
        lambda rows: len({label for _, label in rows}) == 2
    )
)
def test_roc_auc_matches_pair_counting_with_ties(rows):
    scores = np.array([score for score, _ in rows], dtype=float)
    labels = np.array([label for _, label in rows])
    assert roc_auc(scores, labels) == pytest.approx(_brute_auc(scores, labels), abs=1e-12)


def test_roc_auc_known_values():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([1, 2, 3], [0, 1, 1]) == 1.0
    assert roc_auc([1, 2, 3], [1, 0, 0]) == 0.0
    assert roc_auc([0.5, 0.5], [0, 1]) == 0.5
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))


def test_confusion_matrix_rows_true_columns_predicted():
    pred = np.array([0, 0, 1, 1, 1, 0])
    labels = np.array([0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(confusion_matrix(pred, labels), [[2, 1], [1, 2]])
    assert confusion_matrix(np.array([2]), np.array([0]), k=3)[0, 2] == 1
    with pytest.raises(ValueError):
        confusion_matrix(np.array([2]), np.array([0]), k=2)


def test_classification_report_parasitized_is_positive():
    # Labels: 0 = Parasitized, 1 = Uninfected; column 0 is P(parasitized).
    p_parasitized = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1])
    labels = np.array([0, 0, 0, 1, 1, 1])
    proba = np.stack([p_parasitized, 1 - p_parasitized], axis=1)
    report = classification_report(proba, labels)
    assert report["confusion"] == [[2, 1], [1, 2]]
    assert report["sensitivity"] == pytest.approx(2 / 3)
    assert report["specificity"] == pytest.approx(2 / 3)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["auc"] == pytest.approx(_brute_auc(p_parasitized, (labels == 0).astype(int)))
    assert report["n"] == 6


def _cell(seed=0, size=32):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2)[..., None]
    base = np.where(disc, [200, 120, 160], [0, 0, 0]) + rng.integers(0, 20, (size, size, 3))
    return base.astype(np.uint8)


def test_ssim_identical_is_one():
    image = _cell()
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_ssim_decreases_with_noise_and_is_symmetric():
    image = _cell()
    rng = np.random.default_rng(1)
    values = []
    for level in (5, 20, 60):
        noisy = np.clip(image + rng.normal(0, level, image.shape), 0, 255).astype(np.uint8)
        values.append(ssim(image, noisy))
        assert ssim(noisy, image) == pytest.approx(values[-1], abs=1e-12)
    assert 1.0 > values[0] > values[1] > values[2]


def test_ssim_constant_images_hand_computed():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = np.full((16, 16, 3), 150, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 150 + c1) / (100**2 + 150**2 + c1)  # variances are zero
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)


def test_ssim_rejects_small_or_mismatched():
    with pytest.raises(ValueError):
        ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
    with pytest.raises(ValueError):
        ssim(np.zeros((16, 16, 3)), np.zeros((16, 16, 1)))


def test_summarize_latencies():
    result = summarize_latencies([0.010, 0.020, 0.030, 0.040, 0.050])
    assert result == pytest.approx({"median_ms": 30.0, "p95_ms": 48.0, "n": 5})
    assert summarize_latencies([])["n"] == 0


def test_ood_score_matches_hand_computed():
    mean = np.array([1.0, -1.0])
    precision = np.diag([1 / 4.0, 1 / 9.0])  # variances 4 and 9
    features = np.array([[1.0, -1.0], [3.0, -1.0], [1.0, 5.0], [3.0, 2.0]])
    expected = [0.0, 1.0, 2.0, math.sqrt(2.0)]
    got = ood_score(features, mean, precision)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_fit_gaussian_shrinks_toward_scaled_identity():
    rng = np.random.default_rng(6)
    features = rng.standard_normal((500, 3)) * [1.0, 2.0, 3.0] + [5.0, 0.0, -5.0]
    mean, precision = fit_gaussian(features, shrinkage=0.1)
    _, covariance = gaussian_stats(features)
    target = np.trace(covariance) / 3 * np.eye(3)
    np.testing.assert_allclose(mean, features.mean(axis=0))
    np.testing.assert_allclose(precision @ (0.9 * covariance + 0.1 * target), np.eye(3), atol=1e-10)
    # In-distribution rows score lower than far-away ones.
    scores = ood_score(np.stack([mean, mean + np.array([0.0, 0.0, 30.0])]), mean, precision)
    assert scores[0] < 1e-6 < 5.0 < scores[1]


def test_fit_gaussian_invertible_when_rank_deficient():
    features = np.random.default_rng(7).standard_normal((4, 10))  # rank 3 covariance
    mean, precision = fit_gaussian(features)
    assert np.isfinite(precision).all()
    assert np.isfinite(ood_score(features, mean, precision)).all()
    with pytest.raises(ValueError, match="do not vary"):
        fit_gaussian(np.ones((5, 3)))
