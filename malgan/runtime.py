"""ONNX Runtime sessions for the exported generators and classifier (no torch)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import numpy as np

from malgan.data import CLASSES
from malgan.directions import Directions
from malgan.errors import ModelError

# The file layer; the names callers import from here are re-exported.
from malgan.onnx_files import (
    DEFAULT_THREADS,
    FP32,
    load_verified,
    usable_copy,
)
from malgan.onnx_files import (
    INT8 as INT8,
)
from malgan.onnx_files import (
    PRECISIONS as PRECISIONS,
)
from malgan.onnx_files import (
    low_precision_path as low_precision_path,
)
from malgan.onnx_files import (
    read_json as read_json,
)
from malgan.onnx_files import (
    session_from_bytes as session_from_bytes,
)
from malgan.onnx_files import (
    sha256_bytes as sha256_bytes,
)
from malgan.onnx_files import (
    sha256_file as sha256_file,
)
from malgan.onnx_files import (
    sidecar_path as sidecar_path,
)


def to_uint8_nhwc(images: np.ndarray, pixels: dict[str, Any]) -> np.ndarray:
    """Convert a network's NCHW output to uint8 NHWC using the sidecar's pixel scaling.

    The network emits ``pixel * scale + offset``; this inverts it.
    """
    scale, offset = float(pixels["scale"]), float(pixels["offset"])
    out = (np.asarray(images, dtype=np.float32) - offset) / scale
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()


def to_network_input(images: np.ndarray, pixels: dict[str, Any]) -> np.ndarray:
    """Convert uint8 NHWC images to the float NCHW input a classifier expects."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Expected images of shape [N, H, W, 3], got {images.shape}.")
    x = images.astype(np.float32) * float(pixels["scale"]) + float(pixels["offset"])
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@dataclass
class ExportedModel:
    """An ONNX Runtime session with the sidecar it was verified against.

    Attributes:
        name: Short model name.
        display_name: Name shown to people.
        classes: The classes of the model, in its input or output order.
        img_size: Side of the square cells it makes or reads, in pixels.
        meta: The sidecar.
    """

    kind: ClassVar[str] = ""
    # Whether loading applies the exact sub-pixel rewrite (``malgan.onnx_rewrite``).
    rewrites: ClassVar[bool] = False
    session: Any = field(repr=False)
    meta: dict[str, Any] = field(repr=False)
    path: Path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        threads: int = DEFAULT_THREADS,
        precision: str = FP32,
        rewrite: bool = True,
    ) -> Self:
        """Load a model file after checking it against its sidecar (see ``load_verified``).

        With ``precision="int8"`` its int8 copy is loaded where one made from this file exists
        (see ``usable_copy``), and the fp32 file otherwise; ``precision`` says which ran. A
        generator's graph is rewritten exactly (sub-pixel convolutions) unless ``rewrite`` is
        False; ``graph`` says which ran.
        """
        copy = usable_copy(path, precision)
        # A low-precision copy had its own exact rewrite when it was made (``train.quantize``);
        # the sub-pixel pattern does not match its quantised convolutions, so the rewrite
        # (and the ``onnx`` import it needs, half a second) is skipped for it.
        rewrite = rewrite and cls.rewrites and copy == Path(path)
        session, meta = load_verified(copy, cls.kind, threads=threads, rewrite=rewrite)
        return cls(session=session, meta=meta, path=copy)

    @property
    def precision(self) -> str:
        """The precision the session runs at (``fp32`` unless the sidecar says otherwise)."""
        return str(self.meta.get("precision", FP32))

    @property
    def graph(self) -> str:
        """The graph the session runs: ``exported``, or ``sub-pixel`` after the exact rewrite."""
        return str(self.meta.get("graph", "exported"))

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.path.stem))

    @property
    def display_name(self) -> str:
        return str(self.meta.get("display_name", self.name))

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.meta["classes"])

    @property
    def img_size(self) -> int:
        return int(self.meta["img_size"])


