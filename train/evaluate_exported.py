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
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from malgan import artifacts, diversity, latent, metrics, release
from malgan.data import CLASSES
from malgan.reference import Reference
from malgan.runtime import CellGenerator, Classifier
from train import config, evaluate, figures, release_metrics, runs
from train import models as torch_models
from train.runs import Run
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
    tstr_per_class: int = field(
        default=evaluate.EvalConfig.tstr_per_class,
        metadata={"help": "With --core, generated training cells per class of TSTR (0: none)."},
    )
    tstr_epochs: int = field(
        default=evaluate.EvalConfig.tstr_epochs, metadata={"help": "With --core, TSTR's epochs."}
    )
    core: bool = field(
        default=False,
        metadata={
            "help": "Also the figures train.evaluate computes from the cells: recovery (by every "
            "exported judge), confidence, Fréchet distance, memorisation and TSTR."
        },
    )
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


@dataclass
class CoreFigures:
    """The figures ``train.evaluate`` computes from a generator's cells, on exported models.

    The same seeds, cell counts, judges and TSTR recipe as ``train.evaluate``, with the
    release's exported classifier (its test-time views as its sidecar says) and judges, and the
    release's training reference for memorisation. Fréchet distances are divided by the floor
    ``metrics.json`` holds.
    """

    cfg: EvalExportedConfig
    evaluation: evaluate.EvalConfig
    classifier: Classifier
    judges: dict[str, Classifier]
    splits: Splits
    test_features: np.ndarray
    reference: Reference
    heldout_distances: np.ndarray
    floor: dict[str, float]

    @classmethod
    def load(
        cls,
        root: Path,
        index: dict[str, Any],
        classifier: Classifier,
        splits: Splits,
        cfg: EvalExportedConfig,
    ) -> CoreFigures:
        evaluation = evaluate.EvalConfig(
            seed=cfg.seed,
            smoke=cfg.smoke,
            tstr_per_class=cfg.tstr_per_class,
            tstr_epochs=cfg.tstr_epochs,
        )
        if cfg.smoke:
            evaluation = evaluate.smoke_config(evaluation)
        files = {c["name"]: c["file"] for c in release.index_classifiers(index)}
        judges = {
            name: Classifier.load(root / files[name], threads=cfg.threads)
            for name in evaluation.second_judges
            if name in files
        }
        floor = release.real_floor(artifacts.load_metrics(root))
        return cls(
            cfg=cfg,
            evaluation=evaluation,
            classifier=classifier,
            judges=judges,
            splits=splits,
            test_features=classifier.features(splits.test.images),
            reference=artifacts.load_reference(root),
            # Verified by load_reference against the index's sha256 just above.
            heldout_distances=np.load(
                root / release.index_file(index, release.REFERENCE), allow_pickle=False
            )["heldout_train_distances"],
            floor=floor,
        )

    def class_figures(self, generator: CellGenerator, label_idx: int) -> dict[str, Any]:
        """Recovery (by every judge), confidence, Fréchet distance and memorisation of one
        class's cells."""
        label = CLASSES[label_idx]
        z = latent.sample_z(
            evaluate.RECOVERY_SEED + label_idx, self.evaluation.n_cells, generator.z_dim
        )
        images = generator.generate(z, label)
        proba, feats = self.classifier.predict(images)
        by_judge = {
            judge: metrics.recovery(net.predict(images, views=1)[0], label_idx)
            for judge, net in self.judges.items()
        }
        test_f = self.test_features[self.splits.test.labels == label_idx]
        # Memorisation: distance to the nearest training cell in the reference space.
        gen_dist = diversity.nearest_distances(
            self.reference.codes(feats), self.reference.train_codes.astype(np.float32)
        )
        return {
            release.RECOVERY: metrics.recovery(proba, label_idx),
            "by_judge": by_judge,
            release.CONFIDENCE_HISTOGRAM: evaluate._histogram(proba[:, label_idx]),
            release.FD: metrics.frechet_distance(feats, test_f),
            release.MEMORIZATION: diversity.memorization_share(
                gen_dist, self.heldout_distances, percentile=self.evaluation.privacy_percentile
            ),
        }

    def records(self, name: str, generator: CellGenerator) -> list[dict[str, Any]]:
        """Every core record of one generator, as ``train.evaluate`` writes them."""
        per_class = {label: self.class_figures(generator, i) for i, label in enumerate(CLASSES)}
        out: list[dict[str, Any]] = [evaluate.recovery_record(name, per_class)]
        for judge in self.judges:
            out.append(evaluate.recovery_by_record(name, judge, False, per_class))
        out += evaluate.per_class_records(name, per_class)
        fd = {lb: f[release.FD] for lb, f in per_class.items()}
        if self.floor:
            out.append(release.record(release.FD_REAL_FLOOR, name, self.floor))
            out.append(release.record(release.FD_RATIO, name, release.fd_ratio(fd, self.floor)))
        if self.evaluation.tstr_per_class > 0:
            tstr = self.tstr(name, generator)
            body = {**tstr, "epochs": self.evaluation.tstr_epochs}
            out.append(release.record(release.TSTR, name, body))
        for record in out:
            logger.info("%s %s", name, record[release.RECORD_KIND])
        return out

    def tstr(self, name: str, generator: CellGenerator) -> dict[str, Any]:
        """TSTR as ``train.evaluate`` measures it, with the exported generator's cells."""
        with tempfile.TemporaryDirectory(prefix="malgan-tstr-") as tmp:
            # A fresh folder each time: the classifier loop resumes what it finds there.
            run = Run(out=Path(tmp), device=torch.device("cpu"))
            test_x = torch_models.to_device_nchw(self.splits.test.images, run.device)
            return evaluate.tstr_accuracy(
                ExportedCells(name, generator),
                self.evaluation,
                run,
                test_x,
                self.splits.test.labels,
            )


