"""The classifier training loop: recipes, augmentation, best-epoch selection and resume."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from malgan.nn import registry
from malgan.nn.augment import symmetry_augment
from train import accel, models, runs

RECIPES = ("sound", "plain", "report")
INPUT_SCALES = ("symmetric", "unit", "raw")
# Brightness and contrast jitter of the sound recipe: stain intensity varies between slides.
COLOR_JITTER = 0.1


@dataclass(frozen=True)
class FitOptions:
    """How a classifier trains: network, recipe, schedule and precision."""

    arch: str = field(default="resnet", metadata={"choices": registry.CLASSIFIER_ARCHS})
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
    bf16: bool = True
    select_best: bool = field(
        default=True,
        metadata={"help": "Keep the best validation epoch; off keeps the last, as Keras does."},
    )
    halt_on_nonfinite: bool = field(
        default=True,
        metadata={"help": "Stop at a NaN loss; off records it and trains on, as Keras does."},
    )


def _optimizer(cfg: FitOptions, net: torch.nn.Module, device: torch.device, steps: int):
    if cfg.recipe == "report":
        return torch.optim.SGD(net.parameters(), lr=cfg.lr), None
    if cfg.recipe == "plain":
        return torch.optim.Adam(net.parameters(), lr=cfg.lr), None
    opt = accel.adam(
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


def _resume(
    path: Path,
    run: runs.Run,
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    perm_gen: torch.Generator,
    gen: torch.Generator,
) -> dict[str, Any]:
    """Load a checkpoint into the network, optimiser, schedule and generators; its state."""
    ckpt = runs.load_checkpoint(path, run.device)
    net.load_state_dict(ckpt["state_dict"])
    opt.load_state_dict(ckpt["optimizer"])
    if sched is not None:
        sched.load_state_dict(ckpt["scheduler"])
    perm_gen.set_state(ckpt["perm_rng"])
    gen.set_state(ckpt["aug_rng"].to("cpu"))
    runs.log.info("Resumed %s at epoch %d", run.out, ckpt["state"]["epoch"])
    return ckpt["state"]


def _train_epoch(
    cfg: FitOptions,
    run: runs.Run,
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    batches: list[torch.Tensor],
    gen: torch.Generator,
    epoch: int,
) -> float:
    """One epoch over ``batches`` (indices into the training cells); its mean loss."""
    device = run.device
    smoothing = cfg.label_smoothing if cfg.recipe == "sound" else 0.0
    net.train()
    running = torch.zeros((), device=device)
    desc = f"{run.out.name} epoch {epoch + 1}"
    for batch in tqdm(batches, desc=desc, disable=not run.main):
        idx = batch.to(device)
        x = models.network_input(train_x[idx], cfg.input_scale)
        if cfg.recipe == "sound":
            x = _augment(x, gen)
        x = accel.channels_last(x)
        with accel.autocast(device, cfg.bf16):
            logits, _ = net(x)
        loss = F.cross_entropy(logits.float(), train_y[idx], label_smoothing=smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        accel.sync_gradients(list(net.parameters()), run.world)
        opt.step()
        if sched is not None:
            sched.step()
        running += loss.detach()
    return float(running) / len(batches)


def fit(
    cfg: FitOptions,
    run: runs.Run,
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
    with runs.seeded_init(cfg.seed):
        net = registry.build(cfg.arch).to(device)
    net = accel.channels_last(net)
    accel.broadcast_module(net, run.world)
    steps_per_epoch = max(1, len(train_x) // (cfg.batch * run.world))
    opt, sched = _optimizer(cfg, net, device, cfg.epochs * steps_per_epoch)
    state: dict[str, Any] = {"epoch": 0, "best_val": -1.0, "best_state": None, "history": []}

    # Resume.
    ckpt_path = run.out / models.CHECKPOINT
    if ckpt_path.exists():
        state = _resume(ckpt_path, run, net, opt, sched, perm_gen, gen)

    for epoch in range(state["epoch"], cfg.epochs):
        # Train one epoch.
        order = torch.randperm(len(train_x), generator=perm_gen)[run.rank :: run.world]
        batches = [order[k * cfg.batch : (k + 1) * cfg.batch] for k in range(steps_per_epoch)]
        train_loss = _train_epoch(cfg, run, net, opt, sched, train_x, train_y, batches, gen, epoch)
        if cfg.halt_on_nonfinite:
            runs.check_finite({"train_loss": train_loss}, epoch + 1)
        elif not np.isfinite(train_loss) and state.get("diverged_at_epoch") is None:
            state["diverged_at_epoch"] = epoch + 1
            run.log({"event": "non-finite loss", "epoch": epoch + 1})

        # Validate.
        proba, _ = models.predict(net, val_x, cfg.input_scale)
        val_acc = float((proba.argmax(1) == val_labels).mean())
        record = {"epoch": epoch + 1, "train_loss": train_loss, "val_accuracy": val_acc}
        state["history"].append(record)
        run.log(record)
        if val_acc > state["best_val"] or not cfg.select_best:
            state["best_val"] = val_acc
            state["best_state"] = runs.to_cpu_state(net)
        state["epoch"] = epoch + 1

        # Checkpoint.
        if run.main:
            runs.save_checkpoint(
                {
                    "config": asdict(cfg),
                    "net": registry.spec(cfg.arch),
                    "state_dict": runs.to_cpu_state(net),
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
