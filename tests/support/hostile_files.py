"""Hostile and unusual upload files, each with the outcome decode_image must give it."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from malgan.decode import MAX_PIXELS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Side of the drawn test images: not 64, so that every good case is resized.
SIDE = 48
RED = (220, 20, 20)
BLUE = (20, 20, 220)
GREEN = (30, 200, 40)
# Per-channel tolerance for colours that went through JPEG or a bicubic resize.
JPEG_TOLERANCE = 40
# Declared size of the decompression bomb: 100,000 x 100,000 = 1e10 pixels in 69 bytes.
BOMB_SIDE = 100_000
# The "huge image" case: 10,000 x 10,000 = 1e8 pixels, over MAX_PIXELS (50,000,000).
HUGE_SIDE = 10_000
# EXIF tag of the orientation; 6 means "rotate 90 degrees clockwise to display".
EXIF_ORIENTATION = 0x0112
ROTATE_CW = 6
GOOD_COLOUR = (200, 90, 120)


@dataclass(frozen=True)
class HostileFile:
    """One upload and what decoding it must give.

    Attributes:
        id: Short test id.
        filename: Name the file is uploaded under.
        mime: Its MIME type as a browser would send it.
        data: The bytes.
        error: For a file that must be refused, a substring of the ImageDecodeError reason;
            None for a file that must decode.
        check: For a file that must decode, a function asserting on the uint8 [64, 64, 3] result.
    """

    id: str
    filename: str
    mime: str
    data: bytes
    error: str | None = None
    check: Callable[[np.ndarray], None] | None = None


def encode(img: Image.Image, fmt: str, **save_args: object) -> bytes:
    """The bytes of ``img`` saved in ``fmt``."""
    buffer = io.BytesIO()
    img.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body and CRC."""
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def one_bit_png(width: int, height: int, rows: bytes | None = None) -> bytes:
    """A black 1-bit PNG written by hand: a huge image costs only its compressed size."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(rows if rows is not None else row * height, 9)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def good_cell_png() -> bytes:
    """A plain RGB cell that every path must accept (the companion of each hostile upload)."""
    img = Image.new("RGB", (64, 64), (0, 0, 0))
    img.paste(GOOD_COLOUR, (8, 8, 56, 56))
    return encode(img, "PNG")


def noise(seed: int = 0, side: int = SIDE) -> Image.Image:
    """An RGB noise image (noise keeps encoders from compressing it to nothing)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


# Checks of decoded arrays.


def close(pixel: np.ndarray, colour: tuple[int, int, int], tol: int = JPEG_TOLERANCE) -> bool:
    """Whether an RGB pixel is within ``tol`` of ``colour`` on every channel."""
    return bool(np.all(np.abs(pixel.astype(int) - np.array(colour)) <= tol))


def _check_16bit(arr: np.ndarray) -> None:
    # A horizontal 0..65535 ramp: grey, scaled by its range to the full 0..255.
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    assert arr[:, 0].max() <= 5 and arr[:, -1].min() >= 250
    assert (np.diff(arr[32, :, 0].astype(int)) >= 0).all()


def _check_grayscale(arr: np.ndarray) -> None:
    assert (arr == 77).all()


def _check_rgba(arr: np.ndarray) -> None:
    # Left half transparent (composited on black), right half opaque green.
    assert (arr[:, :28] == 0).all()
    assert all(close(arr[r, c], GREEN, 2) for r in (0, 32, 63) for c in (36, 63))


def _check_palette(arr: np.ndarray) -> None:
    assert close(arr[5, 5], RED, 2) and close(arr[60, 60], BLUE, 2)


def _check_cmyk(arr: np.ndarray) -> None:
    # CMYK (0, 255, 255, 0) is pure red.
    assert close(arr[32, 32], (255, 0, 0))


def _check_exif(arr: np.ndarray) -> None:
    # Stored 96 x 64 with red left and blue right; displayed rotated clockwise: red on top.
    assert close(arr[3, 32], RED) and close(arr[-4, 32], BLUE)


def _check_first_frame(arr: np.ndarray) -> None:
    assert (arr == (255, 0, 0)).all()


def _check_one_pixel(arr: np.ndarray) -> None:
    assert (arr == (12, 200, 99)).all()


# The cases.


def _truncated_png() -> bytes:
    data = encode(noise(1), "PNG")
    return data[: len(data) // 2]


def _corrupt_jpeg() -> bytes:
    # Zeroing the start-of-scan header leaves a JPEG whose header parses but whose data cannot.
    data = bytearray(encode(noise(2), "JPEG", quality=90))
    sos = data.find(b"\xff\xda")
    data[sos + 2 : sos + 14] = bytes(12)
    return bytes(data)


def _bomb() -> bytes:
    ihdr = struct.pack(">IIBBBBB", BOMB_SIDE, BOMB_SIDE, 1, 0, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(bytes(100)))
        + png_chunk(b"IEND", b"")
    )


