"""Recovery page: how often generated cells are classified as the class they were made for."""

from __future__ import annotations

import streamlit as st

from malgan import artifacts, live, release, report, tables
from malgan.app import cells, charts, controls, frame, loading, training_charts
from malgan.data import CLASSES
from malgan.errors import ModelError

MIN_CELLS, MAX_CELLS, DEFAULT_CELLS, CELL_STEP = 16, 2000, 200, 16
LIVE_STATE = "r_live_result"


frame.page_intro(
    "Recovery is the share of generated cells that the classifier assigns to the class they were "
    "generated as. The report's DCGANs recovered only 30% of their Parasitized cells.",
)
exported = artifacts.exported_dir()
metrics = loading.metrics()
index = loading.index()
choices = loading.generator_choices()

# Controls (shared by the histograms, the training curve and the live measurement).
if choices:
    controls.url_choice("r_model", frame.DEFAULT_MODEL, list(choices))
controls.url_int("r_n", DEFAULT_CELLS, MIN_CELLS, MAX_CELLS)
controls.url_int("r_seed", frame.DEFAULT_SEED, 0, controls.MAX_SEED)

# Published, reproduced and malgan rates side by side.
st.subheader("Report, reproduction and malgan")
saved = st.session_state.get(LIVE_STATE)
extra = []
if saved:
    extra.append((f"Live: {saved['display_name']} (n = {saved['n']})", saved["result"]["recovery"]))
st.plotly_chart(charts.recovery_bars(metrics, extra=extra), key="r_bars")
st.caption(
    "Bars are the share of cells recovered as intended; whiskers are 95% Wilson intervals (the "
    "report gave none). Models are measured on held-out generated cells in `metrics.json`; "
    "under each model, how long it trained (the report's DCGAN is two runs, one per class)."
)
models = release.all_model_metrics(metrics)
for col, (name, entry) in zip(st.columns(max(len(models), 1)), models.items(), strict=False):
    col.markdown(f"**{choices.get(name, name)}**")
    for sub, cls in zip(col.columns(len(CLASSES)), CLASSES, strict=True):
        rate = ((entry or {}).get(release.RECOVERY) or {}).get(cls, {}).get("rate")
        if isinstance(rate, int | float):
            sub.metric(
                f"{cls} recovered",
                tables.percent(rate),
                **cells.points_delta(rate - report.REPORT_RECOVERY[cls], "vs report"),
            )
    trained = tables.training_summary(choices.get(name, name), (entry or {}).get(release.TRAINING))
    if trained:
        col.caption(f"{trained}.")
    frame.model_note(name, choices.get(name, name), col)

if not choices:
    st.info("No generator is listed in the model index, so there is nothing more to show.")
    st.stop()

# One model in detail: the model chosen here drives every section below.
st.subheader("One model in detail")
pick = st.columns([1, 2], vertical_alignment="bottom")
model = pick[0].selectbox("Model", list(choices), format_func=choices.get, key="r_model")
frame.model_note(model, choices[model])
pick[1].caption(
    "Its classifier confidence, its recovery during training and a live measurement follow."
)

# Confidence histograms.
st.markdown(f"#### Classifier confidence: {choices[model]}")
frame.chart(
    charts.confidence_histograms(metrics, model),
    "r_hist",
    missing=f"`metrics.json` holds no confidence histogram for {choices[model]}.",
    caption="Probability the classifier gives to the intended class. Mass near 50% means the "
    "classifier cannot tell; mass below 50% means the cell looks like the other class.",
)

# Realism and variety, beside real cells of other patients.
st.markdown(f"#### Realism and variety: {choices[model]}")
fig = charts.diversity_bars(metrics, model)
if fig is None:
    st.info(
        f"`metrics.json` holds no precision, recall, density or coverage for {choices[model]}; "
        "`python -m train.evaluate_exported` computes them from the exported models."
    )
