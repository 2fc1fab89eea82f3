"""The layout of metrics.json and index.json: assembled from records, read back by name."""

from typing import get_type_hints

from malgan import release
from malgan.data import CLASSES

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
    entries = release.model_entries(
        [
            release.generator_export_record("cgan", "malgan cGAN", 12.5),
            release.training_export_record("cgan", {"cgan": {"iterations": 5}}, ["g"], "fault"),
            release.classifier_export_record({"name": "classifier", "accuracy": 0.9}, 1000),
        ]
    )
    result = release.assemble_metrics(_records(), entries, [{"name": "classifier"}])
    model = release.model_metrics(result, "cgan")
    assert model["display_name"] == "malgan cGAN" and model["known_fault"] == "fault"
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
        release.training_export_record("dcgan", {}, ["cnn_sound"], None),
        release.classifier_export_record({"name": "resnet"}, 10),
    ]
    assert release.training_guides(log, "dcgan") == ["cnn_sound"]
    assert release.training_guides(log, "cgan") == []
    assert release.classifier_rows(log) == [{"name": "resnet", "onnx_bytes": 10}]
    assert "known_fault" not in log[0]
