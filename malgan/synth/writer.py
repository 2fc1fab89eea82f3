"""Export of a synthetic NIH-layout dataset: generated cells that pass class and privacy filters."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from malgan import latent, metrics
from malgan.data import CLASSES
from malgan.errors import SynthError
from malgan.reference import Reference
from malgan.runtime import VIEW_SETS, CellGenerator, Classifier
from malgan.synth.files import (
    DEFAULT_PREFIX,
    MANIFEST_NAME,
    SUMMARY_NAME,
    cell_file_name,
    check_target,
    install,
    patient_key_of,
    write_manifest,
    write_pngs,
)
from malgan.synth.filters import (
    ACCEPTED,
    DEFAULT_MIN_CONFIDENCE,
    REASON_LABELS,
    REASONS,
    FiltersExhaustedError,
    class_threshold,
    rejection_reasons,
)

DEFAULT_SEED = latent.DEFAULT_SEED
DEFAULT_BATCH = 256
DEFAULT_MAX_ATTEMPTS_FACTOR = 20
DEFAULT_WORKERS = 2
# The class filter's dihedral views: one for every cell, and all 8 for a cell whose one-view
# probability lies within the recheck margin of the filter's threshold. Its kept-or-rejected
# verdicts agree with 8 views on every one of 2,000 cells of seed 7, at 1.44 views per cell on
# average, where 4, 2 and 1 views for every cell agree on 99.70%, 99.30% and 99.35%, and a band
# of 0.1 on 99.95% (``python -m benchmarks.synth_throughput --margins 0.05 0.1 0.2``).
DEFAULT_VIEWS = 1
DEFAULT_RECHECK_MARGIN = 0.2
# Lowest acceptance rate assumed when sizing the next batch, so that a class whose cells are
# mostly rejected is not drawn one latent at a time.
MIN_RATE_ESTIMATE = 0.05

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SynthConfig:
    """The settings of a synthetic-dataset export (the ``malgan-synth`` flags, in snake_case).

    Attributes:
        n_per_class: Cells to write per class (>= 1).
        seed: Latent seed (>= 0).
        truncation: Truncation threshold of the latents; None (or a value <= 0) for none.
        min_confidence: Smallest accepted P(intended class), in [0, 1].
        class_filter: Reject cells classified as the other class or below ``min_confidence``.
        privacy_filter: Reject cells whose nearest training code is closer than the threshold.
        privacy_threshold: Threshold of the privacy filter; the reference's stored threshold
            (1st percentile of held-out real-to-train distances) when None.
        max_attempts_factor: Stop after this many latents per requested cell of a class.
        batch: Latents generated and classified per call.
        prefix: Leading marker of the file names.
        workers: Threads that encode and write the PNGs.
        views: Dihedral views the class filter averages (1, 2, 4 or 8); None for the
            classifier's training-time choice. Fewer views can change which cells are kept,
            so the manifest records the count each cell's verdict used.
        recheck_margin: A cell whose probability after ``views`` views lies within this of
            the class filter's threshold is classified again over all 8 views (see
            ``Classifier.predict_rechecked``); 0 never does.

    Raises:
        SynthError: For a setting out of range, at construction (the privacy threshold, which
            may come from the training reference, when the export starts).
    """

    n_per_class: int
    seed: int = DEFAULT_SEED
    truncation: float | None = None
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    class_filter: bool = True
    privacy_filter: bool = True
    privacy_threshold: float | None = None
    max_attempts_factor: int = DEFAULT_MAX_ATTEMPTS_FACTOR
    batch: int = DEFAULT_BATCH
    prefix: str = DEFAULT_PREFIX
    workers: int = DEFAULT_WORKERS
    views: int | None = DEFAULT_VIEWS
    recheck_margin: float = DEFAULT_RECHECK_MARGIN

    def __post_init__(self) -> None:
        at_least_one = {
            "number of cells per class": self.n_per_class,
            "batch size": self.batch,
            "number of writer threads": self.workers,
            "attempts factor": self.max_attempts_factor,
        }
        for what, value in at_least_one.items():
            if int(value) < 1:
                raise SynthError(f"The {what} must be at least 1, got {value}.")
        if int(self.seed) < 0:
            raise SynthError(f"The seed must be >= 0, got {self.seed}.")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise SynthError(
                f"The minimum confidence must be in [0, 1], got {self.min_confidence}."
            )
        if self.views is not None and self.views not in VIEW_SETS:
            raise SynthError(f"The number of views must be one of {sorted(VIEW_SETS)}.")
        if not 0.0 <= self.recheck_margin <= 0.5:
            raise SynthError(f"The recheck margin must be in [0, 0.5], got {self.recheck_margin}.")
        try:
            latent.sample_z(0, 0, 1, truncation=self.truncation)
        except ValueError as err:
            raise SynthError(f"Bad truncation: {err}.") from None

    @property
    def latent_truncation(self) -> float | None:
        """The truncation ``latent.sample_z`` applies: None for none."""
        off = self.truncation is None or self.truncation <= 0
        return None if off else float(self.truncation)

    @property
    def max_attempts(self) -> int:
        """Latents allowed per class before the export gives up."""
        return self.max_attempts_factor * self.n_per_class

    @property
    def class_threshold(self) -> float:
        """P(intended class) at which the class filter's verdict changes."""
        return class_threshold(self.min_confidence)


