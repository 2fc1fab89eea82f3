"""The exported-models folder: where it is, its index, metrics, histories, snapshots and models."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from malgan import release, tables
from malgan.data import CLASSES
from malgan.errors import ModelError
from malgan.reference import Reference
from malgan.runtime import (
    FP32,
    INT8,
    CellGenerator,
    Classifier,
    Generator,
    GeneratorSet,
    read_json,
)

EXPORTED_ENV = "MALGAN_EXPORTED"
DEFAULT_EXPORTED = Path(__file__).resolve().parents[1] / "exported"
INDEX_NAME = "index.json"
METRICS_NAME = "metrics.json"
SMOKE_NOTICE = (
    "These models are **smoke-test placeholders**, trained for a few iterations to exercise "
    "every stage. Their images and figures are not meaningful yet; the release models come from "
    "the GPU training run."
)
# The training profiles of ``python -m train.pipeline --profile`` that the banner names.
SMOKE_PROFILE, CPU_PROFILE, GPU_PROFILE = "smoke", "cpu", "gpu"


@dataclass(frozen=True)
class ModelsNotice:
    """What the page frame says about the models in the folder.

    Attributes:
        text: The banner's Markdown.
        warning: Shown as a warning (the smoke-test placeholders) rather than as information.
    """

    text: str
    warning: bool = False


def exported_dir() -> Path:
    """The folder of exported models: ``$MALGAN_EXPORTED``, or the project's ``exported/``."""
    return Path(os.environ.get(EXPORTED_ENV, DEFAULT_EXPORTED))


# The index and metrics.


def load_index(exported: str | os.PathLike) -> dict[str, Any]:
    """Read ``index.json``, which lists the generators, the classifier and the reference."""
    index = read_json(Path(exported) / INDEX_NAME, "model index")
    if not isinstance(index.get(release.GENERATORS), list) or release.CLASSIFIER not in index:
        raise ModelError(f"The model index in {exported} lacks generators or a classifier.")
    return index


def load_metrics(exported: str | os.PathLike) -> dict[str, Any]:
    """Read ``metrics.json``."""
    return read_json(Path(exported) / METRICS_NAME, "metrics file")


