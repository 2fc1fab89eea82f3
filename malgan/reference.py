"""The training-set reference: nearest-training-cell distances and out-of-distribution scores."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from malgan.errors import ModelError
from malgan.runtime import sha256_bytes

REFERENCE_KEYS = ("proj_mean", "proj", "train_codes", "ood_mean", "ood_precision")


@dataclass(frozen=True)
class Reference:
    """Training-set summary for privacy filtering and out-of-distribution warnings.

    Classifier features are projected to a small PCA space (``proj``), where the training cells'
    codes give nearest-neighbour distances, and a Gaussian fitted to real features gives a
    Mahalanobis out-of-distribution score.
    """

    proj_mean: np.ndarray
    proj: np.ndarray
    train_codes: np.ndarray
    ood_mean: np.ndarray
    ood_precision: np.ndarray
    privacy_threshold: float
    ood_threshold: float

    @classmethod
    def load(cls, path: str | os.PathLike, *, sha256: str | None = None) -> Reference:
        """Load ``reference.npz`` (arrays only, never pickles), optionally checking its hash."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError:
            raise ModelError(f"The training reference {path} is missing or unreadable.") from None
        if sha256 and sha256_bytes(data) != sha256:
            raise ModelError(
                f"The training reference {path.name} does not match its recorded hash."
            )
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {key: np.asarray(npz[key]) for key in npz.files}
        except Exception as err:  # numpy raises several types for a bad archive
            raise ModelError(f"The training reference {path.name} is corrupt ({err}).") from None
        missing = [
            k for k in (*REFERENCE_KEYS, "privacy_threshold", "ood_threshold") if k not in arrays
        ]
        if missing:
            raise ModelError(f"The training reference {path.name} lacks {missing}.")
        return cls(
            proj_mean=arrays["proj_mean"].astype(np.float32),
            proj=arrays["proj"].astype(np.float32),
            train_codes=arrays["train_codes"].astype(np.float32),
            ood_mean=arrays["ood_mean"].astype(np.float32),
            ood_precision=arrays["ood_precision"].astype(np.float32),
            privacy_threshold=float(arrays["privacy_threshold"]),
            ood_threshold=float(arrays["ood_threshold"]),
        )

    def codes(self, features: np.ndarray) -> np.ndarray:
        """Project classifier features [N, F] to the reference space [N, K]."""
        return (np.asarray(features, np.float32) - self.proj_mean) @ self.proj
