"""Shared test fixtures and hooks only: tiny NIH-layout folders of drawn cells, and the skip of
tests marked ``shared`` without the real data. Helpers live in ``tests.support`` and ``harness``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image

from harness.fakes import draw_fake_cell, write_fake_nih_tree
from tests.support.paths import SHARED_DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips every test marked ``shared`` when the real data folder is absent."""
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real NIH cells not found at {SHARED_DATA}")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def fake_nih_tree(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory of fake NIH folders, each in a fresh temporary directory.

    Call it with the keyword arguments of write_fake_nih_tree (patients=6, cells=4,
    size=(64, 64), junk=True, seed=0 by default); it returns the new root. The default tree holds
    6 patients x 2 classes x 4 cells = 48 PNGs plus two junk files.
    """

    def make(**kwargs: object) -> Path:
        return write_fake_nih_tree(tmp_path_factory.mktemp("nih"), **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def fake_cell() -> Callable[..., Image.Image]:
    """Returns draw_fake_cell, to draw single cells inside a test."""
    return draw_fake_cell


@pytest.fixture
def fresh_caches():
    """Streamlit's caches emptied before and after a page test, so no test sees another's models."""
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()
