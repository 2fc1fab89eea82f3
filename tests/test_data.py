"""Tests of malgan.data: patient keys, splits, decoding, scanning, loading and the cache."""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.fakes import FAKE_JUNK, PARASITE_COLOUR, draw_fake_cell, fake_key, fake_name
from malgan import data, decode
from malgan.data import CLASSES, SPLITS, load_dataset, patient_key, scan_dataset, split_patients
from malgan.decode import IMG_SIZE, decode_image, open_image, prepare_image
from malgan.errors import DataError, ImageDecodeError
from tests.support.paths import SHARED_DATA, SHARED_ORIGINALS, requires_shared

# Files of the default fake tree: 6 patients x 4 cells per class.
FAKE_PATIENTS = 6
FAKE_CELLS = 4
FAKE_PER_CLASS = FAKE_PATIENTS * FAKE_CELLS
REAL_PATIENTS = 180


def png_bytes(img: Image.Image, **save_args: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "PNG", **save_args)
    return buffer.getvalue()


def image_bytes(img: Image.Image, fmt: str, **save_args: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def noise_image(size: tuple[int, int] = (64, 64), seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with no pixel data at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def assert_cell_array(arr: np.ndarray, size: int = IMG_SIZE) -> None:
    assert arr.shape == (size, size, 3)
    assert arr.dtype == np.uint8
    assert arr.flags["C_CONTIGUOUS"]


# Patient keys.


@pytest.mark.parametrize(
    ("filename", "key"),
    [
        ("C100P61ThinF_IMG_20150918_144104_cell_162.png", "C100P61"),
        ("C68P29N_ThinF_IMG_20150819_133236_cell_1.png", "C68P29N"),
        ("C12NThinF_IMG_20150614_124212_cell_10.png", "C12N"),
        ("C1_thinF_IMG_20150604_104722_cell_9.png", "C1"),
    ],
)
def test_patient_key_readme_examples(filename: str, key: str) -> None:
    assert patient_key(filename) == key


@pytest.mark.parametrize(
    ("filename", "key"),
    [
        ("C167P128ReThinF_IMG_20151201_cell_1.png", "C167P128Re"),
        ("c5THIN_cell.png", "c5"),
        ("C2__thinF_x.png", "C2"),
        ("Parasitized/C33P1thinF_IMG_cell_1.png", "C33P1"),
        ("cells\\Uninfected\\C3thinF_IMG_cell_2.png", "C3"),
        ("patient7_cell_3.png", "patient7"),
        ("thinF_IMG_cell_4.png", "thinF"),
        ("scan.png", "scan"),
        ("_odd.png", "_odd"),
    ],
)
def test_patient_key_edge_cases(filename: str, key: str) -> None:
    assert patient_key(filename) == key


def test_patient_key_accepts_paths() -> None:
    assert patient_key(Path("root/Parasitized/C99P60ThinF_IMG_cell_1.png")) == "C99P60"


# Patient splits.


def real_like_keys(n: int) -> list[str]:
    return [f"C{100 + i}P{i}" for i in range(n)]


def test_split_is_deterministic_and_ignores_order_and_repeats() -> None:
    keys = real_like_keys(50)
    first = split_patients(keys, seed=3)
    shuffled = list(np.random.default_rng(1).permutation(keys)) + keys[:10]
    assert split_patients(shuffled, seed=3) == first
    assert split_patients(keys, seed=4) != first


def test_split_fractions_on_180_patients() -> None:
    split_of = split_patients(real_like_keys(REAL_PATIENTS))
    counts = {name: sum(v == name for v in split_of.values()) for name in SPLITS}
    assert counts == {"train": 144, "val": 18, "test": 18}
    uneven = split_patients(real_like_keys(100), fractions=(0.6, 0.3, 0.1))
    assert sorted(uneven.values()).count("val") == 30


def test_split_gives_every_split_a_key_from_three_keys() -> None:
    assert sorted(split_patients(["a", "b", "c"]).values()) == ["test", "train", "val"]


def test_split_zero_fraction_is_empty() -> None:
    split_of = split_patients(real_like_keys(20), fractions=(0.9, 0.1, 0.0))
    assert "test" not in split_of.values()


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.9, 0.2, -0.1), (0.5, 0.3, 0.1)])
def test_split_rejects_bad_fractions(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        split_patients(["a", "b", "c"], fractions=fractions)


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.text(min_size=1, max_size=6), max_size=80),
    seed=st.integers(0, 2**32 - 1),
    fractions=st.sampled_from([(0.8, 0.1, 0.1), (0.7, 0.15, 0.15), (0.5, 0.25, 0.25)]),
)
def test_split_properties(keys: list[str], seed: int, fractions: tuple[float, ...]) -> None:
    split_of = split_patients(keys, fractions=fractions, seed=seed)
    unique = set(keys)
    # Every key is assigned, to exactly one split (dict keys), and nothing else appears.
    assert set(split_of) == unique
    assert set(split_of.values()) <= set(SPLITS)
    members = [{k for k, v in split_of.items() if v == name} for name in SPLITS]
    assert sum(len(m) for m in members) == len(unique)
    assert not (members[0] & members[1] or members[0] & members[2] or members[1] & members[2])
    for share, member in zip(fractions, members, strict=True):
        # Rounding plus the one-key minimum moves a split by at most two keys from its share.
        assert abs(len(member) - share * len(unique)) <= 2
    if len(unique) >= len(SPLITS):
        assert all(members)
    assert split_patients(list(reversed(keys)), fractions=fractions, seed=seed) == split_of


