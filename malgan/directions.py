"""Edit directions in a generator's latent space, as its sidecar ships them (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Directions:
    """The edit directions in z for the cells of one class.

    Attributes:
        principal: float32 [k, z_dim] unit rows (GANSpace), strongest first; k may be 0.
        sigmas: float32 [k] standard deviation of z along each principal row.
        infection: float32 [z_dim] unit vector (InterFaceGAN) that raises P(parasitized), or
            None when the model ships none for the class.
    """

    principal: np.ndarray
    sigmas: np.ndarray
    infection: np.ndarray | None

    @property
    def count(self) -> int:
        """Number of principal directions."""
        return len(self.principal)

    def strongest(self, limit: int) -> Directions:
        """The same directions with at most ``limit`` principal rows."""
        return Directions(self.principal[:limit], self.sigmas[:limit], self.infection)

    @classmethod
    def from_sidecar(cls, raw: dict[str, Any], label: str, z_dim: int) -> Directions:
        """The directions of one class from a sidecar's ``directions`` entry.

        Args:
            raw: ``{"principal": [k, z_dim], "sigmas": [k], "infection": {class: [z_dim]}}``,
                any part of which may be missing.
            label: The class.
            z_dim: Latent size; rows of another length are left out.

        Returns:
            The class's directions: as many principal rows as sigmas, and an infection vector
            only when it is finite, non-zero and of length z_dim.
        """
        principal = np.asarray(raw.get("principal", []), np.float32)
        sigmas = np.asarray(raw.get("sigmas", []), np.float32).reshape(-1)
        if principal.ndim != 2 or principal.shape[1] != z_dim:
            principal = np.zeros((0, z_dim), np.float32)
        count = min(len(principal), len(sigmas))
        infection = (raw.get("infection") or {}).get(label)
        if infection is not None:
            infection = np.asarray(infection, np.float32)
            usable = infection.shape == (z_dim,) and np.isfinite(infection).all()
            infection = infection if usable and infection.any() else None
        return cls(principal=principal[:count], sigmas=sigmas[:count], infection=infection)
