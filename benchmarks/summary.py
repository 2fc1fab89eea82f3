"""Medians of repeated timings, and the small fixed-width tables that the benchmarks print."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from typing import Any


def describe(values: Sequence[float]) -> dict[str, float]:
    """Median, minimum, maximum and count of repeated measurements.

    Args:
        values: One figure per repeat (at least one).

    Returns:
        ``{"median", "min", "max", "n"}``.
    """
    if not values:
        raise ValueError("describe needs at least one value")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def machine() -> str:
    """One line naming the CPU, its core count and the Python version."""
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows under headers: the first column left-aligned, the others right-aligned.

    Floats are shown with two decimals; anything else with ``str``.
    """
    cells = [list(headers)] + [
        [f"{value:.2f}" if isinstance(value, float) else str(value) for value in row]
        for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for k, row in enumerate(cells):
        first = row[0].ljust(widths[0])
        rest = [value.rjust(width) for value, width in zip(row[1:], widths[1:], strict=True)]
        print("  ".join([first, *rest]))
        if k == 0:
            print("  ".join("-" * width for width in widths))
