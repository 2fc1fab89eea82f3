"""The whole training pipeline with --smoke, end to end, and its exported models at run time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.fakes import write_fake_nih_tree
from malgan import artifacts, latent, real_sample, runtime
from malgan.data import CLASSES
from tests.support.paths import REPO_ROOT, SHARED_DATA
from train import figures
from train.models import STAGES_LOG
from train.pipeline import STAGES as PIPELINE_STAGES
from train.splits import SMOKE_CELLS

# The pipeline's wall time is measured by benchmarks/pipeline_smoke.py, never asserted here.
# Hang guards only, far above a run's time on a loaded two-core CPU (about 600 s at a load of
# 5): the run's own limit stays below pytest-timeout's, so a hung stage fails with its output.
RUN_TIMEOUT_S = 1800
TEST_TIMEOUT_S = 2100

pytestmark = [pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]
STAGES = (
    "classifier",
    "resnet_plain",
    "cnn_report",
    "cnn_report_unit",
    "cnn_sound",
    "dcgan",
    "cgan",
    "throughput",
    "evaluate",
    "export",
)
CLASSIFIER_ROW_KEYS = ("accuracy", "auc", "sensitivity", "specificity")
CELLS = 3


def run_smoke_pipeline(
    data: Path, root: Path, *, cache_dir: Path | None, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run ``python -m train.pipeline --smoke`` (and ``extra`` flags); its folders and output."""
    out, runs = root / "exported", root / "runs"
    cmd = [sys.executable, "-m", "train.pipeline", "--data", str(data), "--out", str(out)]
    cmd += ["--runs", str(runs), "--smoke", *extra]
    if cache_dir is not None:
        cmd += ["--cache-dir", str(cache_dir)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"out": out, "runs": runs, "stdout": proc.stdout, "stderr": proc.stderr}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pipeline")
    data = write_fake_nih_tree(root / "nih")
    return {**run_smoke_pipeline(data, root, cache_dir=root / "cache"), "data": data, "root": root}


def _index(out: Path) -> dict[str, Any]:
    return json.loads((out / "index.json").read_text())


def _metrics(out: Path) -> dict[str, Any]:
    return json.loads((out / "metrics.json").read_text())


def _model_files(index: dict[str, Any]) -> list[str]:
    files = [entry["file"] for entry in index["classifiers"]]
    for entry in index["generators"]:
        files += list(entry["files"].values()) if "files" in entry else [entry["file"]]
    return files


def check_exported_files(out: Path) -> None:
    """Every file the index names exists, and each model has a matching sidecar."""
    index = _index(out)
    assert index["smoke"] is True
    assert {g["name"] for g in index["generators"]} == {"cgan", "dcgan"}
    assert index["classifier"]["file"] in _model_files(index)
    for file in _model_files(index):
        assert (out / file).is_file(), file
        meta = json.loads(runtime.sidecar_path(out / file).read_text())
        assert meta["sha256"] == runtime.sha256_file(out / file)
    reference = index["reference"]
    assert (out / (reference["file"] if isinstance(reference, dict) else reference)).is_file()
    for name in ("cgan", "dcgan"):
        snaps = index["snapshots"][name]
        assert {s["class"] for s in snaps} == set(CLASSES)
        assert {1, max(s["iteration"] for s in snaps)} <= {s["iteration"] for s in snaps}
        assert all((out / s["file"]).is_file() for s in snaps)
    for file in index["history"].values():
        assert isinstance(json.loads((out / file).read_text()), dict | list)


def check_metrics(out: Path) -> dict[str, Any]:
    """metrics.json has provenance, the classifier's test figures and every model's figures."""
    metrics = _metrics(out)
    assert metrics["smoke"] is True
    assert metrics["git_commit"] and "train.pipeline" in metrics["command"]
    assert "--smoke" in metrics["command"]
    # The report's DCGANs keep their last iteration; the conditional GAN its best probe's.
    for run in metrics["models"]["dcgan"]["training"].values():
        assert run["selected_iteration"] == run["iterations"]
    (cgan_run,) = metrics["models"]["cgan"]["training"].values()
    assert 0 < cgan_run["selected_iteration"] <= cgan_run["iterations"]
    # Written by the pipeline's own export stage: the same command and commit.
    assert metrics["written_by"] == {
        "command": metrics["command"],
        "git_commit": metrics["git_commit"],
        "hardware": metrics["hardware"],
    }
    assert {"platform", "python", "torch", "cpu_count"} <= set(metrics["hardware"])
    assert set(STAGES) <= set(metrics["stage_seconds"])
    # The banner names the machine that trained; its minutes are the whole run's, the export
    # stage included.
    index = json.loads((out / "index.json").read_text())
    assert index["profile"]["hardware"] == metrics["hardware"]
    assert metrics["total_seconds"] == pytest.approx(sum(metrics["stage_seconds"].values()))
    assert index["profile"]["train_minutes"] == round(metrics["total_seconds"] / 60, 1)
    clf = metrics["classifier"]
    assert 0.0 <= clf["test_accuracy"] <= 1.0 and 0.0 <= clf["test_auc"] <= 1.0
    assert clf["n_test"] == int(np.sum(clf["confusion"])) > 0
    assert clf["test_patients"] and all(isinstance(k, str) for k in clf["test_patients"])
    for name in ("cgan", "dcgan"):
        model = metrics["models"][name]
        for label in CLASSES:
            rec = model["recovery"][label]
            assert 0.0 <= rec["ci_low"] <= rec["rate"] <= rec["ci_high"] <= 1.0
            assert np.isfinite(model["fd"][label]) and model["fd"][label] >= 0
            assert model["fd_real_floor"][label] >= 0
            assert 0.0 <= model["memorization"][label]["share"] <= 1.0
            assert 0.0 <= model["membership"][label]["generated"] <= 1.0
            # A smoke split's few validation cells may leave the k-NN figures undefined (null).
            assert set(model["diversity"][label]) == {"generated", "reference", "n", "n_real"}
        # train.evaluate files the same figures as train.evaluate_exported.
        assert set(figures.FIGURES) <= set(model)
        assert 0.0 <= model["tstr_accuracy"] <= 1.0
    rows = {row["name"]: row for row in metrics["classifiers"]}
    assert len(rows) == len(_index(out)["classifiers"])
    for row in rows.values():
        for key in CLASSIFIER_ROW_KEYS:
            assert row[key] is None or 0.0 <= row[key] <= 1.0, (row["name"], key)
        assert row["accuracy"] is not None
        assert row["parameters"] > 0 and row["cpu_latency_ms"] > 0
    return metrics


