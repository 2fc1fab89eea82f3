"""GAN inversion of real held-out cells on the CPU: time, SSIM and classifier agreement.

Run from the repository root::

    python -m benchmarks.inversion
    python -m benchmarks.inversion --n 10 --model dcgan --json inversion.json

Cells come from the patient-level test split of ``load_dataset`` (seed 0, as in training), half
of each class, picked with ``--seed``. Each cell is inverted with the page's settings; the
figures are the median time per inversion, the median SSIM of the reconstruction against the
original, and the share of cells whose classifier verdict (argmax) is the same on the original
and on the reconstruction (with a Wilson 95% interval).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from malgan import data, invert, metrics, runtime

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "cell_images_64"
DEFAULT_EXPORTED = REPO_ROOT / "exported"
DEFAULT_CELLS = 20
# The split the models were trained with (train/common.py: load_dataset(seed=0)).
SPLIT_SEED = 0


def pick_cells(cells: data.CellSet, n: int, seed: int) -> data.CellSet:
    """``n`` cells of a split, half of each class (the first class takes an odd one)."""
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for label in range(len(data.CLASSES)):
        want = (n + 1 - label) // len(data.CLASSES)
        idx = np.flatnonzero(cells.labels == label)
        keep += rng.permutation(idx)[:want].tolist()
    return cells.subset(np.asarray(sorted(keep), dtype=np.int64))


def run(
    cells: data.CellSet,
    generator: runtime.Generator | runtime.GeneratorSet,
    classifier: runtime.Classifier,
    *,
    time_budget_s: float,
    seed: int,
) -> dict[str, Any]:
    """Invert every cell and summarise."""
    seconds, ssims, losses, agree, evals = [], [], [], [], []
    for i, (image, label) in enumerate(zip(cells.images, cells.labels, strict=True)):
        start = time.perf_counter()
        result = invert.invert(image, generator, classifier, seed=seed, time_budget_s=time_budget_s)
        seconds.append(time.perf_counter() - start)
        proba = classifier.predict_proba(np.stack([image, result.reconstruction]))
        same = int(np.argmax(proba[0]) == np.argmax(proba[1]))
        ssims.append(result.ssim)
        losses.append(result.loss)
        agree.append(same)
        evals.append(result.evals)
        print(
            f"  {i + 1:>3}/{len(cells)} {data.CLASSES[label]:<11} found {result.label:<11} "
            f"SSIM {result.ssim:.3f}  loss {result.loss:.4f}  {result.evals:>4} cells  "
            f"{seconds[-1]:.1f} s  verdicts {'agree' if same else 'differ'} "
            f"(P(par) {proba[0, 0]:.2f} -> {proba[1, 0]:.2f})",
            flush=True,
        )
    low, high = metrics.wilson_interval(sum(agree), len(agree))
    return {
        "n": len(cells),
        "median_seconds": float(np.median(seconds)),
        "median_ssim": float(np.median(ssims)),
        "median_loss": float(np.median(losses)),
        "median_evals": float(np.median(evals)),
        "verdict_agreement": sum(agree) / len(agree),
        "verdict_agreement_ci": [low, high],
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
    parser.add_argument("--json", default="", help="Also write the summary to this file.")
    args = parser.parse_args(argv)

    if not Path(args.data).is_dir():
        print(f"Skipped: the real cells are not at {args.data} (pass --data).", file=sys.stderr)
        return 0
    try:
        generator = runtime.load_generator(args.exported, args.model)
        classifier = runtime.load_classifier(args.exported)
        smoke = bool(runtime.load_index(args.exported).get("smoke"))
        loaded = data.load_dataset(args.data, seed=SPLIT_SEED, progress=False)
    except (runtime.ModelError, data.DataError) as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2
    cells = pick_cells(loaded.split("test"), args.n, args.seed)
    print(
        f"Inverting {len(cells)} held-out test cells with {generator.display_name}, "
        f"{args.time_budget:g} s each, on {os.cpu_count()} CPU cores ({platform.processor()})."
    )
    summary = run(cells, generator, classifier, time_budget_s=args.time_budget, seed=args.seed)
    summary.update(model=args.model, time_budget_s=args.time_budget, smoke_models=smoke)
    low, high = summary["verdict_agreement_ci"]
    print(
        f"\nMedian time per inversion {summary['median_seconds']:.2f} s · median SSIM "
        f"{summary['median_ssim']:.3f} · verdict agreement {summary['verdict_agreement']:.0%} "
        f"(95% CI {low:.0%}–{high:.0%}, n={summary['n']})"
    )
    if smoke:
        print("These are smoke-test placeholder models: SSIM and agreement are not meaningful.")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
