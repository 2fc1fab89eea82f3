"""Loading the full cell set from its cache, against a first decode of the same files.

Run from the repository root::

    python -m benchmarks.data_load
    python -m benchmarks.data_load --data DIR --repeats 7 --decode-repeats 2 --json

A decode repeat loads the folder into a fresh temporary cache: every file is read, decoded and
resized, and the cache is written. A cached repeat loads it again from that cache, as training
and the app do on every start after the first. The two kinds are interleaved (decode, cached,
decode, cached, ...; then cached only) so that drift in the machine's speed falls on both, and
the medians, their ratio and every repeat are printed. The cached load used to be held to
``CACHED_BUDGET_S`` by a test; the budget is reported here instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.summary import describe, machine, print_table
from malgan import data
from malgan.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "cell_images_64"
DEFAULT_REPEATS = 5
DEFAULT_DECODE_REPEATS = 1
# The full real set (25,188 cells) should load from its cache within this on a two-core CPU.
CACHED_BUDGET_S = 2.0


def timed_load(root: Path, cache_dir: Path) -> tuple[float, int]:
    """Seconds to load ``root`` with the cache in ``cache_dir``, and the cells loaded."""
    start = time.perf_counter()
    loaded = data.load_dataset(root, cache_dir=cache_dir, progress=False)
    return time.perf_counter() - start, len(loaded.cells)


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, time both kinds of load interleaved and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="NIH-layout folder of cells.")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="Cached loads.")
    parser.add_argument(
        "--decode-repeats", type=int, default=DEFAULT_DECODE_REPEATS, help="Loads from no cache."
    )
    parser.add_argument("--json", action="store_true", help="Also print the result as JSON.")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.decode_repeats < 1:
        parser.error("--repeats and --decode-repeats must be at least 1")
    root = Path(args.data)
    if not root.is_dir():
        print(f"Skipped: the cells are not at {root} (pass --data).", file=sys.stderr)
        return 0

    print(f"Loading {root} on {machine()}.")
    seconds: dict[str, list[float]] = {"first decode": [], "cached load": []}
    cells = 0
    with tempfile.TemporaryDirectory(prefix="malgan-bench-load-") as tmp:
        cache_dir = Path(tmp) / "cache-0"
        try:
            for repeat in range(max(args.repeats, args.decode_repeats)):
                if repeat < args.decode_repeats:
                    cache_dir = Path(tmp) / f"cache-{repeat}"
                    took, cells = timed_load(root, cache_dir)
                    seconds["first decode"].append(took)
                    print(f"  repeat {repeat + 1}: first decode {took:.2f} s", flush=True)
                if repeat < args.repeats:
                    took, cells = timed_load(root, cache_dir)
                    seconds["cached load"].append(took)
                    print(f"  repeat {repeat + 1}: cached load {took:.2f} s", flush=True)
        except DataError as err:
            print(f"Error: {err}", file=sys.stderr)
            return 2

    summary = {name: describe(values) for name, values in seconds.items()}
    print(f"\n{cells} cells")
    print_table(
        ("load", "n", "median s", "min s", "max s", "cells/s"),
        [
            (name, s["n"], s["median"], s["min"], s["max"], round(cells / s["median"]))
            for name, s in summary.items()
        ],
    )
    cached, decode = summary["cached load"]["median"], summary["first decode"]["median"]
    verdict = "within" if cached <= CACHED_BUDGET_S else "over"
    print(f"\nCached load / first decode: {cached / decode:.3f} ({decode / cached:.0f}x faster)")
    print(f"Cached load median {cached:.2f} s against a budget of {CACHED_BUDGET_S} s: {verdict}")
    if args.json:
        report = {"cells": cells, "seconds": seconds, "summary": summary}
        print(json.dumps({**report, "budget_s": CACHED_BUDGET_S}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
