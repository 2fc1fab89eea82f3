"""The DATASHEET.md of a synthetic set: what made it, how good it is and what it is not for.

Written beside ``manifest.csv`` by ``malgan-synth`` and the Synthetic dataset page, from the
export's summary and the models folder's ``index.json`` and ``metrics.json``, read through the
same readers as the pages (``malgan.artifacts``, ``malgan.tables``): no figure is typed here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from malgan import artifacts, release, tables
from malgan.data import CLASSES
from malgan.errors import ModelError
from malgan.runtime import FP32
from malgan.synth.files import DATASHEET_NAME, MANIFEST_NAME, SUMMARY_NAME
from malgan.synth.filters import REASON_LABELS, REASONS

INTENDED_USES = (
    "Prototyping image pipelines before real data is available.",
    "Teaching: what parasitized and uninfected red blood cells look like, and how GANs fail.",
    "Research on data augmentation, measured against real held-out patients.",
)
KNOWN_LIMITS = (
    "NIH's labels carry noise: some cells of the source set are labelled against what they "
    "show, and a generator learns those labels as given.",
    "Cells of one slide look alike; figures are measured on patients held out by patient, "
    "and a generator's cells are not new patients.",
)
NOT_FOR = (
    "**Not for diagnosis**, clinical decisions or the evaluation of a diagnostic device: "
    "these images are synthetic and no clinician has reviewed them."
)


def _rechecks(summary: Mapping[str, Any]) -> str:
    """How the class filter rechecked close verdicts, for the settings line ("" for none)."""
    margin = summary.get("recheck_margin") or 0
    if not margin:
        return ""
    rechecked = sum((summary.get("rechecked") or {}).values())
    drawn = sum((summary.get("attempts") or {}).values())
    return (
        f", and all 8 for a cell whose probability came within {tables.number(margin, 'g')} of "
        f"the threshold ({tables.number(rechecked, ',')} of the {tables.number(drawn, ',')} "
        "cells drawn)"
    )


def _copy(summary: Mapping[str, Any]) -> str:
    """What the generator's sha256 names when a lower-precision copy made the cells."""
    precision = summary.get("generator_precision", FP32)
    if precision == FP32:
        return ""
    return (
        f" (the {precision} copy of the exported file, which `python -m train.quantize` keeps "
        "only when it passes parity with it; its sidecar names the exported file's sha256)"
    )


def kept_settings(summary: Mapping[str, Any]) -> str:
    """The views and precisions that decided which cells were kept, in words (the datasheet
    and the Synthetic dataset page say the same)."""
    return (
        f"the class filter averages {summary['classifier_views']} of the classifier's 8 flips "
        f"and rotations{_rechecks(summary)}; generator {summary.get('generator_precision', FP32)}"
        f", classifier {summary.get('classifier_precision', FP32)}"
    )


def _lines(items: list[tuple[str, str]]) -> list[str]:
    return [f"- **{name}:** {text}" for name, text in items]


def _training_data(metrics_data: Mapping[str, Any]) -> list[str]:
    clf = release.main_classifier(metrics_data)
    patients = clf.get(release.TEST_PATIENTS)
    n_patients = len(patients) if isinstance(patients, list) else patients
    counts = [
        ("Source", "the NIH malaria cell images (Rajaraman et al., PeerJ 6:e4568, 2018)"),
        (
            "Split",
            "by patient, never by cell: "
            f"{tables.number(clf.get(release.N_TRAIN), ',')} training cells, "
            f"{tables.number(clf.get(release.N_VAL), ',')} validation cells, "
            f"{tables.number(clf.get(release.N_TEST), ',')} test cells of "
            f"{tables.number(n_patients, ',')} held-out patients",
        ),
    ]
    return _lines(counts)


def _figure_provenance(figures: Any, name: str) -> list[str]:
    """Which command computed the figures evaluated again after the export, if any.

    The ``release.WRITTEN_FIGURES`` of ``release.WRITTEN_BY`` hold, per figure, the provenance
    per generator (or one provenance for every generator).
    """
    if not isinstance(figures, Mapping):
        return []
    lines = []
    for figure, by in figures.items():
        by = by.get(name, by) if isinstance(by, Mapping) else None
        if isinstance(by, Mapping) and release.COMMAND in by:
            lines.append(
                f"`{figure}` was computed again by `{by.get(release.COMMAND) or 'unknown'}` at "
                f"commit `{by.get(release.GIT_COMMIT) or 'unknown'}`."
            )
    return lines


