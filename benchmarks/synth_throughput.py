"""Throughput of the synthetic-dataset export on this machine's CPU, stage by stage, today's path
beside the fast one, and how many classifier views the filter needs.

The old path is the fp32 models as exported (no graph rewrite) over the classifier's 8 dihedral
views, batch 256; the new one is the CLI's defaults (``malgan.synth.cli``): the generator's int8
copy where ``train.quantize`` made one (else its exact sub-pixel rewrite, ``malgan.onnx_rewrite``),
one classifier view with the 8-view recheck of close verdicts, and ONNX Runtime's memory arena.
Each repeat times both, interleaved, so the ratio survives a busy machine; the figures are
medians, and CPU seconds beside wall-clock ones count the work whatever else runs. The view study
compares the kept-or-rejected verdict of every cell with the old path's, for each view count and
for the recheck, and prints the fewest views that agree on at least 99.5% of cells.

Usage: python -m benchmarks.synth_throughput --n-per-class 250 --repeats 3 [--sweep] [--int8]
[--margins 0.05 0.1 0.2]
(--int8 also studies the classifier's int8 copy, where ``python -m train.quantize`` made one)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from benchmarks import summary
from malgan import artifacts, latent, metrics
from malgan.data import CLASSES
from malgan.errors import ModelError, SynthError
from malgan.onnx_files import memory_arena
from malgan.runtime import (
    FP32,
    INT8,
    VIEW_SETS,
    CellGenerator,
    Classifier,
    Generator,
    GeneratorSet,
)
from malgan.synth import cli, writer
from malgan.synth.files import write_pngs
from malgan.synth.filters import ACCEPTED, REASONS, rejection_reasons

OLD_VIEWS = 8
OLD_BATCH = 256
MIN_AGREEMENT = 0.995
STAGE_CELLS = 256
GRID_CELLS = 16
GRID_REPEATS = 15
SWEEP_BATCHES = (16, 64, 256)
SWEEP_THREADS = (1, 2)
SWEEP_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
CPU_FLAGS = ("avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def machine_lines() -> list[str]:
    """The machine, its load and the CPU features that low precision uses."""
    flags = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        summary.machine() + f", ONNX Runtime {ort.__version__}",
        f"load average (1, 5, 15 min): {load}",
        "CPU features: " + ", ".join(f for f in CPU_FLAGS if f in flags),
    ]


def exported_graph(gen: CellGenerator) -> CellGenerator:
    """The same generator files loaded without the sub-pixel rewrite (the graph as exported)."""
    if isinstance(gen, GeneratorSet):
        members = {label: Generator.load(m.path, rewrite=False) for label, m in gen.members.items()}
        return GeneratorSet(members=members, name=gen.name, display_name=gen.display_name)
    return Generator.load(gen.path, rewrite=False) if isinstance(gen, Generator) else gen


def graph_of(gen: CellGenerator) -> str:
    """``exported`` or ``sub-pixel``: the graph a generator (or each member of a set) runs."""
    members = gen.members.values() if isinstance(gen, GeneratorSet) else [gen]
    return "/".join(sorted({getattr(m, "graph", "exported") for m in members}))


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stage_cells(generator: CellGenerator, n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Latents and labels of the stage timings: the export's first cells of each class."""
    half = n // len(CLASSES)
    z = np.concatenate([latent.sample_z(seed, half, generator.z_dim) for _ in CLASSES])
    return z, [label for label in CLASSES for _ in range(half)]


