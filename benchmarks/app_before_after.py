"""Click-to-result in Chromium, before and after the synthetic-set speed work, in the same run.

Two Streamlit servers run side by side: "before" serves the code of a given commit (by default
the last one whose export averaged the classifier's 8 views with the generators' graphs as
exported, all fp32), unpacked with ``git archive`` into a temporary folder; "after" serves this
working tree. Each round times, on each server in turn:

- the Sample page's 16-cell grid: a click on "New seed" until the new cells, their verdicts and
  every image have rendered;
- the Synthetic dataset page: a click on "Generate" until the result is shown, as written
  cells per second (both filters on, the page's defaults).

The figures are medians over the rounds, with the load average at the start and the end.

Usage: python -m benchmarks.app_before_after [--before 74e6111^] [--rounds 5] [--synth-cells 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import summary
from benchmarks.app_latency import page_export
from harness import browser as h

# The commit before the view and graph changes: fp32, 8 views, the exported graphs.
BEFORE_COMMIT = "74e6111^"
SAMPLE_PAGE = "sample"
SYNTH_PAGE = "synthetic_dataset"
ROUNDS = 5
SYNTH_CELLS = 100
GRID_CELLS = 16
NEW_SEED = "New seed"


def unpack(commit: str, root: Path) -> Path:
    """The files of ``commit`` (models included) in ``root``, via ``git archive``."""
    archive = subprocess.run(
        ["git", "archive", commit], cwd=h.REPO_ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


def server_for(tree: Path) -> h.StreamlitServer:
    """A server of the app in ``tree``, importing ``malgan`` from that tree."""
    env = {"PYTHONPATH": str(tree), "MALGAN_EXPORTED": str(tree / "exported")}
    return h.StreamlitServer(tree / "streamlit_app.py", cwd=tree, env=env)


def open_sample(page: Any, server: h.StreamlitServer) -> None:
    """The Sample page with a 16-cell grid, rendered."""
    page.goto(server.url(f"{SAMPLE_PAGE}?s_n={GRID_CELLS}"), wait_until="domcontentloaded")
    page.wait_for_selector(h.TITLE, timeout=h.FIRST_LOAD_TIMEOUT_MS)
    page.wait_for_selector(h.IMAGES, timeout=h.FIRST_LOAD_TIMEOUT_MS)
    h.rendered_at(page, h.FIRST_LOAD_TIMEOUT_MS)


def sample_click(page: Any) -> float:
    """Seconds from a click on "New seed" until the new grid has rendered."""
    before = h.image_sources(page)
    button = page.locator(f"{h.MAIN} button", has_text=NEW_SEED).first
    start = time.perf_counter()
    button.click()
    h.wait_for_new_images(page, before, h.PAGE_TIMEOUT_MS)
    return h.rendered_at(page, h.PAGE_TIMEOUT_MS) - start


def synth_click(page: Any, server: h.StreamlitServer, n: int, seed: int) -> float:
    """Written cells per second from a click on "Generate" until the result has rendered."""
    return 2 * n / page_export(page, server, n, seed)[1]


def measure(trees: dict[str, Path], rounds: int, n: int) -> dict[str, dict[str, list[float]]]:
    """Per tree, grid seconds and export cells/s, rounds interleaved between the servers.

    A first, untimed click on each page loads the models, as a first visitor would.
    """
    from playwright.sync_api import sync_playwright

    out: dict[str, dict[str, list[float]]] = {k: {"grid": [], "synth": []} for k in trees}
    servers = {name: server_for(tree) for name, tree in trees.items()}
    with sync_playwright() as playwright, h.chromium(playwright) as browser:
        for server in servers.values():
            server.__enter__()
        try:
            pages = {name: browser.new_page(viewport=h.VIEWPORT) for name in servers}
            for name, server in servers.items():
                open_sample(pages[name], server)
                sample_click(pages[name])
                synth_click(pages[name], server, 1, 0)
            for i in range(rounds):
                for name, server in servers.items():
                    open_sample(pages[name], server)
                    out[name]["grid"].append(sample_click(pages[name]))
                    out[name]["synth"].append(synth_click(pages[name], server, n, i + 1))
                    print(
                        f"round {i + 1} {name}: grid {out[name]['grid'][-1]:.2f} s, "
                        f"synthetic {out[name]['synth'][-1]:.1f} cells/s",
                        flush=True,
                    )
        finally:
            for server in servers.values():
                server.__exit__(None, None, None)
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the before/after table of the two clicks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE_COMMIT, help="commit of the old path")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--synth-cells", type=int, default=SYNTH_CELLS, help="cells per class")
    args = parser.parse_args(argv)
    if not h.chromium_available():
        print(f"Chromium not found at {h.CHROMIUM_PATH}.", file=sys.stderr)
        return 2
    start_load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="malgan-before-") as tmp:
        trees = {"before": unpack(args.before, Path(tmp)), "after": h.REPO_ROOT}
        figures = measure(trees, args.rounds, args.synth_cells)
    grid = {k: statistics.median(v["grid"]) for k, v in figures.items()}
    synth = {k: statistics.median(v["synth"]) for k, v in figures.items()}
    print(f"\nbefore: {args.before}; after: this working tree; {args.rounds} rounds, medians")
    print("load average (1, 5, 15 min) at start: " + ", ".join(f"{x:.2f}" for x in start_load))
    summary.print_table(
        ["click to result in Chromium", "before", "after", "ratio"],
        [
            [
                f"Sample, {GRID_CELLS}-cell grid (s)",
                grid["before"],
                grid["after"],
                grid["before"] / grid["after"],
            ],
            [
                f"Synthetic dataset, {2 * args.synth_cells} cells (cells/s)",
                synth["before"],
                synth["after"],
                synth["after"] / synth["before"],
            ],
        ],
    )
    print("load average at end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
