"""Reading the NIH malaria cell layout: decoding, patient keys, splits and the array cache."""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import os
import re
import struct
import tempfile
import threading
import tomllib
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import PIL
from PIL import Image, ImageOps
from tqdm import tqdm

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("Parasitized", "Uninfected")
IMG_SIZE = 64
MAX_PIXELS = 50_000_000
SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}
)

# Bumped whenever decoding or resizing changes, so that old caches are rebuilt.
CACHE_FORMAT = 1
# Rows of a 16/32-bit image scaled to 8 bits at a time (bounds the float64 working copy).
SCALE_CHUNK_ROWS = 256
# Bytes inspected to tell text from binary data.
TEXT_SNIFF_BYTES = 1024
# Share of control characters above which a UTF-8 sample is not considered text.
TEXT_MAX_CONTROL_SHARE = 0.05

# Zip local file header: signature, versions, flags, sizes, then the name and extra lengths.
_ZIP_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_ZIP_LOCAL_SIGNATURE = b"PK\x03\x04"
_PDF_MAGIC = b"%PDF"
# Signatures long enough not to occur at the start of a text file (so not BMP's "BM").
_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
_BOMB_LIMIT = re.compile(r"limit of (\d+) pixels")
# The pixel limit in an app's Streamlit config file, e.g. "# malgan.maxPixels = 50_000_000".
_CONFIG_MAX_PIXELS = re.compile(r"^[ \t]*#[ \t]*malgan\.maxPixels[ \t]*=(.*)$", re.MULTILINE)
_TEXT_CONTROLS_ALLOWED = frozenset("\t\n\r\f\v")
_OPEN_LOCK = threading.Lock()
# Exceptions Pillow raises for bad input; none of them may escape open_image.
_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, TypeError, IndexError, struct.error, EOFError)


class DataError(ValueError):
    """A dataset or image that cannot be used; the message names the path."""


