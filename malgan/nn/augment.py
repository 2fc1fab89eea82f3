"""Differentiable image augmentations for GAN and classifier training (torch)."""

from __future__ import annotations

import torch

TRANSLATION_RATIO = 0.125  # DiffAugment's default: shift by up to 1/8 of the side
CUTOUT_RATIO = 0.5  # DiffAugment's default: erase a square half the side
FLIP_PROBABILITY = 0.5


def _rand(shape: tuple[int, ...], x: torch.Tensor, generator: torch.Generator | None):
    return torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)


def _rand_int(
    n: int, low: int, high: int, x: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Integers uniform in [low, high], int64 [n], without leaving the device."""
    u = torch.rand((n,), generator=generator, device=x.device)
    return (u * (high - low + 1)).floor().long().clamp(max=high - low) + low


def _augment_brightness(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return x + (_rand((x.shape[0], 1, 1, 1), x, generator) - 0.5)


def _augment_saturation(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand((x.shape[0], 1, 1, 1), x, generator) * 2) + mean


def _augment_contrast(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand((x.shape[0], 1, 1, 1), x, generator) + 0.5) + mean


def _augment_translation(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Shift each image by up to 1/8 of its side, filling with zeros."""
    n, c, h, w = x.shape
    shift_h, shift_w = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    rows = torch.arange(h, device=x.device) + _rand_int(n, -shift_h, shift_h, x, generator)[:, None]
    cols = torch.arange(w, device=x.device) + _rand_int(n, -shift_w, shift_w, x, generator)[:, None]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)  # [N, H], [N, W]
    out = x.gather(2, rows[:, None, :, None].expand(n, c, h, w))
    out = out.gather(3, cols[:, None, None, :].expand(n, c, h, w))
    return out * inside[:, None].to(x.dtype)


def _augment_cutout(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Zero a square of half the side at a random centre (clipped at the border)."""
    n, _, h, w = x.shape
    size_h, size_w = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    top = _rand_int(n, 0, h - size_h % 2, x, generator)[:, None] - size_h // 2
    left = _rand_int(n, 0, w - size_w % 2, x, generator)[:, None] - size_w // 2
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_rows = (rows >= top) & (rows < top + size_h)  # [N, H]
    in_cols = (cols >= left) & (cols < left + size_w)  # [N, W]
    erased = in_rows[:, :, None] & in_cols[:, None, :]
    return x * (~erased)[:, None].to(x.dtype)


_DIFF_AUGMENTS = {
    "color": (_augment_brightness, _augment_saturation, _augment_contrast),
    "translation": (_augment_translation,),
    "cutout": (_augment_cutout,),
}


def diff_augment(
    x: torch.Tensor,
    *,
    policy: str = "color,translation,cutout",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Differentiable augmentation (Zhao et al. 2020, "Differentiable Augmentation for
    Data-Efficient GAN Training").

    Apply the same policy to real and generated images before the discriminator, in both the D
    and the G update. "color" draws a brightness shift, a saturation and a contrast factor per
    image; "translation" shifts by up to 1/8 of the side with zero fill; "cutout" erases a square
    of half the side. All draws happen on x's device and nothing reads a tensor value on the
    host, so the function can be captured in a CUDA graph.

    Args:
        x: Images [N, C, H, W] in [-1, 1].
        policy: Comma-separated subset of "color", "translation", "cutout", applied in order;
            empty for none.
        generator: Source of randomness on x's device; None uses torch's default generator.

    Returns:
        Augmented images, same shape and dtype as x.

    Raises:
        ValueError: For an unknown policy name.
    """
    for name in filter(None, (part.strip() for part in policy.split(","))):
        if name not in _DIFF_AUGMENTS:
            raise ValueError(
                f"unknown DiffAugment policy {name!r}; known: {sorted(_DIFF_AUGMENTS)}"
            )
        for augment in _DIFF_AUGMENTS[name]:
            x = augment(x, generator)
    return x


def symmetry_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random element of the square's symmetry group per image: flips and 90-degree rotations.

    A blood cell on a slide has no preferred orientation, so each of the eight flips/rotations
    (independent horizontal flip, vertical flip and transpose, each with probability 1/2) is an
    equally valid sample. Differentiable and free of host synchronisation.

    Args:
        x: Images [N, C, S, S] (square).
        generator: Source of randomness on x's device; None uses torch's default generator.

    Returns:
        Transformed images, same shape and dtype as x.

    Raises:
        ValueError: If the images are not square.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"symmetry_augment needs square images, got {tuple(x.shape[-2:])}")
    draws = torch.rand((3, x.shape[0], 1, 1, 1), generator=generator, device=x.device)
    flips = draws < FLIP_PROBABILITY
    x = torch.where(flips[0], x.flip(3), x)
    x = torch.where(flips[1], x.flip(2), x)
    return torch.where(flips[2], x.transpose(2, 3), x)
