"""Synthetic dataset: filtered generated cells in NIH's layout, downloaded as one ZIP."""

import tempfile
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from malgan import artifacts, imaging
from malgan.app import cells, controls, dataset, frame, loading, views
from malgan.data import CLASSES
from malgan.synth import datasheet, writer

DEFAULT_CELLS = 100
MAX_CELLS = 2000
MAX_ATTEMPTS_FACTOR = 200
MIN_CONFIDENCE = 0.5
MAX_CONFIDENCE = 0.99
RESULT_KEY = "_d_export"


frame.page_intro(
    "Export a labelled set of synthetic cells in the NIH folder layout, ready to train on or "
    "share. Every cell is checked by the classifier and by a privacy filter before it is kept.",
)

# Controls.
controls.url_int("d_n", DEFAULT_CELLS, 1, MAX_CELLS)
controls.url_int("d_seed", frame.DEFAULT_SEED, 0, controls.MAX_SEED)
controls.url_float("d_conf", MIN_CONFIDENCE, MIN_CONFIDENCE, MAX_CONFIDENCE)
controls.url_int("d_attempts", writer.DEFAULT_MAX_ATTEMPTS_FACTOR, 1, MAX_ATTEMPTS_FACTOR)
# The smoke-test placeholders' classifier rejects every cell of one class, so their class
# filter starts off: the page's defaults always give a dataset.
smoke = loading.smoke_models()
controls.url_value("d_class", not smoke, controls.parse_flag)
controls.url_value("d_privacy", True, controls.parse_flag)

reference = loading.reference()
left, right = st.columns(2)
model = frame.choose_generator("d_model", left, purpose="export", label="Generator")
with left:
    st.number_input(
        "Cells per class",
        min_value=1,
        max_value=MAX_CELLS,
        step=50,
        key="d_n",
        help=f"Up to {MAX_CELLS} Parasitized and {MAX_CELLS} Uninfected cells.",
    )
    controls.seed_input("d_seed")
    truncation = controls.truncation_slider("d_trunc")
with right:
    st.toggle(
        "Class filter",
        key="d_class",
        help="Keep only cells the classifier assigns to their intended class.",
    )
    st.slider(
        "Minimum confidence",
        MIN_CONFIDENCE,
        MAX_CONFIDENCE,
        step=0.01,
        key="d_conf",
        disabled=not st.session_state["d_class"],
        help="Keep only cells whose probability of the intended class is at least this.",
    )
    st.number_input(
        "Attempts per cell",
        min_value=1,
        max_value=MAX_ATTEMPTS_FACTOR,
        step=5,
        key="d_attempts",
        help="The most latents drawn per requested cell of a class before the export gives up, "
        "when the filters reject many cells.",
    )
    st.toggle(
        "Privacy filter",
        key="d_privacy",
        disabled=reference is None,
        help="Reject cells that are closer to a training cell than real held-out cells usually "
        "are, and draw replacements.",
    )
    if reference is None:
        st.caption("The privacy filter is unavailable without the training reference.")
    elif st.session_state["d_privacy"]:
        st.caption(
            f"Threshold: distance **{reference.privacy_threshold:.4f}** in the classifier's "
            "reference space, the 1st percentile of held-out real cells' distances to their "
            "nearest training cell."
        )
    else:
        st.caption(
            "Privacy filter off: near-copies of training cells may be exported. The distance "
            "of each cell is still recorded in the manifest."
        )
controls.sync_url(
    "d_model", "d_n", "d_seed", "d_trunc", "d_conf", "d_attempts", "d_class", "d_privacy"
)

n_per_class = int(st.session_state["d_n"])
config = writer.SynthConfig(
    n_per_class=n_per_class,
    seed=int(st.session_state["d_seed"]),
    truncation=truncation,
    min_confidence=float(st.session_state["d_conf"]),
    class_filter=bool(st.session_state["d_class"]),
    privacy_filter=bool(st.session_state["d_privacy"]) and reference is not None,
    max_attempts_factor=int(st.session_state["d_attempts"]),
)
params = {"exported": artifacts.exported_dir(), "model": model, "config": config}

# How close each generator comes to its training patients, as metrics.json measured it.
st.markdown("#### Do the generators copy their training patients?")
measured = loading.metrics()  # says on the page why, when metrics.json is unreadable
membership = dataset.membership_lines(measured, loading.generator_choices())
if measured is not None and not membership:
    st.caption("`metrics.json` holds no membership figure for these generators.")
if membership:
    st.markdown("\n".join(f"- {line}" for line in membership))
    st.caption(
        "Share of generated cells whose nearest real cell (in the classifier's features, among "
        "equal numbers of cells of training patients and of unseen patients) is a training "
        "cell; in brackets, the reference: the same share for as many real cells of unseen "
        "patients. A generator that copies no patient sits at the reference, because its cells "
        "are then no closer to the training patients than a new patient's cells are; above it, "
        "its cells lean towards the training patients. The privacy filter rejects the single "
        "cells that come too close."
    )

