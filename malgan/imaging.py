"""Image grids and file encodings (PNG, GIF, ZIP) for generated cells (numpy + Pillow)."""

from __future__ import annotations

import io
import math
import re
import zipfile
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

GRID_PAD = 2
GIF_FRAME_MS = 120
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_LEN = 120


def make_grid(
    images: np.ndarray, *, ncol: int | None = None, pad: int = GRID_PAD, scale: int = 1
) -> np.ndarray:
    """Tile uint8 images [N, H, W, 3] into one uint8 image, row by row on a black background.

    Args:
        images: uint8 [N, H, W, 3].
        ncol: Columns; defaults to ceil(sqrt(N)).
        pad: Black pixels between cells.
        scale: Integer upscaling of each cell (nearest neighbour) for display.

    Returns:
        uint8 [rows * (H*scale + pad) + pad, ncol * (W*scale + pad) + pad, 3].
    """
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Expected images of shape [N, H, W, 3], got {images.shape}.")
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, _ = images.shape
    ncol = max(1, min(ncol or math.ceil(math.sqrt(max(n, 1))), max(n, 1)))
    nrow = max(1, math.ceil(n / ncol))
    grid = np.zeros((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = img
    return grid


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """A uint8 [H, W, 3] cell enlarged by an integer factor with nearest neighbour."""
    return np.asarray(image, np.uint8).repeat(scale, axis=0).repeat(scale, axis=1)


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 [H, W, 3] image as PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def gif_bytes(frames: np.ndarray, *, frame_ms: int = GIF_FRAME_MS, scale: int = 4) -> bytes:
    """Encode uint8 frames [T, H, W, 3] as a looping GIF (upscaled for viewing)."""
    frames = np.asarray(frames, np.uint8)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"Expected frames of shape [T, H, W, 3], got {frames.shape}.")
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    pil = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    pil[0].save(buf, format="GIF", save_all=True, append_images=pil[1:], duration=frame_ms, loop=0)
    return buf.getvalue()


def safe_name(name: str, *, default: str = "cell") -> str:
    """A file name that cannot leave its folder: no separators, no '..', no hidden files.

    Every run of characters outside ``[A-Za-z0-9._-]`` becomes ``_``; leading dots are removed.
    """
    cleaned = SAFE_NAME.sub("_", str(name)).lstrip(".")
    cleaned = cleaned.replace("..", "_")[:MAX_NAME_LEN]
    return cleaned or default


def _free_path(parts: Sequence[str], files: set[str], folders: set[str]) -> str:
    """The first path of ``parts`` that collides with no earlier entry, and reserve it.

    A folder cannot share its path with a file (extraction would fail), and two entries cannot
    differ only in case (they would overwrite each other on Windows and macOS), so a clashing
    part gets a numeric suffix: ``a.png`` -> ``a_1.png``; a folder ``a`` -> ``a_1``.
    """
    placed: list[str] = []
    for depth, part in enumerate(parts):
        leaf = depth == len(parts) - 1
        stem, dot, ext = part.rpartition(".")
        name, k = part, 1
        while True:
            key = "/".join([*placed, name]).casefold()
            if key not in files and not (leaf and key in folders):
                break
            name = f"{stem}_{k}.{ext}" if leaf and dot and stem else f"{part}_{k}"
            k += 1
        placed.append(name)
    folders.update("/".join(placed[:i]).casefold() for i in range(1, len(placed)))
    files.add("/".join(placed).casefold())
    return "/".join(placed)


def zip_bytes(entries: Iterable[tuple[str, bytes]]) -> bytes:
    """A ZIP archive of ``(relative path, bytes)`` entries, each path segment made safe.

    Every entry extracts inside the archive's folder: segments go through safe_name (no
    separators, no ``..``, no leading dot), and entries whose paths would clash (equal up to
    case, or a file where another entry needs a folder) are renamed with a numeric suffix.
    """
    buf = io.BytesIO()
    files: set[str] = set()
    folders: set[str] = set()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in entries:
            parts = [safe_name(part) for part in str(path).replace("\\", "/").split("/") if part]
            archive.writestr(_free_path(parts or ["file"], files, folders), data)
    return buf.getvalue()


def cells_zip(images: np.ndarray, names: Sequence[str]) -> bytes:
    """A ZIP of uint8 cells [N, H, W, 3] saved as PNG under the given (sanitised) names."""
    return zip_bytes((name, png_bytes(img)) for name, img in zip(names, images, strict=True))
