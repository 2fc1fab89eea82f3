"""Verdicts on uploaded cell images: decoding, one classifier batch, OOD flags and a CSV table."""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from malgan import decode, metrics, tables
from malgan.data import CLASSES
from malgan.errors import DataError, ImageDecodeError
from malgan.runtime import predicted_class

logger = logging.getLogger(__name__)

# NIH cells are segmented onto black: over 3,000 real cells the mean brightness of a 2-pixel
# border band stays below 80 of 255 (99.9th percentile 63), while photographs, screenshots and
# unsegmented smears sit on a bright background.
OOD_BORDER_PX = 2
OOD_BORDER_BRIGHTNESS = 100.0
OOD_WARNING = "does not look like a segmented cell"
GENERIC_FAILURE = "could not be read as an image"
# Reasons from ImageDecodeError that already read as a predicate ("is truncated").
_PREDICATE_STARTS = ("is ", "has ", "does ", "uses ", "cannot ")
# Spreadsheet programs run a cell starting with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Characters that Streamlit's Markdown would read as formatting, links, HTML or LaTeX.
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]<>|~$#])")
# File types the upload widgets accept: the extensions malgan decodes.
UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in decode.IMAGE_EXTENSIONS)
CSV_COLUMNS = (
    "file",
    "status",
    "verdict",
    "p_parasitized",
    "confidence",
    "out_of_distribution",
    "ood_score",
    "original_size",
    "note",
)

# Columns of the on-page table (``display_table``): the CSV's, with the flag as text.
DISPLAY_COLUMNS = (
    "file",
    "status",
    "verdict",
    "p_parasitized",
    "confidence",
    "unusual",
    "ood_distance",
    "original_size",
    "note",
)
UNUSUAL_MARK = "⚠ unusual"


class CellClassifier(Protocol):
    """What classify_files needs of a classifier (runtime.Classifier satisfies it)."""

    classes: tuple[str, ...]

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(proba [N, classes], features [N, F])`` for uint8 images [N, S, S, 3]."""
        ...


@dataclass(frozen=True, eq=False)
class UploadResult:
    """The verdict on one uploaded file, or why there is none.

    Attributes:
        name: The uploaded file name.
        ok: Whether the file was decoded and classified.
        message: One human sentence: the verdict, or what is wrong with the file.
        image: The prepared cell, uint8 [S, S, 3], or None when the file could not be read.
        original_size: ``(width, height)`` of the file as stored, or None.
        proba: Class probabilities in ``CLASSES`` order, or None.
        label: The predicted class, or None.
        confidence: Probability of the predicted class, or None.
        ood: Whether the image looks out of distribution (not a segmented cell).
        ood_reason: Why it was flagged ("" when not flagged).
        ood_score: Mahalanobis distance of its classifier features from the training cells, or
            None without a training reference.
    """

    name: str
    ok: bool
    message: str
    image: np.ndarray | None = None
    original_size: tuple[int, int] | None = None
    proba: tuple[float, ...] | None = None
    label: str | None = None
    confidence: float | None = None
    ood: bool = False
    ood_reason: str = ""
    ood_score: float | None = None


def escape_markdown(text: str) -> str:
    """``text`` with Markdown's special characters backslash-escaped, to show a file name as is."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


def failure_message(name: str, reason: str) -> str:
    """A sentence naming the file and why it cannot be used."""
    reason = reason.strip().rstrip(".")
    if reason.startswith(_PREDICATE_STARTS):
        return f"{name} {reason}."
    return f"{name}: {reason}."


