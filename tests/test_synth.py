"""Tests of the synthetic-dataset export: CLI, filters, determinism, safety and the page."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from malgan import artifacts, latent, runtime
from malgan.app import dataset
from malgan.data import CLASSES, load_dataset, patient_key
from malgan.errors import SynthError
from malgan.synth import cli, files, filters, writer
from tests.support.pages import app_page, models_copy

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPORTED = REPO_ROOT / "exported"
PAGE = str(REPO_ROOT / "pages" / "synthetic_dataset.py")
N = 4
SEED = 5


@pytest.fixture(scope="module")
def models() -> tuple:
    """The committed cgan, classifier and reference."""
    return artifacts.load_models(EXPORTED, "cgan")


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    code = cli.main(["--quiet", "--exported", str(EXPORTED), *args])
    out, err = capsys.readouterr()
    return code, out, err


def dataset_files(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under root."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def siblings(folder: Path) -> list[str]:
    """Names next to folder, to spot leftover staging folders."""
    return sorted(p.name for p in folder.parent.iterdir())


# The command line end to end.


def test_cli_writes_nih_layout_that_reads_back(tmp_path: Path) -> None:
    out = tmp_path / "synthetic"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "malgan.synth.cli", "--model", "cgan", "--n-per-class", str(N)),
            *("--out", str(out), "--seed", str(SEED), "--no-class-filter", "--batch", "3"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, artifacts.EXPORTED_ENV: str(EXPORTED)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"Wrote {2 * N} cells" in result.stdout
    assert siblings(out) == ["synthetic"]  # no staging folder left behind

    for label in CLASSES:
        names = sorted(p.name for p in (out / label).iterdir())
        assert len(names) == N
        assert all(name.endswith(".png") and "ThinF_IMG_" in name for name in names)

    rows = files.read_manifest(out)
    assert tuple(rows[0]) == files.MANIFEST_COLUMNS
    assert len(rows) == 2 * N
    assert [r["class"] for r in rows] == [label for label in CLASSES for _ in range(N)]
    # The file that ran: the int8 copy the release ships, made from the exported file.
    ran = runtime.low_precision_path(EXPORTED / "cgan.onnx", cli.DEFAULT_PRECISION)
    meta = json.loads(runtime.sidecar_path(ran).read_text())
    assert meta["source_sha256"] == json.loads((EXPORTED / "cgan.json").read_text())["sha256"]
    shas = dict.fromkeys(CLASSES, runtime.sha256_file(ran))
    for row in rows:
        assert (out / row["file"]).is_file()
        assert row["model"] == "cgan"
        assert row["model_sha256"] == shas[row["class"]]
        assert row["seed"] == str(SEED)
        assert row["truncation"] == ""
        assert 0.0 <= float(row["p_class"]) <= 1.0
        assert float(row["nearest_train_distance"]) >= 0.0
    assert [r["latent_index"] for r in rows[:N]] == [str(i) for i in range(N)]

    summary = json.loads((out / files.SUMMARY_NAME).read_text())
    assert summary["accepted"] == dict.fromkeys(CLASSES, N)
    assert summary["model_sha256"] == shas
    assert summary["privacy_filter"] is True
    assert summary["privacy_threshold"] == pytest.approx(
        artifacts.load_reference(EXPORTED).privacy_threshold
    )

    loaded = load_dataset(out, cache_dir=tmp_path / "cache", progress=False)
    assert loaded.cells.class_counts() == dict.fromkeys(CLASSES, N)
    assert not loaded.corrupt
    for name, label, key in zip(
        loaded.cells.names, loaded.cells.labels, loaded.cells.keys, strict=True
    ):
        assert (out / CLASSES[label] / name).is_file()
        assert key == f"SYN-cgan-s{SEED}-g0" == patient_key(name)


def test_same_arguments_give_identical_bytes(tmp_path: Path, capsys) -> None:
    runs = []
    for name in ("a", "b"):
        code, _, err = run_main(
            capsys,
            *("--n-per-class", str(N), "--seed", str(SEED), "--no-class-filter"),
            *("--truncation", "0.8", "--out", str(tmp_path / name)),
        )
        assert code == 0, err
        runs.append(dataset_files(tmp_path / name))
    first, second = runs
    assert sorted(first) == sorted(second)
    assert len([k for k in first if k.endswith(".png")]) == 2 * N
    for key in first:
        assert first[key] == second[key], key
        assert str(tmp_path).encode() not in first[key], key
    summary = json.loads(first[files.SUMMARY_NAME])
    assert not set(writer.MACHINE_FIELDS) & set(summary)
    assert summary["seed"] == SEED and summary["total_accepted"] == 2 * N
    assert b"0.8" in first[files.MANIFEST_NAME]


def test_the_downloaded_zip_is_the_same_from_any_folder(tmp_path: Path, models) -> None:
    generator, classifier, reference = models
    params = {"exported": EXPORTED, "model": "cgan"}
    params["config"] = writer.SynthConfig(n_per_class=2, seed=SEED, class_filter=False)
    results = [
        dataset.export_result(
            tmp_path / name,
            params,
            generator=generator,
            classifier=classifier,
            reference=reference,
            progress=lambda *_: None,
        )
        for name in ("first", "second")
    ]
    assert results[0]["zip"] == results[1]["zip"]
    archive = zipfile.ZipFile(io.BytesIO(results[0]["zip"]))
    for name in archive.namelist():
        assert str(tmp_path).encode() not in archive.read(name), name
    # The page still shows the speed and the folder; only the file leaves them out.
    assert results[0]["summary"]["images_per_second"] > 0
    assert results[0]["summary"]["out_dir"] == str((tmp_path / "first").resolve())


def test_cell_i_is_the_latent_i_of_the_seed(tmp_path: Path, models) -> None:
    generator, classifier, reference = models
    writer.export_dataset(
        tmp_path / "d",
        writer.SynthConfig(n_per_class=2, seed=SEED, class_filter=False),
        generator=generator,
        classifier=classifier,
        reference=reference,
    )
    rows = files.read_manifest(tmp_path / "d")
    expected = generator.generate(latent.sample_z(SEED, 2, generator.z_dim), CLASSES[0])
    from PIL import Image

    for row, cell in zip(rows[:2], expected, strict=True):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "d" / row["file"])), cell)


def test_progress_and_an_interrupted_export_leave_no_dataset(tmp_path: Path, models) -> None:
    generator, classifier, reference = models
    calls: list[tuple[int, int]] = []
    writer.export_dataset(
        tmp_path / "done",
        writer.SynthConfig(n_per_class=3, class_filter=False, batch=2),
        generator=generator,
        classifier=classifier,
        reference=reference,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[0] == (0, 6) and calls[-1] == (6, 6)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)

    def interrupt(done: int, total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        writer.export_dataset(
            tmp_path / "killed",
            writer.SynthConfig(n_per_class=3, class_filter=False, batch=2),
            generator=generator,
            classifier=classifier,
            reference=reference,
            progress=interrupt,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done"]


# Filters.


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"n_per_class": 0}, "number of cells per class must be at least 1"),
        ({"workers": 0}, "number of writer threads must be at least 1"),
        ({"max_attempts_factor": 0}, "attempts factor must be at least 1"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"min_confidence": -0.1}, r"minimum confidence must be in \[0, 1\]"),
        ({"truncation": float("nan")}, "Bad truncation"),
    ],
)
def test_config_refuses_settings_out_of_range(settings: dict, message: str) -> None:
    with pytest.raises(SynthError, match=message):
        writer.SynthConfig(**{"n_per_class": 1, **settings})


def test_config_reads_a_truncation_at_or_below_zero_as_none() -> None:
    assert writer.SynthConfig(n_per_class=1, truncation=0.0).latent_truncation is None
    assert writer.SynthConfig(n_per_class=2, truncation=0.8).latent_truncation == 0.8
    assert writer.SynthConfig(n_per_class=2, max_attempts_factor=5).max_attempts == 10


def test_rejection_reasons_precedence() -> None:
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.95, 0.05], [0.2, 0.8]])
    distances = np.array([1.0, 1.0, 1.0, 0.01, 0.01])
    reasons = filters.rejection_reasons(
        proba, 0, distances, min_confidence=0.7, privacy_threshold=0.1
    )
    assert reasons.tolist() == ["", "wrong_class", "low_confidence", "privacy", "privacy"]
    off = filters.rejection_reasons(proba, 0, distances, class_filter=False, privacy_threshold=None)
    assert off.tolist() == [""] * 5
    with pytest.raises(ValueError, match="distances"):
        filters.rejection_reasons(proba, 0, None, privacy_threshold=0.1)


def test_privacy_filter_rejects_counts_and_replaces(tmp_path: Path, models) -> None:
    generator, classifier, reference = models
    # Training codes placed exactly on Parasitized cells 1 and 3 and Uninfected cell 0.
    z = latent.sample_z(SEED, 8, generator.z_dim)
    codes = {
        label: reference.codes(classifier.features(generator.generate(z, label)))
        for label in CLASSES
    }
    planted = np.stack([codes["Parasitized"][1], codes["Parasitized"][3], codes["Uninfected"][0]])
    others = np.concatenate(
        [np.delete(codes["Parasitized"], [1, 3], axis=0), np.delete(codes["Uninfected"], 0, axis=0)]
    )
    gap = np.linalg.norm(others[:, None] - planted[None], axis=-1).min()
    assert gap > 1e-5  # the fixture separates planted cells from the others
    fake = dataclasses.replace(reference, train_codes=planted, privacy_threshold=float(gap / 2))

    summary = writer.export_dataset(
        tmp_path / "d",
        writer.SynthConfig(n_per_class=N, seed=SEED, class_filter=False, batch=3),
        generator=generator,
        classifier=classifier,
        reference=fake,
    )
    assert summary.rejected["Parasitized"] == {"privacy": 2, "wrong_class": 0, "low_confidence": 0}
    assert summary.rejected["Uninfected"]["privacy"] == 1
    assert summary.attempts == {"Parasitized": 6, "Uninfected": 5}
    assert summary.accepted == dict.fromkeys(CLASSES, N)
    rows = files.read_manifest(tmp_path / "d")
    indices = {
        label: [int(r["latent_index"]) for r in rows if r["class"] == label] for label in CLASSES
    }
    assert indices == {"Parasitized": [0, 2, 4, 5], "Uninfected": [1, 2, 3, 4]}
    assert all(float(r["nearest_train_distance"]) >= gap / 2 for r in rows)
    stored = json.loads((tmp_path / "d" / files.SUMMARY_NAME).read_text())
    assert stored["total_rejected"]["privacy"] == 3

    # Switched off, the same cells are kept and their (zero) distances recorded.
    kept = writer.export_dataset(
        tmp_path / "e",
        writer.SynthConfig(n_per_class=N, seed=SEED, class_filter=False, privacy_filter=False),
        generator=generator,
        classifier=classifier,
        reference=fake,
    )
    assert kept.total_rejected["privacy"] == 0
    rows = files.read_manifest(tmp_path / "e")
    assert float(rows[1]["nearest_train_distance"]) < gap / 2


@pytest.fixture
def fixed_verdicts(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Makes the classifier give every cell the same P(parasitized), whatever the models."""

    def give(p_parasitized: float) -> None:
        predict = runtime.Classifier.predict

        def fake(self: runtime.Classifier, images: np.ndarray, **kwargs) -> tuple:
            _, features = predict(self, images, **kwargs)
            proba = np.float32([p_parasitized, 1 - p_parasitized])
            return np.tile(proba, (len(images), 1)), features

        monkeypatch.setattr(runtime.Classifier, "predict", fake)

    return give


