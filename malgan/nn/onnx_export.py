"""Export trained networks to ONNX with verified JSON sidecars (training side, uses torch)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from malgan.runtime import sha256_file, sidecar_path, softmax

log = logging.getLogger(__name__)

OPSET = 18
MAX_MODEL_BYTES = 16 * 1024 * 1024
# Tolerances for ONNX Runtime against torch: generator pixels are in [-1, 1], so 1e-3 is far
# below one 8-bit step (2/255); classifier probabilities are compared after softmax.
GENERATOR_ATOL = 1e-3
CLASSIFIER_ATOL = 1e-3
PARITY_BATCH = 5
# Pixel scaling shared by every network: input or output = pixel * scale + offset, so uint8
# pixels map to [-1, 1].
SYMMETRIC_PIXELS = {"scale": 1.0 / 127.5, "offset": -1.0, "layout": "NCHW", "range": [-1.0, 1.0]}


def pixels_for(input_scale: str) -> dict[str, Any]:
    """The sidecar pixel scaling of a classifier input mode ("symmetric" or "raw")."""
    if input_scale == "raw":
        return {"scale": 1.0, "offset": 0.0, "layout": "NCHW", "range": [0.0, 255.0]}
    if input_scale == "unit":
        return {"scale": 1.0 / 255.0, "offset": 0.0, "layout": "NCHW", "range": [0.0, 1.0]}
    return dict(SYMMETRIC_PIXELS)


class _ConditionalWrapper(nn.Module):
    """A conditional generator with inputs (z, class weights)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(z, y)


class _ClassifierWrapper(nn.Module):
    """A classifier with outputs (logits, features)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, features = self.net(image)
        return logits, features


def _tensor_spec(name: str, shape: list[Any], dtype: str = "float32") -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def _onnx_export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
) -> None:
    """Export with a dynamic batch axis, then run the ONNX checker."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic_shapes = tuple({0: batch} for _ in args)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_path = Path(tmp) / path.name
        # The exporter reports its progress on stdout; keep logs readable.
        with contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(
                module,
                args,
                str(tmp_path),
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
            )
        onnx.checker.check_model(str(tmp_path), full_check=True)
        os.replace(tmp_path, path)
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise ValueError(f"{path.name} is {size / 2**20:.1f} MiB, over the 16 MiB limit.")


