"""Decoding any image file into the uint8 RGB cell that every part of malgan uses."""

from __future__ import annotations

import codecs
import io
import logging
import os
import re
import struct
import threading
import tomllib
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import PIL
from PIL import Image, ImageOps

from malgan.errors import DataError, ImageDecodeError

logger = logging.getLogger(__name__)

# Side of the square cells, in pixels.
IMG_SIZE = 64
MAX_PIXELS = 50_000_000
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}
)

# Rows of a 16/32-bit image scaled to 8 bits at a time (bounds the float64 working copy).
SCALE_CHUNK_ROWS = 256
# Bytes inspected to tell text from binary data.
TEXT_SNIFF_BYTES = 1024
# Share of control characters above which a UTF-8 sample is not considered text.
TEXT_MAX_CONTROL_SHARE = 0.05

_PDF_MAGIC = b"%PDF"
# Signatures long enough not to occur at the start of a text file (so not BMP's "BM").
_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
_BOMB_LIMIT = re.compile(r"limit of (\d+) pixels")
# The pixel limit in an app's Streamlit config file, e.g. "# malgan.maxPixels = 50_000_000".
_CONFIG_MAX_PIXELS = re.compile(r"^[ \t]*#[ \t]*malgan\.maxPixels[ \t]*=(.*)$", re.MULTILINE)
_TEXT_CONTROLS_ALLOWED = frozenset("\t\n\r\f\v")
_OPEN_LOCK = threading.Lock()
# Exceptions Pillow raises for bad input; none of them may escape open_image.
_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, TypeError, IndexError, struct.error, EOFError)


def _looks_like_text(data: bytes) -> bool:
    sample = data[:TEXT_SNIFF_BYTES]
    if b"\x00" in sample:
        return False
    try:
        # An incremental decoder tolerates a multi-byte character cut at the end of the sample.
        text = codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    controls = sum(1 for c in text if ord(c) < 32 and c not in _TEXT_CONTROLS_ALLOWED)
    return controls <= TEXT_MAX_CONTROL_SHARE * max(len(text), 1)


def _image_signature(data: bytes) -> str | None:
    for magic, kind in _IMAGE_MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _source_label(source: object, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    if isinstance(source, str | os.PathLike):
        return str(Path(source))
    return str(getattr(source, "name", "<file object>"))


def _read_source(
    source: str | os.PathLike[str] | bytes | BinaryIO, name: str | None
) -> tuple[bytes, str]:
    label = _source_label(source, name)
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), label
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            return path.read_bytes(), label
        except FileNotFoundError:
            raise ImageDecodeError(label, "does not exist") from None
        except IsADirectoryError:
            raise ImageDecodeError(label, "is a folder, not an image file") from None
        except OSError as err:
            raise ImageDecodeError(label, f"cannot be read ({err.strerror or err})") from None
    try:
        data = source.read()
    except OSError as err:
        raise ImageDecodeError(label, f"cannot be read ({err})") from None
    if not isinstance(data, bytes | bytearray):
        raise ImageDecodeError(label, "is not a binary file object (open it with 'rb')")
    return bytes(data), label


def _bomb_reason(message: str, max_pixels: int) -> str:
    pixels = _BOMB_PIXELS.search(message)
    limit = _BOMB_LIMIT.search(message)
    if pixels is None:
        return "has too many pixels (possible decompression bomb)"
    n = int(pixels.group(1))
    allowed = min(max_pixels, int(limit.group(1))) if limit else max_pixels
    return f"has {n} pixels, over the limit of {allowed} (possible decompression bomb)"


def _pillow_reason(err: BaseException) -> str:
    detail = str(err).strip() or type(err).__name__
    lowered = detail.lower()
    if isinstance(err, EOFError) or "truncated" in lowered:
        return "is truncated"
    if "not available" in lowered or "not supported" in lowered or "unsupported" in lowered:
        return f"uses an unsupported format or encoding ({detail})"
    return f"is corrupt ({detail})"


