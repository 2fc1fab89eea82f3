"""Tests for malgan.artifacts: the exported folder, its index, metrics, histories and snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from malgan import artifacts
from malgan.data import CLASSES
from malgan.errors import ModelError

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_exported_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(artifacts.EXPORTED_ENV, raising=False)
    assert artifacts.exported_dir() == REPO_ROOT / "exported" == artifacts.DEFAULT_EXPORTED
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(tmp_path))
    assert artifacts.exported_dir() == tmp_path


def test_index_facts_for_the_pages() -> None:
    index = {
        "generators": [{"name": "cgan", "display_name": "Conditional"}, {"name": "dcgan"}],
        "smoke": True,
    }
    assert artifacts.generator_names(index) == {"cgan": "Conditional", "dcgan": "dcgan"}
    assert "smoke-test placeholders" in artifacts.placeholder_notice(index)
    assert artifacts.placeholder_notice({"placeholder": "Early models."}) == "Early models."
    assert artifacts.placeholder_notice({}) is None


def test_measured_recovery_keeps_finite_rates_of_known_classes() -> None:
    recovery = {
        "Parasitized": {"rate": 0.25},
        "Uninfected": {"rate": float("nan")},
        "Platelet": {"rate": 0.5},
    }
    metrics = {"models": {"cgan": {"recovery": recovery}}}
    assert artifacts.measured_recovery(metrics, "cgan") == {"Parasitized": 0.25}
    assert artifacts.measured_recovery(metrics, "dcgan") == {}
    assert artifacts.measured_recovery({}, "cgan") == {}


def test_load_models_names_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        artifacts.load_models(tmp_path / "gone", "cgan")


def test_load_history_errors_are_model_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelError, match="missing"):
        artifacts.load_history(tmp_path, "gone.json")
    with pytest.raises(ModelError, match="cannot be read"):
        artifacts.load_history(tmp_path, "bad.json")
    with pytest.raises(ModelError, match="outside"):
        artifacts.load_history(tmp_path, "../secrets.json")


def test_snapshot_files_are_ordered_and_filtered(tmp_path: Path) -> None:
    index = {
        "snapshots": {
            "cgan": [
                {"class": "Uninfected", "iteration": 5000, "file": "s/u5000.png"},
                {"class": "Parasitized", "iteration": 15000, "file": "s/p15000.png"},
                {"class": "Parasitized", "iteration": 1, "file": "s/p1.png"},
                {"class": "Parasitized", "iteration": "x", "file": "s/bad.png"},
                {"class": "Other", "iteration": 1, "file": "s/o.png"},
                {"class": "Uninfected", "iteration": 1, "file": "../../etc/passwd"},
                "junk",
            ]
        }
    }
    found = artifacts.snapshot_files(index, "cgan", tmp_path)
    assert list(found) == list(CLASSES)
    assert [it for it, _ in found["Parasitized"]] == [1, 15000]
    assert found["Uninfected"] == [(5000, (tmp_path / "s/u5000.png").resolve())]
    assert artifacts.snapshot_files(index, "dcgan", tmp_path) == {}
    assert artifacts.snapshot_files({}, "cgan", tmp_path) == {}
