"""Run the whole training path in order: classifiers, the report's DCGANs, the conditional GAN,
the loop throughput comparison, evaluation and export.

Usage:
    python -m train.pipeline --data DIR --out exported/ --profile gpu    # the release run
    python -m train.pipeline --data DIR --out exported/ --profile cpu    # two CPU cores, 90 min
    python -m train.pipeline --data DIR --out exported/ --smoke          # every stage, minutes
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
from train import (
    cgan,
    classifier,
    common,
    diagnose_cnn,
    evaluate,
    export,
    models,
    seed_gan,
    throughput,
)
from train.profiles import PROFILES, Profile

# Fewer GAN minutes than this would leave nothing worth evaluating.
MIN_GAN_MINUTES = 1.0
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
    """Options of the whole run; how long each stage trains comes from the profile."""

    data: str = field(default="", metadata={"help": "Folder in the NIH layout."})
    out: str = field(default="exported", metadata={"help": "Where the exported models go."})
    runs: str = field(default="runs", metadata={"help": "Folder for checkpoints and logs."})
    profile: str = field(
        default="gpu",
        metadata={
            "choices": tuple(PROFILES),
            "help": "Stage configs: gpu (release), cpu (two cores, 90 minutes), smoke (tests).",
        },
    )
    cache_dir: str = ""
    seed: int = 0
    stages: tuple[str, ...] = field(default=STAGES, metadata={"choices": STAGES})
    smoke: bool = field(default=False, metadata={"help": "The same as --profile smoke."})

    @property
    def chosen(self) -> Profile:
        """The profile this run uses (``--smoke`` wins)."""
        return PROFILES["smoke" if self.smoke else self.profile]


def stage_runners(cfg: PipelineConfig, plan: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """One callable per stage, each running its profile config with this run's paths.

    ``plan["gan_minutes"]``, when set by the time a GAN stage starts, is the conditional GAN's
    wall-time budget; the report's two DCGANs share the same minutes.
    """
    profile = cfg.chosen
    runs = Path(cfg.runs)
    paths = {"data": cfg.data, "cache_dir": cfg.cache_dir, "seed": cfg.seed}
    probe = str(runs / "classifier" / models.FINAL)

    def clf(name: str) -> Callable[[], Any]:
        stage_cfg = common.replace(profile.classifiers[name], out=str(runs / name), **paths)
        return lambda: classifier.train(stage_cfg)

    def budget(stage_cfg: Any, share: float) -> Any:
        minutes = plan.get("gan_minutes")
        return stage_cfg if minutes is None else common.replace(stage_cfg, minutes=minutes * share)

    def dcgans() -> None:
        for label in CLASSES:
            seed_gan.train(
                common.replace(
                    budget(profile.dcgan, 1 / len(CLASSES)),
                    out=str(runs / models.run_name("dcgan", label)),
                    class_name=label,
                    classifier=probe,
                    **paths,
                )
            )

    def measure_throughput() -> dict[str, Any]:
        opts = profile.throughput
        if opts.iterations <= 0:
            return {}
        splits = common.load_splits(
            cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=profile.smoke
        )
        cells = splits.train.images[splits.train.labels == 0]
        return throughput.measure(
            cells, iterations=opts.iterations, batch=opts.batch, warmup=opts.warmup
        ).as_dict()

    return {
        **{name: clf(name) for name in profile.classifiers},
        "diagnose_cnn": lambda: diagnose_cnn.diagnose(
            common.replace(profile.diagnosis, out=str(runs / models.DIAGNOSIS_FILE), **paths)
        ),
        "dcgan": dcgans,
        "cgan": lambda: cgan.train(
            common.replace(
                budget(profile.cgan, 1.0),
                out=str(runs / models.run_name("cgan")),
                classifier=probe,
                guide=str(runs / profile.cgan_guide / models.FINAL) if profile.cgan_guide else "",
                **paths,
            )
        ),
        "throughput": measure_throughput,
        "evaluate": lambda: evaluate.evaluate(
            common.replace(profile.evaluate, runs=str(runs), **paths)
        ),
        "export": lambda: export.export_all(
            common.replace(profile.export, runs=str(runs), out=cfg.out, seed=cfg.seed)
        ),
    }


def gan_minutes(profile: Profile, spent_seconds: float) -> float:
    """Minutes for the conditional GAN (and for the two DCGANs together) that keep the whole run
    within the profile's budget, at most the profile's own GAN minutes.

    What the stages before the GANs took is measured; what comes after them is the profile's
    reserve.
    """
    left = profile.budget_minutes - spent_seconds / 60 - profile.reserve_minutes
    return round(max(MIN_GAN_MINUTES, min(profile.cgan.minutes, left / len(models.GENERATORS))), 2)


def _append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(common.finite_json(record)) + "\n")


def run_pipeline(cfg: PipelineConfig, command: str) -> dict[str, Any]:
    """Run the chosen stages in order, one JSON line per finished stage in ``stages.jsonl``.

    A run started again with the same command appends to the log, skips the stages it finished
    and resumes the interrupted one from its checkpoints (the seconds of every finished attempt
    count, and a GAN stage counts the training seconds of every attempt);
    another command starts a new log.
    With the export stage, ``metrics.json`` is written last, from the JSON lines alone.

    Returns:
        The run's record: command, profile and seconds per stage.
    """
    runs = Path(cfg.runs)
    runs.mkdir(parents=True, exist_ok=True)
    log_path = runs / models.STAGES_LOG
    previous = export.read_jsonl(log_path)
    if not previous or previous[0].get("command") != command:
        log_path.unlink(missing_ok=True)
    profile = cfg.chosen
    _append(
        log_path,
        {
            "event": "start",
            "command": command,
            "profile": profile.name,
            "profile_summary": profile.summary,
            "git_commit": common.git_commit(),
            "hardware": common.hardware(),
        },
    )
    plan: dict[str, Any] = {}
    runners = stage_runners(cfg, plan)
    logged = export.read_jsonl(log_path)
    finished = {line["stage"] for line in logged if "stage" in line}
    for line in logged:
        if line.get("event") == "gan_minutes":
            plan["gan_minutes"] = line["minutes"]
    for name in STAGES:
        if name not in cfg.stages:
            continue
        if name in finished:
            common.log.info("Stage %s finished before this resumption", name)
            continue
        if name in models.GENERATORS and "gan_minutes" not in plan and profile.budget_minutes:
            plan["gan_minutes"] = gan_minutes(profile, export.run_profile(runs)["total_seconds"])
            _append(log_path, {"event": "gan_minutes", "minutes": plan["gan_minutes"]})
            common.log.info("GAN budget: %.1f minutes each", plan["gan_minutes"])
        common.log.info("Stage %s", name)
        t0 = time.perf_counter()
        result = runners[name]()
        line: dict[str, Any] = {"stage": name, "seconds": round(time.perf_counter() - t0, 2)}
        if name == "throughput":
            line["result"] = result
        _append(log_path, line)
    if "export" in cfg.stages:
        export.write_metrics(
            common.replace(profile.export, runs=str(runs), out=cfg.out), command=command
        )
    return export.run_profile(runs)


def main(argv: list[str] | None = None) -> None:
    cfg = common.parse_config(PipelineConfig, argv)
    command = shlex.join(
        ["python", "-m", "train.pipeline", *(sys.argv[1:] if argv is None else argv)]
    )
    record = run_pipeline(cfg, command)
    print(json.dumps(record["stage_seconds"], indent=2))


if __name__ == "__main__":
    common.run_cli(main)
