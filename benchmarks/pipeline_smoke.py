"""Wall time of ``python -m train.pipeline --smoke``, stage by stage, beside its start-up cost.

Run from the repository root::

    python -m benchmarks.pipeline_smoke                 # the drawn fake cells of the test
    python -m benchmarks.pipeline_smoke --repeats 5 --data DIR --json

Each repeat runs the whole smoke pipeline in a fresh temporary folder (decode cache included),
as ``tests/test_pipeline_smoke.py`` does, and reads each stage's time from the pipeline's
stage log. The baseline, measured right before each repeat, is a process that only
imports ``train.pipeline`` (Python, torch and the project): the fixed cost that no stage can
remove. The table gives the median, minimum and maximum of every stage over the repeats and
each one's share of the median wall time. The smoke pipeline used to be held to
``SMOKE_BUDGET_S`` by a test; the budget is reported here instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.summary import describe, machine, print_table
from harness.fakes import write_fake_nih_tree
from train.release_metrics import run_profile

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPEATS = 3
# The whole smoke pipeline should run within this on a two-core CPU.
SMOKE_BUDGET_S = 180.0
STARTUP = "start-up (import only)"
WALL = "wall time"


def timed(cmd: list[str]) -> float:
    """Seconds that ``cmd`` takes to run from the repository root; exits on its failure."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    return seconds


def run_once(data: Path, root: Path) -> dict[str, float]:
    """One smoke pipeline under ``root``: each stage's seconds, then the wall time."""
    cmd = [sys.executable, "-m", "train.pipeline", "--data", str(data), "--smoke"]
    cmd += ["--out", str(root / "exported"), "--runs", str(root / "runs")]
    cmd += ["--cache-dir", str(root / "cache")]
    wall = timed(cmd)
    stages = {name: float(s) for name, s in run_profile(root / "runs")["stage_seconds"].items()}
    return {**stages, WALL: wall}


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run the baseline and the pipeline interleaved and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="", help="NIH-layout folder (default: drawn cells).")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--json", action="store_true", help="Also print the result as JSON.")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="malgan-bench-smoke-") as tmp:
        data = Path(args.data) if args.data else write_fake_nih_tree(Path(tmp) / "nih")
        print(f"Smoke pipeline on {data}, {args.repeats} repeat(s), on {machine()}.")
        for repeat in range(args.repeats):
            startup = timed([sys.executable, "-c", "import train.pipeline"])
            runs.append({STARTUP: startup, **run_once(data, Path(tmp) / f"run-{repeat}")})
            print(
                f"  repeat {repeat + 1}: start-up {startup:.1f} s, pipeline {runs[-1][WALL]:.1f} s",
                flush=True,
            )

    names = list(runs[0])
    summary = {name: describe([run[name] for run in runs if name in run]) for name in names}
    wall = summary[WALL]["median"]
    print()
    print_table(
        ("part", "n", "median s", "min s", "max s", "% of wall"),
        [
            (name, s["n"], s["median"], s["min"], s["max"], f"{100 * s['median'] / wall:.0f}")
            for name, s in summary.items()
        ],
    )
    verdict = "within" if wall <= SMOKE_BUDGET_S else "over"
    print(f"\nWall time median {wall:.1f} s against a budget of {SMOKE_BUDGET_S:.0f} s: {verdict}")
    if args.json:
        print(json.dumps({"runs": runs, "summary": summary, "budget_s": SMOKE_BUDGET_S}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
