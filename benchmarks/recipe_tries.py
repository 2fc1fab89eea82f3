"""Recipe tries for the conditional GAN: each change against the committed recipe, at equal
iterations and width, judged on the validation patients.

Every try is the ``cpu`` profile's conditional GAN (its width, batch, guide and schedule), as it
was before the tries (``BASELINE``), with one change, trained for the same number of iterations
from the same seed, each in its own process. A try's figures are its last probe: recovery by
our classifier (which the generator never sees), the Fréchet distance, and k-NN recall and
coverage (k = 5, in our classifier's features) of ``--probe-cells`` generated cells per class
against the validation patients' cells. Runs resume where they stopped, so the command can be
run again to finish or extend.

Usage:
    python -m benchmarks.recipe_tries --data DIR --guide RUN/model.pt \\
        --classifier exported/classifier.onnx --out DIR [--iterations N] [--jobs J] [--only A,B]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from malgan.data import CLASSES
from train import config, profiles, release_metrics


@dataclass(frozen=True)
class Try:
    """One change to the committed recipe."""

    name: str
    change: str
    overrides: dict[str, Any] = field(default_factory=dict)


# The recipe the tries start from: the cpu profile's conditional GAN as it was before them
# (guide weight 0.5, confidence cap 0.5), without the mode-seeking term it took from them.
BASELINE: dict[str, Any] = {"mode_seeking": 0.0}

TRIES = (
    Try("committed", "the recipe before the tries (guide weight 0.5, confidence cap 0.5)"),
    Try("guide_half", "the guide on half of each batch", {"guide_fraction": 0.5}),
    Try("cap_0.3", "a lower confidence cap: 0.3", {"guide_confidence": 0.3}),
    Try("mode_seeking", "a mode-seeking term, weight 1", {"mode_seeking": 1.0}),
    Try("mbstd", "minibatch standard deviation in D, groups of 4", {"minibatch_std": 4}),
    Try("wide_d", "D twice as wide (32 channels)", {"d_ch": 32}),
    Try("late_guide", "guide weight 0.5 falling to 0.1 at the end", {"guide_weight_late": 0.1}),
    Try("mode_seeking_0.1", "a mode-seeking term, weight 0.1", {"mode_seeking": 0.1}),
    Try(
        "mbstd_ms_0.1",
        "minibatch standard deviation (4) and mode seeking (0.1)",
        {"minibatch_std": 4, "mode_seeking": 0.1},
    ),
    Try(
        "mbstd_guide_half",
        "minibatch standard deviation (4) and the guide on half of each batch",
        {"minibatch_std": 4, "guide_fraction": 0.5},
    ),
)


def try_config(item: Try, args: argparse.Namespace, out: Path) -> Any:
    """The try's config: the cpu profile's conditional GAN, as ``BASELINE`` sets it, with the
    try's change."""
    n = args.iterations
    return config.replace(
        profiles.CPU.cgan,
        data=args.data,
        out=str(out / item.name),
        cache_dir=args.cache_dir,
        seed=args.seed,
        iterations=n,
        minutes=0.0,
        log_every=50,
        probe_every=n,
        probe_cells=args.probe_cells,
        snapshot_every=n,
        checkpoint_every=min(250, n),
        classifier=args.classifier,
        guide=args.guide,
        **{**BASELINE, **item.overrides},
    )


def run_try(item: Try, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Train (or resume) one try and return its figures."""
    cfg = try_config(item, args, out)
    log = out / f"{item.name}.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    command = [sys.executable, "-m", "train.cgan", *config.config_flags(cfg)]
    with log.open("a") as stream:
        code = subprocess.call(command, stdout=stream, stderr=subprocess.STDOUT, env=env)
    return {"try": item.name, "change": item.change, "exit": code, **figures(Path(cfg.out))}


def figures(run: Path) -> dict[str, Any]:
    """The last probe and the training speed of a finished run (empty when it has none)."""
    records = release_metrics.read_jsonl(run / "log.jsonl")
    if not records:
        return {}
    probes = [r["probe"] for r in records if "probe" in r]
    done = [r for r in records if r.get("event") == "done"]
    out: dict[str, Any] = {"snapshots": str(run / "snapshots")}
    if done:
        out["iterations_per_second"] = done[-1].get("iterations_per_second")
    if probes:
        last = probes[-1]
        out["iteration"] = last["iteration"]
        for label in CLASSES:
            out[label] = {
                "recovery": last.get(label),
                "fd": (last.get("fd") or {}).get(label),
                "recall": (last.get("recall") or {}).get(label),
                "coverage": (last.get("coverage") or {}).get(label),
            }
    return out


def _pair(row: dict[str, Any], key: str, fmt: str) -> str:
    values = [(row.get(label) or {}).get(key) for label in CLASSES]
    return " / ".join("–" if v is None else format(v, fmt) for v in values)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: try, change, it/s, recovery, FD, recall and coverage (Parasitized / Uninfected)."""
    lines = [
        "| try | change | it/s | recovery P / U | FD P / U | recall P / U | coverage P / U |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        speed = row.get("iterations_per_second")
        lines.append(
            f"| {row['try']} | {row['change']} | {'–' if speed is None else f'{speed:.2f}'} "
            f"| {_pair(row, 'recovery', '.1%')} | {_pair(row, 'fd', '.2f')} "
            f"| {_pair(row, 'recall', '.3f')} | {_pair(row, 'coverage', '.3f')} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="NIH-layout folder of cells.")
    parser.add_argument("--guide", required=True, help="The guide classifier's model.pt.")
    parser.add_argument("--classifier", required=True, help="Our classifier (.pt or .onnx).")
    parser.add_argument("--out", required=True, help="Folder of the tries' runs.")
    parser.add_argument("--cache-dir", default="", help="Decoded-image cache folder.")
    parser.add_argument("--iterations", type=int, default=1000, help="Iterations of every try.")
    parser.add_argument("--probe-cells", type=int, default=1000, help="Cells per class judged.")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seed of every try and of the patient split: the classifier must not have trained "
        "on its validation patients (the committed release's classifier used 0).",
    )
    parser.add_argument("--jobs", type=int, default=2, help="Tries trained side by side.")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per try.")
    parser.add_argument("--only", default="", help="Comma-separated try names (default: all).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = [t for t in TRIES if not args.only or t.name in args.only.split(",")]
    print(
        f"{len(chosen)} tries, {args.iterations} iterations each, {args.jobs} side by side on "
        f"{os.cpu_count()} CPU cores ({platform.machine()}), load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda item: run_try(item, args, out), chosen))
    (out / "tries.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
