"""Latent explorer: slide one generated cell along principal directions and an infection axis."""

import streamlit as st

from malgan import artifacts, explore, latent, latent_files, runtime
from malgan.app import cells, controls, frame, views
from malgan.data import CLASSES
from malgan.errors import LatentError

SLIDER_STEP = 0.1
BIG_SCALE = 4
# The strip beside the cell: the same cell this many sigma either side along the infection axis.
STRIP_STEP = 2.0
STRIP_OFFSETS = (-STRIP_STEP, 0.0, STRIP_STEP)
PRINCIPAL_KEYS = tuple(f"le_p{i}" for i in range(explore.MAX_PRINCIPAL))
# The uploaded latent and the upload it came from (kept until a new seed replaces it).
LOADED_KEY = "le_loaded"
LOADED_ID_KEY = "le_loaded_id"
LOAD_ERROR_KEY = "le_load_error"

frame.page_intro(
    "Start from one generated cell and move its latent vector along the generator's main axes "
    "of variation (GANSpace principal directions) and along an infection direction fitted to "
    "the classifier (InterFaceGAN). Steps are in standard deviations (σ) of the latent along "
    "each axis.",
)


def reset_sliders() -> None:
    """Put every direction slider back to 0."""
    for key in (*PRINCIPAL_KEYS, "le_inf"):
        st.session_state[key] = 0.0


def forget_loaded() -> None:
    """Go back to the seed's latent after an uploaded one."""
    st.session_state.pop(LOADED_KEY, None)


def randomise() -> None:
    """A new seed, starting from its own latent."""
    controls.randomise_seed("le_seed")
    forget_loaded()


# Controls, seeded from the URL.
controls.url_choice("le_class", CLASSES[0], CLASSES)
controls.url_int("le_seed", frame.DEFAULT_SEED, 0, controls.MAX_SEED)
for key in (*PRINCIPAL_KEYS, "le_inf"):
    controls.url_float(key, 0.0, -explore.SIGMA_RANGE, explore.SIGMA_RANGE)

panel, view = st.columns([5, 4], gap="large")
with panel:
    pick = st.columns([3, 2, 2])
    model = frame.choose_generator("le_model", pick[0], purpose="explore")
    pick[1].radio("Class", CLASSES, horizontal=True, key="le_class")
    pick[2].number_input(
        "Seed",
        min_value=0,
        max_value=controls.MAX_SEED,
        step=1,
        key="le_seed",
        on_change=forget_loaded,
    )

label = st.session_state["le_class"]
seed = int(st.session_state["le_seed"])
gen = frame.require_generator(model)
dirs = explore.directions_for(gen.directions, label)

with panel:
    # The start latent: the seed's cell 0, or an uploaded one (read before the sliders exist,
    # so that loading can put them back to 0).
    with st.expander("Save or load a latent (.npy)"):
        save_slot = st.container()
        uploaded = st.file_uploader("Load a latent (.npy)", type=["npy"], key="le_upload")
    if uploaded is None:
        st.session_state.pop(LOAD_ERROR_KEY, None)
    elif uploaded.file_id != st.session_state.get(LOADED_ID_KEY):
        st.session_state[LOADED_ID_KEY] = uploaded.file_id
        try:
            loaded = latent_files.latent_from_npy(uploaded.getvalue(), z_dim=gen.z_dim)
        except LatentError as err:
            st.session_state[LOAD_ERROR_KEY] = f"**{uploaded.name} cannot be used.** {err}"
            forget_loaded()
        else:
            st.session_state.pop(LOAD_ERROR_KEY, None)
            st.session_state[LOADED_KEY] = (uploaded.name, loaded[0], len(loaded))
            reset_sliders()
    if st.session_state.get(LOAD_ERROR_KEY):
        st.error(st.session_state[LOAD_ERROR_KEY], icon="⚠️")

    buttons = st.columns(2)
    buttons[0].button("↺ Reset", on_click=reset_sliders, width="stretch")
    buttons[1].button("🎲 Randomise", on_click=randomise, width="stretch")
    st.markdown("**Principal directions** (strongest first)")
    if not dirs.count:
        st.info(f"{gen.display_name} ships no principal directions for {label} cells.")
    for i in range(dirs.count):
        st.slider(
            f"Direction {i + 1} (σ = {dirs.sigmas[i]:.2f})",
            -explore.SIGMA_RANGE,
            explore.SIGMA_RANGE,
            step=SLIDER_STEP,
            key=PRINCIPAL_KEYS[i],
        )
    st.markdown("**Infection**")
    st.slider(
        "Infection (σ): + looks more parasitized to the classifier",
        -explore.SIGMA_RANGE,
        explore.SIGMA_RANGE,
        step=SLIDER_STEP,
        key="le_inf",
        disabled=dirs.infection is None,
        help="A direction in the latent space along which the classifier's P(parasitized) rises "
        "(InterFaceGAN boundary).",
    )
    if dirs.infection is None:
        st.caption(f"{gen.display_name} ships no infection direction for {label} cells.")
