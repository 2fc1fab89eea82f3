"""Overview: what malgan is, the headline comparison with the report, and a strip of cells."""

import streamlit as st

from malgan import artifacts, release, tables
from malgan.app import cells, frame, loading, views
from malgan.app.table_view import Column, show_table
from malgan.data import CLASSES

STRIP_MODEL = "cgan"
STRIP_SEED = frame.DEFAULT_SEED
STRIP_CELLS = 8
NIH_PATIENTS = 200
PATIENTS_USED = 180

frame.page_intro(
    "Synthetic malaria blood-cell images from generative adversarial networks, judged by a "
    "classifier trained on real cells of other patients.",
)

st.markdown(
    "Research on malaria microscopy needs many labelled blood-cell images, but real smears are "
    "patient data: they are hard to share and slow to label. **malgan** trains generative "
    "adversarial networks on the public NIH cell set and produces *synthetic* Parasitized and "
    "Uninfected cells that can stand in for private patient images: to prototype, teach, "
    "augment training sets or share a dataset without sharing a patient. Every figure below is "
    "measured on patients the models never saw, and compared with the student report that "
    "started the project."
)

# Generated cells.
st.subheader("Generated cells")
choices = loading.generator_choices()
strip_model = STRIP_MODEL if STRIP_MODEL in choices else next(iter(choices), None)
if strip_model is None:
    st.error("No generator is available, so no cells can be shown.", icon="⚠️")
elif loading.generator(strip_model) is not None:
    for label in CLASSES:
        strip = views.strip_png(
            artifacts.exported_dir(), strip_model, label, STRIP_SEED, STRIP_CELLS
        )
        st.markdown(
            f"{cells.CLASS_ICONS[label]} " + cells.coloured(label, label), unsafe_allow_html=True
        )
        st.image(
            strip,
            caption=f"{label}: {choices[strip_model]}, seed {STRIP_SEED}, cells 0–"
            f"{STRIP_CELLS - 1}",
        )
    st.caption(
        "Make more on the **Sample** page; slide through the latent space on the "
        "**Latent explorer**."
    )

# Headline figures.
st.subheader("Headline figures")
metrics = loading.metrics()
if metrics is None:
    st.info(
        "The headline table needs `metrics.json`, which the training pipeline writes next to the "
        "models. Without it the figures cannot be shown; the cells above still come from the "
        "models.",
        icon="📄",
    )
else:
    # An HTML table, one card per figure on a phone: the first page of a fresh server need not
    # load pandas for a dozen rows.
    columns = [Column(c, c) for c in tables.headline_columns(metrics)]
    show_table(tables.headline_table(metrics), columns, label="Headline figures")
    for column, name in tables.HEADLINE_MODELS.items():
        fault = tables.known_fault(metrics, name)
        origin = tables.generator_origin(metrics, name) if name == "dcgan" else ""
        if fault:
            st.warning(f"Left out of the table: {choices.get(name, name)}. {fault}", icon="⚠️")
        elif origin:
            st.caption(f"{column}: {origin}.")
    st.caption(
        "**Recovery**: share of generated cells the classifier assigns to the intended class "
        "(Wilson 95% interval). **Fréchet distance** between generated and held-out real cells "
        "in the classifier's feature space, as a multiple of the distance between the real cells "
        "of two groups of patients (1× is as close as real data gets). **Coverage**: share of "
        "held-out real cells' neighbourhoods (k = 5, classifier features) that hold a generated "
        "cell, beside the same for real cells of other patients. **Train on synthetic, "
        "test on real**: a classifier trained on generated cells only, tested on real cells of "
        "held-out patients. **Memorisation**: share of generated cells closer to a training cell "
        "than the closest 1% of held-out real cells are. The report's column quotes its "
        "published numbers; — means it did not measure that figure."
    )

# The data.
st.subheader("The data")
classifier_info = release.main_classifier(metrics)
n_test = classifier_info.get(release.N_TEST)
test_patients = classifier_info.get(release.TEST_PATIENTS) or []
held_out = (
    f" The classifier is tested on **{n_test:,} cells of {len(test_patients)} held-out patients**."
    if isinstance(n_test, int) and test_patients
    else ""
)
st.markdown(
    f"The NIH malaria cell set (Lister Hill National Center for Biomedical Communications; "
    f"Rajaraman et al., PeerJ 2018) holds 27,558 segmented red blood cells from "
    f"{NIH_PATIENTS} patients. malgan uses **{PATIENTS_USED} patients**; the others are withheld "
    f"entirely. Every split is **by patient**, never by cell, because cells of one slide look "
    f"alike and a cell-level split inflates accuracy.{held_out}"
)
st.warning(frame.NOT_CLINICAL, icon="⚕️")