def _png16() -> bytes:
    ramp = np.tile(np.linspace(0, 65535, SIDE).astype(np.uint16), (SIDE, 1))
    img = Image.fromarray(ramp)
    assert img.mode == "I;16"
    return encode(img, "PNG")


def _rgba() -> bytes:
    img = Image.new("RGBA", (SIDE, SIDE), (*GREEN, 255))
    img.paste((255, 0, 0, 0), (0, 0, SIDE // 2, SIDE))
    return encode(img, "PNG")


def _palette() -> bytes:
    img = Image.new("RGB", (SIDE, SIDE), RED)
    img.paste(BLUE, (SIDE // 2, SIDE // 2, SIDE, SIDE))
    return encode(img.convert("P", palette=Image.Palette.ADAPTIVE, colors=4), "PNG")


def _exif_rotated() -> bytes:
    img = Image.new("RGB", (96, 64), RED)
    img.paste(BLUE, (48, 0, 96, 64))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_CW
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def _two_frames(fmt: str) -> bytes:
    first = Image.new("RGB", (32, 32), (255, 0, 0))
    second = Image.new("RGB", (32, 32), (0, 0, 255))
    extra = {"duration": 100, "loop": 0} if fmt == "GIF" else {}
    return encode(first, fmt, save_all=True, append_images=[second], **extra)


def _pdf() -> bytes:
    return encode(Image.new("RGB", (32, 32), RED), "PDF")


@cache
def hostile_files() -> tuple[HostileFile, ...]:
    """Every case, built once per process (the huge PNG takes a tenth of a second)."""
    too_many = f"over the limit of {MAX_PIXELS} (possible decompression bomb)"
    return (
        HostileFile("empty", "empty.png", "image/png", b"", error="empty file"),
        HostileFile(
            "text_as_png",
            "notes.png",
            "image/png",
            b"Patient notes\nSlide 4: thin smear, 100x oil.\n" * 20,
            error="is not an image Pillow can read (looks like text)",
        ),
        HostileFile(
            "truncated_png", "cut.png", "image/png", _truncated_png(), error="is truncated"
        ),
        HostileFile(
            "corrupt_jpeg",
            "broken.jpg",
            "image/jpeg",
            _corrupt_jpeg(),
            error="is corrupt (broken data stream",
        ),
        HostileFile(
            "decompression_bomb",
            "bomb.png",
            "image/png",
            _bomb(),
            error=f"has {BOMB_SIDE * BOMB_SIDE} pixels, {too_many}",
        ),
        HostileFile("png_16bit", "deep.png", "image/png", _png16(), check=_check_16bit),
        HostileFile(
            "grayscale",
            "grey.png",
            "image/png",
            encode(Image.new("L", (SIDE, SIDE), 77), "PNG"),
            check=_check_grayscale,
        ),
        HostileFile("rgba", "alpha.png", "image/png", _rgba(), check=_check_rgba),
        HostileFile("palette", "palette.png", "image/png", _palette(), check=_check_palette),
        HostileFile(
            "cmyk_jpeg",
            "print.jpg",
            "image/jpeg",
            encode(Image.new("CMYK", (SIDE, SIDE), (0, 255, 255, 0)), "JPEG", quality=95),
            check=_check_cmyk,
        ),
        HostileFile("exif_rotated", "phone.jpg", "image/jpeg", _exif_rotated(), check=_check_exif),
        HostileFile(
            "gif_multiframe",
            "anim.gif",
            "image/gif",
            _two_frames("GIF"),
            check=_check_first_frame,
        ),
        HostileFile(
            "tiff_multiframe",
            "stack.tif",
            "image/tiff",
            _two_frames("TIFF"),
            check=_check_first_frame,
        ),
        HostileFile(
            "one_pixel",
            "dot.png",
            "image/png",
            encode(Image.new("RGB", (1, 1), (12, 200, 99)), "PNG"),
            check=_check_one_pixel,
        ),
        HostileFile(
            "huge_10000",
            "huge.png",
            "image/png",
            one_bit_png(HUGE_SIDE, HUGE_SIDE),
            error=f"has {HUGE_SIDE * HUGE_SIDE} pixels, {too_many}",
        ),
        HostileFile("pdf", "scan.pdf", "application/pdf", _pdf(), error="is a PDF document"),
    )
