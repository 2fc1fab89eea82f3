"""Export the trained runs to ``exported/``: ONNX models, sidecars, index, metrics and snapshots.

Each generator ships the latent directions the dashboard slides along (``train.directions``),
judged by the release's classifier. ``metrics.json`` is assembled from the JSON lines by
``train.release_metrics``.

Usage: python -m train.export --runs runs --out exported [--smoke]
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from malgan import metrics, release
from malgan.data import CLASSES
from malgan.nn import registry
from malgan.nn.onnx_export import export_classifier, export_generator
from malgan.runtime import Classifier, Generator, sha256_file
from train import accel, directions, models, quantize, release_metrics
from train.config import parse_config, replace, run_cli
from train.gan_loop import SNAPSHOT_DIR
from train.runs import finite_json, git_commit, hardware, load_checkpoint

# The run folder of the release's classifier, the judge of the pages and the filters.
MAIN_CLASSIFIER = "classifier"
# Display names and run folders of the classifiers in the comparison table.
CLASSIFIER_RUNS = {
    MAIN_CLASSIFIER: "ResNet (3,4,6), our recipe",
    "resnet_plain": "The report's ResNet (3,4,6)",
    "cnn_sound": "The report's simple CNN, sound recipe",
    "cnn_report": "The report's simple CNN, trained the report's way",
    "cnn_report_unit": "The report's simple CNN, the report's way on [0,1] pixels",
}
# The test figures of each classifier's row, as its checkpoint's summary gives them.
TEST_FIGURES = (release.ACCURACY, release.AUC, release.SENSITIVITY, release.SPECIFICITY)
GENERATOR_NAMES = {
    "cgan": "malgan conditional GAN",
    "dcgan": "The report's DCGAN (one per class)",
}
# What the first GPU release's DCGANs got wrong, in a sentence the pages show beside them.
DCGAN_BN_FAULT = (
    "This DCGAN pair comes from a run with a known fault of our port, not the report's method: "
    "during the generator's update the frozen discriminator's BatchNorm used its running "
    "statistics instead of the batch's (as Keras 2.2 on TensorFlow 1 did for the report), "
    "so it drew saturated frames instead of cells."
)
MAX_HISTORY_POINTS = 600
LATENCY_WARMUP = 5


@dataclass(frozen=True)
class ExportConfig:
    """Export options."""

    runs: str = field(default="runs", metadata={"help": "Folder holding the training runs."})
    out: str = field(default="exported", metadata={"help": "Destination folder."})
    eval_dir: str = field(default="", metadata={"help": "Evaluation folder (default RUNS/eval)."})
    direction_samples: int = 2000
    principal_components: int = 8
    latency_runs: int = 50
    command: str = field(default="", metadata={"help": "Command recorded in metrics.json."})
    seed: int = 0
    only: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Export only these generators into the release in OUT, replacing theirs and "
            "keeping every other model; judged by the release's exported classifier."
        },
    )
    smoke: bool = False


def smoke_config(cfg: ExportConfig) -> ExportConfig:
    """A config that runs the whole path in seconds on a CPU."""
    return replace(cfg, direction_samples=64, principal_components=4, latency_runs=5)


def cpu_latency_ms(model: Classifier | Generator, runs: int) -> float:
    """Median milliseconds for one cell through ONNX Runtime on this machine's CPU."""
    times = []
    for i in range(runs + LATENCY_WARMUP):
        t0 = time.perf_counter()
        if isinstance(model, Classifier):
            model.predict_proba(np.zeros((1, 64, 64, 3), np.uint8))
        else:
            model.generate(np.zeros((1, model.z_dim), np.float32), model.classes[0])
        if i >= LATENCY_WARMUP:
            times.append(time.perf_counter() - t0)
    return metrics.summarize_latencies(times)["median_ms"]


