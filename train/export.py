"""Export the trained runs to ``exported/``: ONNX models, sidecars, index, metrics and snapshots.

Each generator ships the latent directions the dashboard slides along: principal directions
(GANSpace, Härkönen et al. 2020) and an infection direction per class fitted to the
classifier's P(parasitized) (InterFaceGAN, Shen et al. 2020). ``metrics.json`` is assembled
from the evaluation's JSON lines, with the commit, the command, the hardware and stage times.

Usage: python -m train.export --runs runs --out exported [--smoke]
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from malgan import latent, metrics
from malgan.data import CLASSES
from malgan.nn import registry
from malgan.nn.onnx_export import export_classifier, export_generator
from malgan.runtime import Classifier, Generator, sha256_file
from train import common, models
from train.gan_loop import SNAPSHOT_DIR

# Latents of the direction fits; distinct from the evaluation's and the dashboard's seeds.
DIRECTION_SEED = 3000
# Display names and run folders of the classifiers in the comparison table.
CLASSIFIER_RUNS = {
    "classifier": "ResNet (3,4,6), our recipe",
    "resnet_plain": "The report's ResNet (3,4,6)",
    "cnn_sound": "The report's simple CNN, sound recipe",
    "cnn_report": "The report's simple CNN, trained the report's way",
    "cnn_report_unit": "The report's simple CNN, the report's way on [0,1] pixels",
}
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
    return common.replace(cfg, direction_samples=64, principal_components=4, latency_runs=5)


def _first_linear_output(net: torch.nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """Activations of a generator's first layer, flattened (the GANSpace feature space)."""
    if hasattr(net, "early_features"):
        return net.early_features(*inputs)
    captured: dict[str, torch.Tensor] = {}
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Linear))
    handle = first.register_forward_hook(lambda _m, _i, out: captured.setdefault("h", out))
    try:
        net(*inputs)
    finally:
        handle.remove()
    return captured["h"].flatten(1)


# P(each class) of generated cells, given as uint8 NCHW images: a torch or an ONNX classifier.
Judge = Callable[[torch.Tensor], np.ndarray]


def torch_judge(clf: torch.nn.Module, input_scale: str) -> Judge:
    """A judge from a trained torch classifier."""
    return lambda images: models.predict(clf, images, input_scale)[0]


def onnx_judge(clf: Classifier) -> Judge:
    """A judge from an exported classifier (ONNX Runtime, plain view)."""
    return lambda images: clf.predict_proba(images.permute(0, 2, 3, 1).cpu().numpy())


@torch.no_grad()
def generator_directions(
    net: torch.nn.Module,
    labels: tuple[str, ...],
    conditional: bool,
    judge: Judge,
    cfg: ExportConfig,
    device: torch.device,
) -> dict[str, Any]:
    """Principal and infection directions in z for one generator network."""
    n = cfg.direction_samples
    z = latent.sample_z(DIRECTION_SEED, n, net.z_dim)
    zt = torch.from_numpy(z).to(device)
    eye = torch.eye(len(CLASSES), device=device)
    first = CLASSES.index(labels[0])
    inputs = (zt, eye[torch.full((n,), first, device=device)]) if conditional else (zt,)
    acts = _first_linear_output(net, *inputs).float().cpu().numpy()
    principal, sigmas = latent.principal_directions(z, acts, cfg.principal_components)
    infection = {}
    for label in labels:
        y = eye[torch.full((n,), CLASSES.index(label), device=device)]
        images = net(zt, y) if conditional else net(zt)
        proba = judge(models.to_uint8(images))
        infection[label] = latent.attribute_direction(z, proba[:, 0]).tolist()
    return {"principal": principal.tolist(), "sigmas": sigmas.tolist(), "infection": infection}


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
            fh.write(json.dumps(common.finite_json(record)) + "\n")


