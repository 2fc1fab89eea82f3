"""Replacing one generator of a release: its new runs go in, every other file stays as it was."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
from malgan import artifacts
from malgan.data import CLASSES
from tests.support.pages import EXPORTED
from train import export, seed_gan


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dcgan_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Smoke runs of the report's DCGAN, one per class, trained the sound way."""
    from harness.fakes import write_fake_nih_tree

    root = tmp_path_factory.mktemp("only")
    data = write_fake_nih_tree(root / "nih")
    for label in CLASSES:
        seed_gan.train(
            seed_gan.SeedGANConfig(
                data=str(data),
                cache_dir=str(root / "cache"),
                out=str(root / "runs" / f"dcgan_{label.lower()}"),
                class_name=label,
                smoke=True,
            )
        )
    return root / "runs"


@pytest.mark.slow
def test_export_only_replaces_the_dcgans_and_keeps_every_other_file(
    dcgan_runs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "exported"
    shutil.copytree(EXPORTED, out)
    before = _hashes(out)
    cfg = export.ExportConfig(runs=str(dcgan_runs), out=str(out), only=("dcgan",), smoke=True)
    result = export.export_only(cfg, "python -m train.export --only dcgan")

    after = _hashes(out)
    changed = {f for f in before.keys() | after.keys() if before.get(f) != after.get(f)}
    allowed = {"index.json", "metrics.json", "history/dcgan.json"}
    assert changed - allowed, "the DCGAN files were not replaced"
    assert all(f in allowed or f.startswith(("dcgan_", "snapshots/dcgan/")) for f in changed), (
        sorted(changed)
    )

    # The new pair loads and verifies like every model; the index lists both generators once.
    index = artifacts.load_index(out)
    assert sorted(g["name"] for g in index["generators"]) == ["cgan", "dcgan"]
    assert artifacts.load_generator(out, "dcgan").classes == tuple(CLASSES)
    assert {s["iteration"] for s in index["snapshots"]["dcgan"]} >= {1, 12}

    # metrics.json: the new pair trained sound, on this machine; the other models unchanged.
    dcgan = result["models"]["dcgan"]
    assert "known_fault" not in dcgan and "recovery" not in dcgan
    assert {r["iterations"] for r in dcgan["training"].values()} == {12}
    assert dcgan["trained_on"]["cpu_count"] >= 1
    assert result["written_by"]["generators"]["dcgan"]["command"].endswith("--only dcgan")
    old = json.loads((EXPORTED / "metrics.json").read_text())
    assert result["models"]["cgan"] == old["models"]["cgan"]
    assert result["classifier"] == old["classifier"]


def test_export_only_refuses_an_unknown_generator(tmp_path: Path) -> None:
    out = tmp_path / "exported"
    out.mkdir()
    (out / "index.json").write_text(json.dumps({"generators": []}))
    cfg = export.ExportConfig(runs=str(tmp_path), out=str(out), only=("stylegan",))
    with pytest.raises(ValueError, match="stylegan"):
        export.export_only(cfg, "")
