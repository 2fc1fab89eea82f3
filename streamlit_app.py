"""malgan dashboard: synthetic malaria blood cells, served from the ONNX models in exported/."""

import streamlit as st

from malgan.app import frame

# Each page's title and icon are written here only: the frame below draws them for the page.
PAGES = [
    st.Page("pages/overview.py", title="Overview", icon="🔬", default=True),
    st.Page("pages/sample.py", title="Sample", icon="🧫"),
    st.Page("pages/latent_explorer.py", title="Latent explorer", icon="🎚️"),
    st.Page("pages/interpolate.py", title="Interpolate", icon="🔀"),
    st.Page("pages/classify.py", title="Classify", icon="🩸"),
    st.Page("pages/edit_cell.py", title="Edit a real cell", icon="🪄"),
    st.Page("pages/recovery.py", title="Recovery rates", icon="📊"),
    st.Page("pages/classifiers.py", title="Classifiers", icon="🧪"),
    st.Page("pages/training.py", title="Training", icon="📈"),
    st.Page("pages/synthetic_dataset.py", title="Synthetic dataset", icon="📦"),
    st.Page("pages/real_or_synthetic.py", title="Real or synthetic?", icon="🎭"),
]

page = st.navigation(PAGES)
frame.page_setup(page.title, page.icon)
page.run()
