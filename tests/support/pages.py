"""Opens a dashboard page the way a visitor gets it: through ``streamlit_app.py``'s navigation.

The app draws each page's frame (title, icon, placeholder banner) from its ``st.Page``, so a
page script run on its own has no title; tests run it inside the app instead.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path
from typing import Any
from unittest import mock

from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest, app_test

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = REPO_ROOT / "streamlit_app.py"
EXPORTED = REPO_ROOT / "exported"
PAGE_TIMEOUT_S = 60
# The index's "profile" of a run of each training profile, as train/export.py writes it.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"train_minutes": 0.9, "hardware": {"cpu_count": 2, "cuda": False}},
    "cpu": {"train_minutes": 88.6, "hardware": {"cpu_count": 2, "cuda": False}},
    "gpu": {
        "train_minutes": 41.2,
        "hardware": {"cpu_count": 16, "cuda": True, "gpu": "NVIDIA H100"},
    },
}


class _AfterFirstVisit(PagesManager):
    """Streamlit's page registry as a running server has it after its first visit.

    A server decides once whether the legacy ``pages/`` folder navigation is on; the first
    visit's ``st.navigation`` (or ``ui._leave_folder_navigation``) turns it off for good.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        PagesManager.uses_pages_directory = False


class ServedApp(AppTest):
    """AppTest of the app as a running server serves it.

    AppTest decides afresh at every run whether the folder navigation is on (it is, with a
    ``pages/`` folder beside the app), so every run would be a server's first visit, whose
    hand-over to the app's navigation reruns the page and drops the run's button clicks.
    """

    def _run(self, widget_state=None, timeout=None) -> AppTest:
        with mock.patch.object(app_test, "PagesManager", _AfterFirstVisit):
            return super()._run(widget_state, timeout)


def served_app(*, timeout: float = PAGE_TIMEOUT_S) -> AppTest:
    """The app on its default page, not yet run."""
    return ServedApp(APP, default_timeout=timeout)


def app_page(page: str | Path, *, timeout: float = PAGE_TIMEOUT_S) -> AppTest:
    """The app opened on one page, not yet run.

    Args:
        page: The page script: a path, or a path relative to the repository (``pages/x.py``).
        timeout: Seconds each run may take.

    Returns:
        An AppTest whose runs show that page; set query parameters before the first run.
    """
    path = Path(page)
    relative = path.resolve().relative_to(REPO_ROOT) if path.is_absolute() else path
    at = served_app(timeout=timeout)
    at.switch_page(relative.as_posix())
    return at


def models_copy(root: Path, profile: str) -> Path:
    """A copy of the committed models whose index says a run of ``profile`` made them.

    Args:
        root: The folder to create (it must not exist).
        profile: ``"smoke"``, ``"cpu"`` or ``"gpu"`` (see ``PROFILES``).

    Returns:
        ``root``, to name in ``$MALGAN_EXPORTED``.
    """
    shutil.copytree(EXPORTED, root)
    path = root / "index.json"
    index = json.loads(path.read_text(encoding="utf-8"))
    index.update(smoke=profile == "smoke", profile={"name": profile, **PROFILES[profile]})
    path.write_text(json.dumps(index, indent=2), encoding="utf-8")
    return root


def html_table(markup: str) -> list[list[str]]:
    """The cells of the first HTML table in ``markup`` (``malgan.app.table_view``), row by row,
    header row first, as the text a reader sees."""
    table = re.search(r"<table>(.*?)</table>", markup, re.S)
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1) if table else "", re.S)
    return [[html.unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r)] for r in rows]
