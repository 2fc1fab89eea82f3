"""Nearest training cells of a generated cell, for anyone who has the NIH folder on the machine.

Nearness is the privacy filter's: Euclidean distance between the codes of the training reference
(``Reference.codes``, the classifier's features projected to the reference's PCA space). The
reference stores the training cells' codes in the order of the training split (classes in
``CLASSES`` order, files sorted by name, the training patients of ``split_patients``); this module
rebuilds that list of files from the folder named by ``$MALGAN_DATA``, without decoding it, and
refuses a folder whose training split has another number of cells.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from malgan.data import CLASSES, patient_key, scan_dataset, split_patients
from malgan.errors import ModelError
from malgan.reference import Reference

DATA_ENV = "MALGAN_DATA"
# Nearest training cells shown beside a generated cell.
NEAREST_CELLS = 3
# The patient split of training (train.common.load_splits: seed 0, 80/10/10 by patient).
SPLIT_SEED = 0
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class Neighbour:
    """A training cell near a generated one: its file, class and distance in reference codes."""

    path: Path
    label: str
    distance: float


def data_dir() -> Path | None:
    """The NIH folder named by ``$MALGAN_DATA``, or None when the variable is unset or empty."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value) if value else None


def training_files(root: str | os.PathLike, *, skip: tuple[str, ...] = ()) -> list[Path]:
    """The training patients' cell files of an NIH folder, in the reference's order.

    Args:
        root: Folder with one subfolder per class.
        skip: ``"<Class>/<name>"`` of files that training could not decode (metrics.json's
            ``classifier.corrupt_files``); they have no code in the reference.

    Raises:
        DataError: If the folder is not in the NIH layout.
    """
    scan = scan_dataset(root)
    keys = {p.name: patient_key(p.name) for paths in scan.files.values() for p in paths}
    split_of = split_patients(keys.values(), fractions=SPLIT_FRACTIONS, seed=SPLIT_SEED)
    skipped = {entry.split(":", 1)[0] for entry in skip}
    return [
        path
        for label in CLASSES
        for path in scan.files[label]
        if split_of.get(keys[path.name]) == "train" and f"{label}/{path.name}" not in skipped
    ]


def nearest_training_cells(
    features: np.ndarray,
    reference: Reference,
    files: list[Path],
    *,
    k: int = NEAREST_CELLS,
) -> list[list[Neighbour]]:
    """The ``k`` nearest training cells of each feature row, nearest first.

    Args:
        features: Classifier features [N, F] of generated cells.
        reference: The training reference (its codes and projection).
        files: The training files in the reference's order (``training_files``).
        k: Neighbours per cell.

    Raises:
        ModelError: If ``files`` does not match the reference's training cells.
    """
    codes = reference.train_codes  # [M, K]
    if len(files) != len(codes):
        raise ModelError(
            f"The data folder has {len(files):,} training cells but the reference has "
            f"{len(codes):,}: it is not the folder the models were trained on."
        )
    query = reference.codes(features).astype(np.float64)  # [N, K]
    codes = codes.astype(np.float64)
    squared = (
        (query**2).sum(1)[:, None] + (codes**2).sum(1)[None, :] - 2.0 * query @ codes.T
    )  # [N, M]
    order = np.argsort(squared, axis=1)[:, :k]
    out = []
    for row, picks in zip(query, order, strict=True):
        out.append(
            [
                Neighbour(
                    path=files[i],
                    label=files[i].parent.name,
                    distance=float(np.linalg.norm(row - codes[i])),
                )
                for i in picks
            ]
        )
    return out