def cli_flags() -> set[str]:
    """Every option of ``malgan-synth``."""
    return {flag for action in cli.build_parser()._actions for flag in action.option_strings}


def test_filters_that_reject_everything_stop_with_counts(
    tmp_path: Path, capsys, fixed_verdicts: Callable[[float], None]
) -> None:
    fixed_verdicts(0.2)  # every cell Uninfected
    out = tmp_path / "d"
    code, _, err = run_main(
        capsys, "--n-per-class", "2", "--out", str(out), "--max-attempts-factor", "5"
    )
    assert code == cli.EXIT_FILTERS_EXHAUSTED
    assert "Only 0 of 2 Parasitized cells passed the filters after 10 attempts" in err
    assert "classified as the other class: 10" in err
    assert "Traceback" not in err
    assert siblings(out) == []  # neither the folder nor a half-written staging folder
    # What to change names real flags only: the filter that rejected, and the attempts.
    named = set(re.findall(r"--[a-z-]+", err.split("To let more through")[1]))
    assert named == {"--no-class-filter", "--max-attempts-factor"}
    assert named <= cli_flags()


def test_low_confidence_names_the_confidence_flag(
    tmp_path: Path, capsys, fixed_verdicts: Callable[[float], None]
) -> None:
    fixed_verdicts(0.8)  # Parasitized at 0.8: below a 0.9 minimum
    out = tmp_path / "d"
    code, _, err = run_main(
        capsys,
        "--n-per-class",
        "2",
        "--out",
        str(out),
        "--max-attempts-factor",
        "2",
        "--model",
        "cgan",
        "--min-confidence",
        "0.9",
        "--no-privacy-filter",
        "--seed",
        "1",
    )
    assert code == cli.EXIT_FILTERS_EXHAUSTED
    named = set(re.findall(r"--[a-z-]+", err.split("To let more through")[1]))
    assert {"--min-confidence", "--no-class-filter", "--max-attempts-factor"} <= named
    assert named <= cli_flags()