class ExportPath:
    """One way of running the export: its models, views and batch."""

    def __init__(
        self,
        name: str,
        gen: CellGenerator,
        clf: Classifier,
        views: int,
        batch: int,
        margin: float = 0.0,
    ) -> None:
        self.name, self.gen, self.clf, self.views, self.batch = name, gen, clf, views, batch
        self.margin = margin

    def describe(self) -> str:
        recheck = f" (8 within {self.margin:g} of one half)" if self.margin else ""
        return (
            f"{self.name}: generator {self.gen.precision} ({graph_of(self.gen)} graph), "
            f"classifier {self.clf.precision} over {self.views} view(s){recheck}, "
            f"batch {self.batch}"
        )

    def generate(self, z: np.ndarray, labels: list[str]) -> np.ndarray:
        parts = [
            self.gen.generate(z[i : i + self.batch], labels[i : i + self.batch])
            for i in range(0, len(z), self.batch)
        ]
        return np.concatenate(parts)

    def classify(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and features as the export's filter takes them (two classes: the
        band around one half is the same for either class)."""
        proba, features, _ = self.clf.predict_rechecked(
            images, batch=self.batch, views=self.views, margin=self.margin
        )
        return proba, features

    def config(self, n: int, seed: int) -> writer.SynthConfig:
        return writer.SynthConfig(
            n_per_class=n, seed=seed, batch=self.batch, views=self.views, recheck_margin=self.margin
        )


def clocked(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``'s result, wall seconds and this process's CPU seconds (all its threads).

    CPU seconds count the work done whatever else runs on the cores, so on a busy machine
    their ratio is steadier than the wall-clock one.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def stage_table(
    paths: list[ExportPath], reference: Any, repeats: int, seed: int
) -> list[list[Any]]:
    """Per stage: cells/s of each path and their ratio, then CPU ms per cell of each path and
    their ratio; medians over interleaved repeats."""
    z, labels = stage_cells(paths[0].gen, STAGE_CELLS, seed)
    rates: dict[tuple[str, str], list[float]] = {}
    cpu_ms: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeats):
        for path in paths:
            images, *generate = clocked(lambda p=path: p.generate(z, labels))
            (_, features), *classify = clocked(lambda p=path, x=images: p.classify(x))
            codes = reference.codes(features)
            _, *privacy = clocked(
                lambda c=codes: metrics.nearest_distances(c, reference.train_codes)
            )
            with tempfile.TemporaryDirectory(prefix="malgan-bench-") as tmp:
                items = [(Path(tmp) / f"{i}.png", cell) for i, cell in enumerate(images)]
                _, *write = clocked(lambda i=items: write_pngs(i))
            timings = {"generate": generate, "classify": classify, "privacy": privacy}
            for stage, (wall, cpu) in {**timings, "write": write}.items():
                rates.setdefault((stage, path.name), []).append(len(z) / wall)
                cpu_ms.setdefault((stage, path.name), []).append(1000 * cpu / len(z))
    rows = []
    for stage in ("generate", "classify", "privacy", "write"):
        old, new = (summary.describe(rates[(stage, p.name)])["median"] for p in paths)
        old_cpu, new_cpu = (summary.describe(cpu_ms[(stage, p.name)])["median"] for p in paths)
        rows.append([stage, old, new, new / old, old_cpu, new_cpu, old_cpu / new_cpu])
    return rows


def end_to_end(paths: list[ExportPath], reference: Any, n: int, repeats: int, seed: int):
    """Written cells/s of ``export_dataset`` per path (both filters on), interleaved."""
    rates: dict[str, list[float]] = {p.name: [] for p in paths}
    summaries: dict[str, writer.SynthSummary] = {}
    for _ in range(repeats):
        for path in paths:
            with tempfile.TemporaryDirectory(prefix="malgan-bench-") as tmp:
                result = writer.export_dataset(
                    Path(tmp) / "dataset",
                    path.config(n, seed),
                    generator=path.gen,
                    classifier=path.clf,
                    reference=reference,
                )
            rates[path.name].append(result.images_per_second)
            summaries[path.name] = result
    return rates, summaries


def kept(proba: np.ndarray, labels: list[str], distances: np.ndarray, threshold: float):
    """The export's reasons for each cell (both filters on, default confidence)."""
    reasons = np.empty(len(labels), dtype=object)
    for label in CLASSES:
        rows = np.array([lab == label for lab in labels])
        reasons[rows] = rejection_reasons(
            proba[rows], CLASSES.index(label), distances[rows], privacy_threshold=threshold
        )
    return reasons.astype(str)


