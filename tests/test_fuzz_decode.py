"""Fuzzing decode_image: random bytes and damaged PNG, JPEG, GIF, TIFF, BMP and WebP files.

Whatever the bytes, decode_image either returns a uint8 [64, 64, 3] array or raises
ImageDecodeError; any other exception is a bug. The four tests together run at least
MIN_TOTAL_EXAMPLES generated inputs; each prints its count (visible with ``pytest -s``) and
records it as the ``fuzz_examples`` property (in ``--junitxml`` reports).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from malgan.decode import IMG_SIZE, decode_image
from malgan.errors import ImageDecodeError

MIN_TOTAL_EXAMPLES = 10_000
# Pillow warns about the damage it works around (odd TIFF tags, corrupt EXIF); that is expected.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")
# Generated inputs per test; they add up to at least MIN_TOTAL_EXAMPLES.
EXAMPLES = {
    "random_bytes": 2_000,
    "magic_prefixed": 1_500,
    "mutated": 4_000,
    "header_fields": 2_500,
}
# A small pixel limit keeps every example cheap: a header claiming millions of pixels is refused
# before decoding (the limit itself is tested in test_reliability_uploads.py).
FUZZ_MAX_PIXELS = 1 << 18
MAX_RANDOM_BYTES = 2048
MAX_MUTATIONS = 8
# Signatures that route random bytes into each format's parser.
MAGICS = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
    b"BM",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"RIFF\x00\x00\x00\x00WEBPVP8X",
    b"%PDF-1.4",
    b"\x00\x00\x01\x00",  # ICO
    b"8BPS",  # PSD
    b"P6\n",  # PPM
)
FUZZ_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


def encode(img: Image.Image, fmt: str, **save_args: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def _noise(width: int = 12, height: int = 10, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@cache
def seed_files() -> dict[str, bytes]:
    """Small valid files of every format and several encodings, the material of mutations."""
    rgb = _noise()
    second = _noise(seed=1)
    exif = Image.Exif()
    exif[0x0112] = 6
    ramp = Image.fromarray(np.arange(120, dtype=np.uint16).reshape(10, 12) * 500)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((12, 10)))
    return {
        "png_rgb": encode(rgb, "PNG"),
        "png_palette": encode(rgb.convert("P"), "PNG", transparency=0),
        "png_rgba": encode(rgba, "PNG"),
        "png_16bit": encode(ramp, "PNG"),
        "png_gray": encode(rgb.convert("L"), "PNG"),
        "jpeg_baseline": encode(rgb, "JPEG", quality=90),
        "jpeg_progressive": encode(rgb, "JPEG", progressive=True),
        "jpeg_cmyk": encode(rgb.convert("CMYK"), "JPEG"),
        "jpeg_exif": encode(rgb, "JPEG", exif=exif.tobytes()),
        "gif_single": encode(rgb, "GIF"),
        "gif_multi": encode(rgb, "GIF", save_all=True, append_images=[second], duration=50),
        "tiff_raw": encode(rgb, "TIFF"),
        "tiff_lzw": encode(rgb, "TIFF", compression="tiff_lzw"),
        "tiff_multi": encode(rgb, "TIFF", save_all=True, append_images=[second]),
        "tiff_16bit": encode(ramp, "TIFF"),
        "bmp_rgb": encode(rgb, "BMP"),
        "bmp_palette": encode(rgb.convert("P"), "BMP"),
        "bmp_1bit": encode(rgb.convert("1"), "BMP"),
        "webp_lossy": encode(rgb, "WEBP"),
        "webp_lossless": encode(rgb, "WEBP", lossless=True),
        "webp_alpha": encode(rgba, "WEBP"),
    }


@dataclass(frozen=True)
class Field:
    """A numeric header field: where it is and how it is stored."""

    seed: str
    offset: int
    size: int
    order: str  # "big" or "little"
    png_crc: bool = False  # the field lives in the IHDR chunk, whose CRC can be refreshed


def _png_fields(seed: str) -> list[Field]:
    # IHDR: width, height, bit depth, colour type, compression, filter, interlace.
    spots = ((16, 4), (20, 4), (24, 1), (25, 1), (26, 1), (27, 1), (28, 1))
    return [Field(seed, o, n, "big", png_crc=True) for o, n in spots]


def _jpeg_fields(seed: str, data: bytes) -> list[Field]:
    fields = []
    sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
    # Precision, height, width, component count, first component's sampling and table.
    for o, n in ((2, 2), (4, 1), (5, 2), (7, 2), (9, 1), (11, 1), (12, 1)):
        fields.append(Field(seed, sof + o, n, "big"))
    sos = data.find(b"\xff\xda")
    fields += [Field(seed, sos + 2, 2, "big"), Field(seed, sos + 4, 1, "big")]
    for marker in (b"\xff\xdb", b"\xff\xc4"):
        at = data.find(marker)
        fields += [Field(seed, at + 2, 2, "big"), Field(seed, at + 4, 1, "big")]
    return fields


def _gif_fields(seed: str, data: bytes) -> list[Field]:
    fields = [Field(seed, 6, 2, "little"), Field(seed, 8, 2, "little"), Field(seed, 10, 1, "big")]
    table = 3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0
    at = 13 + table
    while at < len(data) and data[at] == 0x21:  # skip extension blocks
        at += 2
        while data[at]:
            at += data[at] + 1
        at += 1
    # Image descriptor: left, top, width, height, flags; then the LZW minimum code size.
    for o, n in ((1, 2), (3, 2), (5, 2), (7, 2), (9, 1), (10, 1)):
        fields.append(Field(seed, at + o, n, "little"))
    return fields


def _tiff_fields(seed: str, data: bytes) -> list[Field]:
    fields = [Field(seed, 4, 4, "little")]
    ifd = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, ifd)[0]
    fields.append(Field(seed, ifd, 2, "little"))
    for i in range(count):
        entry = ifd + 2 + 12 * i
        # Type, count and value (or offset) of every tag.
        fields += [
            Field(seed, entry + 2, 2, "little"),
            Field(seed, entry + 4, 4, "little"),
            Field(seed, entry + 8, 4, "little"),
        ]
    return fields


def _bmp_fields(seed: str) -> list[Field]:
    # File size, pixel offset, header size, width, height, planes, bits, compression,
    # image size, colours used.
    spots = ((2, 4), (10, 4), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2), (30, 4), (34, 4))
    return [Field(seed, o, n, "little") for o, n in (*spots, (46, 4))]


def _webp_fields(seed: str, data: bytes) -> list[Field]:
    fields = [Field(seed, 4, 4, "little"), Field(seed, 16, 4, "little")]
    kind = data[12:16]
    if kind == b"VP8 ":
        fields += [Field(seed, 26, 2, "little"), Field(seed, 28, 2, "little")]
    elif kind == b"VP8L":
        fields += [Field(seed, 20, 1, "little"), Field(seed, 21, 4, "little")]
    elif kind == b"VP8X":
        fields += [Field(seed, 20, 1, "little"), Field(seed, 24, 3, "little")]
        fields.append(Field(seed, 27, 3, "little"))
    return fields


@cache
def header_fields() -> tuple[Field, ...]:
    """The numeric header fields of every seed file."""
    fields: list[Field] = []
    for name, data in seed_files().items():
        kind = name.split("_")[0]
        if kind == "png":
            fields += _png_fields(name)
        elif kind == "jpeg":
            fields += _jpeg_fields(name, data)
        elif kind == "gif":
            fields += _gif_fields(name, data)
        elif kind == "tiff":
            fields += _tiff_fields(name, data)
        elif kind == "bmp":
            fields += _bmp_fields(name)
        else:
            fields += _webp_fields(name, data)
    return tuple(fields)


def check_decode(data: bytes) -> None:
    """The property: an array of the right shape and type, or an ImageDecodeError."""
    try:
        arr = decode_image(data, name="fuzz.bin", max_pixels=FUZZ_MAX_PIXELS)
    except ImageDecodeError as err:
        assert err.name == "fuzz.bin" and err.reason
        return
    assert arr.shape == (IMG_SIZE, IMG_SIZE, 3)
    assert arr.dtype == np.uint8
    assert arr.flags["C_CONTIGUOUS"]


def apply_mutation(data: bytearray, op: str, position: int, value: int) -> None:
    """One damage to a file: flip, overwrite, insert or delete a byte, or cut the file."""
    at = position % (len(data) + 1)
    if op == "truncate":
        del data[at:]
    elif op == "insert":
        data[at:at] = bytes([value])
    elif data and at < len(data):
        if op == "flip":
            data[at] ^= 1 << (value % 8)
        elif op == "set":
            data[at] = value
        elif op == "delete":
            del data[at]


mutations = st.lists(
    st.tuples(
        st.sampled_from(("flip", "set", "insert", "delete", "truncate")),
        st.integers(0, 1 << 16),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=MAX_MUTATIONS,
)


def field_value(size: int) -> st.SearchStrategy[int]:
    """Values of a field of ``size`` bytes, with its edges drawn often."""
    top = (1 << (8 * size)) - 1
    edges = sorted({0, 1, 2, 3, 255 & top, top // 2, top // 2 + 1, top - 1, top})
    return st.one_of(st.sampled_from(edges), st.integers(0, top))


@st.composite
def damaged_header(draw: st.DrawFn) -> bytes:
    field = draw(st.sampled_from(header_fields()))
    data = bytearray(seed_files()[field.seed])
    value = draw(field_value(field.size))
    data[field.offset : field.offset + field.size] = value.to_bytes(field.size, field.order)
    if field.png_crc and draw(st.booleans()):
        # A valid CRC lets the damaged IHDR past the chunk check, into the decoder.
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    if draw(st.booleans()):
        for op, position, byte in draw(mutations):
            apply_mutation(data, op, position, byte)
    return bytes(data)


def run_counted(
    name: str, strategy: st.SearchStrategy[bytes], record_property: Callable[[str, object], None]
) -> None:
    """Runs check_decode over EXAMPLES[name] generated inputs and reports the count."""
    seen = [0]

    @settings(max_examples=EXAMPLES[name], **FUZZ_SETTINGS)
    @given(strategy)
    def fuzz(data: bytes) -> None:
        seen[0] += 1
        check_decode(data)

    fuzz()
    print(f"fuzz {name}: {seen[0]} inputs")
    record_property("fuzz_examples", seen[0])
    assert seen[0] >= EXAMPLES[name]


def test_examples_add_up() -> None:
    assert sum(EXAMPLES.values()) >= MIN_TOTAL_EXAMPLES


def test_seed_files_decode() -> None:
    # The mutations start from files that are valid, so damage is what the fuzzing exercises.
    for name, data in seed_files().items():
        assert decode_image(data, name=name).shape == (IMG_SIZE, IMG_SIZE, 3), name
    assert len(header_fields()) > 100


def test_fuzz_random_bytes(record_property) -> None:
    run_counted("random_bytes", st.binary(max_size=MAX_RANDOM_BYTES), record_property)


def test_fuzz_magic_prefixed(record_property) -> None:
    prefixed = st.builds(
        lambda magic, tail: magic + tail,
        st.sampled_from(MAGICS),
        st.binary(max_size=MAX_RANDOM_BYTES),
    )
    run_counted("magic_prefixed", prefixed, record_property)


@st.composite
def mutated_file(draw: st.DrawFn) -> bytes:
    data = bytearray(seed_files()[draw(st.sampled_from(sorted(seed_files())))])
    for op, position, value in draw(mutations):
        apply_mutation(data, op, position, value)
    return bytes(data)


def test_fuzz_mutated_files(record_property) -> None:
    run_counted("mutated", mutated_file(), record_property)


def test_fuzz_header_fields(record_property) -> None:
    run_counted("header_fields", damaged_header(), record_property)
