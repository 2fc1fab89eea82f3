"""Classifiers page: every trained classifier next to the report's published accuracies."""

from __future__ import annotations

import streamlit as st

from malgan import release, report, tables
from malgan.app import cells, charts, frame, loading
from malgan.app.table_view import Column, show_table

# Appended to the names of the report's own rows (its published figures, not measured here).
PUBLISHED_MARK = ", as published"
# The table's columns on the page; the source and recipe already show in the names.
COMPARISON_COLUMNS = (
    Column(
        "classifier",
        "Classifier",
        "Measured here on held-out patients, except the rows marked as published, which quote "
        "the report.",
    ),
    Column("accuracy", "Accuracy", "Test accuracy."),
    Column("AUC", "AUC", "Area under the ROC curve of P(parasitized)."),
    Column("sensitivity (Parasitized)", "Sensitivity", "Share of Parasitized test cells found."),
    Column("specificity", "Specificity", "Share of Uninfected test cells kept."),
    Column("parameters", "Params", "Trainable parameters, in millions."),
    Column(
        "CPU latency, one cell",
        "CPU latency",
        "Median time to classify one cell with ONNX Runtime on the CPU.",
    ),
    Column(
        "TTA", "TTA", "Test-time augmentation: the 8 flips and rotations of each cell, averaged."
    ),
    Column("diverged", "Diverged", "The epoch at which training diverged, if it did."),
)
# Narrower than this, the tables show one card per row: their columns no longer fit side by side.
COMPARISON_STACK_PX = 700
DIAGNOSIS_STACK_PX = 600

frame.page_intro(
    "The report's ResNet reached 94.9% and its simple CNN 52–55%. Here the same architectures "
    "are retrained on a patient-level split, with the report's recipe and with a sound one.",
)
metrics = loading.metrics()
if metrics is None:
    st.stop()
rows = release.comparison_rows(metrics)

cols = st.columns(3)
cols[0].metric("Report's ResNet", tables.percent(report.REPORT_RESNET_ACCURACY))
cols[1].metric("Report's simple CNN", tables.percent_range(*report.REPORT_CNN_ACCURACY))
best = max(
    (r for r in rows if isinstance(r.get(release.ACCURACY), int | float)),
    key=lambda r: r[release.ACCURACY],
    default=None,
)
if best is not None:
    # The name goes under the figure, where it may wrap: a metric's label is cut to one line.
    cols[2].metric(
        "Best here",
        tables.percent(best[release.ACCURACY]),
        **cells.points_delta(best[release.ACCURACY] - report.REPORT_RESNET_ACCURACY, "vs report"),
    )
    cols[2].caption(str(tables.shown_name(best)))

st.subheader("Accuracy on held-out patients")
frame.chart(
    charts.classifier_bars(rows),
    "k_bars",
    missing="`metrics.json` holds no classifier accuracy yet.",
    caption="Test accuracy on patients none of the classifiers saw. The dashed line is the "
    "report's ResNet; the grey band is the report's simple CNN. Grey bars diverged during "
    "training.",
)

st.subheader("Comparison table")
table = tables.classifier_table(rows)
for row in table:
    # The source folds into the name: only the report's own figures are marked.
    if row["source"] == tables.PUBLISHED_SOURCE:
        row["classifier"] += PUBLISHED_MARK
show_table(
    table, COMPARISON_COLUMNS, label="Classifier comparison", stack_below_px=COMPARISON_STACK_PX
)
st.caption(
    "Sensitivity is the share of Parasitized test cells found; specificity the share of "
    "Uninfected cells kept. AUC is the area under the ROC curve; Params the trainable "
    "parameters, in millions. CPU latency is the median time to classify one cell with ONNX "
    "Runtime. TTA (test-time augmentation) averages the 8 flips and rotations of each cell. "
    "Diverged gives the epoch at which training diverged, if it did. The rows marked "
    f"“{PUBLISHED_MARK.strip(', ')}” quote the report's accuracies; it gave no other figure (—)."
)

diagnosis = metrics.get(release.CNN_DIAGNOSIS)
if diagnosis:
    st.subheader(tables.diagnosis_heading(diagnosis))
    diagnosis_rows = tables.diagnosis_rows(diagnosis)
    if diagnosis_rows:
        show_table(
            diagnosis_rows,
            [Column(key, key[:1].upper() + key[1:]) for key in diagnosis_rows[0]],
            label="The report's CNN trained each way",
            stack_below_px=DIAGNOSIS_STACK_PX,
        )
    st.caption(
        " ".join(
            [
                "A short experiment, apart from the table above: the same network trained the "
                "report's way (Keras SGD at 0.01 on raw 0–255 pixels) beside the same recipe on "
                "0–1 pixels and on raw pixels with the step scaled down. Its accuracies come "
                "from these few epochs, not from the fully trained classifiers above. "
                "Training breaks down when its loss stops being a number; a unit that never "
                "fires outputs zero for every cell and so stops learning.",
                *tables.diagnosis_notes(diagnosis),
            ]
        )
    )
