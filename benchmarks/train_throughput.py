"""Training iterations per second of the report's DCGAN step: the naive loop against the project's.

Run from the repository root::

    python benchmarks/train_throughput.py                                  # drawn fake cells
    python benchmarks/train_throughput.py --data DIR --iterations 300 --repeats 5

Both loops come from ``train.throughput``: the naive loop is a direct port of the Keras code (a
DataLoader over host memory, fp32, ``.item()`` on every loss each step); the project's loop is
``train.seed_gan``'s step with the cells resident on the device and, on CUDA, the whole step
replayed from one CUDA graph. The repeats are interleaved (naive, project, project, naive, ...)
so that drift in the machine's speed falls on both loops alike; the medians and their ratio are
printed, with every repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from malgan.data import CLASSES, IMG_SIZE
from train import accel, throughput
from train.splits import load_splits

ITERATIONS = 300
REPEATS = 3
BATCH = 32
FAKE_CELLS = 256
# Drawn cells: a stained disc on the black NIH background, a dark dot in parasitized ones.
CELL_COLOUR = (214, 140, 150)
PARASITE_COLOUR = (110, 40, 150)
COLOUR_JITTER = 12
CELL_MARGIN = 0.08
PARASITE_RADIUS = 0.12


def draw_cells(n: int, *, parasitized: bool, seed: int) -> np.ndarray:
    """``n`` drawn fake cells, uint8 [n, 64, 64, 3]."""
    rng = np.random.default_rng(seed)
    cells = np.zeros((n, IMG_SIZE, IMG_SIZE, 3), np.uint8)
    margin = CELL_MARGIN * IMG_SIZE
    for i in range(n):
        img = Image.new("RGB", (IMG_SIZE, IMG_SIZE), (0, 0, 0))
        draw = ImageDraw.Draw(img)
        jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3)
        colour = tuple(
            int(np.clip(c + j, 0, 255)) for c, j in zip(CELL_COLOUR, jitter, strict=True)
        )
        draw.ellipse((margin, margin, IMG_SIZE - margin, IMG_SIZE - margin), fill=colour)
        if parasitized:
            cx, cy = rng.uniform(0.35, 0.65, 2) * IMG_SIZE
            r = PARASITE_RADIUS * IMG_SIZE
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=PARASITE_COLOUR)
        cells[i] = np.asarray(img)
    return cells


def load_cells(args: argparse.Namespace) -> tuple[np.ndarray, str]:
    """The training cells of one class, or drawn ones without ``--data``."""
    if not args.data:
        parasitized = args.class_name == CLASSES[0]
        return draw_cells(FAKE_CELLS, parasitized=parasitized, seed=args.seed), "drawn fake cells"
    splits = load_splits(args.data, cache_dir=args.cache_dir, seed=args.seed)
    cells = splits.train.images[splits.train.labels == CLASSES.index(args.class_name)]
    return cells, f"{len(cells)} {args.class_name} training cells of {args.data}"


def measure(
    cells: np.ndarray,
    *,
    iterations: int,
    repeats: int,
    batch: int,
    device: torch.device,
    bf16: bool,
    warmup: int,
) -> dict[str, list[float]]:
    """Iterations per second of each loop, repeats interleaved in alternating order."""
    loops = {
        "naive": lambda: throughput.naive_loop(cells, iterations, batch, device, warmup=warmup),
        "project": lambda: throughput.project_loop(
            cells, iterations, batch, device, bf16=False, warmup=warmup
        ),
    }
    if bf16:
        loops["project_bf16"] = lambda: throughput.project_loop(
            cells, iterations, batch, device, bf16=True, warmup=warmup
        )
    results: dict[str, list[float]] = {name: [] for name in loops}
    names = list(loops)
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            results[name].append(loops[name]())
            print(f"repeat {repeat + 1}/{repeats} {name}: {results[name][-1]:.3f} it/s", flush=True)
    return results


def summarize(results: dict[str, list[float]]) -> dict[str, Any]:
    """Medians of each loop and their ratio to the naive loop's median."""
    medians = {name: statistics.median(values) for name, values in results.items()}
    ratios = {
        f"{name}_over_naive": medians[name] / medians["naive"]
        for name in medians
        if name != "naive"
    }
    return {"median_its": medians, "ratios": ratios, "repeats": results}


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run both loops side by side and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="", help="NIH folder; drawn fake cells when omitted")
    parser.add_argument("--cache-dir", default="")
    parser.add_argument("--class-name", default=CLASSES[0], choices=CLASSES)
    parser.add_argument("--iterations", type=int, default=ITERATIONS, help="timed per repeat")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument(
        "--warmup", type=int, default=throughput.WARMUP, help="untimed steps before each repeat"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--iterations and --repeats must be at least 1, --warmup at least 0")

    cells, source = load_cells(args)
    if len(cells) < args.batch:
        parser.error(f"{len(cells)} cells are fewer than one batch of {args.batch}")
    device = accel.pick_device()
    # bf16 autocast is CUDA-only in the project's loop; on a CPU it would time fp32 again.
    bf16 = device.type == "cuda"
    print(
        f"{source}; device {device}, batch {args.batch}, {args.iterations} timed iterations "
        f"after {args.warmup} warm-up, {args.repeats} interleaved repeats, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads",
        flush=True,
    )
    results = measure(
        cells,
        iterations=args.iterations,
        repeats=args.repeats,
        batch=args.batch,
        device=device,
        bf16=bf16,
        warmup=args.warmup,
    )
    summary = summarize(results)
    for name, value in summary["median_its"].items():
        print(f"median {name}: {value:.3f} it/s")
    for name, value in summary["ratios"].items():
        print(f"{name}: {value:.2f}x")
    if args.json:
        info = {
            "device": str(device),
            "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "batch": args.batch,
            "iterations": args.iterations,
            "warmup": args.warmup,
            "source": source,
        }
        print(json.dumps({**info, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
