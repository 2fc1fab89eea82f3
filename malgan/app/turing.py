"""The "Real or synthetic?" page's Streamlit side: its cached cells, round state and answer keys."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from malgan import latent, real_sample, tables, turing
from malgan.app.loading import cached_generator
from malgan.errors import ModelError

STATE_KEY = "ros_round"
# The answer buttons: label and keyboard key (Streamlit's own button shortcuts, which it shows
# on the button; R and C are reserved by Streamlit).
ANSWER_KEYS = {turing.REAL: "Left", turing.SYNTHETIC: "Right"}
ANSWER_LABELS = {turing.REAL: "Real", turing.SYNTHETIC: "Synthetic"}
ANSWER_ARROWS = {"Left": "←", "Right": "→"}
BUTTON_KEY = "ros_answer_{}"
# Height and type size of the two answer buttons.
BUTTON_STYLE = "min-height: 4.5rem"
LABEL_STYLE = "font-size: 1.5rem"


@st.cache_resource(show_spinner="Loading the real cells…")
def cached_real_sample(exported: Path) -> real_sample.RealSample:
    """The real sample of a models folder, read and verified once per process."""
    return real_sample.load(exported)


def load_real_sample(exported: Path) -> real_sample.RealSample | None:
    """The real sample, or None when the folder ships none; an altered or unreadable one
    gives an error on the page (and None)."""
    if not real_sample.exists(exported):
        return None
    try:
        return cached_real_sample(exported)
    except ModelError as err:
        st.error(f"**The real cells are unavailable.** {err}", icon="⚠️")
        return None


@st.cache_data(show_spinner=False, max_entries=64)
def round_cells(
    exported: Path, generator: str, seed: int, size: int, _sample: real_sample.RealSample
) -> np.ndarray:
    """The cells of a round in order: uint8 [size, S, S, 3], real and generated.

    Cached by folder, generator, seed and size (the folder's sample is fixed).
    """
    questions = turing.draw_round(seed, size, _sample.labels)
    out = np.zeros((size, *_sample.images.shape[1:]), np.uint8)
    real = [q for q in questions if q.truth == turing.REAL]
    for q in real:
        out[q.index] = _sample.images[q.real_index]
    drawn = [q for q in questions if q.truth == turing.SYNTHETIC]
    if drawn:
        gen = cached_generator(exported, generator)
        z = latent.sample_z(seed, size, gen.z_dim)[[q.latent_index for q in drawn]]
        out[[q.index for q in drawn]] = gen.generate(z, [q.label for q in drawn])
    return out


def round_state(seed: int, size: int, generator: str) -> turing.RoundState:
    """This session's round of these settings; a fresh one when a setting changed."""
    state = st.session_state.get(STATE_KEY)
    if not isinstance(state, turing.RoundState) or (state.seed, state.size, state.generator) != (
        seed,
        size,
        generator,
    ):
        state = turing.RoundState(seed=seed, size=size, generator=generator)
        st.session_state[STATE_KEY] = state
    return state


def restart_round() -> None:
    """Widget callback: forget this session's answers (the same round starts again)."""
    st.session_state.pop(STATE_KEY, None)


def _answer(index: int, answer: str) -> None:
    """Widget callback: record ``answer`` to question ``index``, once."""
    state = st.session_state.get(STATE_KEY)
    if isinstance(state, turing.RoundState):
        state.record(index, answer, time.monotonic())


def answer_buttons(state: turing.RoundState, index: int) -> None:
    """The two large answer buttons of question ``index``, each with its keyboard key.

    The buttons keep their keys from question to question (so do their shortcuts), and each
    click names the question it answers: a click that arrives twice records one answer.
    """
    state.show(index, time.monotonic())
    rules = " ".join(
        f".st-key-{BUTTON_KEY.format(a)} button {{ {BUTTON_STYLE}; }} "
        f".st-key-{BUTTON_KEY.format(a)} button p {{ {LABEL_STYLE}; }}"
        for a in ANSWER_KEYS
    )
    st.html(f"<style>{rules}</style>")
    columns = st.columns(len(ANSWER_KEYS))
    for column, (answer, key) in zip(columns, ANSWER_KEYS.items(), strict=True):
        column.button(
            ANSWER_LABELS[answer],
            key=BUTTON_KEY.format(answer),
            width="stretch",
            shortcut=key,
            on_click=_answer,
            args=(index, answer),
            help=f"Answer “{answer}” (key: {ANSWER_ARROWS[key]}).",
        )


def question_caption(question: turing.Question, answer: str) -> str:
    """How a wrongly answered cell is labelled, e.g. "#3 real Parasitized · you said synthetic"."""
    return f"#{question.index + 1} {question.truth} {question.label} · you said {answer}"


def score_rows(
    tallies: list[turing.Tally], c2st: dict[str, dict[str, Any]]
) -> list[dict[str, str]]:
    """The end-of-round table: your accuracy per class and overall, beside the C2ST's."""
    rows = []
    for t in tallies:
        low, high = t.interval
        figures = c2st.get(t.group, {})
        rows.append(
            {
                "cells": t.group,
                "answered": f"{t.answered}",
                "you: accuracy": tables.percent(t.accuracy),
                "95% CI (Wilson)": f"{tables.percent(low)}–{tables.percent(high)}",
                "C2ST accuracy": tables.percent(figures.get("accuracy")),
                "C2ST reference (real vs real)": tables.percent(figures.get("reference_accuracy")),
            }
        )
    return rows