def _thin(rows: list[dict[str, Any]], limit: int = MAX_HISTORY_POINTS) -> list[dict[str, Any]]:
    step = max(1, len(rows) // limit)
    return rows[::step] + ([rows[-1]] if rows and (len(rows) - 1) % step else [])


@dataclass
class ExportRun:
    """What every part of an export shares: folders, device, commit and its JSON-lines log."""

    cfg: ExportConfig
    runs: Path
    out: Path
    device: torch.device
    commit: str

    def emit(self, record: dict[str, Any]) -> None:
        """Append one JSON line to the export log (``metrics.json`` is made from these lines)."""
        with open(self.runs / models.EXPORT_LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(finite_json(record)) + "\n")


def classifier_row(name: str, file: str, ckpt: dict[str, Any]) -> release.ClassifierRow:
    """One row of the classifier table, from a final classifier checkpoint."""
    summary = ckpt["summary"]
    results = summary["results"]
    test = results["tta" if ckpt["tta"] else "plain"]["test"]
    return {
        release.NAME: name,
        release.DISPLAY_NAME: CLASSIFIER_RUNS[name],
        release.FILE: file,
        "arch": summary["arch"],
        release.RECIPE: summary[release.RECIPE],
        "input_scale": summary["input_scale"],
        release.TTA: summary[release.TTA],
        "epochs": summary["epochs"],
        **{key: test[key] for key in TEST_FIGURES},
        "accuracy_without_tta": results["plain"]["test"]["accuracy"],
        "accuracy_with_tta": results["tta"]["test"]["accuracy"],
        release.PARAMETERS: summary[release.PARAMETERS],
        "train_seconds": summary.get("train_seconds"),
        release.DIVERGED_AT_EPOCH: summary.get(release.DIVERGED_AT_EPOCH),
    }


def export_classifiers(ex: ExportRun) -> tuple[tuple[torch.nn.Module, str], list[Any]]:
    """Export every trained classifier; return ours (the judge) with its input scale, and
    the index's classifier models."""
    main_clf, listed = None, []
    for name in CLASSIFIER_RUNS:
        path = ex.runs / name / models.FINAL
        if not path.exists():
            continue
        ckpt = load_checkpoint(path, ex.device)
        net = registry.rebuild(ckpt)
        file = "classifier.onnx" if name == "classifier" else f"classifier_{name}.onnx"
        meta = export_classifier(
            net,
            ex.out / file,
            name=name,
            display_name=CLASSIFIER_RUNS[name],
            classes=list(CLASSES),
            input_scale=ckpt["input_scale"],
            provenance={
                "source_checkpoint": str(path),
                "git_commit": ex.commit,
                "tta": ckpt["tta"],
                "recipe": ckpt["summary"]["recipe"],
                "arch": ckpt["summary"]["arch"],
            },
        )
        latency = cpu_latency_ms(Classifier.load(ex.out / file), ex.cfg.latency_runs)
        row = {**classifier_row(name, file, ckpt), release.CPU_LATENCY_MS: latency}
        ex.emit(release_metrics.classifier_export_record(row, meta["bytes"]))
        listed.append(release.index_model(name, file))
        if name == MAIN_CLASSIFIER:
            main_clf = (net.to(ex.device), ckpt["input_scale"])
            write_history(ex.out, release.CLASSIFIER, ckpt["summary"]["history"])
    if main_clf is None:
        raise FileNotFoundError(f"No trained classifier in {ex.runs / MAIN_CLASSIFIER}.")
    return main_clf, listed


def write_history(out: Path, name: str, history: Any) -> None:
    """Write the training history of a generator (or of the classifier) into the release."""
    path = out / release.history_path(name)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(history))


