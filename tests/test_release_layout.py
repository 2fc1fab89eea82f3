"""The layout of metrics.json and index.json: assembled from records, read back by name, and
spelled in malgan.release alone."""

import json
import re
from pathlib import Path
from typing import get_type_hints

import pytest

from malgan import release
from malgan.data import CLASSES
from tests.support.paths import REPO_ROOT
from train import release_metrics

FLOOR = dict.fromkeys(CLASSES, 2.0)


def _records() -> list[dict]:
    classifier = {
        "metric": "classifier",
        "name": "classifier",
        "accuracy": 0.9,
        "auc": 0.95,
        "sensitivity": 0.88,
        "specificity": 0.92,
        "confusion": [[9, 1], [1, 9]],
        "n_test": 20,
        "n_train": 60,
        "n_val": 20,
        "test_patients": ["p1"],
        "tta": False,
        "corrupt_files": [],
    }
    return [
        classifier,
        {"metric": "fd_real_floor", **FLOOR},
        {"metric": "fd", "model": "cgan", **dict.fromkeys(CLASSES, 4.0)},
        {"metric": "tstr", "model": "cgan", "accuracy": 0.8, "auc": 0.85, "n_train": 10},
        {"metric": "recovery_by", "model": "cgan", "judge": "cnn", "Parasitized": {"rate": 1.0}},
    ]


def test_assemble_files_every_record_where_the_layout_says():
    entries = release_metrics.model_entries(
        [
            release_metrics.generator_export_record("cgan", "malgan cGAN", 12.5),
            release_metrics.training_export_record("cgan", {"cgan": {"iterations": 5}}, ["g"], "x"),
            release_metrics.classifier_export_record({"name": "classifier", "accuracy": 0.9}, 1000),
        ]
    )
    result = release.assemble_metrics(_records(), entries, [{"name": "classifier"}])
    model = release.model_metrics(result, "cgan")
    assert model["display_name"] == "malgan cGAN" and model["known_fault"] == "x"
    assert model["training"] == {"cgan": {"iterations": 5}}
    assert model["fd_ratio"] == dict.fromkeys(CLASSES, 2.0) and model["fd_real_floor"] == FLOOR
    assert model["tstr_accuracy"] == 0.8 and model["recovery_by"]["cnn"]["Parasitized"]
    assert result["classifier"]["test_accuracy"] == 0.9 and result["classifiers"]
    # Every key the assembly writes is one the layout declares.
    assert set(model) <= set(get_type_hints(release.ModelMetrics))
    assert set(result) <= set(get_type_hints(release.Metrics))
    assert set(result["classifier"]) == set(get_type_hints(release.ClassifierSummary))


def test_model_metrics_is_empty_for_a_missing_or_malformed_entry():
    assert release.model_metrics(None, "cgan") == {}
    assert release.model_metrics({"models": {"cgan": "oops"}}, "cgan") == {}
    assert release.all_model_metrics({"models": {"a": {}, "b": 3}}) == {"a": {}}


def test_the_export_log_reads_back_guides_and_classifier_rows():
    log = [
        release_metrics.training_export_record("dcgan", {}, ["cnn_sound"], None),
        release_metrics.classifier_export_record({"name": "resnet"}, 10),
    ]
    assert release_metrics.training_guides(log, "dcgan") == ["cnn_sound"]
    assert release_metrics.training_guides(log, "cgan") == []
    assert release_metrics.classifier_rows(log) == [{"name": "resnet", "onnx_bytes": 10}]
    assert "known_fault" not in log[0]


def test_the_readers_find_the_main_classifier_rows_and_floor():
    metrics = release.assemble_metrics(_records(), {}, [{"name": "a"}, "oops"])  # type: ignore[list-item]
    assert release.main_classifier(metrics)["n_test"] == 20
    assert release.comparison_rows(metrics) == [{"name": "a"}]
    assert release.real_floor(metrics) == FLOOR
    assert release.real_floor(metrics, {"fd_real_floor": {"Parasitized": 1.0}}) == {
        "Parasitized": 1.0
    }
    for empty in (None, {}, {"classifier": 3, "classifiers": "x"}):
        assert release.main_classifier(empty) == {} and release.comparison_rows(empty) == []