def check_models_run(out: Path) -> None:
    """Every exported model loads through malgan.runtime and generates or classifies."""
    index = artifacts.load_index(out)
    main = artifacts.load_classifier(out)
    cells = []
    for entry in index["generators"]:
        gen = artifacts.load_generator(out, entry["name"])
        assert gen.classes == CLASSES
        for label in CLASSES:
            images = gen.generate(latent.sample_z(0, CELLS, gen.z_dim), label)
            assert images.shape == (CELLS, 64, 64, 3) and images.dtype == np.uint8
            cells.append(images)
    batch = np.concatenate(cells)
    for entry in index["classifiers"]:
        clf = artifacts.load_classifier(out, entry["name"])
        proba = clf.predict_proba(batch)
        assert proba.shape == (len(batch), len(CLASSES))
        np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert main.features(batch).shape[0] == len(batch)
    reference = artifacts.load_reference(out)
    assert reference.codes(main.features(batch[:1])).shape == (1, reference.proj.shape[1])
    assert artifacts.load_metrics(out)["smoke"] is True


def test_smoke_pipeline_writes_every_file(smoke):
    check_exported_files(smoke["out"])


def test_smoke_pipeline_metrics(smoke):
    metrics = check_metrics(smoke["out"])
    assert metrics["throughput"]["naive_its"] > 0


def test_smoke_pipeline_models_run(smoke):
    check_models_run(smoke["out"])


def test_smoke_pipeline_runs_every_stage_in_order(smoke):
    log = (smoke["runs"] / STAGES_LOG).read_text().splitlines()
    finished = [line for line in map(json.loads, log) if "stage" in line]
    assert [line["stage"] for line in finished] == list(PIPELINE_STAGES)
    assert set(STAGES) <= set(PIPELINE_STAGES)
    assert all(line["seconds"] >= 0 for line in finished)


def test_smoke_pipeline_run_again_skips_every_finished_stage(smoke):
    """A second run on the finished folder (another command line, the same data, profile and
    seed) trains nothing, says why, and leaves every file as it was."""
    files = [p for folder in (smoke["out"], smoke["runs"]) for p in folder.rglob("*")]
    kept = {p: p.stat().st_mtime_ns for p in files if p.is_file() and p.name != STAGES_LOG}
    again = run_smoke_pipeline(
        smoke["data"], smoke["root"], cache_dir=smoke["root"] / "cache", extra=("--jobs", "1")
    )
    for stage in PIPELINE_STAGES:
        assert f"Stage {stage} skipped: finished in an earlier run" in again["stderr"], stage
    assert "--rerun" in again["stderr"]
    now = [p for folder in (smoke["out"], smoke["runs"]) for p in folder.rglob("*")]
    assert {p for p in now if p.is_file() and p.name != STAGES_LOG} == set(kept)
    changed = [str(p) for p, mtime in kept.items() if p.stat().st_mtime_ns != mtime]
    assert not changed, f"a skipped stage wrote {changed}"


def test_smoke_pipeline_ships_no_real_cell_by_default(smoke):
    """A run on private scans must not export a patient's cell unless asked (--real-sample)."""
    assert not real_sample.exists(smoke["out"])
    exported = {p.name for p in smoke["out"].rglob("*")}
    assert not exported & {real_sample.SHEET_NAME, real_sample.SIDECAR_NAME}


@pytest.mark.shared
def test_smoke_pipeline_on_the_real_cells(tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real NIH cells not found at {SHARED_DATA}")
    # The default decode cache is shared with every other use of the real cells.
    result = run_smoke_pipeline(SHARED_DATA, tmp_path, cache_dir=None)
    check_exported_files(result["out"])
    metrics = check_metrics(result["out"])
    # Smoke runs keep a fixed number of cells per class and split.
    assert metrics["classifier"]["n_test"] <= len(CLASSES) * SMOKE_CELLS
    check_models_run(result["out"])
