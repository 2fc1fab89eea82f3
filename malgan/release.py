"""The layout of a release's ``metrics.json`` and ``index.json``: every key, one TypedDict per
object, and the functions that assemble them and read them back. No other module spells these
keys: ``train/`` writes both files through ``assemble_metrics``, ``file_record`` and
``assemble_index``; the app, tables, charts and datasheet read them through the names here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

# Keys of an evaluation record (one JSON line of ``eval.jsonl``) that name it, not its figures.
RECORD_KIND, RECORD_MODEL, RECORD_JUDGE = "metric", "model", "judge"
# A Fréchet distance floor below this counts as zero when taking the ratio.
FLOOR_EPS = 1e-9

# metrics.json: the generators' entries, the main classifier and the comparison's rows (also
# index.json's keys for its classifier models), the real-vs-real Fréchet floor.
MODELS, CLASSIFIER, CLASSIFIERS = "models", "classifier", "classifiers"
FD_REAL_FLOOR, CNN_DIAGNOSIS = "fd_real_floor", "cnn_diagnosis"
# What made the release and what wrote the file (command, commit, machine); a generator
# exported on its own names its machine in its ``TRAINED_ON``.
COMMAND, GIT_COMMIT, HARDWARE, WRITTEN_BY = "command", "git_commit", "hardware", "written_by"
WRITTEN_FIGURES = "figures"  # and ``GENERATORS``: what recomputed a figure or a generator
GENERATED_AT, SMOKE = "generated_at", "smoke"
PROFILE, PROFILE_SUMMARY = "profile", "profile_summary"  # index.json: PROFILE's name and machine
STAGE_SECONDS, LOOP_SECONDS, TOTAL_SECONDS = "stage_seconds", "loop_seconds", "total_seconds"
WALL_SECONDS, JOBS, THROUGHPUT = "wall_seconds", "jobs", "throughput"

# A generator's entry: how it trained ...
DISPLAY_NAME, LATENCY = "display_name", "cpu_latency_ms_one_cell"
TRAINING, KNOWN_FAULT, TRAINED_ON, JUDGES = "training", "known_fault", "trained_on", "judges"
# ... and its figures, each per class unless said otherwise.
RECOVERY, RECOVERY_BY, CONFIDENCE_HISTOGRAM = "recovery", "recovery_by", "confidence_histogram"
FD, FD_RATIO, MEMORIZATION = "fd", "fd_ratio", "memorization"
TSTR, TSTR_ACCURACY = "tstr", "tstr_accuracy"
DIVERSITY, MEMBERSHIP, C2ST = "diversity", "membership", "c2st"
# Each side of a figure that carries its reference: the generated cells' figure and the same
# figure for real cells of other patients. (``REFERENCE`` is also index.json's reference file.)
GENERATED, REFERENCE = "generated", "reference"

# The main classifier's summary, and the comparison table's rows (``ClassifierRow``).
NAME, TTA = "name", "tta"
TEST_ACCURACY, TEST_AUC = "test_accuracy", "test_auc"
ACCURACY, AUC, SENSITIVITY, SPECIFICITY = "accuracy", "auc", "sensitivity", "specificity"
N_TEST, N_TRAIN, N_VAL = "n_test", "n_train", "n_val"
TEST_PATIENTS, CORRUPT_FILES = "test_patients", "corrupt_files"
PARAMETERS, CPU_LATENCY_MS, ONNX_BYTES = "parameters", "cpu_latency_ms", "onnx_bytes"
RECIPE, DIVERGED_AT_EPOCH = "recipe", "diverged_at_epoch"


class Recovery(TypedDict, total=False):
    """One class's recovery: the share of cells the classifier gives their intended class."""

    rate: float
    ci_low: float
    ci_high: float
    n: int
    hits: int


class ModelMetrics(TypedDict, total=False):
    """A generator's entry of ``metrics.json``: how it trained and every figure of it, per class
    unless said otherwise (``diversity``, ``membership`` and ``c2st`` with their reference)."""

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


class ClassifierRow(TypedDict, total=False):
    """One row of ``metrics.json["classifiers"]``: a trained classifier on the test patients."""

    name: str
    display_name: str
    file: str
    arch: str
    recipe: str
    input_scale: str
    tta: bool
    epochs: int
    accuracy: float
    auc: float
    sensitivity: float
    specificity: float
    accuracy_without_tta: float
    accuracy_with_tta: float
    parameters: int
    train_seconds: float | None
    diverged_at_epoch: int | None
    cpu_latency_ms: float
    onnx_bytes: int


class WrittenBy(TypedDict, total=False):
    """What wrote the file, and what recomputed some figures or generators since."""

    command: str
    git_commit: str
    hardware: dict[str, Any]
    figures: dict[str, dict[str, Any]]  # figure -> generator -> provenance
    generators: dict[str, Any]  # generator -> provenance


