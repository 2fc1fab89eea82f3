"""Live recovery measurement on the CPU: generate cells of each class and classify them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from malgan import latent, metrics
from malgan.data import CLASSES
from malgan.runtime import CellGenerator

# Cells generated and classified per ONNX Runtime call: small enough to update the progress bar
# often, large enough to keep the per-call overhead low.
LIVE_BATCH = 64
# Bins of the confidence histogram over [0, 1], as in metrics.json.
HISTOGRAM_BINS = 20
MIN_CELLS = 1

Progress = Callable[[float, str], None]


class ProbaClassifier(Protocol):
    """What measure_recovery needs of a classifier (runtime.Classifier)."""

    classes: tuple[str, ...]

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """float32 [N, classes] probabilities of uint8 images [N, S, S, 3]."""
        ...


def confidence_histogram(values: np.ndarray, *, bins: int = HISTOGRAM_BINS) -> dict[str, list]:
    """Counts of probabilities in ``bins`` equal bins over [0, 1] (NaN values are left out).

    Returns:
        ``{"counts": [bins] ints, "edges": [bins + 1] floats}``, the layout of metrics.json.
    """
    values = np.asarray(values, np.float64).ravel()
    counts, edges = np.histogram(values[np.isfinite(values)], bins=bins, range=(0.0, 1.0))
    return {"counts": counts.astype(int).tolist(), "edges": edges.tolist()}


def _not_recovered_if_nan(proba: np.ndarray, intended: int) -> np.ndarray:
    """Rows with NaN (a diverged classifier) replaced by certainty for another class."""
    bad = ~np.isfinite(proba).all(axis=1)
    if not bad.any():
        return proba
    other = np.zeros(proba.shape[1])
    other[(intended + 1) % proba.shape[1]] = 1.0
    return np.where(bad[:, None], other, proba)


def measure_recovery(
    generator: CellGenerator,
    classifier: ProbaClassifier,
    n: int,
    seed: int,
    *,
    truncation: float | None = None,
    batch: int = LIVE_BATCH,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Share of freshly generated cells that the classifier assigns to their intended class.

    Cells ``0..n-1`` of ``seed`` (``latent.sample_z``, the cells the Sample page shows) are
    generated for each class the generator has, in batches, and classified. The same latents
    serve every class, so a conditional model is compared with itself.

    Args:
        generator: The generator (it needs ``z_dim``, ``classes`` and ``generate`` only).
        classifier: The classifier (``classes`` and ``predict_proba``).
        n: Cells per class, at least 1.
        seed: Latent seed.
        truncation: Optional truncation of the latents (None: the full distribution).
        batch: Cells per generator and classifier call.
        progress: Called as ``progress(fraction_done, text)`` after each batch.

    Returns:
        ``{"recovery": {class: metrics.recovery dict plus "mean_confidence"},
        "confidence_histogram": {class: {"counts", "edges"}}, "n", "seed", "seconds"}``,
        the layout of a model's entry in metrics.json.

    Raises:
        ValueError: If n or batch is below 1.
    """
    if n < MIN_CELLS:
        raise ValueError(f"n must be at least {MIN_CELLS}, got {n}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    labels = [c for c in CLASSES if c in generator.classes]
    total = n * len(labels)
    started = time.perf_counter()
    recovery: dict[str, dict[str, float]] = {}
    histograms: dict[str, dict[str, list]] = {}
    done = 0
    for label in labels:
        intended = list(classifier.classes).index(label)
        probas = []
        for start in range(0, n, batch):
            count = min(batch, n - start)
            z = latent.sample_z(seed, count, generator.z_dim, truncation=truncation, start=start)
            probas.append(np.asarray(classifier.predict_proba(generator.generate(z, label))))
            done += count
            if progress is not None:
                progress(done / total, f"{label}: {start + count} of {n} cells classified")
        proba = np.concatenate(probas).astype(np.float64)  # [n, classes]
        recovery[label] = {
            **metrics.recovery(_not_recovered_if_nan(proba, intended), intended),
            "mean_confidence": float(np.nan_to_num(proba[:, intended], nan=0.0).mean()),
        }
        histograms[label] = confidence_histogram(proba[:, intended])
    return {
        "recovery": recovery,
        "confidence_histogram": histograms,
        "n": n,
        "seed": seed,
        "seconds": time.perf_counter() - started,
    }
