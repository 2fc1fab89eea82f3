"""Dashboard latency on the CPU: one cell, a 16-cell grid, first page load, sliders, every page.

Run from the repository root (Debian's Chromium drives the browser parts)::

    python -m benchmarks.app_latency
    python -m benchmarks.app_latency --pages-only --repeats 5
    python -m benchmarks.app_latency --no-browser --cell-repeats 500

Each figure is a median with its 95th percentile and sample count. The report's per-class DCGAN
is measured in the same run as the conditional GAN, as the baseline. The per-page table times a
sidebar click until the new page has finished rendering (idle, every image loaded), for every
page of the navigation, over ``--repeats`` rounds on one server; the first page of a fresh
server is timed on ``--repeats`` fresh servers. Other work on the cores slows every figure: the
load average at the start and end says how much.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from harness import browser as h
from malgan import artifacts, imaging, latent, runtime
from malgan.data import CLASSES
from malgan.metrics import summarize_latencies

EXPORTED = h.REPO_ROOT / "exported"
MODELS = ("cgan", "dcgan")
TARGET_ONE_CELL_MS = 50.0
GRID_CELLS = 16
GRID_COLUMNS = 8
GRID_SCALE = 2
WARMUP_CALLS = 5
CELL_REPEATS = 200
GRID_REPEATS = 50
PAGE_LOADS = 3
SLIDER_MOVES = 10
SLIDER_PAGE = "latent_explorer"
PAGE_REPEATS = 3
# Targets on a quiet machine (issue 13): a page switch, and the first page of a fresh server.
TARGET_PAGE_S = 1.0
TARGET_FIRST_PAGE_S = 2.0
SYNTH_PAGE = "synthetic_dataset"
SYNTH_MODEL = "cgan"
SYNTH_CELLS = 100
SYNTH_SERIES = ("cli", "page_export", "page_click_to_result")
SYNTH_TIMEOUT_MS = 600_000
# The speed in the summary that malgan-synth prints: "... in 4.6 s (43.5 images/s)."
CLI_RATE = re.compile(r"\(([\d.]+) images/s\)")


def time_calls(call: Callable[[int], Any], repeats: int, warmup: int = WARMUP_CALLS) -> list[float]:
    """Seconds taken by ``call(i)`` for i in range(repeats), after ``warmup`` untimed calls."""
    for i in range(warmup):
        call(-1 - i)
    seconds = []
    for i in range(repeats):
        start = time.perf_counter()
        call(i)
        seconds.append(time.perf_counter() - start)
    return seconds


def one_cell(gen: Any, classifier: runtime.Classifier) -> Callable[[int], Any]:
    """One cell of seed ``i`` (classes alternate): sample_z, generate, predict_proba."""

    def call(i: int) -> np.ndarray:
        z = latent.sample_z(abs(i), 1, gen.z_dim)
        return classifier.predict_proba(gen.generate(z, CLASSES[i % len(CLASSES)]))

    return call


def grid(gen: Any, classifier: runtime.Classifier) -> Callable[[int], Any]:
    """A 16-cell grid of seed ``i``: generate, classify every cell, tile at display scale."""

    def call(i: int) -> np.ndarray:
        z = latent.sample_z(abs(i), GRID_CELLS, gen.z_dim)
        images = gen.generate(z, CLASSES[i % len(CLASSES)])
        classifier.predict_proba(images)
        return imaging.make_grid(images, ncol=GRID_COLUMNS, scale=GRID_SCALE)

    return call


def runtime_figures(exported: Path, cell_repeats: int, grid_repeats: int) -> dict[str, Any]:
    """(a) and (b): in-process latencies through ``malgan.runtime`` for every generator."""
    classifier = artifacts.load_classifier(exported)
    figures: dict[str, Any] = {"classifier_tta": classifier.tta}
    for name in MODELS:
        gen = artifacts.load_generator(exported, name)
        figures[name] = {
            "one_cell": summarize_latencies(time_calls(one_cell(gen, classifier), cell_repeats)),
            "grid_16": summarize_latencies(time_calls(grid(gen, classifier), grid_repeats)),
        }
    return figures


def default_page() -> h.AppPage:
    """The page served at ``/``."""
    return next(p for p in h.app_pages() if p.default)


def first_page_loads(playwright: Any, loads: int) -> dict[str, Any]:
    """(c): fresh server each time; seconds from opening the default page to title + image."""
    default = default_page()
    startups, renders = [], []
    with h.chromium(playwright) as browser:
        for _ in range(loads):
            start = time.perf_counter()
            with h.StreamlitServer() as server:
                startups.append(time.perf_counter() - start)
                context = browser.new_context(viewport=h.VIEWPORT)
                page = context.new_page()
                start = time.perf_counter()
                page.goto(server.url(default.url_path), wait_until="commit")
                page.wait_for_selector(h.TITLE, state="visible", timeout=h.FIRST_LOAD_TIMEOUT_MS)
                page.wait_for_function(
                    "(sel) => { const img = document.querySelector(sel);"
                    " return !!img && img.complete && img.naturalWidth > 0; }",
                    arg=h.IMAGES,
                    timeout=h.FIRST_LOAD_TIMEOUT_MS,
                    polling=10,
                )
                renders.append(time.perf_counter() - start)
                context.close()
    return {
        "page": default.title,
        "title_and_first_image": summarize_latencies(renders),
        "server_start_to_healthy": summarize_latencies(startups),
    }


def slider_moves(playwright: Any, moves: int) -> dict[str, Any]:
    """(d): seconds from an arrow key on a latent-explorer slider to the new, loaded image."""
    target = next(p for p in h.app_pages() if p.name == SLIDER_PAGE)
    with h.StreamlitServer() as server, h.chromium(playwright) as browser:
        page = browser.new_page(viewport=h.VIEWPORT)
        # The default page first: a fresh server's first visit fixes its navigation.
        h.open_page(page, server, default_page(), h.FIRST_LOAD_TIMEOUT_MS)
        h.open_page(page, server, target, h.FIRST_LOAD_TIMEOUT_MS)
        page.wait_for_selector(h.IMAGES, timeout=h.ACTION_TIMEOUT_MS)
        thumb = page.locator(h.SLIDER_THUMB).first
        seconds = [
            h.move_slider_and_time(page, thumb, h.slider_key(thumb), h.ACTION_TIMEOUT_MS)
            for _ in range(moves)
        ]
        problems = h.page_problems(page)
    return {
        "page": target.title,
        "key_to_image": summarize_latencies(seconds),
        "problems": problems,
    }


def spread(seconds: list[float]) -> dict[str, Any]:
    """``summarize_latencies`` with the smallest and largest time, in milliseconds."""
    return {
        **summarize_latencies(seconds),
        "min_ms": 1000 * min(seconds),
        "max_ms": 1000 * max(seconds),
    }


def page_switches(playwright: Any, repeats: int) -> dict[str, Any]:
    """(e): per page, seconds from a sidebar click until the page has finished rendering.

    One server and one browser session: the default page first, then ``repeats`` rounds
    through the navigation, each page reached from the one before it. The first round meets
    every page cold (its script's first run on the server, its models' first load).
    """
    pages = h.app_pages()
    default = default_page()
    order = [p for p in pages if not p.default] + [default]
    seconds: dict[str, list[float]] = {p.title: [] for p in pages}
    with h.StreamlitServer() as server, h.chromium(playwright) as browser:
        page = browser.new_page(viewport=h.VIEWPORT)
        h.open_page(page, server, default, h.FIRST_LOAD_TIMEOUT_MS)
        for _ in range(repeats):
            for target in order:
                seconds[target.title].append(
                    h.click_nav_and_time(page, target, h.FIRST_LOAD_TIMEOUT_MS)
                )
        problems = h.page_problems(page)
    return {
        "pages": {
            title: {**spread(times), "first_visit_ms": 1000 * times[0]}
            for title, times in seconds.items()
        },
        "problems": problems,
    }


def first_page_renders(playwright: Any, repeats: int) -> dict[str, Any]:
    """(f): fresh server each time; seconds from opening ``/`` until the page has rendered."""
    default = default_page()
    seconds = []
    with h.chromium(playwright) as browser:
        for _ in range(repeats):
            with h.StreamlitServer() as server:
                context = browser.new_context(viewport=h.VIEWPORT)
                page = context.new_page()
                start = time.perf_counter()
                page.goto(server.url(default.url_path), wait_until="commit")
                page.wait_for_selector(h.TITLE, state="visible", timeout=h.FIRST_LOAD_TIMEOUT_MS)
                seconds.append(h.rendered_at(page, h.FIRST_LOAD_TIMEOUT_MS) - start)
                context.close()
    return {"page": default.title, "rendered": spread(seconds)}


def cli_export(exported: Path, n: int, seed: int, class_filter: bool) -> float:
    """Cells per second of one ``malgan-synth`` run, as its summary states them."""
    with tempfile.TemporaryDirectory(prefix="malgan-bench-") as tmp:
        command = [
            *(sys.executable, "-m", "malgan.synth.cli", "--quiet", "--model", SYNTH_MODEL),
            *("--exported", str(exported), "--out", str(Path(tmp) / "dataset")),
            *("--n-per-class", str(n), "--seed", str(seed)),
            *(() if class_filter else ("--no-class-filter",)),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(CLI_RATE.search(done.stdout).group(1))


def page_export(page: Any, server: h.StreamlitServer, n: int, seed: int) -> tuple[float, float]:
    """One Generate on the Synthetic dataset page at its defaults.

    Returns:
        ``(cells per second of the export, as the page's Speed metric shows it, seconds from
        the click until the result is shown)``.
    """
    page.goto(server.url(f"{SYNTH_PAGE}?d_n={n}&d_seed={seed}"), wait_until="domcontentloaded")
    page.wait_for_selector(h.TITLE, timeout=h.PAGE_TIMEOUT_MS)
    h.wait_for_idle(page, h.PAGE_TIMEOUT_MS)
    button = page.locator(f'{h.MAIN} [data-testid="stBaseButton-primary"]', has_text="Generate")
    start = time.perf_counter()
    button.first.click()
    speed = page.locator(f'{h.MAIN} [data-testid="stMetric"]', has_text="Speed")
    speed.wait_for(timeout=SYNTH_TIMEOUT_MS)
    seconds = h.rendered_at(page, SYNTH_TIMEOUT_MS) - start
    value = speed.locator('[data-testid="stMetricValue"]').inner_text()
    return float(value.split()[0].replace(",", "")), seconds


def synth_page_vs_cli(playwright: Any, exported: Path, repeats: int, n: int) -> dict[str, Any]:
    """(g): the Synthetic dataset page's Generate at its defaults beside the CLI's export.

    Each round runs ``malgan-synth``, then the page's Generate, with the page's default settings
    (the class filter off for smoke-test models), on the same seed.
    """
    smoke = artifacts.profile_name(artifacts.load_index(exported)) == artifacts.SMOKE_PROFILE
    cli, shown, clicks = [], [], []
    env = {artifacts.EXPORTED_ENV: str(exported)}
    with h.StreamlitServer(env=env) as server, h.chromium(playwright) as browser:
        page = browser.new_page(viewport=h.VIEWPORT)
        h.open_page(page, server, default_page(), h.FIRST_LOAD_TIMEOUT_MS)
        for seed in range(repeats):
            cli.append(cli_export(exported, n, seed, class_filter=not smoke))
            rate, seconds = page_export(page, server, n, seed)
            shown.append(rate)
            clicks.append(2 * n / seconds)
    return {
        "n_per_class": n,
        "class_filter": not smoke,
        "cli": cli,
        "page_export": shown,
        "page_click_to_result": clicks,
    }


def synth_lines(figures: dict[str, Any]) -> list[str]:
    """(g) of the report: medians of cells per second."""
    median = {k: statistics.median(figures[k]) for k in SYNTH_SERIES}
    return [
        f"(g) synthetic dataset, {figures['n_per_class']} cells per class, class filter "
        f"{'on' if figures['class_filter'] else 'off'}, {len(figures['cli'])} rounds: "
        "cells per second, median",
        f"    CLI export {median['cli']:.1f} · page export (its Speed metric) "
        f"{median['page_export']:.1f} · page, click to result {median['page_click_to_result']:.1f}",
    ]


def page_table(switches: dict[str, Any], first: dict[str, Any] | None) -> list[str]:
    """The per-page lines of the report: median, range and first visit, against the targets."""
    lines = [
        "(e) sidebar click -> page rendered (one server; medians over the rounds, the first "
        "visit of each page included)",
        f"    {'page':20s} {'median':>8s} {'min':>8s} {'max':>8s} {'first':>8s}  "
        f"target {TARGET_PAGE_S:g} s",
    ]
    for title, stats in switches["pages"].items():
        verdict = "meets" if stats["median_ms"] <= 1000 * TARGET_PAGE_S else "MISSES"
        lines.append(
            f"    {title:20s} {stats['median_ms'] / 1000:7.2f}s {stats['min_ms'] / 1000:7.2f}s "
            f"{stats['max_ms'] / 1000:7.2f}s {stats['first_visit_ms'] / 1000:7.2f}s  {verdict}"
        )
    if switches["problems"]:
        lines.append(f"    problems on the last page: {switches['problems']}")
    if first is not None:
        stats = first["rendered"]
        verdict = "meets" if stats["median_ms"] <= 1000 * TARGET_FIRST_PAGE_S else "MISSES"
        lines.append(
            f"(f) first page of a fresh server ({first['page']}), opened -> rendered: "
            f"median {stats['median_ms'] / 1000:.2f}s, min {stats['min_ms'] / 1000:.2f}s, "
            f"max {stats['max_ms'] / 1000:.2f}s, n={stats['n']}  {verdict} the "
            f"{TARGET_FIRST_PAGE_S:g} s target"
        )
    return lines


def fmt(stats: dict[str, Any]) -> str:
    """``median 5.1 ms  p95 6.3 ms  n=200``."""
    return f"median {stats['median_ms']:8.1f} ms   p95 {stats['p95_ms']:8.1f} ms   n={stats['n']}"


def runtime_lines(rt: dict[str, Any]) -> list[str]:
    """(a) and (b) of the report."""
    tta = " (classifier with test-time augmentation)" if rt["classifier_tta"] else ""
    lines = [f"(a) one cell, sample_z -> generate -> predict_proba{tta}"]
    for name in MODELS:
        stats = rt[name]["one_cell"]
        verdict = "meets" if stats["median_ms"] <= TARGET_ONE_CELL_MS else "MISSES"
        lines.append(
            f"    {name:6s} {fmt(stats)}   {verdict} the {TARGET_ONE_CELL_MS:.0f} ms target"
        )
    lines.append(f"(b) {GRID_CELLS}-cell grid: generate, classify, tile at {GRID_SCALE}x")
    lines += [f"    {name:6s} {fmt(rt[name]['grid_16'])}" for name in MODELS]
    return lines


def report(figures: dict[str, Any]) -> str:
    """The figures as a short text table."""
    lines = [
        f"malgan dashboard latency: {figures['cpu']}, {figures['cores']} cores, "
        f"onnxruntime {figures['onnxruntime']}; load average at start "
        f"{figures['load_average_start']:.1f}, at end {figures['load_average_end']:.1f}",
    ]
    if "runtime" in figures:
        lines += runtime_lines(figures["runtime"])
    if "first_load" in figures:
        load = figures["first_load"]
        lines.append(f"(c) first load of {load['page']} (fresh server): title and first image")
        lines.append(f"           {fmt(load['title_and_first_image'])}")
        lines.append(f"    server start to healthy: {fmt(load['server_start_to_healthy'])}")
    if "slider" in figures:
        slider = figures["slider"]
        lines.append(f"(d) {slider['page']}: slider key press -> new image loaded")
        lines.append(f"           {fmt(slider['key_to_image'])}")
        if slider["problems"]:
            lines.append(f"    problems on the page: {slider['problems']}")
    if "page_switches" in figures:
        lines += page_table(figures["page_switches"], figures.get("first_page"))
    if "synth" in figures:
        lines += synth_lines(figures["synth"])
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exported", type=Path, default=EXPORTED, help="models folder")
    parser.add_argument("--cell-repeats", type=int, default=CELL_REPEATS)
    parser.add_argument("--grid-repeats", type=int, default=GRID_REPEATS)
    parser.add_argument("--page-loads", type=int, default=PAGE_LOADS)
    parser.add_argument("--slider-moves", type=int, default=SLIDER_MOVES)
    parser.add_argument(
        "--repeats",
        type=int,
        default=PAGE_REPEATS,
        help="rounds through the pages, and fresh servers for the first page (%(default)s)",
    )
    parser.add_argument("--no-browser", action="store_true", help="only (a) and (b)")
    parser.add_argument("--pages-only", action="store_true", help="only (e), (f) and (g)")
    parser.add_argument(
        "--synth-cells",
        type=int,
        default=SYNTH_CELLS,
        help="cells per class of (g), the synthetic-dataset page beside the CLI; 0 skips it",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the figures."""
    args = parse_args(argv)
    figures: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "onnxruntime": ort.__version__,
        # Other work on the same cores slows every figure; the load average says how much.
        "load_average_start": os.getloadavg()[0],
    }
    if not args.pages_only:
        figures["runtime"] = runtime_figures(args.exported, args.cell_repeats, args.grid_repeats)
    if not args.no_browser:
        if not h.chromium_available():
            print(f"Chromium not found at {h.CHROMIUM_PATH}; use --no-browser.", file=sys.stderr)
            return 2
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            if not args.pages_only:
                figures["first_load"] = first_page_loads(playwright, args.page_loads)
                figures["slider"] = slider_moves(playwright, args.slider_moves)
            figures["first_page"] = first_page_renders(playwright, args.repeats)
            figures["page_switches"] = page_switches(playwright, args.repeats)
            if args.synth_cells > 0:
                figures["synth"] = synth_page_vs_cli(
                    playwright, args.exported, args.repeats, args.synth_cells
                )
    figures["load_average_end"] = os.getloadavg()[0]
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
