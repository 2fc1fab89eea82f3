"""Exact rewrites of an exported ONNX graph at load time: nearest 2x upsampling followed by a 3x3
convolution becomes one transposed convolution (kernel 4, stride 2, padding 1) of the
low-resolution input (a sub-pixel convolution).

A nearest 2x upsampling repeats each input pixel over a 2x2 block, so each of the four output
phases (even or odd row, even or odd column) of the following 3x3 convolution sees only a 2x2
neighbourhood of the input: the 3x3 kernel's rows (and columns) fold into two taps, ``[k0] +
[k1 + k2]`` for even outputs and ``[k0 + k1] + [k2]`` for odd ones. A stride-2 transposed
convolution with a 4x4 kernel applies exactly one such 2x2 kernel per phase, so it does 4/9 of
the multiplications and skips the upsampled tensor; the result is the same up to float rounding
(the folded taps are summed before, not after, the multiplication). Four 2x2 convolutions and a
DepthToSpace compute the same, but their concatenation and rearrangement cost more than the
transposed convolution's scatter in ONNX Runtime on the CPU.

The ``onnx`` package is needed only here, and imported only when a generator is loaded; without it
the exported graph runs unchanged (see ``rewrite_bytes``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

SUBPIXEL = "sub-pixel"
# FOLD[phase] maps the 3 taps of a kernel row (or column) onto the 2 input pixels an output of
# that phase sees: [2, 2 taps, 3 taps].
FOLD = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], np.float64)
UPSAMPLE_SCALES = (1.0, 1.0, 2.0, 2.0)
# The (phase, tap) of each row (or column) of the transposed convolution's 4x4 kernel: output row
# 2i + a gathers input row i - 1 + (a + 3 - ky) // 2 through kernel row ky.
KERNEL_TAPS = ((1, 1), (0, 1), (1, 0), (0, 0))


def phase_kernels(weight: np.ndarray) -> np.ndarray:
    """The four 2x2 kernels that replace a 3x3 kernel after a nearest 2x upsampling.

    Args:
        weight: float [O, I, 3, 3] convolution weights.

    Returns:
        float32 [2, 2, O, I, 2, 2]: the kernel of output phase (row parity, column parity).
        Folding is done in float64 so that only the final cast rounds.
    """
    w = np.asarray(weight, np.float64)
    return np.einsum("aur,oirs,bvs->aboiuv", FOLD, w, FOLD).astype(np.float32)


def transposed_kernel(weight: np.ndarray) -> np.ndarray:
    """The 4x4 transposed-convolution kernel equal to nearest 2x upsampling then ``weight``.

    Args:
        weight: float [O, I, 3, 3] convolution weights.

    Returns:
        float32 [I, O, 4, 4] (ONNX ConvTranspose's layout), for stride 2 and padding 1.
    """
    phases = phase_kernels(weight)  # [2, 2, O, I, 2, 2]
    out = np.zeros((weight.shape[1], weight.shape[0], 4, 4), np.float32)
    for ky, (row, u) in enumerate(KERNEL_TAPS):
        for kx, (col, v) in enumerate(KERNEL_TAPS):
            out[:, :, ky, kx] = phases[row, col, :, :, u, v].T
    return out


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _is_nearest_2x(node: Any, inits: dict[str, np.ndarray]) -> bool:
    """A Resize that repeats each pixel over a 2x2 block (nearest, floor, asymmetric)."""
    if node.op_type != "Resize" or len(node.input) < 3 or node.input[2] not in inits:
        return False
    attrs = _attrs(node)
    exact = (
        attrs.get("mode", b"nearest") == b"nearest"
        and attrs.get("coordinate_transformation_mode") == b"asymmetric"
        and attrs.get("nearest_mode", b"round_prefer_floor") == b"floor"
        and (len(node.input) < 4 or not node.input[3])
    )
    scales = inits[node.input[2]]
    return exact and scales.shape == (4,) and tuple(scales.tolist()) == UPSAMPLE_SCALES


def _is_plain_3x3(node: Any, inits: dict[str, np.ndarray]) -> bool:
    """A 3x3 convolution, stride 1, padding 1, no dilation or groups, with constant weights."""
    if node.op_type != "Conv" or node.input[1] not in inits:
        return False
    if len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
        return False
    attrs = _attrs(node)
    return (
        inits[node.input[1]].shape[2:] == (3, 3)
        and list(attrs.get("pads", [0] * 4)) == [1, 1, 1, 1]
        and list(attrs.get("strides", [1, 1])) == [1, 1]
        and list(attrs.get("dilations", [1, 1])) == [1, 1]
        and attrs.get("group", 1) == 1
        and attrs.get("auto_pad", b"NOTSET") == b"NOTSET"
    )


def _subpixel_node(resize: Any, conv: Any, inits: dict[str, np.ndarray]) -> tuple[Any, Any]:
    """The transposed convolution (and its kernel) that replaces ``resize`` then ``conv``."""
    from onnx import helper, numpy_helper

    name = f"{conv.name or conv.output[0]}_subpixel"
    kernel = numpy_helper.from_array(transposed_kernel(inits[conv.input[1]]), f"{name}_w")
    bias = [conv.input[2]] if len(conv.input) > 2 and conv.input[2] else []
    node = helper.make_node(
        "ConvTranspose",
        [resize.input[0], kernel.name, *bias],
        [conv.output[0]],
        name=name,
        kernel_shape=[4, 4],
        strides=[2, 2],
        pads=[1, 1, 1, 1],
    )
    return node, kernel


def rewrite_subpixel(model: Any) -> int:
    """Rewrite every nearest-2x-upsample-then-3x3-convolution pair of an ONNX model in place.

    A pair is rewritten only when the upsampled tensor feeds that convolution alone and is not
    a graph output. Other nodes are left as they are.

    Args:
        model: An ``onnx.ModelProto``.

    Returns:
        The number of pairs rewritten.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    replaced: dict[int, Any] = {}
    dropped: set[int] = set()
    for resize in graph.node:
        users = consumers.get(resize.output[0], []) if resize.op_type == "Resize" else []
        if len(users) != 1 or resize.output[0] in outputs:
            continue
        conv = users[0]
        if conv.input[0] != resize.output[0]:
            continue
        if not (_is_nearest_2x(resize, inits) and _is_plain_3x3(conv, inits)):
            continue
        node, kernel = _subpixel_node(resize, conv, inits)
        replaced[id(conv)] = node
        dropped.add(id(resize))
        graph.initializer.append(kernel)
    if not replaced:
        return 0
    new_nodes = []
    for node in graph.node:
        if id(node) in dropped:
            continue
        new_nodes.append(replaced.get(id(node), node))
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return len(replaced)


def rewrite_bytes(data: bytes) -> tuple[bytes, int]:
    """The sub-pixel rewrite of a serialised model, checked by ``onnx.checker``.

    Returns:
        ``(bytes, pairs)``: the rewritten model and the number of pairs rewritten, or the
        input unchanged and 0 when nothing matches or the ``onnx`` package is not installed.
    """
    try:
        import onnx
    except ImportError:
        return data, 0
    model = onnx.load_model_from_string(data)
    pairs = rewrite_subpixel(model)
    if not pairs:
        return data, 0
    onnx.checker.check_model(model)
    return model.SerializeToString(), pairs
