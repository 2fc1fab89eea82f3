"""The Training and Recovery pages' charts of how models learnt: losses, the classifier's epochs
and recovery during training, with the human names of runs and losses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from malgan import release, report
from malgan.app.charts import CLASS_COLOURS, apply_layout
from malgan.data import CLASSES
from malgan.tables import finite, percent, run_class

LOSS_DASHES = ("solid", "dash", "dot", "dashdot")
# Spacing of the ticks of an accuracy axis, in percent.
ACCURACY_TICK = 20
# Human names of training runs (a per-class run adds its class, see ``run_title``).
RUN_TITLES = {"cgan": "Conditional GAN", "dcgan": "DCGAN"}
# Human names of the losses the training loops log (see ``loss_title``).
LOSS_TITLES = {
    "d_hinge": "Discriminator (hinge)",
    "d_real": "Discriminator on real cells",
    "d_fake": "Discriminator on generated cells",
    "g": "Generator",
}


def run_title(run: str) -> str:
    """A training run's human name, e.g. ``cgan`` -> "Conditional GAN" and
    ``dcgan_parasitized`` -> "DCGAN (Parasitized)"; an unknown run keeps its name."""
    label = run_class(run)
    if label is not None:
        base = run[: -len(label) - 1]
        return f"{RUN_TITLES.get(base.lower(), base)} ({label})"
    return RUN_TITLES.get(run.lower(), run)


def loss_title(name: str) -> str:
    """A logged loss's human name, e.g. ``d_hinge`` -> "Discriminator (hinge)"; an unknown
    loss is spelled out from its name (``r1_penalty`` -> "R1 penalty")."""
    if name in LOSS_TITLES:
        return LOSS_TITLES[name]
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else name


def _by_run(history: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    """A generator history's records of one kind (``release.LOSSES`` or ``release.PROBES``),
    by run; None when it has none."""
    found = history.get(kind) if isinstance(history, Mapping) else None
    return found if isinstance(found, Mapping) else None


def recovery_curve(history: Mapping[str, Any] | None) -> go.Figure | None:
    """Recovery of probe cells against training iteration, with the report's rates as lines.

    Args:
        history: A generator's history JSON: ``{"probes": {run: [{"iteration", class: rate}]}}``.

    Returns:
        The figure, or None when the history holds no probe.
    """
    probes = _by_run(history, release.PROBES)
    if probes is None:
        return None
    fig = go.Figure()
    for cls in CLASSES:
        runs = [run for run, rows in probes.items() if _points(rows, cls)[0]]
        for run in runs:
            xs, ys = _points(probes[run], cls)
            fig.add_scatter(
                x=xs,
                y=[100 * y for y in ys],
                mode="lines+markers",
                name=cls if len(runs) == 1 else f"{cls} ({run})",
                line={"color": CLASS_COLOURS[cls]},
            )
    if not fig.data:
        return None
    for cls, rate in report.REPORT_RECOVERY.items():
        fig.add_hline(
            y=100 * rate,
            line_dash="dot",
            line_color=CLASS_COLOURS[cls],
            annotation_text=f"report, {cls}: {percent(rate)}",
            annotation_position="top left" if rate < 1 else "bottom left",
        )
    return apply_layout(
        fig,
        xaxis={"title": "training iteration"},
        yaxis={"title": "probe cells recovered (%)", "range": [-2, 105]},
    )


def _points(rows: Any, key: str) -> tuple[list[float], list[float]]:
    """Sorted (iteration, value) pairs of ``key`` in a list of records, finite values only."""
    if not isinstance(rows, list):
        return [], []
    pairs = sorted(
        (row["iteration"], row[key])
        for row in rows
        if isinstance(row, Mapping) and finite(row.get("iteration")) and finite(row.get(key))
    )
    return [p[0] for p in pairs], [p[1] for p in pairs]


def loss_curves(history: Mapping[str, Any] | None) -> go.Figure | None:
    """Training losses against iteration: colour per run, dash per loss.

    Args:
        history: A generator's history JSON: ``{"losses": {run: [{"iteration", name: value}]}}``.

    Returns:
        The figure, or None when the history holds no loss.
    """
    losses = _by_run(history, release.LOSSES)
    if losses is None:
        return None
    palette = _run_colours(list(losses))
    fig = go.Figure()
    for run, rows in losses.items():
        names = sorted(
            {k for row in rows if isinstance(row, Mapping) for k in row if k != "iteration"}
            if isinstance(rows, list)
            else set()
        )
        for i, name in enumerate(names):
            xs, ys = _points(rows, name)
            if xs:
                fig.add_scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    name=(
                        f"{run_title(run)}: {loss_title(name)}"
                        if len(losses) > 1
                        else loss_title(name)
                    ),
                    line={"color": palette[run], "dash": LOSS_DASHES[i % len(LOSS_DASHES)]},
                )
    if not fig.data:
        return None
    return apply_layout(fig, xaxis={"title": "training iteration"}, yaxis={"title": "loss"})


def _run_colours(runs: list[str]) -> dict[str, str]:
    """A colour per run: the class colour when the run name ends with a class, else a default."""
    defaults = ("#444444", "#e07b00", "#2ca02c", "#9467bd")
    colours = {}
    for i, run in enumerate(runs):
        match = [c for c in CLASSES if run.lower().endswith(c.lower())]
        colours[run] = CLASS_COLOURS[match[0]] if match else defaults[i % len(defaults)]
    return colours


def classifier_history(history: Any) -> go.Figure | None:
    """Training loss and validation accuracy per epoch (two y axes).

    Args:
        history: ``[{"epoch", "train_loss", "val_accuracy"}, ...]``.

    Returns:
        The figure, or None when there is no epoch to show.
    """
    if not isinstance(history, list):
        return None
    rows = [{**row, "iteration": row.get("epoch")} for row in history if isinstance(row, Mapping)]
    loss_x, loss_y = _points(rows, "train_loss")
    acc_x, acc_y = _points(rows, "val_accuracy")
    if not loss_x and not acc_x:
        return None
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if loss_x:
        fig.add_scatter(
            x=loss_x, y=loss_y, name="training loss", mode="lines+markers",
            line={"color": "#444444"}, secondary_y=False,
        )  # fmt: skip
    if acc_x:
        fig.add_scatter(
            x=acc_x, y=[100 * a for a in acc_y], name="validation accuracy (%)",
            mode="lines+markers", line={"color": "#e07b00"}, secondary_y=True,
        )  # fmt: skip
    fig.update_yaxes(title_text="training loss", secondary_y=False)
    # Round ticks of its own on the accuracy axis (not synced to the loss axis's grid).
    fig.update_yaxes(
        title_text="validation accuracy",
        range=[0, 100],
        tickmode="linear",
        tick0=0,
        dtick=ACCURACY_TICK,
        ticksuffix="%",
        showgrid=False,
        secondary_y=True,
    )
    return apply_layout(fig, xaxis={"title": "epoch", "dtick": 1 if len(rows) <= 20 else None})