# prepare_image over pixel modes.


def half_transparent(mode: str) -> Image.Image:
    """A white image in `mode` whose left half is fully transparent."""
    rgba = Image.new("RGBA", (40, 40), (255, 255, 255, 255))
    rgba.paste((255, 255, 255, 0), (0, 0, 20, 40))
    return rgba if mode == "RGBA" else rgba.convert(mode)


def test_prepare_rgb_at_size_is_unchanged() -> None:
    img = draw_fake_cell(parasitized=True)
    out = prepare_image(img)
    assert_cell_array(out)
    np.testing.assert_array_equal(out, np.asarray(img))


@pytest.mark.parametrize(
    ("img", "expected"),
    [
        (Image.new("L", (30, 20), 200), (200, 200, 200)),
        (Image.new("1", (30, 20), 1), (255, 255, 255)),
        (Image.new("CMYK", (30, 20), (0, 255, 255, 0)), (255, 0, 0)),
        (Image.new("RGB", (30, 20), (12, 34, 56)), (12, 34, 56)),
        (Image.new("RGBA", (30, 20), (12, 34, 56, 255)), (12, 34, 56)),
        (Image.new("LA", (30, 20), (90, 255)), (90, 90, 90)),
        (Image.new("RGB", (1, 1), (10, 20, 30)), (10, 20, 30)),
    ],
    ids=["L", "1", "CMYK", "RGB-resized", "RGBA-opaque", "LA-opaque", "1x1"],
)
def test_prepare_flat_modes(img: Image.Image, expected: tuple[int, int, int]) -> None:
    out = prepare_image(img)
    assert_cell_array(out)
    assert (out == np.array(expected, dtype=np.uint8)).all()


def test_prepare_palette_and_ycbcr_keep_colours() -> None:
    cell = draw_fake_cell(parasitized=True)
    reference = np.asarray(cell).astype(int)
    for img in (cell.convert("P", palette=Image.Palette.ADAPTIVE), cell.convert("YCbCr")):
        out = prepare_image(img)
        assert_cell_array(out)
        assert np.abs(out.astype(int) - reference).mean() < 4, img.mode


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_prepare_composites_transparency_on_black(mode: str) -> None:
    out = prepare_image(half_transparent(mode), size=40)
    assert_cell_array(out, 40)
    assert (out[:, :18] == 0).all()
    assert (out[:, 22:] == 255).all()


def test_prepare_composites_partial_alpha() -> None:
    out = prepare_image(Image.new("RGBA", (8, 8), (200, 100, 50, 128)), size=8)
    np.testing.assert_allclose(out[0, 0], np.array([200, 100, 50]) * 128 / 255, atol=1)


@pytest.mark.parametrize("mode", ["P", "L"])
def test_prepare_transparent_colour_key_becomes_black(mode: str) -> None:
    # Value 7 is the transparent colour key; the right half is opaque white.
    img = Image.new(mode, (10, 10), 7)
    img.paste(255, (5, 0, 10, 10))
    if mode == "P":
        img.putpalette([255, 255, 255] * 256)
    decoded = open_image(png_bytes(img, transparency=7))
    assert decoded.mode == mode
    out = prepare_image(decoded, size=10)
    assert (out[:, :5] == 0).all()
    assert (out[:, 5:] == 255).all()


