"""Interpolate: morph one generated cell into another, across classes with the conditional GAN."""

import streamlit as st

from malgan import artifacts, explore
from malgan.app import cells, charts, controls, frame, views
from malgan.data import CLASSES

DEFAULT_STEPS = 9
DEFAULT_SEED_B = frame.DEFAULT_SEED + 1
# Width the strip of frames may take; frames shrink to keep the whole path on one row.
STRIP_PX = 960
MIN_FRAME_PX = 56
KEYS = ("ip_model", "ip_seed_a", "ip_class_a", "ip_seed_b", "ip_class_b", "ip_steps", "ip_method")
METHOD_NAMES = {
    "slerp": "Spherical (slerp): keeps latents at a typical length",
    "lerp": "Linear (lerp): a straight line through the latent space",
}

frame.page_intro(
    "Walk from one generated cell to another through the latent space and watch the classifier "
    "change its mind. With the conditional GAN an uninfected cell can morph into a parasitized "
    "one: the class weights move from one class to the other along the way.",
)

# Controls, seeded from the URL.
top = st.columns([3, 2, 3])
model = frame.choose_generator("ip_model", top[0], purpose="morph")
controls.url_int("ip_seed_a", frame.DEFAULT_SEED, 0, controls.MAX_SEED)
controls.url_choice("ip_class_a", "Uninfected", CLASSES)
controls.url_int("ip_seed_b", DEFAULT_SEED_B, 0, controls.MAX_SEED)
controls.url_choice("ip_class_b", "Parasitized", CLASSES)
controls.url_int("ip_steps", DEFAULT_STEPS, explore.MIN_STEPS, explore.MAX_STEPS)
controls.url_choice("ip_method", explore.METHODS[0], explore.METHODS)

top[1].slider("Steps", explore.MIN_STEPS, explore.MAX_STEPS, key="ip_steps")
top[2].radio("Path", explore.METHODS, format_func=METHOD_NAMES.get, key="ip_method")

gen = frame.require_generator(model)
cross = gen.conditional
if not cross and st.session_state["ip_class_b"] != st.session_state["ip_class_a"]:
    # A per-class generator pair cannot blend classes: the second cell follows the first.
    st.session_state["ip_class_b"] = st.session_state["ip_class_a"]

ends = st.columns(2)
with ends[0]:
    st.markdown("**Cell A** (t = 0)")
    a = st.columns(2)
    controls.seed_input("ip_seed_a", a[0], label="Seed A")
    a[1].radio("Class A", CLASSES, horizontal=True, key="ip_class_a")
with ends[1]:
    st.markdown("**Cell B** (t = 1)")
    b = st.columns(2)
    controls.seed_input("ip_seed_b", b[0], label="Seed B")
    b[1].radio("Class B", CLASSES, horizontal=True, key="ip_class_b", disabled=not cross)
if not cross:
    st.info(
        f"{gen.display_name} has one generator per class, so only cells of the same class can "
        "be interpolated: class B follows class A. Choose the conditional GAN to morph across "
        "classes.",
        icon="ℹ️",
    )
controls.sync_url(*KEYS)

label_a = st.session_state["ip_class_a"]
label_b = st.session_state["ip_class_b"] if cross else label_a
seed_a = int(st.session_state["ip_seed_a"])
seed_b = int(st.session_state["ip_seed_b"])
steps = int(st.session_state["ip_steps"])
method = st.session_state["ip_method"]

t, frames, p_parasitized = views.interpolation_frames(
    artifacts.exported_dir(), model, seed_a, label_a, seed_b, label_b, steps, method
)
frame_pngs, gif = views.interpolation_files(frames)

# The frames, at display scale unless the whole path would not fit on one row.
frame_px = gen.img_size * cells.VIEW_SCALE
st.subheader(f"{label_a} → {label_b}")
with cells.spaced_images("ip_frames"):
    st.image(
        frame_pngs,
        caption=[f"t = {x:.2f}" for x in t],
        width=max(MIN_FRAME_PX, min(frame_px, STRIP_PX // len(frames) - cells.IMAGE_GAP_PX)),
    )

# The classifier along the path.
st.plotly_chart(charts.path_probability(t, p_parasitized))

stem = f"{model}_{label_a}{seed_a}_to_{label_b}{seed_b}_{method}_{steps}"
st.download_button(
    "⬇️ Animation (GIF)",
    gif,
    file_name=f"{stem}.gif",
    mime="image/gif",
)
st.caption("The page address holds every setting: copy it to share exactly this morph.")