def generator_entry(index: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The index entry of one generator."""
    for entry in release.index_generators(index):
        if entry.get(release.NAME) == name:
            return entry
    known = [entry.get(release.NAME) for entry in release.index_generators(index)]
    raise ModelError(f"No generator called {name!r}; the index lists {known}.")


def generator_names(index: Mapping[str, Any]) -> dict[str, str]:
    """Generator names to the names shown to people, in index order."""
    return {
        g[release.NAME]: g.get(release.DISPLAY_NAME, g[release.NAME])
        for g in release.index_generators(index)
    }


def profile_name(index: Mapping[str, Any]) -> str:
    """The training profile that made the index's models: "smoke", "cpu", "gpu" or ""."""
    profile = index.get(release.PROFILE)
    name = profile.get(release.NAME) if isinstance(profile, Mapping) else None
    if index.get(release.SMOKE) or name == SMOKE_PROFILE:
        return SMOKE_PROFILE
    return name if isinstance(name, str) else ""


def models_notice(index: Mapping[str, Any]) -> ModelsNotice | None:
    """What the banner says about the index's models, from its training profile.

    Smoke-test models get the placeholder warning; CPU-trained models say how long they trained
    on how many cores and that a GPU release will replace them; GPU models say they are that
    release, with their minutes and GPU. Models of no known profile get no banner.
    """
    name = profile_name(index)
    if name == SMOKE_PROFILE:
        return ModelsNotice(SMOKE_NOTICE, warning=True)
    profile = index.get(release.PROFILE)
    profile = profile if isinstance(profile, Mapping) else {}
    hardware = profile.get(release.HARDWARE)
    hardware = hardware if isinstance(hardware, Mapping) else {}
    minutes = profile.get(release.TRAIN_MINUTES)
    took = (
        tables.counted(round(minutes), "minute")
        if isinstance(minutes, int | float) and math.isfinite(minutes)
        else None
    )
    if name == CPU_PROFILE:
        cores = hardware.get("cpu_count")
        on = f"on {tables.counted(cores, 'CPU core')}" if isinstance(cores, int) else "on the CPU"
        trained = f"{took} {on}" if took else f"trained {on}"
        return ModelsNotice(f"CPU-trained models: {trained}. A GPU release will replace them.")
    if name == GPU_PROFILE:
        gpu = hardware.get("gpu")
        details = " ".join(
            part
            for part in (f"in {took}" if took else "", f"on {gpu}" if isinstance(gpu, str) else "")
            if part
        )
        return ModelsNotice(
            "These are the GPU release models" + (f", trained {details}." if details else ".")
        )
    return None


def measured_recovery(metrics: Mapping[str, Any], name: str) -> dict[str, float]:
    """Recovery rates of a generator per class in ``metrics.json`` (empty when unknown)."""
    entry = release.model_metrics(metrics, name)
    rates = {}
    for label, value in (entry.get(release.RECOVERY) or {}).items():
        rate = value.get("rate") if isinstance(value, dict) else None
        if label in CLASSES and isinstance(rate, int | float) and math.isfinite(rate):
            rates[label] = float(rate)
    return rates


# Files named in the index.


def _inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` resolved, or None when it lies outside ``root``."""
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) else None


def load_history(exported: str | os.PathLike, relative: str) -> Any:
    """Read a training-history JSON file named in ``index.json["history"]``.

    Args:
        exported: The exported-models folder.
        relative: The file's path relative to that folder.

    Returns:
        The parsed JSON (a dict for generators, a list of epochs for the classifier).

    Raises:
        ModelError: The path leaves the folder, or the file is missing or not JSON.
    """
    root = Path(exported).resolve()
    path = _inside(root, relative)
    if path is None:
        raise ModelError(f"The history file {relative!r} lies outside {root}.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"The training history {path} is missing.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"The training history {path} cannot be read ({err}).") from None


def snapshot_files(
    index: Mapping[str, Any], model: str, exported: str | os.PathLike
) -> dict[str, list[tuple[int, Path]]]:
    """Sample-grid snapshots of a model by class, ordered by iteration.

    Entries with a bad iteration, an unknown class or a path outside the folder are left out;
    files that do not exist are kept (the page says they are missing).

    Returns:
        ``{class: [(iteration, path), ...]}`` for the classes that have snapshots.
    """
    root = Path(exported).resolve()
    out: dict[str, list[tuple[int, Path]]] = {}
    entries = release.snapshot_entries(index, model)
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        label = entry.get(release.SNAPSHOT_CLASS)
        iteration, file = entry.get(release.SNAPSHOT_ITERATION), entry.get(release.FILE)
        if label not in CLASSES or not isinstance(iteration, int) or not isinstance(file, str):
            continue
        path = _inside(root, file)
        if path is not None:
            out.setdefault(label, []).append((iteration, path))
    return {label: sorted(out[label]) for label in CLASSES if label in out}


# Models.

# The precisions that run by default, the fastest that pass parity (``python -m
# benchmarks.synth_throughput --int8``): a generator's int8 copy where ``train.quantize`` made
# one (pixels within 1/255 of fp32's at the median, the classifier's verdicts the same on 99.8%
# of cells), and the fp32 classifier: its int8 copy agrees on verdicts but moves the features
# the privacy filter measures (of 2,000 generated cells of seed 7, 23 too close to a training
# cell become 2).
GENERATOR_PRECISION = INT8
CLASSIFIER_PRECISION = FP32


def load_generator(
    exported: str | os.PathLike, name: str, *, precision: str = FP32
) -> CellGenerator:
    """Load a generator listed in the index: one file, or one file per class.

    With ``precision="int8"``, each file's int8 copy where one passed parity (see
    ``runtime.usable_copy``); the generator's ``precision`` says what runs.
    """
    root = Path(exported)
    entry = generator_entry(load_index(root), name)
    if release.FILES in entry:
        files = {label: root / file for label, file in entry[release.FILES].items()}
        display_name = entry.get(release.DISPLAY_NAME, name)
        return GeneratorSet.load(files, name=name, display_name=display_name, precision=precision)
    return Generator.load(root / entry[release.FILE], precision=precision)


def load_classifier(
    exported: str | os.PathLike, name: str | None = None, *, precision: str = FP32
) -> Classifier:
    """Load the index's classifier (or a named entry of its ``classifiers`` list).

    ``precision`` as for ``load_generator``.
    """
    root = Path(exported)
    index = load_index(root)
    entry = index[release.CLASSIFIER]
    if name is not None:
        matches = [e for e in release.index_classifiers(index) if e.get(release.NAME) == name]
        if not matches:
            raise ModelError(f"No classifier called {name!r} in the index.")
        entry = matches[0]
    return Classifier.load(root / entry[release.FILE], precision=precision)


def load_reference(exported: str | os.PathLike) -> Reference:
    """Load the training reference named in the index."""
    root = Path(exported)
    entry = load_index(root).get(release.REFERENCE)
    if not entry:
        raise ModelError(f"The model index in {root} names no training reference.")
    return Reference.load(root / entry[release.FILE], sha256=entry.get(release.SHA256))


def load_models(
    exported: str | os.PathLike,
    model: str,
    *,
    need_reference: bool = True,
    precision: str = FP32,
    classifier_precision: str | None = None,
) -> tuple[CellGenerator, Classifier, Reference | None]:
    """Load a generator, the classifier and the training reference.

    Args:
        exported: The folder of exported models.
        model: Generator name in the index.
        need_reference: Raise when the reference is unavailable; otherwise return None for it.
        precision: ``fp32``, or ``int8`` for the copies that passed parity where they exist.
        classifier_precision: The classifier's, when it differs from ``precision``.

    Returns:
        ``(generator, classifier, reference)``.

    Raises:
        ModelError: With a clear message for a missing folder, unknown name or missing or
            corrupt file.
    """
    root = Path(exported)
    if not root.is_dir():
        raise ModelError(
            f"The exported models folder {root} does not exist; export the models or name "
            "another folder."
        )
    generator = load_generator(root, model, precision=precision)
    classifier = load_classifier(root, precision=classifier_precision or precision)
    try:
        reference = load_reference(root)
    except ModelError:
        if need_reference:
            raise
        reference = None
    return generator, classifier, reference
