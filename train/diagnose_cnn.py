"""Measure why the report's simple CNN, trained the report's way, stays near chance.

The report trained its CNN with Keras' SGD (learning rate 0.01, no momentum) and categorical
cross-entropy. This script trains the same network (Keras' Glorot initialisation) on the
patient-level train split under controlled variants and records, for each, what happens:

- the scale of the initial logits and of the first gradient;
- the first step whose loss is not finite;
- the share of dead ReLUs in the 64-unit dense layer (never active on a held-out batch);
- the loss per epoch and the accuracy on held-out patients.

Variants: the report's way on raw 0-255 pixels; the same on pixels scaled to [0, 1]; raw pixels
with the learning rate divided by 255**2 (the step that raw inputs make equivalent to [0, 1]
inputs for the first layer).

Usage: python -m train.diagnose_cnn --data DIR --out runs/diagnose_cnn.json [--epochs 3]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from malgan import metrics
from malgan.nn.classifier_nets import SimpleCNN
from train import accel, config, models, runs
from train.splits import Splits, load_splits

RAW_LR_SCALE = 255.0**2


@dataclass(frozen=True)
class DiagnoseConfig:
    """Options of the diagnosis."""

    data: str = field(default="", metadata={"help": "Folder in the NIH layout."})
    out: str = "runs/diagnose_cnn.json"
    epochs: int = 3
    batch: int = 32
    lr: float = 0.01
    max_train: int = field(
        default=0, metadata={"help": "Train on at most this many cells (0: all)."}
    )
    seed: int = 0
    cache_dir: str = ""
    smoke: bool = False


VARIANTS = {
    "report (raw pixels, SGD 0.01)": ("raw", 1.0),
    "report on [0,1] pixels": ("unit", 1.0),
    "raw pixels, learning rate / 255^2": ("raw", 1.0 / RAW_LR_SCALE),
}


def dead_relu_share(net: SimpleCNN, x: torch.Tensor) -> float:
    """Share of the dense layer's ReLU units that output zero for every cell of ``x``."""
    with torch.no_grad():
        _, hidden = net(x)
    return float((hidden.amax(dim=0) <= 0).float().mean())


def run_variant(
    cfg: DiagnoseConfig, input_scale: str, lr_factor: float, splits: Splits
) -> dict[str, Any]:
    """Train one variant and return what was measured."""
    device = accel.pick_device()
    gen = torch.Generator().manual_seed(cfg.seed)
    torch_rng_state = torch.random.get_rng_state()
    net = SimpleCNN().to(device)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr * lr_factor)
    train_x = models.to_device_nchw(splits.train.images, device)
    train_y = torch.from_numpy(splits.train.labels).to(device)
    if cfg.max_train:
        keep = torch.randperm(len(train_x), generator=gen)[: cfg.max_train].to(device)
        train_x, train_y = train_x[keep], train_y[keep]
    test_x = models.to_device_nchw(splits.test.images, device)
    probe = models.network_input(test_x[:256], input_scale)
    with torch.no_grad():
        logits0, _ = net(models.network_input(train_x[: cfg.batch], input_scale))
    record: dict[str, Any] = {
        "input_scale": input_scale,
        "lr": cfg.lr * lr_factor,
        "initial_logit_std": float(logits0.std()),
        "initial_dead_relu_share": dead_relu_share(net, probe),
        "first_nonfinite_step": None,
        "epochs": [],
    }
    step = 0
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(train_x), generator=gen)
        losses = []
        batches = range(0, len(order) - cfg.batch + 1, cfg.batch)
        for start in tqdm(batches, desc=f"{input_scale} lr={cfg.lr * lr_factor:g} e{epoch + 1}"):
            idx = order[start : start + cfg.batch].to(device)
            logits, _ = net(models.network_input(train_x[idx], input_scale))
            loss = F.cross_entropy(logits, train_y[idx])
            opt.zero_grad()
            loss.backward()
            if step == 0:
                grads = [p.grad.norm() for p in net.parameters() if p.grad is not None]
                record["first_gradient_norm"] = float(torch.stack(grads).norm())
            opt.step()
            step += 1
            value = float(loss)
            losses.append(value)
            if not np.isfinite(value) and record["first_nonfinite_step"] is None:
                record["first_nonfinite_step"] = step
        proba, _ = models.predict(net, test_x, input_scale)
        report = metrics.classification_report(proba, splits.test.labels)
        finite = [v for v in losses if np.isfinite(v)]
        record["epochs"].append(
            {
                "epoch": epoch + 1,
                "mean_finite_loss": float(np.mean(finite)) if finite else None,
                "nonfinite_steps": len(losses) - len(finite),
                "test_accuracy": report["accuracy"],
                "predicted_parasitized_share": float((proba.argmax(1) == 0).mean()),
                "dead_relu_share": dead_relu_share(net, probe),
            }
        )
    torch.random.set_rng_state(torch_rng_state)
    return record


def diagnose(cfg: DiagnoseConfig) -> dict[str, Any]:
    """Run every variant and write the results to ``cfg.out``."""
    if cfg.smoke:
        cfg = config.replace(cfg, epochs=1, batch=8)
    splits = load_splits(cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=cfg.smoke)
    results = {
        "config": asdict(cfg),
        "test_parasitized_share": float((splits.test.labels == 0).mean()),
        "hardware": runs.hardware(),
        "git_commit": runs.git_commit(),
        "variants": {
            name: run_variant(cfg, scale, factor, splits)
            for name, (scale, factor) in VARIANTS.items()
        },
    }
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> None:
    cfg = config.parse_config(DiagnoseConfig, argv)
    results = diagnose(cfg)
    for name, rec in results["variants"].items():
        last = rec["epochs"][-1]
        print(
            f"{name}: initial logit std {rec['initial_logit_std']:.3g}, first non-finite step "
            f"{rec['first_nonfinite_step']}, dead ReLUs {last['dead_relu_share']:.0%}, "
            f"held-out accuracy {last['test_accuracy']:.3f}"
        )


if __name__ == "__main__":
    config.run_cli(main)