url_keys = ("le_model", "le_class", "le_seed", *PRINCIPAL_KEYS[: dirs.count], "le_inf")
controls.sync_url(*url_keys)

start_z = latent.sample_z(seed, 1, gen.z_dim)[0]
source = f"seed {seed}, cell 0"
loaded_entry = st.session_state.get(LOADED_KEY)
if loaded_entry is not None:
    name, z, rows = loaded_entry
    if len(z) == gen.z_dim:
        start_z = z
        source = f"uploaded {name}" + (f" (first of {rows} latents)" if rows > 1 else "")
    else:
        st.warning(
            f"The uploaded latent has {len(z)} values but {gen.display_name} needs "
            f"{gen.z_dim}; showing seed {seed} instead.",
            icon="⚠️",
        )

amounts = tuple(round(float(st.session_state[k]), 2) for k in PRINCIPAL_KEYS[: dirs.count])
infection = round(float(st.session_state["le_inf"]), 2) if dirs.infection is not None else 0.0
exported = artifacts.exported_dir()
images, probas = views.edited_cells(exported, model, label, start_z, amounts, (infection,))
image, proba = images[0], probas[0]
p_parasitized = float(proba[0])
edited = explore.edit_latent(start_z, dirs, amounts, infection)

save_slot.download_button(
    "💾 Save this latent (.npy)",
    latent_files.latent_to_npy(edited[None]),
    file_name=f"{model}_{label}_seed{seed}_edited.npy",
    mime="application/octet-stream",
)
with view:
    cells.show_cells(image, scale=BIG_SCALE, caption=f"{label} · {source}", output_format="PNG")
    verdict = runtime.predicted_class(proba)
    st.markdown(f"Classifier verdict: {cells.coloured(verdict, verdict)}", unsafe_allow_html=True)
    st.progress(
        min(1.0, max(0.0, p_parasitized)),
        text=f"P(parasitized) {p_parasitized:.1%}",
    )
    if dirs.infection is not None:
        steps = tuple(round(infection + offset, 2) for offset in STRIP_OFFSETS)
        strip, strip_proba = views.edited_cells(exported, model, label, start_z, amounts, steps)
        strip_p = strip_proba[:, 0]  # P(parasitized) of each cell
        st.markdown(
            f"**Along the infection direction** ({STRIP_STEP:g} σ either side)",
            help="The same cell moved along the infection direction, with the classifier's "
            "P(parasitized) under each. The middle cell is the one above.",
        )
        names = [
            f"{offset:+g} σ".replace("-", "−") if offset else "this cell"
            for offset in STRIP_OFFSETS
        ]
        with cells.spaced_images("le_strip"):
            cells.show_cells(
                strip,
                caption=[f"{name}: {p:.0%}" for name, p in zip(names, strip_p, strict=True)],
                output_format="PNG",
            )
st.caption(
    "The page address holds the model, class, seed and slider positions; an uploaded latent "
    "travels as a .npy file instead."
)
