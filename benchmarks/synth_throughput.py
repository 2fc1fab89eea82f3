"""Throughput of the synthetic-dataset export (images per second) on this machine's CPU."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from malgan import artifacts
from malgan.errors import ModelError, SynthError
from malgan.synth import cli, writer

DEFAULT_N = 5000
# Repeats by default: a few for small sets, one for sets that take minutes.
SMALL_N = 1000
SMALL_REPEATS = 3
LARGE_REPEATS = 1


def main(argv: list[str] | None = None) -> int:
    """Export N cells per class into temporary folders and print the median throughput."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=cli.DEFAULT_MODEL)
    parser.add_argument("--n-per-class", type=int, default=DEFAULT_N)
    parser.add_argument("--repeats", type=int, default=None, help="default: 3 below 1000, else 1")
    parser.add_argument("--batch", type=int, default=writer.DEFAULT_BATCH)
    parser.add_argument("--seed", type=int, default=writer.DEFAULT_SEED)
    parser.add_argument("--exported", default=None)
    parser.add_argument(
        "--class-filter",
        choices=("auto", "on", "off"),
        default="auto",
        help="auto: off for the smoke-test placeholder models (their classifier assigns every "
        "generated cell to one class), on otherwise",
    )
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = parser.parse_args(argv)

    exported = Path(args.exported) if args.exported else artifacts.exported_dir()
    try:
        generator, classifier, reference = artifacts.load_models(exported, args.model)
        smoke = bool(artifacts.load_index(exported).get("smoke"))
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return cli.EXIT_BAD_INPUT
    class_filter = {"on": True, "off": False, "auto": not smoke}[args.class_filter]
    repeats = args.repeats or (SMALL_REPEATS if args.n_per_class < SMALL_N else LARGE_REPEATS)

    print(
        f"{generator.display_name}: {args.n_per_class} cells per class, batch {args.batch}, "
        f"{repeats} run(s), class filter {'on' if class_filter else 'off'}"
        + (" (smoke-test models: rejection counts are not meaningful)" if smoke else "")
    )
    rates, seconds, summaries = [], [], []
    for run in range(repeats):
        with tempfile.TemporaryDirectory(prefix="malgan-bench-") as tmp:
            try:
                config = writer.SynthConfig(
                    n_per_class=args.n_per_class,
                    seed=args.seed,
                    class_filter=class_filter,
                    batch=args.batch,
                )
                summary = writer.export_dataset(
                    Path(tmp) / "dataset",
                    config,
                    generator=generator,
                    classifier=classifier,
                    reference=reference,
                )
            except SynthError as err:
                print(f"error: {err}", file=sys.stderr)
                return cli.EXIT_FILTERS_EXHAUSTED
        rates.append(summary.images_per_second)
        seconds.append(summary.seconds)
        summaries.append(summary)
        print(f"  run {run + 1}: {summary.seconds:.1f} s, {summary.images_per_second:.1f} images/s")

    last = summaries[-1]
    print(
        f"median: {statistics.median(rates):.1f} images/s "
        f"({statistics.median(seconds):.1f} s for {last.total_accepted} cells)"
    )
    for label in last.accepted:
        counts = ", ".join(f"{k} {v}" for k, v in last.rejected[label].items())
        print(f"  {label}: {last.attempts[label]} tried, rejected: {counts}")
    if args.json:
        print(
            json.dumps(
                {
                    "model": last.model,
                    "n_per_class": args.n_per_class,
                    "batch": args.batch,
                    "repeats": repeats,
                    "median_images_per_second": statistics.median(rates),
                    "images_per_second": rates,
                    "rejected": last.rejected,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
