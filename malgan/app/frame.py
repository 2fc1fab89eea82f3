"""The page frame shared by the dashboard pages: title, banner, intro and model choice."""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

from malgan import latent, runtime, tables, uploads
from malgan.app import controls
from malgan.app.loading import (
    classifier,
    generator,
    generator_choices,
    models_notice,
    quiet_metrics,
)

DEFAULT_SEED = latent.DEFAULT_SEED


DEFAULT_MODEL = "cgan"


APP_NAME = "malgan"


APP_ICON = "🔬"


TITLE_SEPARATOR = " · "


NOT_CLINICAL = (
    "Research software. The images are synthetic and the classifier is not a medical device: "
    "**not for clinical use.**"
)


# The page frame.
def _leave_folder_navigation() -> None:
    """Hand a first visit that arrived on a page link over to ``streamlit_app.py``'s navigation.

    Streamlit decides once per server, on its first script run, whether the app uses the older
    ``pages/`` folder navigation. When that first run is a shared link to a page rather than
    the home page, it runs the page directly with an automatic sidebar, and the navigation in
    ``streamlit_app.py`` never takes over. Clearing the flag and rerunning gives that visitor
    (and every later one) the real navigation, on the page the link asked for.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without the folder navigation
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def page_title(title: str) -> str:
    """The browser tab's title of a page, e.g. ``"Sample · malgan"``."""
    return f"{title}{TITLE_SEPARATOR}{APP_NAME}"


def page_setup(title: str, icon: str) -> None:
    """The frame of every page, drawn by ``streamlit_app.py`` from the page's ``st.Page``.

    Sets the wide layout and the browser tab's title, then draws the heading, the banner that
    says which models these are (smoke-test placeholders, CPU-trained or the GPU release) and
    the shared sidebar.
    """
    st.set_page_config(page_title=page_title(title), page_icon=icon or APP_ICON, layout="wide")
    st.title(f"{icon} {title}".strip())
    notice = models_notice()
    if notice is not None and notice.warning:
        st.warning(notice.text, icon="🚧")
    elif notice is not None:
        st.info(notice.text, icon="ℹ️")
    with st.sidebar:
        st.caption(NOT_CLINICAL)


def page_intro(intro: str) -> None:
    """The first line of every page script: what the page is for, under the frame's heading."""
    _leave_folder_navigation()
    st.caption(intro)


def choose_generator(key: str, where: Any = st, *, purpose: str, label: str = "Model") -> str:
    """The generator picker that opens the generation pages.

    Seeds ``st.session_state[key]`` from the URL and draws a select box of the index's
    generators in ``where``. When the index lists none, the page stops after saying so.

    Args:
        key: The widget and URL key.
        where: The container of the select box (``st``, a column, ...).
        purpose: What the page would do, to end the sentence "so there is nothing to ...".
        label: The select box's label.

    Returns:
        The chosen generator's index name.
    """
    choices = generator_choices()
    if not choices:
        st.error(
            f"No generator is listed in the model index, so there is nothing to {purpose}.",
            icon="⚠️",
        )
        st.stop()
    controls.url_choice(key, DEFAULT_MODEL, list(choices))
    name = where.selectbox(label, list(choices), format_func=choices.get, key=key)
    model_note(name, choices.get(name, name))
    return name


def model_note(name: str, display: str, where: Any = st) -> None:
    """Beside a model's cells or figures: the known fault of its run as a warning, or, for the
    report's DCGAN, how many of the report's iterations it trained and on what machine."""
    data = quiet_metrics()
    fault = tables.known_fault(data, name)
    if fault:
        where.warning(fault, icon="⚠️")
        return
    origin = tables.generator_origin(data, name) if name == "dcgan" else ""
    if origin:
        where.caption(f"{display}: {origin}.")


def chart(fig: Any, key: str, *, missing: str, caption: str = "") -> None:
    """Show a figure with its caption, or, when there is none (``fig`` is None), what is missing."""
    if fig is None:
        st.info(missing)
        return
    st.plotly_chart(fig, key=key)
    if caption:
        st.caption(caption)


def require_generator(name: str) -> runtime.CellGenerator:
    """The generator ``name`` with the classifier loaded; the page stops after showing why
    either is unavailable."""
    gen = generator(name)
    if gen is None or classifier() is None:
        st.stop()
    return gen


def breakable_name(name: str) -> str:
    """A file name as Markdown that wraps only after its underscores, hyphens and spaces.

    Browsers otherwise break a long name without spaces anywhere (``…cell_124.`` then ``png``).
    Show it with ``unsafe_allow_html=True``: the break points are ``<wbr>`` tags, and the name's
    own characters stay escaped.
    """
    parts = re.split(r"(?<=[_\-\s])", name)
    return "<wbr>".join(uploads.escape_markdown(part) for part in parts if part)


def warn_if_unusual(result: uploads.UploadResult) -> None:
    """Say so under an uploaded cell that does not look like the cells of the training set."""
    if result.ok and result.ood:
        st.warning(f"**{uploads.OOD_WARNING.capitalize()}:** {result.ood_reason}.", icon="⚠️")
