"""Load test: concurrent browser sessions against one ``streamlit run`` on the loopback interface.

Run from the repository root (one Debian Chromium, one browser context per session)::

    python -m benchmarks.load_test                      # 10 sessions for 60 s
    python -m benchmarks.load_test --sessions 4 --seconds 30 --json load.json

Each session loops through the sidebar: new seed and slider moves on the latent explorer, a new
seed on the Sample page, an upload on the Classify page. It reports errors (exception boxes,
error alerts, tracebacks, timeouts), the median and 95th percentile of the time from an action
to the updated, loaded image, and the server's resident memory after warm-up and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import browser as h
from malgan.metrics import summarize_latencies

SESSIONS = 10
SECONDS = 60.0
# Every session stops after this many loops even if time is left.
MAX_LOOPS = 500
# Slack after the deadline for actions in flight before the sessions are cancelled.
GRACE_S = 120.0
ACTION_TIMEOUT_MS = 90_000
SLIDER_MOVES_PER_VISIT = 3
MEMORY_SAMPLE_S = 2.0
SETTLE_AFTER_CLOSE_S = 10.0
TIMELINE_POINTS = 7
# Polling interval of waits in the page: coarse enough not to load two shared cores.
POLL_MS = 25
MIB = 2**20
LATENT_PAGE = "latent_explorer"
SAMPLE_PAGE = "sample"
CLASSIFY_PAGE = "classify"
SEED_BASE = 100_000
SEED_STRIDE = 1_000
VERDICT = re.compile(r"(Parasitized|Uninfected)[^\n]{0,120}?\d{1,3}(?:\.\d+)?\s?%")
SERVER_TRACEBACK = "Traceback (most recent call last)"


class ActionError(RuntimeError):
    """An action finished, but the page shows a failure."""


@dataclass
class Stats:
    """What every session records."""

    timings: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    loops: int = 0

    def error(self, kind: str, detail: str) -> None:
        """Count an error and keep its first message."""
        self.errors[kind] += 1
        self.examples.setdefault(kind, detail[:300])


# Asynchronous counterparts of the harness's page helpers.
async def wait_for_idle(page: Any, timeout_ms: float) -> None:
    """Wait until the script has finished and nothing is stale (see ``h.wait_for_idle``)."""
    deadline = time.monotonic() + timeout_ms / 1000
    idle_since: float | None = None
    while True:
        now = time.monotonic()
        if await page.evaluate(h.IDLE_JS):
            idle_since = idle_since or now
            if now - idle_since >= h.IDLE_SETTLE_MS / 1000:
                return
        else:
            idle_since = None
        if now > deadline:
            raise TimeoutError(f"the app was still running after {timeout_ms / 1000:.0f} s")
        await page.wait_for_timeout(POLL_MS)


async def page_problems(page: Any) -> list[str]:
    """Exception boxes, error alerts and traceback text on the page."""
    problems = [f"exception box: {t}" for t in await page.locator(h.EXCEPTION).all_inner_texts()]
    problems += [f"error alert: {t}" for t in await page.locator(h.ERROR_ALERT).all_inner_texts()]
    body = await page.inner_text("body")
    return problems + [f"traceback text ({m!r})" for m in h.TRACEBACK_MARKERS if m in body]


async def timed_image_change(page: Any, action: Any, timeout_ms: float) -> float:
    """Run ``await action()``; seconds until the main area's images change and have loaded."""
    before = await page.evaluate(h.IMAGE_SOURCES_JS, h.IMAGES)
    start = time.perf_counter()
    await action()
    await page.wait_for_function(
        h.IMAGES_CHANGED_JS, arg=[h.IMAGES, before], timeout=timeout_ms, polling=POLL_MS
    )
    elapsed = time.perf_counter() - start
    await wait_for_idle(page, timeout_ms)
    return elapsed


