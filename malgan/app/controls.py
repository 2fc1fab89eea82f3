"""Page controls whose values live in the URL, so that a view can be shared; seeds and the
truncation slider."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import streamlit as st

T = TypeVar("T")
# Seeds run from 0 to this (the largest 32-bit signed integer, short in a URL).
MAX_SEED = 2**31 - 1
# Truncation sliders (BigGAN threshold): their top stop, shown as "off", means no truncation.
TRUNCATION_MIN = 0.5
TRUNCATION_OFF = 3.0
TRUNCATION_STEP = 0.1
TRUNCATION_STOPS = tuple(
    round(TRUNCATION_MIN + i * TRUNCATION_STEP, 1)
    for i in range(round((TRUNCATION_OFF - TRUNCATION_MIN) / TRUNCATION_STEP) + 1)
)
TRUNCATION_OFF_WORD = "off"
TRUNCATION_HELP = (
    "BigGAN truncation threshold: latent entries beyond ±t are redrawn, so lower values give "
    "more typical, less varied cells. Values above about 2.5 change almost nothing; "
    f"“{TRUNCATION_OFF_WORD}” (the default, at the right end) means no truncation."
)


# URL state: every control can live in the query string so a view can be shared.
def url_value(key: str, default: T, parse: Callable[[str], T]) -> T:
    """Seed ``st.session_state[key]`` from the URL once, then return the session value.

    A value in the URL that does not parse falls back to ``default``.
    """
    if key not in st.session_state:
        raw = st.query_params.get(key)
        value = default
        if raw is not None:
            try:
                value = parse(raw)
            except (TypeError, ValueError):
                value = default
        st.session_state[key] = value
    return st.session_state[key]


def url_int(key: str, default: int, lo: int, hi: int) -> int:
    """An integer control's initial value from the URL, clamped to [lo, hi]."""
    return url_value(key, default, lambda s: min(hi, max(lo, int(s))))


def url_float(key: str, default: float, lo: float, hi: float) -> float:
    """A float control's initial value from the URL, clamped to [lo, hi]."""

    def parse(s: str) -> float:
        value = float(s)
        if not np.isfinite(value):
            raise ValueError(s)
        return min(hi, max(lo, value))

    return url_value(key, default, parse)


def url_choice(key: str, default: str, choices: list[str] | tuple[str, ...]) -> str:
    """A choice control's initial value from the URL, if it is one of ``choices``."""

    def parse(s: str) -> str:
        if s not in choices:
            raise ValueError(s)
        return s

    return url_value(key, default if default in choices else choices[0], parse)


def sync_url(*keys: str) -> None:
    """Write the current values of these session keys to the URL."""
    for key in keys:
        if key in st.session_state:
            value = st.session_state[key]
            st.query_params[key] = f"{value:g}" if isinstance(value, float) else str(value)


def new_seed() -> int:
    """A fresh random seed in [0, MAX_SEED]."""
    return int(np.random.default_rng().integers(0, MAX_SEED, endpoint=True))


def randomise_seed(key: str) -> None:
    """Widget callback: put a fresh seed in ``st.session_state[key]``."""
    st.session_state[key] = new_seed()


def seed_input(
    key: str,
    where: Any = st,
    *,
    label: str = "Seed",
    help: str | None = None,
    on_change: Callable[[], None] | None = None,
) -> int:
    """The seed control: a whole number in [0, MAX_SEED] kept in ``st.session_state[key]``.

    Args:
        key: The widget's session key (seed it from the URL first with ``url_int``).
        where: The container of the input (``st``, a column, ...).
        label: The input's label.
        help: Its tooltip.
        on_change: A callback when the seed changes.

    Returns:
        The chosen seed.
    """
    value = where.number_input(
        label, min_value=0, max_value=MAX_SEED, step=1, key=key, help=help, on_change=on_change
    )
    return int(value)


# Words a URL may spell a boolean control with.
TRUE_WORDS = ("true", "1", "on", "yes")
FALSE_WORDS = ("false", "0", "off", "no")


def parse_flag(text: str) -> bool:
    """A boolean from its URL spelling ("True"/"False", "1"/"0", "on"/"off")."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(text)


def truncation_value(slider: float) -> float | None:
    """The truncation a slider position stands for (None at its top: no truncation)."""
    return None if slider >= TRUNCATION_OFF else round(float(slider), 2)


def truncation_label(stop: float) -> str:
    """How a truncation stop reads on its slider: "±1.5", or "off" at the top."""
    return TRUNCATION_OFF_WORD if stop >= TRUNCATION_OFF else f"±{stop:.1f}"


def _truncation_stop(text: str) -> float:
    """The slider stop of a URL value: "off", or the stop nearest a number."""
    if text.strip().lower() == TRUNCATION_OFF_WORD:
        return TRUNCATION_OFF
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(text)
    return min(TRUNCATION_STOPS, key=lambda stop: abs(stop - value))


def truncation_slider(key: str, where: Any = st) -> float | None:
    """The truncation control: a slider of thresholds whose top stop reads "off".

    Seeds ``st.session_state[key]`` from the URL ("off" or a number, snapped to a stop).

    Args:
        key: The widget and URL key.
        where: The container of the slider (``st``, a column, ...).

    Returns:
        The chosen threshold, or None for no truncation.
    """
    url_value(key, TRUNCATION_OFF, _truncation_stop)
    if st.session_state[key] not in TRUNCATION_STOPS:
        st.session_state[key] = _truncation_stop(str(st.session_state[key]))
    where.select_slider(
        "Truncation",
        options=TRUNCATION_STOPS,
        format_func=truncation_label,
        key=key,
        help=TRUNCATION_HELP,
    )
    return truncation_value(st.session_state[key])
