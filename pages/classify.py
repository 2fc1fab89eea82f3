"""Classify page: upload cell images and get the classifier's verdict on each."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from malgan import artifacts, uploads
from malgan.app import cells, charts, frame, loading, pushes
from malgan.data import CLASSES

# Cards per row; rows of at most WIDE_CARDS cards lay each card out sideways.
CELLS_PER_ROW = 3
WIDE_CARDS = 2
CSV_NAME = "malgan_classifications.csv"
EXAMPLE_KEY = "c_example"
# Headers of the results table's columns.
HEADERS = {
    "file": "File",
    "status": "Status",
    "verdict": "Verdict",
    "p_parasitized": "P(Parasitized)",
    "confidence": "Confidence",
    "unusual": "Unusual image",
    "ood_distance": "OOD distance",
    "original_size": "Original size",
    "note": "Note",
}


frame.page_intro(
    "Upload photographs of single segmented red blood cells; the classifier says whether each "
    "looks Parasitized or Uninfected and warns when an image does not look like the cells it "
    "was trained on.",
)
classifier = loading.classifier()
if classifier is None:
    st.stop()
size = classifier.img_size
st.caption(
    "Every image goes through `malgan.decode.prepare_image`, like the training cells: first frame, "
    f"EXIF orientation, RGB (transparency on black), then a bicubic resize to {size}×{size} pixels."
)
reference = loading.reference()
if reference is None:
    st.caption("Without the training reference only the background check flags odd images.")

uploaded = st.file_uploader(
    "Cell images",
    type=uploads.UPLOAD_TYPES,
    accept_multiple_files=True,
    key="c_uploads",
    help="PNG, JPEG, TIFF, WebP, BMP or GIF; one cell per image, ideally on a black background.",
)
if st.button("Load an example of each class", key="c_example_button"):
    exported = artifacts.exported_dir()
    st.session_state[EXAMPLE_KEY] = [pushes.example_cell(exported, c, 0) for c in CLASSES]
files = [(f.name, f.getvalue()) for f in uploaded or ()]
if not files and st.session_state.get(EXAMPLE_KEY):
    examples = st.session_state[EXAMPLE_KEY]
    files = [(name, payload) for name, payload, _ in examples]
    sources = sorted({source for _, _, source in examples})
    st.caption(f"Examples: {' and '.join(sources)} of each class.")
if not files:
    st.info("Drop one or more cell images above, or load the examples, to classify them.", icon="⬆️")
    st.stop()

results = loading.classify_uploads(files, classifier, reference)
good = [r for r in results if r.ok]

# Summary.
cols = st.columns(4)
cols[0].metric("Files", len(results))
cols[1].metric("Classified", len(good))
cols[2].metric("Parasitized", sum(r.label == "Parasitized" for r in good))
cols[3].metric("Flagged as unusual", sum(r.ood for r in good))

for r in results:
    if not r.ok:
        st.error(f"**Skipped:** {uploads.escape_markdown(r.message)}", icon="🚫")

# One card per classified cell, the row filled by as many cards as there are (at most
# CELLS_PER_ROW); a row of one or two wide cards puts the image beside the verdict.
st.subheader("Verdicts")
per_row = max(1, min(len(good), CELLS_PER_ROW))
for start in range(0, len(good), per_row):
    for col, r in zip(st.columns(per_row), good[start : start + per_row], strict=False):
        with col.container(border=True):
            wide = per_row <= WIDE_CARDS
            beside = st.container(horizontal=wide, gap="medium" if wide else "small")
            cells.show_cells(r.image, beside)
            with beside.container():
                size = f" · {r.original_size[0]}×{r.original_size[1]} px" if r.original_size else ""
                st.caption(f"{frame.breakable_name(r.name)}{size}", unsafe_allow_html=True)
                colour = charts.CLASS_COLOURS[r.label]
                st.markdown(
                    # Label and confidence each stay whole; on a narrow card they wrap apart.
                    f"<div><span style='color:{colour};white-space:nowrap;"
                    f"font-weight:600;font-size:1.15em'>{r.label}</span>"
                    f" &nbsp;<span style='white-space:nowrap'>{r.confidence:.1%} confidence"
                    "</span></div>",
                    unsafe_allow_html=True,
                )
                st.markdown(cells.probability_bar_html(r.proba), unsafe_allow_html=True)
                st.caption(cells.probability_legend_html(r.proba), unsafe_allow_html=True)
            frame.warn_if_unusual(r)
if not good:
    st.caption("No file could be classified.")

# Table and download.
st.subheader("Results table")
threshold = None if reference is None else float(reference.ood_threshold)
table = pd.DataFrame(uploads.display_table(results, ood_threshold=threshold))
# A static table: long notes and file names wrap inside the page's width.
st.table(table.rename(columns=HEADERS), hide_index=True)
st.download_button(
    "Download results (CSV)",
    data=uploads.results_csv(results),
    file_name=CSV_NAME,
    mime="text/csv",
    key="c_csv",
    icon="⬇️",
)
st.caption(
    "Confidence is the probability of the predicted class. An image is flagged as unusual when "
    "it does not look like a segmented cell; its OOD distance is the Mahalanobis distance of its "
    "classifier features from the training cells, and above the limit it is flagged too. "
    "Research use only: a verdict is not a diagnosis."
)
