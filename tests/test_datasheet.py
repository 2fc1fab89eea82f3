"""DATASHEET.md travels with every synthetic set, its figures those of metrics.json."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from malgan import artifacts, runtime, tables
from malgan.data import CLASSES
from malgan.synth import cli, files
from tests.support.pages import EXPORTED, app_page

PAGE = "pages/synthetic_dataset.py"
RESULT_KEY = "_d_export"
CELLS = 3


pytestmark = pytest.mark.usefixtures("fresh_caches")


def expected_figures(metrics: dict, name: str) -> list[str]:
    """The figures of metrics.json a datasheet must state, formatted here independently."""
    model = metrics["models"][name]
    texts = []
    for label in CLASSES:
        texts.append(f"{label} {100 * model['recovery'][label]['rate']:.1f}%")
        texts.append(f"{label} {model['fd'][label]:.2f}")
        texts.append(f"real floor {metrics['fd_real_floor'][label]:.2f}")
        c2st = model.get("c2st", {}).get(label)
        if c2st:
            texts.append(f"{label} {100 * c2st['generated']['accuracy']:.1f}%")
            texts.append(f"real reference {100 * c2st['reference']['accuracy']:.1f}%")
    texts.append(f"{100 * model['tstr_accuracy']:.1f}%")
    return texts


def model_sha256(name: str) -> str:
    """sha256 of the file the pages run: the int8 copy where the release ships one."""
    entry = artifacts.generator_entry(artifacts.load_index(EXPORTED), name)
    ran = runtime.low_precision_path(EXPORTED / entry["file"], artifacts.GENERATOR_PRECISION)
    ran = ran if ran.is_file() else EXPORTED / entry["file"]
    return runtime.sha256_file(ran)


def test_the_page_zip_holds_a_datasheet_whose_figures_match_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(artifacts.EXPORTED_ENV, raising=False)
    at = app_page(PAGE, timeout=180)
    at.query_params.update(d_model="cgan", d_n=str(CELLS))
    at = at.run()
    next(b for b in at.button if b.label.startswith("Generate")).click()
    at = at.run()
    assert not at.exception, [e.value for e in at.exception]
    archive = zipfile.ZipFile(io.BytesIO(at.session_state[RESULT_KEY]["zip"]))
    names = [n for n in archive.namelist() if n.endswith("/" + files.DATASHEET_NAME)]
    assert len(names) == 1 and names[0].count("/") == 1, archive.namelist()
    sheet = archive.read(names[0]).decode("utf-8")
    metrics = artifacts.load_metrics(EXPORTED)
    for text in expected_figures(metrics, "cgan"):
        assert text in sheet, f"{text!r} missing from the datasheet:\n{sheet}"
    assert model_sha256("cgan") in sheet
    for figure, by in ((metrics.get("written_by") or {}).get("figures") or {}).items():
        # Provenance per generator names only the figures computed again for this one.
        if "cgan" in by or "command" in by:
            assert f"`{figure}` was computed again by" in sheet
        else:
            assert f"`{figure}` was computed again by" not in sheet
    assert "not for diagnosis" in sheet.lower() and "64×64" in sheet
    clf = metrics["classifier"]
    assert f"{clf['n_train']:,} training cells" in sheet
    summary = json.loads(archive.read(names[0].replace(files.DATASHEET_NAME, files.SUMMARY_NAME)))
    for label in CLASSES:
        assert f"| {label} | {summary['accepted'][label]} | {summary['attempts'][label]} |" in sheet


def test_the_command_writes_it_and_says_what_is_not_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for path in EXPORTED.iterdir():
        if path.name != artifacts.METRICS_NAME:
            (models / path.name).symlink_to(path)
    metrics = artifacts.load_metrics(EXPORTED)
    for key in ("c2st", "diversity", "tstr_accuracy", "tstr"):
        metrics["models"]["cgan"].pop(key, None)
    (models / artifacts.METRICS_NAME).write_text(json.dumps(metrics))
    out = tmp_path / "synthetic"
    argv = ["--model", "cgan", "--n-per-class", "2", "--out", str(out), "--exported", str(models)]
    assert cli.main(argv) == cli.EXIT_OK
    sheet = (out / files.DATASHEET_NAME).read_text(encoding="utf-8")
    figures = dict(tables.generator_figures(metrics, "cgan"))
    assert figures["Train on synthetic, test on real: accuracy"] == tables.NOT_MEASURED
    assert "**Train on synthetic, test on real: accuracy:** not measured" in sheet
    assert "**Coverage (k-NN):** not measured" in sheet
    assert "**C2ST AUC:** not measured" in sheet
    # A second export replaces the first, datasheet included.
    assert cli.main([*argv, "--overwrite"]) == cli.EXIT_OK
    assert (out / files.DATASHEET_NAME).read_text(encoding="utf-8") == sheet
