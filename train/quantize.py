"""int8 copies of the exported classifier and generators, made with ONNX Runtime's quantisation
tools and kept only when they pass parity against fp32.

The CPU runs int8 convolutions natively (VNNI, AMX), about twice as fast as fp32. A copy sits
next to its source as ``<stem>.int8.onnx`` with a sidecar ``<stem>.int8.json`` (the source's
sidecar plus ``precision``, ``source_sha256``, the recipe, the parity figures and its own
sha256), so the runtime verifies it like every exported model.

Parity, on held-out patients' real cells and on seeded latents:

- classifier: the int8 copy's verdict agrees with fp32's on at least 99.5% of real cells;
- generator: the median pixel differs by at most 2/255 from fp32's, and the fp32 classifier's
  verdict on the int8 cells agrees with its verdict on the fp32 cells on at least 99.5%.

A copy that fails is not written.

Before the parity check, the quantiser's output is rewritten once, exactly
(``quantize_before_resize``). The quantiser leaves each nearest-neighbour 2x upsampling in
float32, on the full-size tensor, followed by a ``QuantizeLinear`` that feeds the next int8
convolution. A nearest upsampling only repeats pixels, so quantising its low-resolution input
and then repeating the uint8 pixels gives the same bytes, with a quarter of the quantisation and
an upsampling that moves 4x less memory: the cgan's copy then makes the same cells with 7 to 10%
less CPU per cell (batches of 64 and 256, 2 threads). The sidecar's sha256 and the parity
figures are those of the rewritten file.

Usage: python -m train.quantize --exported exported --data DIR [--models classifier cgan]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime import quantization as ortq

from malgan import artifacts, data, latent, release
from malgan.runtime import (
    INT8,
    Classifier,
    Generator,
    low_precision_path,
    session_from_bytes,
    sha256_file,
    sidecar_path,
    to_network_input,
)
from train.runs import git_commit, hardware

MIN_AGREEMENT = 0.995
MAX_MEDIAN_PIXEL_DIFF = 2  # in 1/255 steps
CALIBRATION_CELLS = 512
CALIBRATION_BATCH = 64
CALIBRATION_SEED = 4000
PARITY_SEED = 4001
PARITY_LATENTS = 1024
# Held-out real cells used for the classifier's parity (all of them when fewer).
PARITY_CELLS = 4000
# Only convolutions are quantised: they hold nearly all the arithmetic, and leaving the
# generator's normalisation and the classifier's head in fp32 keeps the pixels close.
RECIPE = {
    "tool": "onnxruntime.quantization.quantize_static",
    "format": "QDQ",
    "activations": "uint8",
    "weights": "int8 per channel",
    "calibration": "MinMax",
    "ops": ["Conv"],
    "rewrite": "QuantizeLinear moved ahead of nearest upsampling (exact)",
}


@dataclass(frozen=True)
class Parity:
    """How an int8 copy compares with its fp32 source.

    Attributes:
        cells: Cells compared.
        agreement: Share of cells with the same verdict.
        median_pixel_diff: Median absolute pixel difference in 1/255 steps (generators only).
        max_pixel_diff: Largest absolute pixel difference in 1/255 steps (generators only).
    """

    cells: int
    agreement: float
    median_pixel_diff: float | None = None
    max_pixel_diff: int | None = None

    @property
    def passed(self) -> bool:
        """Whether the copy may be used (the thresholds in the module docstring)."""
        pixels_ok = self.median_pixel_diff is None or (
            self.median_pixel_diff <= MAX_MEDIAN_PIXEL_DIFF
        )
        return self.agreement >= MIN_AGREEMENT and pixels_ok


class _Feeds(ortq.CalibrationDataReader):
    """Hands ONNX Runtime's calibrator one prepared feed dict at a time."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_int8(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """Write a static int8 (QDQ) copy of ``src`` to ``dst``, calibrated on ``feeds``."""
    with tempfile.TemporaryDirectory(prefix="malgan-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # The symbolic shape pass cannot follow the generator's reshape; ONNX's own does.
        ortq.quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        ortq.quantize_static(
            str(prepared),
            str(dst),
            _Feeds(feeds),
            quant_format=ortq.QuantFormat.QDQ,
            activation_type=ortq.QuantType.QUInt8,
            weight_type=ortq.QuantType.QInt8,
            per_channel=True,
            calibrate_method=ortq.CalibrationMethod.MinMax,
            op_types_to_quantize=RECIPE["ops"],
        )
    model = onnx.load(str(dst))
    if quantize_before_resize(model):
        onnx.checker.check_model(model)
        onnx.save(model, str(dst))


def _repeats_pixels(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> bool:
    """Whether ``node`` is a Resize that repeats pixels: nearest, constant integer scales."""
    if node.op_type != "Resize" or len(node.input) < 3 or node.input[2] not in constants:
        return False
    if any(node.input[3:]):  # sizes instead of scales
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    # tf_crop_and_resize writes extrapolation_value outside the crop, a value of no pixel.
    if attrs.get("coordinate_transformation_mode") == b"tf_crop_and_resize":
        return False
    scales = constants[node.input[2]]
    integer = scales.size > 0 and np.all((scales >= 1) & (scales == np.floor(scales)))
    return attrs.get("mode", b"nearest") == b"nearest" and bool(integer)


def _quantization_key(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> bytes | None:
    """A per-tensor QuantizeLinear's constant scale, zero point and attributes as one key.

    Returns:
        Equal keys for nodes that quantise alike; None for any other node.
    """
    params = [constants.get(name) for name in node.input[1:]]
    if node.op_type != "QuantizeLinear" or any(p is None or p.ndim != 0 for p in params):
        return None
    attrs = sorted(a.SerializeToString() for a in node.attribute)
    return b"|".join([p.dtype.str.encode() + p.tobytes() for p in params] + attrs)


def quantize_before_resize(model: onnx.ModelProto) -> int:
    """Quantise ahead of each nearest upsampling that only quantisation reads, in place.

    ``Resize -> QuantizeLinear`` becomes ``QuantizeLinear -> Resize`` (on uint8) where the
    Resize repeats pixels (nearest mode, integer scales), is not a graph output, and every node
    reading it is a per-tensor QuantizeLinear with the same constant scale and zero point. The
    result is the same bytes: quantisation acts pixel by pixel and the upsampling only copies
    pixels. A Resize that some other node reads in float is left as it is. A second such
    QuantizeLinear becomes an Identity of the first. Models with subgraphs are not touched.

    Args:
        model: An ONNX model, as ``quantize_static`` writes it.

    Returns:
        The number of Resize nodes moved behind their quantisation.
    """
    graph = model.graph
    subgraphs = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if any(a.type in subgraphs for node in graph.node for a in node.attribute):
        return 0
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in set(node.input):
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    replaced: dict[int, list[onnx.NodeProto]] = {}
    moved: set[str] = set()
    for resize in graph.node:
        quants = readers.get(resize.output[0], []) if _repeats_pixels(resize, constants) else []
        keys = {_quantization_key(q, constants) for q in quants}
        if not quants or None in keys or len(keys) > 1 or resize.output[0] in outputs:
            continue
        first, *others = quants
        quantize, upsample = onnx.NodeProto(), onnx.NodeProto()
        quantize.CopyFrom(first)
        quantize.input[0], quantize.output[0] = resize.input[0], f"{resize.output[0]}_quantized"
        upsample.CopyFrom(resize)
        upsample.input[0], upsample.output[0] = quantize.output[0], first.output[0]
        replaced[id(resize)], replaced[id(first)] = [quantize, upsample], []
        moved.add(resize.output[0])
        for q in others:
            identity = helper.make_node("Identity", [first.output[0]], q.output, name=q.name)
            replaced[id(q)] = [identity]
    if not moved:
        return 0
    nodes = [new for node in graph.node for new in replaced.get(id(node), [node])]
    # The float upsampled tensors are gone, and their recorded types with them.
    infos = [v for v in graph.value_info if v.name not in moved]
    del graph.node[:], graph.value_info[:]
    graph.node.extend(nodes)
    graph.value_info.extend(infos)
    return len(moved)


def generator_feeds(generator: Generator, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Seeded latents, classes alternating, as feed dicts of ``CALIBRATION_BATCH``."""
    z = latent.sample_z(seed, n, generator.z_dim)
    labels = [generator.classes[i % len(generator.classes)] for i in range(n)]
    weights = generator.class_weights(labels, n)
    names = [spec["name"] for spec in generator.meta["inputs"]]
    feeds = []
    for start in range(0, n, CALIBRATION_BATCH):
        feed = {names[0]: z[start : start + CALIBRATION_BATCH]}
        if generator.conditional:
            feed[names[1]] = weights[start : start + CALIBRATION_BATCH]
        feeds.append(feed)
    return feeds


def classifier_feeds(classifier: Classifier, images: np.ndarray) -> list[dict[str, np.ndarray]]:
    """uint8 NHWC cells as the classifier's feed dicts of ``CALIBRATION_BATCH``."""
    name = classifier.meta["inputs"][0]["name"]
    x = to_network_input(images, classifier.meta["pixels"])
    return [{name: x[i : i + CALIBRATION_BATCH]} for i in range(0, len(x), CALIBRATION_BATCH)]


def classifier_parity(
    fp32: Classifier, int8: Classifier, images: np.ndarray, *, views: int | None = None
) -> Parity:
    """Verdict agreement of an int8 classifier with its fp32 source on ``images``."""
    a = fp32.predict(images, views=views)[0].argmax(axis=1)
    b = int8.predict(images, views=views)[0].argmax(axis=1)
    return Parity(cells=len(images), agreement=float(np.mean(a == b)))


def generator_parity(
    fp32: Generator, int8: Generator, judge: Classifier, *, n: int, seed: int
) -> Parity:
    """Pixels and the judge's verdicts of an int8 generator's cells against fp32's cells."""
    z = latent.sample_z(seed, n, fp32.z_dim)
    labels = [fp32.classes[i % len(fp32.classes)] for i in range(n)]
    a, b = fp32.generate(z, labels), int8.generate(z, labels)
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    verdict_a = judge.predict(a)[0].argmax(axis=1)
    verdict_b = judge.predict(b)[0].argmax(axis=1)
    return Parity(
        cells=n,
        agreement=float(np.mean(verdict_a == verdict_b)),
        median_pixel_diff=float(np.median(diff)),
        max_pixel_diff=int(diff.max()),
    )


def write_sidecar(
    src: Path, dst: Path, parity: Parity, calibration: str, command: str = ""
) -> dict[str, Any]:
    """The int8 copy's sidecar: the source's, with the precision, recipe, parity, hashes and
    what made the copy (``command``, the commit and the machine)."""
    meta = json.loads(sidecar_path(src).read_text(encoding="utf-8"))
    meta[release.WRITTEN_BY] = release.provenance(command, git_commit(), hardware())
    meta.update(
        precision=INT8,
        source_file=src.name,
        source_sha256=meta["sha256"],
        quantization={**RECIPE, "calibration_data": calibration},
        parity={**asdict(parity), "passed": parity.passed},
        sha256=sha256_file(dst),
        bytes=dst.stat().st_size,
    )
    sidecar_path(dst).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def _keep_or_drop(
    src: Path, dst: Path, parity: Parity, calibration: str, command: str = ""
) -> bool:
    """Write the sidecar of a copy that passed; delete a copy that failed."""
    if not parity.passed:
        dst.unlink(missing_ok=True)
        sidecar_path(dst).unlink(missing_ok=True)
        return False
    write_sidecar(src, dst, parity, calibration, command)
    return True


def quantize_classifier(
    exported: Path, cells: data.LoadedDataset, command: str = ""
) -> tuple[Parity, bool]:
    """Quantise the index's classifier; calibrate on training patients, check on test ones."""
    fp32 = artifacts.load_classifier(exported)
    rng = np.random.default_rng(CALIBRATION_SEED)
    train, test = cells.split("train"), cells.split("test")
    calib = train.images[np.sort(rng.choice(len(train), CALIBRATION_CELLS, replace=False))]
    held_out = test.images[: min(PARITY_CELLS, len(test))]
    dst = low_precision_path(fp32.path, INT8)
    quantize_int8(fp32.path, dst, classifier_feeds(fp32, calib))
    int8 = Classifier(session=_session(dst), meta=fp32.meta, path=dst)
    parity = classifier_parity(fp32, int8, held_out)
    calibration = f"{CALIBRATION_CELLS} real cells of training patients (seed {CALIBRATION_SEED})"
    return parity, _keep_or_drop(fp32.path, dst, parity, calibration, command)


def quantize_generator(exported: Path, name: str, command: str = "") -> tuple[Parity, bool]:
    """Quantise one single-file generator; calibrate and check on seeded latents."""
    fp32 = artifacts.load_generator(exported, name)
    if not isinstance(fp32, Generator):
        raise SystemExit(f"{name} has one file per class; only single-file generators are done.")
    judge = artifacts.load_classifier(exported)
    dst = low_precision_path(fp32.path, INT8)
    quantize_int8(fp32.path, dst, generator_feeds(fp32, CALIBRATION_CELLS, CALIBRATION_SEED))
    int8 = Generator(session=_session(dst), meta=fp32.meta, path=dst)
    parity = generator_parity(fp32, int8, judge, n=PARITY_LATENTS, seed=PARITY_SEED)
    calibration = f"{CALIBRATION_CELLS} latents, classes alternating (seed {CALIBRATION_SEED})"
    return parity, _keep_or_drop(fp32.path, dst, parity, calibration, command)


def _session(path: Path) -> Any:
    return session_from_bytes(path.read_bytes(), path.name)


def main(argv: list[str] | None = None) -> int:
    """Write the int8 copies that pass parity; exit 1 when one fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exported", default=str(artifacts.exported_dir()))
    parser.add_argument("--data", required=True, help="real cells in NIH's layout")
    parser.add_argument("--models", nargs="+", default=["classifier", "cgan"])
    args = parser.parse_args(argv)
    command = shlex.join([Path(sys.executable).name, "-m", "train.quantize", *sys.argv[1:]])
    exported = Path(args.exported)
    failed = []
    for name in args.models:
        if name == "classifier":
            cells = data.load_dataset(args.data, progress=False)
            parity, kept = quantize_classifier(exported, cells, command)
        else:
            parity, kept = quantize_generator(exported, name, command)
        print(f"{name}: {'written' if kept else 'NOT written (fails parity)'}; {parity}")
        if not kept:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
