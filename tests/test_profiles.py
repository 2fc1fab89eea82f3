"""Training profiles: their stage configs, the CPU profile's time budget, and pipeline resume."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

import torch

from harness.fakes import write_fake_nih_tree
from malgan.data import CLASSES, load_dataset
from train import cgan, config, models, pipeline, release_metrics, seed_gan
from train.profiles import CPU, GPU, MODE_SEEKING, PROFILES, SMOKE

CLASSIFIER_TABLE = {"classifier", "resnet_plain", "cnn_report", "cnn_report_unit", "cnn_sound"}


def test_every_profile_trains_every_model_the_dashboard_shows():
    assert set(PROFILES) == {"smoke", "cpu", "gpu"}
    for profile in PROFILES.values():
        assert set(profile.classifiers) == CLASSIFIER_TABLE
        assert set(pipeline.STAGES) <= {
            *profile.classifiers,
            "diagnose_cnn",
            "dcgan",
            "cgan",
            "throughput",
            "evaluate",
            "export",
        }
        # Paths, data and seeds are the pipeline's: a profile only says how stages train.
        for cfg in (*profile.classifiers.values(), profile.dcgan, profile.cgan):
            assert cfg.data == "" and cfg.seed == 0


def test_the_report_cnn_is_trained_the_report_way_in_every_profile():
    for profile in PROFILES.values():
        for name, scale in (("cnn_report", "raw"), ("cnn_report_unit", "unit")):
            cfg = profile.classifiers[name]
            assert (cfg.arch, cfg.recipe, cfg.lr, cfg.batch) == ("simple_cnn", "report", 0.01, 32)
            assert cfg.input_scale == scale and not cfg.bf16 and not cfg.select_best


def test_only_the_smoke_profile_trains_on_the_smoke_subset():
    assert SMOKE.smoke and not CPU.smoke and not GPU.smoke
    smoke_flags = [c.smoke for c in SMOKE.classifiers.values()]
    assert all(smoke_flags) and SMOKE.evaluate.smoke and SMOKE.export.smoke
    assert not any(c.smoke for c in CPU.classifiers.values())


def test_gpu_profile_keeps_the_report_schedule():
    assert GPU.dcgan.iterations == 15000 and GPU.dcgan.batch == 32
    # No shared budget: each GAN only stops at its own cap, if it is that slow.
    assert GPU.budget_minutes == 0 and GPU.cgan.minutes > 0 and GPU.dcgan.minutes > 0
    assert GPU.jobs > 1 and CPU.jobs == 1 and SMOKE.jobs == 1


def test_stages_wait_for_what_they_need_among_the_chosen():
    todo = list(pipeline.STAGES)
    needs = pipeline.dependencies(GPU, todo)
    assert needs["classifier"] == set() and needs["cnn_sound"] == set()
    assert needs["dcgan"] == {"classifier"}
    assert needs["cgan"] == {"classifier", GPU.cgan_guide}
    training = set(pipeline.STAGES[: pipeline.STAGES.index("throughput")])
    assert needs["throughput"] == training
    assert needs["evaluate"] == training | {"throughput"}
    assert needs["export"] == training | {"throughput", "evaluate"}
    # A stage left out of this run (or finished before it) is not waited for.
    assert pipeline.dependencies(GPU, ["cgan", "evaluate"]) == {"cgan": set(), "evaluate": {"cgan"}}


def test_side_by_side_stages_refuse_a_shared_budget(tmp_path):
    cfg = pipeline.PipelineConfig(data="d", runs=str(tmp_path), profile="cpu", jobs=2)
    with pytest.raises(ValueError, match="--jobs 1"):
        pipeline.run_pipeline(cfg, "cmd")
    assert not (tmp_path / models.STAGES_LOG).exists()


def test_the_banner_minutes_are_the_wall_time_where_stages_ran_side_by_side(tmp_path: Path):
    lines = [
        {"event": "start", "command": "cmd", "profile": "gpu", "jobs": 4},
        {"stage": "classifier", "seconds": 60.0},
        {"stage": "cnn_sound", "seconds": 60.0},
        {"event": "wall", "seconds": 66.0},
    ]
    (tmp_path / models.STAGES_LOG).write_text("".join(json.dumps(x) + "\n" for x in lines))
    record = release_metrics.run_profile(tmp_path)
    assert (record["total_seconds"], record["wall_seconds"]) == (120.0, 66.0)
    assert release_metrics.run_minutes(record) == 1.1
    lines[0]["jobs"] = 1
    (tmp_path / models.STAGES_LOG).write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert release_metrics.run_minutes(release_metrics.run_profile(tmp_path)) == 2.0


def test_cpu_profile_gives_the_dcgan_pair_the_conditional_gan_minutes():
    assert CPU.budget_minutes <= 90
    assert CPU.dcgan.minutes * len(CLASSES) == CPU.cgan.minutes
    # The report's loop and hyperparameters; only the wall time bounds it.
    assert (CPU.dcgan.batch, CPU.dcgan.lr, CPU.dcgan.beta1) == (32, 2e-4, 0.5)
    assert not CPU.dcgan.keep_best and CPU.cgan.keep_best


def test_no_profile_guides_a_generator_with_its_judge():
    for profile in PROFILES.values():
        assert profile.cgan_guide != "classifier"
        if profile.cgan_guide:
            assert profile.cgan_guide in profile.classifiers
            assert profile.cgan.guide_weight > 0


def test_the_guide_run_reaches_the_conditional_gan(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(cgan, "train", seen.append)
    profile = replace(CPU, cgan_guide="cnn_sound", cgan=replace(CPU.cgan, guide_weight=0.5))
    monkeypatch.setitem(PROFILES, "cpu", profile)
    cfg = pipeline.PipelineConfig(data="d", runs=str(tmp_path), profile="cpu")
    pipeline.stage_runners(cfg, {})["cgan"]()
    assert seen[0].guide == str(tmp_path / "cnn_sound" / models.FINAL)
    assert seen[0].classifier == str(tmp_path / "classifier" / models.FINAL)


def test_smoke_flag_is_an_alias_of_the_smoke_profile():
    def parsed(*argv: str) -> pipeline.PipelineConfig:
        return config.parse_config(pipeline.PipelineConfig, ["--data", "cells", *argv])

    assert parsed("--smoke").chosen is SMOKE
    assert parsed("--profile", "smoke").chosen is SMOKE
    assert parsed("--profile", "cpu").chosen is CPU
    assert parsed().chosen is GPU
    with pytest.raises(SystemExit):
        parsed("--profile", "laptop")


@pytest.mark.parametrize("spent_minutes", [0, 20, 35, 50, 70, 90, 200])
def test_gan_minutes_keep_the_run_within_its_budget(spent_minutes):
    minutes = pipeline.gan_minutes(CPU, spent_minutes * 60)
    assert pipeline.MIN_GAN_MINUTES <= minutes <= CPU.cgan.minutes
    if minutes > pipeline.MIN_GAN_MINUTES:
        total = spent_minutes + 2 * minutes + CPU.reserve_minutes
        assert total <= CPU.budget_minutes + 1e-6


def test_gan_minutes_shrink_as_earlier_stages_take_longer():
    values = [pipeline.gan_minutes(CPU, m * 60) for m in range(0, 100, 5)]
    assert values == sorted(values, reverse=True)
    assert values[0] == CPU.cgan.minutes and values[-1] == pipeline.MIN_GAN_MINUTES


def test_budgeted_gan_stages_share_the_same_minutes(monkeypatch, tmp_path):
    seen: dict[str, list[Any]] = {"dcgan": [], "cgan": []}
    monkeypatch.setattr(seed_gan, "train", lambda cfg: seen["dcgan"].append(cfg))
    monkeypatch.setattr(cgan, "train", lambda cfg: seen["cgan"].append(cfg))
    cfg = pipeline.PipelineConfig(data="d", runs=str(tmp_path), profile="cpu")
    runners = pipeline.stage_runners(cfg, {"gan_minutes": 10.0})
    runners["dcgan"]()
    runners["cgan"]()
    assert [c.class_name for c in seen["dcgan"]] == list(CLASSES)
    assert sum(c.minutes for c in seen["dcgan"]) == pytest.approx(seen["cgan"][0].minutes)
    assert seen["cgan"][0].minutes == 10.0
    probe = str(tmp_path / "classifier" / models.FINAL)
    assert all(c.classifier == probe for c in (*seen["dcgan"], *seen["cgan"]))
    # Without a plan the profile's own minutes stand.
    unplanned = pipeline.stage_runners(cfg, {})
    unplanned["cgan"]()
    assert seen["cgan"][-1].minutes == CPU.cgan.minutes


@pytest.fixture
def plain_main(monkeypatch):
    """A ``__main__`` without a file, as under ``python -m``: a spawned stage process re-runs the
    parent's main script, and an earlier test (the Streamlit ones) may have left the app there."""
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))


