"""Per-generator figures computed from the classifier's features, whatever backend made them.

A figure function takes the features of one generator's cells (``Drawn``) and of the real cells
(``RealCells``) and returns a JSON-ready dict, stored under the figure's key in the generator's
entry of ``metrics.json`` (``malgan.release``).
``train.evaluate`` feeds it features from the torch runs, ``train.evaluate_exported`` features
from the exported ONNX models: both draw the cells with ``draw_latents`` and pick the real cells
with ``real_samples``, so the two give the same keys and, for the same models, the same figures.

To add a figure (e.g. a classifier two-sample test): name its key in ``malgan.release``, write
``def c2st(drawn, real) -> dict`` and decorate it with ``@figure(release.C2ST)``; both entry
points then compute and store it. A figure that needs pixels rather than features reads
``drawn.images``.

Every figure carries its real reference: the same figure for real cells of the validation
patients, in place of the generated cells, at the same n.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from malgan import latent, metrics, release
from malgan.data import CLASSES
from train.c2st import c2st_figure

# Latent seed of class i's cells is DRAW_SEED + i: the evaluation's recovery seeds.
DRAW_SEED = 1000
# Generated cells per class; fewer where the validation patients have fewer cells of a class,
# so that the real reference is measured at the same n.
DIVERSITY_CELLS = 2000
# Seed of the training cells drawn as members, and of the subsets capped at n.
SAMPLE_SEED = 0
FEATURE_SPACE = "classifier penultimate features"
# The patient split each part of ``RealCells`` comes from.
SOURCE_SPLIT = {"members": "train", "val": "val", "test": "test"}

FigureFn = Callable[["Drawn", "RealCells"], dict[str, Any]]
FIGURES: dict[str, FigureFn] = {}


def figure(name: str) -> Callable[[FigureFn], FigureFn]:
    """Register a per-generator figure under its ``metrics.json`` key."""

    def register(fn: FigureFn) -> FigureFn:
        if name in FIGURES:
            raise ValueError(f"A figure called {name!r} is already registered.")
        FIGURES[name] = fn
        return fn

    return register


@dataclass(frozen=True)
class RealCells:
    """Features of real cells per class, by patient split.

    Attributes:
        members: Cells of training patients, as many per class as ``test`` has.
        val: Cells of validation patients (the reference's stand-in for generated cells),
            at most ``n_drawn`` per class.
        test: Cells of test patients, the held-out real sample every figure compares with.
    """

    members: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    test: dict[str, np.ndarray]

    def n_drawn(self, label: str) -> int:
        """Generated cells per class: as many as the reference has validation cells."""
        return len(self.val[label])


@dataclass(frozen=True)
class Drawn:
    """A generator's cells per class: features [n, F] and, where a figure needs them, pixels."""

    features: dict[str, np.ndarray]
    images: dict[str, np.ndarray] | None = None


def draw_counts(val_labels: np.ndarray, n_cells: int = DIVERSITY_CELLS) -> dict[str, int]:
    """Generated cells per class: ``n_cells``, capped at the validation patients' count."""
    counts = np.bincount(np.asarray(val_labels), minlength=len(CLASSES))
    return {label: int(min(n_cells, counts[i])) for i, label in enumerate(CLASSES)}


def draw_latents(label: str, n: int, z_dim: int) -> np.ndarray:
    """The latents of a class's evaluation cells [n, z_dim]."""
    return latent.sample_z(DRAW_SEED + CLASSES.index(label), n, z_dim)


def real_samples(
    train_labels: np.ndarray, val_labels: np.ndarray, test_labels: np.ndarray, n: dict[str, int]
) -> dict[str, dict[str, np.ndarray]]:
    """Indices of the real cells of each split that the figures use, per class.

    Members: as many training cells as the test patients have, drawn without replacement;
    validation: ``n[label]`` cells; test: all of them.

    Returns:
        ``{"members": {label: train indices}, "val": {...}, "test": {...}}``.
    """
    rng = np.random.default_rng(SAMPLE_SEED)
    out: dict[str, dict[str, np.ndarray]] = {"members": {}, "val": {}, "test": {}}
    for i, label in enumerate(CLASSES):
        test = np.flatnonzero(np.asarray(test_labels) == i)
        train = np.flatnonzero(np.asarray(train_labels) == i)
        val = np.flatnonzero(np.asarray(val_labels) == i)
        out["test"][label] = test
        out["members"][label] = np.sort(
            rng.choice(train, min(len(test), len(train)), replace=False)
        )
        out["val"][label] = np.sort(rng.choice(val, n[label], replace=False))
    return out


def _prdc(real: np.ndarray, fake: np.ndarray) -> dict[str, Any]:
    """The k-NN figures, NaN where a sample has no more than k cells (a tiny smoke split)."""
    if min(len(real), len(fake)) <= metrics.DIVERSITY_K:
        nan = dict.fromkeys(metrics.DIVERSITY_METRICS, math.nan)
        return {**nan, "n_real": len(real), "n_fake": len(fake)}
    return metrics.precision_recall_density_coverage(real, fake, k=metrics.DIVERSITY_K)


@figure(release.DIVERSITY)
def diversity(drawn: Drawn, real: RealCells) -> dict[str, Any]:
    """k-NN precision, recall, density and coverage of each class against the test patients."""
    result: dict[str, Any] = {"k": metrics.DIVERSITY_K, "space": FEATURE_SPACE}
    for label in CLASSES:
        test = real.test[label]
        generated = _prdc(test, drawn.features[label])
        reference = _prdc(test, real.val[label])
        result[label] = {
            release.GENERATED: {k: generated[k] for k in metrics.DIVERSITY_METRICS},
            release.REFERENCE: {k: reference[k] for k in metrics.DIVERSITY_METRICS},
            "n": generated["n_fake"],
            "n_real": generated["n_real"],
        }
    return result


@figure(release.MEMBERSHIP)
def membership(drawn: Drawn, real: RealCells) -> dict[str, Any]:
    """Share of cells whose nearest real cell is a training cell, among equal-size sets of
    training and test patients' cells; the reference asks the same of validation cells."""
    result: dict[str, Any] = {"space": FEATURE_SPACE}
    for label in CLASSES:
        generated = metrics.member_share(
            drawn.features[label], real.members[label], real.test[label]
        )
        reference = metrics.member_share(real.val[label], real.members[label], real.test[label])
        result[label] = {
            release.GENERATED: generated["share"],
            release.REFERENCE: reference["share"],
            "n": generated["n"],
            "n_members": generated["n_members"],
            "n_non_members": generated["n_non_members"],
        }
    return result


@figure(release.C2ST)
def c2st(drawn: Drawn, real: RealCells) -> dict[str, Any]:
    """Classifier two-sample test of each class against the test patients (``train.c2st``):
    cross-validated accuracy and AUC of a logistic regression; the reference asks the same of
    validation cells (other patients)."""
    return c2st_figure(drawn.features, real.test, real.val, CLASSES, FEATURE_SPACE)


def compute(drawn: Drawn, real: RealCells) -> dict[str, dict[str, Any]]:
    """Every registered figure of one generator, by ``metrics.json`` key."""
    return {name: fn(drawn, real) for name, fn in FIGURES.items()}
