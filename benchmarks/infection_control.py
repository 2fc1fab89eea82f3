"""Does the infection control infect? Flip rates, outline kept, hue and area moved, per control.

Run from the repository root::

    python -m benchmarks.infection_control
    python -m benchmarks.infection_control --n 200 --real-n 20 --json infection.json

For each generator and each of its controls (``malgan.infection.CONTROLS``: the conditional
GAN's class input, its fitted latent direction, both; the DCGANs' direction), ``--n`` random
cells per class (``latent.sample_z(seed)``) are pushed to the control's end: Uninfected cells to
``AMOUNT_MAX``, Parasitized cells to ``AMOUNT_MIN``. Our classifier judges start and end. The
figures per push: the share of end cells given the other class (the targets: at least
``TARGET_FLIP``), the SSIM of the start and end cell masks (target: a mean of at least
``TARGET_MASK_SSIM``), and the median shift of mean stain hue (degrees) and cell area (points of
the image). The reference beside them: the same hue and area of real held-out cells, Parasitized
minus Uninfected.

Then the page "Edit a real cell" does the same on ``--real-n`` held-out real cells per class
(the test patients of ``load_dataset(seed=0)``, as in training): each is inverted with a fixed
evaluation budget (deterministic), then pushed with the generator's default control from its
reconstruction.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.summary import machine, print_table
from malgan import artifacts, data, infection, invert, latent, morphology, runtime
from malgan.errors import DataError, ModelError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "cell_images_64"
DEFAULT_EXPORTED = REPO_ROOT / "exported"
DEFAULT_N = 200
DEFAULT_REAL_N = 20
# The split the models were trained with (train/common.py: load_dataset(seed=0)).
SPLIT_SEED = 0
# Inversion of the real cells: an evaluation budget, not a clock, so the result is repeatable.
REAL_MAX_EVALS = 1200
TARGET_FLIP = 0.9
TARGET_MASK_SSIM = infection.OUTLINE_KEPT_SSIM
UNINFECTED = "Uninfected"
PARASITIZED = "Parasitized"
# Which end each class is pushed to, and the class it should reach.
PUSHES = {
    UNINFECTED: (infection.AMOUNT_MAX, PARASITIZED),
    PARASITIZED: (infection.AMOUNT_MIN, UNINFECTED),
}
PERCENT = 100.0


def summarise_push(
    start: np.ndarray,
    end: np.ndarray,
    proba_start: np.ndarray,
    proba_end: np.ndarray,
    target: str,
    classes: tuple[str, ...] = data.CLASSES,
) -> dict[str, Any]:
    """``infection.push_effect`` of one push, and whether it ``met`` the targets."""
    effect = infection.push_effect(start, end, proba_start, proba_end, target, classes)
    met = effect["flipped"] >= TARGET_FLIP and effect["mask_ssim_mean"] >= TARGET_MASK_SSIM
    return {**effect, "met": met}


def real_reference(cells: data.CellSet) -> dict[str, float]:
    """Real cells' median hue and area per class, and Parasitized minus Uninfected."""
    out: dict[str, float] = {}
    for label in (UNINFECTED, PARASITIZED):
        images = cells.images[cells.labels == data.CLASSES.index(label)]
        out[f"hue_deg_{label}"] = float(np.nanmedian(morphology.stain_hue(images)))
        out[f"area_points_{label}"] = float(np.median(morphology.cell_area(images)) * PERCENT)
    out["hue_shift_deg"] = float(
        morphology.hue_shift(out[f"hue_deg_{UNINFECTED}"], out[f"hue_deg_{PARASITIZED}"])
    )
    out["area_shift_points"] = out[f"area_points_{PARASITIZED}"] - out[f"area_points_{UNINFECTED}"]
    return out


