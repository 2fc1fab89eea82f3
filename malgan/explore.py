"""Latent edits and interpolation paths for the explorer pages (pure numpy on malgan.latent)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from malgan import latent

# Sliders show at most this many principal directions (the strongest first).
MAX_PRINCIPAL = 5
# The infection direction is a unit vector; for z ~ N(0, I) the projection of z on any unit
# vector has standard deviation 1, so one sigma along it is one unit of length.
INFECTION_SIGMA = 1.0
# Slider range, in sigma units, of every direction.
SIGMA_RANGE = 3.0
METHODS = ("slerp", "lerp")
MIN_STEPS = 2
MAX_STEPS = 32


@dataclass(frozen=True)
class Directions:
    """The edit directions of one generator for one class.

    Attributes:
        principal: float32 [k, z_dim] unit rows, strongest first (k may be 0).
        sigmas: float32 [k] standard deviation of z along each principal row.
        infection: float32 [z_dim] unit vector that raises P(parasitized), or None.
    """

    principal: np.ndarray
    sigmas: np.ndarray
    infection: np.ndarray | None

    @property
    def count(self) -> int:
        """Number of principal directions."""
        return len(self.principal)


def directions_for(
    directions: Mapping[str, Any], label: str, *, limit: int = MAX_PRINCIPAL
) -> Directions:
    """Pick the directions that edit cells of one class.

    A single generator carries one set (``{"principal", "sigmas", "infection": {class: v}}``);
    a per-class set of generators carries one such dict per class, and the class's own member
    applies.

    Args:
        directions: A generator's ``.directions``.
        label: The class being edited.
        limit: Keep at most this many principal directions.

    Returns:
        The class's directions, with at most ``limit`` principal rows.
    """
    own = directions if "principal" in directions else directions.get(label, {})
    principal = np.asarray(own.get("principal", np.zeros((0, 0))), np.float32)
    sigmas = np.asarray(own.get("sigmas", np.zeros(0)), np.float32)
    count = min(limit, len(principal), len(sigmas))
    infection = (own.get("infection") or {}).get(label)
    if infection is not None:
        infection = np.asarray(infection, np.float32)
        if infection.ndim != 1 or not np.isfinite(infection).all() or not infection.any():
            infection = None
    return Directions(principal=principal[:count], sigmas=sigmas[:count], infection=infection)


def edit_latent(
    z: np.ndarray, directions: Directions, amounts: Sequence[float], infection: float = 0.0
) -> np.ndarray:
    """Move a latent along principal directions and the infection direction.

    Args:
        z: float32 [z_dim] start latent.
        directions: The class's directions.
        amounts: One step per principal direction, in sigma units (fewer are allowed; missing
            ones count as 0).
        infection: Step along the infection direction, in sigma units (ignored without one).

    Returns:
        float32 [z_dim] edited latent.

    Raises:
        ValueError: For more amounts than directions, or a latent of the wrong length.
    """
    z = np.asarray(z, np.float32)
    if len(amounts) > directions.count:
        raise ValueError(f"Got {len(amounts)} amounts for {directions.count} directions.")
    if directions.count and directions.principal.shape[1] != z.shape[-1]:
        raise ValueError(
            f"The directions have {directions.principal.shape[1]} values, the latent {z.shape[-1]}."
        )
    out = z.astype(np.float64)
    for row, sigma, amount in zip(directions.principal, directions.sigmas, amounts, strict=False):
        out = latent.move(out, row, float(amount) * float(sigma))
    if directions.infection is not None and infection:
        out = latent.move(out, directions.infection, float(infection) * INFECTION_SIGMA)
    return out.astype(np.float32)


def path_t(steps: int) -> np.ndarray:
    """Evenly spaced positions in [0, 1], both ends included: float64 [steps]."""
    if steps < MIN_STEPS:
        raise ValueError(f"steps must be >= {MIN_STEPS}, got {steps}")
    return np.linspace(0.0, 1.0, steps)


def class_weights_path(
    classes: Sequence[str], label_a: str, label_b: str, steps: int
) -> np.ndarray:
    """Class weights that move linearly from one class to another.

    Args:
        classes: The generator's classes, in input order.
        label_a: Class at t = 0.
        label_b: Class at t = 1.
        steps: Number of points.

    Returns:
        float32 [steps, len(classes)], each row summing to 1.
    """
    classes = list(classes)
    for label in (label_a, label_b):
        if label not in classes:
            raise ValueError(f"Unknown class {label!r}; the generator has {classes}.")
    t = path_t(steps)[:, None]  # [steps, 1]
    start = np.eye(len(classes))[classes.index(label_a)]
    end = np.eye(len(classes))[classes.index(label_b)]
    return ((1.0 - t) * start + t * end).astype(np.float32)


def latent_path(z_a: np.ndarray, z_b: np.ndarray, steps: int, method: str = "slerp") -> np.ndarray:
    """Latents from ``z_a`` to ``z_b``: float32 [steps, z_dim] (see ``latent.interpolate``)."""
    return latent.interpolate(
        np.asarray(z_a, np.float32), np.asarray(z_b, np.float32), steps, method=method
    ).astype(np.float32)


def can_cross_classes(generator: Any) -> bool:
    """Whether a generator can morph a cell of one class into the other (conditional models)."""
    return bool(getattr(generator, "conditional", False)) and hasattr(generator, "generate_mix")


def interpolate_cells(
    generator: Any,
    z_a: np.ndarray,
    z_b: np.ndarray,
    label_a: str,
    label_b: str,
    steps: int,
    method: str = "slerp",
) -> tuple[np.ndarray, np.ndarray]:
    """Frames of a morph from one cell to another.

    The latent follows ``method`` and, with a conditional generator, the class weights move
    linearly from ``label_a`` to ``label_b``.

    Args:
        generator: A ``runtime.Generator`` or ``runtime.GeneratorSet``.
        z_a: float32 [z_dim] latent of the first cell.
        z_b: float32 [z_dim] latent of the second cell.
        label_a: Class of the first cell.
        label_b: Class of the second cell.
        steps: Number of frames, both cells included.
        method: ``"slerp"`` or ``"lerp"``.

    Returns:
        ``(t float64 [steps], frames uint8 [steps, 64, 64, 3])``.

    Raises:
        ValueError: When the classes differ and the generator is not conditional.
    """
    t = path_t(steps)
    z = latent_path(z_a, z_b, steps, method)
    if label_a == label_b:
        return t, generator.generate(z, label_a)
    if not can_cross_classes(generator):
        raise ValueError(
            f"{generator.display_name} has one generator per class, so both cells must be of "
            "the same class."
        )
    weights = class_weights_path(generator.classes, label_a, label_b, steps)
    return t, generator.generate_mix(z, weights)