def _decode(
    name: str, payload: bytes, max_pixels: int, size: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """open_image + prepare_image (the steps of decode.decode_image), keeping the stored size."""
    with decode.open_image(payload, name=name, max_pixels=max_pixels) as img:
        stored = (int(img.size[0]), int(img.size[1]))
        try:
            return decode.prepare_image(img, size=size), stored
        except ImageDecodeError as err:
            raise ImageDecodeError(name, err.reason) from None


def border_brightness(image: np.ndarray, *, width: int = OOD_BORDER_PX) -> float:
    """Mean brightness (0-255, over channels) of the ``width``-pixel band along the edges."""
    image = np.asarray(image, np.float64)
    mask = np.zeros(image.shape[:2], bool)
    mask[:width], mask[-width:], mask[:, :width], mask[:, -width:] = True, True, True, True
    return float(image[mask].mean())


def ood_reasons(image: np.ndarray, score: float | None, threshold: float | None) -> list[str]:
    """Why an image does not look like a segmented NIH cell (empty when it does).

    Args:
        image: uint8 [S, S, 3].
        score: Mahalanobis distance of its features from the training cells, or None.
        threshold: The reference's out-of-distribution threshold, or None.
    """
    reasons = []
    brightness = border_brightness(image)
    if brightness > OOD_BORDER_BRIGHTNESS:
        reasons.append(
            f"its background is not black (edge brightness {brightness:.0f} of 255; NIH cells "
            "are segmented onto black)"
        )
    if score is not None and threshold is not None and score > threshold:
        reasons.append(
            f"its features are far from every training cell (Mahalanobis distance {score:.0f}, "
            f"threshold {threshold:.0f})"
        )
    return reasons


def _ood_scores(features: np.ndarray, reference: Any | None) -> list[float | None]:
    """Mahalanobis scores of finite feature rows; None where no score can be computed."""
    scores: list[float | None] = [None] * len(features)
    if reference is None or len(features) == 0:
        return scores
    mean = np.asarray(reference.ood_mean)
    if features.ndim != 2 or mean.shape != (features.shape[1],):
        logger.warning(
            "Training reference has %s features, classifier %s; OOD scores skipped.",
            mean.shape,
            features.shape,
        )
        return scores
    finite = np.isfinite(features).all(axis=1)
    if finite.any():
        values = metrics.ood_score(features[finite], mean, reference.ood_precision)
        for row, value in zip(np.flatnonzero(finite), values, strict=True):
            scores[row] = float(value)
    return scores


def classify_files(
    files: Sequence[tuple[str, bytes]],
    classifier: CellClassifier,
    reference: Any | None,
    *,
    max_pixels: int = decode.MAX_PIXELS,
    size: int = decode.IMG_SIZE,
) -> list[UploadResult]:
    """Decode every file and classify the readable ones in one batch.

    Each file goes through the training preprocessing (``decode.open_image`` then
    ``decode.prepare_image``, i.e. ``decode.decode_image``). A file that cannot be used gets a
    result with ``ok=False`` and a specific message; the others are classified together. No
    input bytes make this raise: decoding failures outside ``errors.DataError`` are logged and
    reported as "could not be read as an image".

    Args:
        files: ``(name, bytes)`` pairs, in the order to report them.
        classifier: Gives ``(proba, features)`` for uint8 [N, S, S, 3] images.
        reference: The training reference (``ood_mean``, ``ood_precision``, ``ood_threshold``)
            for the Mahalanobis check, or None to use the background check only.
        max_pixels: Largest width * height decoded (decompression-bomb guard).
        size: Side of the prepared cells: the classifier's ``img_size``.

    Returns:
        One result per file, in input order.
    """
    decoded: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}
    results: list[UploadResult | None] = [None] * len(files)
    for i, (name, payload) in enumerate(files):
        name = str(name) or f"file {i + 1}"
        try:
            decoded[i] = _decode(name, bytes(payload), max_pixels, size)
        except ImageDecodeError as err:
            results[i] = UploadResult(name, False, failure_message(name, err.reason))
        except DataError as err:
            results[i] = UploadResult(name, False, failure_message(name, str(err)))
        except Exception:  # Pillow and its plugins raise open-ended types on hostile input
            logger.exception("Unexpected failure decoding the upload %s", name)
            results[i] = UploadResult(name, False, failure_message(name, GENERIC_FAILURE))
    if decoded:
        rows = sorted(decoded)
        images = np.stack([decoded[i][0] for i in rows])  # [N, S, S, 3]
        proba, features = classifier.predict(images)
        proba = np.asarray(proba, np.float64)
        scores = _ood_scores(np.asarray(features, np.float64), reference)
        threshold = None if reference is None else float(reference.ood_threshold)
        classes = tuple(classifier.classes)
        for row, i in enumerate(rows):
            name = str(files[i][0]) or f"file {i + 1}"
            results[i] = _verdict(name, decoded[i], proba[row], scores[row], threshold, classes)
    return [r for r in results if r is not None]


