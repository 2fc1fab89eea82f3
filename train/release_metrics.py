"""``metrics.json``, assembled from a run's JSON lines: the evaluation's records, the export's
and the pipeline's stages (command, commit, hardware and seconds per stage).

``train.export`` writes the models, the index and the snapshots; this module writes the
figures beside them, afresh (``write_metrics``) or for some generators (``update_metrics``,
``replace_generators``), in the layout ``malgan.release`` defines.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from malgan import release
from train import models
from train.runs import finite_json, git_commit, hardware, load_checkpoint

if TYPE_CHECKING:
    from train.export import ExportConfig


# The pipeline's record of a run.
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (none when it is missing)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loop_states(runs: Path, generator: str) -> dict[str, dict[str, Any]]:
    """The final loop state (iterations, training seconds over every attempt, ...) of each of a
    generator's finished runs, by run folder name."""
    paths = {run: runs / run / models.FINAL for run in models.generator_runs(generator).values()}
    return {run: load_checkpoint(p)["state"] for run, p in paths.items() if p.exists()}


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


# metrics.json.
def write_metrics(cfg: ExportConfig, command: str = "") -> dict[str, Any]:
    """Write ``metrics.json`` from the evaluation, export and pipeline JSON lines."""
    runs, out = Path(cfg.runs), Path(cfg.out)
    eval_dir = Path(cfg.eval_dir or runs / models.EVAL_DIR)
    exported = read_jsonl(runs / models.EXPORT_LOG)
    run = run_profile(runs)
    result = release.assemble_metrics(
        read_jsonl(eval_dir / models.EVAL_LOG),
        release.model_entries(exported),
        release.classifier_rows(exported),
    )
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
            "git_commit": run.get("git_commit") or git_commit(),
            "command": run.get("command") or command,
            "profile": run.get("profile", "smoke" if cfg.smoke else ""),
            "profile_summary": run.get("profile_summary", ""),
            "hardware": run.get("hardware") or hardware(),
            # The command and commit that wrote this file (a run's export may be run again alone).
            "written_by": {
                "command": command,
                "git_commit": git_commit(),
                "hardware": hardware(),
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
    (out / "metrics.json").write_text(json.dumps(finite_json(result), indent=2) + "\n")


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
        release.file_record(result, rec)
        written.setdefault(rec["metric"], {})[rec["model"]] = provenance
    save_metrics(out, result)
    return result


def replace_generators(
    out: Path, runs: Path, names: tuple[str, ...], wrote: dict[str, Any]
) -> dict[str, Any]:
    """Start the ``metrics.json`` entries of ``names`` afresh from the export's JSON lines.

    Each entry says how the generator trained, on what machine (``trained_on``) and what wrote
    it (``written_by["generators"]``); its figures come later from an evaluation.

    Returns:
        The updated metrics.
    """
    result = json.loads((out / "metrics.json").read_text())
    trained_on = run_profile(runs).get("hardware") or hardware()
    exported = read_jsonl(runs / models.EXPORT_LOG)
    entries = release.model_entries(exported)
    for name in names:
        model: dict[str, Any] = {"trained_on": trained_on, **entries.get(name, {})}
        if "training" in model:
            # Whether the generator learnt from the judge: recovery is a fair test only if not.
            judge = (result.get("classifier") or {}).get("name", "classifier")
            guides = release.training_guides(exported, name)
            model["judges"] = {
                "classifier": judge,
                "classifier_independent": judge not in guides,
                "guides": guides,
            }
        result[release.MODELS][name] = model
        result.setdefault("written_by", {}).setdefault("generators", {})[name] = wrote
    save_metrics(out, result)
    return result
