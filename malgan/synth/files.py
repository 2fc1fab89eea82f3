"""A synthetic dataset on disk: file names, pseudo-patient keys, its folder, manifest and ZIP."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from malgan import imaging
from malgan.data import CLASSES
from malgan.errors import SynthError

DEFAULT_PREFIX = "SYN"
# Consecutive latent indices that share one pseudo-patient key (see ``cell_file_name``).
CELLS_PER_GROUP = 100
# Longest model or prefix component of a file name; the rest of the name is fixed-length.
MAX_TAG_LEN = 40
# zlib level of the PNGs, fixed so that the bytes do not depend on Pillow's default.
PNG_COMPRESS_LEVEL = 6
# ZIP entries carry this timestamp so that the archive depends on the files only.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

MANIFEST_NAME = "manifest.csv"
SUMMARY_NAME = "summary.json"
DATASHEET_NAME = "DATASHEET.md"
EXPORT_ENTRIES = frozenset({*CLASSES, MANIFEST_NAME, SUMMARY_NAME, DATASHEET_NAME})
MANIFEST_COLUMNS = (
    "file",
    "class",
    "model",
    "model_sha256",
    "seed",
    "latent_index",
    "truncation",
    "p_class",
    "nearest_train_distance",
    "generator_precision",
    "classifier_precision",
    "classifier_views",
)
CLASS_INITIALS = {label: label[0] for label in CLASSES}

_THIN = re.compile("thin", re.IGNORECASE)


# File names.


def name_tag(text: str, *, default: str = "model") -> str:
    """A file-name component that can neither leave its folder nor break the patient key.

    The text is passed through ``imaging.safe_name`` (no separators, no ``..``, no leading dot),
    cut to ``MAX_TAG_LEN`` characters, and every ``thin`` becomes ``th-in``, because
    ``malgan.data.patient_key`` cuts a name at its first ``thin``.

    Args:
        text: A model name, prefix or other free text.
        default: Used when nothing safe is left.

    Returns:
        The component, made of ``[A-Za-z0-9._-]`` only.
    """
    tag = imaging.safe_name(text, default=default)[:MAX_TAG_LEN]
    return _THIN.sub(lambda match: f"{match.group(0)[:2]}-{match.group(0)[2:]}", tag)


def patient_key_of(
    model: str, seed: int, latent_index: int, *, prefix: str = DEFAULT_PREFIX
) -> str:
    """The pseudo-patient key of a synthetic cell, e.g. ``SYN-cgan-s7-g0``.

    Synthetic cells have no patient. They are grouped by model, seed and a block of
    ``CELLS_PER_GROUP`` consecutive latent indices, shared by both classes: the cells a
    conditional model draws from the same latent (one per class) stay in one group, a
    patient-level split of a synthetic set puts both classes in every split, and two exports
    with different seeds or models never share a key.

    Args:
        model: Generator name.
        seed: Latent seed.
        latent_index: Index of the cell's latent.
        prefix: Leading marker of synthetic names (may be empty).

    Returns:
        The key, exactly what ``malgan.data.patient_key`` reads back from the file name.
    """
    parts = [name_tag(prefix, default="")] if name_tag(prefix, default="") else []
    parts += [name_tag(model), f"s{int(seed)}", f"g{int(latent_index) // CELLS_PER_GROUP}"]
    return "-".join(parts)


def cell_file_name(
    model: str, label: str, seed: int, latent_index: int, *, prefix: str = DEFAULT_PREFIX
) -> str:
    """NIH-style file name of a synthetic cell.

    ``<key>ThinF_IMG_<class initial>_cell_<latent index>.png``, e.g.
    ``SYN-cgan-s7-g0ThinF_IMG_P_cell_12.png``, where ``<key>`` is ``patient_key_of``; NIH
    names read ``C100P61ThinF_IMG_20150918_144104_cell_162.png``. The class initial keeps the
    names of both classes distinct when folders are merged.

    Args:
        model: Generator name (made safe with ``name_tag``).
        label: Class name.
        seed: Latent seed.
        latent_index: Index of the cell's latent.
        prefix: Leading marker of synthetic names.

    Returns:
        A bare file name (no folder part).
    """
    key = patient_key_of(model, seed, latent_index, prefix=prefix)
    initial = CLASS_INITIALS.get(label) or name_tag(label, default="X")[:1]
    return f"{key}ThinF_IMG_{initial}_cell_{int(latent_index)}.png"


# Output folder handling.


def _foreign_entries(folder: Path) -> list[str]:
    """Entries of ``folder`` that a malgan export would not have written."""
    foreign = []
    for entry in sorted(folder.iterdir()):
        if entry.name not in EXPORT_ENTRIES:
            foreign.append(entry.name)
        elif entry.name in CLASSES:
            if not entry.is_dir() or entry.is_symlink():
                foreign.append(entry.name)
                continue
            foreign += [
                f"{entry.name}/{f.name}"
                for f in sorted(entry.iterdir())
                if f.suffix.lower() != ".png" or not f.is_file() or f.is_symlink()
            ]
    return foreign


def check_target(out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check that a dataset may be written to ``out_dir``.

    An empty or missing folder is fine. A non-empty one is replaced only with ``overwrite``,
    and only when it holds nothing but a previous export (class folders of PNGs,
    ``manifest.csv``, ``summary.json``), so that no other file can be lost.

    Args:
        out_dir: The dataset folder.
        overwrite: Replace a previous export.

    Returns:
        The absolute folder path.

    Raises:
        SynthError: With the reason the folder cannot be used.
    """
    target = Path(out_dir).expanduser().resolve()
    if target.parent == target:
        raise SynthError(f"Cannot export into {target}: choose a dataset folder.")
    if target.exists() and not target.is_dir():
        raise SynthError(f"{target} exists and is not a folder.")
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise SynthError(
                f"{target} is not empty. Choose a new folder, or pass --overwrite to replace "
                "a previous export there."
            )
        if not (target / MANIFEST_NAME).is_file():
            raise SynthError(
                f"{target} is not empty and holds no {MANIFEST_NAME}, so it is not a previous "
                "export; it is left untouched. Choose another folder."
            )
        foreign = _foreign_entries(target)
        if foreign:
            shown = ", ".join(foreign[:5]) + (" …" if len(foreign) > 5 else "")
            raise SynthError(
                f"{target} holds files that are not part of an export ({shown}); it is left "
                "untouched. Move them away or choose another folder."
            )
    return target