def open_image(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Opens an image and loads its pixels, turning every failure into an ImageDecodeError.

    Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) still applies, so the
    effective limit is the smaller of the two.

    Args:
        source: A path, the file's bytes, or a binary file object (read to its end).
        name: Name used in error messages; defaults to the path or the file object's name.
        max_pixels: Largest width * height accepted, checked before the pixels are decoded.

    Returns:
        The loaded image (first frame current for multi-frame files).

    Raises:
        ImageDecodeError: With a message naming the file and the reason: empty file, PDF, text or
            another non-image, truncated, corrupt, too many pixels, or unsupported encoding.
    """
    data, label = _read_source(source, name)
    if not data:
        raise ImageDecodeError(label, "empty file")
    if data.startswith(_PDF_MAGIC):
        raise ImageDecodeError(label, "is a PDF document, not an image")
    try:
        # The warning filters are process-wide: the lock keeps concurrent opens from restoring
        # each other's filters. Only the header is parsed here, so the lock is held briefly.
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        pixels = img.size[0] * img.size[1]
        if pixels > max_pixels:
            raise ImageDecodeError(
                label,
                f"has {pixels} pixels, over the limit of {max_pixels} "
                "(possible decompression bomb)",
            )
        img.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(label, _bomb_reason(str(err), max_pixels)) from None
    except PIL.UnidentifiedImageError:
        kind = _image_signature(data)
        if kind is not None:
            reason = f"is corrupt (a {kind} file whose header cannot be read, possibly truncated)"
        elif _looks_like_text(data):
            reason = "is not an image Pillow can read (looks like text)"
        else:
            reason = "is not an image Pillow can read (unknown format)"
        raise ImageDecodeError(label, reason) from None
    except _PILLOW_ERRORS as err:
        raise ImageDecodeError(label, _pillow_reason(err)) from None
    return img


def _scaled_to_8bit(img: Image.Image) -> Image.Image:
    """Scales a 16/32-bit integer or float image by its own min..max range to mode L.

    A constant (or all non-finite) image has no range to scale and becomes black, the NIH
    background. The float64 arithmetic runs over SCALE_CHUNK_ROWS rows at a time, so a large
    image costs its own array and the 8-bit result, not several float64 copies of itself.
    """
    values = np.asarray(img)  # [H, W] in the image's own integer or float type
    finite = np.isfinite(values) if values.dtype.kind == "f" else None
    out = np.zeros(values.shape, dtype=np.uint8)
    if finite is not None and not finite.any():
        return Image.fromarray(out, mode="L")
    low = float(values.min(where=finite, initial=np.inf) if finite is not None else values.min())
    high = float(values.max(where=finite, initial=-np.inf) if finite is not None else values.max())
    if high > low:
        gain = 255.0 / (high - low)
        for start in range(0, len(values), SCALE_CHUNK_ROWS):
            rows = slice(start, start + SCALE_CHUNK_ROWS)
            scaled = (values[rows].astype(np.float64) - low) * gain
            if finite is not None:
                scaled[~finite[rows]] = 0.0
            out[rows] = np.rint(scaled)
    return Image.fromarray(out, mode="L")


def _composited_on_black(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        return _scaled_to_8bit(img).convert("RGB")
    if mode == "La":
        # Pillow has no La -> RGBA path; La is LA with premultiplied alpha, already on black.
        return img.getchannel("L").convert("RGB")
    # A tRNS colour (P, L, RGB) is transparency too.
    if "A" in mode or "a" in mode or "transparency" in img.info:
        return _composited_on_black(img)
    return img if mode == "RGB" else img.convert("RGB")


def prepare_image(img: Image.Image, *, size: int = IMG_SIZE) -> np.ndarray:
    """Turns any Pillow image into the uint8 RGB array every part of malgan uses.

    Steps: first frame of a multi-frame image; EXIF orientation; conversion to RGB (16/32-bit
    integer and float images are scaled by their own value range, a constant one becomes black;
    transparency is composited on black, the NIH background; CMYK, YCbCr, 1-bit, L and palette
    images are converted); then a plain bicubic resize (antialiased when shrinking, no padding:
    NIH cells are roughly square) to ``size`` x ``size``.

    Args:
        img: A loaded Pillow image, e.g. from open_image.
        size: Side of the output in pixels.

    Returns:
        A C-contiguous uint8 array of shape [size, size, 3].

    Raises:
        ValueError: If size is not a positive integer.
        ImageDecodeError: If the first frame cannot be read or the mode cannot be converted.
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    label = str(getattr(img, "filename", "") or "<image>")
    try:
        # tell() rather than n_frames: counting the frames of a GIF means reading all of them.
        if img.tell() != 0:
            img.seek(0)
        img.load()
    except _PILLOW_ERRORS as err:
        raise ImageDecodeError(label, _pillow_reason(err)) from None
    try:
        oriented = ImageOps.exif_transpose(img)
    except _PILLOW_ERRORS as err:
        # A malformed EXIF block should not cost the pixels; the image is used as stored.
        logger.warning("Ignoring unreadable EXIF orientation of %s: %s", label, err)
        oriented = img
    try:
        rgb = _to_rgb(oriented)
    except _PILLOW_ERRORS as err:
        raise ImageDecodeError(label, f"has an unsupported pixel mode {img.mode} ({err})") from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    out = np.array(rgb, dtype=np.uint8, order="C")
    return out.reshape(size, size, 3)


