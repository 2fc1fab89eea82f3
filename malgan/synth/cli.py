"""The ``malgan-synth`` command line: write a synthetic NIH-layout dataset from exported models."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from malgan import artifacts, tables
from malgan.data import CLASSES
from malgan.errors import ModelError, SynthError
from malgan.onnx_files import memory_arena
from malgan.runtime import PRECISIONS, VIEW_SETS
from malgan.synth import datasheet
from malgan.synth.files import DEFAULT_PREFIX, check_target
from malgan.synth.filters import FiltersExhaustedError
from malgan.synth.writer import (
    DEFAULT_BATCH,
    DEFAULT_MAX_ATTEMPTS_FACTOR,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_RECHECK_MARGIN,
    DEFAULT_SEED,
    DEFAULT_VIEWS,
    SynthConfig,
    export_dataset,
)

DEFAULT_MODEL = "cgan"
DEFAULT_PRECISION = artifacts.GENERATOR_PRECISION
DEFAULT_CLASSIFIER_PRECISION = artifacts.CLASSIFIER_PRECISION
EXIT_OK = 0
EXIT_FILTERS_EXHAUSTED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _add_speed_options(parser: argparse.ArgumentParser) -> None:
    """The options that trade time for exactness: batch, views and precisions."""
    group = parser.add_argument_group(
        "speed", "the defaults are the fastest settings that pass parity with fp32 over 8 views"
    )
    group.add_argument(
        "--batch",
        type=_whole_number,
        default=DEFAULT_BATCH,
        help="cells per ONNX Runtime call (default %(default)s)",
    )
    group.add_argument(
        "--views",
        type=int,
        choices=sorted(VIEW_SETS),
        default=DEFAULT_VIEWS,
        help="dihedral views the class filter averages (default %(default)s; the classifier "
        "was trained to average 8)",
    )
    group.add_argument(
        "--recheck-margin",
        type=_number,
        default=DEFAULT_RECHECK_MARGIN,
        help="classify a cell again over all 8 views when its probability is within this of "
        "the class filter's threshold (default %(default)s; 0 never)",
    )
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULT_PRECISION,
        help="the generator's precision: int8 (default), its int8 copy where python -m "
        "train.quantize made one that passed parity, else the exported file; fp32, the "
        "exported file",
    )
    group.add_argument(
        "--classifier-precision",
        choices=PRECISIONS,
        default=DEFAULT_CLASSIFIER_PRECISION,
        help="the classifier's precision (default %(default)s; its int8 copy moves the "
        "privacy filter's distances)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``malgan-synth`` (also ``python -m malgan.synth.cli``)."""
    parser = argparse.ArgumentParser(
        prog="malgan-synth",
        description="Write a synthetic dataset in NIH's layout (DIR/Parasitized/*.png, "
        "DIR/Uninfected/*.png, DIR/manifest.csv, DIR/summary.json) from an exported generator, "
        "keeping only cells the classifier assigns to their class and that are not too close "
        "to a training cell.",
        epilog="Exit codes: 0 done, 1 the filters rejected too many cells, 2 bad input.",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="generator name in the index")
    parser.add_argument("--n-per-class", type=_whole_number, required=True, help="cells per class")
    parser.add_argument("--out", required=True, help="dataset folder (missing or empty)")
    parser.add_argument("--seed", type=_whole_number, default=DEFAULT_SEED)
    parser.add_argument(
        "--truncation", type=_number, default=None, help="latent truncation threshold (none)"
    )
    parser.add_argument(
        "--min-confidence",
        type=_number,
        default=DEFAULT_MIN_CONFIDENCE,
        help="smallest accepted P(intended class) (default %(default)s)",
    )
    parser.add_argument(
        "--no-class-filter",
        action="store_true",
        help="keep cells whatever the classifier says (p_class is still recorded)",
    )
    privacy = parser.add_mutually_exclusive_group()
    privacy.add_argument(
        "--privacy-threshold",
        type=_number,
        default=None,
        help="reject cells whose nearest training code is closer (default: the reference's "
        "1st percentile of held-out real-to-train distances)",
    )
    privacy.add_argument("--no-privacy-filter", action="store_true")
    parser.add_argument(
        "--max-attempts-factor",
        type=_whole_number,
        default=DEFAULT_MAX_ATTEMPTS_FACTOR,
        help="give up after this many attempts per requested cell (default %(default)s)",
    )
    parser.add_argument("--exported", default=None, help="folder of exported models")
    _add_speed_options(parser)
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="leading marker of file names")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a previous export in --out"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """The export settings of parsed arguments (raises SynthError for a value out of range)."""
    return SynthConfig(
        n_per_class=args.n_per_class,
        seed=args.seed,
        truncation=args.truncation,
        min_confidence=args.min_confidence,
        class_filter=not args.no_class_filter,
        privacy_filter=not args.no_privacy_filter,
        privacy_threshold=args.privacy_threshold,
        max_attempts_factor=args.max_attempts_factor,
        batch=args.batch,
        prefix=args.prefix,
        views=args.views,
        recheck_margin=args.recheck_margin,
    )


def remedy(err: FiltersExhaustedError, config: SynthConfig) -> str:
    """What to change on the command line after the filters rejected too many cells."""
    flags = {
        "min_confidence": f"lower --min-confidence (now {config.min_confidence:g})",
        "class_filter": "add --no-class-filter",
        "privacy_filter": "add --no-privacy-filter (or lower --privacy-threshold)",
        "max_attempts_factor": f"raise --max-attempts-factor (now {config.max_attempts_factor})",
    }
    steps = [flags[setting] for setting in err.settings_to_loosen]
    return f"To let more through, {tables.alternatives(steps)}."


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    exported = Path(args.exported) if args.exported else artifacts.exported_dir()
    try:
        config = config_from_args(args)
        check_target(args.out, overwrite=args.overwrite)
        with memory_arena():
            generator, classifier, reference = artifacts.load_models(
                exported,
                args.model,
                need_reference=config.privacy_filter,
                precision=args.precision,
                classifier_precision=args.classifier_precision,
            )
        total = config.n_per_class * len(CLASSES)
        with tqdm(total=total, unit="cell", desc="Exporting", disable=args.quiet) as bar:

            def progress(done: int, _total: int) -> None:
                bar.update(done - bar.n)

            summary = export_dataset(
                args.out,
                config,
                generator=generator,
                classifier=classifier,
                reference=reference,
                overwrite=args.overwrite,
                progress=progress,
            )
    except FiltersExhaustedError as err:
        print(f"error: {err} {remedy(err, config)}", file=sys.stderr)
        return EXIT_FILTERS_EXHAUSTED
    except (SynthError, ModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        print(f"error: cannot write the dataset: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("Interrupted; nothing was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    datasheet.write_datasheet(args.out, summary.to_dict(), exported, cell_size=generator.img_size)
    print(summary.describe())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
