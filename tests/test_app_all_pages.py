"""Smoke test of every dashboard page (found by glob) on the committed models and on none."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from malgan import artifacts
from malgan.errors import ModelError
from tests.support.pages import app_page, models_copy, served_app

REPO_ROOT = Path(__file__).resolve().parents[1]
APP = REPO_ROOT / "streamlit_app.py"
PAGES = sorted((REPO_ROOT / "pages").glob("*.py"))
TIMEOUT_S = 60
# Words that only the models banner uses, one per training profile.
BANNER_MARKERS = ("smoke-test placeholders", "CPU-trained models", "GPU release models")


def navigation() -> dict[str, tuple[str, str]]:
    """Page file (relative to the repo) -> (title, icon), read from ``streamlit_app.py``."""
    entries: dict[str, tuple[str, str]] = {}
    for node in ast.walk(ast.parse(APP.read_text(encoding="utf-8"))):
        is_page = (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "Page"
        )
        if not is_page or not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        keywords = {
            k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)
        }
        entries[str(node.args[0].value)] = (keywords.get("title", ""), keywords.get("icon", ""))
    return entries


NAVIGATION = navigation()
TARGETS = [*PAGES, APP]


def committed_notice() -> artifacts.ModelsNotice | None:
    """The banner that the training profile of the committed models calls for."""
    try:
        return artifacts.models_notice(artifacts.load_index(artifacts.DEFAULT_EXPORTED))
    except ModelError:
        return None


def banners(at: AppTest) -> list[str]:
    """The models banners a page shows (warnings and information lines)."""
    return [a.value for a in (*at.warning, *at.info) if any(m in a.value for m in BANNER_MARKERS)]


def shown_text(at: AppTest) -> list[str]:
    """Every text a page shows: Markdown, captions, alerts, metric labels and values."""
    kinds = ("markdown", "caption", "warning", "info", "error", "success", "subheader")
    texts = [str(element.value) for kind in kinds for element in at.get(kind)]
    return texts + [f"{m.label} {m.value}" for m in at.metric]


pytestmark = pytest.mark.usefixtures("fresh_caches")


def run_target(path: Path) -> AppTest:
    """Run a page through the app (or the app alone, which opens its default page) once."""
    if path == APP:
        missing = [p for p in NAVIGATION if not (REPO_ROOT / p).is_file()]
        if missing:
            pytest.skip(f"streamlit_app.py lists pages that do not exist yet: {missing}")
    at = served_app(timeout=TIMEOUT_S) if path == APP else app_page(path, timeout=TIMEOUT_S)
    at.run()
    return at


def test_pages_are_found():
    assert PAGES, "no page files found in pages/"
    listed = {REPO_ROOT / p for p in NAVIGATION}
    unlisted = [p.name for p in PAGES if p not in listed]
    assert not unlisted, f"pages missing from the navigation in streamlit_app.py: {unlisted}"


@pytest.mark.parametrize("path", TARGETS, ids=lambda p: p.name)
def test_page_runs_on_committed_models(path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(artifacts.EXPORTED_ENV, raising=False)
    at = run_target(path)

    assert not at.exception, [e.value for e in at.exception]
    assert len(at.title) == 1 and at.title[0].value.strip()
    page = "pages/overview.py" if path == APP else f"pages/{path.name}"
    title, icon = NAVIGATION.get(page, ("", ""))
    shown = at.title[0].value
    assert title.lower() in shown.lower() or (icon and icon in shown), (title, shown)
    notice = committed_notice()
    if notice is not None:
        alerts = at.warning if notice.warning else at.info
        assert notice.text in [a.value for a in alerts], "the models banner is missing"


@pytest.mark.parametrize("path", TARGETS, ids=lambda p: p.name)
def test_page_reports_missing_models(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(tmp_path))
    at = run_target(path)

    assert not at.exception, [e.value for e in at.exception]
    assert at.title, "the page title is missing"
    assert at.error, "no error is shown for the missing models"
    assert not banners(at)


EXPECTED_BANNERS = {
    "cpu": "CPU-trained models: 89 minutes on 2 CPU cores. A GPU release will replace them.",
    "gpu": "These are the GPU release models, trained in 41 minutes on NVIDIA H100.",
}


@pytest.fixture(scope="module", params=sorted(EXPECTED_BANNERS))
def profile_models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the committed models whose index says a ``cpu`` or ``gpu`` run made them."""
    root = tmp_path_factory.mktemp(request.param) / "exported"
    return request.param, models_copy(root, request.param)


@pytest.mark.parametrize("path", TARGETS, ids=lambda p: p.name)
def test_pages_name_cpu_and_gpu_models_without_placeholder_wording(
    path: Path, profile_models: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
):
    name, root = profile_models
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(root))
    at = run_target(path)

    assert not at.exception, [e.value for e in at.exception]
    assert [a.value for a in at.info if a.value == EXPECTED_BANNERS[name]], banners(at)
    assert banners(at) == [EXPECTED_BANNERS[name]]
    assert not [t for t in shown_text(at) if "placeholder" in t.lower()]
