"""Cached loading of the exported models, index, metrics and upload verdicts for the pages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st
from PIL import Image

from malgan import artifacts, decode, nearest, release, runtime, uploads
from malgan.errors import DataError, ModelError
from malgan.reference import Reference

T = TypeVar("T")


# The app's Streamlit config, which also holds the decoding pixel limit of uploads.
APP_CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"


# Cached verdicts kept per process: each entry holds the prepared cells of one upload set.
CACHED_UPLOAD_SETS = 16


# Cached resources: one ONNX Runtime session per model, shared by every user (sessions are
# thread-safe for concurrent ``run`` calls).
@st.cache_resource(show_spinner="Loading model…")
def cached_generator(exported: Path, name: str) -> runtime.CellGenerator:
    """A generator of a models folder, loaded once per process (its int8 copy where one
    passed parity, as ``malgan-synth`` runs it)."""
    return artifacts.load_generator(exported, name, precision=artifacts.GENERATOR_PRECISION)


@st.cache_resource(show_spinner="Loading classifier…")
def cached_classifier(exported: Path, name: str | None) -> runtime.Classifier:
    """The classifier (or a named one) of a models folder, loaded once per process."""
    return artifacts.load_classifier(exported, name)


@st.cache_resource(show_spinner=False)
def _reference(exported: Path) -> Reference:
    return artifacts.load_reference(exported)


@st.cache_data(show_spinner=False)
def _index(exported: Path) -> dict[str, Any]:
    return artifacts.load_index(exported)


@st.cache_data(show_spinner=False)
def _metrics(exported: Path) -> dict[str, Any]:
    return artifacts.load_metrics(exported)


@st.cache_data(show_spinner="Listing the training cells…")
def training_files(root: Path, skip: tuple[str, ...]) -> list[Path]:
    """The training patients' files of an NIH folder, in the reference's order."""
    return nearest.training_files(root, skip=skip)


@st.cache_data(show_spinner=False)
def history(exported: Path, relative: str) -> Any:
    """A training-history JSON file, parsed (cached per folder and file; see
    ``artifacts.load_history``)."""
    return artifacts.load_history(exported, relative)


@st.cache_data(show_spinner=False)
def image_width(path: str) -> int:
    """Width in pixels of an image file, read from its header (0 when it cannot be read)."""
    try:
        with Image.open(path) as img:
            return int(img.size[0])
    except (OSError, ValueError, Image.DecompressionBombError):
        return 0


def named_history(index: dict[str, Any] | None, name: str) -> Any:
    """The training history the index names ``name``, or None: none is named, or (said on the
    page) its file cannot be read."""
    relative = release.history_file(index, name)
    if not relative:
        return None
    try:
        return history(artifacts.exported_dir(), relative)
    except ModelError as err:
        st.warning(str(err), icon="⚠️")
        return None


def _guarded(load: Callable[[], T], what: str) -> T | None:
    """Run a loader; show a clear error on the page instead of a traceback."""
    try:
        return load()
    except (ModelError, OSError, ValueError) as err:
        st.error(f"**{what} is unavailable.** {err}", icon="⚠️")
    return None


def _quiet(load: Callable[[], T]) -> T | None:
    """Run a loader; None when it fails (another part of the page says why)."""
    try:
        return load()
    except ModelError:
        return None


def index() -> dict[str, Any] | None:
    """The model index, or None after showing why it is unavailable."""
    return _guarded(lambda: _index(artifacts.exported_dir()), "The model index")


def metrics() -> dict[str, Any] | None:
    """``metrics.json``, or None after showing why it is unavailable."""
    return _guarded(lambda: _metrics(artifacts.exported_dir()), "The metrics file")


def generator(name: str) -> runtime.CellGenerator | None:
    """A generator by index name, or None after showing why it is unavailable."""
    exported = artifacts.exported_dir()
    return _guarded(lambda: cached_generator(exported, name), f"The generator {name!r}")


def classifier(name: str | None = None) -> runtime.Classifier | None:
    """The classifier (or a named one of the comparison), or None after showing why."""
    return _guarded(lambda: cached_classifier(artifacts.exported_dir(), name), "The classifier")


def reference() -> Reference | None:
    """The training reference (privacy filter, OOD warnings), or None after showing why."""
    return _guarded(lambda: _reference(artifacts.exported_dir()), "The training reference")


def generator_choices() -> dict[str, str]:
    """Generator names to display names, from the index (empty when it is unavailable)."""
    idx = _quiet(lambda: _index(artifacts.exported_dir()))
    return {} if idx is None else artifacts.generator_names(idx)


def models_notice() -> artifacts.ModelsNotice | None:
    """What the banner says about the models (see ``artifacts.models_notice``); None without
    an index."""
    idx = _quiet(lambda: _index(artifacts.exported_dir()))
    return None if idx is None else artifacts.models_notice(idx)


def smoke_models() -> bool:
    """Whether the index marks the models as smoke-test placeholders (False when unreadable)."""
    idx = _quiet(lambda: _index(artifacts.exported_dir()))
    return idx is not None and artifacts.profile_name(idx) == artifacts.SMOKE_PROFILE


def quiet_metrics() -> dict[str, Any] | None:
    """``metrics.json``, or None when it is unreadable (another part of the page says why)."""
    return _quiet(lambda: _metrics(artifacts.exported_dir()))


def measured_recovery(name: str) -> dict[str, float]:
    """Recovery rates of a generator per class from ``metrics.json`` (empty when unknown)."""
    data = quiet_metrics()
    return {} if data is None else artifacts.measured_recovery(data, name)


# Uploads: every page decodes and checks uploaded cells the same way.
def upload_pixel_limit() -> int:
    """The decoding pixel limit of uploads, from the app's config (the default after a warning
    when the setting is unusable)."""
    try:
        return decode.max_pixels_from_config(APP_CONFIG)
    except DataError as err:
        st.warning(f"{err}. Using the default limit of {decode.MAX_PIXELS:,} pixels.", icon="⚠️")
        return decode.MAX_PIXELS


@st.cache_data(show_spinner="Classifying…", max_entries=CACHED_UPLOAD_SETS)
def _classified(
    exported: Path,
    files: tuple[tuple[str, bytes], ...],
    max_pixels: int,
    _classifier: runtime.Classifier,
    _reference: Reference | None,
) -> list[uploads.UploadResult]:
    """Verdicts on an upload set, cached by models folder, file contents and pixel limit."""
    return uploads.classify_files(
        files, _classifier, _reference, max_pixels=max_pixels, size=_classifier.img_size
    )


def classify_uploads(
    files: Sequence[tuple[str, bytes]],
    classifier: runtime.Classifier,
    reference: Reference | None,
) -> list[uploads.UploadResult]:
    """Uploaded files decoded, classified and checked for being out of distribution.

    Args:
        files: ``(name, bytes)`` of each upload.
        classifier: The classifier; its ``img_size`` is the size the cells are prepared at.
        reference: The training reference, or None for the background check alone.

    Returns:
        One ``uploads.UploadResult`` per file (see ``uploads.classify_files``).
    """
    exported = artifacts.exported_dir()
    return _classified(exported, tuple(files), upload_pixel_limit(), classifier, reference)
