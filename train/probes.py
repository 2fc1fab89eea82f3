"""Probes: the classifier that judges a GAN while it trains, on the validation patients' cells,
and the score that picks the checkpoint a run keeps."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from malgan import metrics, runtime
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


# Cells in, class probabilities [N, 2] and features [N, F] out: uint8 NCHW on any device.
Predict = Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray]]


def torch_predict(path: str, device: torch.device) -> Predict:
    """The plain-view prediction of a trained classifier's model.pt."""
    net, ckpt = models.load_classifier(path, device)
    scale = ckpt["input_scale"]
    return lambda pix: models.predict(net, pix.to(device), scale)


def onnx_predict(path: str) -> Predict:
    """The plain-view prediction of an exported classifier (its .onnx file with its sidecar),
    so that a GAN can be probed by a release's classifier without its torch checkpoint."""
    classifier = runtime.Classifier.load(path)
    return lambda pix: classifier.predict(pix.permute(0, 2, 3, 1).cpu().numpy(), views=1)


@dataclass
class Probe:
    """The classifier that judges a generator during training, and real validation features.

    Recovery, the Fréchet distance and k-NN recall and coverage (k = 5, in the classifier's
    features) are measured against cells of the validation patients, never the test patients,
    so choosing the best probe does not peek at the final evaluation.
    """

    predict: Predict
    real_feats: dict[str, np.ndarray]

    @classmethod
    def load(cls, path: str, device: torch.device, reference: CellSet | None) -> Probe | None:
        """The probe of ``path`` (a model.pt, or an exported classifier's .onnx) with features
        of ``reference`` (None without a classifier)."""
        if not path or not Path(path).exists():
            return None
        predict = onnx_predict(path) if path.endswith(".onnx") else torch_predict(path, device)
        real_feats: dict[str, np.ndarray] = {}
        if reference is not None and len(reference):
            _, feats = predict(models.to_device_nchw(reference.images, device))
            real_feats = {c: feats[reference.labels == i] for i, c in enumerate(CLASSES)}
        return cls(predict=predict, real_feats=real_feats)

    def measure(self, images: torch.Tensor, label: str) -> dict[str, float | None]:
        """Recovery, and the Fréchet distance, k-NN recall and coverage against real cells of
        ``label``, for generated [-1, 1] cells (None where there are too few real cells)."""
        proba, feats = self.predict(models.to_uint8(images))
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
