"""The training scripts: flags from their configs, and --smoke runs on a fake NIH folder."""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from harness.fakes import write_fake_nih_tree  # noqa: E402
from malgan.data import CLASSES, load_dataset  # noqa: E402
from malgan.nn import registry  # noqa: E402
from malgan.nn.nets import DCGANDiscriminator  # noqa: E402
from train import (  # noqa: E402
    cgan,
    classifier,
    evaluate,
    export,
    losses,
    models,
    pipeline,
    seed_gan,
)
from train.config import EXIT_USAGE, config_flags, parse_config, replace, run_cli  # noqa: E402
from train.gan_loop import SNAPSHOT_CELLS  # noqa: E402
from train.probes import Probe, probe_score  # noqa: E402

CONFIGS = (
    classifier.ClassifierConfig,
    seed_gan.SeedGANConfig,
    cgan.CGANConfig,
    evaluate.EvalConfig,
    export.ExportConfig,
    pipeline.PipelineConfig,
)
SMOKE_ITERATIONS = 12  # seed_gan.smoke_config and cgan.smoke_config
SMOKE_EPOCHS = 2  # classifier.smoke_config
SMALL_CH = 8  # a narrow conditional GAN keeps its smoke run to seconds
SNAPSHOT_GRID_SIDE = math.isqrt(SNAPSHOT_CELLS)  # the snapshot cells in a square grid
# A learning rate at which SGD on raw 0-255 pixels overflows within the first epoch.
DIVERGING_LR = 1e4


@dataclass(frozen=True)
class DemoConfig:
    """Every kind of field a script config uses."""

    data_dir: str = "cells"
    max_steps: int = 3
    learning_rate: float = 0.5
    use_ema: bool = True
    sizes: tuple[int, ...] = (1, 2)
    names: tuple[str, ...] = ("a",)


# Configs.
@pytest.mark.parametrize("cls", (*CONFIGS, DemoConfig))
def test_flags_are_the_fields_in_kebab_case(cls):
    cfg = cls()
    flags = [f for f in config_flags(cfg) if f.startswith("--")]
    expected = []
    for f in fields(cls):
        name = f.name.replace("_", "-")
        expected.append(f"--{name}" if getattr(cfg, f.name) is not False else f"--no-{name}")
    assert flags == expected
    assert all("_" not in flag for flag in flags)
    assert parse_config(cls, config_flags(cfg)) == cfg
    if cls is pipeline.PipelineConfig:
        return  # --data is required: test_pipeline_flags_name_what_is_wrong
    assert parse_config(cls, []) == cfg


