"""Streamlit glue shared by the dashboard pages: cached models, the page frame and URL state."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import streamlit as st

from malgan import artifacts, controls, decode, imaging, runtime, uploads
from malgan.charts import CLASS_COLOURS
from malgan.data import CLASSES
from malgan.errors import DataError, ModelError
from malgan.reference import Reference

T = TypeVar("T")
DEFAULT_SEED = 7
DEFAULT_MODEL = "cgan"
APP_NAME = "malgan"
APP_ICON = "🔬"
TITLE_SEPARATOR = " · "
NOT_CLINICAL = (
    "Research software. The images are synthetic and the classifier is not a medical device: "
    "**not for clinical use.**"
)
# The app's Streamlit config, which also holds the decoding pixel limit of uploads.
APP_CONFIG = Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml"
# Cached verdicts kept per process: each entry holds the prepared cells of one upload set.
CACHED_UPLOAD_SETS = 16


# Cached resources: one ONNX Runtime session per model, shared by every user (sessions are
# thread-safe for concurrent ``run`` calls).
@st.cache_resource(show_spinner="Loading model…")
def cached_generator(exported: Path, name: str) -> runtime.CellGenerator:
    """A generator of a models folder, loaded once per process."""
    return artifacts.load_generator(exported, name)


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


@st.cache_data(show_spinner=False)
def history(exported: Path, relative: str) -> Any:
    """A training-history JSON file, parsed (cached per folder and file; see
    ``artifacts.load_history``)."""
    return artifacts.load_history(exported, relative)


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


def measured_recovery(name: str) -> dict[str, float]:
    """Recovery rates of a generator per class from ``metrics.json`` (empty when unknown)."""
    data = _quiet(lambda: _metrics(artifacts.exported_dir()))
    return {} if data is None else artifacts.measured_recovery(data, name)


# The page frame.
def _leave_folder_navigation() -> None:
    """Hand a first visit that arrived on a page link over to ``streamlit_app.py``'s navigation.

    Streamlit decides once per server, on its first script run, whether the app uses the older
    ``pages/`` folder navigation. When that first run is a shared link to a page rather than
    the home page, it runs the page directly with an automatic sidebar, and the navigation in
    ``streamlit_app.py`` never takes over. Clearing the flag and rerunning gives that visitor
    (and every later one) the real navigation, on the page the link asked for.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without the folder navigation
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def page_title(title: str) -> str:
    """The browser tab's title of a page, e.g. ``"Sample · malgan"``."""
    return f"{title}{TITLE_SEPARATOR}{APP_NAME}"


def page_setup(title: str, icon: str) -> None:
    """The frame of every page, drawn by ``streamlit_app.py`` from the page's ``st.Page``.

    Sets the wide layout and the browser tab's title, then draws the heading, the banner that
    says which models these are (smoke-test placeholders, CPU-trained or the GPU release) and
    the shared sidebar.
    """
    st.set_page_config(page_title=page_title(title), page_icon=icon or APP_ICON, layout="wide")
    st.title(f"{icon} {title}".strip())
    notice = models_notice()
    if notice is not None and notice.warning:
        st.warning(notice.text, icon="🚧")
    elif notice is not None:
        st.info(notice.text, icon="ℹ️")
    with st.sidebar:
        st.caption(NOT_CLINICAL)


def page_intro(intro: str) -> None:
    """The first line of every page script: what the page is for, under the frame's heading."""
    _leave_folder_navigation()
    st.caption(intro)


def choose_generator(key: str, where: Any = st, *, purpose: str, label: str = "Model") -> str:
    """The generator picker that opens the generation pages.

    Seeds ``st.session_state[key]`` from the URL and draws a select box of the index's
    generators in ``where``. When the index lists none, the page stops after saying so.

    Args:
        key: The widget and URL key.
        where: The container of the select box (``st``, a column, ...).
        purpose: What the page would do, to end the sentence "so there is nothing to ...".
        label: The select box's label.

    Returns:
        The chosen generator's index name.
    """
    choices = generator_choices()
    if not choices:
        st.error(
            f"No generator is listed in the model index, so there is nothing to {purpose}.",
            icon="⚠️",
        )
        st.stop()
    controls.url_choice(key, DEFAULT_MODEL, list(choices))
    return where.selectbox(label, list(choices), format_func=choices.get, key=key)


def require_generator(name: str) -> runtime.CellGenerator:
    """The generator ``name`` with the classifier loaded; the page stops after showing why
    either is unavailable."""
    gen = generator(name)
    if gen is None or classifier() is None:
        st.stop()
    return gen


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


def breakable_name(name: str) -> str:
    """A file name as Markdown that wraps only after its underscores, hyphens and spaces.

    Browsers otherwise break a long name without spaces anywhere (``…cell_124.`` then ``png``).
    Show it with ``unsafe_allow_html=True``: the break points are ``<wbr>`` tags, and the name's
    own characters stay escaped.
    """
    parts = re.split(r"(?<=[_\-\s])", name)
    return "<wbr>".join(uploads.escape_markdown(part) for part in parts if part)


def warn_if_unusual(result: uploads.UploadResult) -> None:
    """Say so under an uploaded cell that does not look like the cells of the training set."""
    if result.ok and result.ood:
        st.warning(f"**{uploads.OOD_WARNING.capitalize()}:** {result.ood_reason}.", icon="⚠️")


