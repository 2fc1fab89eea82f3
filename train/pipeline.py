"""Run the whole training path in order: classifiers, the report's DCGANs, the conditional GAN,
the loop throughput comparison, evaluation and export.

Usage:
    python -m train.pipeline --data DIR --out exported/ --profile gpu    # the release run
    python -m train.pipeline --data DIR --out exported/ --profile cpu    # two CPU cores, 90 min
    python -m train.pipeline --data DIR --out exported/ --smoke          # every stage, minutes
    python -m train.pipeline ... --real-sample 512   # ship real test-patient cells (public data)

With ``--jobs N`` (the gpu profile's default is 4), up to N stages train side by side, each in
its own process, as soon as the stages they need have finished: on one GPU, loops bound by kernel
launches leave it idle most of the time. The throughput comparison always runs alone.

Run again on the same run folder with the same data, profile and seed, the pipeline skips every
stage that finished and whose outputs are all there, and says so; ``--rerun`` trains the chosen
stages again from scratch.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import queue
import shlex
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from malgan import artifacts, release
from malgan import real_sample as shipped_sample
from malgan.data import CLASSES
from train import (
    cgan,
    classifier,
    config,
    diagnose_cnn,
    evaluate,
    export,
    models,
    real_sample,
    release_metrics,
    seed_gan,
    throughput,
)
from train.profiles import PROFILES, Profile
from train.runs import finite_json, git_commit, hardware, log
from train.splits import load_splits

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
# What a stage needs finished before it starts; the stages after the GANs need every earlier one
# (see ``dependencies``).
NEEDS = {"dcgan": ("classifier",), "cgan": ("classifier",)}
# Side by side, a stage may train in parts: the report's DCGAN is one network per class.
TASKS = {"dcgan": tuple(f"dcgan/{label}" for label in CLASSES)}
# Which ready stage starts first when several may: the longest chains first.
PRIORITY = (
    "classifier",
    "cnn_sound",
    "cgan",
    "dcgan",
    "resnet_plain",
    "cnn_report",
    "cnn_report_unit",
    "diagnose_cnn",
    "throughput",
    "evaluate",
    "export",
)
# Stages whose return value goes into the log (and from there into metrics.json).
LOGGED_RESULTS = ("throughput",)
# How often the scheduler looks for a stage process that died without a word.
POLL_SECONDS = 5.0


@dataclass(frozen=True)
class PipelineConfig:
    """Options of the whole run; how long each stage trains comes from the profile."""

    data: str = field(
        default="", metadata={"help": "Folder in the NIH layout (required).", "required": True}
    )
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
    seed: int = field(default=0, metadata={"min": 0})
    stages: tuple[str, ...] = field(default=STAGES, metadata={"choices": STAGES})
    jobs: int = field(
        default=0,
        metadata={"help": "Stages trained side by side (0: the profile's; 1: one after another)."},
    )
    smoke: bool = field(default=False, metadata={"help": "The same as --profile smoke."})
    real_sample: int = field(
        default=0,
        metadata={
            "help": "Also write this many real cells of the test patients into OUT for the "
            "'Real or synthetic?' page (0: none; only for data that may be shown)."
        },
    )
    rerun: bool = field(
        default=False,
        metadata={
            "help": "Run the chosen stages again from scratch, deleting their run folders, even "
            "where an earlier run finished them (by default a finished stage is skipped)."
        },
    )

    @property
    def chosen(self) -> Profile:
        """The profile this run uses (``--smoke`` wins)."""
        return PROFILES["smoke" if self.smoke else self.profile]

    @property
    def parallel(self) -> int:
        """How many stages may run at once."""
        return max(1, self.jobs or self.chosen.jobs)

    @property
    def settings(self) -> dict[str, Any]:
        """What decides the stages' results, as the stage log records it: a run folder trained
        with other data, another profile or another seed starts again from its first stage."""
        return {"data": self.data, "profile": self.chosen.name, "seed": self.seed}


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
        stage_cfg = config.replace(profile.classifiers[name], out=str(runs / name), **paths)
        return lambda: classifier.train(stage_cfg)

    def budget(stage_cfg: Any, share: float) -> Any:
        minutes = plan.get("gan_minutes")
        return stage_cfg if minutes is None else config.replace(stage_cfg, minutes=minutes * share)

    def dcgan(label: str) -> None:
        seed_gan.train(
            config.replace(
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
        splits = load_splits(cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=profile.smoke)
        cells = splits.train.images[splits.train.labels == 0]
        return throughput.measure(
            cells, iterations=opts.iterations, batch=opts.batch, warmup=opts.warmup
        ).as_dict()

    return {
        **{name: clf(name) for name in profile.classifiers},
        "diagnose_cnn": lambda: diagnose_cnn.diagnose(
            config.replace(profile.diagnosis, out=str(runs / models.DIAGNOSIS_FILE), **paths)
        ),
        "dcgan": lambda: [dcgan(label) for label in CLASSES],
        **dict(zip(TASKS["dcgan"], (partial(dcgan, label) for label in CLASSES), strict=True)),
        "cgan": lambda: cgan.train(
            config.replace(
                budget(profile.cgan, 1.0),
                out=str(runs / models.run_name("cgan")),
                classifier=probe,
                guide=str(runs / profile.cgan_guide / models.FINAL) if profile.cgan_guide else "",
                **paths,
            )
        ),
        "throughput": measure_throughput,
        "evaluate": lambda: evaluate.evaluate(
            config.replace(profile.evaluate, runs=str(runs), **paths)
        ),
        "export": lambda: export_stage(cfg, profile, runs),
    }


def export_stage(cfg: PipelineConfig, profile: Profile, runs: Path) -> dict[str, Any]:
    """Export the runs; with ``--real-sample N``, also write the real sample (off by default:
    users train on private scans, which must not leave with the models)."""
    index = export.export_all(
        config.replace(profile.export, runs=str(runs), out=cfg.out, seed=cfg.seed)
    )
    if cfg.real_sample > 0:
        real_sample.write_real_sample(
            real_sample.RealSampleConfig(
                data=cfg.data,
                out=cfg.out,
                n=cfg.real_sample,
                seed=cfg.seed,
                cache_dir=cfg.cache_dir,
                smoke=profile.smoke,
            ),
            command=f"python -m train.pipeline --real-sample {cfg.real_sample}",
        )
    return index


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
        fh.write(json.dumps(finite_json(record)) + "\n")


def _stage_line(name: str, seconds: float, result: Any) -> dict[str, Any]:
    """A finished stage's line in ``stages.jsonl`` (with its result where that is logged)."""
    line: dict[str, Any] = {"stage": name, "seconds": round(seconds, 2)}
    if name in LOGGED_RESULTS:
        line["result"] = result
    return line


