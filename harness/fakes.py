"""Fake NIH data drawn at test time: cells, and folders in the NIH layout with patient keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from malgan.data import CLASSES

# Junk that real NIH downloads carry, one per class folder: Parasitized/Thumbs.db,
# Uninfected/.DS_Store.
FAKE_JUNK = {"Parasitized": "Thumbs.db", "Uninfected": ".DS_Store"}
CELL_COLOUR = (214, 140, 150)
PARASITE_COLOUR = (110, 40, 150)


def fake_key(patient: int) -> str:
    """Returns the patient key of fake patient number ``patient`` (0-based), e.g. ``C10P1``."""
    return f"C{10 + patient}P{patient + 1}"


def fake_name(patient: int, cell: int, suffix: str = ".png") -> str:
    """Returns an NIH-style file name, e.g. ``C10P1ThinF_IMG_20150101_000000_cell_1.png``."""
    return f"{fake_key(patient)}ThinF_IMG_20150101_000000_cell_{cell + 1}{suffix}"


def draw_fake_cell(
    *, parasitized: bool, size: tuple[int, int] = (64, 64), seed: int = 0
) -> Image.Image:
    """Draws a fake red blood cell: a pinkish disc on black, with a purple dot if parasitized.

    Args:
        parasitized: Draw the parasite dot.
        size: (width, height) in pixels.
        seed: Seed of the small jitter in colour and position.

    Returns:
        An RGB image.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    img = Image.new("RGB", size, (0, 0, 0))
    draw = ImageDraw.Draw(img)
    margin_x, margin_y = 0.08 * width, 0.08 * height
    jitter = rng.integers(-12, 13, size=3)
    colour = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(CELL_COLOUR, jitter, strict=True))
    draw.ellipse((margin_x, margin_y, width - margin_x, height - margin_y), fill=colour)
    if parasitized:
        cx = width * rng.uniform(0.35, 0.65)
        cy = height * rng.uniform(0.35, 0.65)
        radius = max(1.0, 0.12 * min(width, height))
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=PARASITE_COLOUR)
    return img


def write_fake_nih_tree(
    root: Path,
    *,
    patients: int = 6,
    cells: int = 4,
    size: tuple[int, int] | Callable[[int, int, int], tuple[int, int]] = (64, 64),
    junk: bool = True,
    seed: int = 0,
) -> Path:
    """Writes an NIH-layout folder ``root/{Parasitized,Uninfected}/<name>.png`` of drawn cells.

    File names follow fake_name(patient, cell), so the patient keys are fake_key(0..patients-1).

    Args:
        root: Folder to create (may exist).
        patients: Number of patients; each has cells in both classes.
        cells: Cells per patient and class.
        size: (width, height) of every image, or a function (class index, patient, cell) ->
            (width, height) for mixed sizes.
        junk: Also write ``Parasitized/Thumbs.db`` and ``Uninfected/.DS_Store`` (see FAKE_JUNK).
        seed: Base seed of the drawing jitter.

    Returns:
        root.
    """
    for label, cls in enumerate(CLASSES):
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        for patient in range(patients):
            for cell in range(cells):
                cell_size = size(label, patient, cell) if callable(size) else size
                img = draw_fake_cell(
                    parasitized=label == 0,
                    size=cell_size,
                    seed=seed + 1000 * label + 100 * patient + cell,
                )
                img.save(folder / fake_name(patient, cell))
        if junk:
            (folder / FAKE_JUNK[cls]).write_bytes(b"\x00\x01junk metadata\x00")
    return root