def install(staging: Path, target: Path) -> None:
    """Move a finished staging folder to ``target``, replacing an empty folder or old export."""
    if target.is_dir():
        if any(target.iterdir()):
            retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
            return
        target.rmdir()
    staging.rename(target)


def write_pngs(items: Sequence[tuple[Path, np.ndarray]]) -> None:
    """Write uint8 [H, W, 3] cells as PNGs whose bytes depend on the pixels only."""
    for path, image in items:
        Image.fromarray(image).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``manifest.csv``: a header of ``MANIFEST_COLUMNS``, then one row per cell."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)


def read_manifest(folder: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a dataset's ``manifest.csv``."""
    with (Path(folder) / MANIFEST_NAME).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def zip_folder(folder: str | os.PathLike, *, top: str) -> bytes:
    """A ZIP of a dataset folder under one top folder, e.g. ``top/Parasitized/….png``.

    PNGs are stored (already compressed); other files are deflated. Entries are sorted and
    carry a fixed timestamp, so the archive depends on the files only.

    Args:
        folder: The dataset folder.
        top: Name of the archive's top folder (made safe).

    Returns:
        The archive's bytes.
    """
    root = Path(folder)
    top = imaging.safe_name(top, default="dataset")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            parts = [imaging.safe_name(part) for part in path.relative_to(root).parts]
            info = zipfile.ZipInfo("/".join([top, *parts]), date_time=ZIP_DATE)
            stored = path.suffix.lower() == ".png"
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()
