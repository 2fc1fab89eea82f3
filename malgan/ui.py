"""Streamlit glue shared by the dashboard pages: cached models, the page frame and URL state."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import streamlit as st

from malgan import artifacts, explore, imaging, latent, runtime
from malgan.charts import CLASS_COLOURS
from malgan.data import CLASSES
from malgan.errors import ModelError
from malgan.reference import Reference

T = TypeVar("T")
CELL_PX = 64
DEFAULT_SEED = 7
DEFAULT_MODEL = "cgan"
APP_NAME = "malgan"
TITLE_SEPARATOR = " · "
NOT_CLINICAL = (
    "Research software. The images are synthetic and the classifier is not a medical device: "
    "**not for clinical use.**"
)


# Cached resources: one ONNX Runtime session per model, shared by every user (sessions are
# thread-safe for concurrent ``run`` calls).
@st.cache_resource(show_spinner="Loading model…")
def _generator(exported: Path, name: str) -> runtime.CellGenerator:
    return artifacts.load_generator(exported, name)


@st.cache_resource(show_spinner="Loading classifier…")
def _classifier(exported: Path, name: str | None) -> runtime.Classifier:
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
    return _guarded(lambda: _generator(artifacts.exported_dir(), name), f"The generator {name!r}")


def classifier(name: str | None = None) -> runtime.Classifier | None:
    """The classifier (or a named one of the comparison), or None after showing why."""
    return _guarded(lambda: _classifier(artifacts.exported_dir(), name), "The classifier")


def reference() -> Reference | None:
    """The training reference (privacy filter, OOD warnings), or None after showing why."""
    return _guarded(lambda: _reference(artifacts.exported_dir()), "The training reference")


def generator_choices() -> dict[str, str]:
    """Generator names to display names, from the index (empty when it is unavailable)."""
    idx = _quiet(lambda: _index(artifacts.exported_dir()))
    return {} if idx is None else artifacts.generator_names(idx)


# Cached pure results.
@st.cache_data(show_spinner=False, max_entries=256)
def sample_cells(
    exported: Path, name: str, label: str, seed: int, n: int, truncation: float | None
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
    """Why the committed models are placeholders, or None for release models (or no index)."""
    idx = _quiet(lambda: _index(artifacts.exported_dir()))
    return None if idx is None else artifacts.placeholder_notice(idx)


def smoke_models() -> bool:
    """Whether the index marks the models as smoke-test placeholders (False when unreadable)."""
    idx = _quiet(lambda: _index(artifacts.exported_dir()))
    return bool(idx and idx.get("smoke"))


def measured_recovery(name: str) -> dict[str, float]:
    """Recovery rates of a generator per class from ``metrics.json`` (empty when unknown)."""
    data = _quiet(lambda: _metrics(artifacts.exported_dir()))
    return {} if data is None else artifacts.measured_recovery(data, name)


class CountingGenerator:
    """A generator that counts the cells it draws per class, for progress text.

    Everything but ``generate`` is the wrapped generator's own.
    """

    def __init__(
        self, generator: runtime.CellGenerator, on_batch: Callable[[], None] | None = None
    ) -> None:
        """Wrap ``generator``; ``on_batch`` is called after each batch it draws."""
        self._generator = generator
        self._on_batch = on_batch
        self.drawn = dict.fromkeys(CLASSES, 0)

    def generate(self, z: np.ndarray, label: str) -> np.ndarray:
        """The wrapped generator's cells, counted under ``label``."""
        images = self._generator.generate(z, label)
        self.drawn[label] = self.drawn.get(label, 0) + len(images)
        if self._on_batch is not None:
            self._on_batch()
        return images

    def __getattr__(self, name: str) -> Any:
        return getattr(self._generator, name)


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


def page_setup(title: str, icon: str, intro: str = "") -> None:
    """Tab title, heading, placeholder banner and shared sidebar of every page."""
    _leave_folder_navigation()
    # Later calls override only what they name, so the app's wide layout stays.
    st.set_page_config(page_title=page_title(title), page_icon=icon)
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


