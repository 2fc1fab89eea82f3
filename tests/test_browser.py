"""The dashboard in a real browser: every page renders, sliders, uploads and downloads work, and
every table column fits a laptop window and a phone."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from PIL import Image

from harness import browser as h

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not h.chromium_available(), reason=f"Chromium not found at {h.CHROMIUM_PATH}"
    ),
]

SCREENSHOTS = h.REPO_ROOT / "artifacts" / "screenshots"
PAGES = h.app_pages()
SLIDER_PAGE = "latent_explorer"
CLASSIFY_PAGE = "classify"
DOWNLOAD_PAGE = "sample"
SLIDER_MOVES = 3
# A verdict: a class name followed, on the same line, by a probability (97%, 97.0 %, 0.97).
VERDICT = re.compile(
    r"(Parasitized|Uninfected)[^\n]{0,120}?(\d{1,3}(?:\.\d+)?\s?%|\b[01]\.\d{2,}\b)"
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
TEST_TIMEOUT_S = 420
# The pages that show tables, and the windows a user reported them cut in.
TABLE_PAGES = ("overview", "classifiers")
WINDOWS = {"1280x720": {"width": 1280, "height": 720}, "390x844": {"width": 390, "height": 844}}
# What a user cannot read of the main area's tables, one sentence each (empty: all readable).
# A data grid (st.dataframe, drawn on a canvas) hides the columns past its width behind its own
# scrollbar. An HTML table's cells must lie inside the window and inside every box that clips
# it, and their text inside the cells; where a table shows one card per row (its header row
# hidden), every value must carry its column's name.
CUT_COLUMNS_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const width = document.documentElement.clientWidth;
  const problems = [];
  const inside = (box, area) => box.left >= area.left - 1 && box.right <= area.right + 1;
  for (const grid of main.querySelectorAll('[data-testid="stDataFrame"]')) {
    const scroller = grid.querySelector('.dvn-scroller') || grid;
    const hidden = scroller.scrollWidth - scroller.clientWidth;
    if (hidden > 1) problems.push(`a data grid hides ${hidden}px of columns`);
    if (!inside(grid.getBoundingClientRect(), {left: 0, right: width}))
      problems.push('a data grid reaches past the window');
  }
  for (const table of main.querySelectorAll('table')) {
    const area = {left: 0, right: width};
    for (let el = table.parentElement; el && el !== document.body; el = el.parentElement) {
      if (getComputedStyle(el).overflowX === 'visible') continue;
      const box = el.getBoundingClientRect();
      area.left = Math.max(area.left, box.left);
      area.right = Math.min(area.right, box.right);
    }
    const head = table.tHead;
    const names = head ? Array.from(head.rows[0].cells).map(c => c.innerText.trim()) : [];
    const stacked = !!head && (head.getBoundingClientRect().width <= 1
      || getComputedStyle(head).clipPath !== 'none');
    const rows = Array.from(stacked ? table.tBodies[0].rows : table.rows);
    for (const row of rows) {
      Array.from(row.cells).forEach((cell, i) => {
        const name = names[i] || `column ${i + 1}`;
        const what = `"${name}" of "${row.cells[0].innerText.trim()}"`;
        if (!inside(cell.getBoundingClientRect(), area))
          problems.push(`${what} lies outside the visible part of its table`);
        if (cell.scrollWidth > cell.clientWidth + 1)
          problems.push(`the text of ${what} overflows its cell`);
        const label = getComputedStyle(cell, '::before').content;
        if (stacked && i > 0 && !label.includes(name))
          problems.push(`${what} is shown without its column's name`);
      });
    }
  }
  if (document.documentElement.scrollWidth > width + 1) problems.push('the page scrolls sideways');
  return problems;
}"""


def by_name(name: str) -> h.AppPage:
    """The navigation entry of a page script stem."""
    matches = [p for p in PAGES if p.name == name]
    if not matches:
        pytest.fail(f"streamlit_app.py has no page pages/{name}.py")
    return matches[0]


