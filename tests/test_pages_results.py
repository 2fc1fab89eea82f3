"""AppTest of the result pages: Classify, Recovery, Training and Classifiers on exported/."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from harness.fakes import draw_fake_cell
from malgan import artifacts, report, tables, uploads
from malgan.app import frame, loading
from malgan.data import CLASSES
from tests.support.pages import app_page, html_table, models_copy

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPORTED = REPO_ROOT / "exported"
TIMEOUT_S = 60


@pytest.fixture(autouse=True)
def _committed_models(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(artifacts.EXPORTED_ENV, raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


def page(name: str) -> AppTest:
    at = app_page(REPO_ROOT / "pages" / f"{name}.py", timeout=TIMEOUT_S)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def charts_shown(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


# Classify.


def test_classify_loads_an_example_of_each_class() -> None:
    at = page("classify")
    at.button(key="c_example_button").click().run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Files"] == str(len(CLASSES)) and metrics["Classified"] == str(len(CLASSES))
    assert any(c.value.startswith("Examples: ") for c in at.caption)


def test_classify_gives_verdicts_and_specific_errors() -> None:
    at = page("classify")
    assert any("Drop one or more" in i.value for i in at.info)
    files = [
        ("cell.png", png(draw_fake_cell(parasitized=True, size=(90, 80))), "image/png"),
        ("empty.png", b"", "image/png"),
        ("notes.png", b"dear diary, today I uploaded a text file\n", "image/png"),
    ]
    at.file_uploader(key="c_uploads").set_value(files).run()
    assert not at.exception, [e.value for e in at.exception]

    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Files"] == "3" and metrics["Classified"] == "1"
    errors = [e.value for e in at.error]
    assert len(errors) == 2
    assert any("empty.png" in e and "empty file" in e for e in errors)
    assert any("notes.png" in e and "looks like text" in e for e in errors)

    verdicts = [m.value for m in at.markdown if "confidence" in m.value]
    assert len(verdicts) == 1 and any(c in verdicts[0] for c in CLASSES)
    assert len(at.image) == 1
    captions = " ".join(c.value for c in at.caption)
    assert "cell.png · 90×80 px" in captions
    assert "P(Parasitized)" in captions and "prepare_image" in captions

    table = at.table[0].value
    assert list(table["File"]) == ["cell.png", "empty.png", "notes.png"]
    assert list(table["Status"]) == ["classified", "error", "error"]
    assert table["Verdict"][0] in CLASSES and table["P(Parasitized)"][0].endswith("%")
    # Files that could not be classified show a dash where they have no value, and why.
    assert set(table.iloc[1][["Verdict", "P(Parasitized)", "Confidence"]]) == {tables.MISSING}
    assert "empty file" in table["Note"][1]
    assert not [v for v in table.to_numpy().ravel() if v is None or v == "None"]
    assert at.download_button(key="c_csv").proto.label == "Download results (CSV)"


def test_classify_flags_a_bright_photo() -> None:
    at = page("classify")
    photo = png(Image.new("RGB", (100, 100), (240, 235, 230)))
    at.file_uploader(key="c_uploads").set_value([("photo.png", photo, "image/png")]).run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Flagged as unusual"] == "1"
    assert any("Does not look like a segmented cell" in w.value for w in at.warning)
    table = at.table[0].value
    assert table["Unusual image"][0] == uploads.UNUSUAL_MARK
    limit = f"(limit {loading.reference().ood_threshold:.0f})"
    assert table["OOD distance"][0].endswith(limit)


def test_classify_with_a_truncated_classifier_shows_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("index.json", "metrics.json", "classifier.json", "reference.npz"):
        shutil.copy(EXPORTED / name, tmp_path / name)
    data = (EXPORTED / "classifier.onnx").read_bytes()
    (tmp_path / "classifier.onnx").write_bytes(data[: len(data) // 3])
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(tmp_path))

    at = page("classify")
    errors = " ".join(e.value for e in at.error)
    assert "The classifier is unavailable" in errors and "truncated" in errors
    assert not at.file_uploader  # nothing to classify with


# Recovery.


def test_recovery_shows_the_comparison_and_measures_live() -> None:
    at = page("recovery")
    assert charts_shown(at) >= 2
    assert at.selectbox(key="r_model").value == frame.DEFAULT_MODEL
    # The model's sections name it under their headings.
    name = loading.generator_choices()[frame.DEFAULT_MODEL]
    assert f"#### Classifier confidence: {name}" in [m.value for m in at.markdown]
    labels = [m.label for m in at.metric]
    assert "Parasitized recovered" in labels

    at.number_input(key="r_n").set_value(20).run()
    at.button(key="r_measure").click().run()
    assert not at.exception, [e.value for e in at.exception]
    live = {m.label: m for m in at.metric}
    for label in CLASSES:
        assert live[f"{label} recovered"].value.endswith("%")
    captions = " ".join(c.value for c in at.caption)
    assert "20 cells per class" in captions and "n = 20" in captions
    assert "vs report" in live["Parasitized recovered"].proto.delta
    assert at.query_params["r_n"] == "20"


def models_with_training(tmp_path: Path) -> Path:
    """A copy of the committed models whose metrics give each run's length and kept checkpoint."""
    root = models_copy(tmp_path / "exported", "cpu")
    data = json.loads((root / artifacts.METRICS_NAME).read_text(encoding="utf-8"))
    data["models"]["cgan"]["training"] = {
        "cgan": {
            "iterations": 5200,
            "train_seconds": 1320.0,
            "iterations_per_second": 3.94,
            "selected_iteration": 4800,
        }
    }
    data["models"]["dcgan"]["training"] = {
        "dcgan_parasitized": {"iterations": 700, "train_seconds": 660.0},
        "dcgan_uninfected": {"iterations": 690, "train_seconds": 662.0, "selected_iteration": 690},
    }
    (root / artifacts.METRICS_NAME).write_text(json.dumps(data), encoding="utf-8")
    return root


