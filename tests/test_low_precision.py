"""Tests of the fast export path: classifier views, int8 copies (parity, loading) and the
synthetic export's record of both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from malgan import artifacts, latent, release, runtime
from malgan.data import CLASSES, load_dataset
from malgan.errors import SynthError
from malgan.synth import cli, files, writer
from tests.support.paths import SHARED_DATA

pytest.importorskip("onnxruntime.quantization")
quantize = pytest.importorskip("train.quantize")

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPORTED = REPO_ROOT / "exported"
MODEL_FILES = ("index.json", "reference.npz", "cgan.onnx", "cgan.json")
# Few calibration cells keep the test quick; parity is judged on the shipped recipe below.
TEST_CALIBRATION = 64


def copy_models(root: Path) -> Path:
    """The committed cgan, classifier and reference in a folder of their own."""
    root.mkdir()
    index = json.loads((EXPORTED / "index.json").read_text(encoding="utf-8"))
    names = {*MODEL_FILES, index["classifier"]["file"]}
    names |= {runtime.sidecar_path(n).name for n in names if n.endswith(".onnx")}
    for name in names:
        shutil.copyfile(EXPORTED / name, root / name)
    return root


@pytest.fixture(scope="module")
def int8_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with int8 copies of the classifier and the cgan, quickly calibrated."""
    root = copy_models(tmp_path_factory.mktemp("int8") / "exported")
    gen = artifacts.load_generator(root, "cgan")
    clf = artifacts.load_classifier(root)
    feeds = quantize.generator_feeds(gen, TEST_CALIBRATION, quantize.CALIBRATION_SEED)
    gen_copy = runtime.low_precision_path(gen.path, runtime.INT8)
    quantize.quantize_int8(gen.path, gen_copy, feeds)
    passed = quantize.Parity(cells=1, agreement=1.0, median_pixel_diff=0.0, max_pixel_diff=0)
    quantize.write_sidecar(gen.path, gen_copy, passed, "test latents")
    cells = gen.generate(latent.sample_z(1, TEST_CALIBRATION, gen.z_dim), CLASSES[0])
    clf_copy = runtime.low_precision_path(clf.path, runtime.INT8)
    quantize.quantize_int8(clf.path, clf_copy, quantize.classifier_feeds(clf, cells))
    quantize.write_sidecar(clf.path, clf_copy, passed, "test cells")
    return root


# Views.


def test_views_average_the_named_dihedral_views() -> None:
    clf = artifacts.load_classifier(EXPORTED)
    gen = artifacts.load_generator(EXPORTED, "cgan")
    cells = gen.generate(latent.sample_z(2, 6, gen.z_dim), CLASSES[1])
    per_view = clf.view_probabilities(cells, batch=4)
    assert per_view.shape == (runtime.DIHEDRAL_VIEWS, 6, len(CLASSES))
    assert clf.tta and clf.default_views == runtime.DIHEDRAL_VIEWS
    np.testing.assert_array_equal(clf.predict(cells)[0], clf.predict(cells, views=8)[0])
    for views, ks in runtime.VIEW_SETS.items():
        proba, feats = clf.predict(cells, batch=4, views=views)
        expected = sum(per_view[k] for k in ks) / views
        np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(feats, clf.features(cells))
    assert not np.allclose(clf.predict(cells, views=1)[0], clf.predict(cells, views=8)[0])
    with pytest.raises(ValueError, match="views must be one of"):
        clf.predict(cells, views=3)


# Loading a copy.


def test_int8_copy_is_loaded_only_when_made_from_the_current_file(
    int8_models: Path, tmp_path: Path
) -> None:
    assert artifacts.load_classifier(int8_models).precision == runtime.FP32
    clf = artifacts.load_classifier(int8_models, precision=runtime.INT8)
    gen = artifacts.load_generator(int8_models, "cgan", precision=runtime.INT8)
    assert (clf.precision, gen.precision) == (runtime.INT8, runtime.INT8)
    assert clf.path.name.endswith(".int8.onnx")
    assert gen.file_sha256(CLASSES[0]) == runtime.sha256_file(gen.path)
    # A folder without copies runs fp32 whatever is asked.
    assert artifacts.load_generator(EXPORTED, "dcgan", precision=runtime.INT8).precision == "fp32"
    # A copy left from another model is not used.
    stale = shutil.copytree(int8_models, tmp_path / "stale")
    copy_sidecar = runtime.sidecar_path(runtime.low_precision_path(stale / "cgan.onnx", "int8"))
    meta = json.loads(copy_sidecar.read_text())
    copy_sidecar.write_text(json.dumps({**meta, "source_sha256": "0" * 64}))
    assert artifacts.load_generator(stale, "cgan", precision=runtime.INT8).precision == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        artifacts.load_classifier(int8_models, precision="bf16")


def test_a_copy_that_fails_parity_is_deleted(int8_models: Path, tmp_path: Path) -> None:
    root = shutil.copytree(int8_models, tmp_path / "models")
    src = root / "cgan.onnx"
    dst = runtime.low_precision_path(src, runtime.INT8)
    failing = quantize.Parity(cells=1000, agreement=0.99, median_pixel_diff=1.0, max_pixel_diff=9)
    blurred = quantize.Parity(cells=1000, agreement=1.0, median_pixel_diff=3.0, max_pixel_diff=9)
    assert not failing.passed and not blurred.passed
    assert quantize.Parity(cells=1000, agreement=0.995, median_pixel_diff=2.0).passed
    assert not quantize._keep_or_drop(src, dst, failing, "test")
    assert not dst.exists() and not runtime.sidecar_path(dst).exists()
    assert artifacts.load_generator(root, "cgan", precision=runtime.INT8).precision == "fp32"