def classifier_row(name: str, file: str, ckpt: dict[str, Any]) -> dict[str, Any]:
    """One row of the classifier table, from a final classifier checkpoint."""
    summary = ckpt["summary"]
    results = summary["results"]
    test = results["tta" if ckpt["tta"] else "plain"]["test"]
    return {
        "name": name,
        "display_name": CLASSIFIER_RUNS[name],
        "file": file,
        "arch": summary["arch"],
        "recipe": summary["recipe"],
        "input_scale": summary["input_scale"],
        "tta": summary["tta"],
        "epochs": summary["epochs"],
        "accuracy": test["accuracy"],
        "auc": test["auc"],
        "sensitivity": test["sensitivity"],
        "specificity": test["specificity"],
        "accuracy_without_tta": results["plain"]["test"]["accuracy"],
        "accuracy_with_tta": results["tta"]["test"]["accuracy"],
        "parameters": summary["parameters"],
        "train_seconds": summary.get("train_seconds"),
        "diverged_at_epoch": summary.get("diverged_at_epoch"),
    }


def export_classifiers(ex: ExportRun, index: dict[str, Any]) -> tuple[torch.nn.Module, str]:
    """Export every trained classifier; return ours (the judge) and its input scale."""
    main_clf = None
    index["classifiers"] = []
    for name in CLASSIFIER_RUNS:
        path = ex.runs / name / models.FINAL
        if not path.exists():
            continue
        ckpt = common.load_checkpoint(path, ex.device)
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
        row = {**classifier_row(name, file, ckpt), "cpu_latency_ms": latency}
        ex.emit({"kind": "classifier", **row, "onnx_bytes": meta["bytes"]})
        index["classifiers"].append({"name": name, "file": file})
        if name == "classifier":
            main_clf = (net.to(ex.device), ckpt["input_scale"])
            index["classifier"] = {"name": name, "file": file}
            (ex.out / "history").mkdir(exist_ok=True)
            history = json.dumps(ckpt["summary"]["history"])
            (ex.out / "history" / "classifier.json").write_text(history)
    if main_clf is None:
        raise FileNotFoundError(f"No trained classifier in {ex.runs / 'classifier'}.")
    return main_clf


def export_generators(ex: ExportRun, index: dict[str, Any], judge: Judge) -> None:
    """Export every generator network with its latent directions."""
    index["generators"] = [export_generator_runs(ex, name, judge) for name in GENERATOR_NAMES]


def export_generator_runs(ex: ExportRun, name: str, judge: Judge) -> dict[str, Any]:
    """Export one generator's networks with their latent directions; return its index entry."""
    display = GENERATOR_NAMES[name]
    gen = models.load_generator(ex.runs, name, ex.device)
    runs = models.generator_runs(name)
    files = {}
    for label, net in gen.nets.items():
        classes = CLASSES if gen.conditional else (label,)
        run = runs[label]
        dirs = generator_directions(net, classes, gen.conditional, judge, ex.cfg, ex.device)
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
    entry: dict[str, Any] = {"name": name, "display_name": display}
    if gen.conditional:
        entry["file"] = files["*"]
    else:
        entry["files"] = files
    first = Generator.load(ex.out / next(iter(files.values())))
    latency = cpu_latency_ms(first, ex.cfg.latency_runs)
    ex.emit(
        {
            "kind": "generator",
            "name": name,
            "display_name": display,
            "cpu_latency_ms_one_cell": latency,
        }
    )
    return entry


def export_training(ex: ExportRun, index: dict[str, Any]) -> None:
    """Copy each generator's snapshot grids and write its loss and probe histories."""
    index["snapshots"], index["history"] = {}, {"classifier": "history/classifier.json"}
    for name in GENERATOR_NAMES:
        export_generator_training(ex, index, name)


def run_fault(generator: str, config: dict[str, Any]) -> str | None:
    """The known fault of a finished run, from its config; None for a sound run.

    The report's DCGAN first ran the frozen D's BatchNorm on its running statistics during G's
    update (a run from before ``frozen_bn`` existed did so too)."""
    if generator == "dcgan" and config.get("frozen_bn", "inference") == "inference":
        return DCGAN_BN_FAULT
    return None