def _verdict(
    name: str,
    decoded: tuple[np.ndarray, tuple[int, int]],
    proba: np.ndarray,
    score: float | None,
    threshold: float | None,
    classes: tuple[str, ...],
) -> UploadResult:
    image, size = decoded
    if not np.isfinite(proba).all():
        return UploadResult(
            name,
            False,
            failure_message(name, "got no valid probability from the classifier"),
            image=image,
            original_size=size,
        )
    # Probabilities in CLASSES order, whatever order the classifier declares.
    ordered = tuple(float(proba[classes.index(c)]) for c in CLASSES)
    label = predicted_class(ordered)
    confidence = ordered[CLASSES.index(label)]
    reasons = ood_reasons(image, score, threshold)
    message = f"{label} ({confidence:.1%} confidence)"
    if reasons:
        message += f"; {OOD_WARNING}: " + "; ".join(reasons)
    return UploadResult(
        name,
        True,
        message + ".",
        image=image,
        original_size=size,
        proba=ordered,
        label=label,
        confidence=confidence,
        ood=bool(reasons),
        ood_reason="; ".join(reasons),
        ood_score=score,
    )


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def results_table(results: Sequence[UploadResult]) -> list[dict[str, Any]]:
    """One row per file, with the columns of ``CSV_COLUMNS`` (None where a value is missing)."""
    rows = []
    for r in results:
        size = f"{r.original_size[0]}x{r.original_size[1]}" if r.original_size else None
        rows.append(
            {
                "file": r.name,
                "status": "classified" if r.ok else "error",
                "verdict": r.label,
                "p_parasitized": _round(r.proba[0]) if r.proba else None,
                "confidence": _round(r.confidence),
                "out_of_distribution": r.ood if r.ok else None,
                "ood_score": _round(r.ood_score, 1),
                "original_size": size,
                "note": r.ood_reason if r.ok else r.message,
            }
        )
    return rows


def distance_text(score: float | None, threshold: float | None) -> str | None:
    """An OOD distance with its limit for scale, e.g. ``"85 (limit 70)"`` (None without one)."""
    if score is None or not math.isfinite(score):
        return None
    if threshold is None or not math.isfinite(threshold):
        return f"{score:.0f}"
    return f"{score:.0f} (limit {threshold:.0f})"


def display_table(
    results: Sequence[UploadResult], *, ood_threshold: float | None = None
) -> list[dict[str, str]]:
    """The results table as shown on the page: ``results_table`` as text.

    Probabilities become percentages, the out-of-distribution flag a text marker
    (``UNUSUAL_MARK`` or "") and the Mahalanobis distance is shown with the reference's limit
    for scale; a value a file does not have (a file that could not be classified) is
    ``tables.MISSING``.

    Args:
        results: The verdicts.
        ood_threshold: The training reference's distance limit, or None without a reference.

    Returns:
        One row per file with the keys of ``DISPLAY_COLUMNS``, every value a string.
    """
    rows = []
    for r, row in zip(results, results_table(results), strict=True):
        shown = {key: row[key] for key in DISPLAY_COLUMNS if key in row}
        shown["p_parasitized"] = tables.percent(row["p_parasitized"])
        shown["confidence"] = tables.percent(row["confidence"])
        shown["unusual"] = UNUSUAL_MARK if r.ok and r.ood else ""
        shown["ood_distance"] = distance_text(r.ood_score, ood_threshold)
        rows.append(
            {key: tables.MISSING if shown[key] is None else str(shown[key]) for key in shown}
        )
    return [{key: row[key] for key in DISPLAY_COLUMNS} for row in rows]


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    # A leading quote keeps spreadsheets from running a file name as a formula.
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def results_csv(results: Sequence[UploadResult]) -> bytes:
    """The results table as UTF-8 CSV with a header row."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in results_table(results):
        writer.writerow([_csv_cell(row[c]) for c in CSV_COLUMNS])
    return buf.getvalue().encode("utf-8")