class CellGenerator(Protocol):
    """What the app needs of a generator; ``Generator`` and ``GeneratorSet`` both satisfy it."""

    @property
    def name(self) -> str:
        """Short model name (its name in the index)."""
        ...

    @property
    def display_name(self) -> str:
        """Name shown to people."""
        ...

    @property
    def z_dim(self) -> int:
        """Latent size."""
        ...

    @property
    def img_size(self) -> int:
        """Side of the square cells, in pixels."""
        ...

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes it can generate, in class-weight order."""
        ...

    @property
    def conditional(self) -> bool:
        """Whether one latent takes class weights, so that a cell can blend classes."""
        ...

    @property
    def directions(self) -> dict[str, Directions]:
        """Edit directions by class."""
        ...

    @property
    def precision(self) -> str:
        """Precision its sessions run at (``fp32``, ``int8``, or ``mixed`` for a set)."""
        ...

    def file_sha256(self, label: str) -> str:
        """sha256 of the ONNX file that draws the cells of ``label``."""
        ...

    def generate(self, z: np.ndarray, label: str | Sequence[str]) -> np.ndarray:
        """uint8 [N, img_size, img_size, 3] cells of a class (or one class per latent)."""
        ...

    def generate_mix(self, z: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
        """uint8 [N, img_size, img_size, 3] cells from class weights [N, len(classes)]."""
        ...


@dataclass
class Generator(ExportedModel):
    """One exported generator file: ``generate(z, label)`` returns uint8 cells.

    Attributes:
        z_dim: Latent size.
        conditional: Whether the file takes class weights as a second input.
    """

    kind: ClassVar[str] = "generator"
    rewrites: ClassVar[bool] = True

    @property
    def z_dim(self) -> int:
        return int(self.meta["z_dim"])

    @property
    def conditional(self) -> bool:
        return len(self.meta["inputs"]) > 1

    @property
    def directions(self) -> dict[str, Directions]:
        """Principal (GANSpace) directions, shared by the classes, and each class's infection
        (InterFaceGAN) direction."""
        raw = self.meta.get("directions") or {}
        return {label: Directions.from_sidecar(raw, label, self.z_dim) for label in self.classes}

    def file_sha256(self, label: str) -> str:
        """sha256 of this file (the same for every class), as its sidecar records it."""
        return str(self.meta.get("sha256", ""))

    def _check_z(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float32)
        if z.ndim == 1:
            z = z[None]
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(
                f"{self.display_name} needs z of shape [N, {self.z_dim}], got {z.shape}."
            )
        if not np.isfinite(z).all():
            raise ValueError("z holds non-finite values.")
        return np.ascontiguousarray(z)

    def class_weights(self, label: str | Sequence[str], n: int) -> np.ndarray:
        """One-hot class weights [n, len(classes)] for a label or one label per cell."""
        labels = _labels(label, n)
        unknown = sorted(set(labels) - set(self.classes))
        if unknown:
            raise ValueError(
                f"{self.display_name} cannot generate {unknown}; it has {self.classes}."
            )
        weights = np.zeros((n, len(self.classes)), np.float32)
        weights[np.arange(n), [self.classes.index(lab) for lab in labels]] = 1.0
        return weights

    def generate_mix(self, z: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
        """Generate cells from latents and class weights (a blend interpolates classes).

        Args:
            z: float32 [N, z_dim].
            class_weights: float32 [N, len(classes)], rows usually summing to 1; an
                unconditional file ignores them.

        Returns:
            uint8 [N, img_size, img_size, 3].
        """
        z = self._check_z(z)
        feeds = {self.meta["inputs"][0]["name"]: z}
        if self.conditional:
            weights = np.asarray(class_weights, np.float32).reshape(len(z), len(self.classes))
            feeds[self.meta["inputs"][1]["name"]] = np.ascontiguousarray(weights)
        (images,) = self.session.run([self.meta["outputs"][0]["name"]], feeds)
        return to_uint8_nhwc(images, self.meta["pixels"])

    def generate(self, z: np.ndarray, label: str | Sequence[str]) -> np.ndarray:
        """Generate cells of a class.

        Args:
            z: float32 [N, z_dim] (or [z_dim] for one cell).
            label: A class name, or one class name per latent.

        Returns:
            uint8 [N, img_size, img_size, 3].
        """
        z = self._check_z(z)
        return self.generate_mix(z, self.class_weights(label, len(z)))


def _labels(label: str | Sequence[str], n: int) -> list[str]:
    """One class name per latent, from one name or a sequence of n."""
    labels = [label] * n if isinstance(label, str) else list(label)
    if len(labels) != n:
        raise ValueError(f"Got {len(labels)} labels for {n} latents.")
    return labels


@dataclass
class GeneratorSet:
    """Per-class generator files (the report's DCGAN pair) behind the ``CellGenerator`` interface.

    Each member draws the cells of its own class, so the set cannot blend classes.
    """

    members: dict[str, Generator]
    name: str
    display_name: str

    @classmethod
    def load(
        cls,
        files: dict[str, str | os.PathLike],
        *,
        name: str,
        display_name: str,
        precision: str = FP32,
        rewrite: bool = True,
    ) -> GeneratorSet:
        """Load one generator file per class (each at ``precision`` where it has a copy)."""
        members = {
            label: Generator.load(path, precision=precision, rewrite=rewrite)
            for label, path in files.items()
        }
        for what in ("z_dim", "img_size"):
            values = {getattr(g, what) for g in members.values()}
            if len(values) != 1:
                raise ModelError(f"The {display_name} files disagree on {what}: {sorted(values)}.")
        return cls(members=members, name=name, display_name=display_name)

    @property
    def z_dim(self) -> int:
        return next(iter(self.members.values())).z_dim

    @property
    def img_size(self) -> int:
        return next(iter(self.members.values())).img_size

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(label for label in CLASSES if label in self.members)

    @property
    def conditional(self) -> bool:
        return False

    @property
    def directions(self) -> dict[str, Directions]:
        """Each class's directions, from the member that draws it."""
        return {label: g.directions[label] for label, g in self.members.items()}

    @property
    def precision(self) -> str:
        """The members' precision, or ``"mixed"`` when only some run a low-precision copy."""
        values = {g.precision for g in self.members.values()}
        return values.pop() if len(values) == 1 else "mixed"

    def file_sha256(self, label: str) -> str:
        """sha256 of the member file that draws ``label``."""
        return self.members[label].file_sha256(label)

    def generate(self, z: np.ndarray, label: str | Sequence[str]) -> np.ndarray:
        """Generate cells, each from the member of its class. See ``Generator.generate``."""
        z = np.asarray(z, np.float32)
        if z.ndim == 1:
            z = z[None]
        labels = _labels(label, len(z))
        unknown = sorted(set(labels) - set(self.members))
        if unknown:
            raise ValueError(f"{self.display_name} cannot generate {unknown}.")
        out = np.zeros((len(z), self.img_size, self.img_size, 3), np.uint8)
        for cls_name, member in self.members.items():
            rows = [i for i, lab in enumerate(labels) if lab == cls_name]
            if rows:
                out[rows] = member.generate(z[rows], cls_name)
        return out

    def generate_mix(self, z: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
        """Generate cells from one-hot class weights [N, len(classes)], one class per row.

        Raises:
            ValueError: For a row that blends classes: each member draws one class only.
        """
        z = np.asarray(z, np.float32)
        if z.ndim == 1:
            z = z[None]
        weights = np.asarray(class_weights, np.float32).reshape(len(z), len(self.classes))
        if (np.count_nonzero(weights, axis=1) != 1).any():
            raise ValueError(
                f"{self.display_name} has one generator per class, so it cannot blend classes."
            )
        return self.generate(z, [self.classes[i] for i in np.argmax(weights, axis=1)])


DIHEDRAL_VIEWS = 8
# The views averaged for each allowed count: the plain view first, then the flip, then the
# 180-degree turns, so that fewer views still cover opposite orientations. Eight keeps the
# original order, so that its averages are bit for bit those of earlier releases.
VIEW_SETS = {1: (0,), 2: (0, 4), 4: (0, 2, 4, 6), DIHEDRAL_VIEWS: tuple(range(DIHEDRAL_VIEWS))}


def dihedral_view(x: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 flips and 90-degree rotations of an NCHW batch."""
    x = np.rot90(x, k % 4, axes=(2, 3))
    return np.ascontiguousarray(x[..., ::-1] if k >= 4 else x)


def predicted_class(proba_row: np.ndarray, classes: Sequence[str] = CLASSES) -> str:
    """The classifier's verdict on one cell: the class of the largest probability.

    This is the app's one decision rule; with two classes it is P >= 0.5, a tie going to the
    first class.

    Args:
        proba_row: float [len(classes)] probabilities.
        classes: The class of each column.
    """
    return classes[int(np.argmax(proba_row))]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (a row with NaN or infinite logits gives NaN)."""
    shifted = np.asarray(logits, np.float64)
    with np.errstate(invalid="ignore"):
        shifted = shifted - shifted.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class Classifier(ExportedModel):
    """The exported cell classifier: ``predict_proba`` over uint8 NHWC images."""

    kind: ClassVar[str] = "classifier"

    def predict(
        self, images: np.ndarray, *, batch: int = 256, views: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and penultimate features.

        Args:
            images: uint8 [N, img_size, img_size, 3] (or one such image).
            batch: Cells per ONNX Runtime call.
            views: Dihedral views the probabilities average (a key of ``VIEW_SETS``); None
                for the training-time choice (``default_views``). Features always come from
                the plain view.

        Returns:
            ``(proba float32 [N, 2], features float32 [N, F])``. A diverged network's NaN
            outputs become uniform probabilities (no preference), as in training's evaluation.
        """
        x = to_network_input(images, self.meta["pixels"])
        if len(x) == 0:
            dim = int(self.meta.get("feature_dim", 0))
            return np.zeros((0, len(self.classes)), np.float32), np.zeros((0, dim), np.float32)
        ks = VIEW_SETS[self.check_views(views)]
        probas, feats = [], []
        for start in range(0, len(x), batch):
            chunk = x[start : start + batch]
            proba = np.zeros((len(chunk), len(self.classes)), np.float64)
            for k in ks:
                logits, feat = self._run(dihedral_view(chunk, k))
                proba += softmax(logits)
                if k == 0:
                    feats.append(feat)
            probas.append(np.nan_to_num(proba / len(ks), nan=1.0 / len(self.classes)))
        features = np.nan_to_num(np.concatenate(feats).astype(np.float32))
        return np.concatenate(probas).astype(np.float32), features

    def predict_rechecked(
        self,
        images: np.ndarray,
        *,
        views: int | None,
        margin: float,
        column: int = 0,
        threshold: float = 0.5,
        batch: int = 256,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``predict`` over ``views``, and over all 8 views where that verdict is close.

        A cell whose probability of class ``column`` lies within ``margin`` of ``threshold``
        after ``views`` views is classified again over the 8 flips and rotations the
        classifier was trained to average, and takes that average; the others keep the
        fewer views' probabilities. Verdicts far from the line rarely change with more views,
        so this costs little more than ``views`` and agrees with 8 views on nearly every cell
        (``python -m benchmarks.synth_throughput``).

        Args:
            images: uint8 [N, img_size, img_size, 3] (or one such image).
            views: Dihedral views of the first pass (as for ``predict``).
            margin: Half-width of the band around ``threshold``; 0 rechecks nothing.
            column: The class whose probability is compared with ``threshold``.
            threshold: The probability at which the caller's verdict changes.
            batch: Cells per ONNX Runtime call.

        Returns:
            ``(proba float32 [N, 2], features float32 [N, F], views int [N])``: the views
            each cell's probabilities average.
        """
        proba, features = self.predict(images, batch=batch, views=views)
        used = np.full(len(proba), self.check_views(views), np.int64)
        close = np.abs(proba[:, column].astype(np.float64) - threshold) < margin
        close &= used < DIHEDRAL_VIEWS
        if close.any():
            cells = np.asarray(images)
            cells = cells[None] if cells.ndim == 3 else cells
            proba[close] = self.predict(cells[close], batch=batch, views=DIHEDRAL_VIEWS)[0]
            used[close] = DIHEDRAL_VIEWS
        return proba, features, used

    def view_probabilities(self, images: np.ndarray, *, batch: int = 256) -> np.ndarray:
        """float64 [8, N, C] probabilities of each dihedral view, for choosing how many to use.

        Averaging rows ``VIEW_SETS[v]`` in order gives ``predict(images, views=v)``'s
        probabilities.
        """
        x = to_network_input(images, self.meta["pixels"])
        out = np.zeros((DIHEDRAL_VIEWS, len(x), len(self.classes)), np.float64)
        for start in range(0, len(x), batch):
            chunk = x[start : start + batch]
            for k in range(DIHEDRAL_VIEWS):
                out[k, start : start + len(chunk)] = softmax(self._run(dihedral_view(chunk, k))[0])
        return out

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        names = [spec["name"] for spec in self.meta["outputs"]]
        logits, feats = self.session.run(names, {self.meta["inputs"][0]["name"]: x})
        return logits, feats

    @property
    def tta(self) -> bool:
        """Whether probabilities average the 8 flips and rotations (chosen at training time)."""
        return bool(self.meta.get("tta", False))

    @property
    def default_views(self) -> int:
        """Views averaged when a call names none: 8 with test-time augmentation, else 1."""
        return DIHEDRAL_VIEWS if self.tta else 1

    def check_views(self, views: int | None) -> int:
        """``views``, or ``default_views`` for None.

        Raises:
            ValueError: For a count that is not a key of ``VIEW_SETS``.
        """
        views = self.default_views if views is None else int(views)
        if views not in VIEW_SETS:
            raise ValueError(f"views must be one of {sorted(VIEW_SETS)}, got {views}")
        return views

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """float32 [N, 2] class probabilities, columns in ``classes`` order."""
        return self.predict(images)[0]

    def features(self, images: np.ndarray, *, batch: int = 256) -> np.ndarray:
        """float32 [N, F] penultimate features, those ``predict`` returns.

        Features come from the plain view only, so this skips the flipped and rotated views
        that test-time augmentation averages the probabilities over.
        """
        x = to_network_input(images, self.meta["pixels"])
        feats = [self._run(x[start : start + batch])[1] for start in range(0, len(x), batch)]
        if not feats:
            return np.zeros((0, int(self.meta.get("feature_dim", 0))), np.float32)
        return np.nan_to_num(np.concatenate(feats).astype(np.float32))
