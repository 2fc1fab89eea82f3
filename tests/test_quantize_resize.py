"""Tests of the exact move of quantisation ahead of nearest upsampling in int8 copies
(``train.quantize.quantize_before_resize``), on small QDQ graphs."""

from __future__ import annotations

import numpy as np
import pytest

from malgan import runtime

onnx = pytest.importorskip("onnx")
quantize = pytest.importorskip("train.quantize")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

CHANNELS = 3
SCALE = 0.05  # 255 steps reach 12.75, so the test inputs saturate too
OTHER_SCALE = 0.1


def qdq_model(
    *,
    scales: tuple[float, ...] = (1, 1, 2, 2),
    mode: str = "nearest",
    second_scale: float | None = None,
    float_reader: bool = False,
) -> onnx.ModelProto:
    """x -> Relu -> Resize -> QuantizeLinear -> DequantizeLinear -> int8 Conv 3x3 -> y, as
    ``quantize_static`` writes it.

    A second QuantizeLinear of the upsampled tensor (at ``second_scale``) gives ``y2``; a float
    reader of it (Sigmoid) gives ``z``.
    """
    rng = np.random.default_rng(0)
    weights = rng.integers(-127, 128, (CHANNELS, CHANNELS, 3, 3), dtype=np.int8)
    inits = [
        numpy_helper.from_array(np.array(scales, np.float32), "scales"),
        numpy_helper.from_array(np.array(SCALE, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.uint8), "zp"),
        numpy_helper.from_array(np.array(SCALE, np.float32), "s_again"),
        numpy_helper.from_array(np.array(0, np.uint8), "zp_again"),
        numpy_helper.from_array(np.array(second_scale or SCALE, np.float32), "s2"),
        numpy_helper.from_array(weights, "w_q"),
        numpy_helper.from_array(np.full(CHANNELS, 1e-3, np.float32), "w_s"),
        numpy_helper.from_array(np.zeros(CHANNELS, np.int8), "w_zp"),
    ]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Resize", ["r", "", "scales"], ["up"], mode=mode, name="resize"),
        helper.make_node("QuantizeLinear", ["up", "s", "zp"], ["q"], name="quantize"),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], axis=0),
        helper.make_node("Conv", ["dq", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    outputs = ["y"]
    if second_scale is not None:
        # Equal values under other initialiser names still count as the same quantisation.
        nodes += [
            helper.make_node("QuantizeLinear", ["up", "s2", "zp_again"], ["q2"], name="second"),
            helper.make_node("DequantizeLinear", ["q2", "s_again", "zp_again"], ["y2"]),
        ]
        outputs.append("y2")
    if float_reader:
        nodes.append(helper.make_node("Sigmoid", ["up"], ["z"]))
        outputs.append("z")
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", CHANNELS, "H", "W"])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", CHANNELS, "H2", "W2"])
            for name in outputs
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = runtime.session_from_bytes(model.SerializeToString(), "test")
    return session.run(None, {"x": x})


def rewritten(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A rewritten copy of ``model``, checked by ``onnx.checker``, and the Resizes moved."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    moved = quantize.quantize_before_resize(copy)
    onnx.checker.check_model(copy, full_check=True)
    return copy, moved


def resize_input_type(model: onnx.ModelProto) -> int:
    """The element type of the Resize's input, by ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    (resize,) = [node for node in inferred.graph.node if node.op_type == "Resize"]
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    return types[resize.input[0]]


@pytest.mark.parametrize("scales", [(1, 1, 2, 2), (1, 1, 3, 2)])
@pytest.mark.parametrize("second_scale", [None, SCALE])
def test_resize_moves_behind_quantisation_and_outputs_are_equal(
    scales: tuple[float, ...], second_scale: float | None
) -> None:
    model = qdq_model(scales=scales, second_scale=second_scale)
    after, moved = rewritten(model)
    assert moved == 1
    assert resize_input_type(model) == TensorProto.FLOAT
    assert resize_input_type(after) == TensorProto.UINT8
    assert "up" not in {name for node in after.graph.node for name in node.input}
    # Negative, in-range and saturating pixels, on an odd-sized image.
    x = (np.random.default_rng(1).standard_normal((2, CHANNELS, 5, 7)) * 5).astype(np.float32)
    for before, now in zip(run(model, x), run(after, x), strict=True):
        np.testing.assert_array_equal(now, before)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"float_reader": True},
        {"second_scale": OTHER_SCALE},
        {"mode": "linear"},
        {"scales": (1, 1, 1.5, 1.5)},
    ],
    ids=["float-reader", "other-quantisation", "linear", "fractional-scale"],
)
def test_other_resizes_are_left_alone(kwargs: dict) -> None:
    model = qdq_model(**kwargs)
    after, moved = rewritten(model)
    assert moved == 0
    assert after.SerializeToString() == model.SerializeToString()
