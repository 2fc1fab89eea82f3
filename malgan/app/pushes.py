"""Cached infection pushes and what moves along them, and the example cell of the upload pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from malgan import explore, imaging, infection, latent, morphology, real_sample
from malgan.app.loading import cached_classifier, cached_generator
from malgan.data import CLASSES
from malgan.errors import ModelError

# Cells of a seed on which the page measures what its control does.
EFFECT_CELLS = 16
# Which end each class is pushed to, and the class it should reach.
PUSH_TARGETS = {
    "Uninfected": (infection.AMOUNT_MAX, "Parasitized"),
    "Parasitized": (infection.AMOUNT_MIN, "Uninfected"),
}
PERCENT = 100.0


@st.cache_data(show_spinner=False, max_entries=256)
def pushed_strip(
    exported: Path,
    name: str,
    label: str,
    z: np.ndarray,
    principal: tuple[float, ...],
    amounts: tuple[float, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """One cell, moved along the principal directions, then pushed to each amount.

    Args:
        exported: The models folder.
        name: Generator name.
        label: Class of the cell.
        z: float32 [z_dim] start latent.
        principal: Steps along the principal directions, in sigma units.
        amounts: Infection amounts (``infection.AMOUNT_MIN`` to ``AMOUNT_MAX``), one per cell.

    Returns:
        ``(images uint8 [K, S, S, 3], class probabilities float32 [K, 2])``.
    """
    gen = cached_generator(exported, name)
    start = explore.edit_latent(z, explore.directions_for(gen.directions, label), principal)
    weights = infection.one_hot(gen.classes, label, 1)
    control = infection.default_control(gen)
    images = infection.pushed_cells(gen, start[None], weights, amounts, control)[:, 0]
    return images, cached_classifier(exported, None).predict_proba(images)


def measures(images: np.ndarray, proba: np.ndarray) -> list[dict[str, Any]]:
    """P(parasitized), mean stain hue (degrees) and cell area (% of the image) of each cell."""
    hue = morphology.stain_hue(images)
    area = morphology.cell_area(images) * PERCENT
    return [
        {"p_parasitized": float(p[CLASSES.index("Parasitized")]), "hue": float(h), "area": float(a)}
        for p, h, a in zip(proba, hue, area, strict=True)
    ]


@st.cache_data(show_spinner=False, max_entries=64)
def seed_effect(exported: Path, name: str, label: str, seed: int) -> dict[str, Any]:
    """What the page's control does to ``EFFECT_CELLS`` cells of a seed pushed to its end.

    Returns:
        ``infection.push_effect`` figures, with ``amount``, ``target`` and ``control``.
    """
    gen = cached_generator(exported, name)
    amount, target = PUSH_TARGETS[label]
    control = infection.default_control(gen)
    z = latent.sample_z(seed, EFFECT_CELLS, gen.z_dim)
    weights = infection.one_hot(gen.classes, label, EFFECT_CELLS)
    start, end = infection.pushed_cells(gen, z, weights, (0.0, amount), control)
    classifier = cached_classifier(exported, None)
    effect = infection.push_effect(
        start, end, classifier.predict_proba(start), classifier.predict_proba(end), target, CLASSES
    )
    return {**effect, "amount": amount, "target": target, "control": control}


@st.cache_data(show_spinner=False, max_entries=4)
def real_measures(exported: Path) -> dict[str, dict[str, float]] | None:
    """Median stain hue and cell area of the release's real cells per class, or None."""
    sample = _real_sample(exported)
    if sample is None:
        return None
    out = {}
    for i, label in enumerate(CLASSES):
        images = sample.images[sample.labels == i]
        if len(images):
            out[label] = {
                "n": len(images),
                "hue": float(np.nanmedian(morphology.stain_hue(images))),
                "area": float(np.median(morphology.cell_area(images)) * PERCENT),
            }
    return out


def _real_sample(exported: Path) -> real_sample.RealSample | None:
    if not real_sample.exists(exported):
        return None
    try:
        return real_sample.load(exported)
    except ModelError:
        return None


@st.cache_data(show_spinner=False, max_entries=16)
def example_cell(exported: Path, label: str, number: int) -> tuple[str, bytes, str]:
    """An example cell of a class as a PNG upload: a real one where the release ships some.

    Args:
        exported: The models folder.
        label: The class.
        number: Which example (cycles through those there are).

    Returns:
        ``(file name, PNG bytes, where it comes from)``: a real held-out cell of the release's
        real sample, or else cell ``number`` of the conditional GAN's seed 0.
    """
    sample = _real_sample(exported)
    if sample is not None:
        rows = np.flatnonzero(sample.labels == CLASSES.index(label))
        if len(rows):
            row = int(rows[number % len(rows)])
            name = Path(sample.cell_ids[row]).name
            return name, imaging.png_bytes(sample.images[row]), "a real cell of a test patient"
    gen = cached_generator(exported, "cgan")
    z = latent.sample_z(0, number + 1, gen.z_dim)[number:]
    cell = gen.generate(z, label)[0]
    return f"generated_{label}_{number}.png", imaging.png_bytes(cell), "a generated cell"