@pytest.fixture(scope="module")
def nih(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("profiles")
    data = write_fake_nih_tree(root / "nih")
    load_dataset(data, cache_dir=root / "cache", progress=False)
    return {"data": data, "cache": root / "cache", "root": root}


def test_a_resumed_pipeline_skips_finished_stages_and_counts_every_attempt(nih):
    runs = nih["root"] / "runs"
    argv = ["--data", str(nih["data"]), "--cache-dir", str(nih["cache"]), "--smoke"]
    argv += ["--runs", str(runs), "--out", str(nih["root"] / "out"), "--stages", "cnn_sound"]
    cfg = config.parse_config(pipeline.PipelineConfig, argv)
    first = pipeline.run_pipeline(cfg, "cmd")
    model = runs / "cnn_sound" / models.FINAL
    written = model.stat().st_mtime_ns
    again = pipeline.run_pipeline(cfg, "cmd")
    assert model.stat().st_mtime_ns == written, "a finished stage ran again"
    assert again["stage_seconds"] == first["stage_seconds"]
    lines = release_metrics.read_jsonl(runs / models.STAGES_LOG)
    events = [line.get("event") for line in lines if "event" in line]
    assert events == ["start", "wall", "start", "wall"]
    assert again["profile"] == "smoke"
    # Another command line of the same data, profile and seed skips the stage too ...
    pipeline.run_pipeline(replace(cfg, jobs=1), "the same run, another command line")
    assert model.stat().st_mtime_ns == written, "a finished stage ran again"
    # ... unless its outputs are gone: it runs again, its old seconds dropped.
    model.unlink()
    pipeline.run_pipeline(cfg, "cmd")
    lines = release_metrics.read_jsonl(runs / models.STAGES_LOG)
    assert model.is_file() and [line["stage"] for line in lines if "stage" in line] == ["cnn_sound"]
    # --rerun trains it again from scratch, in place of its earlier line.
    written = model.stat().st_mtime_ns
    pipeline.run_pipeline(replace(cfg, rerun=True), "cmd --rerun")
    lines = release_metrics.read_jsonl(runs / models.STAGES_LOG)
    assert model.stat().st_mtime_ns != written
    assert [line["stage"] for line in lines if "stage" in line] == ["cnn_sound"]
    # Another seed starts a new log (and runs the stage again).
    pipeline.run_pipeline(replace(cfg, seed=cfg.seed + 1), "another seed")
    lines = release_metrics.read_jsonl(runs / models.STAGES_LOG)
    assert lines[0]["command"] == "another seed" and len(lines) == 3


def test_stages_train_side_by_side_in_their_own_processes(nih, plain_main):
    runs = nih["root"] / "side_by_side"
    argv = ["--data", str(nih["data"]), "--cache-dir", str(nih["cache"]), "--smoke"]
    argv += ["--runs", str(runs), "--jobs", "2"]
    argv += ["--stages", "cnn_report", "cnn_report_unit", "cnn_sound"]
    record = pipeline.run_pipeline(config.parse_config(pipeline.PipelineConfig, argv), "cmd")
    assert set(record["stage_seconds"]) == {"cnn_report", "cnn_report_unit", "cnn_sound"}
    assert record["jobs"] == 2 and record["wall_seconds"] > 0
    for name in record["stage_seconds"]:
        assert (runs / name / models.FINAL).exists()
    logged = release_metrics.read_jsonl(runs / models.STAGES_LOG)
    events = [line["event"] for line in logged if "event" in line]
    assert events == ["start", "wall"]


def test_a_stage_that_fails_in_its_process_stops_the_run_with_its_own_error(nih, plain_main):
    """The conditional GAN learns from its guide, which this run neither has nor trains."""
    runs = nih["root"] / "failing"
    argv = ["--data", str(nih["data"]), "--cache-dir", str(nih["cache"]), "--smoke"]
    argv += ["--runs", str(runs), "--jobs", "2", "--stages", "cgan"]
    cfg = config.parse_config(pipeline.PipelineConfig, argv)
    with pytest.raises(config.EXPECTED_ERRORS, match=SMOKE.cgan_guide):
        pipeline.run_pipeline(cfg, "cmd")
    logged = release_metrics.read_jsonl(runs / models.STAGES_LOG)
    assert not [line for line in logged if "stage" in line]


def test_profile_configs_are_frozen():
    with pytest.raises(AttributeError):
        CPU.cgan.minutes = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        CPU.budget_minutes = 1000  # type: ignore[misc]


def test_a_gan_stage_counts_the_training_of_an_attempt_killed_part_way(tmp_path: Path):
    """The attempt that finished the conditional GAN logged 10 s, but its checkpoints carried 95.5 s
    of training from a killed attempt; the DCGANs' loops (2 x 20 s) fit in their logged 50 s."""
    lines = [
        {"event": "start", "command": "cmd", "profile": "cpu"},
        {"stage": "classifier", "seconds": 30.0},
        {"stage": "dcgan", "seconds": 50.0},
        {"stage": "cgan", "seconds": 10.0},
    ]
    (tmp_path / models.STAGES_LOG).write_text("".join(json.dumps(x) + "\n" for x in lines))
    trained = {models.run_name("cgan"): 95.5}
    trained.update({models.run_name("dcgan", label): 20.0 for label in CLASSES})
    for run, seconds in trained.items():
        (tmp_path / run).mkdir()
        torch.save({"state": {"train_seconds": seconds}}, tmp_path / run / models.FINAL)
    record = release_metrics.run_profile(tmp_path)
    assert record["stage_seconds"] == {"classifier": 30.0, "dcgan": 50.0, "cgan": 95.5}
    assert record["loop_seconds"] == {"dcgan": 40.0, "cgan": 95.5}
    assert record["total_seconds"] == 175.5
    # Side by side, the two DCGANs' loops overlap: the stage took the longer one.
    lines[0]["jobs"] = 4
    (tmp_path / models.STAGES_LOG).write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert release_metrics.run_profile(tmp_path)["loop_seconds"] == {"dcgan": 20.0, "cgan": 95.5}


def test_the_release_profiles_draw_the_conditional_gan_with_the_tried_mode_seeking_term():
    # The winner of benchmarks.recipe_tries reaches every profile that trains a release.
    for profile in (GPU, CPU):
        assert profile.cgan.mode_seeking == MODE_SEEKING > 0
        assert profile.cgan.batch % 2 == 0  # pairs of latents fill the batch
