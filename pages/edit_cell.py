"""Edit a real cell: find an uploaded cell in a generator's latent space, then edit it."""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from malgan import artifacts, imaging, infection, invert, latent_files, morphology, runtime, uploads
from malgan.app import cells, controls, frame, loading, pushes, views
from malgan.data import CLASSES

KEYS = ("e_model", "e_amount")
RESULT_KEY = "e_found"
# Infection slider: -1 towards Uninfected, +1 towards Parasitized (see malgan.infection).
AMOUNT_MIN = infection.AMOUNT_MIN
AMOUNT_MAX = infection.AMOUNT_MAX
AMOUNT_STEP = 0.05
EXAMPLE_KEY = "e_example"
PERCENT = 100.0
# Seed of the inversion's pool and mutations: the same upload gives the same latent.
SEARCH_SEED = 0
# Side-by-side cells are shown larger than grid cells, yet fit a third of the narrow layout.
VIEW_SCALE = 3


frame.page_intro(
    "Upload a photograph of one segmented red blood cell. The page searches the generator's "
    "latent space for the cell it can draw that looks most like yours, then lets you push that "
    "cell towards or away from infection: with the conditional GAN by its class input, with "
    "the report's DCGANs along a direction of the latent fitted to the classifier.",
)

# Controls, seeded from the URL.
controls.url_float("e_amount", 0.0, AMOUNT_MIN, AMOUNT_MAX)
top = st.columns([2, 3])
model = frame.choose_generator("e_model", top[0], purpose="search")
generator = frame.require_generator(model)
classifier = loading.classifier()
size = classifier.img_size
uploaded = top[1].file_uploader(
    "One cell image",
    type=uploads.UPLOAD_TYPES,
    key="e_upload",
    help="PNG, JPEG, TIFF, WebP, BMP or GIF; one cell, ideally on a black background like the "
    f"training cells. It is resized to {size}×{size} pixels.",
)
controls.sync_url(*KEYS)
st.caption(
    "The page address keeps the model and the infection amount. An uploaded image cannot travel "
    "in a link: after opening a shared link, upload the cell again."
)
exported = artifacts.exported_dir()
examples = st.columns(len(CLASSES))
for col, label in zip(examples, CLASSES, strict=True):
    if col.button(f"Load an example {label} cell", key=f"e_example_{label}", width="stretch"):
        st.session_state[EXAMPLE_KEY] = pushes.example_cell(exported, label, 0)
example = st.session_state.get(EXAMPLE_KEY)
if uploaded is not None:
    name, payload = uploaded.name, uploaded.getvalue()
elif example is not None:
    name, payload, source = example
    st.caption(f"Example: {source}, {name}.")
else:
    st.info("Upload one cell image above, or load an example, to start.", icon="⬆️")
    st.stop()

# The upload goes through the checks of the Classify page, the out-of-distribution one included.
(checked,) = loading.classify_uploads([(name, payload)], classifier, loading.reference())
if not checked.ok:
    message = uploads.escape_markdown(checked.message)
    st.error(f"**This file cannot be used.** {message}", icon="🚫")
    st.stop()
frame.warn_if_unusual(checked)
cell = checked.image
p_original = np.asarray(checked.proba, np.float32)
digest = hashlib.sha256(payload).hexdigest()

# The search.
st.subheader("Find the cell in the latent space")
st.caption(
    f"A gradient-free search through {generator.display_name}: a pool of random latents, then an "
    f"evolution strategy, for about {invert.DEFAULT_TIME_BUDGET_S:g} seconds. It matches pixels "
    "and the classifier's features, and for the conditional GAN also searches the class."
)
if st.button("🔍 Find this cell", type="primary", key="e_find"):
    bar = st.progress(0.0, text="Searching the latent space…")

    def show_progress(fraction: float, loss: float) -> None:
        bar.progress(min(1.0, max(0.0, fraction)), text=f"Searching… best loss {loss:.4f}")

    found = invert.invert(
        cell,
        generator,
        classifier,
        seed=SEARCH_SEED,
        time_budget_s=invert.DEFAULT_TIME_BUDGET_S,
        progress=show_progress,
    )
    bar.empty()
    st.session_state[RESULT_KEY] = {
        "model": model,
        "exported": exported,
        "digest": digest,
        "result": found,
    }

stored = st.session_state.get(RESULT_KEY)
current = (
    stored is not None
    and stored["model"] == model
    and stored["exported"] == exported
    and stored["digest"] == digest
)
if not current:
    left, right = st.columns([1, 3])
    cells.show_cells(cell, left, scale=VIEW_SCALE, caption=f"Your cell, {size}×{size}")
    right.markdown(f"Classifier: {cells.verdict_markdown(p_original)}", unsafe_allow_html=True)
    right.info("Press **Find this cell** to search the generator for it.", icon="🔍")
    st.stop()