# Safety of names and folders.


def test_name_tag_keeps_names_inside_and_keys_stable() -> None:
    for hostile in ("../../etc", "/abs/path", "..", "a/../../b", "x\\..\\y", "thin", "Thinker"):
        tag = files.name_tag(hostile)
        assert "/" not in tag and "\\" not in tag and ".." not in tag
        assert not tag.startswith(".") and "thin" not in tag.lower()
    name = files.cell_file_name("pthinGAN", "Uninfected", 3, 250, prefix="")
    assert (
        patient_key(name)
        == files.patient_key_of("pthinGAN", 3, 250, prefix="")
        == "pth-inGAN-s3-g2"
    )


def test_hostile_model_and_prefix_cannot_escape(tmp_path: Path, capsys) -> None:
    exported = tmp_path / "models"
    exported.mkdir()
    for path in EXPORTED.iterdir():
        if path.is_file():
            (exported / path.name).symlink_to(path)
    index = json.loads((EXPORTED / "index.json").read_text())
    hostile = "../../escaped/model"
    index["generators"] = [
        {
            "name": hostile,
            "display_name": "/etc/passwd",
            "files": {
                "Parasitized": "dcgan_parasitized.onnx",
                "Uninfected": "dcgan_uninfected.onnx",
            },
        }
    ]
    (exported / "index.json").unlink()
    (exported / "index.json").write_text(json.dumps(index))
    # Without the training reference the privacy filter must be off; distances stay empty.
    (exported / "reference.npz").unlink()

    out = tmp_path / "work" / "out"
    code = cli.main(
        [
            *("--quiet", "--exported", str(exported), "--model", hostile, "--prefix", "../../../"),
            *("--n-per-class", "2", "--out", str(out), "--no-class-filter", "--no-privacy-filter"),
        ]
    )
    _, err = capsys.readouterr()
    assert code == 0, err
    written = [p for p in tmp_path.rglob("*") if p.is_file() and exported not in p.parents]
    assert written and all(out in p.parents for p in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "work"]
    rows = files.read_manifest(out)
    shas = {
        label: json.loads((EXPORTED / f"dcgan_{label.lower()}.json").read_text())["sha256"]
        for label in CLASSES
    }
    assert {r["model_sha256"] for r in rows if r["class"] == "Uninfected"} == {shas["Uninfected"]}
    assert {r["model_sha256"] for r in rows if r["class"] == "Parasitized"} == {shas["Parasitized"]}
    assert rows[0]["nearest_train_distance"] == ""
    for row in rows:
        assert (out / row["file"]).resolve().parent == (out / row["class"]).resolve()
    loaded = load_dataset(out, cache_dir=tmp_path / "cache", progress=False)
    assert loaded.cells.class_counts() == dict.fromkeys(CLASSES, 2)


