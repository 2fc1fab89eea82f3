"""Sample: grids of generated cells of one class, each with the classifier's verdict."""

import streamlit as st

from malgan import artifacts, nearest, release
from malgan.app import cells, controls, frame, loading, views
from malgan.data import CLASSES
from malgan.errors import DataError, ModelError

MAX_CELLS = 64
DEFAULT_CELLS = 16
KEYS = ("s_model", "s_class", "s_n", "s_seed", "s_trunc")
# One line under each cell, with room before the next row of cells.
VERDICT_STYLE = "font-size:0.85rem;white-space:nowrap;font-style:normal;margin-bottom:0.9rem"

frame.page_intro(
    "Draw cells of one class from a generator. Each cell carries the classifier's verdict: "
    f"{cells.AGREE_MARK} when it recognises the intended class, {cells.DISAGREE_MARK} when it "
    "predicts the other one, with the probability of the predicted class.",
)

# Controls, seeded from the URL.
top = st.columns([3, 2, 2])
model = frame.choose_generator("s_model", top[0], purpose="sample")
controls.url_choice("s_class", CLASSES[0], CLASSES)
controls.url_int("s_n", DEFAULT_CELLS, 1, MAX_CELLS)
controls.url_int("s_seed", frame.DEFAULT_SEED, 0, controls.MAX_SEED)

top[1].radio("Class", CLASSES, horizontal=True, key="s_class")
top[2].slider("Number of cells", 1, MAX_CELLS, key="s_n")
bottom = st.columns([2, 1, 4], vertical_alignment="bottom")
controls.seed_input(
    "s_seed",
    bottom[0],
    help="The same seed always gives the same cells, here, in the command line and in the tests.",
)
bottom[1].button("🎲 New seed", on_click=controls.randomise_seed, args=("s_seed",))
truncation = controls.truncation_slider("s_trunc", bottom[2])
controls.sync_url(*KEYS)

label = st.session_state["s_class"]
n = int(st.session_state["s_n"])
seed = int(st.session_state["s_seed"])
st.caption(
    f"Truncation: {controls.truncation_label(st.session_state['s_trunc'])} · "
    f"cells 0–{n - 1} of seed {seed}"
)

frame.require_generator(model)

# The grid.
exported = artifacts.exported_dir()
images, proba = views.sample_cells(exported, model, label, seed, n, truncation)
pngs = views.sample_pngs(exported, model, label, seed, n, truncation)
recognised = cells.recognised_count(proba, label)
summary = st.columns([1, 3], vertical_alignment="center")
summary[0].metric(f"Recognised as {label}", f"{recognised} / {n}", help="Classifier argmax.")
summary[1].markdown(
    f"**{recognised} of {n}** recognised as {cells.coloured(label, label)} by the classifier.",
    unsafe_allow_html=True,
)

columns = min(n, cells.GRID_COLUMNS)
for start in range(0, n, columns):
    row = st.columns(columns)
    for i in range(start, min(start + columns, n)):
        with row[i - start]:
            agrees, _ = cells.verdict(proba[i], label)
            colour_of = label if agrees else next(c for c in CLASSES if c != label)
            st.image(pngs[i], width=images.shape[-2] * cells.VIEW_SCALE)
            caption = cells.coloured(cells.verdict_caption(proba[i], label), colour_of)
            st.markdown(f'<div style="{VERDICT_STYLE}">{caption}</div>', unsafe_allow_html=True)

# Nearest training cells, where the NIH folder is on this machine.
st.subheader("Nearest training cells")
data = nearest.data_dir()
if data is None:
    st.info(
        f"Set the environment variable `{nearest.DATA_ENV}` to the NIH cell folder (one "
        "subfolder per class) and restart the app to see a cell beside its three nearest "
        "training cells, measured as the privacy filter measures them.",
        icon="📁",
    )
else:
    # Fewer cells than before: the chosen cell stays among them.
    st.session_state["s_near"] = min(int(st.session_state.get("s_near", 0)), n - 1)
    pick = st.number_input("Cell", min_value=0, max_value=n - 1, step=1, key="s_near")
    classifier, reference = loading.classifier(), loading.reference()
    if classifier is not None and reference is not None:
        skip = release.main_classifier(loading.quiet_metrics()).get(release.CORRUPT_FILES)
        try:
            files = loading.training_files(data, tuple(skip or ()))
            (found,) = nearest.nearest_training_cells(
                classifier.features(images[int(pick)][None]), reference, files
            )
        except (DataError, ModelError) as err:
            st.warning(f"{err} (`{nearest.DATA_ENV}` = `{data}`)", icon="⚠️")
        else:
            row = st.columns(len(found) + 1)
            row[0].image(pngs[int(pick)], width=images.shape[-2] * cells.VIEW_SCALE)
            row[0].caption(f"Generated cell {int(pick)}")
            for col, neighbour in zip(row[1:], found, strict=True):
                col.image(str(neighbour.path), width=images.shape[-2] * cells.VIEW_SCALE)
                col.caption(
                    f"{neighbour.label}, {neighbour.path.name}: distance {neighbour.distance:.2f}"
                )
            st.caption(
                "Distances between codes of the classifier's features in the training "
                "reference; the privacy filter rejects a generated cell closer than "
                f"{reference.privacy_threshold:.2f} to any training cell."
            )

# Downloads, side by side.
grid_png, cells_zip = views.sample_files(exported, model, label, seed, n, truncation)
stem = f"{model}_{label}_seed{seed}"
with st.container(horizontal=True, gap="small"):
    st.download_button("⬇️ Grid (PNG)", grid_png, file_name=f"{stem}_grid.png", mime="image/png")
    st.download_button("⬇️ Cells (ZIP)", cells_zip, file_name=f"{stem}.zip", mime="application/zip")
st.caption("The page address holds every setting: copy it to share exactly these cells.")