class ImageDecodeError(DataError):
    """An image file that cannot be decoded.

    Attributes:
        name: The file name (or the name given for bytes and file objects).
        reason: Why it cannot be used, e.g. ``"is truncated"``.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason

    def __reduce__(self) -> tuple[type[ImageDecodeError], tuple[str, str]]:
        # Keeps the error picklable across worker processes despite the two-argument constructor.
        return type(self), (self.name, self.reason)


# Patient keys and splits.


def patient_key(filename: str | os.PathLike[str]) -> str:
    """Returns the slide/patient key of an NIH cell file name.

    The key is everything before ``thin`` (case-insensitive) with trailing underscores dropped,
    e.g. ``C100P61ThinF_IMG_20150918_144104_cell_162.png`` -> ``C100P61`` and
    ``C1_thinF_IMG_...`` -> ``C1``. A name without ``thin`` (or with nothing before it) uses the
    stem up to its first ``_`` instead, or the whole stem when that is empty. Any folder part of the
    path is ignored.

    Args:
        filename: A file name or path.

    Returns:
        The patient key.
    """
    # String operations rather than pathlib: this runs once per cell on every load.
    name = os.fspath(filename).replace("\\", "/").rpartition("/")[2]
    at = name.lower().find("thin")
    if at > 0:
        key = name[:at].rstrip("_")
        if key:
            return key
    stem = os.path.splitext(name)[0]
    return stem.split("_", 1)[0] or stem


def _split_counts(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Share n keys among the splits by largest remainder, keeping one per nonzero split."""
    exact = [n * f for f in fractions]
    counts = [int(e) for e in exact]
    by_remainder = sorted(range(len(counts)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(wanted):
        for i in wanted:
            if counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts


def split_patients(
    keys: Iterable[str],
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, str]:
    """Assigns each patient key to ``"train"``, ``"val"`` or ``"test"``.

    The unique keys are sorted, permuted with ``np.random.default_rng(seed)`` and cut by the
    fractions (largest-remainder rounding), so the result depends only on the set of keys, the
    fractions and the seed. Every split with a nonzero fraction gets at least one key when there
    are enough keys (three for the default fractions); a zero fraction gives an empty split.

    Args:
        keys: Patient keys; repeats are ignored.
        fractions: Shares of (train, val, test); non-negative, summing to 1.
        seed: Seed of the permutation.

    Returns:
        A dict from every unique key to its split name.

    Raises:
        ValueError: If the fractions are not three non-negative numbers summing to 1.
    """
    shares = tuple(float(f) for f in fractions)
    if len(shares) != len(SPLITS) or any(not np.isfinite(f) or f < 0 for f in shares):
        raise ValueError(f"fractions must be three non-negative numbers, got {tuple(fractions)}")
    if not np.isclose(sum(shares), 1.0):
        raise ValueError(f"fractions must sum to 1, got {tuple(fractions)} (sum {sum(shares)})")
    unique = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(unique))
    counts = _split_counts(len(unique), shares)
    names = np.repeat(np.array(SPLITS), counts)
    return {unique[j]: str(names[i]) for i, j in enumerate(order)}


# Decoding.


def _looks_like_text(data: bytes) -> bool:
    sample = data[:TEXT_SNIFF_BYTES]
    if b"\x00" in sample:
        return False
    try:
        # An incremental decoder tolerates a multi-byte character cut at the end of the sample.
        text = codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    controls = sum(1 for c in text if ord(c) < 32 and c not in _TEXT_CONTROLS_ALLOWED)
    return controls <= TEXT_MAX_CONTROL_SHARE * max(len(text), 1)


def _image_signature(data: bytes) -> str | None:
    for magic, kind in _IMAGE_MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _source_label(source: object, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    if isinstance(source, str | os.PathLike):
        return str(Path(source))
    return str(getattr(source, "name", "<file object>"))


def _read_source(
    source: str | os.PathLike[str] | bytes | BinaryIO, name: str | None
) -> tuple[bytes, str]:
    label = _source_label(source, name)
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), label
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            return path.read_bytes(), label
        except FileNotFoundError:
            raise ImageDecodeError(label, "does not exist") from None
        except IsADirectoryError:
            raise ImageDecodeError(label, "is a folder, not an image file") from None
        except OSError as err:
            raise ImageDecodeError(label, f"cannot be read ({err.strerror or err})") from None
    try:
        data = source.read()
    except OSError as err:
        raise ImageDecodeError(label, f"cannot be read ({err})") from None
    if not isinstance(data, bytes | bytearray):
        raise ImageDecodeError(label, "is not a binary file object (open it with 'rb')")
    return bytes(data), label


def _bomb_reason(message: str, max_pixels: int) -> str:
    pixels = _BOMB_PIXELS.search(message)
    limit = _BOMB_LIMIT.search(message)
    if pixels is None:
        return "has too many pixels (possible decompression bomb)"
    n = int(pixels.group(1))
    allowed = min(max_pixels, int(limit.group(1))) if limit else max_pixels
    return f"has {n} pixels, over the limit of {allowed} (possible decompression bomb)"


def _pillow_reason(err: BaseException) -> str:
    detail = str(err).strip() or type(err).__name__
    lowered = detail.lower()
    if isinstance(err, EOFError) or "truncated" in lowered:
        return "is truncated"
    if "not available" in lowered or "not supported" in lowered or "unsupported" in lowered:
        return f"uses an unsupported format or encoding ({detail})"
    return f"is corrupt ({detail})"


def open_image(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Opens an image and loads its pixels, turning every failure into an ImageDecodeError.

    Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) still applies, so the
    effective limit is the smaller of the two.

    Args:
        source: A path, the file's bytes, or a binary file object (read to its end).
        name: Name used in error messages; defaults to the path or the file object's name.
        max_pixels: Largest width * height accepted, checked before the pixels are decoded.

    Returns:
        The loaded image (first frame current for multi-frame files).

    Raises:
        ImageDecodeError: With a message naming the file and the reason: empty file, PDF, text or
            another non-image, truncated, corrupt, too many pixels, or unsupported encoding.
    """
    data, label = _read_source(source, name)
    if not data:
        raise ImageDecodeError(label, "empty file")
    if data.startswith(_PDF_MAGIC):
        raise ImageDecodeError(label, "is a PDF document, not an image")
    try:
        # The warning filters are process-wide: the lock keeps concurrent opens from restoring
        # each other's filters. Only the header is parsed here, so the lock is held briefly.
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        pixels = img.size[0] * img.size[1]
        if pixels > max_pixels:
            raise ImageDecodeError(
                label,
                f"has {pixels} pixels, over the limit of {max_pixels} "
                "(possible decompression bomb)",
            )
        img.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(label, _bomb_reason(str(err), max_pixels)) from None
    except PIL.UnidentifiedImageError:
        kind = _image_signature(data)
        if kind is not None:
            reason = f"is corrupt (a {kind} file whose header cannot be read, possibly truncated)"
        elif _looks_like_text(data):
            reason = "is not an image Pillow can read (looks like text)"
        else:
            reason = "is not an image Pillow can read (unknown format)"
        raise ImageDecodeError(label, reason) from None
    except _PILLOW_ERRORS as err:
        raise ImageDecodeError(label, _pillow_reason(err)) from None
    return img


def _scaled_to_8bit(img: Image.Image) -> Image.Image:
    """Scales a 16/32-bit integer or float image by its own min..max range to mode L.

    A constant (or all non-finite) image has no range to scale and becomes black, the NIH
    background. The float64 arithmetic runs over SCALE_CHUNK_ROWS rows at a time, so a large
    image costs its own array and the 8-bit result, not several float64 copies of itself.
    """
    values = np.asarray(img)  # [H, W] in the image's own integer or float type
    finite = np.isfinite(values) if values.dtype.kind == "f" else None
    out = np.zeros(values.shape, dtype=np.uint8)
    if finite is not None and not finite.any():
        return Image.fromarray(out, mode="L")
    low = float(values.min(where=finite, initial=np.inf) if finite is not None else values.min())
    high = float(values.max(where=finite, initial=-np.inf) if finite is not None else values.max())
    if high > low:
        gain = 255.0 / (high - low)
        for start in range(0, len(values), SCALE_CHUNK_ROWS):
            rows = slice(start, start + SCALE_CHUNK_ROWS)
            scaled = (values[rows].astype(np.float64) - low) * gain
            if finite is not None:
                scaled[~finite[rows]] = 0.0
            out[rows] = np.rint(scaled)
    return Image.fromarray(out, mode="L")


def _composited_on_black(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        return _scaled_to_8bit(img).convert("RGB")
    if mode == "La":
        # Pillow has no La -> RGBA path; La is LA with premultiplied alpha, already on black.
        return img.getchannel("L").convert("RGB")
    # A tRNS colour (P, L, RGB) is transparency too.
    if "A" in mode or "a" in mode or "transparency" in img.info:
        return _composited_on_black(img)
    return img if mode == "RGB" else img.convert("RGB")


def prepare_image(img: Image.Image, *, size: int = IMG_SIZE) -> np.ndarray:
    """Turns any Pillow image into the uint8 RGB array every part of malgan uses.

    Steps: first frame of a multi-frame image; EXIF orientation; conversion to RGB (16/32-bit
    integer and float images are scaled by their own value range, a constant one becomes black;
    transparency is composited on black, the NIH background; CMYK, YCbCr, 1-bit, L and palette
    images are converted); then a plain bicubic resize (antialiased when shrinking, no padding:
    NIH cells are roughly square) to ``size`` x ``size``.

    Args:
        img: A loaded Pillow image, e.g. from open_image.
        size: Side of the output in pixels.

    Returns:
        A C-contiguous uint8 array of shape [size, size, 3].

    Raises:
        ValueError: If size is not a positive integer.
        ImageDecodeError: If the first frame cannot be read or the mode cannot be converted.
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    label = str(getattr(img, "filename", "") or "<image>")
    try:
        # tell() rather than n_frames: counting the frames of a GIF means reading all of them.
        if img.tell() != 0:
            img.seek(0)
        img.load()
    except _PILLOW_ERRORS as err:
        raise ImageDecodeError(label, _pillow_reason(err)) from None
    try:
        oriented = ImageOps.exif_transpose(img)
    except _PILLOW_ERRORS as err:
        # A malformed EXIF block should not cost the pixels; the image is used as stored.
        logger.warning("Ignoring unreadable EXIF orientation of %s: %s", label, err)
        oriented = img
    try:
        rgb = _to_rgb(oriented)
    except _PILLOW_ERRORS as err:
        raise ImageDecodeError(label, f"has an unsupported pixel mode {img.mode} ({err})") from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    out = np.array(rgb, dtype=np.uint8, order="C")
    return out.reshape(size, size, 3)


def decode_image(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    name: str | None = None,
    size: int = IMG_SIZE,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Opens and prepares one image (open_image followed by prepare_image).

    Args:
        source: A path, the file's bytes, or a binary file object.
        name: Name used in error messages.
        size: Side of the output in pixels.
        max_pixels: Largest width * height accepted.

    Returns:
        uint8 [size, size, 3] RGB.

    Raises:
        ImageDecodeError: If the image cannot be decoded or converted.
    """
    with open_image(source, name=name, max_pixels=max_pixels) as img:
        try:
            return prepare_image(img, size=size)
        except ImageDecodeError as err:
            raise ImageDecodeError(_source_label(source, name), err.reason) from None


def max_pixels_from_config(path: str | os.PathLike[str], *, default: int = MAX_PIXELS) -> int:
    """Reads a decoding pixel limit from a Streamlit config file.

    The limit is the line ``# malgan.maxPixels = <integer>`` (TOML integer syntax, so
    ``50_000_000`` works). It is a comment because Streamlit logs a warning at every start for
    options it does not define, a ``[malgan]`` table included; as a comment it sits next to
    ``server.maxUploadSize`` without Streamlit reading it.

    Args:
        path: The config file, e.g. the app's ``.streamlit/config.toml``.
        default: The limit when the file or the line is absent.

    Returns:
        The largest width * height to decode, for open_image and decode_image.

    Raises:
        DataError: If the file cannot be read, the line appears more than once, or its value is
            not a positive integer at most Pillow's own guard (``PIL.Image.MAX_IMAGE_PIXELS``),
            which applies whatever the setting.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"Config file {path} cannot be read ({err})") from None
    found = _CONFIG_MAX_PIXELS.findall(text)
    if not found:
        return default
    if len(found) > 1:
        raise DataError(f"{path} sets malgan.maxPixels {len(found)} times; keep one line")
    raw = found[0].strip()
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{path}: malgan.maxPixels must be a positive integer, got {raw!r}")
    guard = Image.MAX_IMAGE_PIXELS
    if guard is not None and value > guard:
        raise DataError(
            f"{path}: malgan.maxPixels = {value} is above Pillow's decompression-bomb guard of "
            f"{guard} pixels, which would still apply; use at most {guard}"
        )
    return value


