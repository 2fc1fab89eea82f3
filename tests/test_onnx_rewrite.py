"""Tests of the exact sub-pixel rewrite: nearest 2x upsampling then a 3x3 convolution gives the
same result as one stride-2 transposed convolution, on small graphs and the exported
generators."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from malgan import artifacts, latent, onnx_rewrite, runtime
from malgan.data import CLASSES

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

EXPORTED = Path(__file__).resolve().parents[1] / "exported"
# Float rounding of the folded taps, far below one pixel step (2/255 in the network's range).
MAX_ABS_DIFF = 1e-5


def upsample_conv_model(
    c_in: int,
    c_out: int,
    *,
    seed: int = 0,
    mode: str = "nearest",
    stride: int = 1,
    bias: bool = True,
    second_user: bool = False,
) -> bytes:
    """A one-pair graph: x [N, c_in, H, W] -> Resize 2x -> Conv 3x3 -> y (and z when a second
    node also reads the upsampled tensor)."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        numpy_helper.from_array(rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(c_out).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node(
            "Resize",
            ["x", "", "scales"],
            ["up"],
            mode=mode,
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),
        helper.make_node(
            "Conv",
            ["up", "w", *(["b"] if bias else [])],
            ["y"],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[stride, stride],
            name="conv",
        ),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", c_out, "H2", "W2"])]
    if second_user:
        nodes.append(helper.make_node("Relu", ["up"], ["z"]))
        outputs.append(
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", c_in, "H2", "W2"])
        )
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c_in, "H", "W"])
    graph = helper.make_graph(nodes, "pair", [x], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return model.SerializeToString()


def run(data: bytes, x: np.ndarray) -> np.ndarray:
    return runtime.session_from_bytes(data, "test").run(["y"], {"x": x})[0]


@pytest.mark.parametrize(
    ("c_in", "c_out", "height", "width", "bias"),
    [(3, 5, 4, 4, True), (8, 4, 1, 1, True), (6, 7, 5, 3, False), (16, 16, 8, 8, True)],
)
def test_rewrite_matches_upsample_then_conv(
    c_in: int, c_out: int, height: int, width: int, bias: bool
) -> None:
    data = upsample_conv_model(c_in, c_out, seed=c_in + height, bias=bias)
    rewritten, pairs = onnx_rewrite.rewrite_bytes(data)
    assert pairs == 1
    ops = [n.op_type for n in onnx.load_model_from_string(rewritten).graph.node]
    assert ops == ["ConvTranspose"]
    x = np.random.default_rng(1).standard_normal((3, c_in, height, width)).astype(np.float32)
    expected, got = run(data, x), run(rewritten, x)
    assert got.shape == expected.shape == (3, c_out, 2 * height, 2 * width)
    # Sums of up to 9 * c_in products of unit-scale values round at about 1e-6 of their size.
    np.testing.assert_allclose(got, expected, rtol=MAX_ABS_DIFF, atol=MAX_ABS_DIFF)


def test_phase_kernels_fold_the_taps_each_phase_sees() -> None:
    w = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    k = onnx_rewrite.phase_kernels(w)[:, :, 0, 0]  # [2, 2, 2, 2]
    # Even rows and columns: the first tap alone, then the other two summed.
    np.testing.assert_array_equal(k[0, 0], [[0, 1 + 2], [3 + 6, 4 + 5 + 7 + 8]])
    np.testing.assert_array_equal(k[1, 1], [[0 + 1 + 3 + 4, 2 + 5], [6 + 7, 8]])
    assert k.sum() == 4 * w.sum()  # every tap lands once in each phase


@pytest.mark.parametrize(
    "variant", [{"mode": "linear"}, {"stride": 2}, {"second_user": True}], ids=str
)
def test_other_patterns_are_left_alone(variant: dict) -> None:
    data = upsample_conv_model(3, 4, **variant)
    assert onnx_rewrite.rewrite_bytes(data) == (data, 0)


def test_without_the_onnx_package_the_graph_runs_as_exported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = upsample_conv_model(3, 4)
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert onnx_rewrite.rewrite_bytes(data) == (data, 0)


@pytest.mark.parametrize("name", ["cgan", "dcgan"])
def test_exported_generators_keep_their_pixels_and_verdicts(name: str) -> None:
    """The rewritten generators draw the exported ones' cells: raw outputs within float
    rounding, pixels at most one step apart, and the same class-filter verdicts."""
    fast = artifacts.load_generator(EXPORTED, name)
    members = getattr(fast, "members", {label: fast for label in CLASSES})
    for label, member in members.items():
        exact = runtime.Generator.load(member.path, rewrite=False)
        assert (member.graph, exact.graph) == (onnx_rewrite.SUBPIXEL, "exported")
        z = latent.sample_z(5, 32, member.z_dim)
        feeds = {member.meta["inputs"][0]["name"]: z}
        if member.conditional:
            feeds[member.meta["inputs"][1]["name"]] = member.class_weights(label, len(z))
        out = member.meta["outputs"][0]["name"]
        raw_fast = member.session.run([out], feeds)[0]
        raw_exact = exact.session.run([out], feeds)[0]
        np.testing.assert_allclose(raw_fast, raw_exact, rtol=0, atol=MAX_ABS_DIFF)
        cells_fast, cells_exact = member.generate(z, label), exact.generate(z, label)
        assert np.abs(cells_fast.astype(int) - cells_exact.astype(int)).max() <= 1
        judge = artifacts.load_classifier(EXPORTED)
        np.testing.assert_array_equal(
            judge.predict_proba(cells_fast).argmax(axis=1),
            judge.predict_proba(cells_exact).argmax(axis=1),
        )
        assert member.file_sha256(label) == exact.file_sha256(label)
