"""Iterations per second of the report's DCGAN step: a naive loop against the project's loop.

The naive loop is a direct PyTorch port of the Keras code: a DataLoader over host memory,
fp32, separate real and fake passes through D, and ``.item()`` on every loss each step. The
project's loop is ``train.seed_gan``'s step with the data resident on the device and, on CUDA,
the whole D+G step replayed from one CUDA graph.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from malgan.nn.nets import DCGANDiscriminator, DCGANGenerator
from train import accel, models, runs
from train.seed_gan import SeedGANConfig, build

WARMUP = 10


def naive_loop(
    images: np.ndarray,
    iterations: int,
    batch: int,
    device: torch.device,
    *,
    warmup: int = WARMUP,
) -> float:
    """Iterations per second of the naive port; ``images`` is uint8 NHWC.

    The first ``warmup`` steps are run but not timed.
    """
    if len(images) < batch:
        raise ValueError(f"{len(images)} cells are fewer than one batch of {batch}.")
    data = models.to_unit_range(torch.from_numpy(images).permute(0, 3, 1, 2))
    loader = DataLoader(TensorDataset(data), batch_size=batch, shuffle=True, drop_last=True)
    G, D = DCGANGenerator().to(device), DCGANDiscriminator().to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, device=device)
    done, t0 = 0, 0.0
    while done < iterations + warmup:
        for (real,) in loader:
            if done == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            real = real.to(device)
            z = torch.randn(batch, G.z_dim, device=device)
            fake = G(z).detach()
            opt_d.zero_grad()
            loss_real = F.binary_cross_entropy_with_logits(D(real), ones)
            loss_real.backward()
            opt_d.step()
            opt_d.zero_grad()
            loss_fake = F.binary_cross_entropy_with_logits(D(fake), zeros)
            loss_fake.backward()
            opt_d.step()
            opt_g.zero_grad()
            loss_g = F.binary_cross_entropy_with_logits(D(G(z)), ones)
            loss_g.backward()
            opt_g.step()
            _ = (loss_real.item(), loss_fake.item(), loss_g.item())
            done += 1
            if done >= iterations + warmup:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iterations / (time.perf_counter() - t0)


def project_loop(
    images: np.ndarray,
    iterations: int,
    batch: int,
    device: torch.device,
    *,
    bf16: bool,
    warmup: int = WARMUP,
) -> float:
    """Iterations per second of the project's seed-GAN step (graphed on CUDA).

    The first ``warmup`` steps (the graph capture's own warm-up included) are not timed.
    """
    cfg = SeedGANConfig(batch=batch, bf16=bf16)
    run = runs.Run(out=Path("."), device=device)
    parts = build(cfg, run, models.to_device_nchw(images, device))
    step, warm = accel.graphed(parts.step, device, True, generators=parts.generators)
    if device.type == "cuda" and step is parts.step:
        runs.log.warning("The project's loop is timed without its CUDA graph")
    for _ in range(max(0, warmup - warm)):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iterations):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iterations / (time.perf_counter() - t0)


@dataclass(frozen=True)
class ThroughputResult:
    """Both loops' speed, measured in one run on one device."""

    device: str
    batch: int
    iterations: int
    naive_its: float
    project_its: float
    project_bf16_its: float | None

    def as_dict(self) -> dict[str, Any]:
        bf16 = self.project_bf16_its
        return {
            **self.__dict__,
            "speedup": self.project_its / self.naive_its,
            "speedup_bf16": bf16 / self.naive_its if bf16 is not None else None,
        }


def measure(
    images: np.ndarray,
    *,
    iterations: int,
    batch: int = 32,
    device: torch.device | None = None,
    warmup: int = WARMUP,
) -> ThroughputResult:
    """Run the naive loop and the project's loop (fp32, and bf16 on CUDA) side by side.

    The project's bf16 autocast is CUDA-only, so on a CPU a bf16 run would time fp32 again;
    it is skipped there and recorded as None.
    """
    device = device or accel.pick_device()
    naive = naive_loop(images, iterations, batch, device, warmup=warmup)
    project = project_loop(images, iterations, batch, device, bf16=False, warmup=warmup)
    project_bf16 = (
        project_loop(images, iterations, batch, device, bf16=True, warmup=warmup)
        if device.type == "cuda"
        else None
    )
    return ThroughputResult(str(device), batch, iterations, naive, project, project_bf16)
