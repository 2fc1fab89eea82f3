"""Upload limits and hostile uploads, through decode_image and through the Classify page."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tomllib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from malgan.data import CLASSES
from malgan.decode import (
    IMAGE_EXTENSIONS,
    IMG_SIZE,
    MAX_PIXELS,
    decode_image,
    max_pixels_from_config,
)
from malgan.errors import DataError, ImageDecodeError
from tests.support.hostile_files import (
    GOOD_COLOUR,
    HostileFile,
    good_cell_png,
    hostile_files,
    one_bit_png,
)
from tests.support.pages import app_page
from tests.support.paths import REPO_ROOT

CONFIG = REPO_ROOT / ".streamlit" / "config.toml"
CLASSIFY_PAGE = REPO_ROOT / "pages" / "classify.py"
PAGE_TIMEOUT_S = 60
GOOD_NAME = "good_cell.png"
UPLOAD_MB = 25
# numpy memory per pixel allowed for decoding a 16-bit image: its own array (2 bytes), the 8-bit
# result (1 byte) and row chunks; one float64 copy alone would be 8.
MAX_SCALING_BYTES_PER_PIXEL = 6
# A configured limit small enough to test with a cheap image on either side of it.
SMALL_LIMIT = 1_000_000


# The limits in .streamlit/config.toml.


def test_config_sets_upload_size_and_pixel_limit() -> None:
    settings = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    assert settings["server"]["maxUploadSize"] == UPLOAD_MB
    assert max_pixels_from_config(CONFIG) == MAX_PIXELS
    # The limit holds a 48-megapixel photo and refuses a 10,000 x 10,000 image.
    assert 8000 * 6000 <= MAX_PIXELS < 10_000 * 10_000


def test_streamlit_reads_config_without_warnings() -> None:
    # Streamlit warns about every option it does not define; the pixel limit must not be one.
    probe = (
        "from streamlit import config\n"
        "config.get_config_options(force_reparse=True)\n"
        "print(config.get_option('server.maxUploadSize'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == str(UPLOAD_MB)
    assert "not a valid config option" not in done.stdout + done.stderr
    assert "error" not in done.stderr.lower()


def write_config(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[server]\nmaxUploadSize = 5\n{line}\n[theme]\nbase = "light"\n')
    return path


def test_configured_limit_is_enforced(tmp_path: Path) -> None:
    config = write_config(tmp_path, "# malgan.maxPixels = 1_000_000  # one megapixel")
    limit = max_pixels_from_config(config)
    assert limit == SMALL_LIMIT
    # 2,000 x 2,000 in a 2 kB file: refused from its header, before decoding.
    with pytest.raises(ImageDecodeError) as err:
        decode_image(one_bit_png(2000, 2000), name="big.png", max_pixels=limit)
    assert str(err.value) == (
        "big.png: has 4000000 pixels, over the limit of 1000000 (possible decompression bomb)"
    )
    # Exactly at the limit is accepted.
    arr = decode_image(one_bit_png(1000, 1000), name="ok.png", max_pixels=limit)
    assert arr.shape == (IMG_SIZE, IMG_SIZE, 3) and (arr == 0).all()


def test_config_without_limit_uses_default(tmp_path: Path) -> None:
    assert max_pixels_from_config(tmp_path / "absent.toml") == MAX_PIXELS
    assert max_pixels_from_config(write_config(tmp_path, "# a comment")) == MAX_PIXELS
    assert max_pixels_from_config(tmp_path / "absent.toml", default=7) == 7


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("# malgan.maxPixels = 0", "must be a positive integer, got '0'"),
        ("# malgan.maxPixels = -5", "must be a positive integer"),
        ("# malgan.maxPixels = 1.5e6", "must be a positive integer"),
        ("# malgan.maxPixels = true", "must be a positive integer"),
        ("# malgan.maxPixels = lots", "must be a positive integer, got 'lots'"),
        ("# malgan.maxPixels =", "must be a positive integer, got ''"),
        ("# malgan.maxPixels = 5\n# malgan.maxPixels = 6", "sets malgan.maxPixels 2 times"),
        ("# malgan.maxPixels = 100_000_000", "above Pillow's decompression-bomb guard"),
    ],
)
def test_config_bad_limit_is_a_clear_error(tmp_path: Path, line: str, message: str) -> None:
    config = write_config(tmp_path, line)
    with pytest.raises(DataError, match=r"config\.toml") as err:
        max_pixels_from_config(config)
    assert message in str(err.value)


def test_high_depth_image_decodes_in_bounded_memory() -> None:
    # A 16-bit image compresses to almost nothing; scaling it to 8 bits must not cost several
    # float64 copies of it (numpy's allocations are what tracemalloc sees).
    side = 3000
    ramp = np.zeros((side, side), np.uint16)
    ramp[: side // 2, : side // 2] = 60_000
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, "PNG")
    del ramp
    tracemalloc.start()
    try:
        arr = decode_image(buffer.getvalue(), name="deep.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_SCALING_BYTES_PER_PIXEL * side * side, peak / side**2
    assert (arr[:28, :28] == 255).all() and (arr[36:, 36:] == 0).all()


def test_hostile_cases_are_the_documented_set() -> None:
    ids = [case.id for case in hostile_files()]
    assert len(ids) == len(set(ids)) == 16
    refused = {case.id for case in hostile_files() if case.error}
    assert refused == {
        "empty",
        "text_as_png",
        "truncated_png",
        "corrupt_jpeg",
        "decompression_bomb",
        "huge_10000",
        "pdf",
    }
    # The bomb and the huge image are cheap to hold: small files, huge declared sizes.
    sizes = {case.id: len(case.data) for case in hostile_files()}
    assert sizes["decompression_bomb"] < 100 and sizes["huge_10000"] < 50_000


# Each hostile file through the decoder.


def decode_case(case: HostileFile) -> None:
    """decode_image on bytes and on a named file object (what an upload is) agree."""
    for source in (case.data, io.BytesIO(case.data)):
        if case.error is None:
            arr = decode_image(source, name=case.filename)
            assert arr.shape == (IMG_SIZE, IMG_SIZE, 3)
            assert arr.dtype == np.uint8
            assert case.check is not None
            case.check(arr)
        else:
            with pytest.raises(ImageDecodeError) as err:
                decode_image(source, name=case.filename)
            assert err.value.name == case.filename
            assert case.error in err.value.reason
            assert str(err.value).startswith(f"{case.filename}: ")


def unescaped(text: str) -> str:
    """Markdown text as read: backslash escapes (the page escapes file names) removed."""
    return re.sub(r"\\(.)", r"\1", text)


def page_name(case: HostileFile) -> str:
    """The name a browser can deliver the case under.

    The uploader only takes the page's image extensions (the browser filters them, and Streamlit
    refuses other names server-side), so a PDF reaches the page only renamed to ``.png``.
    """
    stem, _, ext = case.filename.rpartition(".")
    return case.filename if f".{ext}" in IMAGE_EXTENSIONS else f"{stem}.png"


def classify_page_with(case: HostileFile) -> AppTest:
    """The Classify page after uploading the case together with one good cell."""
    at = app_page(CLASSIFY_PAGE, timeout=PAGE_TIMEOUT_S)
    at.run()
    assert not at.exception
    uploader = at.file_uploader(key="c_uploads")
    assert uploader.accept_multiple_files
    uploader.set_value(
        [(page_name(case), case.data, case.mime), (GOOD_NAME, good_cell_png(), "image/png")]
    )
    at.run()
    return at


def check_classify_page(at: AppTest, case: HostileFile) -> None:
    """No exception; the bad file's own message is shown; every readable file gets a verdict."""
    name = page_name(case)
    assert not at.exception, [e.value for e in at.exception]
    errors = [unescaped(e.value) for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    table = {row["File"]: row for row in at.table[0].value.to_dict("records")}
    assert set(table) == {name, GOOD_NAME}
    assert table[GOOD_NAME]["Status"] == "classified"
    assert table[GOOD_NAME]["Verdict"] in CLASSES
    if case.error is None:
        assert not errors
        assert metrics["Classified"] == "2"
        assert table[name]["Status"] == "classified"
        assert table[name]["Verdict"] in CLASSES
    else:
        assert metrics["Classified"] == "1"
        shown = [e for e in errors if name in e and case.error in e]
        assert len(shown) == 1, errors
        assert table[name]["Status"] == "error"
        assert case.error in table[name]["Note"]
    # One card per classified file: its cell image, its name and its verdict.
    classified = int(metrics["Classified"])
    assert len(at.get("image")) == classified
    captions = [unescaped(c.value.replace("<wbr>", "")) for c in at.caption]
    assert any(GOOD_NAME in c for c in captions)
    assert (case.error is None) == any(name in c for c in captions)
    verdicts = [m.value for m in at.markdown if "confidence" in m.value]
    assert len(verdicts) == classified


def test_uploader_takes_only_what_the_decoder_reads() -> None:
    at = app_page(CLASSIFY_PAGE, timeout=PAGE_TIMEOUT_S)
    at.run()
    allowed = {f".{t.lstrip('.').lower()}" for t in at.file_uploader(key="c_uploads").allowed_type}
    assert allowed and allowed <= IMAGE_EXTENSIONS
    assert ".pdf" not in allowed


@pytest.mark.parametrize("case", hostile_files(), ids=lambda case: case.id)
def test_hostile_file(case: HostileFile) -> None:
    decode_case(case)
    check_classify_page(classify_page_with(case), case)


def test_good_companion_decodes() -> None:
    arr = decode_image(good_cell_png(), name="good.png")
    assert tuple(arr[32, 32]) == GOOD_COLOUR and tuple(arr[0, 0]) == (0, 0, 0)
