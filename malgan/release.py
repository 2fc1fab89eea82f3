"""The layout of a release's ``metrics.json`` and ``index.json``: one TypedDict per object, and
the functions that assemble them from evaluation records and read a generator's entry back.

``train/`` writes ``metrics.json`` through ``assemble_metrics`` and ``file_record``; the app,
the tables, the charts and the datasheet find a generator's figures with ``model_metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

# Keys of an evaluation record (one JSON line of ``eval.jsonl``) that name it, not its figures.
RECORD_KIND = "metric"
RECORD_MODEL = "model"
# The generators' entries of metrics.json.
MODELS = "models"
# A Fréchet distance floor below this counts as zero when taking the ratio.
FLOOR_EPS = 1e-9


class Recovery(TypedDict, total=False):
    """One class's recovery: the share of cells the classifier gives their intended class."""

    rate: float
    ci_low: float
    ci_high: float
    n: int
    hits: int


class ModelMetrics(TypedDict, total=False):
    """``metrics.json["models"][name]``: how a generator trained and every figure of it.

    Figures are per class (``{"Parasitized": ..., "Uninfected": ...}``) unless said otherwise;
    ``diversity``, ``membership`` and ``c2st`` come from ``train.figures`` (each with its real
    reference), ``known_fault`` from the export of a run with a known fault.
    """

    display_name: str
    cpu_latency_ms_one_cell: float
    training: dict[str, Any]  # run folder -> iterations, speed, kept probe, ...
    known_fault: str
    trained_on: dict[str, Any]  # the machine, for a generator exported on its own
    recovery: dict[str, Recovery]
    judges: dict[str, Any]
    recovery_by: dict[str, dict[str, Recovery]]  # judge -> class -> recovery
    confidence_histogram: dict[str, dict[str, list[float]]]
    fd: dict[str, float]
    fd_real_floor: dict[str, float]
    fd_ratio: dict[str, float]
    memorization: dict[str, dict[str, float]]
    tstr_accuracy: float
    tstr: dict[str, Any]
    diversity: dict[str, Any]
    membership: dict[str, Any]
    c2st: dict[str, Any]


class ClassifierSummary(TypedDict):
    """``metrics.json["classifier"]``: the main classifier on the test patients."""

    name: str
    test_accuracy: float
    test_auc: float
    sensitivity: float
    specificity: float
    confusion: list[list[int]]
    n_test: int
    n_train: int
    n_val: int
    test_patients: list[str]
    tta: bool
    corrupt_files: list[str]


class WrittenBy(TypedDict, total=False):
    """What wrote the file, and what recomputed some figures or generators since."""

    command: str
    git_commit: str
    hardware: dict[str, Any]
    figures: dict[str, dict[str, Any]]  # figure -> generator -> provenance
    generators: dict[str, Any]  # generator -> provenance


class Metrics(TypedDict, total=False):
    """``metrics.json``."""

    models: dict[str, ModelMetrics]
    classifier: ClassifierSummary
    fd_real_floor: dict[str, float]
    classifiers: list[dict[str, Any]]  # the comparison table's rows
    cnn_diagnosis: dict[str, Any]
    generated_at: str
    git_commit: str
    command: str
    profile: str
    profile_summary: str
    hardware: dict[str, Any]
    written_by: WrittenBy
    stage_seconds: dict[str, float]
    loop_seconds: dict[str, float]
    total_seconds: float
    wall_seconds: float
    jobs: int
    throughput: dict[str, Any]
    smoke: bool


class IndexModel(TypedDict, total=False):
    """One model of ``index.json``: its name, the name shown, its ONNX file."""

    name: str
    display_name: str
    file: str


class IndexProfile(TypedDict, total=False):
    """How the release's models were trained: the profile, the machine, the minutes."""

    name: str
    hardware: dict[str, Any]
    train_minutes: float


class Index(TypedDict, total=False):
    """``index.json``: the models, the training reference, snapshots and histories."""

    smoke: bool
    git_commit: str
    profile: IndexProfile
    classifiers: list[IndexModel]
    classifier: IndexModel
    generators: list[IndexModel]
    reference: dict[str, str]  # file, sha256
    snapshots: dict[str, list[Any]]
    history: dict[str, str]  # generator or "classifier" -> history file


# export.jsonl: what the release writer logged of each model it exported, by kind.
EXPORT_KIND = "kind"


def generator_export_record(name: str, display_name: str, latency_ms: float) -> dict[str, Any]:
    """The export log's record of one generator."""
    return {
        EXPORT_KIND: "generator",
        "name": name,
        "display_name": display_name,
        "cpu_latency_ms_one_cell": latency_ms,
    }


def training_export_record(
    name: str, runs: dict[str, Any], guides: list[str], known_fault: str | None
) -> dict[str, Any]:
    """The export log's record of how one generator trained (its runs, guides and fault)."""
    record = {EXPORT_KIND: "training", "name": name, "runs": runs, "guides": guides}
    if known_fault:
        record["known_fault"] = known_fault
    return record


def classifier_export_record(row: Mapping[str, Any], onnx_bytes: int) -> dict[str, Any]:
    """The export log's record of one classifier: its comparison-table row and file size."""
    return {EXPORT_KIND: "classifier", **row, "onnx_bytes": onnx_bytes}