def setting_name(views: int, margin: float) -> str:
    """A view setting as the tables print it: ``"2 view(s)"`` or ``"1 view(s), 8 within 0.2"``."""
    return f"{views} view(s)" + (f", 8 within {margin:g}" if margin else "")


def view_study(
    generators: dict[str, CellGenerator],
    classifiers: dict[str, Classifier],
    reference: Any,
    n: int,
    seed: int,
    margins: Sequence[float],
) -> tuple[list[list[Any]], dict[str, dict[tuple[int, float], float]]]:
    """Kept-or-rejected agreement with the old path, per precision pair and view setting.

    The reference is the first generator's cells judged by the first classifier over 8 views
    (the old path). Each pair classifies the cells its generator draws from the same latents,
    both filters on; one pass over the 8 views gives every setting (``view_settings``).

    Returns:
        ``(table rows, {"<generator>/<classifier>": {(views, margin): agreement}})``.
    """
    z, labels = stage_cells(next(iter(generators.values())), 2 * n, seed)
    threshold = float(reference.privacy_threshold)
    rows, agreement = [], {}
    base = None
    for gen_name, gen in generators.items():
        images = gen.generate(z, labels)
        for clf_name, clf in classifiers.items():
            per_view = clf.view_probabilities(images)  # [8, N, C]
            codes = reference.codes(clf.features(images))
            distances = metrics.nearest_distances(codes, reference.train_codes)
            pair = f"{gen_name}/{clf_name}"
            agreement[pair] = {}
            for setting, (proba, cost) in view_settings(per_view, margins).items():
                reasons = kept(proba, labels, distances, threshold)
                if base is None:
                    base = reasons
                share = float(np.mean((reasons == ACCEPTED) == (base == ACCEPTED)))
                agreement[pair][setting] = share
                counts = [int(np.sum(reasons == r)) for r in REASONS]
                rows.append([f"{pair}, {setting_name(*setting)}", share * 100, cost, *counts])
    return rows, agreement


def view_settings(
    per_view: np.ndarray, margins: Sequence[float]
) -> dict[tuple[int, float], tuple[np.ndarray, float]]:
    """Each view count's probabilities, and each count's with the recheck (all 8 views for a
    verdict within each of ``margins`` of one half), with the mean views per cell of each.

    Args:
        per_view: float [8, N, 2] probabilities of each dihedral view.
        margins: The recheck's bands.

    Returns:
        ``{(views, margin or 0): (proba [N, 2], views per cell)}``, 8 views first.
    """
    full = per_view.mean(axis=0)
    out = {}
    for views in sorted(VIEW_SETS, reverse=True):
        proba = sum(per_view[k] for k in VIEW_SETS[views]) / views
        out[(views, 0.0)] = (proba, float(views))
        for margin in sorted({m for m in margins if m > 0}) if views < len(per_view) else ():
            close = np.abs(proba[:, 0] - 0.5) < margin
            rechecked = np.where(close[:, None], full, proba)
            out[(views, margin)] = (rechecked, views + float(np.mean(close)) * len(per_view))
    return out


def fewest_views(agreement: dict[tuple[int, float], float]) -> int | None:
    """The fewest views, without the recheck, whose verdicts agree with the reference on
    >= 99.5% of cells (None when no count does)."""
    passing = [
        v for (v, margin), share in agreement.items() if share >= MIN_AGREEMENT and not margin
    ]
    return min(passing) if passing else None


