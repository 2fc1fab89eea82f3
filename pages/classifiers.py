"""Classifiers page: every trained classifier next to the report's published accuracies."""

from __future__ import annotations

import streamlit as st

from malgan import charts, report, ui

ui.page_setup(
    "Classifiers",
    "🧪",
    "The report's ResNet reached 94.89% and its simple CNN 52–55%. Here the same architectures "
    "are retrained on a patient-level split, with the report's recipe and with a sound one.",
)
metrics = ui.metrics()
if metrics is None:
    st.stop()
rows = metrics.get("classifiers") or []

cols = st.columns(3)
cols[0].metric("Report's ResNet", f"{100 * report.REPORT_RESNET_ACCURACY:.2f}%")
low, high = report.REPORT_CNN_ACCURACY
cols[1].metric("Report's simple CNN", f"{100 * low:.0f}–{100 * high:.0f}%")
best = max(
    (r for r in rows if isinstance(r.get("accuracy"), int | float)),
    key=lambda r: r["accuracy"],
    default=None,
)
if best is not None:
    cols[2].metric(
        f"Best here: {best.get('display_name', best.get('name'))}",
        f"{100 * best['accuracy']:.2f}%",
        delta=f"{100 * (best['accuracy'] - report.REPORT_RESNET_ACCURACY):+.2f} pts vs report",
    )

st.subheader("Accuracy on held-out patients")
fig = charts.classifier_bars(rows)
if fig is None:
    st.info("`metrics.json` holds no classifier accuracy yet.")
else:
    st.plotly_chart(fig, key="k_bars")
    st.caption(
        "Test accuracy on patients none of the classifiers saw. The dashed line is the report's "
        "ResNet; the grey band is the report's simple CNN. Grey bars diverged during training."
    )

st.subheader("Comparison table")
st.dataframe(charts.classifier_table(rows), hide_index=True, width="stretch")
st.caption(
    "Sensitivity is the share of Parasitized test cells found; specificity the share of "
    "Uninfected cells kept. CPU latency is the median time to classify one cell with ONNX "
    "Runtime. TTA averages the 8 flips and rotations of each cell. The report's rows quote its "
    "published accuracies; it gave no other figure (—)."
)
