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

from malgan import latent, metrics
from malgan.data import CLASSES
from malgan.nn import registry
from train import figures, models
from train.classifier_loop import FitOptions, fit
from train.config import parse_config, replace, run_cli
from train.runs import Run, load_checkpoint, running
from train.splits import load_splits

# Seeds of evaluation draws; distinct from the dashboard's default seed so the shown cells are
# not the ones measured.
RECOVERY_SEED = 1000
TSTR_SEED = 2000
HIST_BINS = 20


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
    return {"accuracy": report["accuracy"], "auc": report["auc"], "n_train": len(train_idx)}


def evaluate(cfg: EvalConfig) -> list[dict[str, Any]]:
    """Run every evaluation and append one JSON line each to ``EVAL_LOG``."""
    if cfg.smoke:
        cfg = smoke_config(cfg)
    runs = Path(cfg.runs)
    out = Path(cfg.out or runs / models.EVAL_DIR)
    with running(cfg, out) as run:
        device = run.device
        rng = np.random.default_rng(cfg.seed)
        splits = load_splits(cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=cfg.smoke)
        records: list[dict[str, Any]] = []

        def emit(record: dict[str, Any]) -> None:
            records.append(record)
            with open(out / models.EVAL_LOG, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

        (out / models.EVAL_LOG).unlink(missing_ok=True)

        # Classifier on held-out patients.
        clf, ckpt = models.load_classifier(runs / cfg.classifier / models.FINAL, device)
        scale, tta = ckpt["input_scale"], bool(ckpt["tta"])
        tensors = {
            k: models.to_device_nchw(getattr(splits, k).images, device)
            for k in ("train", "val", "test")
        }
        # Only the test patients' probabilities are reported; features come from the plain view.
        outputs = {
            k: models.predict(clf, v, scale, tta=tta and k == "test") for k, v in tensors.items()
        }
        report = metrics.classification_report(outputs["test"][0], splits.test.labels)
        emit(
            {
                "metric": "classifier",
                "name": cfg.classifier,
                "tta": tta,
                **report,
                "n_test": len(splits.test),
                "test_patients": sorted(set(splits.test.keys.tolist())),
                "n_train": len(splits.train),
                "n_val": len(splits.val),
                "corrupt_files": list(splits.corrupt),
            }
        )

        # Reference for memorisation, privacy filtering and OOD warnings.
        heldout = np.concatenate([outputs["val"][1], outputs["test"][1]])
        reference = fit_reference(outputs["train"][1], heldout, cfg, rng)
        np.savez(out / models.REFERENCE, **reference)
        train_codes = reference["train_codes"].astype(np.float32)
        real_dist = reference["heldout_train_distances"]

        # Real-to-real floor of the Fréchet distance, per class: validation vs test patients.
        floor = {}
        for label_idx, label in enumerate(CLASSES):
            val_f = outputs["val"][1][splits.val.labels == label_idx]
            test_f = outputs["test"][1][splits.test.labels == label_idx]
            floor[label] = metrics.frechet_distance(val_f, test_f)
        emit({"metric": "fd_real_floor", **floor})

        # Real cells of the per-generator figures: members, validation and test patients.
        n_drawn = figures.draw_counts(splits.val.labels, cfg.diversity_cells)
        picked = figures.real_samples(
            splits.train.labels, splits.val.labels, splits.test.labels, n_drawn
        )
        real = figures.RealCells(
            **{
                part: {label: outputs[figures.SOURCE_SPLIT[part]][1][i] for label, i in by.items()}
                for part, by in picked.items()
            }
        )

        # Independent judges: recovery by classifiers of another architecture and recipe.
        judges = {}
        for judge in cfg.second_judges:
            path = runs / judge / models.FINAL
            if path.exists():
                judge_net, judge_ckpt = models.load_classifier(path, device)
                judges[judge] = (judge_net, judge_ckpt["input_scale"])

        for name in cfg.generators:
            gen = models.load_generator(runs, name, device)
            guides = guide_runs(runs, name)
            recovery, fd, hist, memo = {}, {}, {}, {}
            by_judge: dict[str, dict[str, Any]] = {judge: {} for judge in judges}
            for label_idx, label in enumerate(CLASSES):
                # Recovery, confidence and Fréchet distance.
                z = latent.sample_z(RECOVERY_SEED + label_idx, cfg.n_cells, gen.z_dim)
                images = gen.generate(label, z, device)
                proba, feats = models.predict(clf, images, scale, tta=tta)
                recovery[label] = metrics.recovery(proba, label_idx)
                for judge, (judge_net, judge_scale) in judges.items():
                    judge_proba, _ = models.predict(judge_net, images, judge_scale)
                    by_judge[judge][label] = metrics.recovery(judge_proba, label_idx)
                hist[label] = _histogram(proba[:, label_idx])
                test_f = outputs["test"][1][splits.test.labels == label_idx]
                fd[label] = metrics.frechet_distance(feats, test_f)
                # Memorisation: distance to the nearest training cell in the reference space.
                codes = (feats - reference["proj_mean"]) @ reference["proj"]
                gen_dist = metrics.nearest_distances(codes.astype(np.float32), train_codes)
                memo[label] = metrics.memorization_share(
                    gen_dist, real_dist, percentile=cfg.privacy_percentile
                )
            emit({"metric": "recovery", "model": name, **recovery})
            # Whether the generator learnt from the judge: recovery is a fair test only if not.
            emit(
                {
                    "metric": "judges",
                    "model": name,
                    "classifier": cfg.classifier,
                    "classifier_independent": cfg.classifier not in guides,
                    "guides": sorted(guides),
                }
            )
            for judge, rates in by_judge.items():
                trained = judge in guides
                emit(
                    {
                        "metric": "recovery_by",
                        "model": name,
                        "judge": judge,
                        "trained_against": trained,
                        **rates,
                    }
                )
            emit({"metric": "confidence_histogram", "model": name, **hist})
            emit({"metric": "fd", "model": name, **fd})
            emit({"metric": "memorization", "model": name, **memo})
            drawn = {}
            for label in CLASSES:
                z = figures.draw_latents(label, n_drawn[label], gen.z_dim)
                drawn[label] = models.predict(clf, gen.generate(label, z, device), scale)[1]
            for figure, values in figures.compute(figures.Drawn(drawn), real).items():
                emit({"metric": figure, "model": name, **values})
            tstr = tstr_accuracy(gen, cfg, run, tensors["test"], splits.test.labels)
            emit({"metric": "tstr", "model": name, **tstr})

        run.log({"event": "done", "records": len(records)})
    return records


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(EvalConfig, argv)
    for record in evaluate(cfg):
        if record["metric"] in ("classifier", "recovery", "fd", "tstr"):
            print(json.dumps({k: v for k, v in record.items() if k != "test_patients"})[:300])


if __name__ == "__main__":
    run_cli(main)
