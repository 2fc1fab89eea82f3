"""Probes: the classifier that judges a GAN while it trains, on the validation patients' cells,
and the score that picks the checkpoint a run keeps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from malgan import metrics
from malgan.data import CLASSES, CellSet
from train import models

# Smallest coverage a probe's score counts: one real cell's ball in a thousand.
COVERAGE_FLOOR = 1e-3


def probe_score(record: dict[str, Any], classes: Sequence[str], n_cells: int) -> float:
    """How good a probe is on every class at once: sum of log recovery minus log FD plus log
    coverage.

    Scale-free in every measure, so halving one class's Fréchet distance is worth as much as
    doubling its recovery or its coverage, and a class near zero recovery or coverage sinks the
    score whatever the other class does. Recovery is floored at half a cell and coverage at
    ``COVERAGE_FLOOR`` so that zero stays finite. Coverage counts only where the record has it
    for every class (the validation patients hold more than k cells of each).
    """
    floor = 0.5 / max(n_cells, 1)
    score = sum(
        math.log(max(record[c], floor)) - math.log(max(record["fd"][c], 1e-6)) for c in classes
    )
    coverage = record.get("coverage") or {}
    if all(isinstance(coverage.get(c), float) and math.isfinite(coverage[c]) for c in classes):
        score += sum(math.log(max(coverage[c], COVERAGE_FLOOR)) for c in classes)
    return float(score)


@dataclass
class Probe:
    """The classifier that judges a generator during training, and real validation features.

    Recovery, the Fréchet distance and k-NN recall and coverage (k = 5, in the classifier's
    features) are measured against cells of the validation patients, never the test patients,
    so choosing the best probe does not peek at the final evaluation.
    """

    net: torch.nn.Module
    input_scale: str
    real_feats: dict[str, np.ndarray]

    @classmethod
    def load(cls, path: str, device: torch.device, reference: CellSet | None) -> Probe | None:
        """The probe of ``path`` with features of ``reference`` (None without a classifier)."""
        if not path or not Path(path).exists():
            return None
        net, ckpt = models.load_classifier(path, device)
        scale = ckpt["input_scale"]
        real_feats: dict[str, np.ndarray] = {}
        if reference is not None and len(reference):
            _, feats = models.predict(net, models.to_device_nchw(reference.images, device), scale)
            real_feats = {c: feats[reference.labels == i] for i, c in enumerate(CLASSES)}
        return cls(net=net, input_scale=scale, real_feats=real_feats)

    def measure(self, images: torch.Tensor, label: str) -> dict[str, float | None]:
        """Recovery, and the Fréchet distance, k-NN recall and coverage against real cells of
        ``label``, for generated [-1, 1] cells (None where there are too few real cells)."""
        proba, feats = models.predict(self.net, models.to_uint8(images), self.input_scale)
        out: dict[str, float | None] = {
            "recovery": metrics.recovery(proba, CLASSES.index(label))["rate"],
            "fd": None,
            "recall": None,
            "coverage": None,
        }
        real = self.real_feats.get(label)
        if real is not None and len(real) > 1:
            out["fd"] = metrics.frechet_distance(feats, real)
        if real is not None and min(len(real), len(feats)) > metrics.DIVERSITY_K:
            knn = metrics.precision_recall_density_coverage(real, feats)
            out["recall"], out["coverage"] = knn["recall"], knn["coverage"]
        return out