def model_entries(export_records: list[dict[str, Any]]) -> dict[str, ModelMetrics]:
    """Each exported generator's entry of ``metrics.json`` before its figures: display name,
    latency, how it trained and its known fault, from the export log."""
    entries: dict[str, Any] = {}
    for r in export_records:
        if r[EXPORT_KIND] == "generator":
            entry = entries.setdefault(r["name"], {})
            entry["display_name"] = r["display_name"]
            entry["cpu_latency_ms_one_cell"] = r["cpu_latency_ms_one_cell"]
        elif r[EXPORT_KIND] == "training":
            entry = entries.setdefault(r["name"], {})
            entry["training"] = r["runs"]
            if r.get("known_fault"):
                entry["known_fault"] = r["known_fault"]
    return entries


def training_guides(export_records: list[dict[str, Any]], name: str) -> list[str]:
    """The classifiers generator ``name`` learnt from, as the export logged them."""
    for r in export_records:
        if r[EXPORT_KIND] == "training" and r["name"] == name:
            return list(r.get("guides", []))
    return []


def classifier_rows(export_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The classifiers' comparison table, from the export log."""
    return [
        {k: v for k, v in r.items() if k != EXPORT_KIND}
        for r in export_records
        if r[EXPORT_KIND] == "classifier"
    ]


# index.json's lists and tables, by key.
GENERATORS = "generators"
CLASSIFIERS = "classifiers"
SNAPSHOTS = "snapshots"
HISTORY = "history"


def index_generators(index: Mapping[str, Any]) -> list[IndexModel]:
    """The generators ``index.json`` lists, in order (empty when it lists none)."""
    generators = index.get(GENERATORS)
    return generators if isinstance(generators, list) else []


def index_classifiers(index: Mapping[str, Any]) -> list[IndexModel]:
    """Every classifier ``index.json`` lists, the main one and the comparison's."""
    classifiers = index.get(CLASSIFIERS)
    return classifiers if isinstance(classifiers, list) else []


def snapshot_entries(index: Mapping[str, Any], model: str) -> list[Any]:
    """The saved sample grids of ``model`` (``{"class", "iteration", "file"}`` each)."""
    return (index.get(SNAPSHOTS) or {}).get(model) or []


def history_file(index: Mapping[str, Any] | None, name: str) -> str | None:
    """The history file of a generator (or of ``"classifier"``), relative to the release."""
    return ((index or {}).get(HISTORY) or {}).get(name) or None


def model_metrics(metrics: Mapping[str, Any] | None, name: str) -> ModelMetrics:
    """The entry of generator ``name`` in ``metrics.json`` (empty when it has none)."""
    entry = ((metrics or {}).get(MODELS) or {}).get(name)
    return entry if isinstance(entry, dict) else {}  # type: ignore[return-value]


def all_model_metrics(metrics: Mapping[str, Any] | None) -> dict[str, ModelMetrics]:
    """Every generator's entry in ``metrics.json``, in file order."""
    models = (metrics or {}).get(MODELS) or {}
    return {name: entry for name, entry in models.items() if isinstance(entry, dict)}


def file_record(result: dict[str, Any], rec: Mapping[str, Any]) -> None:
    """File one generator's evaluation record under ``result["models"][rec["model"]]``."""
    kind = rec[RECORD_KIND]
    body = {k: v for k, v in rec.items() if k not in (RECORD_KIND, RECORD_MODEL)}
    model = result[MODELS].setdefault(rec[RECORD_MODEL], {})
    if kind == "tstr":
        model["tstr_accuracy"] = body["accuracy"]
        model["tstr"] = body
    elif kind == "recovery_by":
        judge = body.pop("judge")
        model.setdefault("recovery_by", {})[judge] = body
    else:
        model[kind] = body


def classifier_summary(body: Mapping[str, Any]) -> ClassifierSummary:
    """The classifier's entry from its evaluation record."""
    return {
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


def assemble_metrics(
    records: list[dict[str, Any]],
    generators: Mapping[str, Mapping[str, Any]],
    classifier_rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """Turn evaluation records into the ``metrics.json`` layout the dashboard reads.

    Args:
        records: The evaluation's records, in order.
        generators: Each generator's entry before its figures (display name, training, ...).
        classifier_rows: The rows of the classifiers' comparison table.
    """
    result: dict[str, Any] = {MODELS: {k: dict(v) for k, v in generators.items()}}
    floor: dict[str, float] = {}
    for rec in records:
        kind = rec[RECORD_KIND]
        body = {k: v for k, v in rec.items() if k not in (RECORD_KIND, RECORD_MODEL)}
        if kind == "classifier":
            result["classifier"] = classifier_summary(body)
        elif kind == "fd_real_floor":
            floor = body
            result["fd_real_floor"] = body
        else:
            file_record(result, rec)
    for model in result[MODELS].values():
        if "fd" in model:
            model["fd_real_floor"] = floor
            model["fd_ratio"] = {k: model["fd"][k] / max(floor[k], FLOOR_EPS) for k in model["fd"]}
    result["classifiers"] = classifier_rows
    return result
