"""GAN inversion of real held-out cells on the CPU, against the candidate pool alone.

Run from the repository root::

    python -m benchmarks.inversion
    python -m benchmarks.inversion --n 10 --model dcgan --json inversion.json

Cells come from the patient-level test split of ``load_dataset`` (seed 0, as in training), half
of each class, picked with ``--seed``. Each cell is inverted twice, in alternating order so that
drift in the machine's speed falls on both: by the full search with the page's settings, and by
the baseline that scores the initial candidate pool and stops (no refinement). For each, the
figures are the median time per inversion, the median SSIM of the reconstruction against the
original, the median loss, and the share of cells whose classifier verdict (argmax) is the same
on the original and on the reconstruction (with a Wilson 95% interval). The full search's time
past its budget is reported against ``OVERSHOOT_SLACK_S``, the slack that a test used to assert.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.summary import machine, print_table
from malgan import artifacts, data, invert, metrics, runtime
from malgan.errors import DataError, ModelError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "cell_images_64"
DEFAULT_EXPORTED = REPO_ROOT / "exported"
DEFAULT_CELLS = 20
# The split the models were trained with (train/splits.py: load_dataset(seed=0)).
SPLIT_SEED = 0
SEARCH = "full search"
POOL_ONLY = "pool only"
# The search may pass its time budget by about one batch of the pool: at most this much.
OVERSHOOT_SLACK_S = 1.5


def pick_cells(cells: data.CellSet, n: int, seed: int) -> data.CellSet:
    """``n`` cells of a split, half of each class (the first class takes an odd one)."""
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for label in range(len(data.CLASSES)):
        want = (n + 1 - label) // len(data.CLASSES)
        idx = np.flatnonzero(cells.labels == label)
        keep += rng.permutation(idx)[:want].tolist()
    return cells.subset(np.asarray(sorted(keep), dtype=np.int64))


def summarise(rows: list[dict[str, float]]) -> dict[str, Any]:
    """Medians of one method's per-cell figures, and its verdict agreement."""
    agree = sum(int(row["agree"]) for row in rows)
    low, high = metrics.wilson_interval(agree, len(rows))
    return {
        "n": len(rows),
        **{f"median_{key}": float(np.median([row[key] for row in rows])) for key in rows[0]},
        "verdict_agreement": agree / len(rows),
        "verdict_agreement_ci": [low, high],
    }


def run(
    cells: data.CellSet,
    generator: runtime.CellGenerator,
    classifier: runtime.Classifier,
    *,
    time_budget_s: float,
    pool_size: int,
    seed: int,
) -> dict[str, Any]:
    """Invert every cell by both methods and summarise each."""
    methods = {
        SEARCH: {"time_budget_s": time_budget_s, "pool_size": pool_size},
        POOL_ONLY: {"time_budget_s": None, "max_evals": pool_size, "pool_size": pool_size},
    }
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    for i, (image, label) in enumerate(zip(cells.images, cells.labels, strict=True)):
        order = list(methods) if i % 2 == 0 else list(methods)[::-1]
        for name in order:
            start = time.perf_counter()
            result = invert.invert(image, generator, classifier, seed=seed, **methods[name])
            seconds = time.perf_counter() - start
            proba = classifier.predict_proba(np.stack([image, result.reconstruction]))
            same = bool(np.argmax(proba[0]) == np.argmax(proba[1]))
            row = {"seconds": seconds, "ssim": result.ssim, "loss": result.loss}
            rows[name].append({**row, "evals": result.evals, "agree": same})
            print(
                f"  {i + 1:>3}/{len(cells)} {name:<11} {data.CLASSES[label]:<11} found "
                f"{result.label:<11} SSIM {result.ssim:.3f}  loss {result.loss:.4f}  "
                f"{result.evals:>4} cells  {seconds:.1f} s  verdicts "
                f"{'agree' if same else 'differ'} (P(par) {proba[0, 0]:.2f} -> {proba[1, 0]:.2f})",
                flush=True,
            )
    overshoot = [row["seconds"] - time_budget_s for row in rows[SEARCH]]
    return {
        **{name: summarise(method_rows) for name, method_rows in rows.items()},
        "overshoot_s": {"median": float(np.median(overshoot)), "max": max(overshoot)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="NIH-layout folder of cells.")
    parser.add_argument("--exported", default=str(DEFAULT_EXPORTED), help="Models folder.")
    parser.add_argument("--model", default="cgan", help="Generator name in the index.")
    parser.add_argument("--n", type=int, default=DEFAULT_CELLS, help="Cells to invert.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the cell pick and search.")
    parser.add_argument(
        "--time-budget", type=float, default=invert.DEFAULT_TIME_BUDGET_S, help="Seconds per cell."
    )
    parser.add_argument(
        "--pool-size", type=int, default=invert.DEFAULT_POOL_SIZE, help="Candidates in the pool."
    )
    parser.add_argument("--json", default="", help="Also write the summary to this file.")
    args = parser.parse_args(argv)

    if not Path(args.data).is_dir():
        print(f"Skipped: the real cells are not at {args.data} (pass --data).", file=sys.stderr)
        return 0
    try:
        generator = artifacts.load_generator(args.exported, args.model)
        classifier = artifacts.load_classifier(args.exported)
        smoke = bool(artifacts.load_index(args.exported).get("smoke"))
        loaded = data.load_dataset(args.data, seed=SPLIT_SEED, progress=False)
    except (ModelError, DataError) as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2
    cells = pick_cells(loaded.split("test"), args.n, args.seed)
    print(
        f"Inverting {len(cells)} held-out test cells with {generator.display_name}, "
        f"{args.time_budget:g} s each, pool of {args.pool_size}, on {machine()}."
    )
    budgets = {"time_budget_s": args.time_budget, "pool_size": args.pool_size}
    summary = run(cells, generator, classifier, seed=args.seed, **budgets)
    summary.update(model=args.model, time_budget_s=args.time_budget, smoke_models=smoke)
    print()
    print_table(
        ("method", "n", "median s", "median SSIM", "median loss", "median cells", "verdicts agree"),
        [
            (
                name,
                s["n"],
                s["median_seconds"],
                f"{s['median_ssim']:.3f}",
                f"{s['median_loss']:.4f}",
                f"{s['median_evals']:.0f}",
                f"{s['verdict_agreement']:.0%} ({s['verdict_agreement_ci'][0]:.0%}–"
                f"{s['verdict_agreement_ci'][1]:.0%})",
            )
            for name, s in ((m, summary[m]) for m in (SEARCH, POOL_ONLY))
        ],
    )
    search, pool = summary[SEARCH], summary[POOL_ONLY]
    over = summary["overshoot_s"]
    verdict = "within" if over["max"] <= OVERSHOOT_SLACK_S else "over"
    print(
        f"\nFull search / pool only: {search['median_seconds'] / pool['median_seconds']:.1f}x "
        f"the time, median SSIM {search['median_ssim'] - pool['median_ssim']:+.3f}"
    )
    print(
        f"Time past the {args.time_budget:g} s budget: median {over['median']:+.2f} s, "
        f"max {over['max']:+.2f} s, against a slack of {OVERSHOOT_SLACK_S} s: {verdict}"
    )
    if smoke:
        print("These are smoke-test placeholder models: SSIM and agreement are not meaningful.")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