# Generation.
attempt_limit = config.max_attempts
if smoke and config.class_filter:
    rates = loading.measured_recovery(model)
    measured = ", ".join(f"{label} {rate:.0%}" for label, rate in rates.items())
    st.warning(
        "**Expect this export to fail with the class filter on.** The model index marks these "
        "models as smoke-test placeholders, and the classifier rejects most cells of at least "
        "one class"
        + (f" (recovered in `metrics.json`: {measured})" if measured else "")
        + f". The export then draws up to {attempt_limit:,} cells of that class and stops "
        "without a dataset. Turn the **Class filter** off to export these cells anyway.",
        icon="🚧",
    )
elif smoke:
    st.caption(
        "The class filter starts off for these smoke-test placeholder models: their classifier "
        "rejects most cells of at least one class."
    )
if st.button(f"Generate {2 * n_per_class} cells", type="primary", icon="📦"):
    generator = frame.require_generator(model)
    classifier = loading.classifier()
    bar = st.progress(0.0, text="Generating and filtering cells…")
    started = time.perf_counter()
    accepted = {"done": 0, "total": 2 * n_per_class}

    def show_progress() -> None:
        """Accepted cells, cells drawn per class, speed and time so far, on the progress bar."""
        drawn = " · ".join(
            f"{label} {counting.drawn[label]:,} of at most {attempt_limit:,}" for label in CLASSES
        )
        seconds = time.perf_counter() - started
        speed = sum(counting.drawn.values()) / seconds if seconds > 0 else 0.0
        bar.progress(
            accepted["done"] / accepted["total"],
            text=f"**{accepted['done']:,} of {accepted['total']:,} cells accepted** · drawn: "
            f"{drawn} · {speed:.0f} cells/s · {seconds:.0f} s",
        )

    def report(done: int, total: int) -> None:
        accepted.update(done=done, total=total)
        show_progress()

    counting = views.CountingGenerator(generator, on_batch=show_progress)
    st.session_state.pop(RESULT_KEY, None)
    with tempfile.TemporaryDirectory(prefix="malgan-synth-") as tmp:
        st.session_state[RESULT_KEY] = dataset.export_result(
            Path(tmp) / "dataset",
            params,
            generator=counting,
            classifier=classifier,
            reference=reference,
            progress=report,
        )
    bar.empty()

# Results.
result = st.session_state.get(RESULT_KEY)
if result is None:
    st.info("Choose the settings and press **Generate** to build the dataset.", icon="👆")
    st.stop()
if result["params"] != params:
    st.info("The settings changed since the last export: press **Generate** again.", icon="🔄")
    st.stop()

if "error" in result:
    st.error(f"**The dataset could not be completed.** {result['error']}", icon="⚠️")
    if result["rejected"]:
        st.subheader("What the filters rejected")
        st.plotly_chart(dataset.rejection_figure(result["rejected"]), width="stretch")
    st.stop()

summary = result["summary"]
st.subheader("Your dataset")
total_rejected = sum(summary["total_rejected"].values())
tried = sum(summary["attempts"].values())
cols = st.columns(4)
cols[0].metric("Cells written", f"{summary['total_accepted']:,}")
cols[1].metric("Rejected by the filters", f"{total_rejected:,}")
cols[2].metric("Acceptance rate", f"{summary['total_accepted'] / tried:.0%}")
cols[3].metric("Speed", f"{summary['images_per_second']:.0f} cells/s")
st.download_button(
    f"Download ZIP ({dataset.size_text(len(result['zip']))})",
    data=result["zip"],
    file_name=result["file_name"],
    mime="application/zip",
    icon="⬇️",
    type="primary",
)
size = result["img_size"]
st.caption(
    f"The archive holds `Parasitized/` and `Uninfected/` folders of {size}×{size} PNGs named like "
    "the NIH cells (so malgan and other NIH loaders read them back), `manifest.csv` (one row per "
    "cell: model, its sha256, seed, latent index, truncation, classifier probability and "
    "distance to the nearest training cell), `summary.json` (settings and filter counts) and "
    "`DATASHEET.md` (the generator, its training data and figures, the filters, intended uses "
    "and limits). "
    "The seed and latent index in the manifest reproduce any cell on the other pages. "
    f"Settings that decided the kept cells: {datasheet.kept_settings(summary)} (the manifest's "
    "`classifier_views` gives each cell's)."
)

st.subheader("What the filters rejected")
if total_rejected:
    st.plotly_chart(dataset.rejection_figure(summary["rejected"]), width="stretch")
    st.caption("Each rejected cell was replaced by the next latent of the seed.")
else:
    st.success("No cell was rejected: every generated cell passed the filters.", icon="✅")

st.subheader("Preview")
for label in CLASSES:
    preview = result["preview"][label]
    st.markdown(
        f"{cells.CLASS_ICONS[label]} " + cells.coloured(label, label), unsafe_allow_html=True
    )
    st.image(
        imaging.make_grid(preview, ncol=dataset.PREVIEW_CELLS, scale=cells.VIEW_SCALE),
        caption=f"The first {len(preview)} of {summary['accepted'][label]} {label} cells written",
    )

with st.expander("First rows of manifest.csv"):
    st.dataframe(pd.DataFrame(result["manifest"]), hide_index=True)