else:
    st.plotly_chart(fig, key="r_diversity")
    entry = release.model_metrics(metrics, model)
    st.caption(
        "k-nearest-neighbour figures (k = 5) in the classifier's features against real cells of "
        "the test patients. **Precision**: share of generated cells that look like some real "
        "cell (realism). **Recall**: share of real cells that some generated cell looks like "
        "(variety). **Density**: how many real neighbourhoods a generated cell falls in, over "
        "k. **Coverage**: share of real neighbourhoods holding a generated cell. Grey bars are "
        "the same figures for real cells of the validation patients in place of generated ones: "
        "what real data scores, which is not 1. **Nearest real cell a training cell** (among "
        "equal numbers of training and test patients' cells): "
        + "; ".join(f"{label} {tables.membership_text(entry, label)}" for label in CLASSES)
        + "."
    )

# Recovery during training.
st.markdown(f"#### Recovery during training: {choices[model]}")
relative = release.history_file(index, model)
curve = None
if relative:
    try:
        curve = training_charts.recovery_curve(loading.history(exported, relative))
    except ModelError as err:
        st.warning(str(err), icon="⚠️")
frame.chart(
    curve,
    "r_curve",
    missing=f"No recovery probes were recorded while training {choices[model]}.",
    caption="Probe cells from fixed latents, classified at regular iterations during training.",
)


# Live measurement: a fragment, so changing its settings redraws this part only (a finished
# measurement reruns the page, whose comparison bars show it).
@st.fragment
def live_measurement(model: str) -> None:
    """Cells per class, seed and the button; the saved measurement when it matches them."""
    st.markdown(f"#### Measure it live: {choices[model]}")
    st.caption(
        "Generate fresh cells of both classes on this machine's CPU and classify them. The "
        "cells are cells 0 to N−1 of the seed, the same ones the Sample page shows."
    )
    cols = st.columns(3, vertical_alignment="bottom")
    n = cols[0].number_input(
        "Cells per class", min_value=MIN_CELLS, max_value=MAX_CELLS, step=CELL_STEP, key="r_n"
    )
    seed = controls.seed_input("r_seed", cols[1])
    controls.sync_url("r_model", "r_n", "r_seed")
    measure = cols[2].button("Measure recovery", key="r_measure", type="primary", icon="▶️")
    params = {"exported": exported, "model": model, "n": int(n), "seed": int(seed)}

    if measure:
        generator, classifier = loading.generator(model), loading.classifier()
        if generator is not None and classifier is not None:
            bar = st.progress(0.0, text="Generating cells…")
            result = live.measure_recovery(
                generator,
                classifier,
                int(n),
                int(seed),
                progress=lambda done, text: bar.progress(min(done, 1.0), text=text),
            )
            bar.empty()
            st.session_state[LIVE_STATE] = {
                **params,
                "display_name": choices[model],
                "result": result,
            }
            st.rerun()

    saved = st.session_state.get(LIVE_STATE)
    if saved and {k: saved[k] for k in params} == params:
        result = saved["result"]
        cols = st.columns(len(result["recovery"]))
        for col, (cls, rates) in zip(cols, result["recovery"].items(), strict=True):
            col.metric(
                f"{cls} recovered",
                tables.percent(rates["rate"]),
                **cells.points_delta(rates["rate"] - report.REPORT_RECOVERY[cls], "vs report"),
            )
            col.caption(
                f"95% CI {tables.percent(rates['ci_low'])}–{tables.percent(rates['ci_high'])} · "
                f"mean confidence {tables.percent(rates['mean_confidence'])} · n = {rates['n']}"
            )
        st.caption(
            f"{choices[model]}, seed {saved['seed']}, {saved['n']} cells per class, measured in "
            f"{result['seconds']:.1f} s on the CPU."
        )
        live_fig = charts.histogram_figure(result["confidence_histogram"])
        if live_fig is not None:
            st.plotly_chart(live_fig, key="r_live_hist")
    elif saved:
        st.caption("The settings changed since the last measurement; press the button to measure.")


live_measurement(model)