class Metrics(TypedDict, total=False):
    """``metrics.json``: the models' figures, then what made the release and how long it took."""

    models: dict[str, ModelMetrics]
    classifier: ClassifierSummary
    fd_real_floor: dict[str, float]
    classifiers: list[ClassifierRow]
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


# index.json: its models, their snapshots and histories, the machine and minutes of training.
GENERATORS, SNAPSHOTS, HISTORY = "generators", "snapshots", "history"
FILE, FILES, SHA256, TRAIN_MINUTES = "file", "files", "sha256", "train_minutes"
SNAPSHOT_CLASS, SNAPSHOT_ITERATION = "class", "iteration"
# A generator's history file: its losses and probe records, by run.
LOSSES, PROBES = "losses", "probes"


class IndexModel(TypedDict, total=False):
    """One model of ``index.json``: its name, the name shown, its ONNX file (or one per class)."""

    name: str
    display_name: str
    file: str
    files: dict[str, str]


class Index(TypedDict, total=False):
    """``index.json``: the models, the training reference, snapshots and histories."""

    smoke: bool
    git_commit: str
    profile: dict[str, Any]  # name, hardware, train_minutes: how the models were trained
    classifiers: list[IndexModel]
    classifier: IndexModel
    generators: list[IndexModel]
    reference: dict[str, str]  # file, sha256
    snapshots: dict[str, list[dict[str, Any]]]  # generator -> {class, iteration, file} grids
    history: dict[str, str]  # generator or "classifier" -> history file


