"""Train the report's DCGAN for one class, the way its Keras code did (the baseline).

Each iteration: D on a real batch, D on a fake batch (two optimiser steps, as two Keras
``train_on_batch`` calls), then G through a frozen D. Adam(2e-4, 0.5), batch 32, 15,000
iterations. The fakes for D come from ``generator.predict``, so G runs in inference mode there.
In the combined model the frozen D's Dropout stays active and its BatchNorm normalises with the
batch's statistics, as Keras 2.2 on TensorFlow 1 did (``--frozen-bn inference`` gives tf.keras 2's
running statistics instead). On the NIH cells the two differ at once: after 160-165 iterations on
a CPU, with the batch's statistics G draws pink cells on black (Fréchet distance 57 on our
classifier's features); with the running statistics, saturated blue and magenta frames (611), as
in the first GPU release.

Usage: python -m train.seed_gan --data DIR --class-name Parasitized --out runs/dcgan_parasitized
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from malgan.data import CLASSES
from malgan.nn import registry
from malgan.nn.nets import DCGANDiscriminator, DCGANGenerator
from train import accel, config, losses, models, runs
from train.gan_loop import GANLoopOptions, GANParts, run_loop, smoke_loop
from train.splits import load_splits

# How a BatchNorm layer runs where Keras versions differ: on its running statistics, or on the
# batch's.
BN_MODES = ("inference", "batch")


@dataclass(frozen=True)
class SeedGANConfig(GANLoopOptions):
    """Options of the report's per-class DCGAN."""

    out: str = "runs/dcgan"
    class_name: str = field(default="Parasitized", metadata={"choices": CLASSES})
    iterations: int = 15000
    batch: int = 32
    lr: float = 2e-4
    beta1: float = 0.5
    z_dim: int = 100
    bf16: bool = False
    keep_best: bool = field(
        default=False, metadata={"help": "Export the best probe instead of the last state."}
    )
    frozen_bn: str = field(
        default="batch",
        metadata={
            "choices": BN_MODES,
            "help": "How the frozen D's BatchNorm runs during G's update: inference (tf.keras 2) "
            "or batch statistics (Keras 2.2 on TensorFlow 1).",
        },
    )
    fakes_bn: str = field(
        default="inference",
        metadata={
            "choices": BN_MODES,
            "help": "How G's BatchNorm runs when it makes D's fakes: inference (Keras' predict) "
            "or batch statistics.",
        },
    )


def smoke_config(cfg: SeedGANConfig) -> SeedGANConfig:
    """A config that runs the whole path in seconds on a CPU."""
    return smoke_loop(cfg)


@contextmanager
def keras_frozen(net: torch.nn.Module, bn: str = "batch"):
    """Freeze D as Keras' ``trainable = False`` does: no gradients, and BatchNorm on the batch's
    statistics (Keras 2.2 on TF 1) or, with ``bn="inference"``, on its running ones (tf.keras 2)."""
    batchnorm = torch.nn.modules.batchnorm._BatchNorm
    bns = [m for m in net.modules() if isinstance(m, batchnorm)] if bn == "inference" else []
    for p in net.parameters():
        p.requires_grad_(False)
    for layer in bns:
        layer.eval()
    try:
        yield
    finally:
        for p in net.parameters():
            p.requires_grad_(True)
        for layer in bns:
            layer.train()


def build(cfg: SeedGANConfig, run: runs.Run, real: torch.Tensor) -> GANParts:
    """Networks, optimisers and the Keras-style step."""
    device = run.device
    with runs.seeded_init(cfg.seed):
        G = accel.channels_last(DCGANGenerator(z_dim=cfg.z_dim).to(device))
        D = accel.channels_last(DCGANDiscriminator().to(device))
    accel.broadcast_module(G, run.world)
    accel.broadcast_module(D, run.world)
    opt_g = accel.adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999), device=device)
    opt_d = accel.adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999), device=device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + run.rank)
    ones = torch.ones(cfg.batch, device=device)
    zeros = torch.zeros(cfg.batch, device=device)
    totals = torch.zeros(3, device=device)
    n = len(real)

    def d_update(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with accel.autocast(device, cfg.bf16):
            loss = losses.keras_bce(D(images).float(), target)
        opt_d.zero_grad(set_to_none=False)
        loss.backward()
        accel.sync_gradients(list(D.parameters()), run.world)
        opt_d.step()
        return loss.detach()

    def step() -> None:
        idx = torch.randint(0, n, (cfg.batch,), device=device, generator=gen)
        z = torch.randn(cfg.batch, cfg.z_dim, device=device, generator=gen)
        # Fakes from generator.predict: G in inference mode (unless asked otherwise), no gradient.
        G.train(cfg.fakes_bn == "batch")
        with torch.no_grad(), accel.autocast(device, cfg.bf16):
            fake = G(z).float()
        G.train()
        # Update D on real, then on fake.
        loss_real = d_update(models.to_unit_range(real[idx]), ones)
        loss_fake = d_update(fake, zeros)
        # Update G through the frozen D.
        with keras_frozen(D, cfg.frozen_bn), accel.autocast(device, cfg.bf16):
            loss_g = losses.keras_bce(D(G(z)).float(), ones)
        opt_g.zero_grad(set_to_none=False)
        loss_g.backward()
        accel.sync_gradients(list(G.parameters()), run.world)
        opt_g.step()
        totals.add_(torch.stack([loss_real, loss_fake, loss_g.detach()]))

    def sample(z: torch.Tensor, label: int) -> torch.Tensor:
        return G(z)

    return GANParts(
        step=step,
        modules={"G": G, "D": D},
        optimizers={"G": opt_g, "D": opt_d},
        losses=totals,
        loss_names=("d_real", "d_fake", "g"),
        sample=sample,
        net_spec=registry.spec("dcgan", z_dim=cfg.z_dim),
        classes=(cfg.class_name,),
        generators=[gen],
    )


def train(cfg: SeedGANConfig) -> dict[str, Any]:
    """Train the report's DCGAN on the train-split cells of one class."""
    if cfg.smoke:
        cfg = smoke_config(cfg)
    with runs.running(cfg, cfg.out) as run:
        splits = load_splits(cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=cfg.smoke)
        cells = splits.train.subset(splits.train.labels == CLASSES.index(cfg.class_name))
        real = models.to_device_nchw(cells.images, run.device)
        parts = build(cfg, run, real)
        summary = run_loop(run, cfg, parts, reference=splits.val)
    return summary


def main(argv: list[str] | None = None) -> None:
    cfg = config.parse_config(SeedGANConfig, argv)
    summary = train(cfg)
    print(
        f"{cfg.class_name}: {summary['iterations']} iterations "
        f"at {summary['iterations_per_second']:.1f} it/s"
    )


if __name__ == "__main__":
    config.run_cli(main)
