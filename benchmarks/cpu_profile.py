"""Per-stage wall time of a training profile: run it, or read a finished run's stage log.

    python -m benchmarks.cpu_profile --runs runs                 # report a finished run
    python -m benchmarks.cpu_profile --run --data DIR --runs R --out O [--profile cpu]

With ``--run`` the pipeline runs first, as a person runs it (``python -m train.pipeline``);
either way the table comes from the run's ``stages.jsonl``, so it also reports a run that was
interrupted and resumed: the seconds of every finished attempt count, and a GAN stage counts at
least the training seconds that its checkpoints carried over every attempt. GAN stages add their
iterations and iterations per second from the final checkpoints, and the total is set against
the profile's budget (90 minutes for ``cpu``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from train import models, release_metrics

BUDGET_MINUTES = {"cpu": 90.0}


def gan_iterations(runs: Path, stage: str) -> str:
    """``iterations @ it/s`` of a GAN stage's runs, or empty for other stages."""
    if stage not in models.GENERATORS:
        return ""
    parts = []
    for run, state in release_metrics.loop_states(runs, stage).items():
        its = state["iteration"] / max(state["train_seconds"], 1e-9)
        parts.append(f"{run}: {state['iteration']:,} it @ {its:.2f} it/s")
    return "; ".join(parts)


def report(runs: Path) -> float:
    """Print the per-stage table of a run; return its total minutes."""
    record = release_metrics.run_profile(runs)
    seconds = record["stage_seconds"]
    if not seconds:
        raise SystemExit(f"No finished stage in {runs / models.STAGES_LOG}.")
    total = sum(seconds.values())
    print(f"profile: {record.get('profile', '?')}   command: {record.get('command', '?')}")
    print(f"{'stage':<16}{'seconds':>10}{'minutes':>10}{'share':>8}  iterations")
    for stage, value in seconds.items():
        extra = gan_iterations(runs, stage)
        print(f"{stage:<16}{value:>10.1f}{value / 60:>10.2f}{value / total:>8.1%}  {extra}")
    minutes = total / 60
    budget = BUDGET_MINUTES.get(str(record.get("profile")))
    verdict = ""
    if budget is not None:
        verdict = f" (budget {budget:.0f} min: {'within' if minutes <= budget else 'OVER'})"
    print(f"{'total':<16}{total:>10.1f}{minutes:>10.2f}{verdict}")
    return minutes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="The pipeline's runs folder.")
    parser.add_argument("--run", action="store_true", help="Run the pipeline first.")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--data", default="", help="Folder in the NIH layout (with --run).")
    parser.add_argument("--out", default="", help="Export folder (with --run).")
    args = parser.parse_args()
    if args.run:
        if not args.data or not args.out:
            parser.error("--run needs --data and --out")
        cmd = [sys.executable, "-m", "train.pipeline", "--profile", args.profile]
        cmd += ["--data", args.data, "--out", args.out, "--runs", str(args.runs)]
        subprocess.run(cmd, check=True)
    report(args.runs)


if __name__ == "__main__":
    main()