def test_the_index_is_assembled_in_the_order_export_wrote_it():
    clf = release.index_model("classifier", "classifier.onnx")
    index = release.assemble_index(
        smoke=True,
        git_commit="abc",
        profile="smoke",
        hardware={"cpu_count": 2},
        classifiers=[clf, release.index_model("cnn", "classifier_cnn.onnx")],
        classifier=clf,
        generators=[release.generator_model("cgan", "cGAN", "cgan.onnx")],
        reference="reference.npz",
        reference_sha256="f00",
    )
    snaps = [
        release.snapshot_entry(c, i, f"s/{c}{i}.png") for c, i in (("U", 2), ("P", 9), ("P", 1))
    ]
    release.put_generator_training(index, "cgan", snaps)
    release.put_generator(index, release.generator_model("cgan", "new", {"P": "p.onnx"}))
    assert list(index) == [
        "smoke", "git_commit", "profile", "classifiers", "classifier", "generators", "reference",
        "snapshots", "history",
    ]  # fmt: skip
    assert index["profile"] == {"name": "smoke", "hardware": {"cpu_count": 2}}
    assert index["reference"] == {"file": "reference.npz", "sha256": "f00"}
    assert index["generators"] == [
        {"name": "cgan", "display_name": "new", "files": {"P": "p.onnx"}}
    ]
    assert [(s["class"], s["iteration"]) for s in index["snapshots"]["cgan"]] == [
        ("P", 1), ("P", 9), ("U", 2)
    ]  # fmt: skip
    assert index["history"] == {
        "classifier": "history/classifier.json",
        "cgan": "history/cgan.json",
    }
    assert release.index_file(index, release.CLASSIFIER) == "classifier.onnx"
    assert release.history_file(index, "cgan") == "history/cgan.json"
    assert set(index) <= set(get_type_hints(release.Index))


def test_the_committed_index_reads_back_through_the_layout():
    index = json.loads((REPO_ROOT / "exported" / "index.json").read_text())
    assert set(index) <= set(get_type_hints(release.Index))
    for model in [*release.index_generators(index), *release.index_classifiers(index)]:
        assert set(model) <= set(get_type_hints(release.IndexModel))


def test_every_key_constant_names_a_declared_key():
    """A key constant of metrics.json names a field of one of the layout's TypedDicts."""
    declared = set().union(
        *(
            get_type_hints(t)
            for t in (release.Metrics, release.ModelMetrics, release.ClassifierSummary)
        ),
        get_type_hints(release.ClassifierRow),
    )
    for key in (release.FD_REAL_FLOOR, release.KNOWN_FAULT, release.C2ST, release.TEST_AUC):
        assert key in declared
    assert {release.CPU_LATENCY_MS, release.ONNX_BYTES, release.DIVERGED_AT_EPOCH} <= declared


# Keys of the layout distinctive enough that no other module may spell them: a reader or writer
# names them through malgan.release. (Keys that other files also use with another meaning, such as
# "classifier" for a run or "recovery" for a live measurement, are not listed.)
CONTRACT_KEYS = (
    "models", "classifiers", "fd_real_floor", "fd_ratio", "known_fault", "trained_on", "judges",
    "recovery_by", "tstr", "tstr_accuracy", "memorization", "diversity", "membership", "c2st",
    "cpu_latency_ms_one_cell", "cpu_latency_ms", "onnx_bytes", "written_by", "cnn_diagnosis",
    "test_auc", "test_patients", "corrupt_files", "n_test", "n_train", "n_val", "loop_seconds",
    "wall_seconds", "generated", "train_minutes", "profile_summary",
)  # fmt: skip
SCANNED = ("malgan", "pages", "train")
CONTRACT_MODULE = "malgan/release.py"


def spelled_keys(root: Path, keys: tuple[str, ...] = CONTRACT_KEYS) -> list[str]:
    """``path:line key`` of every quoted contract key in the Python files under ``root``'s
    scanned folders, outside the contract module (docstrings and comments included)."""
    alternatives = "|".join(map(re.escape, keys))
    quoted = re.compile(rf"""(?<![\w])["']({alternatives})["']""")
    found = []
    for folder in SCANNED:
        for path in sorted((root / folder).rglob("*.py")):
            name = path.relative_to(root).as_posix()
            if name == CONTRACT_MODULE:
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                found += [f"{name}:{n} {m.group(1)}" for m in quoted.finditer(line)]
    return found


def test_no_reader_or_writer_spells_a_contract_key():
    assert (REPO_ROOT / CONTRACT_MODULE).is_file()
    spelled = spelled_keys(REPO_ROOT)
    assert not spelled, (
        f"keys of metrics.json/index.json spelled outside {CONTRACT_MODULE}: {spelled}"
    )


def test_every_contract_key_is_spelled_in_the_contract_module():
    text = (REPO_ROOT / CONTRACT_MODULE).read_text(encoding="utf-8")
    missing = [key for key in CONTRACT_KEYS if f'"{key}"' not in text]
    assert not missing


@pytest.mark.parametrize(
    "line",
    ['x = metrics.get("fd_real_floor")', "rows = m['classifiers']", '"""``["known_fault"]``"""'],
)
def test_the_scan_finds_a_key_spelled_outside_the_contract(tmp_path: Path, line: str) -> None:
    for folder in ("malgan", "pages"):
        (tmp_path / folder).mkdir()
    (tmp_path / "malgan" / "release.py").write_text('FD_REAL_FLOOR = "fd_real_floor"\n')
    (tmp_path / "pages" / "page.py").write_text(f"{line}\nclassifiers_note = 'classifiers!'\n")
    assert len(spelled_keys(tmp_path)) == 1
    assert spelled_keys(tmp_path)[0].startswith("pages/page.py:1 ")