def sixteen_bit_ramp(mode: str) -> Image.Image:
    ramp = (np.arange(64 * 64).reshape(64, 64) % 1000) + 50
    if mode == "I;16":
        return Image.fromarray(ramp.astype(np.uint16))
    if mode == "I;16B":
        return Image.frombytes("I;16B", (64, 64), ramp.astype(">u2").tobytes())
    if mode == "I":
        return Image.fromarray((ramp - 500).astype(np.int32))
    return Image.fromarray((ramp / 250 - 1).astype(np.float32))


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "F"])
def test_prepare_scales_high_depth_by_range(mode: str) -> None:
    img = sixteen_bit_ramp(mode)
    assert img.mode == mode
    out = prepare_image(img)
    assert_cell_array(out)
    assert out.min() == 0
    assert out.max() == 255
    assert (out[..., 0] == out[..., 2]).all()
    # Brighter input stays brighter.
    values = np.asarray(img).astype(float)
    assert out[..., 0][values == values.max()].min() == 255


@pytest.mark.parametrize("mode", ["I;16", "F"])
def test_prepare_constant_high_depth_is_black(mode: str) -> None:
    img = Image.new(mode, (16, 16), 1234)
    assert (prepare_image(img) == 0).all()


def test_prepare_float_ignores_nan() -> None:
    values = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    values[0, 0] = np.nan
    out = prepare_image(Image.fromarray(values))
    assert out[0, 0, 0] == 0
    assert out[-1, -1, 0] == 255


def test_prepare_resizes_any_size_and_rejects_bad_size() -> None:
    out = prepare_image(draw_fake_cell(parasitized=False, size=(200, 180)), size=32)
    assert_cell_array(out, 32)
    with pytest.raises(ValueError, match="size"):
        prepare_image(Image.new("RGB", (4, 4)), size=0)


def oriented_png(orientation: int | None) -> bytes:
    """A 40x20 red image whose left quarter is green, optionally with an EXIF orientation."""
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 255, 0), (0, 0, 10, 20))
    if orientation is None:
        return png_bytes(img)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return png_bytes(img, exif=exif)


def test_prepare_applies_exif_orientation() -> None:
    plain = prepare_image(open_image(oriented_png(None)))
    # Without EXIF the green quarter is on the left.
    assert plain[:, :8, 1].min() > 200
    assert plain[:, -8:, 0].min() > 200
    # Orientation 6 means "rotate 90 degrees clockwise to display": the left edge goes on top.
    rotated = prepare_image(open_image(oriented_png(6)))
    assert rotated[:8, :, 1].min() > 200
    assert rotated[-8:, :, 0].min() > 200
    assert rotated[-8:, :, 1].max() < 50


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_prepare_uses_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (20, 20), (255, 0, 0)), Image.new("RGB", (20, 20), (0, 0, 255))]
    img = open_image(image_bytes(frames[0], fmt, save_all=True, append_images=frames[1:]))
    assert img.n_frames == len(frames)
    img.seek(1)
    out = prepare_image(img)
    assert_cell_array(out)
    assert (out[..., 0] > 200).all()
    assert (out[..., 2] < 50).all()


# open_image and decode_image errors.


def test_open_image_sources(tmp_path: Path) -> None:
    payload = png_bytes(draw_fake_cell(parasitized=True))
    path = tmp_path / "cell.png"
    path.write_bytes(payload)
    with path.open("rb") as fh:
        sources = [path, str(path), payload, io.BytesIO(payload), fh]
        for source in sources:
            assert open_image(source).size == (64, 64)
    assert_cell_array(decode_image(path))


def test_image_decode_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(ImageDecodeError("a.png", "is truncated")))
    assert (err.name, err.reason, str(err)) == ("a.png", "is truncated", "a.png: is truncated")