# Shared look of the generation pages.
CLASS_ICONS = {"Parasitized": "🟣", "Uninfected": "🔵"}
MAX_SEED = 2**31 - 1
# Truncation sliders (BigGAN threshold): their top value means "no truncation".
TRUNCATION_MIN = 0.5
TRUNCATION_OFF = 3.0
TRUNCATION_STEP = 0.1
TRUNCATION_HELP = (
    "BigGAN truncation threshold: latent entries beyond ±t are redrawn, so lower values give "
    "more typical, less varied cells. Values above about 2.5 change almost nothing; "
    f"{TRUNCATION_OFF:g} (the default) means no truncation."
)


def truncation_value(slider: float) -> float | None:
    """The truncation a slider position stands for (None at its top: no truncation)."""
    return None if slider >= TRUNCATION_OFF else round(float(slider), 2)


# Cells are shown at this integer multiple of their 64 px (nearest neighbour).
VIEW_SCALE = 2
# Cells per row of a grid.
GRID_COLUMNS = 8


# Space between the images of one ``st.image`` list (Streamlit lays them out edge to edge).
IMAGE_GAP_PX = 8


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


def upscale(image: np.ndarray, scale: int = VIEW_SCALE) -> np.ndarray:
    """A uint8 [H, W, 3] cell enlarged by an integer factor with nearest neighbour."""
    return np.asarray(image, np.uint8).repeat(scale, axis=0).repeat(scale, axis=1)


def coloured(text: str, label: str) -> str:
    """HTML of ``text`` in the colour of a class, for ``st.markdown(unsafe_allow_html=True)``."""
    colour = CLASS_COLOURS.get(label, "inherit")
    return f'<span style="color:{colour};font-weight:600">{text}</span>'


def new_seed() -> int:
    """A fresh random seed in [0, MAX_SEED]."""
    return int(np.random.default_rng().integers(0, MAX_SEED, endpoint=True))


def randomise_seed(key: str) -> None:
    """Widget callback: put a fresh seed in ``st.session_state[key]``."""
    st.session_state[key] = new_seed()


def verdict(proba_row: np.ndarray, label: str) -> tuple[bool, float]:
    """Whether the classifier agrees that a cell is of ``label``, and its P(label).

    Args:
        proba_row: float [2] class probabilities, in ``CLASSES`` order.
        label: The intended class.

    Returns:
        ``(agrees, probability of label)``.
    """
    proba_row = np.asarray(proba_row, np.float64)
    index = CLASSES.index(label)
    return int(np.argmax(proba_row)) == index, float(proba_row[index])


# Verdict marks: an upright multiplication cross, since the ballot X (U+2717) is drawn slanted.
AGREE_MARK = "✓"
DISAGREE_MARK = "✕"


def verdict_caption(proba_row: np.ndarray, label: str) -> str:
    """The classifier's verdict on a cell meant to be ``label``: the class it predicts and its
    probability, e.g. ``"✓ Parasitized 0.97"`` or, when it disagrees, ``"✕ Uninfected 0.88"``."""
    predicted = int(np.argmax(proba_row))
    mark = AGREE_MARK if CLASSES[predicted] == label else DISAGREE_MARK
    return f"{mark} {CLASSES[predicted]} {float(proba_row[predicted]):.2f}"


def points_delta(change: float, suffix: str = "", *, colour: str = "normal") -> dict[str, str]:
    """Keyword arguments of ``st.metric`` for a change of a probability, in percentage points.

    Args:
        change: Difference of two probabilities (fractions).
        suffix: Text after the number, e.g. ``"vs reconstruction"``.
        colour: ``delta_color`` of a change that does not round to zero.

    Returns:
        ``{"delta", "delta_color", "delta_arrow"}``: a change that rounds to zero at one decimal
        reads "±0.0 pts" in grey without an arrow, rather than a green "↑ +0.0".
    """
    points = round(100 * float(change), 1)
    tail = f" {suffix}" if suffix else ""
    if points == 0:
        return {"delta": f"±0.0 pts{tail}", "delta_color": "off", "delta_arrow": "off"}
    return {"delta": f"{points:+.1f} pts{tail}", "delta_color": colour, "delta_arrow": "auto"}


