"""What a cell looks like in numbers: its mask, its area and its mean stain hue (numpy only)."""

from __future__ import annotations

import numpy as np

from malgan import metrics

# Cells sit on a black background: a pixel whose brightest channel is above this is cell.
FOREGROUND_LEVEL = 20
MASK_ON = 255
DEGREES = 360.0


def cell_mask(images: np.ndarray) -> np.ndarray:
    """The cell's pixels of uint8 cells [..., S, S, 3]: bool [..., S, S]."""
    return np.asarray(images).max(axis=-1) > FOREGROUND_LEVEL


def cell_area(images: np.ndarray) -> np.ndarray:
    """Share of the image the cell covers, in [0, 1]: float64 [...] of cells [..., S, S, 3]."""
    return cell_mask(images).mean(axis=(-1, -2))


def pixel_hue(images: np.ndarray) -> np.ndarray:
    """HSV hue of each pixel in degrees [0, 360): float64 [..., S, S] (0 for grey pixels)."""
    rgb = np.asarray(images, np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    top = rgb.max(axis=-1)
    span = top - rgb.min(axis=-1)
    safe = np.where(span > 0, span, 1.0)
    hue = np.where(
        top == r,
        ((g - b) / safe) % 6.0,
        np.where(top == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    return np.where(span > 0, hue * 60.0, 0.0) % DEGREES


def stain_hue(images: np.ndarray) -> np.ndarray:
    """Mean stain hue of each cell, in degrees [0, 360): float64 [...] of cells [..., S, S, 3].

    Hue is an angle, so the mean is circular (the angle of the mean unit vector), weighted by
    each cell pixel's chroma (max - min channel) so that grey pixels count for nothing. A cell
    without a coloured pixel gets NaN.
    """
    rgb = np.asarray(images, np.float64)
    chroma = (rgb.max(axis=-1) - rgb.min(axis=-1)) * cell_mask(images)
    angle = np.deg2rad(pixel_hue(images))
    x = (chroma * np.cos(angle)).sum(axis=(-1, -2))
    y = (chroma * np.sin(angle)).sum(axis=(-1, -2))
    with np.errstate(invalid="ignore"):
        mean = np.rad2deg(np.arctan2(y, x)) % DEGREES
    return np.where((x != 0) | (y != 0), mean, np.nan)


def hue_shift(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Signed change of hue in degrees, the short way round the circle: in [-180, 180)."""
    return (np.asarray(end, np.float64) - np.asarray(start, np.float64) + 180.0) % DEGREES - 180.0


def mask_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of the cell masks of two uint8 cells [S, S, 3]: 1 when the outlines agree."""
    return metrics.ssim(cell_mask(a) * np.uint8(MASK_ON), cell_mask(b) * np.uint8(MASK_ON))