def test_prepare_reports_unloadable_image(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    path.write_bytes(truncated_png())
    with Image.open(path) as lazy, pytest.raises(ImageDecodeError, match="is truncated"):
        prepare_image(lazy)


def test_decode_image_matches_open_and_prepare() -> None:
    payload = png_bytes(draw_fake_cell(parasitized=True, size=(90, 70)))
    np.testing.assert_array_equal(
        decode_image(payload, size=48), prepare_image(open_image(payload), size=48)
    )


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """A real, fully decodable 12000 x 12000 1-bit PNG of a few kilobytes."""
    return png_bytes(Image.new("1", (12_000, 12_000)), optimize=True)


def truncated_png() -> bytes:
    payload = png_bytes(noise_image())
    return payload[: len(payload) // 2]


def corrupt_jpeg() -> bytes:
    payload = bytearray(image_bytes(noise_image(), "JPEG"))
    # Overwrite the entropy-coded scan, keeping the headers and the end marker.
    scan_start = 300
    payload[scan_start:-2] = b"\xab" * (len(payload) - 2 - scan_start)
    return bytes(payload)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty file"),
        (
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
            "is a PDF document, not an image",
        ),
        (
            b"Name,Label\nC1_thinF.png,Parasitized\n",
            "is not an image Pillow can read (looks like text)",
        ),
        (truncated_png(), "is truncated"),
        (corrupt_jpeg(), "is corrupt"),
        (png_bytes(noise_image())[:20], "is truncated"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "is corrupt (a PNG file whose header cannot be read"),
        (bytes(range(256)) * 4, "is not an image Pillow can read (unknown format)"),
        (png_header_only(20_000, 20_000), "has 400000000 pixels, over the limit of"),
    ],
    ids=[
        "empty",
        "pdf",
        "text",
        "truncated",
        "corrupt-jpeg",
        "cut-header",
        "zeroed-header",
        "binary",
        "bomb-header",
    ],
)
def test_open_image_errors(payload: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError) as caught:
        open_image(payload, name="upload.png")
    assert str(caught.value).startswith("upload.png: ")
    assert caught.value.name == "upload.png"
    assert reason in caught.value.reason
    assert isinstance(caught.value, DataError)
    assert isinstance(caught.value, ValueError)


def test_open_image_error_names_the_path(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("these are notes, not pixels\n")
    with pytest.raises(ImageDecodeError, match=re.escape(f"{text}: is not an image")):
        decode_image(text)
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(ImageDecodeError, match=re.escape(f"{empty}: empty file")):
        open_image(empty)
    with pytest.raises(ImageDecodeError, match="does not exist"):
        open_image(tmp_path / "missing.png")


def test_open_image_real_bomb_over_pillow_and_own_limits(bomb_png: bytes) -> None:
    # 144 M pixels trips Pillow's warning, turned into an error with our limit in the message.
    with pytest.raises(ImageDecodeError) as caught:
        open_image(bomb_png, name="bomb.png")
    assert caught.value.reason == (
        f"has 144000000 pixels, over the limit of {decode.MAX_PIXELS} (possible decompression bomb)"
    )


def test_open_image_own_pixel_limit() -> None:
    payload = png_bytes(noise_image((100, 100)))
    with pytest.raises(ImageDecodeError) as caught:
        open_image(payload, name="big.png", max_pixels=5_000)
    assert caught.value.reason == (
        "has 10000 pixels, over the limit of 5000 (possible decompression bomb)"
    )
    assert open_image(payload, max_pixels=10_000).size == (100, 100)


def valid_payloads() -> list[bytes]:
    cell = draw_fake_cell(parasitized=True, size=(24, 20))
    return [
        png_bytes(cell),
        image_bytes(cell, "JPEG"),
        image_bytes(cell.convert("P"), "GIF"),
        image_bytes(cell, "TIFF"),
        image_bytes(cell, "BMP"),
        image_bytes(cell, "WEBP"),
    ]


VALID_PAYLOADS = valid_payloads()


# Pillow warns (rather than fails) about some damaged TIFF tags; only exceptions matter here.
@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=300, deadline=None)
@given(
    which=st.integers(0, len(VALID_PAYLOADS) - 1),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=6),
)
def test_damaged_files_only_raise_image_decode_error(
    which: int, cut: float, flips: list[tuple[float, int]]
) -> None:
    payload = bytearray(VALID_PAYLOADS[which])
    for where, mask in flips:
        payload[int(where * (len(payload) - 1))] ^= mask
    payload = payload[: max(0, int(cut * len(payload)))] if cut < 1 else payload
    try:
        out = decode_image(bytes(payload), max_pixels=1_000_000)
    except ImageDecodeError as err:
        assert err.reason
    else:
        assert_cell_array(out)


