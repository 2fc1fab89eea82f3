"""``metrics.json``, assembled from a run's JSON lines: the evaluation's records, the export's
and the pipeline's stages (command, commit, hardware and seconds per stage).

``train.export`` writes the models, the index and the snapshots; this module writes the
figures beside them, afresh (``write_metrics``) or for some generators (``update_metrics``,
``replace_generators``), in the layout ``malgan.release`` defines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
    record: dict[str, Any] = {
        release.STAGE_SECONDS: {},
        release.THROUGHPUT: {},
        release.LOOP_SECONDS: {},
    }
    seconds = record[release.STAGE_SECONDS]
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
    combine = max if record.get(release.JOBS, 1) > 1 else sum
    for stage in set(seconds) & set(models.GENERATORS):
        trained = round(combine(s["train_seconds"] for s in loop_states(runs, stage).values()), 2)
        record[release.LOOP_SECONDS][stage] = trained
        seconds[stage] = max(seconds[stage], trained)
    record[release.TOTAL_SECONDS] = round(sum(seconds.values()), 2)
    record[release.WALL_SECONDS] = round(wall, 2)
    return record


def run_minutes(run: dict[str, Any]) -> float:
    """How long a run trained: the sum of its stages' seconds, or, where stages ran side by
    side, the wall time of its attempts."""
    side_by_side = run.get(release.JOBS, 1) > 1 and run[release.WALL_SECONDS] > 0
    return round(
        (run[release.WALL_SECONDS] if side_by_side else run[release.TOTAL_SECONDS]) / 60, 1
    )


# export.jsonl: what the release writer logged of each model it exported, by kind.
EXPORT_KIND = "kind"
GENERATOR_EXPORT = "generator"


def generator_export_record(name: str, display_name: str, latency_ms: float) -> dict[str, Any]:
    """The export log's record of one generator."""
    shown = {release.DISPLAY_NAME: display_name, release.LATENCY: latency_ms}
    return {EXPORT_KIND: GENERATOR_EXPORT, release.NAME: name, **shown}


def training_export_record(
    name: str, runs: dict[str, Any], guides: list[str], known_fault: str | None
) -> dict[str, Any]:
    """The export log's record of how one generator trained (its runs, guides and fault)."""
    rec = {EXPORT_KIND: release.TRAINING, release.NAME: name, "runs": runs, "guides": guides}
    if known_fault:
        rec[release.KNOWN_FAULT] = known_fault
    return rec


def classifier_export_record(row: Mapping[str, Any], onnx_bytes: int) -> dict[str, Any]:
    """The export log's record of one classifier: its comparison-table row and file size."""
    return {EXPORT_KIND: release.CLASSIFIER, **row, release.ONNX_BYTES: onnx_bytes}


def model_entries(export_records: list[dict[str, Any]]) -> dict[str, release.ModelMetrics]:
    """Each exported generator's entry of ``metrics.json`` before its figures: display name,
    latency, how it trained and its known fault, from the export log."""
    entries: dict[str, Any] = {}
    for r in export_records:
        if r[EXPORT_KIND] == GENERATOR_EXPORT:
            entry = entries.setdefault(r[release.NAME], {})
            entry[release.DISPLAY_NAME] = r[release.DISPLAY_NAME]
            entry[release.LATENCY] = r[release.LATENCY]
        elif r[EXPORT_KIND] == release.TRAINING:
            entry = entries.setdefault(r[release.NAME], {})
            entry[release.TRAINING] = r["runs"]
            if r.get(release.KNOWN_FAULT):
                entry[release.KNOWN_FAULT] = r[release.KNOWN_FAULT]
    return entries


def training_guides(export_records: list[dict[str, Any]], name: str) -> list[str]:
    """The classifiers generator ``name`` learnt from, as the export logged them."""
    for r in export_records:
        if r[EXPORT_KIND] == release.TRAINING and r[release.NAME] == name:
            return list(r.get("guides", []))
    return []


def classifier_rows(export_records: list[dict[str, Any]]) -> list[release.ClassifierRow]:
    """The classifiers' comparison table, from the export log."""
    return [
        {k: v for k, v in r.items() if k != EXPORT_KIND}  # type: ignore[misc]
        for r in export_records
        if r[EXPORT_KIND] == release.CLASSIFIER
    ]


# metrics.json.
def write_metrics(cfg: ExportConfig, command: str = "") -> dict[str, Any]:
    """Write ``metrics.json`` from the evaluation, export and pipeline JSON lines."""
    runs, out = Path(cfg.runs), Path(cfg.out)
    eval_dir = Path(cfg.eval_dir or runs / models.EVAL_DIR)
    exported = read_jsonl(runs / models.EXPORT_LOG)
    run = run_profile(runs)
    result = release.assemble_metrics(
        read_jsonl(eval_dir / models.EVAL_LOG), model_entries(exported), classifier_rows(exported)
    )
    diagnosis_path = runs / models.DIAGNOSIS_FILE
    if diagnosis_path.exists():
        diagnosis = json.loads(diagnosis_path.read_text())
        result[release.CNN_DIAGNOSIS] = {
            "test_parasitized_share": diagnosis["test_parasitized_share"],
            "epochs": diagnosis["config"]["epochs"],
            "variants": diagnosis["variants"],
        }
    result.update(
        {
            release.GENERATED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
            release.GIT_COMMIT: run.get(release.GIT_COMMIT) or git_commit(),
            release.COMMAND: run.get(release.COMMAND) or command,
            release.PROFILE: run.get(release.PROFILE, "smoke" if cfg.smoke else ""),
            release.PROFILE_SUMMARY: run.get(release.PROFILE_SUMMARY, ""),
            release.HARDWARE: run.get(release.HARDWARE) or hardware(),
            # The command and commit that wrote this file (a run's export may be run again alone).
            release.WRITTEN_BY: release.provenance(command, git_commit(), hardware()),
            release.STAGE_SECONDS: run[release.STAGE_SECONDS],
            release.LOOP_SECONDS: run[release.LOOP_SECONDS],
            release.TOTAL_SECONDS: run[release.TOTAL_SECONDS],
            release.WALL_SECONDS: run[release.WALL_SECONDS],
            release.JOBS: run.get(release.JOBS, 1),
            release.THROUGHPUT: run.get(release.THROUGHPUT, {}),
            release.SMOKE: cfg.smoke,
        }
    )
    save_metrics(out, result)
    index_path = out / "index.json"
    if index_path.exists():
        # The banner's minutes: the whole run's, so written after the export stage has counted.
        index = json.loads(index_path.read_text())
        index[release.PROFILE][release.TRAIN_MINUTES] = run_minutes(run)
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
    written = result.setdefault(release.WRITTEN_BY, {}).setdefault(release.WRITTEN_FIGURES, {})
    for rec in records:
        release.file_record(result, rec)
        written.setdefault(rec[release.RECORD_KIND], {})[rec[release.RECORD_MODEL]] = provenance
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
    trained_on = run_profile(runs).get(release.HARDWARE) or hardware()
    exported = read_jsonl(runs / models.EXPORT_LOG)
    entries = model_entries(exported)
    for name in names:
        model: dict[str, Any] = {release.TRAINED_ON: trained_on, **entries.get(name, {})}
        if release.TRAINING in model:
            judge = release.main_classifier(result).get(release.NAME, release.CLASSIFIER)
            model[release.JUDGES] = release.judges_entry(judge, training_guides(exported, name))
        result[release.MODELS][name] = model
        result.setdefault(release.WRITTEN_BY, {}).setdefault(release.GENERATORS, {})[name] = wrote
    save_metrics(out, result)
    return result