def _run_in_order(
    cfg: PipelineConfig, plan: dict[str, Any], todo: list[str], log_path: Path
) -> None:
    """Run the stages of ``todo`` one after another in this process."""
    profile = cfg.chosen
    runners = stage_runners(cfg, plan)
    for name in todo:
        if name in models.GENERATORS and "gan_minutes" not in plan and profile.budget_minutes:
            spent = release_metrics.run_profile(Path(cfg.runs))["total_seconds"]
            plan["gan_minutes"] = gan_minutes(profile, spent)
            _append(log_path, {"event": "gan_minutes", "minutes": plan["gan_minutes"]})
            log.info("GAN budget: %.1f minutes each", plan["gan_minutes"])
        log.info("Stage %s", name)
        t0 = time.perf_counter()
        result = runners[name]()
        _append(log_path, _stage_line(name, time.perf_counter() - t0, result))


def dependencies(profile: Profile, todo: list[str]) -> dict[str, set[str]]:
    """The stages of ``todo`` that each stage of ``todo`` waits for.

    The conditional GAN learns from its guide and is probed by our classifier, as the DCGANs are;
    the throughput comparison, evaluation and export wait for every stage before them (so the
    comparison's timings run alone).
    """
    needs = {name: set(NEEDS.get(name, ())) for name in STAGES}
    if profile.cgan_guide:
        needs["cgan"].add(profile.cgan_guide)
    first_after_training = STAGES.index("throughput")
    for i in range(first_after_training, len(STAGES)):
        needs[STAGES[i]] = set(STAGES[:i])
    return {name: needs[name] & set(todo) for name in todo}


def stage_outputs(cfg: PipelineConfig, name: str) -> list[Path]:
    """The files a finished stage leaves (none for the throughput comparison, whose result is
    its line in the stage log)."""
    runs, profile = Path(cfg.runs), cfg.chosen
    if name in profile.classifiers:
        return [runs / name / models.FINAL]
    if name in models.GENERATORS:
        return [runs / run / models.FINAL for run in models.generator_runs(name).values()]
    if name == "diagnose_cnn":
        return [runs / models.DIAGNOSIS_FILE]
    if name == "evaluate":
        return [Path(profile.evaluate.out or runs / models.EVAL_DIR) / models.EVAL_LOG]
    if name == "export":
        out = Path(cfg.out)
        files = [out / artifacts.INDEX_NAME, out / artifacts.METRICS_NAME]
        if cfg.real_sample > 0:
            files += [out / shipped_sample.SHEET_NAME, out / shipped_sample.SIDECAR_NAME]
        return files
    return []


