"""The latent directions a release ships with each generator: principal directions (GANSpace,
Härkönen et al. 2020) and per class an infection direction fitted to a judge's P(parasitized)
(InterFaceGAN, Shen et al. 2020)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from malgan import latent
from malgan.data import CLASSES
from malgan.runtime import Classifier
from train import models

# Latents of the direction fits; distinct from the evaluation's and the dashboard's seeds.
DIRECTION_SEED = 3000


def _first_linear_output(net: torch.nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """Activations of a generator's first layer, flattened (the GANSpace feature space)."""
    if hasattr(net, "early_features"):
        return net.early_features(*inputs)
    captured: dict[str, torch.Tensor] = {}
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Linear))
    handle = first.register_forward_hook(lambda _m, _i, out: captured.setdefault("h", out))
    try:
        net(*inputs)
    finally:
        handle.remove()
    return captured["h"].flatten(1)


# P(each class) of generated cells, given as uint8 NCHW images: a torch or an ONNX classifier.
Judge = Callable[[torch.Tensor], np.ndarray]


def torch_judge(clf: torch.nn.Module, input_scale: str) -> Judge:
    """A judge from a trained torch classifier."""
    return lambda images: models.predict(clf, images, input_scale)[0]


def onnx_judge(clf: Classifier) -> Judge:
    """A judge from an exported classifier (ONNX Runtime, plain view)."""
    return lambda images: clf.predict_proba(images.permute(0, 2, 3, 1).cpu().numpy())


@torch.no_grad()
def generator_directions(
    net: torch.nn.Module,
    labels: tuple[str, ...],
    conditional: bool,
    judge: Judge,
    device: torch.device,
    *,
    samples: int,
    components: int,
) -> dict[str, Any]:
    """Principal and infection directions in z for one generator network, from ``samples``
    latents: ``components`` GANSpace directions, and per class the direction of the judge's
    P(parasitized)."""
    n = samples
    z = latent.sample_z(DIRECTION_SEED, n, net.z_dim)
    zt = torch.from_numpy(z).to(device)
    eye = torch.eye(len(CLASSES), device=device)
    first = CLASSES.index(labels[0])
    inputs = (zt, eye[torch.full((n,), first, device=device)]) if conditional else (zt,)
    acts = _first_linear_output(net, *inputs).float().cpu().numpy()
    principal, sigmas = latent.principal_directions(z, acts, components)
    infection = {}
    for label in labels:
        y = eye[torch.full((n,), CLASSES.index(label), device=device)]
        images = net(zt, y) if conditional else net(zt)
        proba = judge(models.to_uint8(images))
        infection[label] = latent.attribute_direction(z, proba[:, 0]).tolist()
    return {"principal": principal.tolist(), "sigmas": sigmas.tolist(), "infection": infection}
