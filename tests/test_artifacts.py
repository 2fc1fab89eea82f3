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


def profile_index(name: str, minutes: float, **hardware: object) -> dict[str, object]:
    """An index as ``train/export.py`` writes it for a run of one training profile."""
    return {
        "smoke": name == "smoke",
        "profile": {"name": name, "train_minutes": minutes, "hardware": hardware},
    }


def test_models_notice_follows_the_training_profile() -> None:
    smoke = artifacts.models_notice(profile_index("smoke", 0.9, cpu_count=2, cuda=False))
    assert smoke.warning and "smoke-test placeholders" in smoke.text
    # An index of before the profiles, marked smoke only.
    assert artifacts.models_notice({"smoke": True}) == smoke

    cpu = artifacts.models_notice(profile_index("cpu", 88.6, cpu_count=2, cuda=False))
    assert cpu == artifacts.ModelsNotice(
        "CPU-trained models: 89 minutes on 2 CPU cores. A GPU release will replace them."
    )
    one = artifacts.models_notice(profile_index("cpu", 1.2, cpu_count=1))
    assert one.text.startswith("CPU-trained models: 1 minute on 1 CPU core.")

    gpu = artifacts.models_notice(
        profile_index("gpu", 61.4, cpu_count=16, cuda=True, gpu="NVIDIA H100 80GB HBM3")
    )
    assert not gpu.warning
    assert gpu.text == (
        "These are the GPU release models, trained in 61 minutes on NVIDIA H100 80GB HBM3."
    )
    for notice in (cpu, gpu):
        assert "placeholder" not in notice.text.lower()

    # No profile, or one the app does not know: no banner.
    assert artifacts.models_notice({}) is None
    assert artifacts.models_notice(profile_index("", 3.0)) is None


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
