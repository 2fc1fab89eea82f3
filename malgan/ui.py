"""Streamlit glue shared by the dashboard pages: cached models, the page frame and URL state."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import streamlit as st

from malgan import latent, runtime
from malgan.data import CLASSES

T = TypeVar("T")
EXPORTED_ENV = "MALGAN_EXPORTED"
DEFAULT_EXPORTED = Path(__file__).resolve().parents[1] / "exported"
CELL_PX = 64
DEFAULT_SEED = 7
DEFAULT_MODEL = "cgan"
NOT_CLINICAL = (
    "Research software. The images are synthetic and the classifier is not a medical device: "
    "**not for clinical use.**"
)


def exported_dir() -> str:
    """The folder of exported models (``$MALGAN_EXPORTED`` or the project's ``exported/``)."""
    return str(Path(os.environ.get(EXPORTED_ENV, DEFAULT_EXPORTED)))


# Cached resources: one ONNX Runtime session per model, shared by every user (sessions are
# thread-safe for concurrent ``run`` calls).
@st.cache_resource(show_spinner="Loading model…")
def _generator(exported: str, name: str) -> runtime.Generator | runtime.GeneratorSet:
    return runtime.load_generator(exported, name)


@st.cache_resource(show_spinner="Loading classifier…")
def _classifier(exported: str, name: str | None) -> runtime.Classifier:
    return runtime.load_classifier(exported, name)


@st.cache_resource(show_spinner=False)
def _reference(exported: str) -> runtime.Reference:
    return runtime.load_reference(exported)


@st.cache_data(show_spinner=False)
def _index(exported: str) -> dict[str, Any]:
    return runtime.load_index(exported)


@st.cache_data(show_spinner=False)
def _metrics(exported: str) -> dict[str, Any]:
    return runtime.load_metrics(exported)


def _guarded(load: Callable[[], T], what: str) -> T | None:
    """Run a loader; show a clear error on the page instead of a traceback."""
    try:
        return load()
    except runtime.ModelError as err:
        st.error(f"**{what} is unavailable.** {err}", icon="⚠️")
    except (OSError, ValueError) as err:
        st.error(f"**{what} is unavailable.** {err}", icon="⚠️")
    return None


def index() -> dict[str, Any] | None:
    """The model index, or None after showing why it is unavailable."""
    return _guarded(lambda: _index(exported_dir()), "The model index")


def metrics() -> dict[str, Any] | None:
    """``metrics.json``, or None after showing why it is unavailable."""
    return _guarded(lambda: _metrics(exported_dir()), "The metrics file")


def generator(name: str) -> runtime.Generator | runtime.GeneratorSet | None:
    """A generator by index name, or None after showing why it is unavailable."""
    return _guarded(lambda: _generator(exported_dir(), name), f"The generator {name!r}")


def classifier(name: str | None = None) -> runtime.Classifier | None:
    """The classifier (or a named one of the comparison), or None after showing why."""
    return _guarded(lambda: _classifier(exported_dir(), name), "The classifier")


def reference() -> runtime.Reference | None:
    """The training reference (privacy filter, OOD warnings), or None after showing why."""
    return _guarded(lambda: _reference(exported_dir()), "The training reference")


def generator_choices() -> dict[str, str]:
    """Generator names to display names, from the index (empty when it is unavailable)."""
    try:
        idx = _index(exported_dir())
    except runtime.ModelError:
        return {}
    return {g["name"]: g.get("display_name", g["name"]) for g in idx["generators"]}


# Cached pure results.
@st.cache_data(show_spinner=False, max_entries=256)
def sample_cells(
    exported: str, name: str, label: str, seed: int, n: int, truncation: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Cells ``0..n-1`` of a seed and their classifier probabilities.

    Returns:
        ``(images uint8 [n, 64, 64, 3], proba float32 [n, 2])``.
    """
    gen = _generator(exported, name)
    z = latent.sample_z(seed, n, gen.z_dim, truncation=truncation)
    images = gen.generate(z, label)
    return images, _classifier(exported, None).predict_proba(images)


# The page frame.
def placeholder_notice() -> str | None:
    """Why the committed models are placeholders, or None for release models."""
    try:
        idx = _index(exported_dir())
    except runtime.ModelError:
        return None
    if idx.get("smoke"):
        return (
            "These models are **smoke-test placeholders**, trained for a few iterations to "
            "exercise every stage. Their images and figures are not meaningful yet; the release "
            "models come from the GPU training run."
        )
    if idx.get("placeholder"):
        return str(idx["placeholder"])
    return None


def page_setup(title: str, icon: str, intro: str = "") -> None:
    """Title, placeholder banner and shared sidebar of every page."""
    st.title(f"{icon} {title}")
    notice = placeholder_notice()
    if notice:
        st.warning(notice, icon="🚧")
    if intro:
        st.caption(intro)
    with st.sidebar:
        st.caption(NOT_CLINICAL)


# URL state: every control can live in the query string so a view can be shared.
def url_value(key: str, default: T, parse: Callable[[str], T]) -> T:
    """Seed ``st.session_state[key]`` from the URL once, then return the session value.

    A value in the URL that does not parse falls back to ``default``.
    """
    if key not in st.session_state:
        raw = st.query_params.get(key)
        value = default
        if raw is not None:
            try:
                value = parse(raw)
            except (TypeError, ValueError):
                value = default
        st.session_state[key] = value
    return st.session_state[key]


def url_int(key: str, default: int, lo: int, hi: int) -> int:
    """An integer control's initial value from the URL, clamped to [lo, hi]."""
    return url_value(key, default, lambda s: min(hi, max(lo, int(s))))


def url_float(key: str, default: float, lo: float, hi: float) -> float:
    """A float control's initial value from the URL, clamped to [lo, hi]."""

    def parse(s: str) -> float:
        value = float(s)
        if not np.isfinite(value):
            raise ValueError(s)
        return min(hi, max(lo, value))

    return url_value(key, default, parse)


def url_choice(key: str, default: str, choices: list[str] | tuple[str, ...]) -> str:
    """A choice control's initial value from the URL, if it is one of ``choices``."""

    def parse(s: str) -> str:
        if s not in choices:
            raise ValueError(s)
        return s

    return url_value(key, default if default in choices else choices[0], parse)


def sync_url(*keys: str) -> None:
    """Write the current values of these session keys to the URL."""
    for key in keys:
        if key in st.session_state:
            value = st.session_state[key]
            st.query_params[key] = f"{value:g}" if isinstance(value, float) else str(value)


def class_label(index: int) -> str:
    """Class name of a label index."""
    return CLASSES[index]