def stages_to_run(cfg: PipelineConfig, finished: set[str]) -> tuple[list[str], dict[str, str]]:
    """Which chosen stages run, and why each of the others is skipped (or why a finished one
    runs again).

    A chosen stage is skipped when the stage log says it finished and every file it leaves is
    there (``stage_outputs``), unless a stage it needs runs (its outputs would be stale), or
    ``--rerun`` asks for every chosen stage.

    Returns:
        ``(todo, reasons)``: the stages to run in ``STAGES`` order, and a sentence per chosen
        stage saying why it is skipped or, when it had finished, why it runs again.
    """
    needs = dependencies(cfg.chosen, list(STAGES))
    todo: list[str] = []
    reasons: dict[str, str] = {}
    for name in (n for n in STAGES if n in cfg.stages):
        missing = [str(path) for path in stage_outputs(cfg, name) if not path.is_file()]
        stale = sorted(needs[name] & set(todo), key=STAGES.index)
        if cfg.rerun or name not in finished:
            todo.append(name)
        elif missing:
            todo.append(name)
            verb = "is" if len(missing) == 1 else "are"
            reasons[name] = (
                f"runs again: it finished before, but {', '.join(missing)} {verb} missing"
            )
        elif stale:
            todo.append(name)
            reasons[name] = f"runs again: it needs {', '.join(stale)}, which runs again"
        else:
            kept = ", ".join(str(p) for p in stage_outputs(cfg, name)) or "its logged result"
            reasons[name] = f"skipped: finished in an earlier run, outputs complete ({kept})"
    return todo, reasons


def _forget(log_path: Path, stages: list[str]) -> None:
    """Drop the stage log's lines of ``stages``, which run again: their seconds start anew."""
    kept = [
        line for line in release_metrics.read_jsonl(log_path) if line.get("stage") not in stages
    ]
    log_path.write_text("".join(json.dumps(line) + "\n" for line in kept), encoding="utf-8")


def _clear_runs(cfg: PipelineConfig, stages: list[str]) -> None:
    """Delete the run folders of the training stages in ``stages`` (for ``--rerun``), so they
    train from scratch instead of resuming from their last checkpoint."""
    for name in stages:
        if name in cfg.chosen.classifiers or name in models.GENERATORS:
            for path in stage_outputs(cfg, name):
                shutil.rmtree(path.parent, ignore_errors=True)


def _stage_process(
    cfg: PipelineConfig, task: str, plan: dict[str, Any], threads: int, results: Any
) -> None:
    """Run one stage (or one part of it) in a process of its own and report to ``results``:
    ``(task, start, end, result, error)``, with wall-clock times."""
    config.configure_logging()
    torch.set_num_threads(threads)
    start = time.time()
    try:
        result = stage_runners(cfg, plan)[task]()
        results.put((task, start, time.time(), result if task in LOGGED_RESULTS else None, None))
    except Exception as err:
        if not isinstance(err, config.EXPECTED_ERRORS):
            err = RuntimeError(f"Stage {task} failed:\n{traceback.format_exc()}")
        try:
            pickle.dumps(err)
        except Exception:
            err = RuntimeError(f"Stage {task} failed: {err}")
        results.put((task, start, time.time(), None, err))


