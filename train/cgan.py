"""Train the class-conditional GAN: one generator for both classes.

Recipe: hinge loss (Lim & Ye 2017; Miyato et al. 2018) with a spectrally normalised projection
discriminator (Miyato & Koyama 2018); class-conditional BatchNorm in G (BigGAN, Brock et al.
2019); DiffAugment on every image D sees (Zhao et al. 2020) plus random flips and 90-degree
rotations, since cells have no orientation; an exponential moving average of G's weights is the
model that is sampled and exported (Karras et al. 2018; Yazıcı et al. 2019).

Usage: python -m train.cgan --data DIR --out runs/cgan [--smoke]
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from malgan.data import CLASSES
from malgan.nn import registry
from malgan.nn.augment import diff_augment, symmetry_augment
from malgan.nn.nets import CondGenerator, ProjectionDiscriminator
from malgan.nn.onnx_export import pixels_for
from train import accel, config, losses, models, runs
from train.gan_loop import GANLoopOptions, GANParts, run_loop, smoke_loop
from train.splits import load_splits


@dataclass(frozen=True)
class CGANConfig(GANLoopOptions):
    """Options of the class-conditional GAN."""

    out: str = "runs/cgan"
    iterations: int = 15000
    batch: int = 64
    d_steps: int = field(default=2, metadata={"help": "D updates per G update."})
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.999
    ema_decay: float = 0.999
    z_dim: int = 128
    ch: int = field(default=0, metadata={"help": "Channel width; 0 keeps the network's default."})
    d_ch: int = field(default=0, metadata={"help": "Discriminator width; 0 uses --ch."})
    minibatch_std: int = field(
        default=0,
        metadata={
            "help": "Group size of the discriminator's minibatch standard deviation channel, "
            "which lets it see cells drawn alike; 0 is off. --batch must be a multiple of it."
        },
    )
    aux_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the auxiliary classification loss (AC-GAN): D classifies real "
            "cells, G is rewarded when D classifies its cells as their class; 0 is off."
        },
    )
    guide: str = field(
        default="",
        metadata={
            "help": "A trained classifier's model.pt whose verdict on generated cells G also "
            "learns from (frozen); recovery must then be judged by another classifier."
        },
    )
    guide_weight: float = field(
        default=0.0, metadata={"help": "Weight of the guide's cross-entropy in G's loss."}
    )
    guide_confidence: float = field(
        default=1.0,
        metadata={
            "help": "The guide's probability of a generated cell's class beyond which G no "
            "longer learns from the guide on that cell; 1 never stops."
        },
    )
    guide_fraction: float = field(
        default=1.0,
        metadata={
            "help": "Share of each batch of generated cells the guide judges; the rest learn "
            "from D alone."
        },
    )
    guide_weight_late: float = field(
        default=-1.0,
        metadata={
            "help": "The guide's weight at --iterations, reached linearly from --guide-weight; "
            "negative keeps --guide-weight throughout."
        },
    )
    mode_seeking: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the mode-seeking term (Mao et al. 2019): pairs of cells of one "
            "class are rewarded for differing as much as their latents do; 0 is off."
        },
    )
    augment: str = field(
        default="color,translation,cutout", metadata={"help": "DiffAugment policy."}
    )
    bf16: bool = True


def smoke_config(cfg: CGANConfig) -> CGANConfig:
    """A config that runs the whole path in seconds on a CPU."""
    return smoke_loop(cfg, d_steps=1)


def net_spec(cfg: CGANConfig) -> dict[str, Any]:
    """Constructor arguments of the generator."""
    kwargs: dict[str, Any] = {"z_dim": cfg.z_dim, "num_classes": len(CLASSES)}
    if cfg.ch:
        kwargs["ch"] = cfg.ch
    return registry.spec("cgan", **kwargs)


def load_guide(
    cfg: CGANConfig, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The frozen guide classifier as a differentiable map from [-1, 1] images to logits."""
    if not cfg.guide or cfg.guide_weight <= 0:
        return None
    net, ckpt = models.load_classifier(cfg.guide, device)
    net = accel.channels_last(net).requires_grad_(False)
    pixels = pixels_for(ckpt["input_scale"])

    def logits(images: torch.Tensor) -> torch.Tensor:
        # The guide reads pixels scaled as its sidecar says; no rounding keeps the gradient.
        x = (images + 1) * 127.5 * pixels["scale"] + pixels["offset"]
        with accel.autocast(device, cfg.bf16):
            return net(x)[0].float()

    return logits


