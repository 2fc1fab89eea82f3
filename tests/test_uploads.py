"""Tests for malgan.uploads: decoding uploads, one classifier batch, OOD flags and the CSV."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.fakes import draw_fake_cell
from malgan import artifacts, data, decode, tables, uploads

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPORTED = REPO_ROOT / "exported"
FEATURES = 4


class FakeClassifier:
    """Probabilities from the mean red level; features from the mean colour; counts calls."""

    def __init__(self, classes: tuple[str, ...] = data.CLASSES, nan: bool = False) -> None:
        self.classes = classes
        self.calls: list[int] = []
        self.nan = nan

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append(len(images))
        p = images[..., 0].mean(axis=(1, 2)) / 255.0  # [N]
        proba = np.stack([p, 1 - p], axis=1).astype(np.float32)
        if self.nan:
            proba[:] = np.nan
        colour = images.reshape(len(images), -1, 3).mean(axis=1)  # [N, 3]
        feats = np.concatenate([colour, colour[:, :1]], axis=1).astype(np.float32)
        return proba, feats


def png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def cell_png(parasitized: bool = True, size: tuple[int, int] = (120, 100)) -> bytes:
    return png(draw_fake_cell(parasitized=parasitized, size=size))


def reference(mean: float = 0.0, threshold: float = 1e9) -> SimpleNamespace:
    return SimpleNamespace(
        ood_mean=np.full(FEATURES, mean, np.float32),
        ood_precision=np.eye(FEATURES, dtype=np.float32),
        ood_threshold=threshold,
    )


def test_bad_files_get_specific_messages_and_the_good_ones_one_batch() -> None:
    good = cell_png()
    files = [
        ("a.png", good),
        ("empty.png", b""),
        ("notes.png", b"these are my notes, not a picture\n"),
        ("paper.pdf", b"%PDF-1.7\n1 0 obj\n"),
        ("cut.png", good[: len(good) // 2]),
        ("b.jpg", png(draw_fake_cell(parasitized=False), "JPEG")),
    ]
    clf = FakeClassifier()
    results = uploads.classify_files(files, clf, None)

    assert [r.name for r in results] == [name for name, _ in files]
    assert [r.ok for r in results] == [True, False, False, False, False, True]
    assert clf.calls == [2]
    messages = {r.name: r.message for r in results}
    assert messages["empty.png"] == "empty.png: empty file."
    assert "looks like text" in messages["notes.png"]
    assert messages["paper.pdf"] == "paper.pdf is a PDF document, not an image."
    assert "truncated" in messages["cut.png"] or "corrupt" in messages["cut.png"]
    for r in results:
        if not r.ok:
            assert r.image is None and r.label is None and r.proba is None


def test_verdict_fields_follow_the_decoded_cell() -> None:
    payload = cell_png(size=(130, 90))
    (result,) = uploads.classify_files([("cell.png", payload)], FakeClassifier(), None)
    assert result.ok
    assert result.image.shape == (64, 64, 3) and result.image.dtype == np.uint8
    np.testing.assert_array_equal(result.image, decode.decode_image(payload))
    assert result.original_size == (130, 90)
    assert result.proba is not None and sum(result.proba) == pytest.approx(1.0)
    assert result.label == data.CLASSES[int(np.argmax(result.proba))]
    assert result.confidence == pytest.approx(max(result.proba))
    assert result.message.startswith(f"{result.label} (")
    assert not result.ood and result.ood_reason == "" and result.ood_score is None


def test_decompression_bomb_is_named() -> None:
    big = png(Image.new("RGB", (200, 200)))
    (result,) = uploads.classify_files([("big.png", big)], FakeClassifier(), None, max_pixels=1000)
    assert not result.ok
    assert "40000 pixels" in result.message and "decompression bomb" in result.message


def test_probabilities_are_reported_in_class_order() -> None:
    files = [("cell.png", cell_png())]
    (forward,) = uploads.classify_files(files, FakeClassifier(), None)
    (backward,) = uploads.classify_files(files, FakeClassifier(classes=data.CLASSES[::-1]), None)
    assert backward.proba == pytest.approx(forward.proba[::-1])


def test_bright_background_is_flagged_out_of_distribution() -> None:
    white = Image.new("RGB", (80, 80), (245, 245, 245))
    results = uploads.classify_files(
        [("photo.jpg", png(white, "JPEG")), ("cell.png", cell_png())], FakeClassifier(), None
    )
    assert results[0].ood and "background is not black" in results[0].ood_reason
    assert uploads.OOD_WARNING in results[0].message
    assert not results[1].ood


def test_mahalanobis_score_above_threshold_is_flagged() -> None:
    files = [("cell.png", cell_png())]
    near = uploads.classify_files(files, FakeClassifier(), reference(threshold=1e9))[0]
    far = uploads.classify_files(files, FakeClassifier(), reference(threshold=1.0))[0]
    assert near.ood_score == pytest.approx(far.ood_score) and near.ood_score > 1.0
    assert not near.ood
    assert far.ood and "Mahalanobis" in far.ood_reason


def test_reference_of_another_feature_size_is_skipped() -> None:
    wrong = SimpleNamespace(
        ood_mean=np.zeros(7, np.float32), ood_precision=np.eye(7), ood_threshold=1.0
    )
    (result,) = uploads.classify_files([("cell.png", cell_png())], FakeClassifier(), wrong)
    assert result.ok and result.ood_score is None and not result.ood


def test_nan_probabilities_give_a_clear_failure() -> None:
    (result,) = uploads.classify_files([("cell.png", cell_png())], FakeClassifier(nan=True), None)
    assert not result.ok
    assert "no valid probability" in result.message
    assert result.image is not None


def test_unexpected_decoder_failure_becomes_a_generic_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(decode, "open_image", broken)
    with caplog.at_level(logging.ERROR, logger="malgan.uploads"):
        (result,) = uploads.classify_files([("x.png", b"\x89PNG")], FakeClassifier(), None)
    assert not result.ok and uploads.GENERIC_FAILURE in result.message
    assert "plugin bug" in caplog.text


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=200).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
        st.binary(max_size=200).map(lambda b: b"GIF89a" + b),
        st.binary(max_size=200).map(lambda b: b"\xff\xd8\xff" + b),
    )
)
def test_arbitrary_bytes_never_raise_and_always_say_why(payload: bytes) -> None:
    (result,) = uploads.classify_files([("upload.png", payload)], FakeClassifier(), None)
    assert result.name == "upload.png"
    if not result.ok:
        # Every failure comes from errors.ImageDecodeError: the generic message would hide a bug.
        assert uploads.GENERIC_FAILURE not in result.message
        assert result.message.startswith("upload.png")


def test_results_table_and_csv_have_one_row_per_file() -> None:
    files = [("=cmd.png", cell_png()), ("empty.png", b""), ("ok, quoted.png", cell_png(False))]
    results = uploads.classify_files(files, FakeClassifier(), None)
    table = uploads.results_table(results)
    assert len(table) == 3
    assert list(table[0]) == list(uploads.CSV_COLUMNS)
    assert table[1]["status"] == "error" and table[1]["verdict"] is None
    assert table[1]["note"] == "empty.png: empty file."
    assert table[0]["original_size"] == "120x100"

    rows = list(csv.reader(io.StringIO(uploads.results_csv(results).decode("utf-8"))))
    assert rows[0] == list(uploads.CSV_COLUMNS)
    assert len(rows) == 4
    assert rows[1][0] == "'=cmd.png"  # never runs as a spreadsheet formula
    assert rows[3][0] == "ok, quoted.png"
    assert rows[2][1:3] == ["error", ""]
    assert float(rows[1][3]) == pytest.approx(results[0].proba[0], abs=1e-4)


def test_display_table_shows_flags_as_text_and_distances_with_their_limit() -> None:
    files = [("bright.png", png(Image.new("RGB", (80, 80), (240, 235, 230)))), ("x.png", b"")]
    results = uploads.classify_files(files, FakeClassifier(), reference(threshold=70.0))
    table = uploads.display_table(results, ood_threshold=70.0)
    assert [list(row) for row in table] == [list(uploads.DISPLAY_COLUMNS)] * 2
    assert table[0]["unusual"] == uploads.UNUSUAL_MARK and table[1]["unusual"] == ""
    assert table[0]["ood_distance"] == f"{results[0].ood_score:.0f} (limit 70)"
    assert table[1]["ood_distance"] == tables.MISSING and table[1]["status"] == "error"
    assert table[1]["p_parasitized"] == table[1]["verdict"] == tables.MISSING
    assert table[0]["p_parasitized"] == f"{100 * results[0].proba[0]:.1f}%"
    assert all(isinstance(value, str) for row in table for value in row.values())
    assert table[0]["file"] == "bright.png" and table[0]["verdict"] in data.CLASSES


def test_distance_text() -> None:
    assert uploads.distance_text(85.4, 70.2) == "85 (limit 70)"
    assert uploads.distance_text(85.4, None) == "85"
    assert uploads.distance_text(None, 70.0) is None
    assert uploads.distance_text(float("nan"), 70.0) is None


def test_no_files_give_no_results() -> None:
    clf = FakeClassifier()
    assert uploads.classify_files([], clf, None) == []
    assert clf.calls == []
    assert uploads.results_csv([]).decode().strip() == ",".join(uploads.CSV_COLUMNS)


def test_escape_markdown_keeps_names_literal() -> None:
    assert uploads.escape_markdown("a_b*[x](y)$z.png") == r"a\_b\*\[x\](y)\$z.png"
    assert uploads.escape_markdown("cell 1.png") == "cell 1.png"


def test_border_brightness() -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    assert uploads.border_brightness(image) == 0.0
    image[:2] = 255
    assert uploads.border_brightness(image) == pytest.approx(255 * 128 / (64 * 64 - 60 * 60))


def test_exported_classifier_and_reference_give_verdicts() -> None:
    clf = artifacts.load_classifier(EXPORTED)
    ref = artifacts.load_reference(EXPORTED)
    results = uploads.classify_files([("cell.png", cell_png()), ("bad.png", b"nope")], clf, ref)
    assert results[0].ok and results[0].label in data.CLASSES
    assert results[0].ood_score is not None and np.isfinite(results[0].ood_score)
    assert not results[1].ok