def export_generator_runs(ex: ExportRun, name: str, judge: directions.Judge) -> release.IndexModel:
    """Export one generator's networks with their latent directions; return its index entry."""
    display = GENERATOR_NAMES[name]
    gen = models.load_generator(ex.runs, name, ex.device)
    runs = models.generator_runs(name)
    files = {}
    for label, net in gen.nets.items():
        classes = CLASSES if gen.conditional else (label,)
        run = runs[label]
        dirs = directions.generator_directions(
            net,
            classes,
            gen.conditional,
            judge,
            ex.device,
            samples=ex.cfg.direction_samples,
            components=ex.cfg.principal_components,
        )
        files[label] = f"{run}.onnx"
        export_generator(
            net,
            ex.out / files[label],
            name=run,
            display_name=display if gen.conditional else f"{display}: {label}",
            classes=list(classes),
            provenance={
                "source_checkpoint": str(ex.runs / run / models.FINAL),
                "git_commit": ex.commit,
            },
            directions=dirs,
        )
    first = Generator.load(ex.out / next(iter(files.values())))
    latency = cpu_latency_ms(first, ex.cfg.latency_runs)
    ex.emit(release_metrics.generator_export_record(name, display, latency))
    return release.generator_model(name, display, files["*"] if gen.conditional else files)


def run_fault(generator: str, config: dict[str, Any]) -> str | None:
    """The known fault of a finished run, from its config; None for a sound run.

    The report's DCGAN first ran the frozen D's BatchNorm on its running statistics during G's
    update (a run from before ``frozen_bn`` existed did so too)."""
    if generator == "dcgan" and config.get("frozen_bn", "inference") == "inference":
        return DCGAN_BN_FAULT
    return None


def export_generator_training(ex: ExportRun, index: dict[str, Any], name: str) -> None:
    """Copy one generator's snapshot grids, write its histories, name both in ``index`` and
    log how it trained."""
    dest = ex.out / "snapshots" / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    snaps, losses, probes, its, faults, guides = [], {}, {}, {}, set(), set()
    for run_name in models.generator_runs(name).values():
        for src in sorted((ex.runs / run_name / SNAPSHOT_DIR).glob("*_iter_*.png")):
            label, _, iteration = src.stem.rpartition("_iter_")
            shutil.copyfile(src, dest / src.name)
            file = f"snapshots/{name}/{src.name}"
            snaps.append(release.snapshot_entry(label, int(iteration), file))
        final = load_checkpoint(ex.runs / run_name / models.FINAL)
        state = final["state"]
        losses[run_name] = _thin(state["losses"])
        probes[run_name] = state["probes"]
        # The loop saves the best probe's weights only when its config keeps the best.
        best = state.get("best") if final["config"].get("keep_best") else None
        its[run_name] = {
            "iterations": state["iteration"],
            "train_seconds": state["train_seconds"],
            "iterations_per_second": state["iteration"] / max(state["train_seconds"], 1e-9),
            "selected_iteration": (best or {}).get("iteration", state["iteration"]),
        }
        faults.add(run_fault(name, final["config"]))
        if final["config"].get("guide") and final["config"].get("guide_weight", 0) > 0:
            guides.add(Path(final["config"]["guide"]).parent.name)
    release.put_generator_training(index, name, snaps)
    write_history(ex.out, name, release.generator_history(losses, probes))
    fault = next((f for f in sorted(faults - {None})), None)
    ex.emit(release_metrics.training_export_record(name, its, sorted(guides), fault))