async def go_to(page: Any, app_page: h.AppPage, timeout_ms: float) -> float:
    """Click a sidebar link; seconds until that page's title shows and its run has ended."""
    start = time.perf_counter()
    await page.locator(h.NAV_LINK, has_text=app_page.title).first.click(timeout=timeout_ms)
    await page.wait_for_function(
        "([sel, title]) => { const a = document.querySelector(sel + '[aria-current=\"page\"]');"
        " return !!a && a.innerText.includes(title); }",
        arg=[h.NAV_LINK, app_page.title],
        timeout=timeout_ms,
        polling=POLL_MS,
    )
    await page.wait_for_selector(h.TITLE, state="visible", timeout=timeout_ms)
    await wait_for_idle(page, timeout_ms)
    return time.perf_counter() - start


async def set_seed(page: Any, seed: int, timeout_ms: float) -> float:
    """Type a seed into the page's "Seed" number input; seconds until the images change."""
    field_box = page.locator(f'{h.MAIN} [data-testid="stNumberInput"]', has_text="Seed").first
    box = field_box.locator("input")

    async def type_seed() -> None:
        await box.fill(str(seed), timeout=timeout_ms)
        await box.press("Enter", timeout=timeout_ms)

    return await timed_image_change(page, type_seed, timeout_ms)


async def slider_key(thumb: Any) -> str:
    """The arrow key that moves a slider thumb away from its nearer end."""
    value = await thumb.get_attribute("aria-valuenow") or await thumb.get_attribute("value")
    high = await thumb.get_attribute("aria-valuemax") or await thumb.get_attribute("max")
    return "ArrowLeft" if float(value or 0) >= float(high or 0) else "ArrowRight"


class Session:
    """One simulated user: a browser context with one tab that loops over three pages."""

    def __init__(self, index: int, context: Any, server: h.StreamlitServer, cells: Path) -> None:
        """Args: session number, its browser context, the server, a folder for drawn cells."""
        self.index = index
        self.context = context
        self.server = server
        self.cells = cells
        self.pages = {p.name: p for p in h.app_pages()}
        self.page: Any = None
        self.seed = SEED_BASE + index * SEED_STRIDE

    def next_seed(self) -> int:
        """A seed no other session uses, so that every grid is generated, not cached."""
        self.seed += 1
        return self.seed

    async def open(self) -> None:
        """Open the default page by URL; the steps go on through the sidebar."""
        self.page = await self.context.new_page()
        await self.page.goto(self.server.url(), timeout=ACTION_TIMEOUT_MS)
        await self.page.wait_for_selector(h.TITLE, state="visible", timeout=ACTION_TIMEOUT_MS)
        await wait_for_idle(self.page, ACTION_TIMEOUT_MS)

    async def check(self, where: str) -> None:
        """Raise ActionError when the page shows a failure."""
        problems = await page_problems(self.page)
        if problems:
            raise ActionError(f"{where}: {problems[0]}")

    async def latent_step(self, stats: Stats) -> None:
        """New seed, then a few slider moves on the latent explorer."""
        stats.timings["navigate"].append(
            await go_to(self.page, self.pages[LATENT_PAGE], ACTION_TIMEOUT_MS)
        )
        stats.timings["latent seed"].append(
            await set_seed(self.page, self.next_seed(), ACTION_TIMEOUT_MS)
        )
        thumbs = self.page.locator(h.SLIDER_THUMB)
        enabled = [
            thumbs.nth(i) for i in range(await thumbs.count()) if await thumbs.nth(i).is_enabled()
        ]
        if not enabled:
            raise ActionError(f"{LATENT_PAGE}: no slider to move")
        thumb = enabled[self.index % len(enabled)]
        for _ in range(SLIDER_MOVES_PER_VISIT):
            key = await slider_key(thumb)

            async def press(key: str = key) -> None:
                await thumb.focus()
                await thumb.press(key)

            stats.timings["slider"].append(
                await timed_image_change(self.page, press, ACTION_TIMEOUT_MS)
            )
        await self.check(LATENT_PAGE)

    async def sample_step(self, stats: Stats) -> None:
        """A new seed on the Sample page."""
        stats.timings["navigate"].append(
            await go_to(self.page, self.pages[SAMPLE_PAGE], ACTION_TIMEOUT_MS)
        )
        stats.timings["sample grid"].append(
            await set_seed(self.page, self.next_seed(), ACTION_TIMEOUT_MS)
        )
        await self.check(SAMPLE_PAGE)

    async def classify_step(self, stats: Stats) -> None:
        """Upload a freshly drawn cell on the Classify page and read the verdict."""
        stats.timings["navigate"].append(
            await go_to(self.page, self.pages[CLASSIFY_PAGE], ACTION_TIMEOUT_MS)
        )
        seed = self.next_seed()
        cell = h.fake_cell_png(
            self.cells / f"cell_{seed}.png", parasitized=bool(seed % 2), size=80 + seed % 64
        )

        async def upload() -> None:
            await self.page.set_input_files(h.FILE_INPUT, str(cell), timeout=ACTION_TIMEOUT_MS)

        stats.timings["classify upload"].append(
            await timed_image_change(self.page, upload, ACTION_TIMEOUT_MS)
        )
        await self.check(CLASSIFY_PAGE)
        if not VERDICT.search(await self.page.inner_text(h.MAIN)):
            raise ActionError(f"{CLASSIFY_PAGE}: no verdict with a probability after an upload")

    async def run(self, stats: Stats, deadline: float) -> None:
        """Loop until the deadline; an error is counted and the page reopened."""
        steps = (self.latent_step, self.sample_step, self.classify_step)
        for _ in range(MAX_LOOPS):
            for step in steps:
                if time.monotonic() >= deadline:
                    return
                try:
                    await step(stats)
                except ActionError as err:
                    stats.error("error shown on page", str(err))
                except TimeoutError as err:
                    stats.error(f"timeout in {step.__name__}", str(err))
                    await self.reopen(stats)
                except Exception as err:  # Playwright's own errors (timeouts included)
                    kind = "timeout" if "Timeout" in type(err).__name__ else type(err).__name__
                    stats.error(f"{kind} in {step.__name__}", str(err))
                    await self.reopen(stats)
            stats.loops += 1

    async def reopen(self, stats: Stats) -> None:
        """Start again on a fresh tab after a failed action."""
        with contextlib.suppress(Exception):
            await self.page.close()
        try:
            await self.open()
        except Exception as err:
            stats.error("reopen failed", str(err))


