"""The infection control: push a generated cell towards Parasitized or Uninfected (numpy only).

A control moves what makes the parasite. Three are defined; ``benchmarks/infection_control.py``
measures each (flip rate with our classifier, the cell outline kept, hue and area moved):

- ``CLASS_INPUT``: the conditional generator's class input. The amount is added to the cell's
  Parasitized class weight (clipped to [0, 1], the rest on the other class), so +1 takes an
  Uninfected cell to Parasitized with the same latent. The exported conditional generator
  takes class weights ``y [N, K]`` as floats and embeds them linearly, so a blend is a valid
  input of the committed ONNX file.
- ``DIRECTION``: the InterFaceGAN direction of z fitted to the classifier within a class
  (``Directions.infection``); the amount is in units of ``DIRECTION_SIGMA_AT_MAX`` standard
  deviations. The per-class DCGANs have no class input, so this is their only control.
- ``CLASS_AND_DIRECTION``: both at once.

The amount runs from ``AMOUNT_MIN`` (towards Uninfected) to ``AMOUNT_MAX`` (towards
Parasitized); 0 is the cell as drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from malgan import latent, metrics, morphology
from malgan.runtime import CellGenerator

PARASITIZED = "Parasitized"
CLASS_INPUT = "class input"
DIRECTION = "fitted direction"
CLASS_AND_DIRECTION = "class input and fitted direction"
CONTROLS = (CLASS_INPUT, DIRECTION, CLASS_AND_DIRECTION)
AMOUNT_MIN = -1.0
AMOUNT_MAX = 1.0
# At amount +-1 a direction moves z this many standard deviations (the old slider's range).
DIRECTION_SIGMA_AT_MAX = 3.0
# Mask SSIM from which a pushed cell counts as keeping its outline.
OUTLINE_KEPT_SSIM = 0.8
PERCENT = 100.0


def default_control(generator: CellGenerator) -> str:
    """The control a page offers: the class input where there is one (the benchmark's winner)."""
    return CLASS_INPUT if generator.conditional else DIRECTION


def one_hot(classes: tuple[str, ...], label: str, n: int) -> np.ndarray:
    """Class weights float32 [n, len(classes)] of ``n`` cells of one class."""
    if label not in classes:
        raise ValueError(f"Unknown class {label!r}; the generator has {classes}.")
    weights = np.zeros((n, len(classes)), np.float32)
    weights[:, classes.index(label)] = 1.0
    return weights


def infection_direction(generator: CellGenerator, class_weights: np.ndarray) -> np.ndarray:
    """The unit infection direction of a class blend: the weight-averaged class directions.

    Args:
        generator: The generator the latent belongs to.
        class_weights: [len(generator.classes)] weights (one-hot for a pure class).

    Returns:
        float32 [z_dim] unit vector.

    Raises:
        ValueError: If the generator ships no infection direction for a weighted class.
    """
    weights = np.asarray(class_weights, np.float64).reshape(-1)
    directions = generator.directions
    total = np.zeros(generator.z_dim)
    for cls, w in zip(generator.classes, weights, strict=True):
        if w <= 0:
            continue
        vector = directions[cls].infection if cls in directions else None
        if vector is None:
            raise ValueError(f"{generator.display_name} ships no infection direction for {cls}.")
        total += w * vector
    norm = float(np.linalg.norm(total))
    if norm == 0.0 or not np.isfinite(norm):
        raise ValueError(f"{generator.display_name} has no usable infection direction.")
    return (total / norm).astype(np.float32)


def shift_class_weights(
    classes: tuple[str, ...], class_weights: np.ndarray, amount: float
) -> np.ndarray:
    """Class weights [N, K] with ``amount`` added to Parasitized, clipped to [0, 1].

    The other classes share what is left in their old proportions (evenly when they had
    nothing), so every row still sums to 1.
    """
    weights = np.atleast_2d(np.asarray(class_weights, np.float64))
    if PARASITIZED not in classes:
        raise ValueError(f"The generator has no {PARASITIZED} class: {classes}.")
    column = classes.index(PARASITIZED)
    target = np.clip(weights[:, column] + float(amount), 0.0, 1.0)  # [N]
    others = np.delete(weights, column, axis=1)  # [N, K - 1]
    sums = others.sum(axis=1, keepdims=True)
    even = np.full_like(others, 1.0 / max(1, others.shape[1]))
    shares = np.where(sums > 0, others / np.where(sums > 0, sums, 1.0), even)
    out = np.insert(shares * (1.0 - target)[:, None], column, target, axis=1)
    return out.astype(np.float32)


def push(
    generator: CellGenerator,
    z: np.ndarray,
    class_weights: np.ndarray,
    amount: float,
    control: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Latents and class weights of cells pushed by ``amount`` with a control.

    Args:
        generator: The generator.
        z: float32 [N, z_dim] latents.
        class_weights: float32 [N, K] class weights (one-hot for per-class generators).
        amount: In [AMOUNT_MIN, AMOUNT_MAX]; + towards Parasitized.
        control: One of ``CONTROLS``.

    Returns:
        ``(z float32 [N, z_dim], class_weights float32 [N, K])``.

    Raises:
        ValueError: For an unknown control, an amount out of range, a class input on a
            generator without one, or a direction the generator does not ship.
    """
    if control not in CONTROLS:
        raise ValueError(f"Unknown control {control!r}; use one of {CONTROLS}.")
    amount = float(amount)
    if not AMOUNT_MIN <= amount <= AMOUNT_MAX:
        raise ValueError(f"The amount must lie in [{AMOUNT_MIN:g}, {AMOUNT_MAX:g}], got {amount}.")
    z = np.atleast_2d(np.asarray(z, np.float32))
    weights = np.atleast_2d(np.asarray(class_weights, np.float32))
    if control != DIRECTION and not generator.conditional:
        raise ValueError(
            f"{generator.display_name} has one generator per class and no class input; only "
            "its fitted direction can push a cell."
        )
    if control != CLASS_INPUT and amount:
        directions = np.stack([infection_direction(generator, w) for w in weights])  # [N, D]
        z = latent.move(z, directions, amount * DIRECTION_SIGMA_AT_MAX).astype(np.float32)
    if control != DIRECTION:
        weights = shift_class_weights(generator.classes, weights, amount)
    return z, weights


def pushed_cells(
    generator: CellGenerator,
    z: np.ndarray,
    class_weights: np.ndarray,
    amounts: tuple[float, ...],
    control: str,
) -> np.ndarray:
    """The cells of latents ``z [N, z_dim]`` pushed to each amount: uint8 [A, N, S, S, 3]."""
    pushed = [push(generator, z, class_weights, amount, control) for amount in amounts]
    stacked_z = np.concatenate([p[0] for p in pushed])
    stacked_w = np.concatenate([p[1] for p in pushed])
    images = generator.generate_mix(stacked_z, stacked_w)
    return images.reshape(len(amounts), len(np.atleast_2d(z)), *images.shape[1:])


def push_effect(
    start: np.ndarray,
    end: np.ndarray,
    proba_start: np.ndarray,
    proba_end: np.ndarray,
    target: str,
    classes: tuple[str, ...],
) -> dict[str, Any]:
    """What a push did to cells, as measured.

    Args:
        start: uint8 [N, S, S, 3] cells before the push.
        end: uint8 [N, S, S, 3] the same cells after it.
        proba_start: float [N, C] classifier probabilities of ``start``.
        proba_end: float [N, C] of ``end``.
        target: The class the push aims at.
        classes: The classifier's columns.

    Returns:
        ``n``, ``flipped`` (share of end cells whose verdict is ``target``) with its Wilson
        interval ``flipped_ci``, ``already`` (share of start cells already ``target``), the mask
        SSIM's ``mask_ssim_mean``, ``mask_ssim_median`` and ``mask_ssim_share_ok`` (share at
        least ``OUTLINE_KEPT_SSIM``), and the medians ``hue_shift_deg`` (mean stain hue, end
        minus start, the short way round) and ``area_shift_points`` (cell area in points of
        the image).
    """
    column = classes.index(target)
    n = len(start)
    flipped = int((np.argmax(proba_end, axis=1) == column).sum())
    already = int((np.argmax(proba_start, axis=1) == column).sum())
    ssims = np.array([morphology.mask_ssim(a, b) for a, b in zip(start, end, strict=True)])
    hue = morphology.hue_shift(morphology.stain_hue(start), morphology.stain_hue(end))
    area = (morphology.cell_area(end) - morphology.cell_area(start)) * PERCENT
    low, high = metrics.wilson_interval(flipped, n)
    return {
        "n": n,
        "flipped": flipped / n,
        "flipped_ci": [low, high],
        "already": already / n,
        "mask_ssim_mean": float(ssims.mean()),
        "mask_ssim_median": float(np.median(ssims)),
        "mask_ssim_share_ok": float((ssims >= OUTLINE_KEPT_SSIM).mean()),
        "hue_shift_deg": float(np.nanmedian(hue)) if np.isfinite(hue).any() else float("nan"),
        "area_shift_points": float(np.median(area)),
    }