def test_recovery_states_each_models_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = models_with_training(tmp_path)
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(root))
    captions = [c.value for c in page("recovery").caption]
    names = artifacts.generator_names(artifacts.load_index(root))
    assert f"{names['cgan']}: 5,200 iterations in 22.0 min (checkpoint kept: 4,800)." in captions
    assert (
        f"{names['dcgan']}: two runs, Parasitized 700 iterations in 11.0 min, Uninfected 690 "
        "iterations in 11.0 min; 22.0 min in all."
    ) in captions


def models_with_diversity(tmp_path: Path, *, measured: bool = True) -> Path:
    """A copy of the committed models whose metrics give the cGAN known k-NN figures (or none)."""
    root = models_copy(tmp_path / "exported", "gpu")
    data = json.loads((root / artifacts.METRICS_NAME).read_text(encoding="utf-8"))
    for model in data["models"].values():
        model.pop("diversity", None)
        model.pop("membership", None)
    if measured:
        generated = {"precision": 0.81, "recall": 0.35, "density": 0.68, "coverage": 0.43}
        reference = {"precision": 0.66, "recall": 0.88, "density": 0.45, "coverage": 0.51}
        data["models"]["cgan"]["diversity"] = {
            label: {"generated": generated, "reference": reference, "n": 1445, "n_real": 2353}
            for label in CLASSES
        }
        data["models"]["cgan"]["membership"] = {
            label: {"generated": 0.567, "reference": 0.625, "n": 1445} for label in CLASSES
        }
    (root / artifacts.METRICS_NAME).write_text(json.dumps(data), encoding="utf-8")
    return root


def test_recovery_shows_realism_and_variety_beside_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(models_with_diversity(tmp_path)))
    at = page("recovery")
    name = loading.generator_choices()["cgan"]
    assert f"#### Realism and variety: {name}" in [m.value for m in at.markdown]
    (chart,) = [c.proto.spec for c in at.get("plotly_chart") if "k-NN figure" in c.proto.spec]
    for text in ("Precision", "Coverage", "real cells of other patients", "n = 1,445", "0.43"):
        assert text in chart, text
    captions = " ".join(c.value for c in at.caption)
    assert "Parasitized 56.7% (real cells of unseen patients: 62.5%)" in captions
    # The Overview's headline table gains coverage beside its reference.
    table = " ".join(m.value for m in page("overview").markdown)
    assert "Coverage of real variety, Parasitized" in table and "43.0% (real: 51.0%)" in table


def test_recovery_without_k_nn_figures_says_how_to_compute_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(models_with_diversity(tmp_path, measured=False)))
    at = page("recovery")
    assert any("train.evaluate_exported" in i.value for i in at.info)


def test_recovery_reads_its_controls_from_the_url() -> None:
    at = app_page(REPO_ROOT / "pages" / "recovery.py", timeout=TIMEOUT_S)
    at.query_params["r_model"] = "dcgan"
    at.query_params["r_n"] = "48"
    at.query_params["r_seed"] = "99"
    at.run()
    assert not at.exception
    assert at.selectbox(key="r_model").value == "dcgan"
    assert at.number_input(key="r_n").value == 48
    assert at.number_input(key="r_seed").value == 99