# The summary.

# Fields of SynthSummary that differ between machines and runs: kept out of summary.json.
MACHINE_FIELDS = ("out_dir", "seconds", "images_per_second")


@dataclass(frozen=True)
class SynthSummary:
    """What an export produced and rejected.

    ``summary.json`` holds what the settings decide; the folder and the timings
    (``MACHINE_FIELDS``) differ between machines and runs, so they stay in what the CLI prints
    and the app shows, and out of the file a user downloads.

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
        classifier_views: Dihedral views the class filter averaged (before rechecks).
        recheck_margin: The band around the class filter's threshold rechecked over 8 views
            (0 when nothing was).
        rechecked: Drawn cells classified again over 8 views, per class.
        generator_precision: Precision of the generator's session (fp32, int8 or mixed).
        classifier_precision: Precision of the classifier's session.
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
    classifier_views: int
    recheck_margin: float
    rechecked: dict[str, int]
    generator_precision: str
    classifier_precision: str

    @property
    def total_accepted(self) -> int:
        """Cells written over both classes."""
        return sum(self.accepted.values())

    @property
    def total_rejected(self) -> dict[str, int]:
        """Rejections per reason over both classes."""
        return {r: sum(c.get(r, 0) for c in self.rejected.values()) for r in REASONS}

    def to_dict(self, *, machine: bool = False) -> dict[str, Any]:
        """A JSON-ready dict: the content of ``summary.json``, with ``machine`` also the
        ``MACHINE_FIELDS`` (the folder and the timings)."""
        out = asdict(self)
        if not machine:
            for name in MACHINE_FIELDS:
                del out[name]
        out["total_accepted"] = self.total_accepted
        out["total_rejected"] = self.total_rejected
        return out

    @property
    def _rechecks(self) -> str:
        if not self.recheck_margin:
            return ""
        return (
            f" (8 for the {sum(self.rechecked.values())} within {self.recheck_margin:g} of the "
            "threshold)"
        )

    def describe(self) -> str:
        """A short multi-line report for the terminal."""
        threshold = f"{self.privacy_threshold:.4g}" if self.privacy_filter else "off"
        classes = f"on (min confidence {self.min_confidence:g})" if self.class_filter else "off"
        lines = [
            f"Wrote {self.total_accepted} cells of {self.display_name} to {self.out_dir} "
            f"in {self.seconds:.1f} s ({self.images_per_second:.1f} images/s).",
            f"Filters: class {classes}, privacy threshold {threshold}; classifier "
            f"{self.classifier_precision} over {self.classifier_views} view(s){self._rechecks}, "
            f"generator {self.generator_precision}.",
        ]
        for label in self.accepted:
            counts = ", ".join(f"{r.replace('_', ' ')} {self.rejected[label][r]}" for r in REASONS)
            lines.append(
                f"  {label}: {self.accepted[label]} written of {self.attempts[label]} tried; "
                f"rejected: {counts}."
            )
        return "\n".join(lines)


# The export.


def _fmt(value: float | None, digits: int = 6) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{digits}f}"


def _batch_size(needed: int, accepted: int, tried: int, batch: int, left: int) -> int:
    """Latents to draw next: enough for the cells still needed at the acceptance rate so far."""
    rate = accepted / tried if tried else 1.0
    wanted = math.ceil(needed / max(rate, MIN_RATE_ESTIMATE))
    return max(1, min(batch, left, wanted))


def privacy_threshold(config: SynthConfig, reference: Reference | None) -> float | None:
    """The privacy filter's distance: the config's, else the reference's (None when off).

    Raises:
        SynthError: When the filter is on without a reference, or the distance is not >= 0.
    """
    if not config.privacy_filter:
        return None
    if reference is None:
        raise SynthError("The privacy filter needs the training reference (reference.npz).")
    chosen = config.privacy_threshold
    threshold = float(reference.privacy_threshold if chosen is None else chosen)
    if not (math.isfinite(threshold) and threshold >= 0):
        raise SynthError(f"The privacy threshold must be a distance >= 0, got {threshold}.")
    return threshold


def _summary(
    target: Path,
    config: SynthConfig,
    generator: CellGenerator,
    classifier: Classifier,
    threshold: float | None,
    batches: _Batches,
    rows: list[dict[str, Any]],
    seconds: float,
) -> SynthSummary:
    """What an export wrote, from its settings, its batches and the manifest's rows."""
    total = sum(batches.accepted.values())
    return SynthSummary(
        out_dir=str(target),
        model=generator.name,
        display_name=generator.display_name,
        model_sha256={label: generator.file_sha256(label) for label in CLASSES},
        classifier_sha256=str(classifier.meta.get("sha256", "")),
        seed=config.seed,
        truncation=config.truncation,
        n_per_class=config.n_per_class,
        prefix=config.prefix,
        class_filter=config.class_filter,
        min_confidence=float(config.min_confidence),
        privacy_filter=config.privacy_filter,
        privacy_threshold=threshold,
        max_attempts_factor=config.max_attempts_factor,
        accepted=batches.accepted,
        attempts=batches.attempts,
        rejected=batches.rejected,
        patient_keys={
            label: sorted({r["patient_key"] for r in rows if r["class"] == label})
            for label in CLASSES
        },
        seconds=round(seconds, 3),
        images_per_second=round(total / seconds, 2) if seconds > 0 else 0.0,
        classifier_views=classifier.check_views(config.views),
        recheck_margin=batches.recheck_margin,
        rechecked=batches.rechecked,
        generator_precision=generator.precision,
        classifier_precision=classifier.precision,
    )


