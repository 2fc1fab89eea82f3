"""The GAN losses and the EMA update, one function each, shared by the training scripts.

- the hinge loss of D and G (Lim & Ye 2017; Miyato et al. 2018), used by the conditional GAN;
- the report's Keras binary cross-entropy on D's logits, used by its DCGAN;
- the guide term: a frozen classifier's capped cross-entropy on generated cells;
- the mode-seeking term between pairs of latents (Mao et al. 2019);
- the exponential moving average of G's weights, with a ramp-up (Karras et al. 2018).

Each takes and returns tensors only, so a CUDA-graphed step can call it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# EMA ramp-up: the decay at step t is min(ema_decay, (1 + t) / (EMA_RAMP + t)).
EMA_RAMP = 10.0
# Keeps the mode-seeking term finite when two cells are identical.
MODE_SEEKING_EPS = 1e-5


def hinge_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's hinge loss: real logits pushed above 1, fake logits below -1."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """G's hinge loss: the negated mean of D's logits on its cells."""
    return -fake_logits.mean()


def keras_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The report's loss: Keras' binary cross-entropy on a sigmoid output, here on D's logits
    (the same value, computed stably)."""
    return F.binary_cross_entropy_with_logits(logits, target)


def guide_term(logits: torch.Tensor, y: torch.Tensor, confidence: float) -> torch.Tensor:
    """The guide's cross-entropy on generated cells, less -log(confidence) and floored at zero:
    a cell the guide gives its class with at least ``confidence`` is left to D alone, since
    pushing the verdict to certainty draws one exaggerated mark on every cell rather than
    varied parasites.

    Raises:
        ValueError: When ``confidence`` is outside (0, 1].
    """
    if not 0 < confidence <= 1:
        raise ValueError("--guide-confidence must be in (0, 1]")
    ce = F.cross_entropy(logits, y, reduction="none")
    return F.relu(ce + math.log(confidence)).mean()


def mode_seeking(
    fake_a: torch.Tensor, fake_b: torch.Tensor, z_a: torch.Tensor, z_b: torch.Tensor
) -> torch.Tensor:
    """The mode-seeking term of Mao et al. (2019): the inverse of how much two cells of one
    class differ per unit of difference between their latents, averaged over the pairs; it
    falls as G draws different cells from different latents.
    """
    dims = tuple(range(1, fake_a.dim()))
    image_gap = (fake_a - fake_b).abs().mean(dim=dims)
    latent_gap = (z_a - z_b).abs().mean(dim=1)
    return (1.0 / (image_gap / latent_gap + MODE_SEEKING_EPS)).mean()


@torch.no_grad()
def ema_update(
    ema_params: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    ema_buffers: Sequence[torch.Tensor],
    buffers: Sequence[torch.Tensor],
    step_count: torch.Tensor,
    decay: float,
) -> None:
    """Move the EMA weights towards the current ones in place, and copy the buffers.

    Ramp-up: early on, average over the steps taken so far rather than over 1/(1-decay) steps
    that mostly hold the initial weights; a short run needs it. ``step_count`` is a tensor (the
    optimiser's step), so that a CUDA graph replays the ramp rather than freezing it.
    """
    weight = 1 - torch.clamp((1 + step_count) / (EMA_RAMP + step_count), max=decay)
    deltas = torch._foreach_sub(list(params), list(ema_params))
    torch._foreach_mul_(deltas, weight)
    torch._foreach_add_(list(ema_params), deltas)
    for b_ema, b in zip(ema_buffers, buffers, strict=True):
        b_ema.copy_(b)