# Training.


def test_training_shows_snapshots_and_curves() -> None:
    at = page("training")
    captions = [cap for image in at.image for cap in image.captions]
    # Grids of both classes, in training order (a GPU run's first grid comes after the CUDA
    # graph's warm-up, so not necessarily at iteration 1).
    iterations = [int(c.rsplit(" ", 1)[1].replace(",", "")) for c in captions if "Parasit" in c]
    assert len(iterations) >= 2 and iterations == sorted(iterations)
    assert any(c.startswith("Uninfected, iteration ") for c in captions)
    assert charts_shown(at) == 2  # losses and classifier history
    assert {m.label for m in at.metric} >= {"Test accuracy", "Test AUC"}
    assert "Conditional GAN: iterations" in {m.label for m in at.metric}

    at.selectbox(key="t_model").set_value("dcgan").run()
    assert not at.exception
    assert at.query_params["t_model"] == "dcgan"
    assert len(at.image) >= 2
    labels = {m.label for m in at.metric}
    assert {"DCGAN (Parasitized): iterations", "DCGAN (Uninfected): iterations"} <= labels


def test_training_says_which_iteration_the_dashboard_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(models_with_training(tmp_path)))
    at = page("training")
    captions = [c.value for c in at.caption]
    assert (
        "3.94 iterations per second; the dashboard's model is iteration 4,800's "
        "(best validation probe)"
    ) in captions
    at.selectbox(key="t_model").set_value("dcgan").run()
    assert not [c for c in at.caption if "dashboard's model is" in c.value]


def test_training_class_tab_comes_from_the_url() -> None:
    at = app_page(REPO_ROOT / "pages" / "training.py", timeout=TIMEOUT_S)
    at.query_params["t_class"] = "Uninfected"
    at.run()
    assert not at.exception
    assert [tab.label for tab in at.tabs] == list(CLASSES)
    assert at.session_state["t_class"] == "Uninfected"
    assert at.query_params["t_class"] == "Uninfected"


# Classifiers.


def test_classifiers_shows_the_table_beside_the_report() -> None:
    at = page("classifiers")
    tables_shown = [html_table(m.value) for m in at.markdown if "<table>" in m.value]
    (header, *body), diagnosis_table = tables_shown
    # Every column shows, the source and recipe folded into the names; the report's own rows
    # are marked in their names.
    assert header == [
        "Classifier",
        "Accuracy",
        "AUC",
        "Sensitivity",
        "Specificity",
        "Params",
        "CPU latency",
        "TTA",
        "Diverged",
    ]
    rows = {cells[0]: dict(zip(header, cells, strict=True)) for cells in body}
    report_row = rows["Report's ResNet (3,4,6), as published"]
    assert report_row["Accuracy"] == f"{100 * report.REPORT_RESNET_ACCURACY:.1f}%"
    assert report_row["AUC"] == "—"
    assert len(rows) == len(artifacts.load_metrics(EXPORTED)["classifiers"]) + 2
    variants = artifacts.load_metrics(EXPORTED)["cnn_diagnosis"]["variants"]
    assert diagnosis_table[0][0] == "Variant" and len(diagnosis_table) == 1 + len(variants)
    assert charts_shown(at) == 1
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Report's ResNet"] == "94.9%"
    # The best classifier's name sits under its figure, not in the (one-line) label; the
    # delta's arrow gives the direction, so its number carries no sign.
    best = max(
        (r for r in artifacts.load_metrics(EXPORTED)["classifiers"] if r.get("accuracy")),
        key=lambda r: r["accuracy"],
    )
    (best_metric,) = [m for m in at.metric if m.label == "Best here"]
    assert best_metric.value == f"{100 * best['accuracy']:.1f}%"
    assert not best_metric.proto.delta.startswith(("-", "+"))
    assert best.get("display_name", best["name"]) in [c.value for c in at.caption]
    # The footnote follows the diagnosis figures: its epochs, and what the table shows.
    footnote = next(c.value for c in at.caption if "report's way (Keras SGD" in c.value)
    assert "not from the fully trained classifiers above" in footnote
    diagnosis = artifacts.load_metrics(EXPORTED)["cnn_diagnosis"]
    assert tables.diagnosis_heading(diagnosis) in [h.value for h in at.subheader]
    assert all(note in footnote for note in tables.diagnosis_notes(diagnosis))
    assert "1 epochs" not in footnote