def test_refuses_non_empty_folders_and_replaces_only_exports(tmp_path: Path, capsys) -> None:
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    for extra in ([], ["--overwrite"]):
        code, _, err = run_main(
            capsys, "--n-per-class", "1", "--out", str(keep), "--no-class-filter", *extra
        )
        assert code == cli.EXIT_BAD_INPUT
        assert str(keep) in err
    assert (keep / "notes.txt").read_text() == "precious"
    assert siblings(keep) == ["mine"]

    out = tmp_path / "export"
    args = ("--n-per-class", "1", "--out", str(out), "--no-class-filter")
    assert run_main(capsys, *args, "--seed", "1")[0] == 0
    assert run_main(capsys, *args, "--seed", "2")[0] == cli.EXIT_BAD_INPUT
    assert run_main(capsys, *args, "--seed", "2", "--overwrite")[0] == 0
    assert {r["seed"] for r in files.read_manifest(out)} == {"2"}
    assert len(list((out / "Parasitized").iterdir())) == 1
    assert siblings(out) == ["export", "mine"]

    (out / "Parasitized" / "stray.txt").write_text("not a cell")
    code, _, err = run_main(capsys, *args, "--overwrite")
    assert code == cli.EXIT_BAD_INPUT and "Parasitized/stray.txt" in err


