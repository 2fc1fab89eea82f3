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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from malgan import latent, metrics
from malgan.data import CLASSES
from malgan.export import export_classifier, export_generator
from malgan.runtime import Classifier, Generator, sha256_file
from train import common
from train.classifier import predict, rebuild
from train.evaluate import DIRECTION_SEED, EVAL_LOG, REFERENCE, load_generator_runs
from train.gan_loop import FINAL as GAN_FINAL
from train.gan_loop import SNAPSHOT_DIR

STAGES_FILE = "stages.json"
DIAGNOSIS_FILE = "diagnose_cnn.json"
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


@torch.no_grad()
def generator_directions(
    net: torch.nn.Module,
    labels: tuple[str, ...],
    conditional: bool,
    clf: torch.nn.Module,
    input_scale: str,
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
        pix = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        proba, _ = predict(clf, pix, input_scale)
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


def export_all(cfg: ExportConfig) -> dict[str, Any]:
    """Write every model, the index and ``metrics.json``."""
    if cfg.smoke:
        cfg = smoke_config(cfg)
    runs, out = Path(cfg.runs), Path(cfg.out)
    eval_dir = Path(cfg.eval_dir or runs / "eval")
    out.mkdir(parents=True, exist_ok=True)
    device = common.pick_device()
    commit = common.git_commit()
    command = cfg.command or shlex.join(
        [Path(sys.executable).name, "-m", "train.export", *sys.argv[1:]]
    )
    index: dict[str, Any] = {"smoke": cfg.smoke, "git_commit": commit, "generators": []}

    # Classifiers.
    rows = []
    main_clf = None
    for name, display in CLASSIFIER_RUNS.items():
        path = runs / name / "model.pt"
        if not path.exists():
            continue
        ckpt = common.load_checkpoint(path, device)
        net = rebuild(ckpt)
        file = "classifier.onnx" if name == "classifier" else f"classifier_{name}.onnx"
        meta = export_classifier(
            net,
            out / file,
            name=name,
            display_name=display,
            classes=list(CLASSES),
            input_scale=ckpt["input_scale"],
            provenance={
                "source_checkpoint": str(path),
                "git_commit": commit,
                "tta": ckpt["tta"],
                "recipe": ckpt["summary"]["recipe"],
                "arch": ckpt["summary"]["arch"],
            },
        )
        summary = ckpt["summary"]
        test = summary["results"]["tta" if ckpt["tta"] else "plain"]["test"]
        rows.append(
            {
                "name": name,
                "display_name": display,
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
                "accuracy_without_tta": summary["results"]["plain"]["test"]["accuracy"],
                "accuracy_with_tta": summary["results"]["tta"]["test"]["accuracy"],
                "parameters": summary["parameters"],
                "cpu_latency_ms": cpu_latency_ms(Classifier.load(out / file), cfg.latency_runs),
                "onnx_bytes": meta["bytes"],
                "train_seconds": summary.get("train_seconds"),
                "diverged_at_epoch": summary.get("diverged_at_epoch"),
            }
        )
        if name == "classifier":
            main_clf = (net.to(device), ckpt["input_scale"])
            index["classifier"] = {"name": name, "file": file}
            (out / "history").mkdir(exist_ok=True)
            (out / "history" / "classifier.json").write_text(json.dumps(summary["history"]))
    if main_clf is None:
        raise FileNotFoundError(f"No trained classifier in {runs / 'classifier'}.")
    index["classifiers"] = [{"name": r["name"], "file": r["file"]} for r in rows]

    # Generators, with their latent directions.
    models: dict[str, Any] = {}
    for name, display in GENERATOR_NAMES.items():
        gen = load_generator_runs(runs, name, device)
        if gen.conditional:
            net = gen.nets["*"]
            dirs = generator_directions(net, CLASSES, True, *main_clf, cfg, device)
            file = f"{name}.onnx"
            export_generator(
                net,
                out / file,
                name=name,
                display_name=display,
                classes=list(CLASSES),
                provenance={
                    "source_checkpoint": str(runs / name / GAN_FINAL),
                    "git_commit": commit,
                },
                directions=dirs,
            )
            entry: dict[str, Any] = {"name": name, "display_name": display, "file": file}
            latency = cpu_latency_ms(Generator.load(out / file), cfg.latency_runs)
        else:
            files = {}
            for label, net in gen.nets.items():
                dirs = generator_directions(net, (label,), False, *main_clf, cfg, device)
                file = f"{name}_{label.lower()}.onnx"
                source = runs / f"{name}_{label.lower()}" / GAN_FINAL
                export_generator(
                    net,
                    out / file,
                    name=f"{name}_{label.lower()}",
                    display_name=f"{display}: {label}",
                    classes=[label],
                    provenance={"source_checkpoint": str(source), "git_commit": commit},
                    directions=dirs,
                )
                files[label] = file
            entry = {"name": name, "display_name": display, "files": files}
            latency = cpu_latency_ms(Generator.load(out / files[CLASSES[0]]), cfg.latency_runs)
        index["generators"].append(entry)
        models[name] = {"display_name": display, "cpu_latency_ms_one_cell": latency}

    # Training reference (privacy filter, OOD warnings).
    shutil.copyfile(eval_dir / REFERENCE, out / REFERENCE)
    index["reference"] = {"file": REFERENCE, "sha256": sha256_file(out / REFERENCE)}

    # Snapshots and histories.
    index["snapshots"], index["history"] = {}, {"classifier": "history/classifier.json"}
    run_dirs = {"cgan": ["cgan"], "dcgan": [f"dcgan_{c.lower()}" for c in CLASSES]}
    for name, dirs in run_dirs.items():
        dest = out / "snapshots" / name
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        snaps, losses, probes, its = [], {}, {}, {}
        for run_name in dirs:
            for src in sorted((runs / run_name / SNAPSHOT_DIR).glob("*_iter_*.png")):
                label, _, iteration = src.stem.rpartition("_iter_")
                shutil.copyfile(src, dest / src.name)
                snaps.append(
                    {
                        "class": label,
                        "iteration": int(iteration),
                        "file": f"snapshots/{name}/{src.name}",
                    }
                )
            state = common.load_checkpoint(runs / run_name / GAN_FINAL)["state"]
            losses[run_name] = _thin(state["losses"])
            probes[run_name] = state["probes"]
            its[run_name] = {
                "iterations": state["iteration"],
                "train_seconds": state["train_seconds"],
                "iterations_per_second": state["iteration"] / max(state["train_seconds"], 1e-9),
            }
        index["snapshots"][name] = sorted(snaps, key=lambda s: (s["class"], s["iteration"]))
        history = {"losses": losses, "probes": probes}
        (out / "history" / f"{name}.json").write_text(json.dumps(history))
        index["history"][name] = f"history/{name}.json"
        models[name]["training"] = its

    # Metrics, assembled from the evaluation's JSON lines.
    records = [json.loads(line) for line in (eval_dir / EVAL_LOG).read_text().splitlines() if line]
    stages_path = runs / STAGES_FILE
    stages = json.loads(stages_path.read_text()) if stages_path.exists() else {}
    result = assemble_metrics(records, models, rows)
    diagnosis_path = runs / DIAGNOSIS_FILE
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
            "git_commit": commit,
            "command": stages.get("command", command),
            "hardware": common.hardware(),
            "stage_seconds": stages.get("stage_seconds", {}),
            "throughput": stages.get("throughput", {}),
            "smoke": cfg.smoke,
            "placeholder": stages.get("placeholder", ""),
        }
    )
    index["placeholder"] = stages.get("placeholder", "")
    (out / "metrics.json").write_text(json.dumps(common.finite_json(result), indent=2) + "\n")
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return result


def assemble_metrics(
    records: list[dict[str, Any]], models: dict[str, Any], classifier_rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """Turn evaluation records into the ``metrics.json`` layout the dashboard reads."""
    result: dict[str, Any] = {"models": {k: dict(v) for k, v in models.items()}}
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
            model = result["models"].setdefault(rec["model"], {})
            if kind == "tstr":
                model["tstr_accuracy"] = body["accuracy"]
                model["tstr"] = body
            else:
                model[kind] = body
    for model in result["models"].values():
        if "fd" in model:
            model["fd_real_floor"] = floor
            model["fd_ratio"] = {k: model["fd"][k] / max(floor[k], 1e-9) for k in model["fd"]}
    result["classifiers"] = classifier_rows
    return result


def main(argv: list[str] | None = None) -> None:
    cfg = common.parse_config(ExportConfig, argv)
    result = export_all(cfg)
    print(f"Exported to {cfg.out}: classifier accuracy {result['classifier']['test_accuracy']:.4f}")


if __name__ == "__main__":
    common.run_cli(main)
