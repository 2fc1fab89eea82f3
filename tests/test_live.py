"""Tests for malgan.live: the live recovery measurement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from malgan import artifacts, latent, live
from malgan.data import CLASSES

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPORTED = REPO_ROOT / "exported"
Z_DIM = 5


class FakeGenerator:
    """Cells whose red level is set by the first latent entry; records every batch."""

    def __init__(self, classes: tuple[str, ...] = CLASSES) -> None:
        self.z_dim = Z_DIM
        self.classes = classes
        self.batches: list[np.ndarray] = []

    def generate(self, z: np.ndarray, label: str) -> np.ndarray:
        self.batches.append(z.copy())
        level = (z[:, 0] > 0).astype(np.uint8) * 255  # [N]
        images = np.zeros((len(z), 64, 64, 3), np.uint8)
        images[..., 0] = level[:, None, None]
        return images


class FakeClassifier:
    """P(Parasitized) 0.9 for red cells, 0.1 otherwise."""

    classes = CLASSES

    def __init__(self, nan: bool = False) -> None:
        self.nan = nan

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        p = np.where(images[:, 0, 0, 0] > 0, 0.9, 0.1)
        proba = np.stack([p, 1 - p], axis=1).astype(np.float32)
        return np.full_like(proba, np.nan) if self.nan else proba


def expected_red_share(n: int, seed: int) -> float:
    return float((latent.sample_z(seed, n, Z_DIM)[:, 0] > 0).mean())


def test_recovery_counts_the_intended_class() -> None:
    result = live.measure_recovery(FakeGenerator(), FakeClassifier(), 50, 3)
    red = expected_red_share(50, 3)
    assert result["n"] == 50 and result["seed"] == 3 and result["seconds"] >= 0
    assert result["recovery"]["Parasitized"]["rate"] == pytest.approx(red)
    assert result["recovery"]["Uninfected"]["rate"] == pytest.approx(1 - red)
    para = result["recovery"]["Parasitized"]
    assert para["ci_low"] <= para["rate"] <= para["ci_high"] and para["n"] == 50
    assert para["mean_confidence"] == pytest.approx(0.9 * red + 0.1 * (1 - red))
    hist = result["confidence_histogram"]["Parasitized"]
    assert sum(hist["counts"]) == 50 and len(hist["edges"]) == live.HISTOGRAM_BINS + 1


def test_batches_use_the_same_cells_as_one_call() -> None:
    gen = FakeGenerator()
    batched = live.measure_recovery(gen, FakeClassifier(), 37, 11, batch=8)
    z = np.concatenate(gen.batches[: len(gen.batches) // 2])
    np.testing.assert_array_equal(z, latent.sample_z(11, 37, Z_DIM))
    whole = live.measure_recovery(FakeGenerator(), FakeClassifier(), 37, 11, batch=100)
    assert batched["recovery"] == whole["recovery"]


def test_progress_rises_to_one() -> None:
    calls: list[tuple[float, str]] = []
    live.measure_recovery(
        FakeGenerator(),
        FakeClassifier(),
        10,
        0,
        batch=4,
        progress=lambda f, t: calls.append((f, t)),
    )
    fractions = [f for f, _ in calls]
    assert len(calls) == 6
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert calls[-1][1] == "Uninfected: 10 of 10 cells classified"


def test_nan_probabilities_count_as_not_recovered() -> None:
    result = live.measure_recovery(FakeGenerator(), FakeClassifier(nan=True), 12, 0)
    for label in CLASSES:
        assert result["recovery"][label]["rate"] == 0.0
        assert sum(result["confidence_histogram"][label]["counts"]) == 0


def test_only_the_generators_classes_are_measured() -> None:
    result = live.measure_recovery(FakeGenerator(("Uninfected",)), FakeClassifier(), 4, 0)
    assert list(result["recovery"]) == ["Uninfected"]


@pytest.mark.parametrize(("n", "batch"), [(0, 8), (-3, 8), (5, 0)])
def test_bad_sizes_raise(n: int, batch: int) -> None:
    with pytest.raises(ValueError):
        live.measure_recovery(FakeGenerator(), FakeClassifier(), n, 0, batch=batch)


def test_exported_models_measure() -> None:
    gen = artifacts.load_generator(EXPORTED, "cgan")
    clf = artifacts.load_classifier(EXPORTED)
    result = live.measure_recovery(gen, clf, 8, 7)
    for label in CLASSES:
        assert result["recovery"][label]["n"] == 8
        assert 0.0 <= result["recovery"][label]["rate"] <= 1.0
