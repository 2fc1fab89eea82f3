"""The cells a training run reads: a data folder decoded and split by patient, cut down for
``--smoke``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from malgan.data import CLASSES, CellSet, load_dataset

# Cells per class and split kept by --smoke: enough for every code path, seconds on a CPU.
SMOKE_CELLS = 24


@dataclass(frozen=True)
class Splits:
    """The train/val/test cells of a data folder."""

    train: CellSet
    val: CellSet
    test: CellSet
    corrupt: tuple[str, ...]
    skipped: tuple[str, ...]


def _smoke_subset(cells: CellSet, per_class: int, rng: np.random.Generator) -> CellSet:
    keep: list[int] = []
    for label in range(len(CLASSES)):
        idx = np.flatnonzero(cells.labels == label)
        keep += sorted(rng.permutation(idx)[:per_class].tolist())
    return cells.subset(np.asarray(sorted(keep), dtype=np.int64))


def load_splits(
    data: str, *, cache_dir: str = "", seed: int = 0, smoke: bool = False, progress: bool = True
) -> Splits:
    """Decode (or read from cache) a data folder in the NIH layout and split it by patient."""
    loaded = load_dataset(data, cache_dir=cache_dir or None, seed=seed, progress=progress)
    parts = {name: loaded.split(name) for name in ("train", "val", "test")}
    if smoke:
        rng = np.random.default_rng(seed)
        parts = {k: _smoke_subset(v, SMOKE_CELLS, rng) for k, v in parts.items()}
    for name, cells in parts.items():
        if len(cells) == 0:
            raise ValueError(f"The {name} split of {data} is empty: too few patients.")
    return Splits(**parts, corrupt=loaded.corrupt, skipped=loaded.skipped)
