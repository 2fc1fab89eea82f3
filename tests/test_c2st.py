"""The classifier two-sample test: chance on one distribution, near 1 on two, and its layout."""

from __future__ import annotations

import math

import numpy as np

from malgan import tables
from malgan.data import CLASSES
from train import c2st, figures

FEATURES = 32


def normal(n: int, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, (n, FEATURES))


def test_one_distribution_gives_chance() -> None:
    result = c2st.two_sample_test(normal(400, seed=1), normal(600, seed=2))
    assert result["n"] == 400 and result["folds"] == c2st.FOLDS
    # 800 held-out predictions at chance: 0.5 within about 4 standard errors.
    assert abs(result["accuracy"] - 0.5) < 0.08
    assert abs(result["auc"] - 0.5) < 0.08


def test_two_distributions_are_told_apart() -> None:
    result = c2st.two_sample_test(normal(300, seed=1), normal(300, shift=0.5, seed=2))
    assert result["accuracy"] > 0.9 and result["auc"] > 0.95


def test_same_inputs_same_figures_and_tiny_samples_give_nan() -> None:
    a, b = normal(50, seed=3), normal(70, shift=0.2, seed=4)
    assert c2st.two_sample_test(a, b) == c2st.two_sample_test(a, b)
    tiny = c2st.two_sample_test(normal(1), normal(5))
    assert math.isnan(tiny["accuracy"]) and tiny["n"] == 1
    few = c2st.two_sample_test(normal(3), normal(3, shift=3.0))
    assert few["folds"] == 3 and few["accuracy"] > 0.5


def test_registered_figure_and_its_reader() -> None:
    assert "c2st" in figures.FIGURES
    drawn = figures.Drawn(
        {label: normal(120, shift=1.0, seed=i) for i, label in enumerate(CLASSES)}
    )
    real = figures.RealCells(
        members={label: normal(150, seed=10 + i) for i, label in enumerate(CLASSES)},
        val={label: normal(120, seed=20 + i) for i, label in enumerate(CLASSES)},
        test={label: normal(150, seed=30 + i) for i, label in enumerate(CLASSES)},
    )
    result = figures.FIGURES["c2st"](drawn, real)
    for label in CLASSES:
        entry = result[label]
        assert entry["n"] == entry["n_reference"] == 120
        assert entry["generated"]["accuracy"] > 0.9
        assert abs(entry["reference"]["accuracy"] - 0.5) < 0.15
    shown = tables.c2st_figures({"models": {"g": {"c2st": result}}}, "g")
    assert shown[CLASSES[0]]["accuracy"] == result[CLASSES[0]]["generated"]["accuracy"]
    assert shown[CLASSES[1]]["reference_auc"] == result[CLASSES[1]]["reference"]["auc"]
    rows = tables.c2st_rows({"models": {"g": {"c2st": result}}}, "g")
    assert [r["class"] for r in rows] == list(CLASSES)
    assert tables.c2st_figures({"models": {"g": {}}}, "g") == {}
