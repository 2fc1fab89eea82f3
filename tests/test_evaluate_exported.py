"""train.evaluate_exported: the per-generator figures of ONNX models, written into metrics.json."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from harness.fakes import write_fake_nih_tree
from malgan import artifacts, metrics
from malgan.data import CLASSES
from tests.support.paths import REPO_ROOT
from train import evaluate_exported, figures

RELEASE = REPO_ROOT / "exported"
# Enough patients that the smoke split's validation and test patients hold more than k cells.
PATIENTS, CELLS = 10, 8


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> dict:
    """The committed models' classifier and generators in a copy, evaluated on drawn cells."""
    root = tmp_path_factory.mktemp("evaluate_exported")
    out = root / "exported"
    out.mkdir()
    index = artifacts.load_index(RELEASE)
    files = [index["classifier"]["file"]]
    for entry in index["generators"]:
        files += list(entry["files"].values()) if "files" in entry else [entry["file"]]
    for file in files:
        for path in (RELEASE / file, (RELEASE / file).with_suffix(".json")):
            shutil.copyfile(path, out / path.name)
    for name in (artifacts.INDEX_NAME, artifacts.METRICS_NAME):
        shutil.copyfile(RELEASE / name, out / name)
    before = json.loads((out / artifacts.METRICS_NAME).read_text())
    data = write_fake_nih_tree(root / "nih", patients=PATIENTS, cells=CELLS)
    argv = ["--data", str(data), "--exported", str(out), "--cache-dir", str(root / "cache")]
    evaluate_exported.main([*argv, "--smoke"])
    after = json.loads((out / artifacts.METRICS_NAME).read_text())
    return {"before": before, "after": after, "names": artifacts.generator_names(index)}


def test_every_generator_gains_every_figure_with_its_reference(evaluated):
    for name in evaluated["names"]:
        model = evaluated["after"]["models"][name]
        assert model["diversity"]["k"] == metrics.DIVERSITY_K == 5
        for label in CLASSES:
            entry = model["diversity"][label]
            assert entry["n"] == CELLS  # the validation patient's cells of the class
            assert entry["n_real"] == CELLS  # the test patient's
            for side in ("generated", "reference"):
                assert set(entry[side]) == set(metrics.DIVERSITY_METRICS)
                assert all(v >= 0.0 for v in entry[side].values())
            # Real cells of another patient fall inside the real k-NN balls; these drawn cells
            # are far from what the release's generators draw.
            assert entry["reference"]["precision"] > entry["generated"]["precision"]
            share = model["membership"][label]
            assert 0.0 <= share["generated"] <= 1.0 and 0.0 <= share["reference"] <= 1.0
            assert share["n_members"] == share["n_non_members"] == CELLS


def test_other_figures_stay_as_they_were(evaluated):
    before, after = evaluated["before"], evaluated["after"]
    for name in evaluated["names"]:
        for figure in figures.FIGURES:
            after["models"][name].pop(figure)
            before["models"][name].pop(figure, None)
    written = after["written_by"].pop("figures")
    before["written_by"].pop("figures", None)
    assert after == before
    for figure in figures.FIGURES:
        assert set(written[figure]) == set(evaluated["names"])
        entry = written[figure][next(iter(evaluated["names"]))]
        assert "train.evaluate_exported" in entry["command"] and "--smoke" in entry["command"]
        assert entry["git_commit"] and entry["hardware"]["cpu_count"] >= 1
        assert entry["backend"].startswith("onnxruntime")


def test_figures_come_from_features_whatever_the_backend():
    rng = np.random.default_rng(0)
    real = figures.RealCells(
        **{
            part: {label: rng.standard_normal((40, 6)) for label in CLASSES}
            for part in figures.SOURCE_SPLIT
        }
    )
    copies = figures.Drawn({label: real.members[label] + 1e-9 for label in CLASSES})
    result = figures.compute(copies, real)
    assert set(result) == set(figures.FIGURES)
    for label in CLASSES:
        # Copies of training cells: their nearest real cell is always a training cell.
        assert result["membership"][label]["generated"] == 1.0
        # Cells of the same distribution as the test patients' sit near the reference.
        assert 0.2 < result["membership"][label]["reference"] < 0.8
    tiny = figures.RealCells(
        **{
            part: {label: rng.standard_normal((3, 6)) for label in CLASSES}
            for part in figures.SOURCE_SPLIT
        }
    )
    diversity = figures.compute(figures.Drawn(tiny.val), tiny)["diversity"]
    assert all(math.isnan(v) for v in diversity[CLASSES[0]]["generated"].values())


def test_unknown_figure_is_refused(tmp_path):
    cfg = evaluate_exported.EvalExportedConfig(data=str(tmp_path), figures=("c2st_typo",))
    with pytest.raises(ValueError, match="Unknown figures"):
        evaluate_exported.evaluate_exported(cfg)


@pytest.mark.slow
def test_core_figures_of_one_generator_as_train_evaluate_writes_them(tmp_path):
    out = tmp_path / "exported"
    shutil.copytree(RELEASE, out)
    before = json.loads((out / artifacts.METRICS_NAME).read_text())
    data = write_fake_nih_tree(tmp_path / "nih", patients=PATIENTS, cells=CELLS)
    argv = ["--data", str(data), "--exported", str(out), "--cache-dir", str(tmp_path / "cache")]
    evaluate_exported.main(
        [*argv, "--generators", "dcgan", "--figures", "c2st", "--core", "--smoke"]
    )
    after = json.loads((out / artifacts.METRICS_NAME).read_text())
    model = after["models"]["dcgan"]
    for label in CLASSES:
        assert model["recovery"][label]["n"] == 16  # evaluate.smoke_config's cells per class
        assert 0.0 <= model["memorization"][label]["share"] <= 1.0
        assert sum(model["confidence_histogram"][label]["counts"]) == 16
        assert model["fd_ratio"][label] == pytest.approx(
            model["fd"][label] / before["fd_real_floor"][label]
        )
        for judge in ("resnet_plain", "cnn_sound"):
            assert 0.0 <= model["recovery_by"][judge][label]["rate"] <= 1.0
    assert 0.0 <= model["tstr_accuracy"] <= 1.0 and model["tstr"]["n_train"] > 0
    assert after["models"]["cgan"] == before["models"]["cgan"]
    assert "--core" in after["written_by"]["figures"]["tstr"]["dcgan"]["command"]