def decode_image(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    name: str | None = None,
    size: int = IMG_SIZE,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Opens and prepares one image (open_image followed by prepare_image).

    Args:
        source: A path, the file's bytes, or a binary file object.
        name: Name used in error messages.
        size: Side of the output in pixels.
        max_pixels: Largest width * height accepted.

    Returns:
        uint8 [size, size, 3] RGB.

    Raises:
        ImageDecodeError: If the image cannot be decoded or converted.
    """
    with open_image(source, name=name, max_pixels=max_pixels) as img:
        try:
            return prepare_image(img, size=size)
        except ImageDecodeError as err:
            raise ImageDecodeError(_source_label(source, name), err.reason) from None


def max_pixels_from_config(path: str | os.PathLike[str], *, default: int = MAX_PIXELS) -> int:
    """Reads a decoding pixel limit from a Streamlit config file.

    The limit is the line ``# malgan.maxPixels = <integer>`` (TOML integer syntax, so
    ``50_000_000`` works). It is a comment because Streamlit logs a warning at every start for
    options it does not define, a ``[malgan]`` table included; as a comment it sits next to
    ``server.maxUploadSize`` without Streamlit reading it.

    Args:
        path: The config file, e.g. the app's ``.streamlit/config.toml``.
        default: The limit when the file or the line is absent.

    Returns:
        The largest width * height to decode, for open_image and decode_image.

    Raises:
        DataError: If the file cannot be read, the line appears more than once, or its value is
            not a positive integer at most Pillow's own guard (``PIL.Image.MAX_IMAGE_PIXELS``),
            which applies whatever the setting.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"Config file {path} cannot be read ({err})") from None
    found = _CONFIG_MAX_PIXELS.findall(text)
    if not found:
        return default
    if len(found) > 1:
        raise DataError(f"{path} sets malgan.maxPixels {len(found)} times; keep one line")
    raw = found[0].strip()
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{path}: malgan.maxPixels must be a positive integer, got {raw!r}")
    guard = Image.MAX_IMAGE_PIXELS
    if guard is not None and value > guard:
        raise DataError(
            f"{path}: malgan.maxPixels = {value} is above Pillow's decompression-bomb guard of "
            f"{guard} pixels, which would still apply; use at most {guard}"
        )
    return value
