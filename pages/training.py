"""Training page: sample grids over the iterations, loss curves and the classifier's epochs."""

from __future__ import annotations

import streamlit as st

from malgan import artifacts, release, tables
from malgan.app import cells, controls, frame, loading, training_charts
from malgan.data import CLASSES

CLASSIFIER_METRICS = (
    ("Test accuracy", release.TEST_ACCURACY),
    ("Test AUC", release.TEST_AUC),
    ("Sensitivity (Parasitized)", release.SENSITIVITY),
    ("Specificity", release.SPECIFICITY),
)


frame.page_intro(
    "How the generators learned: sample grids saved during training (as in the report's "
    "figures), the losses, and the classifier's epochs.",
)
exported = artifacts.exported_dir()
index = loading.index()
if index is None:
    st.stop()
metrics = loading.metrics()
model = frame.choose_generator("t_model", st.columns([1, 2])[0], purpose="show")
choices = loading.generator_choices()
controls.url_choice("t_class", CLASSES[0], list(CLASSES))

# Length and speed of the runs that produced the exported model.
runs = release.model_metrics(metrics, model).get(release.TRAINING) or {}
for col, (run, info) in zip(st.columns(max(len(runs), 1)), runs.items(), strict=False):
    iterations, speed = info.get("iterations"), info.get("iterations_per_second")
    col.metric(
        f"{training_charts.run_title(run)}: iterations",
        f"{iterations:,}" if isinstance(iterations, int) else tables.MISSING,
        help="Training iterations of the run that produced the exported model.",
    )
    notes = [f"{speed:.2f} iterations per second"] if isinstance(speed, int | float) else []
    kept = tables.kept_iteration(info)
    if kept is not None:
        notes.append(f"the dashboard's model is iteration {kept:,}'s (best validation probe)")
    if notes:
        col.caption("; ".join(notes))


# Sample grids: a fragment, so switching the class tab redraws the grids only.
@st.fragment
def snapshot_grids(model: str) -> None:
    """The saved sample grids of ``model``, one tab per class, in balanced rows."""
    st.subheader("Samples during training")
    snapshots = artifacts.snapshot_files(index, model, exported)
    if not snapshots:
        st.info(f"No sample grids were saved for {choices[model]}.")
        controls.sync_url("t_model")
        return
    st.caption(
        "The same latents rendered at each saved iteration; the report showed iterations 1, "
        "5,000, 10,000 and 15,000."
    )
    labels = list(snapshots)
    if st.session_state.get("t_class") not in labels:
        st.session_state["t_class"] = labels[0]
    tabs = st.tabs(labels, key="t_class", on_change="rerun")
    for tab, label in zip(tabs, labels, strict=True):
        with tab:
            entries = snapshots[label]
            # As many grids per row as fit near their own size, in rows without gaps if possible.
            widest = max((loading.image_width(str(path)) for _, path in entries), default=0)
            per_row = cells.snapshots_per_row(len(entries), widest)
            for start in range(0, len(entries), per_row):
                cols = st.columns(per_row)
                for col, (iteration, path) in zip(
                    cols, entries[start : start + per_row], strict=False
                ):
                    if path.is_file():
                        col.image(str(path), caption=f"{label}, iteration {iteration:,}")
                    else:
                        col.warning(f"Iteration {iteration:,}: {path.name} is missing.")
    controls.sync_url("t_model", "t_class")


snapshot_grids(model)

# Losses.
st.subheader("Losses")
model_history = loading.named_history(index, model)
frame.chart(
    training_charts.loss_curves(model_history),
    "t_losses",
    missing=f"No losses were recorded for {choices[model]}.",
    caption="GAN losses do not fall to zero: the generator and discriminator play against each "
    "other, so flat, bounded curves are healthy and a discriminator loss near zero means the "
    "generator is losing.",
)

# The classifier.
st.subheader("The classifier")
summary = release.main_classifier(metrics)
if summary:
    cols = st.columns(len(CLASSIFIER_METRICS))
    for col, (title, key) in zip(cols, CLASSIFIER_METRICS, strict=True):
        value = summary.get(key)
        shown = tables.number(value, ".3f") if key == release.TEST_AUC else tables.percent(value)
        col.metric(title, shown)
frame.chart(
    training_charts.classifier_history(loading.named_history(index, release.CLASSIFIER)),
    "t_classifier",
    missing="No classifier training history was recorded.",
    caption="Training loss and accuracy on validation patients, per epoch.",
)
