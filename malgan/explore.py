"""Latent edits and interpolation paths for the explorer pages (numpy, on malgan.latent)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from malgan import latent
from malgan.directions import Directions
from malgan.runtime import CellGenerator

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


def directions_for(
    directions: Mapping[str, Directions], label: str, *, limit: int = MAX_PRINCIPAL
) -> Directions:
    """The directions that edit cells of one class, with at most ``limit`` principal rows.

    Args:
        directions: A generator's ``.directions`` (one ``Directions`` per class).
        label: The class being edited.
        limit: Keep at most this many principal directions.

    Returns:
        The class's directions; none at all for a class the generator does not know.
    """
    own = directions.get(label)
    if own is None:
        return Directions(np.zeros((0, 0), np.float32), np.zeros(0, np.float32), None)
    return own.strongest(limit)


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


def interpolate_cells(
    generator: CellGenerator,
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
        generator: The generator.
        z_a: float32 [z_dim] latent of the first cell.
        z_b: float32 [z_dim] latent of the second cell.
        label_a: Class of the first cell.
        label_b: Class of the second cell.
        steps: Number of frames, both cells included.
        method: ``"slerp"`` or ``"lerp"``.

    Returns:
        ``(t float64 [steps], frames uint8 [steps, img_size, img_size, 3])``.

    Raises:
        ValueError: When the classes differ and the generator is not conditional.
    """
    t = path_t(steps)
    z = latent_path(z_a, z_b, steps, method)
    if label_a == label_b:
        return t, generator.generate(z, label_a)
    if not generator.conditional:
        raise ValueError(
            f"{generator.display_name} has one generator per class, so both cells must be of "
            "the same class."
        )
    weights = class_weights_path(generator.classes, label_a, label_b, steps)
    return t, generator.generate_mix(z, weights)