def test_the_copy_records_what_made_it_and_the_release_ships_one_that_passed(
    int8_models: Path,
) -> None:
    meta = json.loads(runtime.sidecar_path(int8_models / "cgan.int8.onnx").read_text())
    made = meta[release.WRITTEN_BY]
    assert made[release.GIT_COMMIT] and made[release.HARDWARE]
    assert meta["sha256"] == runtime.sha256_file(int8_models / "cgan.int8.onnx")
    # The committed release runs its cgan's copy by default; the copy passed parity.
    shipped = artifacts.load_generator(EXPORTED, "cgan", precision=artifacts.GENERATOR_PRECISION)
    assert shipped.precision == runtime.INT8 == cli.DEFAULT_PRECISION
    # The copy runs as made: the fp32 file's sub-pixel rewrite is not tried on it.
    assert shipped.graph == "exported"
    parity = shipped.meta["parity"]
    assert parity["passed"] and parity["agreement"] >= quantize.MIN_AGREEMENT
    assert parity["median_pixel_diff"] <= quantize.MAX_MEDIAN_PIXEL_DIFF


def test_generator_parity_measures_pixels_and_verdicts(int8_models: Path) -> None:
    fp32 = artifacts.load_generator(int8_models, "cgan")
    int8 = artifacts.load_generator(int8_models, "cgan", precision=runtime.INT8)
    judge = artifacts.load_classifier(int8_models)
    same = quantize.generator_parity(fp32, fp32, judge, n=8, seed=3)
    assert (same.agreement, same.median_pixel_diff, same.max_pixel_diff) == (1.0, 0.0, 0)
    other = quantize.generator_parity(fp32, int8, judge, n=8, seed=3)
    assert other.max_pixel_diff > 0 and other.cells == 8


def test_int8_generator_copy_upsamples_after_quantisation(int8_models: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(runtime.low_precision_path(int8_models / "cgan.onnx", runtime.INT8))
    made_by = {out: node.op_type for node in model.graph.node for out in node.output}
    fed_by = [made_by.get(node.input[0]) for node in model.graph.node if node.op_type == "Resize"]
    assert "QuantizeLinear" in fed_by
    # Nothing is left to move: each float upsampling has a float reader.
    assert quantize.quantize_before_resize(model) == 0


# The export records the setting.


def test_export_records_views_and_precision_and_repeats_its_bytes(
    int8_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = []
    for name in ("a", "b"):
        code = cli.main(
            [
                *("--quiet", "--exported", str(int8_models), "--n-per-class", "3"),
                *("--views", "2", "--recheck-margin", "0", "--precision", "int8"),
                *("--classifier-precision", "int8", "--out", str(tmp_path / name)),
            ]
        )
        assert code == 0, capsys.readouterr().err
        outputs.append(tmp_path / name)
    rows = files.read_manifest(outputs[0])
    assert {(r["generator_precision"], r["classifier_precision"]) for r in rows} == {
        ("int8", "int8")
    }
    assert {r["classifier_views"] for r in rows} == {"2"}
    summary = json.loads((outputs[0] / files.SUMMARY_NAME).read_text())
    assert summary["classifier_views"] == 2
    assert summary["generator_precision"] == summary["classifier_precision"] == "int8"
    sheet = (outputs[0] / files.DATASHEET_NAME).read_text(encoding="utf-8")
    assert "averages 2 of the classifier's 8 flips and rotations" in sheet
    assert "generator int8, classifier int8" in sheet
    int8_sha = runtime.sha256_file(runtime.low_precision_path(int8_models / "cgan.onnx", "int8"))
    assert {r["model_sha256"] for r in rows} == {int8_sha}
    for path in outputs[0].rglob("*"):
        if path.is_file() and path.name != files.SUMMARY_NAME:
            assert path.read_bytes() == (outputs[1] / path.relative_to(outputs[0])).read_bytes()

    assert (
        cli.main(
            [
                "--quiet",
                "--exported",
                str(int8_models),
                "--n-per-class",
                "3",
                "--precision",
                "fp32",
                "--views",
                "8",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    rows = files.read_manifest(tmp_path / "c")
    assert {(r["generator_precision"], r["classifier_views"]) for r in rows} == {("fp32", "8")}


def test_config_refuses_a_view_count_without_a_view_set() -> None:
    with pytest.raises(SynthError, match="number of views"):
        writer.SynthConfig(n_per_class=1, views=3)


# Parity of the shipped recipe on real cells of held-out patients.


@pytest.mark.shared
def test_int8_copies_pass_parity_on_held_out_patients(tmp_path: Path) -> None:
    root = copy_models(tmp_path / "exported")
    cells = load_dataset(SHARED_DATA, progress=False)
    parity, kept = quantize.quantize_classifier(root, cells)
    assert kept and parity.agreement >= quantize.MIN_AGREEMENT, parity
    parity, kept = quantize.quantize_generator(root, "cgan")
    assert kept and parity.median_pixel_diff <= quantize.MAX_MEDIAN_PIXEL_DIFF, parity
    assert parity.agreement >= quantize.MIN_AGREEMENT, parity
    # At the CLI's view count, on held-out cells, the copy agrees with fp32 as well.
    fp32 = artifacts.load_classifier(root)
    int8 = artifacts.load_classifier(root, precision=runtime.INT8)
    held_out = cells.split("test").images
    at_default = quantize.classifier_parity(fp32, int8, held_out, views=cli.DEFAULT_VIEWS)
    assert at_default.agreement >= quantize.MIN_AGREEMENT, at_default
