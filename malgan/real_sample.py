"""Real held-out cells that may be shown beside generated ones: one lossless sheet, one sidecar.

A training run on private scans ships no real cell: the sample is written only on request
(``python -m train.real_sample`` or the pipeline's ``--real-sample N``). The sheet is a lossless
WebP of the cells in rows of ``COLUMNS``; its JSON sidecar holds the sheet's sha256, each cell's
id (its file name) and class, and where the cells come from. ``load`` checks the hash, as
``malgan.runtime`` does for every model file.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from malgan.data import CLASSES
from malgan.errors import ModelError
from malgan.runtime import sha256_bytes

SHEET_NAME = "real_sample.webp"
SIDECAR_NAME = "real_sample.json"
# At most this many cells: enough for many rounds, small enough to commit.
MAX_CELLS = 512
# Cells per row of the sheet.
COLUMNS = 16
SIDECAR_KEYS = ("file", "sha256", "cell_size", "columns", "cells", "provenance")


@dataclass(frozen=True)
class RealSample:
    """Real cells with their ids and classes.

    Attributes:
        images: uint8 [N, S, S, 3].
        labels: int [N], index into ``CLASSES``.
        cell_ids: The cells' file names in the source data.
        provenance: Where the cells come from (data, split, patients, command, commit).
    """

    images: np.ndarray
    labels: np.ndarray
    cell_ids: tuple[str, ...]
    provenance: dict[str, Any]

    def __len__(self) -> int:
        return len(self.images)

    def class_counts(self) -> dict[str, int]:
        """Cells per class, in ``CLASSES`` order."""
        counts = np.bincount(self.labels, minlength=len(CLASSES))
        return {label: int(counts[i]) for i, label in enumerate(CLASSES)}


def to_sheet(images: np.ndarray, columns: int = COLUMNS) -> np.ndarray:
    """Cells [N, S, S, 3] as one image [rows*S, columns*S, 3], black after the last cell."""
    n, size = len(images), images.shape[1]
    rows = max(1, -(-n // columns))
    padded = np.zeros((rows * columns, size, size, 3), np.uint8)
    padded[:n] = images
    return (
        padded.reshape(rows, columns, size, size, 3)
        .swapaxes(1, 2)
        .reshape(rows * size, columns * size, 3)
    )


def from_sheet(sheet: np.ndarray, n: int, size: int, columns: int = COLUMNS) -> np.ndarray:
    """The first ``n`` cells [n, size, size, 3] of a sheet made by ``to_sheet``."""
    rows = sheet.shape[0] // size
    if sheet.shape[:2] != (rows * size, columns * size) or n > rows * columns:
        raise ValueError(f"A sheet of {sheet.shape[:2]} cannot hold {n} cells of {size} pixels.")
    cells = sheet.reshape(rows, size, columns, size, 3).swapaxes(1, 2)
    return cells.reshape(rows * columns, size, size, 3)[:n]


def write(
    out: str | os.PathLike,
    images: np.ndarray,
    labels: Sequence[int],
    cell_ids: Sequence[str],
    provenance: Mapping[str, Any],
) -> Path:
    """Write the sheet and its sidecar into ``out``.

    Args:
        out: The exported-models folder.
        images: uint8 [N, S, S, 3] real cells, N <= ``MAX_CELLS``.
        labels: Class index of each cell.
        cell_ids: Each cell's file name in the source data.
        provenance: Where the cells come from, stored as given.

    Returns:
        The sidecar's path.
    """
    images = np.asarray(images, np.uint8)
    if not 0 < len(images) <= MAX_CELLS:
        raise ValueError(f"A real sample holds 1 to {MAX_CELLS} cells, got {len(images)}.")
    if len(labels) != len(images) or len(cell_ids) != len(images):
        raise ValueError("Every cell needs a class and an id.")
    buffer = io.BytesIO()
    # Lossless: every pixel kept, at under half the size of a PNG of the same sheet.
    Image.fromarray(to_sheet(images)).save(buffer, format="WEBP", lossless=True, method=6)
    data = buffer.getvalue()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    (root / SHEET_NAME).write_bytes(data)
    sidecar = {
        "file": SHEET_NAME,
        "sha256": sha256_bytes(data),
        "cell_size": int(images.shape[1]),
        "columns": COLUMNS,
        "cells": [
            {"id": str(cell_id), "class": CLASSES[int(label)]}
            for cell_id, label in zip(cell_ids, labels, strict=True)
        ],
        "provenance": dict(provenance),
    }
    path = root / SIDECAR_NAME
    path.write_text(json.dumps(sidecar, indent=1) + "\n", encoding="utf-8")
    return path


def exists(exported: str | os.PathLike) -> bool:
    """Whether the folder ships a real sample (its sidecar or its sheet)."""
    root = Path(exported)
    return (root / SIDECAR_NAME).exists() or (root / SHEET_NAME).exists()


def load(exported: str | os.PathLike) -> RealSample:
    """Read and verify the real sample of an exported-models folder.

    Raises:
        ModelError: The sample is missing, altered (its hash differs from the sidecar's) or
            unreadable; the message says which.
    """
    root = Path(exported)
    try:
        meta = json.loads((root / SIDECAR_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{root} holds no real sample ({SIDECAR_NAME}).") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"The real sample's sidecar cannot be read ({err}).") from None
    missing = [key for key in SIDECAR_KEYS if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise ModelError(f"The real sample's sidecar lacks {missing}.")
    if Path(str(meta["file"])).name != meta["file"]:
        raise ModelError(f"The real sample's sidecar names a file outside {root}.")
    try:
        data = (root / meta["file"]).read_bytes()
    except OSError:
        raise ModelError(f"The real sample {meta['file']} is missing or unreadable.") from None
    if sha256_bytes(data) != meta["sha256"]:
        raise ModelError(f"The real sample {meta['file']} does not match its recorded hash.")
    try:
        cells = meta["cells"]
        labels = np.array([CLASSES.index(c["class"]) for c in cells], np.int64)
        ids = tuple(str(c["id"]) for c in cells)
        with Image.open(io.BytesIO(data)) as image:
            sheet = np.asarray(image.convert("RGB"))
        images = from_sheet(sheet, len(cells), int(meta["cell_size"]), int(meta["columns"]))
    except (KeyError, TypeError, ValueError, OSError) as err:
        raise ModelError(f"The real sample {meta['file']} is corrupt ({err}).") from None
    return RealSample(images, labels, ids, dict(meta["provenance"]))
