"""Evaluate the classifier and every generator on held-out patients; append JSON lines.

For the classifier: accuracy, ROC AUC, sensitivity, specificity and the confusion matrix on the
test patients. For each generator, on cells drawn with ``malgan.latent.sample_z`` (the same
seeds the dashboard uses): recovery (the report's measure) with a 95% Wilson interval, the
Fréchet distance to held-out real cells on the classifier's penultimate features (and the same
between two real sets, ``fd_real_floor``), train-on-synthetic-test-on-real accuracy, and the
share of generated cells closer to a training cell than 1% of held-out real cells are, and
every figure of ``train.figures`` (k-NN precision, recall, density and coverage, the
nearest-training-cell share), each beside its real reference; ``train.evaluate_exported``
computes the same figures from the exported ONNX models.

It also writes ``reference.npz``: the training-set summary the runtime uses for privacy
filtering and out-of-distribution warnings.

Usage: python -m train.evaluate --data DIR --runs runs [--smoke]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from malgan import latent, metrics, release
from malgan.data import CLASSES
from malgan.nn import registry
from train import figures, models
from train.classifier_loop import FitOptions, fit
from train.config import parse_config, replace, run_cli
from train.runs import Run, load_checkpoint, running
from train.splits import Splits, load_splits

# Seeds of evaluation draws; distinct from the dashboard's default seed so the shown cells are
# not the ones measured.
RECOVERY_SEED = 1000
TSTR_SEED = 2000
HIST_BINS = 20
TEST = "test"
SPLITS = ("train", "val", TEST)
# The records the command prints, in part.
SHOWN_RECORDS = (release.CLASSIFIER, release.RECOVERY, release.FD, release.TSTR)
# Records of one figure per class, each under its key in ``class_figures``.
PER_CLASS_RECORDS = (release.CONFIDENCE_HISTOGRAM, release.FD, release.MEMORIZATION)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation options."""

    data: str = field(default="", metadata={"help": "Folder in the NIH layout."})
    runs: str = field(default="runs", metadata={"help": "Folder holding the training runs."})
    out: str = field(default="", metadata={"help": "Evaluation folder (default RUNS/eval)."})
    classifier: str = "classifier"
    generators: tuple[str, ...] = ("dcgan", "cgan")
    n_cells: int = field(default=1000, metadata={"help": "Generated cells per class."})
    diversity_cells: int = field(
        default=figures.DIVERSITY_CELLS,
        metadata={"help": "Generated cells per class of train.figures (capped at validation's)."},
    )
    tstr_per_class: int = 5000
    tstr_epochs: int = 10
    tstr_arch: str = field(
        default="resnet",
        metadata={"choices": registry.CLASSIFIER_ARCHS, "help": "Network of the TSTR classifier."},
    )
    second_judges: tuple[str, ...] = field(
        default=("resnet_plain", "cnn_sound"),
        metadata={"help": "Other classifier runs that also judge recovery (when trained)."},
    )
    reference_dim: int = field(default=64, metadata={"help": "PCA size of the reference space."})
    privacy_percentile: float = 1.0
    ood_percentile: float = 99.0
    seed: int = 0
    cache_dir: str = ""
    smoke: bool = False


def smoke_config(cfg: EvalConfig) -> EvalConfig:
    """A config that runs the whole path in seconds on a CPU."""
    return replace(
        cfg, n_cells=16, diversity_cells=16, tstr_per_class=24, tstr_epochs=1, reference_dim=8
    )


def guide_runs(runs: Path, generator: str) -> set[str]:
    """Classifier runs that a generator learnt from (its guide), by run folder name."""
    names = set()
    for run in models.generator_runs(generator).values():
        config = load_checkpoint(runs / run / models.FINAL)["config"]
        if config.get("guide") and config.get("guide_weight", 0) > 0:
            names.add(Path(config["guide"]).parent.name)
    return names