async def sample_memory(
    server: h.StreamlitServer, samples: list[tuple[float, int]], stop: asyncio.Event
) -> None:
    """Record ``(seconds since start, server RSS)`` every few seconds until ``stop`` is set."""
    start = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - start, server.rss_bytes()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), MEMORY_SAMPLE_S)


async def warm_up(browser: Any, server: h.StreamlitServer, cells: Path) -> None:
    """One session through every step, so that models and page scripts are loaded."""
    context = await browser.new_context(viewport=h.VIEWPORT)
    session = Session(-1, context, server, cells)
    stats = Stats()
    session.seed = SEED_BASE - SEED_STRIDE
    await session.open()
    for step in (session.latent_step, session.sample_step, session.classify_step):
        await step(stats)
    await context.close()


async def load_test(sessions: int, seconds: float) -> dict[str, Any]:
    """Start a server and Chromium, warm up, run the sessions, and collect the figures."""
    from playwright.async_api import async_playwright

    stats = Stats()
    with (
        h.StreamlitServer() as server,
        tempfile.TemporaryDirectory(prefix="malgan-load-") as tmp,
    ):
        log_start = len(server.log_tail(chars=10**9))
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(**h.launch_options())
            try:
                await warm_up(browser, server, Path(tmp))
                rss_start = server.rss_bytes()
                contexts = [await browser.new_context(viewport=h.VIEWPORT) for _ in range(sessions)]
                users = [Session(i, c, server, Path(tmp)) for i, c in enumerate(contexts)]
                await asyncio.gather(*(user.open() for user in users))
                samples: list[tuple[float, int]] = []
                stop = asyncio.Event()
                watcher = asyncio.create_task(sample_memory(server, samples, stop))
                start = time.monotonic()
                deadline = start + seconds
                runs = [asyncio.create_task(user.run(stats, deadline)) for user in users]
                done, pending = await asyncio.wait(runs, timeout=seconds + GRACE_S)
                for task in pending:
                    task.cancel()
                    stats.error("session still busy after the grace period", "cancelled")
                for task in done:
                    if task.exception() is not None:
                        stats.error("session crashed", repr(task.exception()))
                elapsed = time.monotonic() - start
                rss_end = server.rss_bytes()
                stop.set()
                await watcher
                for context in contexts:
                    with contextlib.suppress(Exception):
                        await context.close()
                # Streamlit drops a closed session's state and media once it sees the disconnect.
                await asyncio.sleep(SETTLE_AFTER_CLOSE_S)
                rss_closed = server.rss_bytes()
            finally:
                await browser.close()
        server_log = server.log_tail(chars=10**9)[log_start:]
    tracebacks = server_log.count(SERVER_TRACEBACK)
    if tracebacks:
        stats.error("traceback in the server log", server_log[server_log.find(SERVER_TRACEBACK) :])
    image_actions = [t for kind, ts in stats.timings.items() if kind != "navigate" for t in ts]
    return {
        "sessions": sessions,
        "seconds": round(elapsed, 1),
        "loops": stats.loops,
        "actions": {kind: len(ts) for kind, ts in stats.timings.items()},
        "errors": dict(stats.errors),
        "error_examples": stats.examples,
        "action_to_image": summarize_latencies(image_actions),
        "by_action": {kind: summarize_latencies(ts) for kind, ts in stats.timings.items()},
        "rss_mib": {
            "start_after_warm_up": rss_start / MIB,
            "end": rss_end / MIB,
            "peak": max([rss_end, *(rss for _, rss in samples)]) / MIB,
            "after_sessions_closed": rss_closed / MIB,
            "timeline": [(round(t, 1), round(rss / MIB, 1)) for t, rss in samples],
            "growth": (rss_end - rss_start) / MIB,
        },
        "load_average_end": os.getloadavg()[0],
    }