# Evaluation records (eval.jsonl): each figure's record is named by its key in metrics.json.
def record(kind: str, model: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
    """One evaluation record: figure ``kind`` of generator ``model`` (None: of the release)."""
    named = {RECORD_KIND: kind} if model is None else {RECORD_KIND: kind, RECORD_MODEL: model}
    return {**named, **body}


def judges_entry(classifier: str, guides: list[str]) -> dict[str, Any]:
    """Whether a generator learnt from the judge: recovery is a fair test only if not."""
    independent = classifier not in guides
    return {CLASSIFIER: classifier, "classifier_independent": independent, "guides": sorted(guides)}


def fd_ratio(fd: Mapping[str, float], floor: Mapping[str, float]) -> dict[str, float]:
    """Each class's Fréchet distance over the real-vs-real floor."""
    return {k: fd[k] / max(floor[k], FLOOR_EPS) for k in fd}


def provenance(command: str, git_commit: str, hardware: dict[str, Any]) -> dict[str, Any]:
    """What wrote a file, a figure or a generator: the command, its commit and machine."""
    return {COMMAND: command, GIT_COMMIT: git_commit, HARDWARE: hardware}


# metrics.json, read back.
def model_metrics(metrics: Mapping[str, Any] | None, name: str) -> ModelMetrics:
    """The entry of generator ``name`` in ``metrics.json`` (empty when it has none)."""
    entry = ((metrics or {}).get(MODELS) or {}).get(name)
    return entry if isinstance(entry, dict) else {}  # type: ignore[return-value]


def all_model_metrics(metrics: Mapping[str, Any] | None) -> dict[str, ModelMetrics]:
    """Every generator's entry in ``metrics.json``, in file order."""
    models = (metrics or {}).get(MODELS) or {}
    return {name: entry for name, entry in models.items() if isinstance(entry, dict)}


def main_classifier(metrics: Mapping[str, Any] | None) -> ClassifierSummary | dict[str, Any]:
    """The main classifier's summary in ``metrics.json`` (empty when it has none)."""
    summary = (metrics or {}).get(CLASSIFIER)
    return summary if isinstance(summary, dict) else {}


def comparison_rows(metrics: Mapping[str, Any] | None) -> list[ClassifierRow]:
    """The rows of the classifiers' comparison table (empty when it has none)."""
    rows = (metrics or {}).get(CLASSIFIERS)
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def real_floor(metrics: Mapping[str, Any] | None, model: Mapping[str, Any] | None = None) -> dict:
    """The real-vs-real Fréchet floor per class: a generator's own, else the release's."""
    own = (model or {}).get(FD_REAL_FLOOR)
    return own if isinstance(own, dict) and own else ((metrics or {}).get(FD_REAL_FLOOR) or {})


# metrics.json, assembled.
def file_record(result: dict[str, Any], rec: Mapping[str, Any]) -> None:
    """File one generator's evaluation record under ``result["models"][rec["model"]]``."""
    kind = rec[RECORD_KIND]
    body = {k: v for k, v in rec.items() if k not in (RECORD_KIND, RECORD_MODEL)}
    model = result[MODELS].setdefault(rec[RECORD_MODEL], {})
    if kind == TSTR:
        model[TSTR_ACCURACY] = body[ACCURACY]
        model[TSTR] = body
    elif kind == RECOVERY_BY:
        judge = body.pop(RECORD_JUDGE)
        model.setdefault(RECOVERY_BY, {})[judge] = body
    else:
        model[kind] = body


def classifier_summary(body: Mapping[str, Any]) -> ClassifierSummary:
    """The classifier's entry from its evaluation record."""
    renamed = {TEST_ACCURACY: ACCURACY, TEST_AUC: AUC}
    keys = ClassifierSummary.__annotations__
    return {key: body[renamed.get(key, key)] for key in keys}  # type: ignore[return-value]


def assemble_metrics(
    records: list[dict[str, Any]],
    generators: Mapping[str, Mapping[str, Any]],
    classifier_rows: list[ClassifierRow],
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
        if kind == CLASSIFIER:
            result[CLASSIFIER] = classifier_summary(body)
        elif kind == FD_REAL_FLOOR:
            floor = body
            result[FD_REAL_FLOOR] = body
        else:
            file_record(result, rec)
    for model in result[MODELS].values():
        if FD in model:
            model[FD_REAL_FLOOR] = floor
            model[FD_RATIO] = fd_ratio(model[FD], floor)
    result[CLASSIFIERS] = classifier_rows
    return result


# index.json, assembled.
def index_model(name: str, file: str) -> IndexModel:
    """A classifier of ``index.json``: its name and ONNX file."""
    return {NAME: name, FILE: file}


def generator_model(name: str, display_name: str, files: str | dict[str, str]) -> IndexModel:
    """A generator of ``index.json``: one ONNX file (conditional) or one per class."""
    one = {FILE: files} if isinstance(files, str) else {FILES: files}
    return {NAME: name, DISPLAY_NAME: display_name, **one}  # type: ignore[typeddict-item]


def snapshot_entry(label: str, iteration: int, file: str) -> dict[str, Any]:
    """One saved sample grid: its class, training iteration and file."""
    return {SNAPSHOT_CLASS: label, SNAPSHOT_ITERATION: iteration, FILE: file}


def history_path(name: str) -> str:
    """The history file of a generator (or of ``CLASSIFIER``), relative to the release."""
    return f"{HISTORY}/{name}.json"


def generator_history(losses: dict[str, Any], probes: dict[str, Any]) -> dict[str, Any]:
    """A generator's history file: the losses and probe records of each of its runs."""
    return {LOSSES: losses, PROBES: probes}


def assemble_index(
    *,
    smoke: bool,
    git_commit: str,
    profile: str,
    hardware: dict[str, Any],
    classifiers: list[IndexModel],
    classifier: IndexModel,
    generators: list[IndexModel],
    reference: str,
    reference_sha256: str,
) -> Index:
    """``index.json`` of a release, before its generators' snapshots and histories
    (``put_generator_training``); ``classifier`` is the main one of ``classifiers``."""
    return {
        SMOKE: smoke,
        GIT_COMMIT: git_commit,
        PROFILE: {NAME: profile, HARDWARE: hardware},
        CLASSIFIERS: classifiers,
        CLASSIFIER: dict(classifier),  # type: ignore[typeddict-item]
        GENERATORS: generators,
        REFERENCE: {FILE: reference, SHA256: reference_sha256},
        SNAPSHOTS: {},
        HISTORY: {CLASSIFIER: history_path(CLASSIFIER)},
    }


def put_generator(index: dict[str, Any], entry: IndexModel) -> None:
    """List generator ``entry`` in ``index``, in place of one of the same name."""
    kept = [g for g in index_generators(index) if g[NAME] != entry[NAME]]
    index[GENERATORS] = [*kept, entry]


def put_generator_training(index: dict[str, Any], name: str, snapshots: list[Any]) -> None:
    """Name a generator's sample grids (by class, then iteration) and history file in ``index``."""
    ordered = sorted(snapshots, key=lambda s: (s[SNAPSHOT_CLASS], s[SNAPSHOT_ITERATION]))
    index.setdefault(SNAPSHOTS, {})[name] = ordered
    index.setdefault(HISTORY, {})[name] = history_path(name)


# index.json, read back.
def index_generators(index: Mapping[str, Any]) -> list[IndexModel]:
    """The generators ``index.json`` lists, in order (empty when it lists none)."""
    generators = index.get(GENERATORS)
    return generators if isinstance(generators, list) else []


def index_classifiers(index: Mapping[str, Any]) -> list[IndexModel]:
    """Every classifier ``index.json`` lists, the main one and the comparison's."""
    classifiers = index.get(CLASSIFIERS)
    return classifiers if isinstance(classifiers, list) else []


def index_file(index: Mapping[str, Any], entry: str) -> str:
    """The file of ``index.json``'s ``CLASSIFIER`` (the main classifier) or ``REFERENCE``."""
    return index[entry][FILE]


def snapshot_entries(index: Mapping[str, Any], model: str) -> list[Any]:
    """The saved sample grids of ``model`` (``snapshot_entry`` each)."""
    return (index.get(SNAPSHOTS) or {}).get(model) or []


def history_file(index: Mapping[str, Any] | None, name: str) -> str | None:
    """The history file of a generator (or of ``CLASSIFIER``), relative to the release."""
    return ((index or {}).get(HISTORY) or {}).get(name) or None
