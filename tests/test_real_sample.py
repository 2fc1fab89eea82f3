"""The real sample: written only on request, from test patients, verified when read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from malgan import real_sample
from malgan.data import CLASSES
from malgan.errors import ModelError
from tests.support.paths import REPO_ROOT


def cells(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def write(out: Path, n: int = 21) -> tuple[np.ndarray, list[int], list[str]]:
    images = cells(n)
    labels = [i % 2 for i in range(n)]
    ids = [f"C{i}P1ThinF_cell_{i}.png" for i in range(n)]
    real_sample.write(out, images, labels, ids, {"split": "test"})
    return images, labels, ids


def test_round_trip_keeps_every_pixel_id_and_class(tmp_path: Path) -> None:
    images, labels, ids = write(tmp_path)
    assert real_sample.exists(tmp_path)
    sample = real_sample.load(tmp_path)
    np.testing.assert_array_equal(sample.images, images)
    assert sample.labels.tolist() == labels and list(sample.cell_ids) == ids
    assert sample.provenance == {"split": "test"}
    assert sample.class_counts() == {CLASSES[0]: 11, CLASSES[1]: 10}


def test_an_altered_sheet_is_refused(tmp_path: Path) -> None:
    write(tmp_path)
    sheet = tmp_path / real_sample.SHEET_NAME
    data = bytearray(sheet.read_bytes())
    data[-1] ^= 0xFF
    sheet.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its recorded hash"):
        real_sample.load(tmp_path)


@pytest.mark.parametrize("damage", ["missing sheet", "bad json", "outside", "no cells"])
def test_a_broken_sample_gives_a_clear_error(tmp_path: Path, damage: str) -> None:
    write(tmp_path)
    sidecar = tmp_path / real_sample.SIDECAR_NAME
    meta = json.loads(sidecar.read_text())
    if damage == "missing sheet":
        (tmp_path / real_sample.SHEET_NAME).unlink()
    elif damage == "bad json":
        sidecar.write_text("{not json")
    elif damage == "outside":
        sidecar.write_text(json.dumps({**meta, "file": "../elsewhere.webp"}))
    else:
        del meta["cells"]
        sidecar.write_text(json.dumps(meta))
    with pytest.raises(ModelError):
        real_sample.load(tmp_path)


def test_no_sample_is_not_an_error(tmp_path: Path) -> None:
    assert not real_sample.exists(tmp_path)
    with pytest.raises(ModelError, match="holds no real sample"):
        real_sample.load(tmp_path)


@pytest.mark.parametrize("n", [0, real_sample.MAX_CELLS + 1])
def test_sample_size_is_bounded(tmp_path: Path, n: int) -> None:
    with pytest.raises(ValueError):
        real_sample.write(tmp_path, cells(n), [0] * n, ["x"] * n, {})


def test_command_writes_test_patients_cells_only(tmp_path: Path, fake_nih_tree) -> None:
    pytest.importorskip("torch")
    from train import real_sample as command
    from train import splits

    data = fake_nih_tree(patients=12, cells=3)
    cache = str(tmp_path / "cache")
    cfg = command.RealSampleConfig(data=str(data), out=str(tmp_path / "ex"), n=10, cache_dir=cache)
    command.write_real_sample(cfg, command="test")
    sample = real_sample.load(tmp_path / "ex")
    test = splits.load_splits(str(data), cache_dir=cache, progress=False).test
    assert len(sample) == min(10, len(test))
    assert set(sample.cell_ids) <= set(test.names.tolist())
    assert set(sample.provenance["patients"]) <= set(test.keys.tolist())
    assert abs(sample.class_counts()[CLASSES[0]] - sample.class_counts()[CLASSES[1]]) <= 1


def test_the_committed_release_ships_a_verified_sample_of_test_patients() -> None:
    exported = REPO_ROOT / "exported"
    sample = real_sample.load(exported)
    assert 0 < len(sample) <= real_sample.MAX_CELLS
    assert sample.provenance["split"] == "test"
    index = json.loads((exported / "index.json").read_text())
    assert sample.provenance["split_seed"] == 0 and not index.get("smoke")
    test_patients = json.loads((exported / "metrics.json").read_text())["classifier"]
    assert set(sample.provenance["patients"]) <= set(test_patients["test_patients"])


def test_pipeline_writes_the_sample_only_when_asked(
    tmp_path: Path, fake_nih_tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from train import export, pipeline

    monkeypatch.setattr(export, "export_all", lambda cfg: {"exported to": cfg.out})
    data = fake_nih_tree(patients=12, cells=3)
    for n, out in ((0, tmp_path / "default"), (6, tmp_path / "asked")):
        cfg = pipeline.PipelineConfig(
            data=str(data), out=str(out), cache_dir=str(tmp_path / "cache"), real_sample=n
        )
        pipeline.export_stage(cfg, cfg.chosen, tmp_path / "runs")
    assert pipeline.PipelineConfig().real_sample == 0
    assert not real_sample.exists(tmp_path / "default")
    assert len(real_sample.load(tmp_path / "asked")) == 6