@pytest.fixture(scope="module")
def server() -> Iterator[h.StreamlitServer]:
    """One Streamlit server for the module, on a free loopback port."""
    missing = h.missing_pages()
    assert not missing, f"streamlit_app.py names page scripts that do not exist: {missing}"
    with h.StreamlitServer() as running:
        yield running


@pytest.fixture(scope="module")
def browser(server: h.StreamlitServer) -> Iterator[object]:
    """Debian's Chromium, warmed up on the default page (which loads the ONNX sessions)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, h.chromium(playwright) as chromium:
        page = chromium.new_page(viewport=h.VIEWPORT)
        default = next((p for p in PAGES if p.default), PAGES[0])
        try:
            h.open_page(page, server, default, h.FIRST_LOAD_TIMEOUT_MS)
        except Exception as err:
            pytest.fail(f"The default page did not load: {err}\n{server.log_tail()}")
        page.close()
        yield chromium


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    """A fresh browser context (so a fresh Streamlit session) and page."""
    context = browser.new_context(viewport=h.VIEWPORT, accept_downloads=True)
    context.set_default_timeout(h.ACTION_TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    context.close()


def assert_clean(page: object, where: str) -> None:
    """No exception box, error alert or traceback on the page."""
    problems = h.page_problems(page)
    assert not problems, f"{where} shows: {problems}"


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("app_page", PAGES, ids=[p.name for p in PAGES])
def test_page_renders(page: object, server: h.StreamlitServer, app_page: h.AppPage) -> None:
    """Each page opens at its URL path with a title, content and no error; screenshot saved."""
    title = h.open_page(page, server, app_page, h.PAGE_TIMEOUT_MS)
    assert title, f"{app_page.file} has an empty title"
    current = page.locator(f'{h.NAV_LINK}[aria-current="page"]')
    assert app_page.title in current.inner_text(), f"the sidebar does not mark {app_page.title}"
    assert_clean(page, app_page.file)
    content = page.inner_text(h.MAIN)
    assert len(content.replace(title, "").strip()) > 40, f"{app_page.file} shows almost nothing"
    shot = h.screenshot_full_page(page, SCREENSHOTS / f"{app_page.name}.png")
    with Image.open(shot) as img:
        assert img.width >= h.VIEWPORT["width"] and img.height >= h.VIEWPORT["height"]


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_sidebar_navigation_reaches_every_page(page: object, server: h.StreamlitServer) -> None:
    """Clicking each sidebar link shows that page's title, at that page's URL, without errors."""
    default = next((p for p in PAGES if p.default), PAGES[0])
    previous = h.open_page(page, server, default, h.PAGE_TIMEOUT_MS)
    links = page.locator(h.NAV_LINK)
    assert links.count() == len(PAGES), "the sidebar does not list every page"
    for app_page in [p for p in PAGES if not p.default] + [default]:
        page.locator(h.NAV_LINK, has_text=app_page.title).first.click()
        page.wait_for_function(
            "([sel, old]) => { const t = document.querySelector(sel);"
            " return !!t && t.innerText.trim() !== old; }",
            arg=[h.TITLE, previous],
            timeout=h.PAGE_TIMEOUT_MS,
        )
        h.wait_for_idle(page, h.PAGE_TIMEOUT_MS)
        assert urlparse(page.url).path.strip("/") == app_page.url_path
        previous = page.inner_text(h.TITLE).strip()
        assert_clean(page, f"{app_page.file} (reached from the sidebar)")


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_shared_link_on_fresh_server_shows_app_navigation(browser: object) -> None:
    """The first visit after a server start may be a copied link to any page, not only ``/``.

    Streamlit builds its legacy navigation from a folder named ``pages/`` next to the app until
    ``st.navigation`` has run once; a first visit to a deep link would then get that navigation.
    """
    target = next(p for p in PAGES if p.url_path == "sample")
    shared_seed = "123"
    with h.StreamlitServer() as fresh:
        context = browser.new_context(viewport=h.VIEWPORT)
        try:
            tab = context.new_page()
            tab.goto(
                fresh.url(f"{target.url_path}?s_seed={shared_seed}"),
                wait_until="domcontentloaded",
                timeout=h.FIRST_LOAD_TIMEOUT_MS,
            )
            tab.wait_for_selector(h.TITLE, state="visible", timeout=h.FIRST_LOAD_TIMEOUT_MS)
            h.wait_for_idle(tab, h.FIRST_LOAD_TIMEOUT_MS)
            title = tab.inner_text(h.TITLE).strip()
            seed_shown = tab.get_by_label("Seed", exact=True).first.input_value()
            links = [t.strip() for t in tab.locator(h.NAV_LINK).all_inner_texts()]
        finally:
            context.close()
    assert target.title in title, f"the shared link opened {title!r}, not {target.title!r}"
    assert seed_shown == shared_seed, f"the shared seed {shared_seed} became {seed_shown}"
    titles = [p.title for p in PAGES]
    assert len(links) == len(titles) and all(
        title in link for title, link in zip(titles, links, strict=True)
    ), (
        f"opening /{target.url_path} first shows the navigation {links} instead of {titles}: "
        "Streamlit's legacy pages/ discovery ran (keep st.navigation's scripts out of a folder "
        "named pages/)"
    )


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_slider_updates_image_and_url(
    page: object, server: h.StreamlitServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Arrow keys on a latent-explorer slider give a new image (timed) and a new page address."""
    h.open_page(page, server, by_name(SLIDER_PAGE), h.PAGE_TIMEOUT_MS)
    page.wait_for_selector(h.IMAGES, timeout=h.ACTION_TIMEOUT_MS)
    thumb = page.locator(h.SLIDER_THUMB).first
    key = h.slider_key(thumb)
    url_before = page.url
    timings = []
    for _ in range(SLIDER_MOVES):
        timings.append(h.move_slider_and_time(page, thumb, key, h.ACTION_TIMEOUT_MS))
    assert_clean(page, f"{SLIDER_PAGE} after moving a slider")
    assert page.url != url_before, "the slider's value did not reach the page address"
    ms = ", ".join(f"{t * 1000:.0f}" for t in timings)
    median = sorted(timings)[len(timings) // 2] * 1000
    with capsys.disabled():
        print(f"\n[browser] slider key press -> new image (ms): {ms}; median {median:.0f}")


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_classify_upload_gives_verdict(
    page: object, server: h.StreamlitServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An uploaded cell image gets a verdict with a probability."""
    h.open_page(page, server, by_name(CLASSIFY_PAGE), h.PAGE_TIMEOUT_MS)
    before = page.inner_text(h.MAIN)
    images_before = len(h.image_sources(page))
    cell = h.fake_cell_png(tmp_path / "fake_cell.png", parasitized=True)
    start = time.perf_counter()
    page.set_input_files(h.FILE_INPUT, str(cell))
    page.wait_for_function(
        "([sel, old]) => document.querySelector(sel).innerText !== old",
        arg=[h.MAIN, before],
        timeout=h.ACTION_TIMEOUT_MS,
    )
    h.wait_for_idle(page, h.ACTION_TIMEOUT_MS)
    elapsed = time.perf_counter() - start
    assert_clean(page, f"{CLASSIFY_PAGE} after an upload")
    after = page.inner_text(h.MAIN)
    assert "fake_cell.png" in after, "the uploaded file is not named on the page"
    new_verdicts = set(VERDICT.findall(after)) - set(VERDICT.findall(before))
    assert new_verdicts, f"no verdict with a probability appeared:\n{after[:2000]}"
    assert len(h.image_sources(page)) > images_before, "the uploaded cell is not shown"
    h.screenshot_full_page(page, SCREENSHOTS / f"{CLASSIFY_PAGE}_after_upload.png")
    with capsys.disabled():
        print(f"\n[browser] upload -> verdict: {elapsed * 1000:.0f} ms; {sorted(new_verdicts)[:3]}")


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_sample_downloads_are_valid_files(
    page: object, server: h.StreamlitServer, tmp_path: Path
) -> None:
    """The Sample page's download buttons give a readable PNG and a ZIP of PNG cells."""
    h.open_page(page, server, by_name(DOWNLOAD_PAGE), h.PAGE_TIMEOUT_MS)
    page.wait_for_selector(h.DOWNLOAD_BUTTON, timeout=h.ACTION_TIMEOUT_MS)
    buttons = page.locator(h.DOWNLOAD_BUTTON)
    assert buttons.count() >= 1, "the Sample page has no download button"
    kinds = set()
    for i in range(buttons.count()):
        with page.expect_download(timeout=h.ACTION_TIMEOUT_MS) as info:
            buttons.nth(i).click()
        download = info.value
        target = tmp_path / download.suggested_filename
        download.save_as(target)
        data = target.read_bytes()
        if data.startswith(PNG_MAGIC):
            with Image.open(io.BytesIO(data)) as img:
                img.verify()
            kinds.add("png")
        elif data.startswith(ZIP_MAGIC):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                assert archive.testzip() is None, f"{target.name} has a corrupt member"
                names = archive.namelist()
                assert names, f"{target.name} is empty"
                with Image.open(io.BytesIO(archive.read(names[0]))) as img:
                    assert img.size[0] > 0
            kinds.add("zip")
        else:
            pytest.fail(f"{target.name} is neither a PNG nor a ZIP ({data[:8]!r})")
    assert kinds, "nothing was downloaded"
    assert_clean(page, f"{DOWNLOAD_PAGE} after downloading")


# Tables.
def cut_columns(page: object) -> list[str]:
    """What the page's tables do not show of their columns (see ``CUT_COLUMNS_JS``)."""
    return page.evaluate(CUT_COLUMNS_JS)


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("name", TABLE_PAGES)
def test_every_table_column_is_within_the_window(
    browser: object, server: h.StreamlitServer, name: str, window: str
) -> None:
    app_page = by_name(name)
    context = browser.new_context(viewport=WINDOWS[window])
    try:
        page = context.new_page()
        h.open_page(page, server, app_page, h.PAGE_TIMEOUT_MS)
        h.rendered_at(page, h.PAGE_TIMEOUT_MS)
        assert page.locator(f"{h.MAIN} table").count(), f"{name} shows no table"
        assert not cut_columns(page), f"{name} at {window}: {cut_columns(page)}"
    finally:
        context.close()


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_the_check_sees_a_cut_column_a_clipped_cell_and_an_unlabelled_card(
    browser: object,
) -> None:
    cells = "".join(f"<td>value number {i}</td>" for i in range(12))
    wide = f"<table><thead><tr><th>name</th>{cells}</tr></thead><tbody><tr>{cells}</tr></tbody>"
    page = browser.new_page(viewport=WINDOWS["390x844"])
    try:
        page.set_content(f"<div style='width:300px;overflow-x:auto'>{wide}</table></div>")
        assert any("outside the visible part" in p for p in cut_columns(page))
        page.set_content(
            "<style>thead{position:absolute;width:1px;height:1px;overflow:hidden}"
            "tr,td,th{display:block}</style>"
            "<table><thead><tr><th>name</th><th>Accuracy</th></tr></thead>"
            "<tbody><tr><th>cGAN</th><td>95%</td></tr></tbody></table>"
        )
        assert cut_columns(page) == ['"Accuracy" of "cGAN" is shown without its column\'s name']
    finally:
        page.close()
