"""The "Real or synthetic?" page in Chromium: a whole round played with the keyboard alone."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from harness import browser as h
from malgan import real_sample, turing
from malgan.app import turing as game

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not h.chromium_available(), reason=f"Chromium not found at {h.CHROMIUM_PATH}"
    ),
]

SCREENSHOTS = h.REPO_ROOT / "artifacts" / "screenshots"
PAGE = "real_or_synthetic"
SEED = 17
SIZE = 20
# Playwright's names of the keys the page's buttons answer to.
KEYS = {answer: f"Arrow{key}" for answer, key in game.ANSWER_KEYS.items()}
TEST_TIMEOUT_S = 600
PROGRESS = re.compile(r"Cell (\d+) of (\d+)(?: · score (\d+) / (\d+))?")


@pytest.fixture(scope="module")
def tab() -> Iterator[object]:
    """A Streamlit server on the committed models and a Chromium page on it."""
    from playwright.sync_api import sync_playwright

    page_entry = next(p for p in h.app_pages() if p.name == PAGE)
    with (
        h.StreamlitServer() as server,
        sync_playwright() as playwright,
        h.chromium(playwright) as chromium,
    ):
        context = chromium.new_context(viewport=h.VIEWPORT)
        context.set_default_timeout(h.ACTION_TIMEOUT_MS)
        page = context.new_page()
        page.goto(
            server.url(f"{page_entry.url_path}?ros_seed={SEED}&ros_cells={SIZE}"),
            timeout=h.FIRST_LOAD_TIMEOUT_MS,
        )
        page.wait_for_selector(h.TITLE, timeout=h.FIRST_LOAD_TIMEOUT_MS)
        h.wait_for_idle(page, h.FIRST_LOAD_TIMEOUT_MS)
        yield page
        context.close()


def progress(page: object) -> tuple[int, int | None]:
    """The question shown and the running score's right answers (None before any answer)."""
    match = PROGRESS.search(page.inner_text(h.MAIN))
    assert match, f"no progress line on the page:\n{page.inner_text(h.MAIN)[:1500]}"
    return int(match.group(1)), int(match.group(3)) if match.group(3) else None


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_a_round_played_with_the_keyboard_scores_its_answers(tab: object) -> None:
    questions = turing.draw_round(SEED, SIZE, real_sample.load(h.REPO_ROOT / "exported").labels)
    right = 0
    for q in questions:
        assert progress(tab)[0] == q.index + 1
        # Right on every third question, wrong otherwise: a score that chance would not give.
        answer = q.truth if q.index % 3 == 0 else next(a for a in turing.ANSWERS if a != q.truth)
        right += answer == q.truth
        tab.locator("body").press(KEYS[answer])
        if q.index < SIZE - 1:
            tab.wait_for_function(
                "([sel, n]) => document.querySelector(sel).innerText.includes(`Cell ${n} of`)",
                arg=[h.MAIN, q.index + 2],
                timeout=h.ACTION_TIMEOUT_MS,
            )
            h.wait_for_idle(tab, h.ACTION_TIMEOUT_MS)
            assert progress(tab) == (q.index + 2, right), "the running score is not the answers'"
    tab.wait_for_function(
        "([sel, t]) => document.querySelector(sel).innerText.includes(t)",
        arg=[h.MAIN, f"You got {right} of {SIZE} right"],
        timeout=h.ACTION_TIMEOUT_MS,
    )
    h.wait_for_idle(tab, h.ACTION_TIMEOUT_MS)
    text = tab.inner_text(h.MAIN)
    assert "50% means nobody can tell" in text
    assert f"The {SIZE - right} cells you got wrong" in text
    assert not h.page_problems(tab), h.page_problems(tab)
    h.screenshot_full_page(tab, SCREENSHOTS / f"{PAGE}_after_round.png")
    # Keys after the end record nothing and break nothing.
    tab.locator("body").press(KEYS[turing.REAL])
    h.wait_for_idle(tab, h.ACTION_TIMEOUT_MS)
    assert f"You got {right} of {SIZE} right" in tab.inner_text(h.MAIN)
    assert not h.page_problems(tab)