@pytest.mark.parametrize(
    ("argv", "message"),
    (
        ([], "the following arguments are required: --data"),
        (["--data", "d", "--seed", "-1"], "argument --seed: must be at least 0, got -1"),
    ),
)
def test_pipeline_flags_name_what_is_wrong(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(pipeline.PipelineConfig, argv)
    assert exit_info.value.code == EXIT_USAGE
    assert message in capsys.readouterr().err
    cfg = parse_config(pipeline.PipelineConfig, ["--data", "d", "--seed", "0"])
    assert (cfg.data, cfg.seed) == ("d", 0)


def test_flags_round_trip_changed_values():
    cfg = DemoConfig(
        data_dir="x y", max_steps=7, learning_rate=1e-4, use_ema=False, sizes=(3,), names=()
    )
    assert parse_config(DemoConfig, config_flags(cfg)) == cfg
    changed = replace(
        pipeline.PipelineConfig(), stages=("classifier", "export"), smoke=True, seed=3
    )
    assert parse_config(pipeline.PipelineConfig, config_flags(changed)) == changed


def test_flags_parse_booleans_tuples_and_choices():
    cfg = parse_config(
        classifier.ClassifierConfig, ["--no-bf16", "--select-best", "--input-scale", "raw"]
    )
    assert cfg.bf16 is False and cfg.select_best is True and cfg.input_scale == "raw"
    cfg = parse_config(evaluate.EvalConfig, ["--generators", "cgan", "--n-cells", "5"])
    assert cfg.generators == ("cgan",) and cfg.n_cells == 5
    cfg = parse_config(DemoConfig, ["--sizes", "4", "5", "--learning-rate", "2e-3"])
    assert cfg.sizes == (4, 5) and cfg.learning_rate == 2e-3
    for argv in (["--arch", "vgg"], ["--cache_dir", "x"], ["--epochs", "two"]):
        with pytest.raises(SystemExit):
            parse_config(classifier.ClassifierConfig, argv)
    with pytest.raises(SystemExit):
        parse_config(pipeline.PipelineConfig, ["--stages", "classifier", "deploy"])


# Smoke runs.
@pytest.fixture(scope="module")
def nih(tmp_path_factory) -> dict[str, Path]:
    """One fake NIH folder and a warm decode cache shared by every run in this module."""
    root = tmp_path_factory.mktemp("scripts")
    data = write_fake_nih_tree(root / "nih")
    cache = root / "cache"
    load_dataset(data, cache_dir=cache, progress=False)
    return {"data": data, "cache": cache, "root": root}


def _argv(nih: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "--data",
        str(nih["data"]),
        "--out",
        str(out),
        "--cache-dir",
        str(nih["cache"]),
        "--smoke",
        *extra,
    ]


def _log_lines(out: Path) -> list[dict[str, Any]]:
    lines = (out / "log.jsonl").read_text().splitlines()
    assert lines, "log.jsonl is empty"
    return [json.loads(line) for line in lines]


def _strict_json(line: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def _rerun_resumes(main, argv: list[str], out: Path, caplog) -> list[dict[str, Any]]:
    """Run the same command again; return the log lines it added."""
    before = len(_log_lines(out))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="malgan.train"):
        main(argv)
    assert any(r.getMessage().startswith("Resumed") for r in caplog.records)
    return _log_lines(out)[before:]


CLASSIFIER_RUNS = {
    "resnet": ["--arch", "resnet"],
    # The report's recipe exactly as the pipeline runs it.
    "simple_cnn_report": [
        "--arch",
        "simple_cnn",
        "--recipe",
        "report",
        "--lr",
        "0.01",
        "--input-scale",
        "raw",
        "--no-bf16",
        "--no-select-best",
        "--no-halt-on-nonfinite",
    ],
}


@pytest.fixture(scope="module")
def classifier_runs(nih) -> dict[str, Path]:
    outs = {}
    for name, extra in CLASSIFIER_RUNS.items():
        outs[name] = nih["root"] / name
        classifier.main(_argv(nih, outs[name], *extra))
    return outs


@pytest.mark.parametrize("name", list(CLASSIFIER_RUNS))
def test_classifier_smoke_writes_a_self_describing_model(classifier_runs, name):
    out = classifier_runs[name]
    config = json.loads((out / "config.json").read_text())
    assert config["smoke"] is True and config["epochs"] == SMOKE_EPOCHS
    assert config["world_size"] == 1 and config["device"] == "cpu"
    lines = (out / "log.jsonl").read_text().splitlines()
    records = [_strict_json(line) for line in lines]
    assert [r["epoch"] for r in records if "epoch" in r and "event" not in r] == [1, 2]
    assert records[-1]["event"] == "done"
    ckpt = torch.load(out / models.FINAL, map_location="cpu", weights_only=True)
    assert {"config", "net", "state_dict", "input_scale", "tta", "summary"} <= set(ckpt)
    assert ckpt["config"]["arch"] == ckpt["net"]["arch"] == ckpt["summary"]["arch"]
    net = registry.rebuild(ckpt)
    assert not net.training
    logits, feats = net(torch.zeros(2, 3, 64, 64))
    assert logits.shape == (2, len(CLASSES)) and feats.shape == (2, net.feature_dim)
    summary = ckpt["summary"]
    # The report's recipe may diverge on raw pixels; then the run says so instead of crashing.
    assert torch.isfinite(logits).all() or summary["diverged_at_epoch"] is not None
    assert summary["parameters"] == sum(p.numel() for p in net.parameters())
    for part in ("plain", "tta"):
        assert 0.0 <= summary["results"][part]["test"]["accuracy"] <= 1.0
    # The resume checkpoint holds tensors and plain data only.
    resume = torch.load(out / models.CHECKPOINT, map_location="cpu", weights_only=True)
    assert resume["state"]["epoch"] == SMOKE_EPOCHS


def test_classifier_rerun_resumes_instead_of_retraining(nih, classifier_runs, caplog):
    out = classifier_runs["simple_cnn_report"]
    argv = _argv(nih, out, *CLASSIFIER_RUNS["simple_cnn_report"])
    added = _rerun_resumes(classifier.main, argv, out, caplog)
    assert [r.get("event") for r in added] == ["done"]


def test_classifier_resumes_from_an_interrupted_run(nih):
    # A run of 1 epoch, then the same run asked for 2: only epoch 2 is trained.
    out = nih["root"] / "interrupted_classifier"
    argv = ["--data", str(nih["data"]), "--out", str(out), "--cache-dir", str(nih["cache"])]
    argv += ["--arch", "simple_cnn", "--recipe", "plain", "--batch", "16"]
    classifier.main([*argv, "--epochs", "1"])
    classifier.main([*argv, "--epochs", "2"])
    epochs = [r["epoch"] for r in _log_lines(out) if "epoch" in r and "event" not in r]
    assert epochs == [1, 2]


def test_report_recipe_that_diverges_records_the_epoch(nih):
    out = nih["root"] / "diverged"
    extra = CLASSIFIER_RUNS["simple_cnn_report"] + ["--lr", str(DIVERGING_LR)]
    cfg = parse_config(classifier.ClassifierConfig, _argv(nih, out, *extra))
    summary = classifier.train(cfg)
    losses = {r["epoch"]: r["train_loss"] for r in summary["history"]}
    first_bad = min(epoch for epoch, loss in losses.items() if not np.isfinite(loss))
    assert summary["diverged_at_epoch"] == first_bad
    ckpt = torch.load(out / models.FINAL, map_location="cpu", weights_only=True)
    assert ckpt["summary"]["diverged_at_epoch"] == first_bad
    # The log stays strict JSON: the non-finite loss is written as null, with an event.
    records = [_strict_json(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"event": "non-finite loss", "epoch": first_bad} in [
        {k: v for k, v in r.items() if k != "t"} for r in records
    ]
    epoch_records = {r["epoch"]: r for r in records if "train_loss" in r}
    assert epoch_records[first_bad]["train_loss"] is None
    # A diverged network has no preference: its NaN outputs become uniform probabilities.
    test = summary["results"]["plain"]["test"]
    assert np.isfinite(test["accuracy"]) and test["auc"] == pytest.approx(0.5)


def test_diverging_run_stops_with_a_clear_error_when_asked(nih, capsys):
    out = nih["root"] / "halted"
    extra = [a for a in CLASSIFIER_RUNS["simple_cnn_report"] if a != "--no-halt-on-nonfinite"]
    with pytest.raises(SystemExit) as exc:
        run_cli(classifier.main, _argv(nih, out, *extra, "--lr", str(DIVERGING_LR)))
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(
        r"error: Non-finite loss at iteration \d+: .*Lower the learning rate.*", err
    )


GAN_RUNS = {
    "seed_gan": (seed_gan.main, ["--class-name", "Uninfected"], ("Uninfected",)),
    "cgan": (cgan.main, ["--ch", str(SMALL_CH)], CLASSES),
}


@pytest.fixture(scope="module")
def gan_runs(nih, classifier_runs) -> dict[str, Path]:
    probe = str(classifier_runs["simple_cnn_report"] / models.FINAL)
    outs = {}
    for name, (main, extra, _) in GAN_RUNS.items():
        outs[name] = nih["root"] / name
        main(_argv(nih, outs[name], *extra, "--classifier", probe))
    return outs


def test_probe_score_weighs_recovery_fd_and_coverage_alike():
    classes = ("Parasitized", "Uninfected")
    base = {"Parasitized": 0.5, "Uninfected": 0.5, "fd": {"Parasitized": 4.0, "Uninfected": 4.0}}
    covered = {**base, "coverage": {"Parasitized": 0.2, "Uninfected": 0.4}}
    score = probe_score(covered, classes, 256)
    # Doubling one class's coverage is worth halving its FD or doubling its recovery.
    wider = {**covered, "coverage": {"Parasitized": 0.4, "Uninfected": 0.4}}
    closer = {**covered, "fd": {"Parasitized": 2.0, "Uninfected": 4.0}}
    surer = {**covered, "Parasitized": 1.0}
    for better in (wider, closer, surer):
        assert probe_score(better, classes, 256) == pytest.approx(score + math.log(2))
    # No coverage where a class lacks it: recovery and FD alone.
    partial = {**base, "coverage": {"Parasitized": 0.2}}
    assert probe_score(partial, classes, 256) == probe_score(base, classes, 256)
    # Zero coverage stays finite and sinks the score.
    lost = {**covered, "coverage": {"Parasitized": 0.0, "Uninfected": 0.4}}
    assert (
        math.isfinite(probe_score(lost, classes, 256)) and probe_score(lost, classes, 256) < score
    )


def test_probe_measures_recall_and_coverage_on_validation_features(classifier_runs):
    # The ResNet: the report's CNN trained the report's way has dead, identical features.
    probe = Probe.load(str(classifier_runs["resnet"] / models.FINAL), "cpu", None)
    images = torch.rand(12, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    _, feats = probe.predict(models.to_uint8(images))
    # Real cells equal to the generated ones: everything recalled and covered.
    probe.real_feats = {"Uninfected": feats.copy(), "Parasitized": feats[:4]}
    same = probe.measure(images, "Uninfected")
    assert same["recall"] == same["coverage"] == 1.0 and same["fd"] is not None
    # Too few real cells for k = 5 neighbours: no k-NN figures.
    few = probe.measure(images, "Parasitized")
    assert few["recall"] is None and few["coverage"] is None
    assert 0.0 <= few["recovery"] <= 1.0


def test_an_exported_classifier_probes_as_its_checkpoint_does(classifier_runs, tmp_path):
    # A release's .onnx classifier can judge a GAN run with no torch checkpoint at hand.
    from malgan.nn.onnx_export import export_classifier

    checkpoint = str(classifier_runs["resnet"] / models.FINAL)
    net, ckpt = models.load_classifier(checkpoint, "cpu")
    export_classifier(
        net,
        tmp_path / "classifier.onnx",
        name="classifier",
        display_name="classifier",
        classes=list(CLASSES),
        input_scale=ckpt["input_scale"],
        provenance={"tta": False},
    )
    by_torch = Probe.load(checkpoint, "cpu", None)
    by_onnx = Probe.load(str(tmp_path / "classifier.onnx"), "cpu", None)
    pix = models.to_uint8(
        torch.rand(9, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    )
    (p_torch, f_torch), (p_onnx, f_onnx) = by_torch.predict(pix), by_onnx.predict(pix)
    assert p_onnx.shape == p_torch.shape and f_onnx.shape == f_torch.shape
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-3)
    np.testing.assert_allclose(f_onnx, f_torch, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("name", list(GAN_RUNS))
def test_gan_smoke_writes_logs_snapshots_and_a_model(gan_runs, name):
    out = gan_runs[name]
    classes = GAN_RUNS[name][2]
    config = json.loads((out / "config.json").read_text())
    assert config["smoke"] is True and config["iterations"] == SMOKE_ITERATIONS
    records = [_strict_json(line) for line in (out / "log.jsonl").read_text().splitlines()]
    iterations = [r["iteration"] for r in records if "iteration" in r and "event" not in r]
    assert iterations[0] == 1 and iterations[-1] == SMOKE_ITERATIONS
    assert iterations == sorted(set(iterations))
    probes = [r["probe"] for r in records if "probe" in r]
    assert [p["iteration"] for p in probes] == [6, SMOKE_ITERATIONS]
    assert all(0.0 <= p[label] <= 1.0 for p in probes for label in classes)
    assert records[-1]["event"] == "done" and records[-1]["iterations"] == SMOKE_ITERATIONS
    # Snapshots at iteration 1 and at the end, one grid per class.
    for label in classes:
        for iteration in (1, SMOKE_ITERATIONS):
            with Image.open(out / "snapshots" / f"{label}_iter_{iteration:06d}.png") as img:
                assert img.mode == "RGB"
                assert min(img.size) >= SNAPSHOT_GRID_SIDE * 64
    # The final generator describes itself and rebuilds.
    ckpt = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert {"config", "net", "state_dict", "classes", "state"} <= set(ckpt)
    assert tuple(ckpt["classes"]) == classes
    assert ckpt["config"] == {k: v for k, v in config.items() if k not in ("world_size", "device")}
    net = registry.rebuild(ckpt)
    assert not net.training
    z = torch.randn(2, net.z_dim)
    with torch.no_grad():
        images = net(z, torch.eye(len(CLASSES))) if name == "cgan" else net(z)
    assert images.shape == (2, 3, 64, 64)
    assert torch.isfinite(images).all() and images.abs().max() <= 1.0


@pytest.mark.parametrize("name", list(GAN_RUNS))
def test_gan_rerun_resumes_instead_of_retraining(nih, gan_runs, classifier_runs, name, caplog):
    main, extra, _ = GAN_RUNS[name]
    out = gan_runs[name]
    probe = str(classifier_runs["simple_cnn_report"] / models.FINAL)
    added = _rerun_resumes(main, _argv(nih, out, *extra, "--classifier", probe), out, caplog)
    assert [r.get("event") for r in added] == ["done"]
    assert added[0]["iterations"] == SMOKE_ITERATIONS
    assert added[0]["iterations_per_second"] == 0.0


def test_guide_term_is_the_cross_entropy_below_the_confidence_cap():
    logits = torch.tensor([[4.0, 0.0], [0.0, 0.5], [2.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1])
    full = torch.nn.functional.cross_entropy(logits, y)
    assert torch.allclose(losses.guide_term(logits, y, 1.0), full)
    # At a cap of 0.9 the first cell (p = 0.98) is left alone; the others lose -log(0.9).
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    capped = losses.guide_term(logits, y, 0.9)
    assert torch.allclose(capped, (ce[1:] + math.log(0.9)).sum() / 3)
    capped.backward()
    assert torch.all(logits.grad[0] == 0) and torch.all(logits.grad[1:] != 0)
    with pytest.raises(ValueError, match="guide-confidence"):
        losses.guide_term(logits, y, 0.0)


def test_cgan_trains_with_a_minibatch_std_discriminator(nih):
    out = nih["root"] / "cgan_mbstd"
    argv = ["--data", str(nih["data"]), "--out", str(out), "--cache-dir", str(nih["cache"])]
    argv += ["--ch", str(SMALL_CH), "--batch", "8", "--d-steps", "1", "--probe-every", "0"]
    cgan.main([*argv, "--iterations", "2", "--minibatch-std", "4"])
    assert json.loads((out / "config.json").read_text())["minibatch_std"] == 4
    assert [r.get("event") for r in _log_lines(out)][-1] == "done"


def test_cgan_refuses_a_batch_that_is_not_a_multiple_of_the_group(nih, capsys):
    out = nih["root"] / "cgan_mbstd_bad"
    argv = ["--data", str(nih["data"]), "--out", str(out), "--cache-dir", str(nih["cache"])]
    argv += ["--ch", str(SMALL_CH), "--batch", "8", "--iterations", "2", "--minibatch-std", "3"]
    with pytest.raises(SystemExit) as exc:
        run_cli(cgan.main, argv)
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "error: --batch must be a multiple of --minibatch-std"


def test_gan_loop_resumes_from_an_interrupted_run(nih):
    # 4 iterations, then the same run asked for 6: only iterations 5 and 6 are trained.
    out = nih["root"] / "interrupted_gan"
    argv = ["--data", str(nih["data"]), "--out", str(out), "--cache-dir", str(nih["cache"])]
    argv += ["--ch", str(SMALL_CH), "--batch", "8", "--d-steps", "1", "--probe-every", "0"]
    argv += ["--log-every", "2", "--checkpoint-every", "2"]
    cgan.main([*argv, "--iterations", "4"])
    cgan.main([*argv, "--iterations", "6"])
    iterations = [r["iteration"] for r in _log_lines(out) if "iteration" in r and "event" not in r]
    assert iterations == [1, 2, 4, 6]
    state = torch.load(out / "model.pt", weights_only=True)["state"]
    assert state["iteration"] == 6


@pytest.mark.parametrize("bn", seed_gan.BN_MODES)
def test_keras_frozen_discriminator_has_no_gradients_and_its_batchnorm_mode(bn):
    D = DCGANDiscriminator()
    bns = [m for m in D.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with seed_gan.keras_frozen(D, bn):
        assert not any(p.requires_grad for p in D.parameters())
        assert all(m.training == (bn == "batch") for m in bns)
    assert all(p.requires_grad for p in D.parameters()) and all(m.training for m in bns)


def test_the_report_dcgan_trains_with_either_keras_batchnorm(nih):
    cfg = seed_gan.SeedGANConfig(
        data=str(nih["data"]),
        cache_dir=str(nih["cache"]),
        out=str(nih["root"] / "dcgan_batch_bn"),
        smoke=True,
        frozen_bn="inference",
        fakes_bn="batch",
    )
    summary = seed_gan.train(cfg)
    assert summary["iterations"] > 0 and math.isfinite(summary["losses"][-1]["g"])
