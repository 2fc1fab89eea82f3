"""The visual Turing test: a seeded round of real and generated cells, its answers and its score.

Each question is a real cell of a held-out patient or a generated one with equal chance, of a
class drawn at random. The same seed gives the same cells in the same order, so a round can be
shared as a link and played by several people; their answers go to a CSV that pools across
people. The score is the share of right answers with a Wilson 95% interval, per class and
overall: 50% means nobody can tell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from malgan import metrics
from malgan.data import CLASSES

REAL, SYNTHETIC = "real", "synthetic"
ANSWERS = (REAL, SYNTHETIC)
ROUND_SIZES = (20, 40)
DEFAULT_ROUND_SIZE = ROUND_SIZES[0]
OVERALL = "Overall"
CHANCE = 0.5
CSV_COLUMNS = ("question", "cell_id", "class", "truth", "answer", "correct", "seconds")
# Decimals of the answer times in the CSV.
SECONDS_DIGITS = 2


@dataclass(frozen=True)
class Question:
    """One cell of a round.

    Attributes:
        index: Position in the round, from 0.
        truth: ``REAL`` or ``SYNTHETIC``.
        label: The cell's class.
        real_index: Row of the real sample (real cells), else -1.
        latent_index: Row of the round's latents (generated cells), else -1.
    """

    index: int
    truth: str
    label: str
    real_index: int = -1
    latent_index: int = -1


def draw_round(seed: int, size: int, real_labels: Sequence[int] | np.ndarray) -> list[Question]:
    """The questions of a round: real or generated with equal chance, the class at random.

    Real cells of a class are taken in a seeded order without repeats while the sample has
    enough (then the order starts again); a generated cell's latent is row ``index`` of
    ``latent.sample_z(seed, ...)``, so it depends on the seed and its position only.

    Args:
        seed: The round's seed (>= 0).
        size: Number of questions (>= 1).
        real_labels: Class index of each cell of the real sample.

    Returns:
        ``size`` questions in order.

    Raises:
        ValueError: For a bad seed or size, or a real sample without cells.
    """
    if seed < 0 or size < 1:
        raise ValueError(f"Need a seed >= 0 and a size >= 1, got {seed} and {size}.")
    labels = np.asarray(real_labels, np.int64)
    if labels.size == 0:
        raise ValueError("The real sample holds no cells.")
    rng = np.random.default_rng([seed, size])
    truths = rng.random(size) < CHANCE
    classes = rng.integers(0, len(CLASSES), size)
    order = {i: rng.permutation(np.flatnonzero(labels == i)) for i in range(len(CLASSES))}
    shown = dict.fromkeys(order, 0)
    questions = []
    for i in range(size):
        label = int(classes[i])
        if truths[i]:
            if not len(order[label]):  # a sample without this class: the other class
                label = next(c for c in order if len(order[c]))
            row = int(order[label][shown[label] % len(order[label])])
            shown[label] += 1
            questions.append(Question(i, REAL, CLASSES[label], real_index=row))
        else:
            questions.append(Question(i, SYNTHETIC, CLASSES[label], latent_index=i))
    return questions


def cell_id(question: Question, real_ids: Sequence[str], generator: str, seed: int) -> str:
    """A cell's id in the CSV: the real cell's file name, or ``generator/class/seed/latent``."""
    if question.truth == REAL:
        return str(real_ids[question.real_index])
    return f"{generator}/{question.label}/seed{seed}/z{question.latent_index}"


@dataclass
class RoundState:
    """The answers of one round, recorded once per question whatever the page reruns.

    Attributes:
        seed: The round's seed.
        size: Its number of questions.
        generator: The generator of its synthetic cells.
        answers: Answer per question index.
        seconds: Seconds from a question's first showing to its answer.
        shown_at: When each question was first shown (a clock in seconds).
    """

    seed: int
    size: int
    generator: str
    answers: dict[int, str] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    shown_at: dict[int, float] = field(default_factory=dict)

    @property
    def current(self) -> int | None:
        """The index of the question to answer, or None when the round is over."""
        done = len(self.answers)
        return done if done < self.size else None

    @property
    def finished(self) -> bool:
        """Whether every question has its answer."""
        return self.current is None

    def show(self, index: int, now: float) -> None:
        """Note when question ``index`` is first shown (later showings keep the first time)."""
        self.shown_at.setdefault(index, now)

    def record(self, index: int, answer: str, now: float) -> bool:
        """Record ``answer`` to question ``index`` if it is the current one and unanswered.

        A second click, a replayed event or a click on a question already passed changes
        nothing, so no answer is recorded twice.

        Returns:
            Whether the answer was recorded.
        """
        if answer not in ANSWERS or index != self.current or index in self.answers:
            return False
        self.answers[index] = answer
        self.seconds[index] = max(0.0, now - self.shown_at.get(index, now))
        return True


@dataclass(frozen=True)
class Tally:
    """Right answers out of answered questions, with a Wilson 95% interval."""

    group: str
    correct: int
    answered: int

    @property
    def accuracy(self) -> float:
        """Share of right answers (NaN before any answer)."""
        return self.correct / self.answered if self.answered else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        """Wilson 95% interval of the accuracy."""
        return metrics.wilson_interval(self.correct, self.answered)


def is_correct(question: Question, answers: Mapping[int, str]) -> bool:
    """Whether question's answer is its truth (False when unanswered)."""
    return answers.get(question.index) == question.truth


def score(questions: Sequence[Question], answers: Mapping[int, str]) -> list[Tally]:
    """Right answers per class of the cell, then overall, counting answered questions only."""
    answered = [q for q in questions if q.index in answers]
    groups = [(label, [q for q in answered if q.label == label]) for label in CLASSES]
    groups.append((OVERALL, answered))
    return [Tally(name, sum(is_correct(q, answers) for q in qs), len(qs)) for name, qs in groups]


def mistakes(questions: Sequence[Question], answers: Mapping[int, str]) -> list[Question]:
    """The answered questions whose answer was wrong, in order."""
    return [q for q in questions if q.index in answers and not is_correct(q, answers)]


def csv_text(questions: Sequence[Question], state: RoundState, real_ids: Sequence[str]) -> str:
    """The round's answers as CSV: one row per answered question, ``CSV_COLUMNS``.

    Rows of several people's rounds of the same seed can be pooled: the cell ids are the same.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for q in questions:
        if q.index not in state.answers:
            continue
        writer.writerow(
            (
                q.index + 1,
                cell_id(q, real_ids, state.generator, state.seed),
                q.label,
                q.truth,
                state.answers[q.index],
                int(is_correct(q, state.answers)),
                f"{state.seconds.get(q.index, 0.0):.{SECONDS_DIGITS}f}",
            )
        )
    return buffer.getvalue()
