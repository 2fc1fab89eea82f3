"""Reading the NIH malaria cell layout: patient keys, splits, scanning and the array cache."""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from tqdm import tqdm

from malgan.decode import IMAGE_EXTENSIONS, IMG_SIZE, decode_image
from malgan.errors import DataError, ImageDecodeError

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("Parasitized", "Uninfected")
SPLITS: tuple[str, ...] = ("train", "val", "test")

# Bumped whenever decoding or resizing changes, so that old caches are rebuilt.
CACHE_FORMAT = 1
# Zip local file header: signature, versions, flags, sizes, then the name and extra lengths.
_ZIP_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_ZIP_LOCAL_SIGNATURE = b"PK\x03\x04"


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


def _cached_class(
    cls: str, paths: Sequence[Path], size: int, cache: Path, workers: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """One class's (images, names, corrupt-file reports): from its cache while the fingerprint
    matches, else decoded and cached again."""
    fingerprint = _fingerprint(cls, paths, size)
    cache_file = cache / f"{cls}_{size}.npz"
    cached = _read_cache(cache_file, fingerprint, size)
    if cached is None:
        cached = _decode_folder(cls, paths, size, workers, progress)
        _write_cache(cache_file, fingerprint, *cached)
        return cached
    logger.info("Loaded %d %s cells from %s", len(cached[0]), cls, cache_file)
    if cached[2]:
        logger.warning(
            "%d %s images are unreadable (reported when the cache was built)", len(cached[2]), cls
        )
    return cached


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
        images, names, class_corrupt = _cached_class(cls, paths, size, cache, workers, progress)
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