def generated_pushes(
    generator: runtime.CellGenerator,
    classifier: runtime.Classifier,
    n: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Each control of a generator on ``n`` generated cells per class.

    Returns:
        ``{control: {start class: summarise_push figures}}``.
    """
    controls = infection.CONTROLS if generator.conditional else (infection.DIRECTION,)
    z = latent.sample_z(seed, n, generator.z_dim)
    out: dict[str, dict[str, Any]] = {control: {} for control in controls}
    for label, (amount, target) in PUSHES.items():
        weights = infection.one_hot(generator.classes, label, n)
        start = generator.generate(z, label)
        proba_start = classifier.predict_proba(start)
        for control in controls:
            (end,) = infection.pushed_cells(generator, z, weights, (amount,), control)
            summary = summarise_push(start, end, proba_start, classifier.predict_proba(end), target)
            out[control][label] = summary
            print(f"  {generator.name} {control:<32} {label:<11} -> {_line(summary)}", flush=True)
    return out


def real_pushes(
    cells: data.CellSet,
    generator: runtime.CellGenerator,
    classifier: runtime.Classifier,
    seed: int,
    max_evals: int = REAL_MAX_EVALS,
) -> dict[str, Any]:
    """Invert real cells, then push each reconstruction with the default control."""
    control = infection.default_control(generator)
    starts: dict[str, list[np.ndarray]] = {label: [] for label in PUSHES}
    ends: dict[str, list[np.ndarray]] = {label: [] for label in PUSHES}
    ssims: list[float] = []
    for i, (image, label_index) in enumerate(zip(cells.images, cells.labels, strict=True)):
        label = data.CLASSES[int(label_index)]
        found = invert.invert(
            image, generator, classifier, seed=seed, time_budget_s=None, max_evals=max_evals
        )
        (end,) = infection.pushed_cells(
            generator, found.z[None], found.class_weights[None], (PUSHES[label][0],), control
        )
        starts[label].append(found.reconstruction)
        ends[label].append(end[0])
        ssims.append(found.ssim)
        print(
            f"  real {i + 1:>3}/{len(cells)} {label:<11} found {found.label:<11} "
            f"SSIM {found.ssim:.3f}",
            flush=True,
        )
    out: dict[str, Any] = {
        "control": control,
        "reconstruction_ssim_median": float(np.median(ssims)),
    }
    for label, (_, target) in PUSHES.items():
        start, end = np.stack(starts[label]), np.stack(ends[label])
        summary = summarise_push(
            start, end, classifier.predict_proba(start), classifier.predict_proba(end), target
        )
        out[label] = summary
        print(f"  real {control:<32} {label:<11} -> {_line(summary)}", flush=True)
    return out


def _line(s: dict[str, Any]) -> str:
    return (
        f"{s['flipped']:.1%} flipped (was {s['already']:.1%}), mask SSIM mean "
        f"{s['mask_ssim_mean']:.3f}, hue {s['hue_shift_deg']:+.1f}°, area "
        f"{s['area_shift_points']:+.1f} pts"
    )


def pick_real(cells: data.CellSet, per_class: int, seed: int) -> data.CellSet:
    """``per_class`` cells of each class, picked with ``seed``."""
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for label in range(len(data.CLASSES)):
        idx = np.flatnonzero(cells.labels == label)
        keep += rng.permutation(idx)[:per_class].tolist()
    return cells.subset(np.asarray(sorted(keep), dtype=np.int64))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="NIH-layout folder of cells.")
    parser.add_argument("--exported", default=str(DEFAULT_EXPORTED), help="Models folder.")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="Generated cells per class.")
    parser.add_argument(
        "--real-n", type=int, default=DEFAULT_REAL_N, help="Real held-out cells per class."
    )
    parser.add_argument(
        "--real-evals", type=int, default=REAL_MAX_EVALS, help="Inversion budget per real cell."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the cells and the search.")
    parser.add_argument("--models", default="cgan,dcgan", help="Generators, comma-separated.")
    parser.add_argument("--json", default="", help="Also write the figures to this file.")
    args = parser.parse_args(argv)
    try:
        classifier = artifacts.load_classifier(args.exported)
        generators = [artifacts.load_generator(args.exported, m) for m in args.models.split(",")]
    except ModelError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2
    print(f"Pushing {args.n} cells per class with each control, on {machine()}.")
    summary: dict[str, Any] = {"n": args.n, "seed": args.seed}
    for generator in generators if args.n > 0 else ():
        summary[generator.name] = generated_pushes(generator, classifier, args.n, args.seed)
    if Path(args.data).is_dir() and args.real_n > 0:
        try:
            test = data.load_dataset(args.data, seed=SPLIT_SEED, progress=False).split("test")
        except DataError as err:
            print(f"Error: {err}", file=sys.stderr)
            return 2
        summary["real_reference"] = real_reference(test)
        cells = pick_real(test, args.real_n, args.seed)
        summary["real"] = {
            g.name: real_pushes(cells, g, classifier, args.seed, args.real_evals)
            for g in generators[:1]
        }
    else:
        print(f"Real cells skipped: none at {args.data} (pass --data).", file=sys.stderr)

    rows = []
    for generator in generators if args.n > 0 else ():
        for control, by_class in summary[generator.name].items():
            for label, s in by_class.items():
                rows.append((f"{generator.name} generated", control, label, *_cells(s)))
    for name, real in summary.get("real", {}).items():
        for label in PUSHES:
            rows.append((f"{name} real (inverted)", real["control"], label, *_cells(real[label])))
    print()
    print_table(
        ("cells", "control", "from", "flipped", "mask SSIM", "hue °", "area pts", "targets"),
        rows,
    )
    ref = summary.get("real_reference")
    if ref:
        print(
            "\nReal held-out cells, Parasitized minus Uninfected: hue "
            f"{ref['hue_shift_deg']:+.1f}°, area {ref['area_shift_points']:+.1f} pts"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


def _cells(s: dict[str, Any]) -> tuple[str, ...]:
    return (
        f"{s['flipped']:.1%}",
        f"{s['mask_ssim_mean']:.3f}",
        f"{s['hue_shift_deg']:+.1f}",
        f"{s['area_shift_points']:+.1f}",
        "met" if s["met"] else "missed",
    )


if __name__ == "__main__":
    sys.exit(main())