def discriminator_kwargs(cfg: CGANConfig) -> dict[str, Any]:
    """Constructor arguments of the projection discriminator."""
    if cfg.minibatch_std and cfg.batch % cfg.minibatch_std:
        raise ValueError("--batch must be a multiple of --minibatch-std")
    d_kwargs: dict[str, Any] = {
        "num_classes": len(CLASSES),
        "aux_classifier": cfg.aux_weight > 0,
        "minibatch_std": cfg.minibatch_std,
    }
    if cfg.d_ch or cfg.ch:
        d_kwargs["ch"] = cfg.d_ch or cfg.ch
    return d_kwargs


class CGANStep:
    """One training iteration of the conditional GAN: update D, update G, update EMA.

    Its tensors are static (the running loss totals, the one-hot rows), and every random draw
    comes from ``gen`` on the device, so that a CUDA graph can capture ``step`` whole.
    """

    def __init__(
        self, cfg: CGANConfig, run: runs.Run, real: torch.Tensor, labels: torch.Tensor
    ) -> None:
        device = self.device = run.device
        self.cfg, self.run, self.real, self.labels = cfg, run, real, labels
        self.spec = net_spec(cfg)
        d_kwargs = discriminator_kwargs(cfg)
        with runs.seeded_init(cfg.seed):
            self.G = accel.channels_last(CondGenerator(**self.spec["kwargs"]).to(device))
            self.D = accel.channels_last(ProjectionDiscriminator(**d_kwargs).to(device))
        accel.broadcast_module(self.G, run.world)
        accel.broadcast_module(self.D, run.world)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = accel.adam(self.G.parameters(), lr=cfg.lr_g, betas=betas, device=device)
        self.opt_d = accel.adam(self.D.parameters(), lr=cfg.lr_d, betas=betas, device=device)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + run.rank)
        self.eye = torch.eye(len(CLASSES), device=device)
        self.totals = torch.zeros(2, device=device)
        self.g_params, self.ema_params = list(self.G.parameters()), list(self.G_ema.parameters())
        self.g_buffers, self.ema_buffers = list(self.G.buffers()), list(self.G_ema.buffers())
        self.guide = load_guide(cfg, device)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        x = symmetry_augment(x, self.gen)
        policy = self.cfg.augment
        x = diff_augment(x, policy=policy, generator=self.gen) if policy else x
        return accel.channels_last(x)

    def judge(
        self, images: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's realness logits and, with the auxiliary loss, its class logits."""
        with accel.autocast(self.device, self.cfg.bf16):
            if self.cfg.aux_weight > 0:
                logits, aux = self.D.score_and_classify(images, y)
                return logits.float(), aux.float()
            return self.D(images, y).float(), None

    def draw(self, *, paired: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Classes and latents of one batch of fakes; ``paired``: the second half repeats the
        first half's classes, for the mode-seeking term."""
        cfg, device = self.cfg, self.device
        n = cfg.batch // 2 if paired else cfg.batch
        fake_y = torch.randint(0, len(CLASSES), (n,), device=device, generator=self.gen)
        fake_y = torch.cat([fake_y, fake_y]) if paired else fake_y
        z = torch.randn(len(fake_y), cfg.z_dim, device=device, generator=self.gen)
        return fake_y, z

    def update_d(self) -> torch.Tensor:
        """One hinge-loss update of D, real and fake in one pass (D has no batch statistics)."""
        cfg, device = self.cfg, self.device
        idx = torch.randint(0, len(self.real), (cfg.batch,), device=device, generator=self.gen)
        fake_y, z = self.draw()
        with torch.no_grad(), accel.autocast(device, cfg.bf16):
            fake = self.G(z, self.eye[fake_y]).float()
        images = self.augment(torch.cat([models.to_unit_range(self.real[idx]), fake]))
        logits, aux = self.judge(images, torch.cat([self.labels[idx], fake_y]))
        loss = losses.hinge_d(logits[: cfg.batch], logits[cfg.batch :])
        if aux is not None:
            # The auxiliary head learns the classes from real cells only.
            loss = loss + cfg.aux_weight * F.cross_entropy(aux[: cfg.batch], self.labels[idx])
        self.opt_d.zero_grad(set_to_none=False)
        loss.backward()
        accel.sync_gradients(list(self.D.parameters()), self.run.world)
        self.opt_d.step()
        return loss.detach()

    def update_g(self) -> torch.Tensor:
        """One update of G through D (frozen), with the auxiliary and guide terms when asked."""
        cfg = self.cfg
        fake_y, z = self.draw(paired=cfg.mode_seeking > 0)
        self.D.requires_grad_(False)
        with accel.autocast(self.device, cfg.bf16):
            fake = self.G(z, self.eye[fake_y]).float()
        logits, aux = self.judge(self.augment(fake), fake_y)
        loss = losses.hinge_g(logits)
        if aux is not None:
            loss = loss + cfg.aux_weight * F.cross_entropy(aux, fake_y)
        if self.guide is not None:
            loss = loss + self.guide_loss(fake, fake_y)
        if cfg.mode_seeking > 0:
            half = len(fake) // 2
            pairs = (fake[:half], fake[half:], z[:half], z[half:])
            loss = loss + cfg.mode_seeking * losses.mode_seeking(*pairs)
        self.D.requires_grad_(True)
        self.opt_g.zero_grad(set_to_none=False)
        loss.backward()
        accel.sync_gradients(self.g_params, self.run.world)
        self.opt_g.step()
        return loss.detach()

    def guide_weight(self) -> torch.Tensor:
        """The guide's weight at this step: a tensor, so that a CUDA graph replays the schedule."""
        cfg = self.cfg
        state = self.opt_g.state.get(self.g_params[0], {})
        if cfg.guide_weight_late < 0 or "step" not in state:
            return torch.full((), cfg.guide_weight, device=self.device)
        step = torch.as_tensor(state["step"], device=self.device).float()
        progress = torch.clamp(step / max(cfg.iterations, 1), 0.0, 1.0)
        return cfg.guide_weight + (cfg.guide_weight_late - cfg.guide_weight) * progress

    def guide_loss(self, fake: torch.Tensor, fake_y: torch.Tensor) -> torch.Tensor:
        """The guide term on the first ``guide_fraction`` of the batch."""
        assert self.guide is not None
        n = max(1, round(self.cfg.guide_fraction * len(fake)))
        # The guide sees flips and rotations only: a cutout could erase the parasite.
        guided = self.guide(symmetry_augment(fake[:n], self.gen))
        term = losses.guide_term(guided, fake_y[:n], self.cfg.guide_confidence)
        return self.guide_weight() * term

    def step(self) -> None:
        # Update D.
        d_loss = torch.zeros((), device=self.device)
        for _ in range(self.cfg.d_steps):
            d_loss = d_loss + self.update_d() / self.cfg.d_steps
        # Update G.
        g_loss = self.update_g()
        # Update EMA.
        step_count = self.opt_g.state[self.g_params[0]]["step"].to(self.device)
        losses.ema_update(
            self.ema_params,
            self.g_params,
            self.ema_buffers,
            self.g_buffers,
            step_count,
            decay=self.cfg.ema_decay,
        )
        self.totals.add_(torch.stack([d_loss, g_loss]))

    def sample(self, z: torch.Tensor, label: int) -> torch.Tensor:
        return self.G_ema(z, self.eye[torch.full((len(z),), label, device=self.device)])


def build(cfg: CGANConfig, run: runs.Run, real: torch.Tensor, labels: torch.Tensor) -> GANParts:
    """Networks, optimisers, EMA and the step: update D, update G, update EMA."""
    gan = CGANStep(cfg, run, real, labels)
    return GANParts(
        step=gan.step,
        modules={"G": gan.G, "D": gan.D, "G_ema": gan.G_ema},
        optimizers={"G": gan.opt_g, "D": gan.opt_d},
        losses=gan.totals,
        loss_names=("d_hinge", "g"),
        sample=gan.sample,
        net_spec=gan.spec,
        classes=CLASSES,
        sampler="G_ema",
        generators=[gan.gen],
    )


def train(cfg: CGANConfig) -> dict[str, Any]:
    """Train the conditional GAN on the train-split cells of both classes."""
    if cfg.smoke:
        cfg = smoke_config(cfg)
    with runs.running(cfg, cfg.out) as run:
        splits = load_splits(cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=cfg.smoke)
        real = models.to_device_nchw(splits.train.images, run.device)
        labels = torch.from_numpy(splits.train.labels).to(run.device)
        parts = build(cfg, run, real, labels)
        summary = run_loop(run, cfg, parts, reference=splits.val)
    return summary


def main(argv: list[str] | None = None) -> None:
    cfg = config.parse_config(CGANConfig, argv)
    summary = train(cfg)
    print(
        f"cgan: {summary['iterations']} iterations at {summary['iterations_per_second']:.1f} it/s"
    )


if __name__ == "__main__":
    config.run_cli(main)