def write_corrupt_models(root: Path) -> Path:
    root.mkdir()
    for path in EXPORTED.iterdir():
        if path.is_file():
            (root / path.name).symlink_to(path)
    # The exported file and the copy the CLI runs by default, both truncated.
    for name in {"cgan.onnx", runtime.low_precision_path("cgan.onnx", cli.DEFAULT_PRECISION).name}:
        (root / name).unlink()
        (root / name).write_bytes((EXPORTED / name).read_bytes()[:1000])
    return root


def call_main(argv: list[str]) -> int:
    """Run the CLI in-process, turning argparse's SystemExit into its exit code."""
    try:
        return cli.main(argv)
    except SystemExit as stop:
        return int(stop.code)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "No generator called 'nope'"),
        (["--exported", "{tmp}/missing"], "does not exist"),
        (["--n-per-class", "0"], "at least 1"),
        (["--n-per-class", "many"], "expected a whole number"),
        (["--seed", "-3"], "seed must be >= 0"),
        (["--truncation", "0.001"], "truncation must be >= 0.01"),
        (["--min-confidence", "1.5"], "minimum confidence must be in [0, 1]"),
        (["--privacy-threshold", "-1"], "privacy threshold must be a distance >= 0"),
        (["--batch", "0"], "batch size must be at least 1"),
        (["--exported", "{tmp}/corrupt"], "does not match its sidecar"),
    ],
)
def test_bad_input_gives_exit_2_and_one_message(
    tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    write_corrupt_models(tmp_path / "corrupt")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    for flag, value in (("--n-per-class", "2"), ("--exported", str(EXPORTED))):
        if flag not in args:
            args += [flag, value]
    code = call_main(["--quiet", "--out", str(tmp_path / "out"), *args])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_BAD_INPUT
    assert message in err
    assert "Traceback" not in err + out
    assert not (tmp_path / "out").exists()


def test_zip_folder_holds_the_dataset(tmp_path: Path, models) -> None:
    generator, classifier, reference = models
    writer.export_dataset(
        tmp_path / "d",
        writer.SynthConfig(n_per_class=1, class_filter=False),
        generator=generator,
        classifier=classifier,
        reference=reference,
    )
    data = files.zip_folder(tmp_path / "d", top="../set")
    assert data == files.zip_folder(tmp_path / "d", top="../set")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert all(name.startswith("_set/") for name in names)
    assert sorted(n.split("/", 1)[1] for n in names) == sorted(dataset_files(tmp_path / "d"))


# The page.


@pytest.fixture()
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The page on smoke-test models, 2 cells per class."""
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(models_copy(tmp_path / "exported", "smoke")))
    st.cache_resource.clear()
    st.cache_data.clear()
    at = app_page(PAGE)
    at.query_params["d_n"] = "2"
    at.query_params["d_seed"] = str(SEED)
    return at


def page_labels(at: AppTest) -> set[str]:
    """The labels of the page's controls."""
    kinds = ("toggle", "slider", "number_input", "selectbox", "button")
    return {widget.label for kind in kinds for widget in at.get(kind)}


def test_page_generates_a_tiny_set_and_offers_the_zip(app: AppTest) -> None:
    app.run()
    assert not app.exception
    assert "press **Generate**" in app.info[0].value
    threshold = artifacts.load_reference(artifacts.exported_dir()).privacy_threshold
    assert any(f"Threshold: distance **{threshold:.4f}**" in c.value for c in app.caption)
    # The placeholders' classifier rejects one class: their class filter starts off, and
    # turning it on says the export would fail before anything runs.
    assert app.toggle(key="d_class").value is False
    assert any("class filter starts off" in c.value for c in app.caption)
    expect_failure = "Expect this export to fail with the class filter on"
    app.toggle(key="d_class").set_value(True).run()
    (warning,) = [w.value for w in app.warning if expect_failure in w.value]
    assert "up to 40 cells of that class" in warning and "**Class filter**" in warning
    app.toggle(key="d_class").set_value(False).run()
    assert not [w for w in app.warning if expect_failure in w.value]
    app.button[0].click().run()
    assert not app.exception and not app.error
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Cells written"] == "4"
    assert metrics["Rejected by the filters"] == "0"
    (settings,) = [c.value for c in app.caption if "Settings that decided the kept" in c.value]
    views = f"averages {writer.DEFAULT_VIEWS} of the classifier's 8 flips and rotations;"
    precisions = (
        f"generator {artifacts.GENERATOR_PRECISION}, classifier {artifacts.CLASSIFIER_PRECISION}"
    )
    assert views in settings and precisions in settings
    downloads = app.get("download_button")
    assert len(downloads) == 1 and "Download ZIP" in downloads[0].label
    assert len(app.get("image")) == len(CLASSES)
    result = app.session_state["_d_export"]
    archive = zipfile.ZipFile(io.BytesIO(result["zip"]))
    names = archive.namelist()
    assert result["file_name"] == f"malgan_synthetic_cgan_seed{SEED}.zip"
    assert sum(n.endswith(".png") for n in names) == 4
    assert {n.split("/", 1)[1] for n in names if not n.endswith(".png")} == {
        "manifest.csv",
        "summary.json",
        files.DATASHEET_NAME,
    }
    assert app.query_params["d_class"] == "False"


def test_page_defaults_keep_the_class_filter_for_trained_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(models_copy(tmp_path / "exported", "cpu")))
    at = app_page(PAGE).run()
    assert not at.exception
    assert at.toggle(key="d_class").value is True
    assert not [w for w in at.warning if "class filter" in w.value.lower()]


