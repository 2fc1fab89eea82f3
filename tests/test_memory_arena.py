"""Tests of ONNX Runtime's memory arena for batch exports: only sessions made inside
``memory_arena`` keep it, and it changes no output."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from malgan import artifacts, latent, onnx_files
from malgan.data import CLASSES

EXPORTED = Path(__file__).resolve().parents[1] / "exported"


def test_only_sessions_made_inside_keep_the_arena_and_cells_are_the_same() -> None:
    shared = artifacts.load_generator(EXPORTED, "cgan")
    with onnx_files.memory_arena():
        batch = artifacts.load_generator(EXPORTED, "cgan")
    after = artifacts.load_generator(EXPORTED, "cgan")
    assert batch.session.get_session_options().enable_cpu_mem_arena
    assert not shared.session.get_session_options().enable_cpu_mem_arena
    assert not after.session.get_session_options().enable_cpu_mem_arena
    z = latent.sample_z(11, 8, shared.z_dim)
    for _ in range(2):  # the second call reuses the arena's buffers
        np.testing.assert_array_equal(batch.generate(z, CLASSES[1]), shared.generate(z, CLASSES[1]))
