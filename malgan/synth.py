"""Export of a synthetic NIH-layout dataset: generated cells that pass class and privacy filters."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import shutil
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from malgan import artifacts, imaging, latent, metrics, runtime
from malgan.data import CLASSES
from malgan.errors import ModelError
from malgan.reference import Reference

DEFAULT_MODEL = "cgan"
DEFAULT_PREFIX = "SYN"
DEFAULT_SEED = 0
DEFAULT_BATCH = 256
DEFAULT_MIN_CONFIDENCE = 0.5
DEFAULT_MAX_ATTEMPTS_FACTOR = 20
DEFAULT_WORKERS = 2
# Lowest acceptance rate assumed when sizing the next batch, so that a class whose cells are
# mostly rejected is not drawn one latent at a time.
MIN_RATE_ESTIMATE = 0.05
# Consecutive latent indices that share one pseudo-patient key (see ``cell_file_name``).
CELLS_PER_GROUP = 100
# Longest model or prefix component of a file name; the rest of the name is fixed-length.
MAX_TAG_LEN = 40
# zlib level of the PNGs, fixed so that the bytes do not depend on Pillow's default.
PNG_COMPRESS_LEVEL = 6
# ZIP entries carry this timestamp so that the archive depends on the files only.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

MANIFEST_NAME = "manifest.csv"
SUMMARY_NAME = "summary.json"
EXPORT_ENTRIES = frozenset({*CLASSES, MANIFEST_NAME, SUMMARY_NAME})
MANIFEST_COLUMNS = (
    "file",
    "class",
    "model",
    "model_sha256",
    "seed",
    "latent_index",
    "truncation",
    "p_class",
    "nearest_train_distance",
)
CLASS_INITIALS = {label: label[0] for label in CLASSES}

# Rejection reasons, in order of precedence: a cell failing several filters counts once, under
# the first reason that applies.
PRIVACY = "privacy"
WRONG_CLASS = "wrong_class"
LOW_CONFIDENCE = "low_confidence"
REASONS = (PRIVACY, WRONG_CLASS, LOW_CONFIDENCE)
REASON_LABELS = {
    PRIVACY: "too close to a training cell",
    WRONG_CLASS: "classified as the other class",
    LOW_CONFIDENCE: "low confidence",
}
ACCEPTED = ""

EXIT_OK = 0
EXIT_FILTERS_EXHAUSTED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

_THIN = re.compile("thin", re.IGNORECASE)
ProgressCallback = Callable[[int, int], None]


class SynthError(ValueError):
    """An export cannot start or finish; the message says why and what to change."""


class FiltersExhaustedError(SynthError):
    """The filters rejected so many cells that the attempt limit was reached.

    Attributes:
        accepted: Cells that had passed, per class, when the export stopped.
        attempts: Latents tried per class.
        rejected: Rejections per class and reason.
    """

    def __init__(
        self,
        message: str,
        *,
        accepted: dict[str, int],
        attempts: dict[str, int],
        rejected: dict[str, dict[str, int]],
    ) -> None:
        super().__init__(message)
        self.accepted = accepted
        self.attempts = attempts
        self.rejected = rejected


# File names.


def name_tag(text: str, *, default: str = "model") -> str:
    """A file-name component that can neither leave its folder nor break the patient key.

    The text is passed through ``imaging.safe_name`` (no separators, no ``..``, no leading dot),
    cut to ``MAX_TAG_LEN`` characters, and every ``thin`` becomes ``th-in``, because
    ``malgan.data.patient_key`` cuts a name at its first ``thin``.

    Args:
        text: A model name, prefix or other free text.
        default: Used when nothing safe is left.

    Returns:
        The component, made of ``[A-Za-z0-9._-]`` only.
    """
    tag = imaging.safe_name(text, default=default)[:MAX_TAG_LEN]
    return _THIN.sub(lambda match: f"{match.group(0)[:2]}-{match.group(0)[2:]}", tag)


def patient_key_of(
    model: str, seed: int, latent_index: int, *, prefix: str = DEFAULT_PREFIX
) -> str:
    """The pseudo-patient key of a synthetic cell, e.g. ``SYN-cgan-s7-g0``.

    Synthetic cells have no patient. They are grouped by model, seed and a block of
    ``CELLS_PER_GROUP`` consecutive latent indices, shared by both classes: the cells a
    conditional model draws from the same latent (one per class) stay in one group, a
    patient-level split of a synthetic set puts both classes in every split, and two exports
    with different seeds or models never share a key.

    Args:
        model: Generator name.
        seed: Latent seed.
        latent_index: Index of the cell's latent.
        prefix: Leading marker of synthetic names (may be empty).

    Returns:
        The key, exactly what ``malgan.data.patient_key`` reads back from the file name.
    """
    parts = [name_tag(prefix, default="")] if name_tag(prefix, default="") else []
    parts += [name_tag(model), f"s{int(seed)}", f"g{int(latent_index) // CELLS_PER_GROUP}"]
    return "-".join(parts)


def cell_file_name(
    model: str, label: str, seed: int, latent_index: int, *, prefix: str = DEFAULT_PREFIX
) -> str:
    """NIH-style file name of a synthetic cell.

    ``<key>ThinF_IMG_<class initial>_cell_<latent index>.png``, e.g.
    ``SYN-cgan-s7-g0ThinF_IMG_P_cell_12.png``, where ``<key>`` is ``patient_key_of``; NIH
    names read ``C100P61ThinF_IMG_20150918_144104_cell_162.png``. The class initial keeps the
    names of both classes distinct when folders are merged.

    Args:
        model: Generator name (made safe with ``name_tag``).
        label: Class name.
        seed: Latent seed.
        latent_index: Index of the cell's latent.
        prefix: Leading marker of synthetic names.

    Returns:
        A bare file name (no folder part).
    """
    key = patient_key_of(model, seed, latent_index, prefix=prefix)
    initial = CLASS_INITIALS.get(label) or name_tag(label, default="X")[:1]
    return f"{key}ThinF_IMG_{initial}_cell_{int(latent_index)}.png"


# Filters.


def rejection_reasons(
    proba: np.ndarray,
    intended: int,
    distances: np.ndarray | None,
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    class_filter: bool = True,
    privacy_threshold: float | None = None,
) -> np.ndarray:
    """Why each generated cell is rejected, or ``ACCEPTED`` ("") when it is kept.

    Precedence: ``privacy`` (nearest training code closer than the threshold), then
    ``wrong_class`` (the classifier's argmax is another class), then ``low_confidence``
    (P(intended) below ``min_confidence``).

    Args:
        proba: float [N, C] classifier probabilities.
        intended: Column of the intended class.
        distances: float [N] distances to the nearest training code, or None.
        min_confidence: Smallest accepted P(intended class).
        class_filter: Apply the wrong-class and confidence filters.
        privacy_threshold: Reject distances below this; None switches the privacy filter off.

    Returns:
        str array [N] of reasons.
    """
    proba = np.asarray(proba, np.float64)
    reasons = np.full(len(proba), ACCEPTED, dtype=object)
    if class_filter:
        low = proba[:, intended] < min_confidence
        reasons[low] = LOW_CONFIDENCE
        reasons[np.argmax(proba, axis=1) != intended] = WRONG_CLASS
    if privacy_threshold is not None:
        if distances is None:
            raise ValueError("The privacy filter needs distances to the training codes.")
        reasons[np.asarray(distances, np.float64) < privacy_threshold] = PRIVACY
    return reasons.astype(str)


# The summary.


@dataclass(frozen=True)
class SynthSummary:
    """What an export produced and rejected.

    Attributes:
        out_dir: The dataset folder.
        model: Generator name.
        display_name: Generator name shown to people.
        model_sha256: sha256 of the ONNX file that made each class.
        classifier_sha256: sha256 of the filtering classifier.
        seed: Latent seed.
        truncation: Truncation threshold, or None.
        n_per_class: Cells written per class.
        prefix: Leading marker of the file names.
        class_filter: Whether wrong-class and low-confidence cells were rejected.
        min_confidence: Smallest accepted P(intended class).
        privacy_filter: Whether cells too close to a training cell were rejected.
        privacy_threshold: Distance threshold of the privacy filter (None when it is off).
        max_attempts_factor: Attempts allowed per class, as a multiple of ``n_per_class``.
        accepted: Cells written, per class.
        attempts: Latents used, per class (accepted plus rejected).
        rejected: Rejections per class and reason.
        patient_keys: Pseudo-patient keys of the written cells, per class.
        seconds: Wall-clock time of the export.
        images_per_second: Written cells per second.
    """

    out_dir: str
    model: str
    display_name: str
    model_sha256: dict[str, str]
    classifier_sha256: str
    seed: int
    truncation: float | None
    n_per_class: int
    prefix: str
    class_filter: bool
    min_confidence: float
    privacy_filter: bool
    privacy_threshold: float | None
    max_attempts_factor: int
    accepted: dict[str, int]
    attempts: dict[str, int]
    rejected: dict[str, dict[str, int]]
    patient_keys: dict[str, list[str]]
    seconds: float
    images_per_second: float

    @property
    def total_accepted(self) -> int:
        """Cells written over both classes."""
        return sum(self.accepted.values())

    @property
    def total_rejected(self) -> dict[str, int]:
        """Rejections per reason over both classes."""
        return {r: sum(c.get(r, 0) for c in self.rejected.values()) for r in REASONS}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the content of ``summary.json``)."""
        out = asdict(self)
        out["total_accepted"] = self.total_accepted
        out["total_rejected"] = self.total_rejected
        return out

    def describe(self) -> str:
        """A short multi-line report for the terminal."""
        threshold = f"{self.privacy_threshold:.4g}" if self.privacy_filter else "off"
        classes = f"on (min confidence {self.min_confidence:g})" if self.class_filter else "off"
        lines = [
            f"Wrote {self.total_accepted} cells of {self.display_name} to {self.out_dir} "
            f"in {self.seconds:.1f} s ({self.images_per_second:.1f} images/s).",
            f"Filters: class {classes}, privacy threshold {threshold}.",
        ]
        for label in self.accepted:
            counts = ", ".join(f"{r.replace('_', ' ')} {self.rejected[label][r]}" for r in REASONS)
            lines.append(
                f"  {label}: {self.accepted[label]} written of {self.attempts[label]} tried; "
                f"rejected: {counts}."
            )
        return "\n".join(lines)


# Output folder handling.


def _foreign_entries(folder: Path) -> list[str]:
    """Entries of ``folder`` that a malgan export would not have written."""
    foreign = []
    for entry in sorted(folder.iterdir()):
        if entry.name not in EXPORT_ENTRIES:
            foreign.append(entry.name)
        elif entry.name in CLASSES:
            if not entry.is_dir() or entry.is_symlink():
                foreign.append(entry.name)
                continue
            foreign += [
                f"{entry.name}/{f.name}"
                for f in sorted(entry.iterdir())
                if f.suffix.lower() != ".png" or not f.is_file() or f.is_symlink()
            ]
    return foreign


def check_target(out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check that a dataset may be written to ``out_dir``.

    An empty or missing folder is fine. A non-empty one is replaced only with ``overwrite``,
    and only when it holds nothing but a previous export (class folders of PNGs,
    ``manifest.csv``, ``summary.json``), so that no other file can be lost.

    Args:
        out_dir: The dataset folder.
        overwrite: Replace a previous export.

    Returns:
        The absolute folder path.

    Raises:
        SynthError: With the reason the folder cannot be used.
    """
    target = Path(out_dir).expanduser().resolve()
    if target.parent == target:
        raise SynthError(f"Cannot export into {target}: choose a dataset folder.")
    if target.exists() and not target.is_dir():
        raise SynthError(f"{target} exists and is not a folder.")
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise SynthError(
                f"{target} is not empty. Choose a new folder, or pass --overwrite to replace "
                "a previous export there."
            )
        if not (target / MANIFEST_NAME).is_file():
            raise SynthError(
                f"{target} is not empty and holds no {MANIFEST_NAME}, so it is not a previous "
                "export; it is left untouched. Choose another folder."
            )
        foreign = _foreign_entries(target)
        if foreign:
            shown = ", ".join(foreign[:5]) + (" …" if len(foreign) > 5 else "")
            raise SynthError(
                f"{target} holds files that are not part of an export ({shown}); it is left "
                "untouched. Move them away or choose another folder."
            )
    return target


def _install(staging: Path, target: Path) -> None:
    """Move a finished staging folder to ``target``, replacing an empty folder or old export."""
    if target.is_dir():
        if any(target.iterdir()):
            retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
            return
        target.rmdir()
    staging.rename(target)


def _write_pngs(items: Sequence[tuple[Path, np.ndarray]]) -> None:
    for path, image in items:
        Image.fromarray(image).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def _fmt(value: float | None, digits: int = 6) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{digits}f}"


# The export.


def _batch_size(needed: int, accepted: int, tried: int, batch: int, left: int) -> int:
    """Latents to draw next: enough for the cells still needed at the acceptance rate so far."""
    rate = accepted / tried if tried else 1.0
    wanted = math.ceil(needed / max(rate, MIN_RATE_ESTIMATE))
    return max(1, min(batch, left, wanted))


def export_dataset(
    out_dir: str | os.PathLike,
    *,
    generator: runtime.CellGenerator,
    classifier: runtime.Classifier,
    reference: Reference | None,
    n_per_class: int,
    seed: int = DEFAULT_SEED,
    truncation: float | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    class_filter: bool = True,
    privacy_filter: bool = True,
    privacy_threshold: float | None = None,
    max_attempts_factor: int = DEFAULT_MAX_ATTEMPTS_FACTOR,
    batch: int = DEFAULT_BATCH,
    prefix: str = DEFAULT_PREFIX,
    overwrite: bool = False,
    workers: int = DEFAULT_WORKERS,
    progress: ProgressCallback | None = None,
) -> SynthSummary:
    """Generate, filter and write a synthetic dataset in NIH's layout.

    For each class, latent indices 0, 1, 2, … are drawn with ``latent.sample_z(seed, …,
    start=i)`` (so cell i is the cell i of the same seed anywhere in malgan), generated and
    classified in batches; a rejected cell is replaced by the next index. The dataset is
    written to a hidden sibling folder and renamed to ``out_dir`` only when complete, so an
    interrupted export never looks finished. Same arguments give the same PNG and manifest
    bytes; only the timing fields of ``summary.json`` vary.

    Args:
        out_dir: The dataset folder (missing, empty, or a previous export with ``overwrite``).
        generator: The generator (a conditional file or a per-class pair).
        classifier: The classifier that filters and scores the cells.
        reference: The training reference (privacy filter, distances); may be None when the
            privacy filter is off, and the distance column is then empty.
        n_per_class: Cells to write per class (>= 1).
        seed: Latent seed (>= 0).
        truncation: Truncation threshold of the latents, or None.
        min_confidence: Smallest accepted P(intended class), in [0, 1].
        class_filter: Reject cells classified as the other class or below ``min_confidence``.
        privacy_filter: Reject cells whose nearest training code is closer than the threshold.
        privacy_threshold: Threshold of the privacy filter; the reference's stored threshold
            (1st percentile of held-out real-to-train distances) when None.
        max_attempts_factor: Stop after this many latents per requested cell of a class.
        batch: Latents generated and classified per call.
        prefix: Leading marker of the file names.
        overwrite: Replace a previous export in ``out_dir``.
        workers: Threads that encode and write the PNGs.
        progress: Called as ``progress(cells_written, cells_total)`` after each batch.

    Returns:
        The summary, also written to ``summary.json``.

    Raises:
        SynthError: For bad arguments or an unusable folder.
        FiltersExhaustedError: When a class cannot be filled within the attempt limit.
    """
    n_per_class, seed, batch = int(n_per_class), int(seed), int(batch)
    if n_per_class < 1:
        raise SynthError(f"The number of cells per class must be at least 1, got {n_per_class}.")
    if seed < 0:
        raise SynthError(f"The seed must be >= 0, got {seed}.")
    if batch < 1:
        raise SynthError(f"The batch size must be at least 1, got {batch}.")
    if workers < 1:
        raise SynthError(f"The number of writer threads must be at least 1, got {workers}.")
    if max_attempts_factor < 1:
        raise SynthError(f"The attempts factor must be at least 1, got {max_attempts_factor}.")
    if not 0.0 <= min_confidence <= 1.0:
        raise SynthError(f"The minimum confidence must be in [0, 1], got {min_confidence}.")
    try:
        latent.sample_z(seed, 0, generator.z_dim, truncation=truncation)
    except ValueError as err:
        raise SynthError(f"Bad truncation: {err}.") from None
    if truncation is not None and truncation <= 0:
        truncation = None
    missing = [label for label in CLASSES if label not in generator.classes]
    if missing:
        raise SynthError(f"{generator.display_name} cannot generate {missing}.")
    threshold: float | None = None
    if privacy_filter:
        if reference is None:
            raise SynthError("The privacy filter needs the training reference (reference.npz).")
        threshold = reference.privacy_threshold if privacy_threshold is None else privacy_threshold
        threshold = float(threshold)
        if not (math.isfinite(threshold) and threshold >= 0):
            raise SynthError(f"The privacy threshold must be a distance >= 0, got {threshold}.")
    target = check_target(out_dir, overwrite=overwrite)

    start_time = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            rows, accepted, attempts, rejected = _generate_all(
                staging,
                pool,
                generator=generator,
                classifier=classifier,
                reference=reference,
                n_per_class=n_per_class,
                seed=seed,
                truncation=truncation,
                min_confidence=float(min_confidence),
                class_filter=class_filter,
                threshold=threshold,
                max_attempts=max_attempts_factor * n_per_class,
                batch=batch,
                prefix=prefix,
                progress=progress,
            )
        _write_manifest(staging / MANIFEST_NAME, rows)
        seconds = time.perf_counter() - start_time
        total = sum(accepted.values())
        summary = SynthSummary(
            out_dir=str(target),
            model=generator.name,
            display_name=generator.display_name,
            model_sha256={label: generator.file_sha256(label) for label in CLASSES},
            classifier_sha256=str(classifier.meta.get("sha256", "")),
            seed=seed,
            truncation=truncation,
            n_per_class=n_per_class,
            prefix=prefix,
            class_filter=class_filter,
            min_confidence=float(min_confidence),
            privacy_filter=privacy_filter,
            privacy_threshold=threshold,
            max_attempts_factor=int(max_attempts_factor),
            accepted=accepted,
            attempts=attempts,
            rejected=rejected,
            patient_keys={
                label: sorted({r["patient_key"] for r in rows if r["class"] == label})
                for label in CLASSES
            },
            seconds=round(seconds, 3),
            images_per_second=round(total / seconds, 2) if seconds > 0 else 0.0,
        )
        (staging / SUMMARY_NAME).write_text(
            json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8"
        )
        check_target(target, overwrite=overwrite)
        _install(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _generate_all(
    staging: Path,
    pool: ThreadPoolExecutor,
    *,
    generator: runtime.CellGenerator,
    classifier: runtime.Classifier,
    reference: Reference | None,
    n_per_class: int,
    seed: int,
    truncation: float | None,
    min_confidence: float,
    class_filter: bool,
    threshold: float | None,
    max_attempts: int,
    batch: int,
    prefix: str,
    progress: ProgressCallback | None,
) -> tuple[list[dict[str, Any]], dict[str, int], dict[str, int], dict[str, dict[str, int]]]:
    """Fill each class folder; returns (manifest rows, accepted, attempts, rejected)."""
    rows: list[dict[str, Any]] = []
    accepted = dict.fromkeys(CLASSES, 0)
    attempts = dict.fromkeys(CLASSES, 0)
    rejected = {label: dict.fromkeys(REASONS, 0) for label in CLASSES}
    writes: list[Future] = []
    total = n_per_class * len(CLASSES)
    if progress is not None:
        progress(0, total)
    for label in CLASSES:
        folder = staging / label
        folder.mkdir()
        intended = classifier.classes.index(label)
        sha = generator.file_sha256(label)
        while accepted[label] < n_per_class:
            left = max_attempts - attempts[label]
            if left <= 0:
                _raise_exhausted(label, accepted, attempts, rejected, n_per_class)
            needed = n_per_class - accepted[label]
            size = _batch_size(needed, accepted[label], attempts[label], batch, left)
            start = attempts[label]
            z = latent.sample_z(seed, size, generator.z_dim, truncation=truncation, start=start)
            images = generator.generate(z, label)  # [B, 64, 64, 3]
            proba, features = classifier.predict(images, batch=batch)
            distances = (
                metrics.nearest_distances(reference.codes(features), reference.train_codes)
                if reference is not None
                else None
            )
            reasons = rejection_reasons(
                proba,
                intended,
                distances,
                min_confidence=min_confidence,
                class_filter=class_filter,
                privacy_threshold=threshold,
            )
            kept = np.flatnonzero(reasons == ACCEPTED)[:needed]
            # Latents after the last cell needed are left unused, so neither counted nor
            # written: the result does not depend on the batch size.
            used = int(kept[-1]) + 1 if len(kept) == needed else size
            for reason in reasons[:used]:
                if reason != ACCEPTED:
                    rejected[label][str(reason)] += 1
            attempts[label] += used
            accepted[label] += len(kept)
            items = []
            for i in kept.tolist():
                index = start + i
                name = cell_file_name(generator.name, label, seed, index, prefix=prefix)
                path = folder / name
                if path.parent != folder:  # cannot happen with name_tag; never write outside
                    raise SynthError(f"Refusing the unsafe file name {name!r}.")
                items.append((path, images[i]))
                rows.append(
                    {
                        "file": f"{label}/{name}",
                        "class": label,
                        "model": generator.name,
                        "model_sha256": sha,
                        "seed": seed,
                        "latent_index": index,
                        "truncation": "" if truncation is None else f"{truncation:g}",
                        "p_class": _fmt(float(proba[i, intended])),
                        "nearest_train_distance": _fmt(
                            None if distances is None else float(distances[i])
                        ),
                        "patient_key": patient_key_of(generator.name, seed, index, prefix=prefix),
                    }
                )
            writes.append(pool.submit(_write_pngs, items))
            if progress is not None:
                progress(sum(accepted.values()), total)
    for future in writes:
        future.result()
    order = {label: i for i, label in enumerate(CLASSES)}
    rows.sort(key=lambda r: (order[r["class"]], r["latent_index"]))
    return rows, accepted, attempts, rejected


def _raise_exhausted(
    label: str,
    accepted: dict[str, int],
    attempts: dict[str, int],
    rejected: dict[str, dict[str, int]],
    n_per_class: int,
) -> None:
    counts = ", ".join(f"{REASON_LABELS[r]}: {rejected[label][r]}" for r in REASONS)
    produced = ", ".join(f"{k} {v}" for k, v in accepted.items())
    raise FiltersExhaustedError(
        f"Only {accepted[label]} of {n_per_class} {label} cells passed the filters after "
        f"{attempts[label]} attempts ({counts}); cells produced so far: {produced}. Nothing was "
        "written. Lower the minimum confidence, turn a filter off, or raise the attempts factor.",
        accepted=dict(accepted),
        attempts=dict(attempts),
        rejected={k: dict(v) for k, v in rejected.items()},
    )


def _write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)


def rejection_rows(rejected: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Rejections as long-format rows ``{"class", "reason", "label", "count"}`` for charts.

    Args:
        rejected: Rejections per class and reason (``SynthSummary.rejected``).

    Returns:
        One row per class and reason, classes in ``CLASSES`` order, reasons in ``REASONS`` order.
    """
    return [
        {
            "class": label,
            "reason": reason,
            "label": REASON_LABELS[reason],
            "count": int(rejected.get(label, {}).get(reason, 0)),
        }
        for label in CLASSES
        for reason in REASONS
    ]


def read_manifest(folder: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a dataset's ``manifest.csv``."""
    with (Path(folder) / MANIFEST_NAME).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def zip_folder(folder: str | os.PathLike, *, top: str) -> bytes:
    """A ZIP of a dataset folder under one top folder, e.g. ``top/Parasitized/….png``.

    PNGs are stored (already compressed); other files are deflated. Entries are sorted and
    carry a fixed timestamp, so the archive depends on the files only.

    Args:
        folder: The dataset folder.
        top: Name of the archive's top folder (made safe).

    Returns:
        The archive's bytes.
    """
    root = Path(folder)
    top = imaging.safe_name(top, default="dataset")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            parts = [imaging.safe_name(part) for part in path.relative_to(root).parts]
            info = zipfile.ZipInfo("/".join([top, *parts]), date_time=ZIP_DATE)
            stored = path.suffix.lower() == ".png"
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


# Loading and the command line.


def _whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m malgan.synth``."""
    parser = argparse.ArgumentParser(
        prog="python -m malgan.synth",
        description="Write a synthetic dataset in NIH's layout (DIR/Parasitized/*.png, "
        "DIR/Uninfected/*.png, DIR/manifest.csv, DIR/summary.json) from an exported generator, "
        "keeping only cells the classifier assigns to their class and that are not too close "
        "to a training cell.",
        epilog="Exit codes: 0 done, 1 the filters rejected too many cells, 2 bad input.",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="generator name in the index")
    parser.add_argument("--n-per-class", type=_whole_number, required=True, help="cells per class")
    parser.add_argument("--out", required=True, help="dataset folder (missing or empty)")
    parser.add_argument("--seed", type=_whole_number, default=DEFAULT_SEED)
    parser.add_argument(
        "--truncation", type=_number, default=None, help="latent truncation threshold (none)"
    )
    parser.add_argument(
        "--min-confidence",
        type=_number,
        default=DEFAULT_MIN_CONFIDENCE,
        help="smallest accepted P(intended class) (default %(default)s)",
    )
    parser.add_argument(
        "--no-class-filter",
        action="store_true",
        help="keep cells whatever the classifier says (p_class is still recorded)",
    )
    privacy = parser.add_mutually_exclusive_group()
    privacy.add_argument(
        "--privacy-threshold",
        type=_number,
        default=None,
        help="reject cells whose nearest training code is closer (default: the reference's "
        "1st percentile of held-out real-to-train distances)",
    )
    privacy.add_argument("--no-privacy-filter", action="store_true")
    parser.add_argument(
        "--max-attempts-factor",
        type=_whole_number,
        default=DEFAULT_MAX_ATTEMPTS_FACTOR,
        help="give up after this many attempts per requested cell (default %(default)s)",
    )
    parser.add_argument("--exported", default=None, help="folder of exported models")
    parser.add_argument("--batch", type=_whole_number, default=DEFAULT_BATCH)
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="leading marker of file names")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a previous export in --out"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    exported = Path(args.exported) if args.exported else artifacts.exported_dir()
    try:
        if args.n_per_class < 1:
            raise SynthError(f"--n-per-class must be at least 1, got {args.n_per_class}.")
        check_target(args.out, overwrite=args.overwrite)
        generator, classifier, reference = artifacts.load_models(
            exported, args.model, need_reference=not args.no_privacy_filter
        )
        total = args.n_per_class * len(CLASSES)
        with tqdm(total=total, unit="cell", desc="Exporting", disable=args.quiet) as bar:

            def progress(done: int, _total: int) -> None:
                bar.update(done - bar.n)

            summary = export_dataset(
                args.out,
                generator=generator,
                classifier=classifier,
                reference=reference,
                n_per_class=args.n_per_class,
                seed=args.seed,
                truncation=args.truncation,
                min_confidence=args.min_confidence,
                class_filter=not args.no_class_filter,
                privacy_filter=not args.no_privacy_filter,
                privacy_threshold=args.privacy_threshold,
                max_attempts_factor=args.max_attempts_factor,
                batch=args.batch,
                prefix=args.prefix,
                overwrite=args.overwrite,
                progress=progress,
            )
    except FiltersExhaustedError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FILTERS_EXHAUSTED
    except (SynthError, ModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        print(f"error: cannot write the dataset: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("Interrupted; nothing was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary.describe())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