def _filters(summary: Mapping[str, Any]) -> list[str]:
    threshold = summary.get("privacy_threshold")
    privacy = (
        f"on: cells closer to a training cell than {tables.number(threshold, '.4g')} "
        "(1% of real held-out cells are) are rejected"
        if summary.get("privacy_filter")
        else "off: near-copies of training cells may be included"
    )
    classes = (
        f"on: cells the classifier does not give their class with probability at least "
        f"{tables.number(summary.get('min_confidence'), 'g')} are rejected"
        if summary.get("class_filter")
        else "off"
    )
    items = [("Privacy filter", privacy), ("Class filter", classes)]
    # Fewer views and lower precision can change which cells are kept, so the set names them.
    if summary.get("classifier_views") is not None:
        items.append(("Settings that decide the kept cells", kept_settings(summary)))
    lines = _lines(items)
    lines += [
        "",
        "| class | written | drawn | " + " | ".join(REASON_LABELS[r] for r in REASONS) + " |",
    ]
    lines.append("|:---|" + "---:|" * (2 + len(REASONS)))
    for label in CLASSES:
        rejected = (summary.get("rejected") or {}).get(label) or {}
        counts = [str(rejected.get(r, 0)) for r in REASONS]
        lines.append(
            f"| {label} | {(summary.get('accepted') or {}).get(label, 0)} | "
            f"{(summary.get('attempts') or {}).get(label, 0)} | " + " | ".join(counts) + " |"
        )
    return lines


def datasheet_markdown(
    summary: Mapping[str, Any],
    metrics_data: Mapping[str, Any] | None,
    index: Mapping[str, Any] | None,
    *,
    cell_size: int,
) -> str:
    """The datasheet's Markdown.

    Args:
        summary: The export's summary (``SynthSummary.to_dict()``, as in ``summary.json``).
        metrics_data: ``metrics.json`` of the models folder (None: every figure "not measured").
        index: ``index.json`` of the models folder (None: the training profile is not stated).
        cell_size: Side of the cells in pixels.

    Returns:
        The text of ``DATASHEET.md``.
    """
    metrics_data = metrics_data or {}
    name = str(summary.get("model", ""))
    model = release.model_metrics(metrics_data, name)
    hashes = summary.get("model_sha256") or {}
    unique = sorted(set(hashes.values()))
    sha = unique[0] if len(unique) == 1 else "; ".join(f"{k} {v}" for k, v in hashes.items())
    profile = artifacts.models_notice(index) if index else None
    training = tables.training_summary(
        str(summary.get("display_name", name)), model.get(release.TRAINING)
    )
    written = metrics_data.get(release.WRITTEN_BY) or {}
    command = written.get(release.COMMAND) or metrics_data.get(release.COMMAND) or "unknown"
    commit = written.get(release.GIT_COMMIT) or metrics_data.get(release.GIT_COMMIT) or "unknown"
    fault = model.get(release.KNOWN_FAULT)
    out = [
        f"# Datasheet: synthetic malaria blood cells from {summary.get('display_name', name)}",
        "",
        f"{tables.counted(sum((summary.get('accepted') or {}).values()), 'cell')} at "
        f"{cell_size}×{cell_size} pixels in NIH's folder layout (`{MANIFEST_NAME}` lists each "
        f"cell, `{SUMMARY_NAME}` the settings). Generated, not photographed.",
        "",
        "## Generator",
        *_lines(
            [
                ("Model", f"`{name}` ({summary.get('display_name', name)})"),
                ("sha256", f"`{sha}`{_copy(summary)}"),
                ("Classifier of the filters (sha256)", f"`{summary.get('classifier_sha256', '')}`"),
                ("Latent seed", str(summary.get("seed"))),
                (
                    "Truncation",
                    tables.number(summary.get("truncation"), "g")
                    if summary.get("truncation")
                    else "none",
                ),
                ("Training", training or tables.NOT_MEASURED),
                ("Models", profile.text if profile else "training profile not stated"),
            ]
        ),
        *([f"- **Known fault:** {fault}"] if fault else []),
        "",
        "## Training data",
        *_training_data(metrics_data),
        "",
        "## Figures from `metrics.json` (held-out patients; each with its real reference)",
        *_lines(tables.generator_figures(metrics_data, name)),
        "",
        f"Written by `{command}` at commit `{commit}`.",
        *_figure_provenance(written.get(release.WRITTEN_FIGURES), name),
        "",
        "## Filters of this set",
        *_filters(summary),
        "",
        "## Intended uses",
        *[f"- {use}" for use in INTENDED_USES],
        "",
        "## Known limits",
        f"- Cells are {cell_size}×{cell_size} pixels: NIH's cells were resized, and fine "
        "parasite detail is lost.",
        *[f"- {limit}" for limit in KNOWN_LIMITS],
        "",
        "## Not for",
        NOT_FOR,
        "",
    ]
    return "\n".join(out)


def write_datasheet(
    folder: str | os.PathLike,
    summary: Mapping[str, Any],
    exported: str | os.PathLike,
    *,
    cell_size: int,
) -> Path:
    """Write ``DATASHEET.md`` into a dataset folder, from a models folder's index and metrics.

    A missing or unreadable ``metrics.json`` or ``index.json`` leaves its parts "not measured".

    Returns:
        The datasheet's path.
    """

    def read(load: Any) -> dict[str, Any] | None:
        try:
            return load(exported)
        except ModelError:
            return None

    text = datasheet_markdown(
        summary, read(artifacts.load_metrics), read(artifacts.load_index), cell_size=cell_size
    )
    path = Path(folder) / DATASHEET_NAME
    path.write_text(text, encoding="utf-8")
    return path