# Dataset layout.


@dataclass(frozen=True)
class DatasetScan:
    """The image files of an NIH-layout folder.

    Attributes:
        root: The dataset folder.
        files: Per class name, its image files sorted by name.
        skipped: Non-image entries of the class folders (``Thumbs.db``, ``.DS_Store``, ``*.txt``,
            macOS ``._*`` companions, subfolders) as ``"<Class>/<name>"``, sorted.
    """

    root: Path
    files: dict[str, tuple[Path, ...]]
    skipped: tuple[str, ...]

    def count(self) -> int:
        """Returns the number of image files over all classes."""
        return sum(len(paths) for paths in self.files.values())


def _is_image_entry(entry: os.DirEntry[str]) -> bool:
    # Names starting with a dot are hidden files; "._x.png" are macOS resource forks, not PNGs.
    if entry.name.startswith("."):
        return False
    return os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file()


def scan_dataset(root: str | os.PathLike[str]) -> DatasetScan:
    """Lists the image files of an NIH-layout folder (``root/Parasitized``, ``root/Uninfected``).

    Image files are those with an extension Pillow can open (png, jpg, jpeg, tif, tiff, bmp,
    webp, gif), case-insensitive and not hidden. Subfolders are not searched.

    Args:
        root: The folder holding one subfolder per class.

    Returns:
        The scan.

    Raises:
        DataError: If root or a class folder is missing, or a class folder holds no image files.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"Dataset folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"Dataset folder {root} is not a folder")
    files: dict[str, tuple[Path, ...]] = {}
    skipped: list[str] = []
    for cls in CLASSES:
        folder = root / cls
        if not folder.is_dir():
            found = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise DataError(
                f"Class folder {folder} is missing; {root} must hold one folder per class "
                f"{list(CLASSES)} (found {found})"
            )
        images: list[tuple[str, Path]] = []
        with os.scandir(folder) as entries:
            for entry in entries:
                if _is_image_entry(entry):
                    images.append((entry.name, Path(entry.path)))
                else:
                    skipped.append(f"{cls}/{entry.name}")
        if not images:
            raise DataError(f"Class folder {folder} holds no image files")
        files[cls] = tuple(path for _, path in sorted(images))
    return DatasetScan(root=root, files=files, skipped=tuple(sorted(skipped)))


# Cell sets.


@dataclass(frozen=True, eq=False)
class CellSet:
    """Decoded cells with their labels.

    Attributes:
        images: uint8 [N, size, size, 3] RGB.
        labels: int64 [N], index into CLASSES.
        keys: [N] str, patient key of each cell.
        names: [N] str, file name of each cell.
    """

    images: np.ndarray
    labels: np.ndarray
    keys: np.ndarray
    names: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 [N, H, W, 3], got {self.images.dtype} {self.images.shape}"
            )
        for field in ("labels", "keys", "names"):
            if len(getattr(self, field)) != n:
                raise ValueError(f"{field} has {len(getattr(self, field))} entries for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray | Sequence[int] | Sequence[bool] | slice) -> CellSet:
        """Returns the cells selected by a boolean mask, an index array or a slice."""
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == bool and index.shape != (len(self),):
                raise ValueError(f"mask has shape {index.shape}, expected ({len(self)},)")
        return CellSet(
            images=self.images[index],
            labels=self.labels[index],
            keys=self.keys[index],
            names=self.names[index],
        )

    def class_counts(self) -> dict[str, int]:
        """Returns the number of cells of each class, in CLASSES order."""
        counts = np.bincount(self.labels, minlength=len(CLASSES))
        return {cls: int(counts[i]) for i, cls in enumerate(CLASSES)}


@dataclass(frozen=True, eq=False)
class LoadedDataset:
    """All readable cells of a dataset folder with its patient split.

    Attributes:
        cells: Every readable cell, classes in CLASSES order, files sorted by name.
        corrupt: ``"<Class>/<name>: <reason>"`` for each file that could not be decoded.
        skipped: Non-image entries of the class folders (see DatasetScan).
        split_of: Patient key -> ``"train"``, ``"val"`` or ``"test"``.
    """

    cells: CellSet
    corrupt: tuple[str, ...]
    skipped: tuple[str, ...]
    split_of: dict[str, str]

    def split(self, name: str) -> CellSet:
        """Returns the cells of the patients in one split.

        Args:
            name: ``"train"``, ``"val"`` or ``"test"``.

        Raises:
            ValueError: For another name.
        """
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        unique, inverse = np.unique(self.cells.keys, return_inverse=True)
        in_split = np.array([self.split_of.get(str(key)) == name for key in unique], dtype=bool)
        return self.cells.subset(in_split[inverse.reshape(-1)])


# Loading and caching.


def default_cache_dir(root: str | os.PathLike[str]) -> Path:
    """Returns ``$XDG_CACHE_HOME/malgan/<sha1 of the resolved root>`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()
    return Path(base) / "malgan" / digest


def _fingerprint(cls: str, paths: Sequence[Path], size: int) -> str:
    digest = hashlib.sha1()
    digest.update(f"{CACHE_FORMAT}|{PIL.__version__}|{size}|{cls}\n".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _map_stored_array(path: Path, member: str) -> np.ndarray:
    """Memory-maps one uncompressed array of an .npz file, read-only.

    Mapping the stored bytes lets a cache load copy each image once (into the concatenated
    result) instead of reading it into a temporary array first.
    """
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{member}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{member} is compressed")
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(_ZIP_LOCAL_HEADER.size)
        signature, *_, name_len, extra_len = _ZIP_LOCAL_HEADER.unpack(local)
        if signature != _ZIP_LOCAL_SIGNATURE:
            raise ValueError(f"{member} has a broken zip entry")
        start = info.header_offset + _ZIP_LOCAL_HEADER.size + name_len + extra_len
        fh.seek(start)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"{member} uses .npy format {version}")
        offset = fh.tell()
    if fortran_order or dtype.hasobject:
        raise ValueError(f"{member} is not a C-ordered plain array")
    if offset - start + int(np.prod(shape)) * dtype.itemsize != info.file_size:
        raise ValueError(f"{member} has {info.file_size} bytes, not matching its header")
    if 0 in shape:
        return np.empty(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def _read_cache(
    path: Path, fingerprint: str, size: int
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            if str(cached["fingerprint"]) != fingerprint:
                logger.info("Cache %s is stale; rebuilding", path)
                return None
            names = cached["names"]
            corrupt = tuple(str(c) for c in cached["corrupt"])
        images = _map_stored_array(path, "images")
    except (OSError, ValueError, KeyError, EOFError, struct.error, zipfile.BadZipFile) as err:
        logger.warning("Ignoring unreadable cache %s (%s); rebuilding", path, err)
        return None
    if images.dtype != np.uint8 or images.shape[1:] != (size, size, 3) or len(names) != len(images):
        logger.warning("Ignoring cache %s with unexpected contents; rebuilding", path)
        return None
    return images, names, corrupt


def _write_cache(
    path: Path, fingerprint: str, images: np.ndarray, names: np.ndarray, corrupt: Sequence[str]
) -> None:
    """Writes the cache atomically; a cache that cannot be written only costs speed next time."""
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp", delete=False
        ) as tmp:
            tmp_name = tmp.name
            np.savez(
                tmp,
                images=images,
                names=names,
                corrupt=np.array(corrupt, dtype=str),
                fingerprint=np.array(fingerprint),
            )
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as err:
        logger.warning("Could not write the cache %s: %s", path, err)
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)


def _decode_folder(
    cls: str, paths: Sequence[Path], size: int, workers: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    def decode(path: Path) -> np.ndarray | ImageDecodeError:
        try:
            return decode_image(path, name=f"{cls}/{path.name}", size=size)
        except ImageDecodeError as err:
            return err

    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    readable = np.zeros(len(paths), dtype=bool)
    corrupt: list[str] = []
    bar = tqdm(total=len(paths), desc=f"Decoding {cls}", unit="img", disable=not progress)
    with bar, ThreadPoolExecutor(max_workers=workers) as pool:
        for i, result in enumerate(pool.map(decode, paths)):
            if isinstance(result, ImageDecodeError):
                logger.warning("Skipping unreadable image %s", result)
                corrupt.append(str(result))
            else:
                images[i] = result
                readable[i] = True
            bar.update()
    names = np.array([path.name for path in paths], dtype=str)
    return images[readable], names[readable], tuple(corrupt)


def load_dataset(
    root: str | os.PathLike[str],
    *,
    size: int = IMG_SIZE,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    progress: bool = True,
    workers: int | None = None,
) -> LoadedDataset:
    """Decodes every cell of an NIH-layout folder, using and refreshing a per-class cache.

    Each class is cached as ``<cache_dir>/<Class>_<size>.npz`` (uncompressed: images, names,
    corrupt-file reports and a fingerprint of the file names, sizes and modification times, the
    size and the decoder version). A class whose fingerprint changed is decoded again with a
    thread pool. Nothing is ever written under root, so read-only data folders work.

    The patient split is computed from the keys of all image files found, readable or not, so
    that a file turning unreadable does not move other patients between splits.

    Args:
        root: Folder with one subfolder per class.
        size: Side of the decoded cells in pixels.
        cache_dir: Where the cache lives; default_cache_dir(root) when None.
        seed: Seed of the patient split.
        fractions: Shares of (train, val, test) patients.
        progress: Show a tqdm progress bar while decoding.
        workers: Decoding threads; os.cpu_count() when None.

    Returns:
        The loaded dataset.

    Raises:
        DataError: If the layout is wrong (see scan_dataset) or no image of a class decodes.
    """
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    scan = scan_dataset(root)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(scan.root)
    key_of = {p.name: patient_key(p.name) for paths in scan.files.values() for p in paths}
    split_of = split_patients(key_of.values(), fractions=fractions, seed=seed)

    per_class: list[tuple[np.ndarray, np.ndarray]] = []
    corrupt: list[str] = []
    for cls in CLASSES:
        paths = scan.files[cls]
        fingerprint = _fingerprint(cls, paths, size)
        cache_file = cache / f"{cls}_{size}.npz"
        cached = _read_cache(cache_file, fingerprint, size)
        if cached is None:
            cached = _decode_folder(cls, paths, size, workers, progress)
            _write_cache(cache_file, fingerprint, *cached)
        else:
            logger.info("Loaded %d %s cells from %s", len(cached[0]), cls, cache_file)
            if cached[2]:
                logger.warning(
                    "%d %s images are unreadable (reported when the cache was built)",
                    len(cached[2]),
                    cls,
                )
        images, names, class_corrupt = cached
        if len(images) == 0:
            raise DataError(
                f"all {len(paths)} images in {scan.root / cls} are unreadable "
                f"(first: {class_corrupt[0] if class_corrupt else 'unknown'})"
            )
        per_class.append((images, names))
        corrupt.extend(class_corrupt)

    # Copies the memory-mapped caches into one array owned by the result.
    images = np.concatenate([images for images, _ in per_class])
    names = np.concatenate([names for _, names in per_class])
    labels = np.concatenate(
        [np.full(len(imgs), i, dtype=np.int64) for i, (imgs, _) in enumerate(per_class)]
    )
    keys = np.array([key_of[name] for name in names.tolist()], dtype=str)
    cells = CellSet(images=images, labels=labels, keys=keys, names=names)
    return LoadedDataset(
        cells=cells, corrupt=tuple(corrupt), skipped=scan.skipped, split_of=split_of
    )
