"""The filters of a synthetic export: why a generated cell is rejected, counted by reason, and
the error of an export they stopped."""

from __future__ import annotations

from typing import Any

import numpy as np

from malgan.data import CLASSES
from malgan.errors import SynthError

DEFAULT_MIN_CONFIDENCE = 0.5
# Rejection reasons, in order of precedence: a cell failing several filters counts once, under
# the first reason that applies.
PRIVACY = "privacy"
WRONG_CLASS = "wrong_class"
LOW_CONFIDENCE = "low_confidence"
REASONS = (PRIVACY, WRONG_CLASS, LOW_CONFIDENCE)
REASON_LABELS = {
    PRIVACY: "too close to a training cell",
    WRONG_CLASS: "classified as the other class",
    LOW_CONFIDENCE: "low confidence",
}
ACCEPTED = ""


def class_threshold(min_confidence: float) -> float:
    """P(intended class) at which ``rejection_reasons``' class verdict changes, for two
    classes: below one half the argmax is the other class, so a cell is kept from the larger
    of ``min_confidence`` and one half."""
    return max(float(min_confidence), 0.5)


def rejection_reasons(
    proba: np.ndarray,
    intended: int,
    distances: np.ndarray | None,
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    class_filter: bool = True,
    privacy_threshold: float | None = None,
) -> np.ndarray:
    """Why each generated cell is rejected, or ``ACCEPTED`` ("") when it is kept.

    Precedence: ``privacy`` (nearest training code closer than the threshold), then
    ``wrong_class`` (the classifier's argmax is another class), then ``low_confidence``
    (P(intended) below ``min_confidence``).

    Args:
        proba: float [N, C] classifier probabilities.
        intended: Column of the intended class.
        distances: float [N] distances to the nearest training code, or None.
        min_confidence: Smallest accepted P(intended class).
        class_filter: Apply the wrong-class and confidence filters.
        privacy_threshold: Reject distances below this; None switches the privacy filter off.

    Returns:
        str array [N] of reasons.
    """
    proba = np.asarray(proba, np.float64)
    reasons = np.full(len(proba), ACCEPTED, dtype=object)
    if class_filter:
        low = proba[:, intended] < min_confidence
        reasons[low] = LOW_CONFIDENCE
        reasons[np.argmax(proba, axis=1) != intended] = WRONG_CLASS
    if privacy_threshold is not None:
        if distances is None:
            raise ValueError("The privacy filter needs distances to the training codes.")
        reasons[np.asarray(distances, np.float64) < privacy_threshold] = PRIVACY
    return reasons.astype(str)


def rejection_rows(rejected: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Rejections as long-format rows ``{"class", "reason", "label", "count"}`` for charts.

    Args:
        rejected: Rejections per class and reason (``SynthSummary.rejected``).

    Returns:
        One row per class and reason, classes in ``CLASSES`` order, reasons in ``REASONS`` order.
    """
    return [
        {
            "class": label,
            "reason": reason,
            "label": REASON_LABELS[reason],
            "count": int(rejected.get(label, {}).get(reason, 0)),
        }
        for label in CLASSES
        for reason in REASONS
    ]


class FiltersExhaustedError(SynthError):
    """The filters rejected so many cells that the attempt limit was reached.

    The message states what happened; what to change is for the caller to say, in its own
    words (the command line's flags, the page's controls), from ``settings_to_loosen``.

    Attributes:
        label: The class that could not be filled.
        accepted: Cells that had passed, per class, when the export stopped.
        attempts: Latents tried per class.
        rejected: Rejections per class and reason.
    """

    def __init__(
        self,
        message: str,
        *,
        label: str,
        accepted: dict[str, int],
        attempts: dict[str, int],
        rejected: dict[str, dict[str, int]],
    ) -> None:
        super().__init__(message)
        self.label = label
        self.accepted = accepted
        self.attempts = attempts
        self.rejected = rejected

    @property
    def settings_to_loosen(self) -> tuple[str, ...]:
        """``SynthConfig`` fields whose change lets more cells of ``label`` through.

        The filters that rejected cells of the class, most specific first, then the attempts
        factor, which always helps.
        """
        counts = self.rejected.get(self.label, {})
        settings = []
        if counts.get(LOW_CONFIDENCE):
            settings.append("min_confidence")
        if counts.get(LOW_CONFIDENCE) or counts.get(WRONG_CLASS):
            settings.append("class_filter")
        if counts.get(PRIVACY):
            settings.append("privacy_filter")
        return (*settings, "max_attempts_factor")