def fmt(stats: dict[str, Any]) -> str:
    """``p50 120 ms  p95 480 ms  n=230``."""
    return f"p50 {stats['median_ms']:8.0f} ms   p95 {stats['p95_ms']:8.0f} ms   n={stats['n']}"


def report(figures: dict[str, Any]) -> str:
    """The figures as a short text report."""
    errors = figures["errors"]
    lines = [
        f"load test: {figures['sessions']} browser sessions for {figures['seconds']:.0f} s "
        f"against one streamlit server on {h.HOST} ({os.cpu_count()} cores; load average at "
        f"end {figures['load_average_end']:.1f})",
        f"errors: {sum(errors.values())}" + (f" {errors}" if errors else " (target 0)"),
    ]
    lines += [f"    {kind}: {text}" for kind, text in figures["error_examples"].items()]
    lines.append(f"action -> updated image, all actions: {fmt(figures['action_to_image'])}")
    for kind, stats in sorted(figures["by_action"].items()):
        lines.append(f"    {kind:16s} {fmt(stats)}")
    rss = figures["rss_mib"]
    lines.append(
        f"server RSS (with children): {rss['start_after_warm_up']:.0f} MiB after warm-up, "
        f"{rss['end']:.0f} MiB at the end (growth {rss['growth']:+.0f} MiB), "
        f"peak {rss['peak']:.0f} MiB, {rss['after_sessions_closed']:.0f} MiB "
        f"{SETTLE_AFTER_CLOSE_S:.0f} s after the sessions closed"
    )
    timeline = rss["timeline"]
    step = max(1, len(timeline) // (TIMELINE_POINTS - 1))
    points = timeline[::step] + ([timeline[-1]] if (len(timeline) - 1) % step else [])
    lines.append("    RSS over time (s: MiB): " + ", ".join(f"{t:.0f}: {m:.0f}" for t, m in points))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=SESSIONS, help="browser sessions")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="duration of the load")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the load test and print its figures; status 1 when there were errors."""
    args = parse_args(argv)
    if not h.chromium_available():
        print(f"Chromium not found at {h.CHROMIUM_PATH}.", file=sys.stderr)
        return 2
    figures = asyncio.run(load_test(max(1, args.sessions), max(1.0, args.seconds)))
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
