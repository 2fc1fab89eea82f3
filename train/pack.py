"""Pack a data folder into one tar of lossless WebP cells per class, for moving it to a GPU machine.

Lossless WebP keeps every pixel (parasites are a few pixels wide; lossy chroma subsampling
would blur them) at about a third of the PNG size. File names are kept, with a ``.webp``
extension, so patient keys and splits are unchanged; ``malgan.data`` reads WebP like PNG.

Usage: python -m train.pack --data DIR --out .pack [--classes Parasitized Uninfected]
"""

from __future__ import annotations

import io
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from malgan.data import CLASSES, scan_dataset
from malgan.decode import open_image
from train import config

# WebP encoder effort (0-6): lossless at every level; 4 is several times faster than 6 for a
# few percent more bytes.
WEBP_METHOD = 4


@dataclass(frozen=True)
class PackConfig:
    """Options of the packer."""

    data: str = field(default="", metadata={"help": "Folder in the NIH layout."})
    out: str = field(default=".pack", metadata={"help": "Folder for the per-class tar files."})
    classes: tuple[str, ...] = CLASSES
    workers: int = 0


def webp_lossless(path: Path) -> bytes:
    """The image at ``path`` re-encoded as lossless WebP (RGB, pixels unchanged)."""
    img = open_image(path).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="WEBP", lossless=True, quality=100, method=WEBP_METHOD)
    return buf.getvalue()


def pack_class(files: tuple[Path, ...], label: str, out: Path, workers: int) -> Path:
    """Write ``out/<label>.tar`` holding ``<label>/<name>.webp`` for every file."""
    target = out / f"{label}.tar"
    tmp = target.with_suffix(".tar.tmp")
    with ThreadPoolExecutor(max_workers=workers or None) as pool, tarfile.open(tmp, "w") as tar:
        encoded = pool.map(webp_lossless, files)
        for path, data in tqdm(zip(files, encoded, strict=True), total=len(files), desc=label):
            info = tarfile.TarInfo(f"{label}/{path.stem}.webp")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(target)
    return target


def verify_lossless(path: Path, sample: Path) -> None:
    """Check that one packed cell decodes to exactly the original pixels."""
    with tarfile.open(path) as tar:
        member = next(m for m in tar.getmembers() if Path(m.name).stem == sample.stem)
        packed = np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB"))
    original = np.asarray(open_image(sample).convert("RGB"))
    if not np.array_equal(packed, original):
        raise ValueError(f"{sample.name} changed when packed; the pack is not lossless.")


def main(argv: list[str] | None = None) -> None:
    cfg = config.parse_config(PackConfig, argv)
    scan = scan_dataset(cfg.data)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for label in cfg.classes:
        files = scan.files[label]
        target = pack_class(files, label, out, cfg.workers)
        verify_lossless(target, files[0])
        print(f"{target}: {len(files)} cells, {target.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    config.run_cli(main)