def export_dataset(
    out_dir: str | os.PathLike,
    config: SynthConfig,
    *,
    generator: CellGenerator,
    classifier: Classifier,
    reference: Reference | None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> SynthSummary:
    """Generate, filter and write a synthetic dataset in NIH's layout.

    For each class, latent indices 0, 1, 2, … are drawn with ``latent.sample_z(seed, …,
    start=i)`` (so cell i is the cell i of the same seed anywhere in malgan), generated and
    classified in batches; a rejected cell is replaced by the next index. The dataset is
    written to a hidden sibling folder and renamed to ``out_dir`` only when complete, so an
    interrupted export never looks finished. The same settings give the same bytes, in any
    folder: ``summary.json`` leaves out the folder and the timings.

    Args:
        out_dir: The dataset folder (missing, empty, or a previous export with ``overwrite``).
        config: The settings.
        generator: The generator (a conditional file or a per-class pair).
        classifier: The classifier that filters and scores the cells.
        reference: The training reference (privacy filter, distances); may be None when the
            privacy filter is off, and the distance column is then empty.
        overwrite: Replace a previous export in ``out_dir``.
        progress: Called as ``progress(cells_written, cells_total)`` after each batch.

    Returns:
        The summary, also written to ``summary.json``.

    Raises:
        SynthError: For a generator without both classes, a missing reference or an unusable
            folder.
        FiltersExhaustedError: When a class cannot be filled within the attempt limit.
    """
    config = replace(config, truncation=config.latent_truncation)
    missing = [label for label in CLASSES if label not in generator.classes]
    if missing:
        raise SynthError(f"{generator.display_name} cannot generate {missing}.")
    threshold = privacy_threshold(config, reference)
    target = check_target(out_dir, overwrite=overwrite)

    start_time = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        with ThreadPoolExecutor(max_workers=config.workers) as pool:
            batches = _Batches(staging, pool, config, generator, classifier, reference, threshold)
            rows = batches.fill(progress)
        write_manifest(staging / MANIFEST_NAME, rows)
        seconds = time.perf_counter() - start_time
        summary = _summary(target, config, generator, classifier, threshold, batches, rows, seconds)
        (staging / SUMMARY_NAME).write_text(
            json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8"
        )
        check_target(target, overwrite=overwrite)
        install(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


class _Batches:
    """Draws, filters and writes the cells of each class in batches, counting as it goes.

    Attributes:
        accepted: Cells written, per class.
        attempts: Latents used, per class.
        rejected: Rejections per class and reason.
    """

    def __init__(
        self,
        staging: Path,
        pool: ThreadPoolExecutor,
        config: SynthConfig,
        generator: CellGenerator,
        classifier: Classifier,
        reference: Reference | None,
        threshold: float | None,
    ) -> None:
        self.staging, self.pool, self.config = staging, pool, config
        self.generator, self.classifier, self.reference = generator, classifier, reference
        self.threshold = threshold
        self.accepted = dict.fromkeys(CLASSES, 0)
        self.attempts = dict.fromkeys(CLASSES, 0)
        self.rejected = {label: dict.fromkeys(REASONS, 0) for label in CLASSES}
        self.rechecked = dict.fromkeys(CLASSES, 0)
        # Without the class filter no verdict is near a line, so nothing is rechecked.
        self.recheck_margin = float(config.recheck_margin) if config.class_filter else 0.0

    def fill(self, progress: ProgressCallback | None) -> list[dict[str, Any]]:
        """Fill each class folder; returns the manifest rows in class and latent order."""
        rows: list[dict[str, Any]] = []
        writes: list[Future] = []
        total = self.config.n_per_class * len(CLASSES)
        if progress is not None:
            progress(0, total)
        for label in CLASSES:
            folder = self.staging / label
            folder.mkdir()
            while self.accepted[label] < self.config.n_per_class:
                left = self.config.max_attempts - self.attempts[label]
                if left <= 0:
                    _raise_exhausted(
                        label, self.accepted, self.attempts, self.rejected, self.config
                    )
                items = self._batch(label, folder, left, rows)
                writes.append(self.pool.submit(write_pngs, items))
                if progress is not None:
                    progress(sum(self.accepted.values()), total)
        for future in writes:
            future.result()
        order = {label: i for i, label in enumerate(CLASSES)}
        rows.sort(key=lambda r: (order[r["class"]], r["latent_index"]))
        return rows

    def _batch(
        self, label: str, folder: Path, left: int, rows: list[dict[str, Any]]
    ) -> list[tuple[Path, np.ndarray]]:
        """One batch of ``label``: counts it, adds its manifest rows, returns the cells to write."""
        cfg, generator, reference = self.config, self.generator, self.reference
        intended = self.classifier.classes.index(label)
        needed = cfg.n_per_class - self.accepted[label]
        size = _batch_size(needed, self.accepted[label], self.attempts[label], cfg.batch, left)
        start = self.attempts[label]
        z = latent.sample_z(cfg.seed, size, generator.z_dim, truncation=cfg.truncation, start=start)
        images = generator.generate(z, label)  # [B, S, S, 3]
        proba, features, views = self.classifier.predict_rechecked(
            images,
            batch=cfg.batch,
            views=cfg.views,
            margin=self.recheck_margin,
            column=intended,
            threshold=cfg.class_threshold,
        )
        views_first = self.classifier.check_views(cfg.views)
        distances = (
            metrics.nearest_distances(reference.codes(features), reference.train_codes)
            if reference is not None
            else None
        )
        reasons = rejection_reasons(
            proba,
            intended,
            distances,
            min_confidence=cfg.min_confidence,
            class_filter=cfg.class_filter,
            privacy_threshold=self.threshold,
        )
        kept = np.flatnonzero(reasons == ACCEPTED)[:needed]
        # Latents after the last cell needed are left unused, so neither counted nor
        # written: the result does not depend on the batch size.
        used = int(kept[-1]) + 1 if len(kept) == needed else size
        for reason in reasons[:used]:
            if reason != ACCEPTED:
                self.rejected[label][str(reason)] += 1
        self.attempts[label] += used
        self.rechecked[label] += int(np.count_nonzero(views[:used] > views_first))
        self.accepted[label] += len(kept)
        items = []
        for i in kept.tolist():
            index = start + i
            name = cell_file_name(generator.name, label, cfg.seed, index, prefix=cfg.prefix)
            path = folder / name
            if path.parent != folder:  # cannot happen with name_tag; never write outside
                raise SynthError(f"Refusing the unsafe file name {name!r}.")
            items.append((path, images[i]))
            rows.append(
                {
                    "file": f"{label}/{name}",
                    "class": label,
                    "model": generator.name,
                    "model_sha256": generator.file_sha256(label),
                    "seed": cfg.seed,
                    "latent_index": index,
                    "truncation": "" if cfg.truncation is None else f"{cfg.truncation:g}",
                    "generator_precision": generator.precision,
                    "classifier_precision": self.classifier.precision,
                    "classifier_views": int(views[i]),
                    "p_class": _fmt(float(proba[i, intended])),
                    "nearest_train_distance": _fmt(
                        None if distances is None else float(distances[i])
                    ),
                    "patient_key": patient_key_of(
                        generator.name, cfg.seed, index, prefix=cfg.prefix
                    ),
                }
            )
        return items


def _raise_exhausted(
    label: str,
    accepted: dict[str, int],
    attempts: dict[str, int],
    rejected: dict[str, dict[str, int]],
    config: SynthConfig,
) -> None:
    counts = ", ".join(f"{REASON_LABELS[r]}: {rejected[label][r]}" for r in REASONS)
    produced = ", ".join(f"{k} {v}" for k, v in accepted.items())
    raise FiltersExhaustedError(
        f"Only {accepted[label]} of {config.n_per_class} {label} cells passed the filters after "
        f"{attempts[label]} attempts, the most allowed ({config.max_attempts_factor} per cell; "
        f"{counts}); cells produced so far: {produced}. Nothing was written.",
        label=label,
        accepted=dict(accepted),
        attempts=dict(attempts),
        rejected={k: dict(v) for k, v in rejected.items()},
    )
