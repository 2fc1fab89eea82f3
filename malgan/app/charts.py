"""Plotly figures built from metrics.json and the training histories."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from malgan import release, report, tables
from malgan.data import CLASSES
from malgan.metrics import DIVERSITY_METRICS
from malgan.tables import MISSING, finite, percent, percent_range

CLASS_COLOURS = {"Parasitized": "#b0306e", "Uninfected": "#2a7fba"}
REPORT_COLOUR = "#7f7f7f"
DIVERGED_COLOUR = "#c9c9c9"
# Order of the generators in comparisons: the report's model first, then malgan's.
MODEL_ORDER = ("dcgan", "cgan")
REPORT_LABEL = "Report (Keras DCGAN, as published)"
CHART_HEIGHT = 380
# Value labels of the recovery bars sit this many percentage points above the whisker.
LABEL_LIFT = 1.5
VALUE_LABEL_SUFFIX = "value"
ZERO_BAR_LINE_PX = 3
WHISKER_COLOUR = "#444444"


def apply_layout(fig: go.Figure, **kwargs: Any) -> go.Figure:
    base = {
        "height": CHART_HEIGHT,
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    }
    fig.update_layout(**{**base, **kwargs})
    return fig


# Recovery.
def recovery_sources(
    metrics: Mapping[str, Any] | None,
    *,
    extra: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> list[tuple[str, dict[str, Any]]]:
    """The recovery rates to compare: the report's, then each model's in metrics.json, then extra.

    Args:
        metrics: metrics.json (or None).
        extra: More ``(label, {class: recovery dict})`` pairs, e.g. a live measurement.

    Returns:
        ``[(label, {class: {"rate", "ci_low"?, "ci_high"?, "n"?}})]``.
    """
    sources: list[tuple[str, dict[str, Any]]] = [
        (REPORT_LABEL, {c: {"rate": r} for c, r in report.REPORT_RECOVERY.items()})
    ]
    models = release.all_model_metrics(metrics)
    names = [m for m in MODEL_ORDER if m in models] + [m for m in models if m not in MODEL_ORDER]
    for name in names:
        entry = models[name] or {}
        rates = entry.get(release.RECOVERY)
        if isinstance(rates, Mapping) and rates:
            display = str(entry.get(release.DISPLAY_NAME, name))
            sources.append((tables.generator_label(metrics, name, display), dict(rates)))
    sources.extend((label, dict(rates)) for label, rates in extra)
    return sources


def _recovery_point(entry: Mapping[str, Any] | None) -> dict[str, Any]:
    """One bar of the recovery chart: rate and whiskers in percent, its label, hover and top."""
    entry = entry or {}
    rate = entry.get("rate")
    if not finite(rate):
        return {
            "y": None,
            "plus": 0.0,
            "minus": 0.0,
            "text": MISSING,
            "hover": "not measured",
            "top": 0.0,
        }
    low, high = entry.get("ci_low"), entry.get("ci_high")
    has_ci = finite(low) and finite(high)
    n = entry.get("n")
    return {
        "y": 100 * rate,
        "plus": 100 * (high - rate) if has_ci else 0.0,
        "minus": 100 * (rate - low) if has_ci else 0.0,
        "text": percent(rate),
        "hover": f"95% CI {percent(low)}–{percent(high)}, n = {n}" if has_ci else "as published",
        "top": 100 * max(rate, high) if has_ci else 100 * rate,
    }


def _recovery_class_bars(cls: str, labels: list[str], points: list[dict[str, Any]]) -> go.Bar:
    """The bars of one class across the sources, with their whiskers."""
    return go.Bar(
        name=cls,
        x=labels,
        y=[p["y"] for p in points],
        marker_color=CLASS_COLOURS[cls],
        # An outline in the bar's own colour draws a 0% bar as a coloured floor line.
        marker_line={"color": CLASS_COLOURS[cls], "width": ZERO_BAR_LINE_PX},
        text=[p["text"] for p in points],
        textposition="none",
        customdata=[p["hover"] for p in points],
        hovertemplate="%{x}<br>" + cls + ": %{y:.1f}%<br>%{customdata}<extra></extra>",
        error_y={
            "type": "data",
            "array": [p["plus"] for p in points],
            "arrayminus": [p["minus"] for p in points],
            "visible": True,
            "color": WHISKER_COLOUR,
        },
        offsetgroup=cls,
    )


def _recovery_value_labels(cls: str, labels: list[str], points: list[dict[str, Any]]) -> go.Scatter:
    """The values of one class's bars, above the whiskers (not inside the bar), so a 0% bar
    still reads "0.0%" instead of a label lost on the axis."""
    return go.Scatter(
        name=f"{cls} {VALUE_LABEL_SUFFIX}",
        x=labels,
        y=[p["top"] + LABEL_LIFT for p in points],
        mode="text",
        text=[p["text"] for p in points],
        textposition="top center",
        textfont={"color": CLASS_COLOURS[cls]},
        offsetgroup=cls,
        showlegend=False,
        hoverinfo="skip",
        cliponaxis=False,
    )


def recovery_bars(
    metrics: Mapping[str, Any] | None,
    *,
    extra: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> go.Figure:
    """Grouped bars of recovery per source and class, with 95% Wilson intervals where known.

    The report's figures are always present, so this always returns a figure; a source without
    a rate for a class leaves a gap.
    """
    sources = recovery_sources(metrics, extra=extra)
    labels = [label for label, _ in sources]
    points = {cls: [_recovery_point(rates.get(cls)) for _, rates in sources] for cls in CLASSES}
    fig = go.Figure()
    for cls in CLASSES:
        fig.add_trace(_recovery_class_bars(cls, labels, points[cls]))
    fig.add_traces([_recovery_value_labels(cls, labels, points[cls]) for cls in CLASSES])
    return apply_layout(
        fig,
        barmode="group",
        scattermode="group",
        yaxis={"title": "cells recovered as intended (%)", "range": [0, 118]},
        xaxis={"title": None},
    )


def diversity_bars(metrics: Mapping[str, Any] | None, model: str) -> go.Figure | None:
    """A generator's k-NN precision, recall, density and coverage per class, each beside the
    same figure for real cells of other patients (the reference); None when not measured."""
    entry = release.model_metrics(metrics, model)
    by_class = {label: tables.diversity_entry(entry, label) for label in CLASSES}
    if not any(e.get(release.GENERATED) for e in by_class.values()):
        return None
    fig = make_subplots(
        rows=1,
        cols=len(CLASSES),
        shared_yaxes=True,
        subplot_titles=[
            f"{label} (n = {by_class[label]['n']:,} per side)"
            if isinstance(by_class[label].get("n"), int)
            else label
            for label in CLASSES
        ],
    )
    names = [name.capitalize() for name in DIVERSITY_METRICS]
    for col, label in enumerate(CLASSES, start=1):
        for side, colour, legend in (
            (release.GENERATED, CLASS_COLOURS[label], f"{label}, generated"),
            (release.REFERENCE, REPORT_COLOUR, "real cells of other patients (reference)"),
        ):
            values = [(by_class[label].get(side) or {}).get(name) for name in DIVERSITY_METRICS]
            values = [v if finite(v) else None for v in values]
            fig.add_bar(
                name=legend,
                # One legend entry for the reference, whose bars are grey in both panels.
                showlegend=side == release.GENERATED or col == 1,
                x=names,
                y=values,
                marker_color=colour,
                text=[MISSING if v is None else f"{v:.2f}" for v in values],
                textposition="outside",
                cliponaxis=False,
                offsetgroup=side,
                hovertemplate=f"{label}, {side}<br>%{{x}}: %{{y:.3f}}<extra></extra>",
                row=1,
                col=col,
            )
    # The legend goes under the panels, clear of their titles.
    return apply_layout(
        fig,
        barmode="group",
        yaxis={"title": "k-NN figure (k = 5)", "rangemode": "tozero"},
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0},
        margin={"l": 10, "r": 10, "t": 40, "b": 60},
    )


def confidence_histograms(metrics: Mapping[str, Any] | None, model: str) -> go.Figure | None:
    """Overlaid histograms of the classifier's probability for the intended class.

    Returns:
        The figure, or None when metrics.json has no histogram for ``model``.
    """
    entry = release.model_metrics(metrics, model)
    return histogram_figure(entry.get(release.CONFIDENCE_HISTOGRAM))


HISTOGRAM_OPACITY = 0.65
OVERLAP_NAME = "both classes (bars overlap)"


def blend(colours: Sequence[str], opacity: float, background: str = "#ffffff") -> str:
    """The colour seen where bars of ``colours`` (drawn in order, each at ``opacity``) overlap."""
    mixed = [int(background[i : i + 2], 16) for i in (1, 3, 5)]
    for colour in colours:
        rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
        mixed = [opacity * c + (1 - opacity) * m for c, m in zip(rgb, mixed, strict=True)]
    return "#" + "".join(f"{round(c):02x}" for c in mixed)


def histogram_figure(histograms: Mapping[str, Any] | None) -> go.Figure | None:
    """Histograms ``{class: {"counts", "edges"}}`` as overlaid bars (None when there are none).

    Where both classes have cells the bars overlap in a third colour, which the legend names.
    """
    fig = go.Figure()
    for cls in CLASSES:
        hist = (histograms or {}).get(cls) or {}
        counts, edges = hist.get("counts"), hist.get("edges")
        if not isinstance(counts, list) or not isinstance(edges, list) or not counts:
            continue
        if len(edges) != len(counts) + 1 or not all(map(finite, [*counts, *edges])):
            continue
        total = sum(counts) or 1
        centres = [100 * (a + b) / 2 for a, b in itertools.pairwise(edges)]
        widths = [100 * (b - a) for a, b in itertools.pairwise(edges)]
        fig.add_bar(
            name=f"made as {cls}",
            x=centres,
            y=[100 * c / total for c in counts],
            width=widths,
            marker_color=CLASS_COLOURS[cls],
            opacity=HISTOGRAM_OPACITY,
            customdata=counts,
            hovertemplate="P(intended) ≈ %{x:.0f}%<br>%{customdata} cells (%{y:.1f}%)"
            "<extra>" + cls + "</extra>",
        )
    if not fig.data:
        return None
    if len(fig.data) > 1:
        # A legend entry only: no bar of its own.
        fig.add_bar(
            name=OVERLAP_NAME,
            x=[None],
            y=[None],
            marker_color=blend([trace.marker.color for trace in fig.data], HISTOGRAM_OPACITY),
            hoverinfo="skip",
        )
    fig.add_vline(x=50, line_dash="dot", line_color=REPORT_COLOUR)
    return apply_layout(
        fig,
        barmode="overlay",
        xaxis={"title": "classifier probability of the intended class (%)", "range": [0, 100]},
        yaxis={"title": "share of cells (%)"},
    )


def classifier_bars(rows: Sequence[Mapping[str, Any]] | None) -> go.Figure | None:
    """Horizontal bars of test accuracy per classifier, with the report's figures as references.

    The report's ResNet accuracy is a dashed line and its simple-CNN range a shaded band; a
    classifier whose training diverged is drawn grey and says so.

    Returns:
        The figure, or None when no classifier has an accuracy.
    """
    names, values, colours, texts = [], [], [], []
    for row in rows or []:
        if not isinstance(row, Mapping) or not finite(row.get(release.ACCURACY)):
            continue
        diverged = row.get(release.DIVERGED_AT_EPOCH)
        names.append(str(tables.shown_name(row)))
        values.append(100 * row[release.ACCURACY])
        colours.append(DIVERGED_COLOUR if finite(diverged) else CLASS_COLOURS["Uninfected"])
        note = f" (diverged at epoch {diverged})" if finite(diverged) else ""
        texts.append(f"{percent(row[release.ACCURACY])}{note}")
    if not names:
        return None
    fig = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            marker_color=colours,
            text=texts,
            textposition="auto",
            hovertemplate="%{y}: %{x:.1f}%<extra></extra>",
            showlegend=False,
        )
    )
    low, high = report.REPORT_CNN_ACCURACY
    fig.add_vrect(
        x0=100 * low,
        x1=100 * high,
        fillcolor=REPORT_COLOUR,
        opacity=0.25,
        line_width=0,
        layer="below",
        annotation_text=f"report's CNN {percent_range(low, high)}",
        annotation_position="outside top",
    )
    fig.add_vline(
        x=100 * report.REPORT_RESNET_ACCURACY,
        line_dash="dash",
        line_color=REPORT_COLOUR,
        annotation_text=f"report's ResNet {percent(report.REPORT_RESNET_ACCURACY)}",
        # Above the plot, ending at the line, where no bar label can hide it.
        annotation_position="top",
        annotation={"xanchor": "right"},
    )
    return apply_layout(
        fig,
        height=max(CHART_HEIGHT, 70 * len(names)),
        xaxis={"title": "test accuracy (%)", "range": [0, 101]},
        yaxis={"autorange": "reversed"},
    )


# The Interpolate page's curve: the decision threshold, labelled in the right margin.
DECISION_LINE = 0.5
PATH_CHART_PX = 320
THRESHOLD_MARGIN_PX = 90


def path_probability(t: Sequence[float], p_parasitized: Sequence[float]) -> go.Figure:
    """P(parasitized) of the frames of an interpolation, against the path's position t."""
    figure = go.Figure(
        go.Scatter(
            x=t,
            y=p_parasitized,
            mode="lines+markers",
            line={"color": CLASS_COLOURS["Parasitized"], "width": 3},
            hovertemplate="t = %{x:.2f}<br>P(parasitized) = %{y:.1%}<extra></extra>",
        )
    )
    # The threshold's label sits in the right margin, clear of the data line.
    figure.add_hline(
        y=DECISION_LINE,
        line_dash="dot",
        line_color="grey",
        annotation_text=f"decision<br>threshold {DECISION_LINE:.0%}",
        annotation_position="right",
        annotation_font_color="grey",
    )
    figure.update_layout(
        title="P(parasitized) along the path",
        xaxis_title="t (0 = cell A, 1 = cell B)",
        yaxis_title="P(parasitized)",
        yaxis={"range": [0, 1], "tickformat": ".0%"},
        xaxis={"range": [0, 1]},
        height=PATH_CHART_PX,
        margin={"l": 10, "r": THRESHOLD_MARGIN_PX, "t": 50, "b": 10},
    )
    return figure
