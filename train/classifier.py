"""Train a cell classifier (the report's ResNet or its simple CNN) on the patient-level train split.

Usage: python -m train.classifier --data DIR --out runs/classifier [--arch resnet] [--smoke]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from malgan import metrics
from malgan.nn import registry
from malgan.nn.nets import count_parameters
from train import config, models, runs
from train.classifier_loop import FitOptions, fit
from train.splits import load_splits


@dataclass(frozen=True)
class ClassifierConfig(FitOptions):
    """Classifier training options."""

    data: str = field(default="", metadata={"help": "Folder in the NIH layout."})
    out: str = field(default="runs/classifier", metadata={"help": "Run folder."})
    cache_dir: str = ""
    smoke: bool = False


def smoke_config(cfg: ClassifierConfig) -> ClassifierConfig:
    """A config that runs the whole path in seconds on a CPU."""
    return config.replace(cfg, epochs=2, batch=16)


def train(cfg: ClassifierConfig) -> dict[str, Any]:
    """Train on the train patients, pick the best epoch on validation patients, and report
    held-out metrics with and without test-time flips and rotations."""
    if cfg.smoke:
        cfg = smoke_config(cfg)
    with runs.running(cfg, cfg.out) as run:
        device = run.device
        splits = load_splits(cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=cfg.smoke)
        train_x = models.to_device_nchw(splits.train.images, device)
        train_y = torch.from_numpy(splits.train.labels).to(device)
        val_x = models.to_device_nchw(splits.val.images, device)
        net, state = fit(cfg, run, train_x, train_y, val_x, splits.val.labels)

        # Evaluate on held-out patients.
        test_x = models.to_device_nchw(splits.test.images, device)
        results: dict[str, Any] = {}
        for tta in (False, True):
            val_proba, _ = models.predict(net, val_x, cfg.input_scale, tta=tta)
            test_proba, _ = models.predict(net, test_x, cfg.input_scale, tta=tta)
            results["tta" if tta else "plain"] = {
                "val": metrics.classification_report(val_proba, splits.val.labels),
                "test": metrics.classification_report(test_proba, splits.test.labels),
            }
        # Test-time augmentation is kept only when it helps on validation patients.
        use_tta = cfg.recipe == "sound" and (
            results["tta"]["val"]["accuracy"] > results["plain"]["val"]["accuracy"]
        )
        summary = {
            "arch": cfg.arch,
            "recipe": cfg.recipe,
            "input_scale": cfg.input_scale,
            "parameters": count_parameters(net),
            "tta": use_tta,
            "best_val_accuracy": state["best_val"],
            "epochs": cfg.epochs,
            "diverged_at_epoch": state.get("diverged_at_epoch"),
            "train_seconds": run.elapsed(),
            "results": results,
            "history": state["history"],
        }
        if run.main:
            runs.save_checkpoint(
                {
                    "config": asdict(cfg),
                    "net": registry.spec(cfg.arch),
                    "state_dict": state["best_state"],
                    "input_scale": cfg.input_scale,
                    "tta": use_tta,
                    "summary": summary,
                },
                run.out / models.FINAL,
            )
            run.log({"event": "done", **{k: v for k, v in summary.items() if k != "history"}})
    return summary


def main(argv: list[str] | None = None) -> None:
    cfg = config.parse_config(ClassifierConfig, argv)
    summary = train(cfg)
    chosen = summary["results"]["tta" if summary["tta"] else "plain"]["test"]
    print(
        f"{cfg.arch} ({cfg.recipe}): held-out accuracy {chosen['accuracy']:.4f}, "
        f"AUC {chosen['auc']:.4f}, TTA {'on' if summary['tta'] else 'off'}; "
        f"model in {Path(cfg.out) / models.FINAL}"
    )


if __name__ == "__main__":
    config.run_cli(main)
