"""Train a cell classifier (the report's ResNet or its simple CNN) on the patient-level train split.

Usage: python -m train.classifier --data DIR --out runs/classifier [--arch resnet] [--smoke]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from malgan import metrics
from malgan.augment import symmetry_augment
from malgan.export import pixels_for
from malgan.nets import CLASSIFIER_ARCHS, build_classifier, count_parameters
from train import common

RECIPES = ("sound", "plain", "report")
INPUT_SCALES = ("symmetric", "unit", "raw")
CHECKPOINT = "checkpoint.pt"
FINAL = "model.pt"
EVAL_BATCH = 512
# Brightness and contrast jitter of the sound recipe: stain intensity varies between slides.
COLOR_JITTER = 0.1


@dataclass(frozen=True)
class ClassifierConfig:
    """Classifier training options."""

    data: str = field(default="", metadata={"help": "Folder in the NIH layout."})
    out: str = field(default="runs/classifier", metadata={"help": "Run folder."})
    arch: str = field(default="resnet", metadata={"choices": CLASSIFIER_ARCHS})
    recipe: str = field(
        default="sound",
        metadata={
            "choices": RECIPES,
            "help": "sound: AdamW, one-cycle, symmetry+colour augmentation, label smoothing; "
            "plain: Adam, no augmentation; report: SGD lr 0.01 without momentum, as in Keras.",
        },
    )
    input_scale: str = field(
        default="symmetric",
        metadata={"choices": INPUT_SCALES, "help": "How uint8 pixels are scaled for the network."},
    )
    epochs: int = 24
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    seed: int = 0
    cache_dir: str = ""
    bf16: bool = True
    select_best: bool = field(
        default=True,
        metadata={"help": "Keep the best validation epoch; off keeps the last, as Keras does."},
    )
    halt_on_nonfinite: bool = field(
        default=True,
        metadata={"help": "Stop at a NaN loss; off records it and trains on, as Keras does."},
    )
    smoke: bool = False


def smoke_config(cfg: ClassifierConfig) -> ClassifierConfig:
    """A config that runs the whole path in seconds on a CPU."""
    return common.replace(cfg, epochs=2, batch=16)


def network_input(pix_uint8: torch.Tensor, input_scale: str) -> torch.Tensor:
    """uint8 NCHW -> float network input, scaled as recorded in the ONNX sidecar."""
    pixels = pixels_for(input_scale)
    return pix_uint8.float() * pixels["scale"] + pixels["offset"]


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips and 90-degree rotations of a NCHW batch."""
    x = torch.rot90(x, k % 4, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if k >= 4 else x


@torch.no_grad()
def predict(
    net: torch.nn.Module,
    pix_uint8: torch.Tensor,
    input_scale: str,
    *,
    tta: bool = False,
    batch: int = EVAL_BATCH,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities [N, 2] and features [N, F] of uint8 NCHW cells (eval mode).

    With ``tta`` the probabilities are averaged over the 8 dihedral views of each cell
    (features come from the plain view). A diverged network's NaN outputs become uniform
    probabilities: it has no preference, and ties go to class 0 as in Keras' argmax.
    """
    was_training = net.training
    net.eval()
    probas, feats = [], []
    for start in range(0, len(pix_uint8), batch):
        x = network_input(pix_uint8[start : start + batch], input_scale)
        logits, feat = net(x)
        proba = logits.float().softmax(1)
        if tta:
            for k in range(1, 8):
                proba += net(dihedral(x, k))[0].float().softmax(1)
            proba /= 8
        probas.append(torch.nan_to_num(proba, nan=1.0 / proba.shape[1]).cpu())
        feats.append(torch.nan_to_num(feat.float()).cpu())
    net.train(was_training)
    if not probas:
        return np.zeros((0, 2), np.float32), np.zeros((0, int(net.feature_dim)), np.float32)
    return torch.cat(probas).numpy(), torch.cat(feats).numpy()


def net_kwargs(cfg: ClassifierConfig) -> dict[str, Any]:
    """Constructor arguments of the network (stored in the checkpoint)."""
    return {"arch": cfg.arch, "kwargs": {}}


def rebuild(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Rebuild a classifier from a self-describing checkpoint."""
    spec = ckpt["net"]
    net = build_classifier(spec["arch"], **spec["kwargs"])
    net.load_state_dict(ckpt["state_dict"])
    return net.eval()


def _optimizer(cfg: ClassifierConfig, net: torch.nn.Module, device: torch.device, steps: int):
    if cfg.recipe == "report":
        return torch.optim.SGD(net.parameters(), lr=cfg.lr), None
    if cfg.recipe == "plain":
        return torch.optim.Adam(net.parameters(), lr=cfg.lr), None
    opt = common.adam(
        net.parameters(),
        lr=cfg.lr,
        betas=(0.9, 0.999),
        device=device,
        weight_decay=cfg.weight_decay,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1))
    return opt, sched


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    x = symmetry_augment(x, gen)
    n = x.shape[0]
    gain = 1 + COLOR_JITTER * (2 * torch.rand(n, 1, 1, 1, device=x.device, generator=gen) - 1)
    shift = COLOR_JITTER * (2 * torch.rand(n, 1, 1, 1, device=x.device, generator=gen) - 1)
    return x * gain + shift * x.abs().amax(dim=(1, 2, 3), keepdim=True)


def fit(
    cfg: ClassifierConfig,
    run: common.Run,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_labels: np.ndarray,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train on uint8 NCHW cells, keep the best epoch on validation, checkpoint every epoch.

    Resumes from ``run.out / checkpoint.pt`` when it exists.

    Returns:
        ``(net, state)``: the network holding the best epoch's weights, and the training state
        (``best_val``, ``history``).
    """
    device = run.device
    # Build.
    gen = torch.Generator(device=device).manual_seed(cfg.seed + run.rank)
    perm_gen = torch.Generator().manual_seed(cfg.seed)
    with common.seeded_init(cfg.seed):
        net = build_classifier(cfg.arch).to(device)
    net = common.channels_last(net)
    common.broadcast_module(net, run.world)
    steps_per_epoch = max(1, len(train_x) // (cfg.batch * run.world))
    opt, sched = _optimizer(cfg, net, device, cfg.epochs * steps_per_epoch)
    state: dict[str, Any] = {"epoch": 0, "best_val": -1.0, "best_state": None, "history": []}

    # Resume.
    ckpt_path = run.out / CHECKPOINT
    if ckpt_path.exists():
        ckpt = common.load_checkpoint(ckpt_path, device)
        net.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None:
            sched.load_state_dict(ckpt["scheduler"])
        state = ckpt["state"]
        perm_gen.set_state(ckpt["perm_rng"])
        gen.set_state(ckpt["aug_rng"].to("cpu"))
        common.log.info("Resumed %s at epoch %d", run.out, state["epoch"])

    smoothing = cfg.label_smoothing if cfg.recipe == "sound" else 0.0
    for epoch in range(state["epoch"], cfg.epochs):
        # Train one epoch.
        net.train()
        order = torch.randperm(len(train_x), generator=perm_gen)[run.rank :: run.world]
        running = torch.zeros((), device=device)
        bar = tqdm(
            range(steps_per_epoch), desc=f"{run.out.name} epoch {epoch + 1}", disable=not run.main
        )
        for step in bar:
            idx = order[step * cfg.batch : (step + 1) * cfg.batch].to(device)
            x = network_input(train_x[idx], cfg.input_scale)
            if cfg.recipe == "sound":
                x = _augment(x, gen)
            x = common.channels_last(x)
            with common.autocast(device, cfg.bf16):
                logits, _ = net(x)
            loss = F.cross_entropy(logits.float(), train_y[idx], label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            common.sync_gradients(list(net.parameters()), run.world)
            opt.step()
            if sched is not None:
                sched.step()
            running += loss.detach()
        train_loss = float(running) / steps_per_epoch
        if cfg.halt_on_nonfinite:
            common.check_finite({"train_loss": train_loss}, epoch + 1)
        elif not np.isfinite(train_loss) and state.get("diverged_at_epoch") is None:
            state["diverged_at_epoch"] = epoch + 1
            run.log({"event": "non-finite loss", "epoch": epoch + 1})

        # Validate.
        proba, _ = predict(net, val_x, cfg.input_scale)
        val_acc = float((proba.argmax(1) == val_labels).mean())
        record = {"epoch": epoch + 1, "train_loss": train_loss, "val_accuracy": val_acc}
        state["history"].append(record)
        run.log(record)
        if val_acc > state["best_val"] or not cfg.select_best:
            state["best_val"] = val_acc
            state["best_state"] = common.to_cpu_state(net)
        state["epoch"] = epoch + 1

        # Checkpoint.
        if run.main:
            common.save_checkpoint(
                {
                    "config": asdict(cfg),
                    "net": net_kwargs(cfg),
                    "state_dict": common.to_cpu_state(net),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else {},
                    "state": state,
                    "perm_rng": perm_gen.get_state(),
                    "aug_rng": gen.get_state(),
                },
                ckpt_path,
            )
        run.barrier()

    net.load_state_dict(state["best_state"])
    return net.eval(), state


def train(cfg: ClassifierConfig) -> dict[str, Any]:
    """Train on the train patients, pick the best epoch on validation patients, and report
    held-out metrics with and without test-time flips and rotations."""
    if cfg.smoke:
        cfg = smoke_config(cfg)
    with common.running(cfg, cfg.out) as run:
        device = run.device
        splits = common.load_splits(
            cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=cfg.smoke
        )
        train_x = common.to_device_nchw(splits.train.images, device)
        train_y = torch.from_numpy(splits.train.labels).to(device)
        val_x = common.to_device_nchw(splits.val.images, device)
        net, state = fit(cfg, run, train_x, train_y, val_x, splits.val.labels)

        # Evaluate on held-out patients.
        test_x = common.to_device_nchw(splits.test.images, device)
        results: dict[str, Any] = {}
        for tta in (False, True):
            val_proba, _ = predict(net, val_x, cfg.input_scale, tta=tta)
            test_proba, _ = predict(net, test_x, cfg.input_scale, tta=tta)
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
            common.save_checkpoint(
                {
                    "config": asdict(cfg),
                    "net": net_kwargs(cfg),
                    "state_dict": state["best_state"],
                    "input_scale": cfg.input_scale,
                    "tta": use_tta,
                    "summary": summary,
                },
                run.out / FINAL,
            )
            run.log({"event": "done", **{k: v for k, v in summary.items() if k != "history"}})
    return summary


def main(argv: list[str] | None = None) -> None:
    cfg = common.parse_config(ClassifierConfig, argv)
    summary = train(cfg)
    chosen = summary["results"]["tta" if summary["tta"] else "plain"]["test"]
    print(
        f"{cfg.arch} ({cfg.recipe}): held-out accuracy {chosen['accuracy']:.4f}, "
        f"AUC {chosen['auc']:.4f}, TTA {'on' if summary['tta'] else 'off'}; "
        f"model in {Path(cfg.out) / FINAL}"
    )


if __name__ == "__main__":
    common.run_cli(main)