def export_generator_training(ex: ExportRun, index: dict[str, Any], name: str) -> None:
    """Copy one generator's snapshot grids, write its histories and log how it trained."""
    dest = ex.out / "snapshots" / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    snaps, losses, probes, its, faults = [], {}, {}, {}, set()
    for run_name in models.generator_runs(name).values():
        for src in sorted((ex.runs / run_name / SNAPSHOT_DIR).glob("*_iter_*.png")):
            label, _, iteration = src.stem.rpartition("_iter_")
            shutil.copyfile(src, dest / src.name)
            file = f"snapshots/{name}/{src.name}"
            snaps.append({"class": label, "iteration": int(iteration), "file": file})
        final = common.load_checkpoint(ex.runs / run_name / models.FINAL)
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
    index["snapshots"][name] = sorted(snaps, key=lambda s: (s["class"], s["iteration"]))
    history = {"losses": losses, "probes": probes}
    (ex.out / "history").mkdir(exist_ok=True)
    (ex.out / "history" / f"{name}.json").write_text(json.dumps(history))
    index["history"][name] = f"history/{name}.json"
    record = {"kind": "training", "name": name, "runs": its}
    fault = next((f for f in sorted(faults - {None})), None)
    if fault:
        record["known_fault"] = fault
    ex.emit(record)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (none when it is missing)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loop_states(runs: Path, generator: str) -> dict[str, dict[str, Any]]:
    """The final loop state (iterations, training seconds over every attempt, ...) of each of a
    generator's finished runs, by run folder name."""
    paths = {run: runs / run / models.FINAL for run in models.generator_runs(generator).values()}
    return {run: common.load_checkpoint(p)["state"] for run, p in paths.items() if p.exists()}


def run_profile(runs: Path) -> dict[str, Any]:
    """The pipeline's record of the run: command, profile and seconds per stage.

    A stage's seconds are those of the attempts that finished it. An attempt killed part-way
    through a GAN stage logs nothing, but its loop's checkpoints carry the seconds it trained into
    the next attempt: a GAN stage counts at least its loops' training seconds over every attempt
    (``loop_seconds`` records them: their sum, or the longest where the stages ran side by side).
    """
    record: dict[str, Any] = {"stage_seconds": {}, "throughput": {}, "loop_seconds": {}}
    seconds = record["stage_seconds"]
    wall = 0.0
    for line in read_jsonl(runs / models.STAGES_LOG):
        if line.get("event") == "start":
            record.update({k: v for k, v in line.items() if k != "event"})
        elif line.get("event") == "wall":
            wall += line["seconds"]
        elif "stage" in line:
            seconds[line["stage"]] = round(seconds.get(line["stage"], 0.0) + line["seconds"], 2)
            if line.get("result"):
                record[line["stage"]] = line["result"]
    # A stage's loops (the DCGAN's one per class) ran one after another, or side by side.
    combine = max if record.get("jobs", 1) > 1 else sum
    for stage in set(seconds) & set(models.GENERATORS):
        trained = round(combine(s["train_seconds"] for s in loop_states(runs, stage).values()), 2)
        record["loop_seconds"][stage] = trained
        seconds[stage] = max(seconds[stage], trained)
    record["total_seconds"] = round(sum(seconds.values()), 2)
    record["wall_seconds"] = round(wall, 2)
    return record


def run_minutes(run: dict[str, Any]) -> float:
    """How long a run trained: the sum of its stages' seconds, or, where stages ran side by
    side, the wall time of its attempts."""
    side_by_side = run.get("jobs", 1) > 1 and run["wall_seconds"] > 0
    return round((run["wall_seconds"] if side_by_side else run["total_seconds"]) / 60, 1)