def _check_parity(
    path: Path,
    module: nn.Module,
    feeds: list[dict[str, np.ndarray]],
    atol: float,
    transforms: tuple | None = None,
) -> float:
    """Compare ONNX Runtime with torch on each feed; return the largest difference.

    ``transforms`` gives one function per output applied to both sides before comparing (for
    example a softmax on logits); differences of other outputs are taken relative to their
    largest magnitude, so that unbounded features share one tolerance.
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for feed in feeds:
        with torch.no_grad():
            expected = module(*(torch.from_numpy(v) for v in feed.values()))
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(None, feed)
        for i, (exp, out) in enumerate(zip(expected, got, strict=True)):
            exp_np = exp.float().numpy()
            transform = transforms[i] if transforms else None
            if transform is not None:
                diff = np.abs(transform(exp_np) - transform(out)).max()
            else:
                diff = np.abs(exp_np - out).max() / max(1.0, float(np.abs(exp_np).max()))
            worst = max(worst, float(diff))
    if worst > atol:
        raise ValueError(
            f"{path.name}: ONNX Runtime differs from torch by {worst:.2e} > {atol:.0e}."
        )
    return worst


def write_sidecar(model_path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write the JSON sidecar of a model file, adding its sha256 and size."""
    meta = {**meta, "sha256": sha256_file(model_path), "bytes": model_path.stat().st_size}
    sidecar_path(model_path).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def export_generator(
    net: nn.Module,
    path: str | os.PathLike,
    *,
    name: str,
    display_name: str,
    classes: list[str],
    provenance: dict[str, Any],
    directions: dict[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Export a generator to ONNX and write its sidecar.

    A conditional generator (``net.num_classes`` > 1) takes ``z`` and class weights ``y``; a
    per-class generator takes ``z`` alone. Output ``image`` is NCHW float in [-1, 1].

    Args:
        net: The generator (eval mode is set here).
        path: Destination ``.onnx`` file.
        name: Short model name.
        display_name: Name shown to people.
        classes: The classes the file generates, in the order of the class weights.
        provenance: Source checkpoint, git commit and anything else to record.
        directions: Latent directions (principal, sigmas, infection) to ship with the model.
        seed: Seed of the parity-check latents.

    Returns:
        The sidecar dict.
    """
    path = Path(path)
    net = net.eval().float().cpu()
    z_dim = int(net.z_dim)
    conditional = len(classes) > 1
    rng = np.random.default_rng(seed)

    def sample(n: int) -> dict[str, np.ndarray]:
        feed = {"z": rng.standard_normal((n, z_dim)).astype(np.float32)}
        if conditional:
            feed["y"] = np.eye(len(classes), dtype=np.float32)[rng.integers(0, len(classes), n)]
        return feed

    # The wrapper is put in eval mode too: the exporter traces the top module's mode.
    module = _ConditionalWrapper(net).eval() if conditional else net
    inputs = ["z", "y"] if conditional else ["z"]
    example = sample(2)
    _onnx_export(
        module, tuple(torch.from_numpy(v) for v in example.values()), path, inputs, ["image"]
    )
    worst = _check_parity(path, module, [sample(1), sample(PARITY_BATCH)], GENERATOR_ATOL)
    img = int(getattr(net, "img_size", 64))
    specs = [_tensor_spec("z", ["N", z_dim])]
    if conditional:
        specs.append(_tensor_spec("y", ["N", len(classes)]))
    meta = {
        "kind": "generator",
        "name": name,
        "display_name": display_name,
        "inputs": specs,
        "outputs": [_tensor_spec("image", ["N", 3, img, img])],
        "z_dim": z_dim,
        "img_size": img,
        "classes": list(classes),
        "pixels": dict(SYMMETRIC_PIXELS),
        "opset": OPSET,
        "parity_max_abs_diff": worst,
        "directions": directions or {},
        **provenance,
    }
    return write_sidecar(path, meta)


def export_classifier(
    net: nn.Module,
    path: str | os.PathLike,
    *,
    name: str,
    display_name: str,
    classes: list[str],
    input_scale: str,
    provenance: dict[str, Any],
    seed: int = 0,
) -> dict[str, Any]:
    """Export a classifier to ONNX (outputs ``logits`` and ``features``) and write its sidecar.

    Args:
        net: The classifier, whose forward returns ``(logits, features)``.
        path: Destination ``.onnx`` file.
        name: Short model name.
        display_name: Name shown to people.
        classes: Class names in logit order.
        input_scale: How uint8 pixels were scaled in training ("symmetric", "unit" or "raw").
        provenance: Source checkpoint, git commit and anything else to record.
        seed: Seed of the parity-check images.

    Returns:
        The sidecar dict.
    """
    path = Path(path)
    net = net.eval().float().cpu()
    pixels = pixels_for(input_scale)
    img = int(getattr(net, "img_size", 64))
    rng = np.random.default_rng(seed)

    def sample(n: int) -> dict[str, np.ndarray]:
        pix = rng.integers(0, 256, (n, 3, img, img)).astype(np.float32)
        return {"image": (pix * pixels["scale"] + pixels["offset"]).astype(np.float32)}

    module = _ClassifierWrapper(net).eval()
    _onnx_export(
        module, (torch.from_numpy(sample(2)["image"]),), path, ["image"], ["logits", "features"]
    )
    worst = _check_parity(
        path, module, [sample(1), sample(PARITY_BATCH)], CLASSIFIER_ATOL, (softmax, None)
    )
    feature_dim = int(net.feature_dim)
    meta = {
        "kind": "classifier",
        "name": name,
        "display_name": display_name,
        "inputs": [_tensor_spec("image", ["N", 3, img, img])],
        "outputs": [
            _tensor_spec("logits", ["N", len(classes)]),
            _tensor_spec("features", ["N", feature_dim]),
        ],
        "classes": list(classes),
        "img_size": img,
        "feature_dim": feature_dim,
        "pixels": pixels,
        "opset": OPSET,
        "parity_max_abs_diff": worst,
        **provenance,
    }
    return write_sidecar(path, meta)
