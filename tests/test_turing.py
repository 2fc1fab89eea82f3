"""The visual Turing test's rounds, answers and scores, without Streamlit."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from malgan import metrics, turing
from malgan.data import CLASSES

LABELS = np.array([0] * 30 + [1] * 25)
IDS = [f"cell_{i}.png" for i in range(len(LABELS))]


def test_same_seed_same_round_other_seed_other_round() -> None:
    a = turing.draw_round(7, 40, LABELS)
    assert a == turing.draw_round(7, 40, LABELS)
    assert a != turing.draw_round(8, 40, LABELS)
    assert [q.index for q in a] == list(range(40))


def test_round_is_half_real_and_classes_at_random() -> None:
    questions = [q for seed in range(50) for q in turing.draw_round(seed, 40, LABELS)]
    real = np.mean([q.truth == turing.REAL for q in questions])
    parasitized = np.mean([q.label == CLASSES[0] for q in questions])
    # 2,000 fair draws: a share outside 0.45-0.55 has a probability below 1e-5.
    assert 0.45 < real < 0.55
    assert 0.45 < parasitized < 0.55


def test_real_cells_are_of_their_class_and_not_repeated() -> None:
    for seed in range(20):
        questions = turing.draw_round(seed, 40, LABELS)
        real = [q for q in questions if q.truth == turing.REAL]
        assert all(CLASSES[LABELS[q.real_index]] == q.label for q in real)
        rows = [q.real_index for q in real]
        assert len(rows) == len(set(rows))
        drawn = [q for q in questions if q.truth == turing.SYNTHETIC]
        assert all(q.latent_index == q.index and q.real_index == -1 for q in drawn)


def test_a_sample_of_one_class_still_gives_a_round() -> None:
    questions = turing.draw_round(3, 40, np.zeros(5, np.int64))
    real = [q for q in questions if q.truth == turing.REAL]
    assert real and all(q.label == CLASSES[0] for q in real)


@pytest.mark.parametrize(
    ("seed", "size", "labels"), [(-1, 20, LABELS), (0, 0, LABELS), (0, 20, [])]
)
def test_bad_rounds_are_refused(seed: int, size: int, labels) -> None:
    with pytest.raises(ValueError):
        turing.draw_round(seed, size, labels)


def test_an_answer_is_recorded_once_and_only_for_the_current_question() -> None:
    state = turing.RoundState(seed=1, size=3, generator="cgan")
    state.show(0, now=10.0)
    state.show(0, now=11.0)  # a rerun shows it again: the first time counts
    assert state.record(0, turing.REAL, now=12.5)
    assert not state.record(0, turing.SYNTHETIC, now=13.0)  # the same click replayed
    assert not state.record(2, turing.REAL, now=13.0)  # not the current question
    assert not state.record(1, "maybe", now=13.0)
    assert state.answers == {0: turing.REAL} and state.seconds == {0: 2.5}
    assert state.current == 1
    assert state.record(1, turing.SYNTHETIC, now=14.0)
    assert state.record(2, turing.SYNTHETIC, now=15.0)
    assert state.finished and state.current is None
    assert not state.record(3, turing.REAL, now=16.0)
    assert len(state.answers) == 3


def test_score_per_class_and_overall_with_wilson() -> None:
    questions = turing.draw_round(5, 40, LABELS)
    rng = np.random.default_rng(0)
    answers = {q.index: turing.ANSWERS[int(rng.integers(2))] for q in questions}
    tallies = turing.score(questions, answers)
    assert [t.group for t in tallies] == [*CLASSES, turing.OVERALL]
    for t in tallies:
        group = [q for q in questions if t.group in (turing.OVERALL, q.label)]
        right = sum(answers[q.index] == q.truth for q in group)
        assert (t.correct, t.answered) == (right, len(group))
        assert t.accuracy == pytest.approx(right / len(group))
        assert t.interval == metrics.wilson_interval(right, len(group))
    assert tallies[-1].answered == sum(t.answered for t in tallies[:-1])
    wrong = turing.mistakes(questions, answers)
    assert len(wrong) == tallies[-1].answered - tallies[-1].correct
    assert all(answers[q.index] != q.truth for q in wrong)


def test_score_before_any_answer() -> None:
    overall = turing.score(turing.draw_round(5, 20, LABELS), {})[-1]
    assert overall.answered == 0 and np.isnan(overall.accuracy)
    assert overall.interval == (0.0, 1.0)


def test_csv_has_one_row_per_answer_with_ids_truth_and_time() -> None:
    questions = turing.draw_round(9, 20, LABELS)
    state = turing.RoundState(seed=9, size=20, generator="cgan")
    for q in questions[:5]:
        state.show(q.index, now=float(q.index))
        state.record(q.index, turing.REAL, now=q.index + 1.25)
    rows = list(csv.DictReader(io.StringIO(turing.csv_text(questions, state, IDS))))
    assert tuple(rows[0]) == turing.CSV_COLUMNS
    assert len(rows) == 5
    for row, q in zip(rows, questions, strict=False):
        expected_id = (
            IDS[q.real_index] if q.truth == turing.REAL else f"cgan/{q.label}/seed9/z{q.index}"
        )
        assert row["cell_id"] == expected_id
        assert (row["truth"], row["answer"], row["class"]) == (q.truth, turing.REAL, q.label)
        assert row["correct"] == str(int(q.truth == turing.REAL))
        assert row["seconds"] == "1.25"