def export_all(cfg: ExportConfig) -> dict[str, Any]:
    """Write every model, the index, histories and snapshots; return the index.

    ``metrics.json`` is written afterwards by ``release_metrics.write_metrics``, from the JSON
    lines alone.
    """
    if cfg.smoke:
        cfg = smoke_config(cfg)
    ex = ExportRun(
        cfg=cfg,
        runs=Path(cfg.runs),
        out=Path(cfg.out),
        device=accel.pick_device(),
        commit=git_commit(),
    )
    ex.out.mkdir(parents=True, exist_ok=True)
    (ex.runs / models.EXPORT_LOG).unlink(missing_ok=True)
    eval_dir = Path(cfg.eval_dir or ex.runs / models.EVAL_DIR)
    run = release_metrics.run_profile(ex.runs)
    main_clf, classifiers = export_classifiers(ex)
    judge = directions.torch_judge(*main_clf)
    generators = [export_generator_runs(ex, name, judge) for name in GENERATOR_NAMES]
    # Training reference (privacy filter, OOD warnings).
    shutil.copyfile(eval_dir / models.REFERENCE, ex.out / models.REFERENCE)
    index = release.assemble_index(
        smoke=cfg.smoke,
        git_commit=ex.commit,
        profile=run.get(release.PROFILE, "smoke" if cfg.smoke else ""),
        # The machine that trained (the banner names its GPU), wherever the export runs.
        hardware=run.get(release.HARDWARE) or hardware(),
        classifiers=classifiers,
        classifier=next(c for c in classifiers if c[release.NAME] == MAIN_CLASSIFIER),
        generators=generators,
        reference=models.REFERENCE,
        reference_sha256=sha256_file(ex.out / models.REFERENCE),
    )
    # Each generator's snapshot grids and its loss and probe histories.
    for name in GENERATOR_NAMES:
        export_generator_training(ex, index, name)
    (ex.out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    write_int8_copies(ex.out, index, GENERATOR_NAMES, cfg.command)
    return index


def write_int8_copies(
    out: Path, index: dict[str, Any], names: Sequence[str], command: str = ""
) -> None:
    """Write the int8 copy of each single-file generator of ``names`` that passes parity.

    The runtime loads a copy only when it was made from the file beside it, so a copy left
    from an earlier export is never used; ``train.quantize`` overwrites it or, when the new one
    fails parity, removes it.
    """
    single = [e[release.NAME] for e in release.index_generators(index) if release.FILE in e]
    for name in (n for n in names if n in single):
        parity, kept = quantize.quantize_generator(out, name, command)
        verdict = "written" if kept else "not written, fails parity"
        print(f"int8 copy of {name}: {verdict}; {parity}")


def export_only(cfg: ExportConfig, command: str) -> dict[str, Any]:
    """Replace some generators of an existing release with new runs; keep everything else.

    Each generator in ``cfg.only`` is exported from ``cfg.runs`` with its latent directions
    (judged by the release's exported classifier), snapshots and histories. In ``metrics.json``
    its entry starts afresh: how it trained, on what machine (``trained_on``) and what wrote it
    (``written_by["generators"]``); its figures come from the evaluation of the exported models
    (``train.evaluate_exported``). Every other file of the release is left as it is.

    Returns:
        The updated metrics.
    """
    if cfg.smoke:
        cfg = smoke_config(cfg)
    out = Path(cfg.out)
    index = json.loads((out / "index.json").read_text())
    unknown = set(cfg.only) - set(GENERATOR_NAMES)
    if unknown:
        raise ValueError(f"--only names unknown generators: {sorted(unknown)}")
    ex = ExportRun(
        cfg=cfg,
        runs=Path(cfg.runs),
        out=out,
        device=accel.pick_device(),
        commit=git_commit(),
    )
    (ex.runs / models.EXPORT_LOG).unlink(missing_ok=True)
    judge = directions.onnx_judge(
        Classifier.load(out / release.index_file(index, release.CLASSIFIER))
    )
    for name in cfg.only:
        release.put_generator(index, export_generator_runs(ex, name, judge))
        export_generator_training(ex, index, name)
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    write_int8_copies(out, index, cfg.only, command)
    wrote = release.provenance(command, ex.commit, hardware())
    return release_metrics.replace_generators(out, ex.runs, cfg.only, wrote)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(ExportConfig, argv)
    command = shlex.join([Path(sys.executable).name, "-m", "train.export", *sys.argv[1:]])
    cfg = replace(cfg, command=cfg.command or command)
    if cfg.only:
        export_only(cfg, cfg.command)
        print(f"Exported {', '.join(cfg.only)} into {cfg.out}")
        return
    export_all(cfg)
    result = release_metrics.write_metrics(cfg, cfg.command)
    accuracy = release.main_classifier(result)[release.TEST_ACCURACY]
    print(f"Exported to {cfg.out}: classifier accuracy {accuracy:.4f}")


if __name__ == "__main__":
    run_cli(main)
