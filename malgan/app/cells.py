"""Cells on a page: grids with verdicts, coloured class names and metric deltas."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st

from malgan import imaging, runtime
from malgan.app.charts import CLASS_COLOURS
from malgan.data import CLASSES
from malgan.tables import percent

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


# Snapshot grids are shown near their own size: as many per row as fit in the content width of
# the wide layout at 1440 px with each grid at least MIN_SNAPSHOT_SCALE of its pixels, in rows
# that leave the fewest empty places.
ROW_PX = 960
COLUMN_GAP_PX = 16
MIN_SNAPSHOT_SCALE = 0.9


def snapshots_per_row(count: int, widest_px: int) -> int:
    """How many of ``count`` saved grids, the widest ``widest_px`` wide, to show per row."""
    fits = int(ROW_PX // (MIN_SNAPSHOT_SCALE * widest_px + COLUMN_GAP_PX))
    return balanced_row(count, fits)


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


# A verdict as a bar: the class probabilities side by side.
BAR_HEIGHT_PX = 14


def probability_bar_html(proba: Sequence[float]) -> str:
    """A two-colour bar of P(Parasitized) beside P(Uninfected), as an HTML snippet.

    Args:
        proba: Probabilities in ``CLASSES`` order.

    Returns:
        A ``<div>`` holding one coloured segment per class, widths proportional to probability.
    """
    segments = []
    for cls, value in zip(CLASSES, proba, strict=True):
        share = min(1.0, max(0.0, float(value))) if math.isfinite(value) else 0.0
        title = html.escape(f"{cls}: {percent(share)}", quote=True)
        segments.append(
            f'<div title="{title}" style="width:{100 * share:.2f}%;'
            f'background:{CLASS_COLOURS[cls]}"></div>'
        )
    return (
        f'<div style="display:flex;height:{BAR_HEIGHT_PX}px;border-radius:4px;'
        f'overflow:hidden;background:#e6e6e6">{"".join(segments)}</div>'
    )


def probability_legend_html(proba: Sequence[float]) -> str:
    """The two probabilities under ``probability_bar_html``, each at its end of the bar.

    Args:
        proba: Probabilities in ``CLASSES`` order.

    Returns:
        HTML of one line: ``P(Parasitized) x%`` on the left, ``P(Uninfected) y%`` on the right.
    """
    parts = []
    for cls, value in zip(CLASSES, proba, strict=True):
        text = percent(value)
        parts.append(
            f'<span style="color:{CLASS_COLOURS[cls]};white-space:nowrap">'
            f"P({html.escape(cls)}) {text}</span>"
        )
    return (
        '<span style="display:flex;flex-wrap:wrap;justify-content:space-between;'
        f'column-gap:0.5em">{"".join(parts)}</span>'
    )