def fit_reference(
    train_feats: np.ndarray, heldout_feats: np.ndarray, cfg: EvalConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """PCA projection, training codes, privacy threshold and OOD Gaussian."""
    mean = train_feats.mean(0)
    _, _, vt = np.linalg.svd(train_feats - mean, full_matrices=False)
    proj = vt[: cfg.reference_dim].T.astype(np.float32)  # [F, K]
    train_codes = ((train_feats - mean) @ proj).astype(np.float32)
    held_codes = ((heldout_feats - mean) @ proj).astype(np.float32)
    real_dist = metrics.nearest_distances(held_codes, train_codes)
    ood_mean, ood_precision = metrics.fit_gaussian(train_feats)
    ood = metrics.ood_score(heldout_feats, ood_mean, ood_precision)
    return {
        "proj_mean": mean.astype(np.float32),
        "proj": proj,
        "train_codes": train_codes.astype(np.float16),
        "heldout_train_distances": real_dist.astype(np.float32),
        "privacy_threshold": np.float32(np.percentile(real_dist, cfg.privacy_percentile)),
        "ood_mean": ood_mean.astype(np.float32),
        "ood_precision": ood_precision.astype(np.float32),
        "ood_threshold": np.float32(np.percentile(ood, cfg.ood_percentile)),
    }


def _histogram(values: np.ndarray) -> dict[str, list[float]]:
    counts, _ = np.histogram(np.asarray(values, np.float64), bins=HIST_BINS, range=(0.0, 1.0))
    edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
    return {"counts": counts.tolist(), "edges": edges.round(4).tolist()}


def tstr_accuracy(
    gen: models.LoadedGenerator,
    cfg: EvalConfig,
    run: Run,
    test_x: torch.Tensor,
    test_labels: np.ndarray,
) -> dict[str, Any]:
    """Train a fresh classifier only on generated cells; test it on real held-out cells."""
    device = run.device
    images, labels = [], []
    for label_idx, label in enumerate(CLASSES):
        z = latent.sample_z(TSTR_SEED + label_idx, cfg.tstr_per_class, gen.z_dim)
        images.append(gen.generate(label, z, device))
        labels.append(np.full(cfg.tstr_per_class, label_idx))
    x = torch.cat(images)
    y = np.concatenate(labels)
    # Validation on held-back generated cells keeps real cells out of training entirely.
    order = np.random.default_rng(cfg.seed).permutation(len(x))
    n_val = max(2, len(x) // 10)
    val_idx, train_idx = order[:n_val], order[n_val:]
    clf_cfg = FitOptions(
        arch=cfg.tstr_arch, epochs=cfg.tstr_epochs, seed=cfg.seed, batch=16 if cfg.smoke else 256
    )
    sub = Run(out=run.out / f"tstr_{gen.name}", device=device, rank=run.rank, world=1)
    sub.out.mkdir(parents=True, exist_ok=True)
    train_idx_t = torch.from_numpy(train_idx).to(device)
    net, _ = fit(
        clf_cfg,
        sub,
        x[train_idx_t],
        torch.from_numpy(y[train_idx]).to(device),
        x[torch.from_numpy(val_idx).to(device)],
        y[val_idx],
    )
    proba, _ = models.predict(net, test_x, clf_cfg.input_scale)
    report = metrics.classification_report(proba, test_labels)
    figures = {key: report[key] for key in (release.ACCURACY, release.AUC)}
    return {**figures, release.N_TRAIN: len(train_idx)}


@dataclass
class Judged:
    """The main classifier and what it said of the real cells, shared by every generator.

    Attributes:
        net: The classifier.
        scale: Its input scale.
        tta: Whether its test-patient probabilities average the dihedral views.
        tensors: uint8 NCHW cells of the train, val and test splits on the device.
        outputs: Per split, (probabilities [N, 2], features [N, F]).
    """

    net: torch.nn.Module
    scale: str
    tta: bool
    tensors: dict[str, torch.Tensor]
    outputs: dict[str, tuple[np.ndarray, np.ndarray]]

    def features(self, split: str) -> np.ndarray:
        return self.outputs[split][1]


def judge_splits(cfg: EvalConfig, runs: Path, splits: Splits, device: torch.device) -> Judged:
    """Load the main classifier and run it over the three splits."""
    clf, ckpt = models.load_classifier(runs / cfg.classifier / models.FINAL, device)
    scale, tta = ckpt["input_scale"], bool(ckpt["tta"])
    tensors = {k: models.to_device_nchw(getattr(splits, k).images, device) for k in SPLITS}
    # Only the test patients' probabilities are reported; features come from the plain view.
    outputs = {k: models.predict(clf, x, scale, tta=tta and k == TEST) for k, x in tensors.items()}
    return Judged(net=clf, scale=scale, tta=tta, tensors=tensors, outputs=outputs)


def classifier_record(cfg: EvalConfig, splits: Splits, judged: Judged) -> dict[str, Any]:
    """The classifier's figures on the test patients, and the split's sizes."""
    report = metrics.classification_report(judged.outputs["test"][0], splits.test.labels)
    split = {
        release.N_TEST: len(splits.test),
        release.TEST_PATIENTS: sorted(set(splits.test.keys.tolist())),
        release.N_TRAIN: len(splits.train),
        release.N_VAL: len(splits.val),
        release.CORRUPT_FILES: list(splits.corrupt),
    }
    body = {release.NAME: cfg.classifier, release.TTA: judged.tta, **report, **split}
    return release.record(release.CLASSIFIER, None, body)


def fd_floor(splits: Splits, judged: Judged) -> dict[str, float]:
    """Real-to-real floor of the Fréchet distance, per class: validation vs test patients."""
    floor = {}
    for label_idx, label in enumerate(CLASSES):
        val_f = judged.features("val")[splits.val.labels == label_idx]
        test_f = judged.features("test")[splits.test.labels == label_idx]
        floor[label] = metrics.frechet_distance(val_f, test_f)
    return floor


def second_judges(
    cfg: EvalConfig, runs: Path, device: torch.device
) -> dict[str, tuple[torch.nn.Module, str]]:
    """Independent judges that were trained: classifiers of another architecture and recipe."""
    judges = {}
    for judge in cfg.second_judges:
        path = runs / judge / models.FINAL
        if path.exists():
            judge_net, judge_ckpt = models.load_classifier(path, device)
            judges[judge] = (judge_net, judge_ckpt["input_scale"])
    return judges


def per_class_records(name: str, per_class: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The confidence histogram, Fréchet distance and memorisation records of one generator,
    from each class's figures (``GeneratorEvaluation.class_figures``)."""
    return [
        release.record(kind, name, {label: f[kind] for label, f in per_class.items()})
        for kind in PER_CLASS_RECORDS
    ]


def recovery_record(name: str, per_class: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The recovery record of one generator, by the release's classifier."""
    by_class = {label: f[release.RECOVERY] for label, f in per_class.items()}
    return release.record(release.RECOVERY, name, by_class)


def recovery_by_record(
    name: str, judge: str, trained_against: bool, per_class: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The recovery record of one generator by a second judge (``by_judge`` of its figures)."""
    by_class = {label: f["by_judge"][judge] for label, f in per_class.items()}
    body = {release.RECORD_JUDGE: judge, "trained_against": trained_against, **by_class}
    return release.record(release.RECOVERY_BY, name, body)


@dataclass
class GeneratorEvaluation:
    """What every generator is measured against."""

    cfg: EvalConfig
    run: Run
    splits: Splits
    judged: Judged
    reference: dict[str, np.ndarray]
    judges: dict[str, tuple[torch.nn.Module, str]]
    n_drawn: dict[str, int]
    real: figures.RealCells

    def class_figures(self, gen: models.LoadedGenerator, label_idx: int) -> dict[str, Any]:
        """Recovery (by every judge), confidence, Fréchet distance and memorisation of the
        generator's cells of one class."""
        label, judged, device = CLASSES[label_idx], self.judged, self.run.device
        z = latent.sample_z(RECOVERY_SEED + label_idx, self.cfg.n_cells, gen.z_dim)
        images = gen.generate(label, z, device)
        proba, feats = models.predict(judged.net, images, judged.scale, tta=judged.tta)
        by_judge = {}
        for judge, (judge_net, judge_scale) in self.judges.items():
            judge_proba, _ = models.predict(judge_net, images, judge_scale)
            by_judge[judge] = metrics.recovery(judge_proba, label_idx)
        test_f = judged.features("test")[self.splits.test.labels == label_idx]
        # Memorisation: distance to the nearest training cell in the reference space.
        ref = self.reference
        codes = (feats - ref["proj_mean"]) @ ref["proj"]
        gen_dist = metrics.nearest_distances(
            codes.astype(np.float32), ref["train_codes"].astype(np.float32)
        )
        return {
            release.RECOVERY: metrics.recovery(proba, label_idx),
            "by_judge": by_judge,
            release.CONFIDENCE_HISTOGRAM: _histogram(proba[:, label_idx]),
            release.FD: metrics.frechet_distance(feats, test_f),
            release.MEMORIZATION: metrics.memorization_share(
                gen_dist, ref["heldout_train_distances"], percentile=self.cfg.privacy_percentile
            ),
        }

    def records(self, name: str, runs: Path) -> list[dict[str, Any]]:
        """Every record of one generator, in the order the log has them."""
        gen = models.load_generator(runs, name, self.run.device)
        guides = guide_runs(runs, name)
        per_class = {label: self.class_figures(gen, i) for i, label in enumerate(CLASSES)}
        out: list[dict[str, Any]] = [
            recovery_record(name, per_class),
            release.record(release.JUDGES, name, release.judges_entry(self.cfg.classifier, guides)),
        ]
        for judge in self.judges:
            out.append(recovery_by_record(name, judge, judge in guides, per_class))
        out += per_class_records(name, per_class)
        drawn = {}
        for label in CLASSES:
            z = figures.draw_latents(label, self.n_drawn[label], gen.z_dim)
            images = gen.generate(label, z, self.run.device)
            drawn[label] = models.predict(self.judged.net, images, self.judged.scale)[1]
        for figure, values in figures.compute(figures.Drawn(drawn), self.real).items():
            out.append(release.record(figure, name, values))
        tstr = tstr_accuracy(
            gen, self.cfg, self.run, self.judged.tensors["test"], self.splits.test.labels
        )
        out.append(release.record(release.TSTR, name, tstr))
        return out


def evaluate(cfg: EvalConfig) -> list[dict[str, Any]]:
    """Run every evaluation and append one JSON line each to ``EVAL_LOG``."""
    if cfg.smoke:
        cfg = smoke_config(cfg)
    runs = Path(cfg.runs)
    out = Path(cfg.out or runs / models.EVAL_DIR)
    with running(cfg, out) as run:
        rng = np.random.default_rng(cfg.seed)
        splits = load_splits(cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=cfg.smoke)
        records: list[dict[str, Any]] = []

        def emit(record: dict[str, Any]) -> None:
            records.append(record)
            with open(out / models.EVAL_LOG, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

        (out / models.EVAL_LOG).unlink(missing_ok=True)

        # Classifier on held-out patients.
        judged = judge_splits(cfg, runs, splits, run.device)
        emit(classifier_record(cfg, splits, judged))

        # Reference for memorisation, privacy filtering and OOD warnings.
        heldout = np.concatenate([judged.features("val"), judged.features("test")])
        reference = fit_reference(judged.features("train"), heldout, cfg, rng)
        np.savez(out / models.REFERENCE, **reference)
        emit(release.record(release.FD_REAL_FLOOR, None, fd_floor(splits, judged)))

        # Real cells of the per-generator figures: members, validation and test patients.
        n_drawn = figures.draw_counts(splits.val.labels, cfg.diversity_cells)
        picked = figures.real_samples(
            splits.train.labels, splits.val.labels, splits.test.labels, n_drawn
        )
        real = figures.RealCells(
            **{
                part: {
                    label: judged.features(figures.SOURCE_SPLIT[part])[i] for label, i in by.items()
                }
                for part, by in picked.items()
            }
        )

        # Every generator, judged by the main classifier and the independent ones.
        evaluation = GeneratorEvaluation(
            cfg=cfg,
            run=run,
            splits=splits,
            judged=judged,
            reference=reference,
            judges=second_judges(cfg, runs, run.device),
            n_drawn=n_drawn,
            real=real,
        )
        for name in cfg.generators:
            for record in evaluation.records(name, runs):
                emit(record)

        run.log({"event": "done", "records": len(records)})
    return records


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(EvalConfig, argv)
    for record in evaluate(cfg):
        if record[release.RECORD_KIND] in SHOWN_RECORDS:
            shown = {k: v for k, v in record.items() if k != release.TEST_PATIENTS}
            print(json.dumps(shown)[:300])


if __name__ == "__main__":
    run_cli(main)