def export_all(cfg: ExportConfig) -> dict[str, Any]:
    """Write every model, the index, histories and snapshots; return the index.

    ``metrics.json`` is written afterwards by ``write_metrics``, from the JSON lines alone.
    """
    if cfg.smoke:
        cfg = smoke_config(cfg)
    ex = ExportRun(
        cfg=cfg,
        runs=Path(cfg.runs),
        out=Path(cfg.out),
        device=common.pick_device(),
        commit=common.git_commit(),
    )
    ex.out.mkdir(parents=True, exist_ok=True)
    (ex.runs / models.EXPORT_LOG).unlink(missing_ok=True)
    eval_dir = Path(cfg.eval_dir or ex.runs / models.EVAL_DIR)
    run = run_profile(ex.runs)
    index: dict[str, Any] = {
        "smoke": cfg.smoke,
        "git_commit": ex.commit,
        "profile": {
            "name": run.get("profile", "smoke" if cfg.smoke else ""),
            # The machine that trained (the banner names its GPU), wherever the export runs.
            "hardware": run.get("hardware") or common.hardware(),
        },
    }
    main_clf = export_classifiers(ex, index)
    export_generators(ex, index, torch_judge(*main_clf))
    # Training reference (privacy filter, OOD warnings).
    shutil.copyfile(eval_dir / models.REFERENCE, ex.out / models.REFERENCE)
    ref_hash = sha256_file(ex.out / models.REFERENCE)
    index["reference"] = {"file": models.REFERENCE, "sha256": ref_hash}
    export_training(ex, index)
    (ex.out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def write_metrics(cfg: ExportConfig, command: str = "") -> dict[str, Any]:
    """Write ``metrics.json`` from the evaluation, export and pipeline JSON lines."""
    runs, out = Path(cfg.runs), Path(cfg.out)
    eval_dir = Path(cfg.eval_dir or runs / models.EVAL_DIR)
    exported = read_jsonl(runs / models.EXPORT_LOG)
    run = run_profile(runs)
    gen_models = {
        r["name"]: {
            "display_name": r["display_name"],
            "cpu_latency_ms_one_cell": r["cpu_latency_ms_one_cell"],
        }
        for r in exported
        if r["kind"] == "generator"
    }
    for r in exported:
        if r["kind"] == "training":
            gen_models[r["name"]]["training"] = r["runs"]
            if r.get("known_fault"):
                gen_models[r["name"]]["known_fault"] = r["known_fault"]
    rows = [
        {k: v for k, v in r.items() if k != "kind"} for r in exported if r["kind"] == "classifier"
    ]
    result = assemble_metrics(read_jsonl(eval_dir / models.EVAL_LOG), gen_models, rows)
    diagnosis_path = runs / models.DIAGNOSIS_FILE
    if diagnosis_path.exists():
        diagnosis = json.loads(diagnosis_path.read_text())
        result["cnn_diagnosis"] = {
            "test_parasitized_share": diagnosis["test_parasitized_share"],
            "epochs": diagnosis["config"]["epochs"],
            "variants": diagnosis["variants"],
        }
    result.update(
        {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_commit": run.get("git_commit") or common.git_commit(),
            "command": run.get("command") or command,
            "profile": run.get("profile", "smoke" if cfg.smoke else ""),
            "profile_summary": run.get("profile_summary", ""),
            "hardware": run.get("hardware") or common.hardware(),
            # The command and commit that wrote this file (a run's export may be run again alone).
            "written_by": {
                "command": command,
                "git_commit": common.git_commit(),
                "hardware": common.hardware(),
            },
            "stage_seconds": run["stage_seconds"],
            "loop_seconds": run["loop_seconds"],
            "total_seconds": run["total_seconds"],
            "wall_seconds": run["wall_seconds"],
            "jobs": run.get("jobs", 1),
            "throughput": run.get("throughput", {}),
            "smoke": cfg.smoke,
        }
    )
    save_metrics(out, result)
    index_path = out / "index.json"
    if index_path.exists():
        # The banner's minutes: the whole run's, so written after the export stage has counted.
        index = json.loads(index_path.read_text())
        index["profile"]["train_minutes"] = run_minutes(run)
        index_path.write_text(json.dumps(index, indent=2) + "\n")
    return result


def save_metrics(out: Path, result: dict[str, Any]) -> None:
    """Write ``metrics.json``: indented JSON, NaN and infinities as null."""
    (out / "metrics.json").write_text(json.dumps(common.finite_json(result), indent=2) + "\n")


def add_model_record(result: dict[str, Any], rec: dict[str, Any]) -> None:
    """File one generator's evaluation record under ``result["models"][rec["model"]]``."""
    kind = rec["metric"]
    body = {k: v for k, v in rec.items() if k not in ("metric", "model")}
    model = result["models"].setdefault(rec["model"], {})
    if kind == "tstr":
        model["tstr_accuracy"] = body["accuracy"]
        model["tstr"] = body
    elif kind == "recovery_by":
        judge = body.pop("judge")
        model.setdefault("recovery_by", {})[judge] = body
    else:
        model[kind] = body


def update_metrics(
    out: Path, records: list[dict[str, Any]], provenance: dict[str, Any]
) -> dict[str, Any]:
    """Replace some generators' figures in an existing ``metrics.json``; keep everything else.

    Each record's figures replace that generator's entry of the same key; the provenance
    (command, commit, hardware) of the evaluation is kept under
    ``written_by["figures"][figure][generator]``, beside the ``written_by`` of the export that
    wrote the rest of the file.

    Args:
        out: The exported-models folder.
        records: ``{"metric": figure, "model": generator, ...}`` evaluation records.
        provenance: What wrote these figures.

    Returns:
        The updated metrics.
    """
    result = json.loads((out / "metrics.json").read_text())
    written = result.setdefault("written_by", {}).setdefault("figures", {})
    for rec in records:
        add_model_record(result, rec)
        written.setdefault(rec["metric"], {})[rec["model"]] = provenance
    save_metrics(out, result)
    return result


def assemble_metrics(
    records: list[dict[str, Any]], generators: dict[str, Any], classifier_rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """Turn evaluation records into the ``metrics.json`` layout the dashboard reads."""
    result: dict[str, Any] = {"models": {k: dict(v) for k, v in generators.items()}}
    floor: dict[str, float] = {}
    for rec in records:
        kind = rec["metric"]
        body = {k: v for k, v in rec.items() if k not in ("metric", "model")}
        if kind == "classifier":
            result["classifier"] = {
                "name": body["name"],
                "test_accuracy": body["accuracy"],
                "test_auc": body["auc"],
                "sensitivity": body["sensitivity"],
                "specificity": body["specificity"],
                "confusion": body["confusion"],
                "n_test": body["n_test"],
                "n_train": body["n_train"],
                "n_val": body["n_val"],
                "test_patients": body["test_patients"],
                "tta": body["tta"],
                "corrupt_files": body["corrupt_files"],
            }
        elif kind == "fd_real_floor":
            floor = body
            result["fd_real_floor"] = body
        else:
            add_model_record(result, rec)
    for model in result["models"].values():
        if "fd" in model:
            model["fd_real_floor"] = floor
            model["fd_ratio"] = {k: model["fd"][k] / max(floor[k], 1e-9) for k in model["fd"]}
    result["classifiers"] = classifier_rows
    return result


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
        device=common.pick_device(),
        commit=common.git_commit(),
    )
    (ex.runs / models.EXPORT_LOG).unlink(missing_ok=True)
    judge = onnx_judge(Classifier.load(out / index["classifier"]["file"]))
    for name in cfg.only:
        entry = export_generator_runs(ex, name, judge)
        kept = [g for g in index["generators"] if g["name"] != name]
        index["generators"] = [*kept, entry]
        export_generator_training(ex, index, name)
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    result = json.loads((out / "metrics.json").read_text())
    trained_on = run_profile(ex.runs).get("hardware") or common.hardware()
    wrote = {"command": command, "git_commit": ex.commit, "hardware": common.hardware()}
    for name in cfg.only:
        model: dict[str, Any] = {"trained_on": trained_on}
        for r in read_jsonl(ex.runs / models.EXPORT_LOG):
            if r.get("name") != name:
                continue
            if r["kind"] == "generator":
                model["display_name"] = r["display_name"]
                model["cpu_latency_ms_one_cell"] = r["cpu_latency_ms_one_cell"]
            elif r["kind"] == "training":
                model["training"] = r["runs"]
                if r.get("known_fault"):
                    model["known_fault"] = r["known_fault"]
        result["models"][name] = model
        result.setdefault("written_by", {}).setdefault("generators", {})[name] = wrote
    save_metrics(out, result)
    return result


def main(argv: list[str] | None = None) -> None:
    cfg = common.parse_config(ExportConfig, argv)
    command = shlex.join([Path(sys.executable).name, "-m", "train.export", *sys.argv[1:]])
    if cfg.only:
        export_only(cfg, cfg.command or command)
        print(f"Exported {', '.join(cfg.only)} into {cfg.out}")
        return
    export_all(cfg)
    result = write_metrics(cfg, cfg.command or command)
    print(f"Exported to {cfg.out}: classifier accuracy {result['classifier']['test_accuracy']:.4f}")


if __name__ == "__main__":
    common.run_cli(main)