def recognised_count(proba: np.ndarray, label: str) -> int:
    """How many cells the classifier assigns to ``label`` (argmax of float [N, 2])."""
    proba = np.asarray(proba)
    if len(proba) == 0:
        return 0
    return int((np.argmax(proba, axis=1) == CLASSES.index(label)).sum())


def cell_file_names(model: str, label: str, seed: int, n: int) -> list[str]:
    """File names of the cells of a grid, e.g. ``cgan_Parasitized_seed7_03.png``."""
    width = max(2, len(str(max(n - 1, 0))))
    return [f"{model}_{label}_seed{seed}_{i:0{width}d}.png" for i in range(n)]


@st.cache_data(show_spinner=False, max_entries=32)
def sample_files(
    exported: Path, name: str, label: str, seed: int, n: int, truncation: float | None
) -> tuple[bytes, bytes]:
    """The downloads of a ``sample_cells`` grid.

    Returns:
        ``(grid PNG at display scale, ZIP of the cells as 64 px PNGs)``; the cells are named by
        ``cell_file_names``.
    """
    images, _ = sample_cells(exported, name, label, seed, n, truncation)
    grid = imaging.make_grid(images, ncol=min(n, GRID_COLUMNS), scale=VIEW_SCALE)
    names = cell_file_names(name, label, seed, n)
    return imaging.png_bytes(grid), imaging.cells_zip(images, names)


# Cached generation for the explorer pages.
@st.cache_data(show_spinner=False, max_entries=512)
def explore_cell(
    exported: Path,
    name: str,
    label: str,
    z: np.ndarray,
    amounts: tuple[float, ...],
    infection: float,
) -> tuple[np.ndarray, float]:
    """One cell edited along its class's directions (see ``explore.edit_latent``).

    Args:
        exported: The models folder.
        name: Generator name.
        label: Class of the cell.
        z: float32 [z_dim] start latent.
        amounts: Steps along the principal directions, in sigma units.
        infection: Step along the infection direction, in sigma units.

    Returns:
        ``(image uint8 [64, 64, 3], P(parasitized))``.
    """
    gen = _generator(exported, name)
    dirs = explore.directions_for(gen.directions, label)
    edited = explore.edit_latent(z, dirs, amounts, infection)
    image = gen.generate(edited[None], label)
    return image[0], float(_classifier(exported, None).predict_proba(image)[0, 0])


@st.cache_data(show_spinner=False, max_entries=512)
def infection_strip(
    exported: Path,
    name: str,
    label: str,
    z: np.ndarray,
    amounts: tuple[float, ...],
    infections: tuple[float, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """One cell at several steps along the infection direction, in one generator batch.

    Args:
        exported: The models folder.
        name: Generator name.
        label: Class of the cell.
        z: float32 [z_dim] start latent.
        amounts: Steps along the principal directions, in sigma units (the same for every cell).
        infections: Steps along the infection direction, in sigma units, one per cell.

    Returns:
        ``(images uint8 [K, 64, 64, 3], P(parasitized) float32 [K])``.
    """
    gen = _generator(exported, name)
    dirs = explore.directions_for(gen.directions, label)
    edited = np.stack([explore.edit_latent(z, dirs, amounts, step) for step in infections])
    images = gen.generate(edited, label)
    return images, _classifier(exported, None).predict_proba(images)[:, 0]


@st.cache_data(show_spinner=False, max_entries=64)
def interpolation_frames(
    exported: Path,
    name: str,
    seed_a: int,
    label_a: str,
    seed_b: int,
    label_b: str,
    steps: int,
    method: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames of a morph between cell 0 of two seeds, and P(parasitized) of each.

    Returns:
        ``(t float64 [steps], frames uint8 [steps, 64, 64, 3], p_parasitized float32 [steps])``.
    """
    gen = _generator(exported, name)
    z_a = latent.sample_z(seed_a, 1, gen.z_dim)[0]
    z_b = latent.sample_z(seed_b, 1, gen.z_dim)[0]
    t, frames = explore.interpolate_cells(gen, z_a, z_b, label_a, label_b, steps, method)
    return t, frames, _classifier(exported, None).predict_proba(frames)[:, 0]
