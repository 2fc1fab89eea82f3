"""The Synthetic dataset page's work: one export into a result to show, the rejection chart, the
remedy when the filters reject too much, the preview, the archive's size and how close each
generator comes to its training patients."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from malgan import release, tables
from malgan.app.charts import CLASS_COLOURS
from malgan.data import CLASSES
from malgan.errors import SynthError
from malgan.reference import Reference
from malgan.runtime import CellGenerator, Classifier
from malgan.synth import datasheet, files, filters, writer

PREVIEW_CELLS = 8
MANIFEST_ROWS = 10
REJECTION_CHART_PX = 320
# What to change on the page for each setting ``FiltersExhaustedError`` names.
LOOSEN = {
    "min_confidence": "lower the **Minimum confidence**",
    "class_filter": "turn the **Class filter** off",
    "privacy_filter": "turn the **Privacy filter** off",
    "max_attempts_factor": "raise **Attempts per cell**",
}


def rejection_figure(rejected: dict[str, dict[str, int]]) -> go.Figure:
    """Grouped bars of rejected cells by reason, one colour per class."""
    rows = filters.rejection_rows(rejected)
    fig = go.Figure()
    for label in CLASSES:
        mine = [r for r in rows if r["class"] == label]
        fig.add_bar(
            name=label,
            x=[r["label"] for r in mine],
            y=[r["count"] for r in mine],
            marker_color=CLASS_COLOURS[label],
            text=[r["count"] for r in mine],
            textposition="outside",
        )
    fig.update_layout(
        barmode="group",
        height=REJECTION_CHART_PX,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis_title="Rejected cells",
        legend={"orientation": "h", "y": 1.12},
    )
    return fig


def remedy(err: filters.FiltersExhaustedError) -> str:
    """What to change on the page after the filters rejected too many cells."""
    steps = [LOOSEN[setting] for setting in err.settings_to_loosen]
    return f"To let more through, {tables.alternatives(steps)}."


def size_text(n_bytes: int) -> str:
    """A file size in kB or MB."""
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e6 else f"{max(1, round(n_bytes / 1e3))} kB"


def membership_lines(metrics: Mapping[str, Any] | None, choices: Mapping[str, str]) -> list[str]:
    """Per generator, per class: the share of its cells whose nearest real cell is a training
    cell, beside the same share for as many real cells of unseen patients (``metrics.json``'s
    membership entries, worded as on the Recovery page).

    Args:
        metrics: ``metrics.json`` (None: nothing measured).
        choices: Generator names to the names shown, in the order to list them.

    Returns:
        One Markdown line per generator measured, e.g. "**cGAN**: Parasitized 56.7% (real cells
        of unseen patients: 62.5%), 1,445 cells a side; ..."; empty when none is.
    """
    lines = []
    for name, shown in choices.items():
        model = release.model_metrics(metrics, name)
        entries = model.get(release.MEMBERSHIP) or {}
        parts = []
        for label in CLASSES:
            text = tables.membership_text(model, label)
            if text == tables.MISSING:
                continue
            n = (entries.get(label) or {}).get("n")
            parts.append(f"{label} {text}" + (f", {n:,} cells a side" if tables.finite(n) else ""))
        if parts:
            lines.append(f"**{shown}**: " + "; ".join(parts) + ".")
    return lines


def preview_cells(folder: Path, n: int) -> dict[str, np.ndarray]:
    """The first ``n`` written cells of each class, read back from the dataset folder."""
    rows = files.read_manifest(folder)
    out = {}
    for label in CLASSES:
        names = [r["file"] for r in rows if r["class"] == label][:n]
        out[label] = np.stack([np.asarray(Image.open(folder / f).convert("RGB")) for f in names])
    return out


def export_result(
    folder: Path,
    params: dict[str, Any],
    *,
    generator: CellGenerator,
    classifier: Classifier,
    reference: Reference | None,
    progress: Callable[[int, int], None],
) -> dict[str, Any]:
    """Write one dataset into ``folder`` and keep what the page shows of it.

    Args:
        folder: An empty folder (a temporary one: the archive is kept in memory).
        params: ``{"exported", "model", "config"}``: the models folder, the generator's name and
            the ``SynthConfig``; kept in the result so the page can tell when they change.
        generator: The generator to draw from.
        classifier: The class filter's judge.
        reference: The privacy filter's training reference.
        progress: ``progress(accepted, total)`` after each batch.

    Returns:
        ``{"params", "error", "rejected"}`` when the export failed, else ``{"params", "summary",
        "zip", "file_name", "preview", "img_size", "manifest"}``.
    """
    config: writer.SynthConfig = params["config"]
    try:
        summary = writer.export_dataset(
            folder,
            config,
            generator=generator,
            classifier=classifier,
            reference=reference,
            progress=progress,
        )
    except filters.FiltersExhaustedError as err:
        return {"params": params, "error": f"{err} {remedy(err)}", "rejected": err.rejected}
    except (SynthError, OSError) as err:
        return {"params": params, "error": str(err), "rejected": None}
    datasheet.write_datasheet(
        folder, summary.to_dict(), params["exported"], cell_size=generator.img_size
    )
    top = f"malgan_synthetic_{files.name_tag(params['model'])}_seed{config.seed}"
    return {
        "params": params,
        "summary": summary.to_dict(machine=True),
        "zip": files.zip_folder(folder, top=top),
        "file_name": f"{top}.zip",
        "preview": preview_cells(folder, PREVIEW_CELLS),
        "img_size": generator.img_size,
        "manifest": files.read_manifest(folder)[:MANIFEST_ROWS],
    }
