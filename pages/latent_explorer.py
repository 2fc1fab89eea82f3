"""Latent explorer: slide one generated cell along principal directions and an infection control."""

import streamlit as st

from malgan import artifacts, explore, infection, latent, latent_files, runtime
from malgan.app import cells, controls, frame, pushes
from malgan.data import CLASSES
from malgan.errors import LatentError

SLIDER_STEP = 0.1
INFECTION_STEP = 0.05
BIG_SCALE = 4
# The strip under the cell: the same cell at these positions of the infection control.
STRIP_AMOUNTS = (infection.AMOUNT_MIN, -0.5, 0.0, 0.5, infection.AMOUNT_MAX)
PRINCIPAL_KEYS = tuple(f"le_p{i}" for i in range(explore.MAX_PRINCIPAL))
# The uploaded latent and the upload it came from (kept until a new seed replaces it).
LOADED_KEY = "le_loaded"
LOADED_ID_KEY = "le_loaded_id"
LOAD_ERROR_KEY = "le_load_error"

frame.page_intro(
    "Start from one generated cell and move its latent vector along the generator's main axes "
    "of variation (GANSpace principal directions), in standard deviations (σ) of the latent "
    "along each, and push it towards or away from infection. For the conditional GAN the "
    "infection control is its class input (the one it was trained with); the report's DCGANs "
    "have one generator per class and no class input, so theirs is a direction of the latent "
    "fitted to the classifier (InterFaceGAN). What each does is measured below the cell.",
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
for key in PRINCIPAL_KEYS:
    controls.url_float(key, 0.0, -explore.SIGMA_RANGE, explore.SIGMA_RANGE)
controls.url_float("le_inf", 0.0, infection.AMOUNT_MIN, infection.AMOUNT_MAX)


def infection_strip(
    exported, model: str, label: str, seed: int, start_z, amounts: tuple[float, ...]
) -> None:
    """The cell at five positions of the infection control, with what moves along it."""
    strip, strip_proba = pushes.pushed_strip(
        exported, model, label, start_z, amounts, STRIP_AMOUNTS
    )
    rows = pushes.measures(strip, strip_proba)
    st.markdown(
        "**Along the infection control**",
        help="The same cell at five positions of the slider, measured: the classifier's "
        "P(parasitized), the mean hue of the stain (degrees on the colour wheel: about 300 is "
        "lavender, 330 pink) and the share of the image the cell covers.",
    )
    names = [f"{a:+g}".replace("-", "−") if a else "0" for a in STRIP_AMOUNTS]
    with cells.spaced_images("le_strip"):
        cells.show_cells(
            strip,
            caption=[f"{n}: {r['p_parasitized']:.0%}" for n, r in zip(names, rows, strict=True)],
            output_format="PNG",
        )
    st.table(
        {
            "Slider": names,
            "P(parasitized)": [f"{r['p_parasitized']:.0%}" for r in rows],
            "Stain hue": [f"{r['hue']:.0f}°" for r in rows],
            "Cell area": [f"{r['area']:.0f}%" for r in rows],
        },
        hide_index=True,
    )
    effect = pushes.seed_effect(exported, model, label, seed)
    st.caption(
        f"Measured on {effect['n']} {label} cells of seed {seed} pushed to "
        f"{effect['amount']:+g} ({effect['control']}): {effect['flipped']:.0%} became "
        f"{effect['target']} (before: {effect['already']:.0%}); {effect['mask_ssim_share_ok']:.0%} "
        f"kept their outline (cell-mask SSIM ≥ {infection.OUTLINE_KEPT_SSIM:g}); stain hue moved "
        f"{effect['hue_shift_deg']:+.0f}° and cell area {effect['area_shift_points']:+.1f} "
        "points (medians)."
    )
    real = pushes.real_measures(exported)
    if real and len(real) == len(CLASSES):
        par, uni = real["Parasitized"], real["Uninfected"]
        st.caption(
            f"Real cells of test patients (the release's sample, {par['n']} Parasitized and "
            f"{uni['n']} Uninfected): stain hue {par['hue']:.0f}° against {uni['hue']:.0f}°, "
            f"cell area {par['area']:.0f}% against {uni['area']:.0f}% (medians)."
        )


panel, view = st.columns([5, 4], gap="large")
with panel:
    pick = st.columns([3, 2, 2])
    model = frame.choose_generator("le_model", pick[0], purpose="explore")
    pick[1].radio("Class", CLASSES, horizontal=True, key="le_class")
    controls.seed_input("le_seed", pick[2], on_change=forget_loaded)

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
    control = infection.default_control(gen)
    usable = gen.conditional or dirs.infection is not None
    st.slider(
        "Infection: −1 towards Uninfected, +1 towards Parasitized",
        infection.AMOUNT_MIN,
        infection.AMOUNT_MAX,
        step=INFECTION_STEP,
        key="le_inf",
        disabled=not usable,
        help=(
            "Adds to the cell's Parasitized class weight (clipped to 0…1), the latent kept: +1 "
            "takes an Uninfected cell to Parasitized, −1 a Parasitized cell to Uninfected."
            if control == infection.CLASS_INPUT
            else "Moves the latent along a direction fitted to the classifier (InterFaceGAN), "
            f"±1 being ±{infection.DIRECTION_SIGMA_AT_MAX:g} σ."
        ),
    )
    if not usable:
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
push = round(float(st.session_state["le_inf"]), 2) if usable else 0.0
exported = artifacts.exported_dir()
images, probas = pushes.pushed_strip(exported, model, label, start_z, amounts, (push,))
image, proba = images[0], probas[0]
p_parasitized = float(proba[0])
edited = infection.push(
    gen,
    explore.edit_latent(start_z, dirs, amounts),
    infection.one_hot(gen.classes, label, 1),
    push,
    control,
)[0][0]

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
    if usable:
        infection_strip(exported, model, label, seed, start_z, amounts)
st.caption(
    "The page address holds the model, class, seed and slider positions; an uploaded latent "
    "travels as a .npy file instead."
)