def test_page_shows_each_generators_nearest_training_cell_share_beside_its_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = models_copy(tmp_path / "exported", "gpu")
    data = json.loads((root / artifacts.METRICS_NAME).read_text(encoding="utf-8"))
    data["models"]["dcgan"].pop("membership")
    data["models"]["cgan"]["membership"] = {
        label: {"generated": 0.567, "reference": 0.625, "n": 1445} for label in CLASSES
    }
    (root / artifacts.METRICS_NAME).write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(root))
    at = app_page(PAGE).run()
    assert not at.exception
    names = artifacts.generator_names(artifacts.load_index(root))
    heading = "#### Do the generators copy their training patients?"
    shown = [m.value for m in at.markdown]
    (listed,) = [shown[i + 1] for i, text in enumerate(shown) if text == heading]
    # A generator without the figure is left out; each class beside its reference, same n.
    figure = "56.7% (real cells of unseen patients: 62.5%), 1,445 cells a side"
    assert (
        listed
        == f"- **{names['cgan']}**: " + "; ".join(f"{label} {figure}" for label in CLASSES) + "."
    )
    assert names["dcgan"] not in listed
    assert any(
        "A generator that copies no patient sits at the reference" in c.value for c in at.caption
    )
    assert dataset.membership_lines(None, names) == []


@pytest.mark.parametrize(
    ("p_parasitized", "query", "named"),
    [
        (0.2, {"d_class": "true"}, {"Class filter", "Attempts per cell"}),
        (
            0.8,
            {"d_class": "true", "d_conf": "0.9", "d_privacy": "false"},
            {"Minimum confidence", "Class filter", "Attempts per cell"},
        ),
    ],
)
def test_page_reports_filters_that_reject_everything(
    app: AppTest,
    fixed_verdicts: Callable[[float], None],
    p_parasitized: float,
    query: dict[str, str],
    named: set[str],
) -> None:
    fixed_verdicts(p_parasitized)
    app.query_params.update(query)
    app.run()
    app.button[0].click().run()
    assert not app.exception
    error = app.error[0].value
    assert "Only 0 of 2 Parasitized cells passed the filters" in error
    assert len(app.get("plotly_chart")) == 1
    assert not app.get("download_button")
    # What to change names controls of this page only.
    remedy = error.split("To let more through")[1]
    assert set(re.findall(r"\*\*(.+?)\*\*", remedy)) == named
    assert named <= page_labels(app)


def test_page_progress_shows_cells_per_second(app: AppTest, monkeypatch) -> None:
    shown: list[str] = []
    progress = st.delta_generator.DeltaGenerator.progress

    def record(self, value, text=None):
        shown.append(text or "")
        return progress(self, value, text=text)

    monkeypatch.setattr(st.delta_generator.DeltaGenerator, "progress", record)
    app.run()
    app.button[0].click().run()
    assert not app.exception
    assert [t for t in shown if re.search(r"\d+ cells/s", t)], shown


def test_one_default_seed_for_the_pages_the_overview_and_the_cli():
    from malgan.app import frame

    defaults = cli.build_parser().parse_args(["--n-per-class", "1", "--out", "x"])
    assert defaults.seed == frame.DEFAULT_SEED == writer.DEFAULT_SEED == latent.DEFAULT_SEED
    overview = app_page(str(Path(__file__).resolve().parents[1] / "pages" / "overview.py"))
    overview.run()
    strip = [c for image in overview.image for c in image.captions]
    assert strip and all(f"seed {frame.DEFAULT_SEED}," in c for c in strip)
