"""Write a sample of real held-out-patient cells into an exported-models folder (off by default).

The "Real or synthetic?" page shows these cells beside generated ones. They come from the
test patients of the same patient split as training (``--seed``), half of each class where the
split has enough, so no model of the release has seen them. Only public data belongs there: a
release trained on private scans ships no real cell unless it is asked for.

The pipeline writes the sample with ``--real-sample N``; for a finished release (the NIH set is
public), without retraining:

    python -m train.real_sample --data DIR --out exported --n 256
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from malgan import real_sample
from malgan.data import CLASSES, CellSet
from train import config, runs
from train.splits import load_splits

# Seed of the cells drawn from the test patients (the split has its own seed).
SAMPLE_SEED = 0


@dataclass(frozen=True)
class RealSampleConfig:
    """Options of the real sample."""

    data: str = field(default="", metadata={"help": "Folder in the NIH layout."})
    out: str = field(default="exported", metadata={"help": "Exported-models folder."})
    n: int = field(
        default=real_sample.MAX_CELLS,
        metadata={"help": f"Cells to write (1 to {real_sample.MAX_CELLS})."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the patient split."})
    cache_dir: str = ""
    smoke: bool = False


def choose(cells: CellSet, n: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Indices of ``n`` cells, half of each class where the set has enough, in a seeded order.

    A class with fewer cells than its half gives them all and the other class the rest.
    """
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(cells.labels == i)) for i in range(len(CLASSES))]
    want = [n // len(CLASSES) + (i < n % len(CLASSES)) for i in range(len(CLASSES))]
    take = [min(w, len(idx)) for w, idx in zip(want, by_class, strict=True)]
    spare = n - sum(take)
    for i, idx in enumerate(by_class):
        extra = min(spare, len(idx) - take[i])
        take[i] += extra
        spare -= extra
    chosen = np.concatenate([idx[:t] for idx, t in zip(by_class, take, strict=True)])
    return np.sort(chosen)


def write_real_sample(cfg: RealSampleConfig, command: str = "") -> Path:
    """Write ``min(n, test cells)`` real cells of the test patients into ``cfg.out``.

    Returns:
        The sidecar's path.
    """
    if not 0 < cfg.n <= real_sample.MAX_CELLS:
        raise ValueError(f"--n must be 1 to {real_sample.MAX_CELLS}, got {cfg.n}.")
    splits = load_splits(cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=cfg.smoke)
    test = splits.test
    chosen = test.subset(choose(test, min(cfg.n, len(test))))
    provenance = {
        "data": Path(cfg.data).resolve().name,
        "split": "test",
        "split_by": "patient",
        "split_seed": cfg.seed,
        "sample_seed": SAMPLE_SEED,
        "patients": sorted({str(key) for key in chosen.keys}),
        "test_cells": len(test),
        "command": command,
        "git_commit": runs.git_commit(),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return real_sample.write(cfg.out, chosen.images, chosen.labels, chosen.names, provenance)


def main(argv: list[str] | None = None) -> None:
    cfg = config.parse_config(RealSampleConfig, argv)
    args = sys.argv[1:] if argv is None else argv
    command = shlex.join([Path(sys.executable).name, "-m", "train.real_sample", *args])
    path = write_real_sample(cfg, command)
    sheet = path.parent / real_sample.SHEET_NAME
    print(f"Wrote {sheet} ({sheet.stat().st_size:,} bytes) and {path}.")


if __name__ == "__main__":
    config.run_cli(main)