def _run_side_by_side(
    cfg: PipelineConfig, plan: dict[str, Any], todo: list[str], log_path: Path
) -> None:
    """Run the stages of ``todo``, up to ``cfg.parallel`` at once, each in its own process.

    A stage starts once the stages it needs have finished (``dependencies``); of those ready,
    the first in ``PRIORITY``. A stage's seconds span its parts' wall time. The first failure
    stops the others and is raised.
    """
    if not todo:
        return
    # Decode the data (or fill its cache) once, not in every stage at the same time.
    load_splits(cfg.data, cache_dir=cfg.cache_dir, seed=cfg.seed, smoke=cfg.chosen.smoke)
    needs = dependencies(cfg.chosen, todo)
    waiting = sorted(todo, key=PRIORITY.index)
    parts = {name: list(TASKS.get(name, (name,))) for name in todo}
    parts_left = {name: len(tasks) for name, tasks in parts.items()}
    spans: dict[str, tuple[float, float]] = {}
    done: set[str] = set()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    running: dict[str, Any] = {}
    threads = max(1, (os.cpu_count() or 1) // cfg.parallel)
    try:
        while waiting or running:
            for name in [n for n in waiting if needs[n] <= done]:
                while parts[name] and len(running) < cfg.parallel:
                    task = parts[name].pop(0)
                    log.info("Stage %s started", task)
                    running[task] = context.Process(
                        target=_stage_process,
                        args=(cfg, task, plan, threads, results),
                        name=task.replace("/", "-"),
                    )
                    running[task].start()
                if not parts[name]:
                    waiting.remove(name)
            try:
                task, start, end, result, error = results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                for task, proc in running.items():
                    if proc.exitcode not in (None, 0):
                        raise RuntimeError(
                            f"Stage {task} stopped with exit code {proc.exitcode}"
                        ) from None
                continue
            running.pop(task).join()
            if error is not None:
                raise error
            name = task.split("/")[0]
            first, last = spans.get(name, (start, end))
            spans[name] = (min(first, start), max(last, end))
            parts_left[name] -= 1
            if parts_left[name] == 0:
                seconds = spans[name][1] - spans[name][0]
                _append(log_path, _stage_line(name, seconds, result))
                done.add(name)
                log.info("Stage %s finished in %.1f s", name, seconds)
    finally:
        for proc in running.values():
            proc.terminate()
            proc.join()


def _same_run(logged: list[dict[str, Any]], cfg: PipelineConfig, command: str) -> bool:
    """Whether a stage log is of a run with this run's settings, as its last start line records
    them (a line written before settings were recorded: of this very command)."""
    starts = [line for line in logged if line.get("event") == "start"]
    if not starts:
        return False
    if "settings" in starts[-1]:
        return starts[-1]["settings"] == cfg.settings
    return starts[-1].get("command") == command


def run_pipeline(cfg: PipelineConfig, command: str) -> dict[str, Any]:
    """Run the chosen stages in order, one JSON line per finished stage in ``stages.jsonl``.

    A run started again on the same run folder with the same data, profile and seed appends to
    the log, skips every stage it finished whose outputs are all there (``stages_to_run``) and
    resumes an interrupted one from its checkpoints (the seconds of every finished attempt
    count, and a GAN stage counts the training seconds of every attempt); other settings start
    a new log, and ``--rerun`` runs the chosen stages again from scratch.
    With the export stage, ``metrics.json`` is written last, from the JSON lines alone.

    Returns:
        The run's record: command, profile and seconds per stage.
    """
    runs = Path(cfg.runs)
    if cfg.parallel > 1 and cfg.chosen.budget_minutes:
        raise ValueError(
            f"The {cfg.chosen.name} profile's wall-time budget shares its minutes between "
            "stages that run one after another: use --jobs 1."
        )
    runs.mkdir(parents=True, exist_ok=True)
    log_path = runs / models.STAGES_LOG
    previous = release_metrics.read_jsonl(log_path)
    if not _same_run(previous, cfg, command):
        log_path.unlink(missing_ok=True)
    profile = cfg.chosen
    _append(
        log_path,
        {
            "event": "start",
            "command": command,
            "settings": cfg.settings,
            "profile": profile.name,
            release.PROFILE_SUMMARY: profile.summary,
            "git_commit": git_commit(),
            "hardware": hardware(),
            "jobs": cfg.parallel,
        },
    )
    plan: dict[str, Any] = {}
    logged = release_metrics.read_jsonl(log_path)
    finished = {line["stage"] for line in logged if "stage" in line}
    for line in logged:
        if line.get("event") == "gan_minutes":
            plan["gan_minutes"] = line["minutes"]
    todo, reasons = stages_to_run(cfg, finished)
    for name, reason in reasons.items():
        log.info("Stage %s %s", name, reason)
    if set(cfg.stages) - set(todo):
        log.info("Pass --rerun to run the skipped stages again from scratch.")
    _forget(log_path, [name for name in todo if name in finished])
    if cfg.rerun:
        _clear_runs(cfg, todo)
    t0 = time.perf_counter()
    if cfg.parallel > 1:
        _run_side_by_side(cfg, plan, todo, log_path)
    else:
        _run_in_order(cfg, plan, todo, log_path)
    _append(log_path, {"event": "wall", "seconds": round(time.perf_counter() - t0, 2)})
    if "export" in todo:
        release_metrics.write_metrics(
            config.replace(profile.export, runs=str(runs), out=cfg.out), command=command
        )
    return release_metrics.run_profile(runs)


def main(argv: list[str] | None = None) -> None:
    cfg = config.parse_config(PipelineConfig, argv)
    command = shlex.join(
        ["python", "-m", "train.pipeline", *(sys.argv[1:] if argv is None else argv)]
    )
    record = run_pipeline(cfg, command)
    print(json.dumps(record["stage_seconds"], indent=2))


if __name__ == "__main__":
    config.run_cli(main)
