"""Run the whole training path in order: classifiers, the report's DCGANs, the conditional GAN,
the loop throughput comparison, evaluation and export.

Usage:
    python -m train.pipeline --data DIR --out exported/            # the release run (GPU)
    python -m train.pipeline --data DIR --out exported/ --smoke    # every stage in minutes on CPU
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from malgan.data import CLASSES
from train import cgan, classifier, common, diagnose_cnn, evaluate, export, seed_gan, throughput

STAGES = (
    "classifier",
    "resnet_plain",
    "cnn_report",
    "cnn_report_unit",
    "cnn_sound",
    "diagnose_cnn",
    "dcgan",
    "cgan",
    "throughput",
    "evaluate",
    "export",
)


@dataclass(frozen=True)
class PipelineConfig:
    """Options of the whole run."""

    data: str = field(default="", metadata={"help": "Folder in the NIH layout."})
    out: str = field(default="exported", metadata={"help": "Where the exported models go."})
    runs: str = field(default="runs", metadata={"help": "Folder for checkpoints and logs."})
    cache_dir: str = ""
    seed: int = 0
    seed_iterations: int = 15000
    cgan_iterations: int = 15000
    cgan_batch: int = 64
    classifier_epochs: int = 24
    cnn_epochs: int = field(
        default=30, metadata={"help": "Epochs of the report's CNN (report: 30)."}
    )
    throughput_iterations: int = field(default=300, metadata={"help": "0 skips the comparison."})
    diagnosis_epochs: int = field(
        default=3, metadata={"help": "Epochs of each variant of the report's-CNN diagnosis."}
    )
    eval_cells: int = field(default=1000, metadata={"help": "Generated cells per class judged."})
    tstr_per_class: int = 5000
    tstr_epochs: int = 10
    stages: tuple[str, ...] = field(default=STAGES, metadata={"choices": STAGES})
    smoke: bool = False


def stage_runners(cfg: PipelineConfig) -> dict[str, Callable[[], Any]]:
    """One callable per stage."""
    runs = Path(cfg.runs)
    shared = {"data": cfg.data, "cache_dir": cfg.cache_dir, "seed": cfg.seed, "smoke": cfg.smoke}
    probe = str(runs / "classifier" / classifier.FINAL)

    def clf(name: str, **kwargs: Any) -> Callable[[], Any]:
        return lambda: classifier.train(
            classifier.ClassifierConfig(out=str(runs / name), **shared, **kwargs)
        )

    def dcgans() -> None:
        for label in CLASSES:
            seed_gan.train(
                seed_gan.SeedGANConfig(
                    out=str(runs / f"dcgan_{label.lower()}"),
                    class_name=label,
                    iterations=cfg.seed_iterations,
                    classifier=probe,
                    **shared,
                )
            )

    def measure_throughput() -> dict[str, Any]:
        if cfg.throughput_iterations <= 0:
            return {}
        splits = common.load_splits(
            cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=cfg.smoke
        )
        cells = splits.train.images[splits.train.labels == 0]
        iterations = 4 if cfg.smoke else cfg.throughput_iterations
        # A smoke run only checks that both loops run: one untimed step each is enough.
        return throughput.measure(
            cells,
            iterations=iterations,
            batch=8 if cfg.smoke else 32,
            warmup=1 if cfg.smoke else throughput.WARMUP,
        ).as_dict()

    return {
        "classifier": clf(
            "classifier", arch="resnet", recipe="sound", epochs=cfg.classifier_epochs
        ),
        "resnet_plain": clf(
            "resnet_plain", arch="resnet", recipe="plain", lr=1e-3, epochs=cfg.classifier_epochs
        ),
        "cnn_report": clf(
            "cnn_report",
            arch="simple_cnn",
            recipe="report",
            lr=0.01,
            batch=32,
            input_scale="raw",
            epochs=cfg.cnn_epochs,
            bf16=False,
            select_best=False,
            halt_on_nonfinite=False,
        ),
        "cnn_report_unit": clf(
            "cnn_report_unit",
            arch="simple_cnn",
            recipe="report",
            lr=0.01,
            batch=32,
            input_scale="unit",
            epochs=cfg.cnn_epochs,
            bf16=False,
            select_best=False,
            halt_on_nonfinite=False,
        ),
        "cnn_sound": clf("cnn_sound", arch="simple_cnn", recipe="sound", epochs=cfg.cnn_epochs),
        "diagnose_cnn": lambda: diagnose_cnn.diagnose(
            diagnose_cnn.DiagnoseConfig(
                out=str(runs / export.DIAGNOSIS_FILE), epochs=cfg.diagnosis_epochs, **shared
            )
        ),
        "dcgan": dcgans,
        "cgan": lambda: cgan.train(
            cgan.CGANConfig(
                out=str(runs / "cgan"),
                iterations=cfg.cgan_iterations,
                batch=cfg.cgan_batch,
                classifier=probe,
                **shared,
            )
        ),
        "throughput": measure_throughput,
        "evaluate": lambda: evaluate.evaluate(
            evaluate.EvalConfig(
                runs=str(runs),
                n_cells=cfg.eval_cells,
                tstr_per_class=cfg.tstr_per_class,
                tstr_epochs=cfg.tstr_epochs,
                **shared,
            )
        ),
        "export": lambda: export.export_all(
            export.ExportConfig(runs=str(runs), out=cfg.out, seed=cfg.seed, smoke=cfg.smoke)
        ),
    }


def placeholder_reason(cfg: PipelineConfig) -> str:
    """Why models from this config are not release models ("" when they are)."""
    if cfg.smoke:
        return ""  # the index's smoke flag says it
    defaults = PipelineConfig()
    reduced = [
        f"{getattr(cfg, name):,} {what} instead of {getattr(defaults, name):,}"
        for name, what in (
            ("seed_iterations", "DCGAN iterations"),
            ("cgan_iterations", "conditional-GAN iterations"),
            ("classifier_epochs", "classifier epochs"),
            ("cnn_epochs", "simple-CNN epochs"),
        )
        if getattr(cfg, name) < getattr(defaults, name)
    ]
    if not reduced:
        return ""
    return (
        "These models are **previews trained at reduced size** ("
        + "; ".join(reduced)
        + "). Their figures are real measurements of these previews, not of the release models."
    )


def run_pipeline(cfg: PipelineConfig, command: str) -> dict[str, Any]:
    """Run the chosen stages in order, recording each one's wall time in ``stages.json``."""
    runs = Path(cfg.runs)
    runs.mkdir(parents=True, exist_ok=True)
    stages_path = runs / export.STAGES_FILE
    record: dict[str, Any] = {"command": command, "stage_seconds": {}, "throughput": {}}
    record["placeholder"] = placeholder_reason(cfg)
    if stages_path.exists():
        previous = json.loads(stages_path.read_text())
        if previous.get("command") == command:
            record = {**previous, "placeholder": record["placeholder"]}
    runners = stage_runners(cfg)
    started = time.perf_counter()
    for name in STAGES:
        if name not in cfg.stages:
            continue
        common.log.info("Stage %s", name)
        t0 = time.perf_counter()
        if name == "export":
            record["stage_seconds"]["total_before_export"] = sum(record["stage_seconds"].values())
            stages_path.write_text(json.dumps(record, indent=2))
        result = runners[name]()
        record["stage_seconds"][name] = round(time.perf_counter() - t0, 2)
        if name == "throughput":
            record["throughput"] = result
        stages_path.write_text(json.dumps(record, indent=2))
    record["total_seconds"] = round(time.perf_counter() - started, 2)
    stages_path.write_text(json.dumps(record, indent=2))
    metrics_path = Path(cfg.out) / "metrics.json"
    if "export" in cfg.stages and metrics_path.exists():
        # Export writes metrics.json before its own time is known; add it now.
        written = json.loads(metrics_path.read_text())
        written["stage_seconds"] = record["stage_seconds"]
        written["total_seconds"] = record["total_seconds"]
        metrics_path.write_text(json.dumps(written, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    cfg = common.parse_config(PipelineConfig, argv)
    command = shlex.join(
        ["python", "-m", "train.pipeline", *(sys.argv[1:] if argv is None else argv)]
    )
    record = run_pipeline(cfg, command)
    print(json.dumps(record["stage_seconds"], indent=2))


if __name__ == "__main__":
    common.run_cli(main)