def grid_times(
    paths: list[ExportPath], seed: int, repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds to generate and classify the Sample page's 16-cell grid,
    interleaved."""
    z = latent.sample_z(seed, GRID_CELLS, paths[0].gen.z_dim)
    wall: dict[str, list[float]] = {p.name: [] for p in paths}
    cpu: dict[str, list[float]] = {p.name: [] for p in paths}
    for _ in range(repeats):
        for path in paths:
            _, seconds, cpu_seconds = clocked(
                lambda p=path: p.classify(p.gen.generate(z, CLASSES[0]))
            )
            wall[path.name].append(seconds)
            cpu[path.name].append(cpu_seconds)
    return wall, cpu


def _sweep_call(
    model: Any, batch: int, z: np.ndarray, labels: list[str], images: np.ndarray, views: int
) -> Callable[[], Any]:
    """One timed call of the sweep: all cells through ``model`` in calls of ``batch``."""
    if isinstance(model, Classifier):
        return lambda: model.predict(images, batch=batch, views=views)
    return lambda: [
        model.generate(z[i : i + batch], labels[i : i + batch]) for i in range(0, len(z), batch)
    ]


def sweep(path: ExportPath, repeats: int) -> list[list[Any]]:
    """cells/s of the new path's sessions for each thread count, graph level and batch."""
    rows = []
    z, labels = stage_cells(path.gen, STAGE_CELLS, 0)
    images = path.generate(z, labels)
    models = {"generator": path.gen, "classifier": path.clf}
    for what, model in models.items():
        data = Path(model.path).read_bytes()
        for level_name, level in SWEEP_LEVELS.items():
            for threads in SWEEP_THREADS:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.graph_optimization_level = level
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
                model_copy = type(model)(session=session, meta=model.meta, path=model.path)
                row: list[Any] = [f"{what} {level_name}, {threads} thread(s)"]
                for batch in SWEEP_BATCHES:
                    run = _sweep_call(model_copy, batch, z, labels, images, path.views)
                    seconds = [timed(run) for _ in range(repeats)]
                    row.append(len(z) / summary.describe(seconds)["median"])
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the stage table, the end-to-end rates, the view study and the grid timing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=cli.DEFAULT_MODEL)
    parser.add_argument("--n-per-class", type=int, default=250, help="end-to-end export size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--study-cells",
        type=int,
        default=1000,
        help="cells per class in the view study",
    )
    parser.add_argument(
        "--margins",
        type=float,
        nargs="+",
        default=[writer.DEFAULT_RECHECK_MARGIN],
        help="recheck bands the view study tries (default: the CLI's, %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=writer.DEFAULT_SEED)
    parser.add_argument("--exported", default=None)
    parser.add_argument("--sweep", action="store_true", help="also sweep session options")
    parser.add_argument("--int8", action="store_true", help="also study the classifier's int8 copy")
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = parser.parse_args(argv)

    exported = Path(args.exported) if args.exported else artifacts.exported_dir()
    try:
        old_gen, old_clf, reference = artifacts.load_models(exported, args.model, precision=FP32)
        with memory_arena():  # as malgan-synth loads them
            new_gen, new_clf, _ = artifacts.load_models(
                exported,
                args.model,
                precision=cli.DEFAULT_PRECISION,
                classifier_precision=cli.DEFAULT_CLASSIFIER_PRECISION,
            )
        int8_gen, int8_clf, _ = artifacts.load_models(exported, args.model, precision=INT8)
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return cli.EXIT_BAD_INPUT
    paths = [
        ExportPath("old", exported_graph(old_gen), old_clf, OLD_VIEWS, OLD_BATCH),
        ExportPath(
            "new",
            new_gen,
            new_clf,
            cli.DEFAULT_VIEWS,
            writer.DEFAULT_BATCH,
            writer.DEFAULT_RECHECK_MARGIN,
        ),
    ]
    for line in [*machine_lines(), *(p.describe() for p in paths)]:
        print(line)

    print(
        f"\nStages over {STAGE_CELLS} cells (median of {args.repeats}): cells/s, then CPU ms "
        "per cell (all threads of this process):"
    )
    stages = stage_table(paths, reference, args.repeats, args.seed)
    summary.print_table(
        ["stage", "old", "new", "ratio", "old cpu ms", "new cpu ms", "cpu ratio"], stages
    )

    try:
        rates, results = end_to_end(paths, reference, args.n_per_class, args.repeats, args.seed)
    except SynthError as err:
        print(f"error: {err}", file=sys.stderr)
        return cli.EXIT_FILTERS_EXHAUSTED
    old_rate = summary.describe(rates["old"])["median"]
    new_rate = summary.describe(rates["new"])["median"]
    print(
        f"\nmalgan-synth, both filters on, {args.n_per_class} per class, written cells/s "
        f"(median of {args.repeats}): old {old_rate:.1f}, new {new_rate:.1f}, "
        f"ratio {new_rate / old_rate:.2f} (target 100)"
    )
    for name, result in results.items():
        print(f"  {name}: tried {result.attempts}, rejected {result.total_rejected}")

    grid, grid_cpu = grid_times(paths, args.seed, GRID_REPEATS)
    old_ms, new_ms = (summary.describe(grid[p.name])["median"] * 1000 for p in paths)
    old_cpu, new_cpu = (summary.describe(grid_cpu[p.name])["median"] * 1000 for p in paths)
    print(
        f"\nSample page grid, {GRID_CELLS} cells generated and classified (median of "
        f"{GRID_REPEATS}): old {old_ms:.0f} ms, new {new_ms:.0f} ms, "
        f"{old_ms / new_ms:.2f}x faster (target 3x); CPU old {old_cpu:.0f} ms, new "
        f"{new_cpu:.0f} ms, {old_cpu / new_cpu:.2f}x"
    )

    print(
        f"\nViews: kept-or-rejected agreement with the old path, {2 * args.study_cells} cells "
        f"(seed {args.seed}), and rejections by reason:"
    )
    generators = {FP32: paths[0].gen, f"{FP32} {graph_of(old_gen)}": old_gen}
    generators[f"{new_gen.precision} {graph_of(new_gen)}"] = new_gen
    classifiers = {FP32: old_clf}
    if args.int8:
        generators[f"{INT8} {graph_of(int8_gen)}"], classifiers[INT8] = int8_gen, int8_clf
    study, agreement = view_study(
        generators,
        classifiers,
        reference,
        args.study_cells,
        args.seed,
        args.margins,
    )
    summary.print_table(
        ["generator/classifier, views", "agreement %", "views per cell", *REASONS], study
    )
    chosen = {pair: fewest_views(shares) for pair, shares in agreement.items()}
    print(
        f"fewest views with >= {MIN_AGREEMENT:.1%} agreement: "
        + ", ".join(f"{pair} {views}" for pair, views in chosen.items())
    )
    default = (cli.DEFAULT_VIEWS, writer.DEFAULT_RECHECK_MARGIN)
    if cli.DEFAULT_VIEWS >= OLD_VIEWS or not writer.DEFAULT_RECHECK_MARGIN:
        default = (cli.DEFAULT_VIEWS, 0.0)  # nothing to recheck
    studied = {pair: shares[default] for pair, shares in agreement.items() if default in shares}
    if studied:
        print(
            f"the CLI's setting ({setting_name(*default)}): "
            + ", ".join(f"{pair} {share:.2%}" for pair, share in studied.items())
        )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at the end: {load}")

    sweep_rows = []
    if args.sweep:
        print(f"\nSession options, new path, cells/s over {STAGE_CELLS} cells:")
        sweep_rows = sweep(paths[1], args.repeats)
        summary.print_table(["session", *(f"batch {b}" for b in SWEEP_BATCHES)], sweep_rows)
    if args.json:
        print(
            json.dumps(
                {
                    "stages": stages,
                    "end_to_end": rates,
                    "grid_seconds": grid,
                    "view_agreement": {
                        pair: {setting_name(*k): v for k, v in shares.items()}
                        for pair, shares in agreement.items()
                    },
                    "fewest_views": chosen,
                    "sweep": sweep_rows,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