# scan_dataset.


def test_scan_lists_images_and_skips_junk(fake_nih_tree) -> None:
    root = fake_nih_tree()
    (root / "Uninfected" / "readme.txt").write_text("notes")
    (root / "Uninfected" / f"._{fake_name(0, 0)}").write_bytes(b"\x00\x05\x16\x07")
    (root / "Uninfected" / "nested").mkdir()
    draw_fake_cell(parasitized=False).save(root / "Uninfected" / fake_name(5, 9, ".JPEG"), "JPEG")
    scan = scan_dataset(root)
    assert scan.root == root
    assert len(scan.files["Parasitized"]) == FAKE_PER_CLASS
    assert len(scan.files["Uninfected"]) == FAKE_PER_CLASS + 1
    assert scan.count() == 2 * FAKE_PER_CLASS + 1
    for paths in scan.files.values():
        assert list(paths) == sorted(paths)
    assert scan.skipped == (
        f"Parasitized/{FAKE_JUNK['Parasitized']}",
        f"Uninfected/{FAKE_JUNK['Uninfected']}",
        f"Uninfected/._{fake_name(0, 0)}",
        "Uninfected/nested",
        "Uninfected/readme.txt",
    )


def test_scan_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=re.escape(str(missing))):
        scan_dataset(missing)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        scan_dataset(a_file)


def test_scan_missing_class_folder(fake_nih_tree) -> None:
    root = fake_nih_tree()
    for path in (root / "Uninfected").iterdir():
        path.unlink()
    (root / "Uninfected").rmdir()
    with pytest.raises(DataError, match=re.escape(str(root / "Uninfected"))):
        scan_dataset(root)


def test_scan_empty_class_folder(fake_nih_tree) -> None:
    root = fake_nih_tree()
    for path in (root / "Parasitized").glob("*.png"):
        path.unlink()
    with pytest.raises(DataError, match=re.escape(f"{root / 'Parasitized'} holds no image files")):
        scan_dataset(root)


# load_dataset.


def test_load_fake_tree(fake_nih_tree, tmp_path: Path) -> None:
    root = fake_nih_tree()
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    loaded = load_dataset(root, cache_dir=tmp_path / "cache", progress=False, workers=2)
    cells = loaded.cells
    assert len(cells) == 2 * FAKE_PER_CLASS
    assert cells.class_counts() == dict.fromkeys(CLASSES, FAKE_PER_CLASS)
    assert cells.labels.dtype == np.int64
    assert (cells.labels[:FAKE_PER_CLASS] == 0).all()
    assert (cells.labels[FAKE_PER_CLASS:] == 1).all()
    assert cells.images.shape == (2 * FAKE_PER_CLASS, IMG_SIZE, IMG_SIZE, 3)
    assert cells.images.dtype == np.uint8
    assert set(cells.keys.tolist()) == {fake_key(p) for p in range(FAKE_PATIENTS)}
    assert cells.names[0] == fake_name(0, 0)
    assert [patient_key(name) for name in cells.names] == cells.keys.tolist()
    assert loaded.corrupt == ()
    assert loaded.skipped == ("Parasitized/Thumbs.db", "Uninfected/.DS_Store")
    # Labels match the pictures: only parasitized cells carry the purple dot.
    purple = np.all(np.abs(cells.images.astype(int) - PARASITE_COLOUR) < 40, axis=-1)
    has_dot = purple.any(axis=(1, 2))
    np.testing.assert_array_equal(has_dot, cells.labels == 0)
    # Nothing is written next to the data.
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "Parasitized_64.npz",
        "Uninfected_64.npz",
    ]


