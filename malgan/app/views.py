"""Cached cells of the generation pages: sample grids and their files, edits, strips and morphs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from malgan import explore, imaging, invert, latent, runtime
from malgan.app.cells import GRID_COLUMNS, VIEW_SCALE
from malgan.app.loading import cached_classifier, cached_generator
from malgan.data import CLASSES
from malgan.synth import writer


@st.cache_data(show_spinner=False, max_entries=256)
def generated_cells(
    exported: Path, name: str, label: str, seed: int, n: int, truncation: float | None
) -> np.ndarray:
    """Cells ``0..n-1`` of a seed: uint8 [n, S, S, 3] (no classifier needed)."""
    gen = cached_generator(exported, name)
    z = latent.sample_z(seed, n, gen.z_dim, truncation=truncation)
    return gen.generate(z, label)


@st.cache_data(show_spinner=False, max_entries=256)
def sample_cells(
    exported: Path, name: str, label: str, seed: int, n: int, truncation: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Cells ``0..n-1`` of a seed and their classifier probabilities.

    The probabilities average the synthetic export's views (``writer.DEFAULT_VIEWS``, and all 8
    within ``writer.DEFAULT_RECHECK_MARGIN`` of one half), so a cell's verdict here is the one
    its filter gives at the default confidence.

    Returns:
        ``(images uint8 [n, S, S, 3], proba float32 [n, 2])``.
    """
    images = generated_cells(exported, name, label, seed, n, truncation)
    classifier = cached_classifier(exported, None)
    proba, _, _ = classifier.predict_rechecked(
        images, views=writer.DEFAULT_VIEWS, margin=writer.DEFAULT_RECHECK_MARGIN
    )
    return images, proba


@st.cache_data(show_spinner=False, max_entries=256)
def sample_pngs(
    exported: Path, name: str, label: str, seed: int, n: int, truncation: float | None
) -> list[bytes]:
    """The cells of ``sample_cells`` as PNGs at display scale, encoded once per grid."""
    images, _ = sample_cells(exported, name, label, seed, n, truncation)
    return [imaging.png_bytes(imaging.upscale(cell, VIEW_SCALE)) for cell in images]


@st.cache_data(show_spinner=False, max_entries=32)
def strip_png(exported: Path, name: str, label: str, seed: int, n: int) -> bytes:
    """A row of cells ``0..n-1`` of a seed as one PNG at display scale (no truncation)."""
    images = generated_cells(exported, name, label, seed, n, None)
    return imaging.png_bytes(imaging.make_grid(images, ncol=n, scale=VIEW_SCALE))


def cell_file_names(model: str, label: str, seed: int, n: int) -> list[str]:
    """File names of the cells of a grid, e.g. ``cgan_Parasitized_seed7_03.png``."""
    width = max(2, len(str(max(n - 1, 0))))
    return [f"{model}_{label}_seed{seed}_{i:0{width}d}.png" for i in range(n)]


@st.cache_data(show_spinner=False, max_entries=32)
def sample_files(
    exported: Path, name: str, label: str, seed: int, n: int, truncation: float | None
) -> tuple[bytes, bytes]:
    """The downloads of a ``sample_cells`` grid.

    Returns:
        ``(grid PNG at display scale, ZIP of the cells as PNGs at their own size)``; the cells
        are named by ``cell_file_names``.
    """
    images, _ = sample_cells(exported, name, label, seed, n, truncation)
    grid = imaging.make_grid(images, ncol=min(n, GRID_COLUMNS), scale=VIEW_SCALE)
    names = cell_file_names(name, label, seed, n)
    return imaging.png_bytes(grid), imaging.cells_zip(images, names)


class CountingGenerator:
    """A generator that counts the cells it draws per class, for progress text.

    Everything but ``generate`` is the wrapped generator's own.
    """

    def __init__(
        self, generator: runtime.CellGenerator, on_batch: Callable[[], None] | None = None
    ) -> None:
        """Wrap ``generator``; ``on_batch`` is called after each batch it draws."""
        self._generator = generator
        self._on_batch = on_batch
        self.drawn = dict.fromkeys(CLASSES, 0)

    def generate(self, z: np.ndarray, label: str) -> np.ndarray:
        """The wrapped generator's cells, counted under ``label``."""
        images = self._generator.generate(z, label)
        self.drawn[label] = self.drawn.get(label, 0) + len(images)
        if self._on_batch is not None:
            self._on_batch()
        return images

    def __getattr__(self, name: str) -> Any:
        return getattr(self._generator, name)


# The Edit a real cell page.
@st.cache_data(show_spinner=False, max_entries=64)
def cell_probabilities(
    exported: Path, images: np.ndarray, _classifier: runtime.Classifier
) -> np.ndarray:
    """The classifier's class probabilities of uint8 cells [N, S, S, 3]: float32 [N, 2]."""
    return _classifier.predict_proba(images)


@st.cache_data(show_spinner=False, max_entries=256)
def edited_inversion(
    exported: Path,
    model: str,
    z: np.ndarray,
    class_weights: np.ndarray,
    amount: float,
    _result: invert.InversionResult,
    _generator: runtime.CellGenerator,
) -> np.ndarray:
    """An inverted cell pushed by ``amount`` towards Parasitized (+) or Uninfected (-), see
    ``invert.edit`` (cached by the folder, model, latent, class weights and amount)."""
    return invert.edit(_result, _generator, amount)


# The explorer pages.
@st.cache_data(show_spinner=False, max_entries=64)
def interpolation_frames(
    exported: Path,
    name: str,
    seed_a: int,
    label_a: str,
    seed_b: int,
    label_b: str,
    steps: int,
    method: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames of a morph between cell 0 of two seeds, and P(parasitized) of each.

    Returns:
        ``(t float64 [steps], frames uint8 [steps, S, S, 3], p_parasitized float32 [steps])``.
    """
    gen = cached_generator(exported, name)
    z_a = latent.sample_z(seed_a, 1, gen.z_dim)[0]
    z_b = latent.sample_z(seed_b, 1, gen.z_dim)[0]
    t, frames = explore.interpolate_cells(gen, z_a, z_b, label_a, label_b, steps, method)
    return t, frames, cached_classifier(exported, None).predict_proba(frames)[:, 0]


@st.cache_data(show_spinner=False, max_entries=64)
def interpolation_files(frames: np.ndarray) -> tuple[list[bytes], bytes]:
    """Morph frames uint8 [T, S, S, 3] as PNGs at display scale, and as one looping GIF."""
    pngs = [imaging.png_bytes(imaging.upscale(frame, VIEW_SCALE)) for frame in frames]
    return pngs, imaging.gif_bytes(frames)
