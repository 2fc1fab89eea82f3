"""The "Real or synthetic?" page in AppTest: rounds by clicks, reruns, a missing sample."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from malgan import artifacts, real_sample, turing
from malgan.app import turing as game
from tests.support.pages import EXPORTED, app_page

PAGE = "pages/real_or_synthetic.py"
SEED = 3
SIZE = 20
TIMEOUT_S = 120


pytestmark = pytest.mark.usefixtures("fresh_caches")


def opened(seed: int = SEED, *, study: bool = False):
    at = app_page(PAGE, timeout=TIMEOUT_S)
    at.query_params["ros_seed"] = str(seed)
    if study:
        at.query_params["ros_study"] = "true"
    return at.run()


def texts(at) -> str:
    kinds = ("markdown", "caption", "info", "error", "success", "subheader")
    return "\n".join(str(e.value) for kind in kinds for e in at.get(kind))


def click(at, answer: str):
    return at.button(key=game.BUTTON_KEY.format(answer)).click().run()


def test_a_round_by_clicks_scores_the_answers_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(artifacts.EXPORTED_ENV, raising=False)
    questions = turing.draw_round(SEED, SIZE, real_sample.load(EXPORTED).labels)
    at = opened()
    assert not at.exception and "Cell **1** of 20" in texts(at)
    answers = {}
    for q in questions:
        # Right on even questions, wrong on odd ones.
        answer = q.truth if q.index % 2 == 0 else next(a for a in turing.ANSWERS if a != q.truth)
        answers[q.index] = answer
        at = click(at, answer)
        assert not at.exception, [e.value for e in at.exception]
        if q.index < SIZE - 1:
            right = sum(answers[i] == questions[i].truth for i in answers)
            assert f"score **{right} / {len(answers)}**" in texts(at)
        # A rerun without a click records nothing.
        at = at.run()
    right = sum(answers[q.index] == q.truth for q in questions)
    shown = texts(at)
    assert f"You got {right} of {SIZE} right" in shown
    assert "50% means nobody can tell" in shown
    table = at.table[0].value
    overall = table[table["cells"] == turing.OVERALL].iloc[0]
    assert overall["answered"] == str(SIZE) and overall["you: accuracy"] == "50.0%"
    wrong = [q for q in questions if answers[q.index] != q.truth]
    assert f"The {len(wrong)} cells you got wrong" in shown


def test_study_mode_hides_the_score_and_gives_the_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(artifacts.EXPORTED_ENV, raising=False)
    at = opened(study=True)
    for _ in range(SIZE):
        assert not re.search(r"score \*\*\d", texts(at))
        at = click(at, turing.SYNTHETIC)
    assert f"of {SIZE} right" in texts(at)
    assert not at.exception


def test_restart_and_clicks_after_the_end_add_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(artifacts.EXPORTED_ENV, raising=False)
    at = opened()
    for _ in range(SIZE):
        at = click(at, turing.REAL)
    state = at.session_state[game.STATE_KEY]
    assert len(state.answers) == SIZE
    again = next(b for b in at.button if "again" in b.label)
    at = again.click().run()
    assert not at.exception and "Cell **1** of 20" in texts(at), "the same round starts again"
    assert int(at.session_state["ros_seed"]) == SEED
    for _ in range(SIZE):
        at = click(at, turing.SYNTHETIC)
    at = at.button(key="next").click().run()
    assert not at.exception
    assert "Cell **1** of 20" in texts(at), "a new round starts at its first cell"
    assert int(at.session_state["ros_seed"]) != SEED


def test_without_a_real_sample_the_page_says_how_to_add_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "exported"
    root.mkdir()
    for path in EXPORTED.iterdir():
        if path.name not in (real_sample.SHEET_NAME, real_sample.SIDECAR_NAME):
            (root / path.name).symlink_to(path)
    monkeypatch.setenv(artifacts.EXPORTED_ENV, str(root))
    at = opened()
    assert not at.exception and not at.error
    assert "python -m train.real_sample" in texts(at)
    assert game.BUTTON_KEY.format(turing.REAL) not in [b.key for b in at.button]


def test_a_round_of_40_records_a_time_per_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(artifacts.EXPORTED_ENV, raising=False)
    at = app_page(PAGE, timeout=TIMEOUT_S)
    at.query_params.update(ros_seed=str(SEED), ros_cells="40", ros_study="true")
    at = at.run()
    assert "of 40" in texts(at)
    for _ in range(40):
        at = click(at, turing.REAL)
    state = at.session_state[game.STATE_KEY]
    assert state.size == 40 and len(state.seconds) == 40
    assert all(seconds >= 0 for seconds in state.seconds.values())
    assert "of 40 right" in texts(at) and not at.exception