@dataclass
class ExportedCells:
    """An exported generator where TSTR expects a trained one: uint8 NCHW cells on a device."""

    name: str
    generator: CellGenerator

    @property
    def z_dim(self) -> int:
        return self.generator.z_dim

    def generate(self, label: str, z: np.ndarray, device: torch.device) -> torch.Tensor:
        return torch_models.to_device_nchw(self.generator.generate(z, label), device)


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
    classifier = Classifier.load(
        root / release.index_file(index, release.CLASSIFIER), threads=cfg.threads
    )
    splits = load_splits(cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=cfg.smoke)
    n = figures.draw_counts(splits.val.labels, cfg.n_cells)
    real = real_features(classifier, splits, n)
    records = []
    core = CoreFigures.load(root, index, classifier, splits, cfg) if cfg.core else None
    for name in names:
        generator = artifacts.load_generator(root, name)
        if core is not None:
            records += core.records(name, generator)
        drawn = {}
        for label in CLASSES:
            z = figures.draw_latents(label, n[label], generator.z_dim)
            drawn[label] = classifier.features(generator.generate(z, label))  # [n, F]
        for figure, fn in chosen.items():
            records.append(release.record(figure, name, fn(figures.Drawn(drawn), real)))
            logger.info("%s %s: %s", name, figure, records[-1])
    provenance = {
        **release.provenance(command, runs.git_commit(), runs.hardware()),
        "backend": f"onnxruntime {ort.__version__}",
        release.GENERATED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
    }
    release_metrics.update_metrics(root, records, provenance)
    return records


def main(argv: list[str] | None = None) -> None:
    cfg = config.parse_config(EvalExportedConfig, argv)
    args = sys.argv[1:] if argv is None else argv
    command = shlex.join([Path(sys.executable).name, "-m", "train.evaluate_exported", *args])
    for record in evaluate_exported(cfg, command):
        print(f"{record[release.RECORD_MODEL]} {record[release.RECORD_KIND]}")
        rest = {
            k: v for k, v in record.items() if k not in (release.RECORD_KIND, release.RECORD_MODEL)
        }
        for key, value in rest.items():
            print(f"  {key}: {value}")


if __name__ == "__main__":
    config.run_cli(main)
