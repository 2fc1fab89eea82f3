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

Usage: python -m train.quantize --exported exported --data DIR [--models classifier cgan]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime import quantization as ortq

from malgan import artifacts, data, latent
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


def write_sidecar(src: Path, dst: Path, parity: Parity, calibration: str) -> dict[str, Any]:
    """The int8 copy's sidecar: the source's, with the precision, recipe, parity and hashes."""
    meta = json.loads(sidecar_path(src).read_text(encoding="utf-8"))
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


def _keep_or_drop(src: Path, dst: Path, parity: Parity, calibration: str) -> bool:
    """Write the sidecar of a copy that passed; delete a copy that failed."""
    if not parity.passed:
        dst.unlink(missing_ok=True)
        sidecar_path(dst).unlink(missing_ok=True)
        return False
    write_sidecar(src, dst, parity, calibration)
    return True


def quantize_classifier(exported: Path, cells: data.LoadedDataset) -> tuple[Parity, bool]:
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
    return parity, _keep_or_drop(fp32.path, dst, parity, calibration)


def quantize_generator(exported: Path, name: str) -> tuple[Parity, bool]:
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
    return parity, _keep_or_drop(fp32.path, dst, parity, calibration)


def _session(path: Path) -> Any:
    return session_from_bytes(path.read_bytes(), path.name)


def main(argv: list[str] | None = None) -> int:
    """Write the int8 copies that pass parity; exit 1 when one fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exported", default=str(artifacts.exported_dir()))
    parser.add_argument("--data", required=True, help="real cells in NIH's layout")
    parser.add_argument("--models", nargs="+", default=["classifier", "cgan"])
    args = parser.parse_args(argv)
    exported = Path(args.exported)
    failed = []
    for name in args.models:
        if name == "classifier":
            cells = data.load_dataset(args.data, progress=False)
            parity, kept = quantize_classifier(exported, cells)
        else:
            parity, kept = quantize_generator(exported, name)
        print(f"{name}: {'written' if kept else 'NOT written (fails parity)'}; {parity}")
        if not kept:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
