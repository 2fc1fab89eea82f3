"""Compute the per-generator figures of ``train.figures`` on exported ONNX models, on the CPU.

Evaluates a release without its torch runs: the classifier and every generator of
``EXPORTED/index.json`` run through ``malgan.runtime``; the real cells come from the data folder,
split by patient as in training. Each figure registered in ``train.figures.FIGURES``
(``diversity``: k-NN precision, recall, density and coverage with their real reference;
``membership``: the nearest-training-cell share with its reference) replaces the generator's entry
of the same key in ``EXPORTED/metrics.json``; every other figure stays as it was, and
``written_by["figures"][figure][generator]`` records this command, its commit and hardware.

To add a figure, register it in ``train.figures``; this command and ``train.evaluate`` then both
compute it. ``--figures`` limits a run to some of them, ``--generators`` to some generators.

Usage: python -m train.evaluate_exported --data DIR --exported exported [--smoke]
"""

from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnxruntime as ort

from malgan import artifacts
from malgan.data import CLASSES
from malgan.runtime import Classifier
from train import config, figures, release_metrics, runs
from train.splits import Splits, load_splits

logger = logging.getLogger("malgan.train")
# Generated cells per class in a smoke run: above k so that every k-NN figure is defined.
SMOKE_CELLS = 8
# Bound before the config, whose ``figures`` field would hide the module in its class body.
DEFAULT_CELLS = figures.DIVERSITY_CELLS


@dataclass(frozen=True)
class EvalExportedConfig:
    """Options of the evaluation of exported models."""

    data: str = field(default="", metadata={"help": "Folder in the NIH layout."})
    exported: str = field(default="exported", metadata={"help": "Exported-models folder."})
    generators: tuple[str, ...] = field(
        default=(), metadata={"help": "Generators to evaluate (default: every one indexed)."}
    )
    figures: tuple[str, ...] = field(
        default=(), metadata={"help": "Figures to compute (default: every one registered)."}
    )
    n_cells: int = field(
        default=DEFAULT_CELLS,
        metadata={"help": "Generated cells per class (capped at the validation cells)."},
    )
    threads: int = field(default=2, metadata={"help": "ONNX Runtime threads per model."})
    seed: int = field(default=0, metadata={"help": "Seed of the patient split."})
    cache_dir: str = ""
    smoke: bool = False


def smoke_config(cfg: EvalExportedConfig) -> EvalExportedConfig:
    """A config that runs the whole path in seconds on a CPU."""
    return config.replace(cfg, n_cells=SMOKE_CELLS)


def real_features(classifier: Classifier, splits: Splits, n: dict[str, int]) -> figures.RealCells:
    """Features of the real cells that the figures use, per split and class."""
    index = figures.real_samples(splits.train.labels, splits.val.labels, splits.test.labels, n)
    feats = {
        part: {
            label: classifier.features(getattr(splits, figures.SOURCE_SPLIT[part]).images[idx])
            for label, idx in by.items()
        }
        for part, by in index.items()
    }
    return figures.RealCells(**feats)


def evaluate_exported(cfg: EvalExportedConfig, command: str = "") -> list[dict[str, Any]]:
    """Compute the figures of every chosen generator and write them into ``metrics.json``.

    Returns:
        The records written, ``{"metric": figure, "model": generator, ...}``.
    """
    if cfg.smoke:
        cfg = smoke_config(cfg)
    root = Path(cfg.exported)
    unknown = set(cfg.figures) - set(figures.FIGURES)
    if unknown:
        raise ValueError(f"Unknown figures {sorted(unknown)}; known: {sorted(figures.FIGURES)}.")
    chosen = {k: v for k, v in figures.FIGURES.items() if not cfg.figures or k in cfg.figures}
    index = artifacts.load_index(root)
    names = cfg.generators or tuple(artifacts.generator_names(index))
    classifier = Classifier.load(root / index["classifier"]["file"], threads=cfg.threads)
    splits = load_splits(cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=cfg.smoke)
    n = figures.draw_counts(splits.val.labels, cfg.n_cells)
    real = real_features(classifier, splits, n)
    records = []
    for name in names:
        generator = artifacts.load_generator(root, name)
        drawn = {}
        for label in CLASSES:
            z = figures.draw_latents(label, n[label], generator.z_dim)
            drawn[label] = classifier.features(generator.generate(z, label))  # [n, F]
        for figure, fn in chosen.items():
            records.append({"metric": figure, "model": name, **fn(figures.Drawn(drawn), real)})
            logger.info("%s %s: %s", name, figure, records[-1])
    provenance = {
        "command": command,
        "git_commit": runs.git_commit(),
        "hardware": runs.hardware(),
        "backend": f"onnxruntime {ort.__version__}",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    release_metrics.update_metrics(root, records, provenance)
    return records


def main(argv: list[str] | None = None) -> None:
    cfg = config.parse_config(EvalExportedConfig, argv)
    args = sys.argv[1:] if argv is None else argv
    command = shlex.join([Path(sys.executable).name, "-m", "train.evaluate_exported", *args])
    for record in evaluate_exported(cfg, command):
        print(f"{record['model']} {record['metric']}")
        for label in CLASSES:
            print(f"  {label}: {record[label]}")


if __name__ == "__main__":
    config.run_cli(main)
