"""Where the repository and the real data are, and the mark of tests that need the real data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_ROOT = REPO_ROOT.parent / "shared" / "data"
# The real cells, resized to 64x64 (see ../shared/data/README.md); never copied into the repo.
SHARED_DATA = SHARED_ROOT / "cell_images_64"
# 100 + 100 untouched originals at their native sizes.
SHARED_ORIGINALS = SHARED_ROOT / "originals_sample"

requires_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real NIH cells not found at {SHARED_DATA}"
)