def test_load_splits_by_patient(fake_nih_tree, tmp_path: Path) -> None:
    loaded = load_dataset(fake_nih_tree(), cache_dir=tmp_path, progress=False)
    assert set(loaded.split_of) == {fake_key(p) for p in range(FAKE_PATIENTS)}
    parts = {name: loaded.split(name) for name in SPLITS}
    assert sum(len(part) for part in parts.values()) == len(loaded.cells)
    key_sets = [set(part.keys.tolist()) for part in parts.values()]
    assert all(key_sets)
    assert not (key_sets[0] & key_sets[1] or key_sets[0] & key_sets[2] or key_sets[1] & key_sets[2])
    for name, part in parts.items():
        assert {loaded.split_of[key] for key in part.keys.tolist()} == {name}
    assert len(parts["train"]) == 4 * 2 * FAKE_CELLS
    with pytest.raises(ValueError, match="split"):
        loaded.split("holdout")
    assert load_dataset(fake_nih_tree(), cache_dir=tmp_path / "b", progress=False).split_of == (
        loaded.split_of
    )


def test_cell_set_subset() -> None:
    cells = data.CellSet(
        images=np.zeros((3, 4, 4, 3), dtype=np.uint8),
        labels=np.array([0, 1, 1]),
        keys=np.array(["a", "b", "c"]),
        names=np.array(["x", "y", "z"]),
    )
    assert cells.subset([2, 0]).names.tolist() == ["z", "x"]
    assert cells.subset(np.array([False, True, True])).class_counts() == {
        "Parasitized": 0,
        "Uninfected": 2,
    }
    with pytest.raises(ValueError, match="mask"):
        cells.subset(np.array([True, False]))
    with pytest.raises(ValueError, match="labels"):
        data.CellSet(cells.images, cells.labels[:2], cells.keys, cells.names)