result: invert.InversionResult = stored["result"]
p_reconstruction = views.cell_probabilities(exported, result.reconstruction[None], classifier)[0]

# Original and reconstruction.
st.subheader("Original and reconstruction")
cols = st.columns([1, 1, 1])
with cols[0]:
    cells.show_cells(cell, scale=VIEW_SCALE, caption="Your cell")
    st.markdown(cells.verdict_markdown(p_original), unsafe_allow_html=True)
with cols[1]:
    cells.show_cells(result.reconstruction, scale=VIEW_SCALE, caption="Reconstruction")
    st.markdown(cells.verdict_markdown(p_reconstruction), unsafe_allow_html=True)
with cols[2]:
    st.metric(
        "SSIM to your cell",
        f"{result.ssim:.3f}",
        help="Structural similarity, 1 for identical images.",
    )
    st.metric("P(parasitized), your cell", f"{p_original[0]:.1%}")
    st.metric(
        "P(parasitized), reconstruction",
        f"{p_reconstruction[0]:.1%}",
        **cells.points_delta(p_reconstruction[0] - p_original[0], "vs your cell", colour="off"),
    )
weights = ", ".join(
    f"{name} {w:.2f}" for name, w in zip(generator.classes, result.class_weights, strict=True)
)
st.caption(
    f"Found as **{result.label}** (class weights: {weights}) · loss {result.loss:.4f} "
    f"(best random start {result.pool_best_loss:.4f}) · {result.evals} cells generated in "
    f"{result.seconds:.1f} s."
)


# Edit along the infection direction: a fragment, so moving the slider redraws this part
# only, not the search above.
@st.fragment
def infection_editor(
    result: invert.InversionResult,
    p_reconstruction: np.ndarray,
    generator: runtime.CellGenerator,
    classifier: runtime.Classifier,
) -> None:
    """The infection slider, the edited cell with its verdict, and the downloads."""
    st.subheader("Change the infection")
    st.slider(
        "Infection: −1 towards Uninfected, +1 towards Parasitized",
        AMOUNT_MIN,
        AMOUNT_MAX,
        step=AMOUNT_STEP,
        key="e_amount",
        help="0 is the reconstruction. With the conditional GAN the slider adds to the found "
        "cell's Parasitized class weight (clipped to 0…1) and keeps its latent: the class input "
        "is what draws the parasite. With the report's DCGANs it moves the latent along a "
        f"direction fitted to the classifier (InterFaceGAN), ±1 being "
        f"±{infection.DIRECTION_SIGMA_AT_MAX:g} standard deviations.",
    )
    controls.sync_url(*KEYS)
    amount = float(st.session_state["e_amount"])
    try:
        edited = views.edited_inversion(
            exported, model, result.z, result.class_weights, amount, result, generator
        )
    except ValueError as err:
        st.warning(f"**Editing is unavailable for this model.** {err}", icon="⚠️")
        return
    p_edited = views.cell_probabilities(exported, edited[None], classifier)[0]
    cols = st.columns([1, 1, 1])
    with cols[0]:
        cells.show_cells(result.reconstruction, scale=VIEW_SCALE, caption="Reconstruction")
    with cols[1]:
        cells.show_cells(edited, scale=VIEW_SCALE, caption=f"Edited, {amount:+g}")
        st.markdown(cells.verdict_markdown(p_edited), unsafe_allow_html=True)
    with cols[2]:
        st.metric(
            "P(parasitized), edited",
            f"{p_edited[0]:.1%}",
            **cells.points_delta(p_edited[0] - p_reconstruction[0], "vs reconstruction"),
        )

    hue = morphology.stain_hue(np.stack([result.reconstruction, edited]))
    area = morphology.cell_area(np.stack([result.reconstruction, edited])) * PERCENT
    outline = morphology.mask_ssim(result.reconstruction, edited)
    st.caption(
        f"What else moved, measured: stain hue {hue[0]:.0f}° → {hue[1]:.0f}°, cell area "
        f"{area[0]:.0f}% → {area[1]:.0f}% of the image, outline kept to a cell-mask SSIM of "
        f"{outline:.2f} (1 is the same outline)."
    )

    # Downloads.
    stem = f"{model}_{result.label}_edit"
    with st.container(horizontal=True, gap="small"):
        st.download_button(
            "⬇️ Latent (.npy)",
            latent_files.latent_to_npy(result.z),
            file_name=f"{model}_latent.npy",
            mime="application/octet-stream",
            key="e_npy",
        )
        st.download_button(
            "⬇️ Edited cell (.png)",
            imaging.png_bytes(edited),
            file_name=f"{stem}_{amount:+g}.png",
            mime="image/png",
            key="e_png",
        )
    st.caption(
        f"The .npy file holds the found latent z ({generator.z_dim} float32 values, before the "
        f"edit); generate it with the class weights above to get the reconstruction."
    )


infection_editor(result, p_reconstruction, generator, classifier)