# The look of the cells.
CLASS_ICONS = {"Parasitized": "🟣", "Uninfected": "🔵"}
# Cells are shown at this integer multiple of their size (nearest neighbour).
VIEW_SCALE = 2
# Cells per row of a grid.
GRID_COLUMNS = 8
# Space between the images of one ``st.image`` list (Streamlit lays them out edge to edge).
IMAGE_GAP_PX = 8
# Verdict marks: an upright multiplication cross, since the ballot X (U+2717) is drawn slanted.
AGREE_MARK = "✓"
DISAGREE_MARK = "✕"


def spaced_images(key: str, gap_px: int = IMAGE_GAP_PX) -> Any:
    """A container whose ``st.image`` lists keep ``gap_px`` between their images.

    Args:
        key: The container's widget key (also its CSS class, ``st-key-<key>``).
        gap_px: Space between neighbouring images, in pixels.

    Returns:
        The container, to use as a ``with`` block.
    """
    st.html(f"<style>.st-key-{key} [data-testid='stImage'] {{ column-gap: {gap_px}px; }}</style>")
    return st.container(key=key)


def balanced_row(count: int, fits: int) -> int:
    """How many of ``count`` items to put per row: as few rows as ``fits`` per row allows, with
    the items spread evenly over them (3 items of which 3 fit make one row, not 2 and 1; 4 make
    2 and 2, not 3 and 1).
    """
    if count <= 0:
        return 1
    rows = -(-count // max(1, fits))
    return -(-count // rows)


def show_cells(
    cells: np.ndarray | Sequence[np.ndarray], where: Any = st, *, scale: int = VIEW_SCALE, **kw
) -> None:
    """Show one cell [H, W, 3] or a row of cells [N, H, W, 3], each ``scale`` times its size.

    Args:
        cells: uint8 cells.
        where: The container (``st``, a column, ...).
        scale: Integer enlargement (nearest neighbour).
        **kw: More arguments of ``st.image`` (``caption``, ``output_format``).
    """
    cells = np.asarray(cells, np.uint8)
    shown = (
        [imaging.upscale(c, scale) for c in cells]
        if cells.ndim == 4
        else imaging.upscale(cells, scale)
    )
    where.image(shown, width=cells.shape[-2] * scale, **kw)


def coloured(text: str, label: str) -> str:
    """HTML of ``text`` in the colour of a class, for ``st.markdown(unsafe_allow_html=True)``."""
    colour = CLASS_COLOURS.get(label, "inherit")
    return f'<span style="color:{colour};font-weight:600">{text}</span>'


# The classifier's verdicts, all by ``runtime.predicted_class``.
def verdict(proba_row: np.ndarray, label: str) -> tuple[bool, float]:
    """Whether the classifier agrees that a cell is of ``label``, and its P(label).

    Args:
        proba_row: float [2] class probabilities, in ``CLASSES`` order.
        label: The intended class.

    Returns:
        ``(agrees, probability of label)``.
    """
    agrees = runtime.predicted_class(proba_row) == label
    return agrees, float(np.asarray(proba_row, np.float64)[CLASSES.index(label)])


def verdict_caption(proba_row: np.ndarray, label: str) -> str:
    """The classifier's verdict on a cell meant to be ``label``: the class it predicts and its
    probability, e.g. ``"✓ Parasitized 0.97"`` or, when it disagrees, ``"✕ Uninfected 0.88"``."""
    predicted = runtime.predicted_class(proba_row)
    mark = AGREE_MARK if predicted == label else DISAGREE_MARK
    return f"{mark} {predicted} {float(proba_row[CLASSES.index(predicted)]):.2f}"


def verdict_markdown(proba_row: np.ndarray) -> str:
    """The predicted class, in its colour, with P(parasitized), e.g. "Uninfected · P(…) 12.0%"."""
    predicted = runtime.predicted_class(proba_row)
    return f"{coloured(predicted, predicted)} · P(parasitized) {float(proba_row[0]):.1%}"


def recognised_count(proba: np.ndarray, label: str) -> int:
    """How many cells the classifier assigns to ``label`` (rows of float [N, 2])."""
    return sum(runtime.predicted_class(row) == label for row in np.asarray(proba))


def points_delta(change: float, suffix: str = "", *, colour: str = "normal") -> dict[str, str]:
    """Keyword arguments of ``st.metric`` for a change of a probability, in percentage points.

    The arrow gives the direction and the number its size, so a fall reads "↓ 0.4 pts", never
    "↓ -0.4 pts" (an arrow and a minus sign at once).

    Args:
        change: Difference of two probabilities (fractions).
        suffix: Text after the number, e.g. ``"vs reconstruction"``.
        colour: ``"normal"`` (a rise green, a fall red), ``"inverse"`` or ``"off"`` (grey).

    Returns:
        ``{"delta", "delta_color", "delta_arrow"}``: a change that rounds to zero at one decimal
        reads "±0.0 pts" in grey without an arrow, rather than a green "↑ 0.0".
    """
    points = round(100 * float(change), 1)
    tail = f" {suffix}" if suffix else ""
    if points == 0:
        return {"delta": f"±0.0 pts{tail}", "delta_color": "off", "delta_arrow": "off"}
    rise = points > 0
    shown = {"normal": rise, "inverse": not rise}
    colour_name = "off" if colour not in shown else ("green" if shown[colour] else "red")
    return {
        "delta": f"{abs(points):.1f} pts{tail}",
        "delta_color": colour_name,
        "delta_arrow": "up" if rise else "down",
    }