def test_load_reports_corrupt_files_and_goes_on(
    fake_nih_tree, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = fake_nih_tree()
    bad = fake_name(0, 99)
    (root / "Parasitized" / bad).write_bytes(truncated_png())
    with caplog.at_level(logging.WARNING, logger="malgan.data"):
        loaded = load_dataset(root, cache_dir=tmp_path, progress=False)
    assert len(loaded.cells) == 2 * FAKE_PER_CLASS
    assert bad not in loaded.cells.names.tolist()
    assert loaded.corrupt == (f"Parasitized/{bad}: is truncated",)
    assert bad in caplog.text
    # The report survives a load from the cache.
    assert load_dataset(root, cache_dir=tmp_path, progress=False).corrupt == loaded.corrupt


def test_load_all_corrupt_class_raises(fake_nih_tree, tmp_path: Path) -> None:
    root = fake_nih_tree(patients=2, cells=2)
    for path in (root / "Uninfected").glob("*.png"):
        path.write_text("not a picture")
    with pytest.raises(DataError, match=re.escape(f"all 4 images in {root / 'Uninfected'}")):
        load_dataset(root, cache_dir=tmp_path, progress=False)


def test_load_reuses_and_refreshes_cache(
    fake_nih_tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_nih_tree()
    first = load_dataset(root, cache_dir=tmp_path, progress=False)
    decoded: list[str] = []
    real_decode = data.decode_image

    def counting_decode(source, **kwargs):
        decoded.append(Path(source).name)
        return real_decode(source, **kwargs)

    monkeypatch.setattr(data, "decode_image", counting_decode)
    second = load_dataset(root, cache_dir=tmp_path, progress=False)
    assert decoded == []
    np.testing.assert_array_equal(second.cells.images, first.cells.images)
    np.testing.assert_array_equal(second.cells.names, first.cells.names)
    assert second.cells.images.flags["WRITEABLE"]

    # A new file rebuilds its class only.
    draw_fake_cell(parasitized=False, seed=9).save(root / "Uninfected" / fake_name(0, 50))
    third = load_dataset(root, cache_dir=tmp_path, progress=False)
    assert len(decoded) == FAKE_PER_CLASS + 1
    assert third.cells.class_counts()["Uninfected"] == FAKE_PER_CLASS + 1

    # A changed file (new size and time) rebuilds too.
    decoded.clear()
    changed = root / "Parasitized" / fake_name(1, 1)
    draw_fake_cell(parasitized=True, size=(80, 80), seed=5).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    load_dataset(root, cache_dir=tmp_path, progress=False)
    assert len(decoded) == FAKE_PER_CLASS
    assert not list(tmp_path.glob("*.tmp"))


def test_load_rebuilds_unreadable_cache(fake_nih_tree, tmp_path: Path) -> None:
    root = fake_nih_tree(patients=2, cells=2)
    load_dataset(root, cache_dir=tmp_path, progress=False)
    (tmp_path / "Parasitized_64.npz").write_bytes(b"garbage")
    assert len(load_dataset(root, cache_dir=tmp_path, progress=False).cells) == 8
    assert (tmp_path / "Parasitized_64.npz").stat().st_size > len(b"garbage")


def test_load_works_when_cache_cannot_be_written(fake_nih_tree, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    loaded = load_dataset(
        fake_nih_tree(patients=2, cells=2), cache_dir=blocker / "cache", progress=False
    )
    assert len(loaded.cells) == 8


def test_load_default_cache_dir(
    fake_nih_tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = fake_nih_tree(patients=2, cells=2)
    load_dataset(root, progress=False)
    cache = data.default_cache_dir(root)
    assert cache.parent == tmp_path / "malgan"
    assert (cache / "Uninfected_64.npz").is_file()


@pytest.mark.parametrize("source_size", [(30, 37), (200, 180)])
def test_load_any_source_size(fake_nih_tree, tmp_path: Path, source_size) -> None:
    root = fake_nih_tree(patients=3, cells=2, size=source_size)
    loaded = load_dataset(root, cache_dir=tmp_path, progress=False)
    assert loaded.cells.images.shape == (12, IMG_SIZE, IMG_SIZE, 3)
    small = load_dataset(root, cache_dir=tmp_path, size=32, progress=False)
    assert small.cells.images.shape == (12, 32, 32, 3)
    assert (tmp_path / "Parasitized_32.npz").is_file()


def test_load_mixed_sizes(fake_nih_tree, tmp_path: Path) -> None:
    sizes = [(30, 37), (200, 180), (64, 64), (41, 41)]
    root = fake_nih_tree(patients=2, cells=4, size=lambda label, patient, cell: sizes[cell])
    loaded = load_dataset(root, cache_dir=tmp_path, progress=False, workers=1)
    assert loaded.cells.images.shape == (16, IMG_SIZE, IMG_SIZE, 3)


def test_load_rejects_bad_workers(fake_nih_tree, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        load_dataset(fake_nih_tree(patients=1, cells=1), cache_dir=tmp_path, workers=0)


# The real NIH data.


@pytest.mark.shared
@requires_shared
def test_shared_originals_load(tmp_path: Path) -> None:
    loaded = load_dataset(SHARED_ORIGINALS, cache_dir=tmp_path, progress=False)
    assert loaded.cells.class_counts() == {"Parasitized": 100, "Uninfected": 100}
    assert loaded.corrupt == ()
    assert loaded.cells.images.shape == (200, IMG_SIZE, IMG_SIZE, 3)
    # Cells sit on a black background: the corners are dark.
    corners = loaded.cells.images[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.median(corners) < 10


@pytest.mark.shared
@requires_shared
def test_shared_full_set_loads_from_its_cache_and_splits_by_patient() -> None:
    # The default cache is the one training and the app use, so it is built at most once.
    # (benchmarks/data_load.py times the cached load against a first decode.)
    first = load_dataset(SHARED_DATA, progress=False)
    cache_dir = data.default_cache_dir(SHARED_DATA)
    cache_files = [cache_dir / f"{label}_{IMG_SIZE}.npz" for label in CLASSES]
    stamps = [path.stat().st_mtime_ns for path in cache_files]
    loaded = load_dataset(SHARED_DATA, progress=False)
    # The second load reads the cache without rewriting it, and gives the same cells.
    assert [path.stat().st_mtime_ns for path in cache_files] == stamps
    for field in ("images", "labels", "keys", "names"):
        np.testing.assert_array_equal(getattr(loaded.cells, field), getattr(first.cells, field))
    assert loaded.split_of == first.split_of and loaded.corrupt == first.corrupt
    assert loaded.cells.class_counts() == {"Parasitized": 12_768, "Uninfected": 12_420}
    assert len(loaded.split_of) == REAL_PATIENTS
    assert all(re.fullmatch(r"C\d+[A-Za-z0-9]*", key) for key in loaded.split_of)
    key_sets = [set(loaded.split(name).keys.tolist()) for name in SPLITS]
    assert [len(keys) for keys in key_sets] == [144, 18, 18]
    assert not (key_sets[0] & key_sets[1] or key_sets[0] & key_sets[2] or key_sets[1] & key_sets[2])
