"""ONNX export round trip: every exported network kind against torch through malgan.runtime."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from malgan.data import CLASSES  # noqa: E402
from malgan.nn import classifier_nets, nets  # noqa: E402
from malgan.nn.onnx_export import MAX_MODEL_BYTES, OPSET, export_classifier, export_generator  # noqa: E402
from malgan.runtime import (  # noqa: E402
    Classifier,
    Generator,
    GeneratorSet,
    ModelError,
    dihedral_view,
    sha256_file,
    sidecar_path,
)
from train.models import (  # noqa: E402
    network_input,
    predict,
    to_uint8_nhwc,
)
from train.runs import seeded_init  # noqa: E402

BATCH = 5
PIXEL_TOLERANCE = 1  # 8-bit levels: rounding of nearly equal floats may differ by one step
PROBA_TOLERANCE = 1e-4
SMALL_CH = 8  # a narrow conditional generator keeps its export to seconds
SMALL_RESNET = {"stages": (1, 1), "filters": (8, 16, 32)}
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TTA_VIEWS = 8


def _seeded(factory, seed: int, **kwargs: Any) -> torch.nn.Module:
    with seeded_init(seed):
        return factory(**kwargs).eval()


def _provenance(name: str) -> dict[str, Any]:
    return {"source_checkpoint": f"runs/{name}/model.pt", "git_commit": COMMIT}


def _perturb_batchnorm(net: torch.nn.Module, seed: int) -> None:
    """Give BatchNorm layers non-trivial running statistics, as after training."""
    gen = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            module.running_var.copy_(0.5 + torch.rand(n, generator=gen))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Any]:
    """Export each network kind once: the DCGAN pair, a conditional GAN and two classifiers."""
    out = tmp_path_factory.mktemp("exported")
    models: dict[str, Any] = {"dir": out, "torch": {}, "files": {}}
    for seed, label in enumerate(CLASSES):
        net = _seeded(nets.DCGANGenerator, seed)
        _perturb_batchnorm(net, seed)
        name = f"dcgan_{label.lower()}"
        export_generator(
            net,
            out / f"{name}.onnx",
            name=name,
            display_name=f"DCGAN: {label}",
            classes=[label],
            provenance=_provenance(name),
        )
        models["torch"][name], models["files"][name] = net, out / f"{name}.onnx"
    cond = _seeded(nets.CondGenerator, 2, ch=SMALL_CH)
    _perturb_batchnorm(cond, 2)
    export_generator(
        cond,
        out / "cgan.onnx",
        name="cgan",
        display_name="Conditional GAN",
        classes=list(CLASSES),
        provenance=_provenance("cgan"),
        directions={"principal": [[1.0] + [0.0] * (cond.z_dim - 1)], "sigmas": [2.0]},
    )
    models["torch"]["cgan"], models["files"]["cgan"] = cond, out / "cgan.onnx"
    resnet = _seeded(classifier_nets.ResNetClassifier, 3, **SMALL_RESNET)
    _perturb_batchnorm(resnet, 3)
    cnn = _seeded(classifier_nets.SimpleCNN, 4)
    for name, net, scale in (("resnet", resnet, "symmetric"), ("simple_cnn", cnn, "raw")):
        export_classifier(
            net,
            out / f"{name}.onnx",
            name=name,
            display_name=name,
            classes=list(CLASSES),
            input_scale=scale,
            provenance={**_provenance(name), "tta": False},
        )
        models["torch"][name], models["files"][name] = net, out / f"{name}.onnx"
        models.setdefault("scale", {})[name] = scale
    return models


def _latents(n: int, z_dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, z_dim)).astype(np.float32)


def _cells(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


@torch.no_grad()
def _torch_images(net: torch.nn.Module, z: np.ndarray, label: int | None = None) -> np.ndarray:
    zt = torch.from_numpy(z)
    if label is None:
        return to_uint8_nhwc(net(zt))
    y = torch.zeros(len(z), len(CLASSES))
    y[:, label] = 1
    return to_uint8_nhwc(net(zt, y))


def _torch_proba(net: torch.nn.Module, images: np.ndarray, scale: str, tta: bool = False):
    pix = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return predict(net, pix, scale, tta=tta)[0]


def _level_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.mark.parametrize("n", [1, BATCH])
@pytest.mark.parametrize("name", ["dcgan_parasitized", "dcgan_uninfected", "cgan"])
def test_generator_matches_torch(exported, name, n):
    runtime = Generator.load(exported["files"][name])
    net = exported["torch"][name]
    z = _latents(n, runtime.z_dim, seed=n)
    for label in runtime.classes:
        got = runtime.generate(z, label)
        conditional = CLASSES.index(label) if runtime.conditional else None
        expected = _torch_images(net, z, conditional)
        assert got.shape == (n, 64, 64, 3) and got.dtype == np.uint8
        assert _level_diff(got, expected) <= PIXEL_TOLERANCE


@pytest.mark.parametrize("n", [1, BATCH])
@pytest.mark.parametrize("name", ["resnet", "simple_cnn"])
def test_classifier_matches_torch(exported, name, n):
    runtime = Classifier.load(exported["files"][name])
    net, scale = exported["torch"][name], exported["scale"][name]
    images = _cells(n, seed=n)
    proba, feats = runtime.predict(images)
    assert proba.shape == (n, len(CLASSES)) and proba.dtype == np.float32
    assert feats.shape == (n, net.feature_dim)
    np.testing.assert_allclose(proba, _torch_proba(net, images, scale), atol=PROBA_TOLERANCE)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)


@pytest.mark.parametrize("name", ["dcgan_parasitized", "cgan"])
def test_eval_batchnorm_gives_the_same_cell_whatever_the_batch(exported, name):
    runtime = Generator.load(exported["files"][name])
    z = _latents(BATCH, runtime.z_dim, seed=7)
    label = runtime.classes[0]
    batch = runtime.generate(z, label)
    for i in range(BATCH):
        alone = runtime.generate(z[i : i + 1], label)
        assert _level_diff(alone[0], batch[i]) <= PIXEL_TOLERANCE
    # The torch network in eval mode uses running statistics too: batch statistics would move
    # the pixels by far more than float rounding.
    net = exported["torch"][name]
    zt = torch.from_numpy(z)
    inputs = (zt, torch.eye(len(CLASSES))[[0] * BATCH]) if runtime.conditional else (zt,)
    with torch.no_grad():
        together = net(*inputs)
        alone = torch.cat([net(*(t[i : i + 1] for t in inputs)) for i in range(BATCH)])
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["dcgan_parasitized", "cgan", "resnet", "simple_cnn"])
def test_sidecar_describes_the_file(exported, name):
    path = exported["files"][name]
    meta = json.loads(sidecar_path(path).read_text())
    net = exported["torch"][name]
    assert meta["sha256"] == sha256_file(path)
    assert meta["bytes"] == path.stat().st_size <= MAX_MODEL_BYTES
    assert meta["opset"] == OPSET
    assert meta["source_checkpoint"] == f"runs/{name}/model.pt"
    assert meta["git_commit"] == COMMIT
    assert {"scale", "offset", "layout", "range"} <= set(meta["pixels"])
    for spec in (*meta["inputs"], *meta["outputs"]):
        assert spec["name"] and spec["shape"][0] == "N"
    if meta["kind"] == "generator":
        assert meta["z_dim"] == net.z_dim
        assert meta["inputs"][0] == {"name": "z", "dtype": "float32", "shape": ["N", net.z_dim]}
        assert meta["outputs"] == [{"name": "image", "dtype": "float32", "shape": ["N", 3, 64, 64]}]
        conditional = name == "cgan"
        assert [s["name"] for s in meta["inputs"]] == (["z", "y"] if conditional else ["z"])
        assert meta["classes"] == (list(CLASSES) if conditional else ["Parasitized"])
        assert meta["pixels"]["scale"] == pytest.approx(1 / 127.5)
        assert meta["pixels"]["offset"] == -1.0
    else:
        assert meta["kind"] == "classifier"
        assert meta["classes"] == list(CLASSES)
        assert [s["name"] for s in meta["outputs"]] == ["logits", "features"]
        assert meta["outputs"][1]["shape"] == ["N", net.feature_dim]
        assert meta["inputs"][0]["shape"] == ["N", 3, 64, 64]
        raw = exported["scale"][name] == "raw"
        assert meta["pixels"]["scale"] == pytest.approx(1.0 if raw else 1 / 127.5)


def _copy_model(src: Path, dest_dir: Path) -> Path:
    dest = dest_dir / src.name
    shutil.copyfile(src, dest)
    shutil.copyfile(sidecar_path(src), sidecar_path(dest))
    return dest


def test_runtime_refuses_a_file_that_does_not_match_its_hash(exported, tmp_path):
    path = _copy_model(exported["files"]["simple_cnn"], tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its sidecar"):
        Classifier.load(path)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ModelError, match="truncated, replaced or corrupt"):
        Classifier.load(path)


def test_runtime_refuses_a_missing_sidecar_or_the_wrong_kind(exported, tmp_path):
    path = _copy_model(exported["files"]["simple_cnn"], tmp_path)
    with pytest.raises(ModelError, match="not a generator"):
        Generator.load(path)
    sidecar_path(path).unlink()
    with pytest.raises(ModelError, match="sidecar"):
        Classifier.load(path)


def test_generator_set_dispatches_each_cell_to_its_class(exported):
    files = {label: exported["files"][f"dcgan_{label.lower()}"] for label in CLASSES}
    pair = GeneratorSet.load(files, name="dcgan", display_name="DCGAN pair")
    members = {label: Generator.load(path) for label, path in files.items()}
    assert pair.classes == CLASSES and not pair.conditional
    z = _latents(4, pair.z_dim, seed=11)
    labels = ["Parasitized", "Uninfected", "Uninfected", "Parasitized"]
    got = pair.generate(z, labels)
    for i, label in enumerate(labels):
        np.testing.assert_array_equal(got[i], members[label].generate(z[i], label)[0])
    # The two members are different networks, so dispatch is visible.
    assert _level_diff(got[0], members["Uninfected"].generate(z[0], "Uninfected")[0]) > 1
    expected = members["Uninfected"].generate(z, "Uninfected")
    np.testing.assert_array_equal(pair.generate(z, "Uninfected"), expected)
    with pytest.raises(ValueError, match="cannot generate"):
        pair.generate(z, "Platelet")
    with pytest.raises(ValueError, match="3 labels for 4 latents"):
        pair.generate(z, labels[:3])
    # One-hot class weights pick each cell's member; a blend is refused.
    onehot = np.eye(len(CLASSES), dtype=np.float32)[[CLASSES.index(lab) for lab in labels]]
    np.testing.assert_array_equal(pair.generate_mix(z, onehot), got)
    with pytest.raises(ValueError, match="cannot blend classes"):
        pair.generate_mix(z, np.full((4, len(CLASSES)), 0.5, np.float32))


def test_classifier_tta_averages_the_eight_views(exported):
    plain = Classifier.load(exported["files"]["resnet"])
    assert not plain.tta
    tta = Classifier(session=plain.session, meta={**plain.meta, "tta": True}, path=plain.path)
    images = _cells(3, seed=5)
    nchw = images.transpose(0, 3, 1, 2)
    views = [dihedral_view(nchw, k).transpose(0, 2, 3, 1) for k in range(TTA_VIEWS)]
    # Every view is a distinct flip or rotation.
    assert len({v.tobytes() for v in views}) == TTA_VIEWS
    manual = np.mean([plain.predict_proba(v) for v in views], axis=0)
    proba, feats = tta.predict(images)
    np.testing.assert_allclose(proba, manual, atol=1e-6)
    np.testing.assert_allclose(feats, plain.features(images), atol=1e-6)
    # features() runs the plain view alone and gives what predict() gives.
    np.testing.assert_array_equal(tta.features(images), feats)
    net, scale = exported["torch"]["resnet"], exported["scale"]["resnet"]
    np.testing.assert_allclose(proba, _torch_proba(net, images, scale, tta=True), atol=1e-4)


def test_generate_validates_latents_and_labels(exported):
    cond = Generator.load(exported["files"]["cgan"])
    assert cond.conditional and cond.classes == CLASSES
    z = _latents(2, cond.z_dim)
    with pytest.raises(ValueError, match=rf"z of shape \[N, {cond.z_dim}\]"):
        cond.generate(z[:, :-1], "Parasitized")
    with pytest.raises(ValueError, match="z of shape"):
        cond.generate(z[None], "Parasitized")
    bad = z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        cond.generate(bad, "Parasitized")
    with pytest.raises(ValueError, match="cannot generate"):
        cond.generate(z, "Platelet")
    with pytest.raises(ValueError, match="1 labels for 2 latents"):
        cond.generate(z, ["Parasitized"])
    # One latent as a vector, and one label per cell.
    assert cond.generate(z[0], "Uninfected").shape == (1, 64, 64, 3)
    mixed = cond.generate(z, ["Parasitized", "Uninfected"])
    np.testing.assert_array_equal(mixed[1], cond.generate(z[1], "Uninfected")[0])
    # A conditional generator's classes share its principal directions.
    for label in CLASSES:
        np.testing.assert_array_equal(cond.directions[label].principal[0, :2], [1.0, 0.0])


def test_generate_mix_blends_classes(exported):
    cond = Generator.load(exported["files"]["cgan"])
    net = exported["torch"]["cgan"]
    z = _latents(2, cond.z_dim, seed=3)
    weights = np.array([[0.5, 0.5], [0.25, 0.75]], np.float32)
    with torch.no_grad():
        expected = to_uint8_nhwc(net(torch.from_numpy(z), torch.from_numpy(weights)))
    assert _level_diff(cond.generate_mix(z, weights), expected) <= PIXEL_TOLERANCE


def test_network_input_matches_the_sidecar_scaling(exported):
    # The runtime scales pixels by the sidecar; training scales them by network_input.
    meta = Classifier.load(exported["files"]["simple_cnn"]).meta
    pix = torch.arange(0, 256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    scaled = network_input(pix, exported["scale"]["simple_cnn"])
    expected = pix.float() * meta["pixels"]["scale"] + meta["pixels"]["offset"]
    torch.testing.assert_close(scaled, expected)


class _DivergedSession:
    """An ONNX Runtime stand-in for a diverged classifier: every output is NaN."""

    def run(self, names, feeds):
        n = len(next(iter(feeds.values())))
        return [np.full((n, len(CLASSES)), np.nan, np.float32), np.full((n, 4), np.nan)]


def test_diverged_classifier_has_no_preference(exported):
    meta = Classifier.load(exported["files"]["simple_cnn"]).meta
    for tta in (False, True):
        clf = Classifier(session=_DivergedSession(), meta={**meta, "tta": tta}, path=Path("x"))
        with np.errstate(all="raise"):
            proba, feats = clf.predict(_cells(2))
        np.testing.assert_array_equal(proba, np.full((2, len(CLASSES)), 1 / len(CLASSES)))
        assert np.isfinite(feats).all()
