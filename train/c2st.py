"""Classifier two-sample test (C2ST): how well a logistic regression tells two sets of cells apart.

Lopez-Paz & Oquab (ICLR 2017): train a classifier to tell sample A from sample B on held-out
folds; an accuracy (and AUC) of 0.5 means it cannot, 1.0 that the two never look alike. On the
classifier's penultimate features, with A the real cells of the test patients and B a
generator's cells; the reference puts real cells of other patients (the validation split) in
B's place, at the same n, since two groups of patients differ too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from malgan import release

# Cross-validation folds; fewer when a sample is smaller.
FOLDS = 5
# Seed of the subsampling to equal sizes and of the folds.
SEED = 0
# L2 strength of the logistic regression (scikit-learn's default) and its iteration cap.
INVERSE_REGULARISATION = 1.0
MAX_ITER = 2000
METHOD = "logistic regression on standardised features, stratified k-fold cross-validation"


def two_sample_test(
    a: np.ndarray, b: np.ndarray, *, folds: int = FOLDS, seed: int = SEED
) -> dict[str, Any]:
    """Cross-validated accuracy and AUC of a logistic regression telling ``a`` from ``b``.

    The larger sample is cut to the smaller one's size (seeded), so that chance is 0.5.

    Args:
        a: Features [n_a, F] of one sample.
        b: Features [n_b, F] of the other.
        folds: Cross-validation folds (fewer when a sample has fewer cells).
        seed: Seed of the subsampling and of the folds.

    Returns:
        ``{"accuracy", "auc", "accuracy_sd", "auc_sd", "n", "folds"}``: means and standard
        deviations over the folds, n per sample; NaN figures when a sample has under two cells.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    k = min(folds, n)
    if k < 2:
        nan = dict.fromkeys(("accuracy", "auc", "accuracy_sd", "auc_sd"), math.nan)
        return {**nan, "n": n, "folds": k}
    x = np.concatenate(
        [
            a[np.sort(rng.choice(len(a), n, replace=False))],
            b[np.sort(rng.choice(len(b), n, replace=False))],
        ]
    )  # [2n, F]
    y = np.repeat([0, 1], n)
    accuracy, auc = [], []
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, test in splitter.split(x, y):
        model = make_pipeline(
            StandardScaler(), LogisticRegression(C=INVERSE_REGULARISATION, max_iter=MAX_ITER)
        )
        model.fit(x[train], y[train])
        score = model.predict_proba(x[test])[:, 1]
        accuracy.append(float(np.mean((score > 0.5) == y[test])))
        auc.append(float(roc_auc_score(y[test], score)))
    return {
        "accuracy": float(np.mean(accuracy)),
        "auc": float(np.mean(auc)),
        "accuracy_sd": float(np.std(accuracy)),
        "auc_sd": float(np.std(auc)),
        "n": n,
        "folds": k,
    }


def c2st_figure(
    generated: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    other_patients: dict[str, np.ndarray],
    labels: tuple[str, ...],
    space: str,
) -> dict[str, Any]:
    """The C2ST of each class: generated against test patients' cells, and the reference.

    Args:
        generated: Features of a generator's cells per class.
        test: Features of the test patients' cells per class.
        other_patients: Features of real cells of patients disjoint from the test patients
            (the validation split), per class, as many as ``generated`` has.
        labels: The classes.
        space: The feature space's name, stored with the figure.

    Returns:
        ``{"method", "space", label: {...}}``: per class, ``n`` and the ``release.GENERATED``
        and ``release.REFERENCE`` sides, each with ``accuracy``, ``auc`` and their fold
        standard deviations.
    """
    result: dict[str, Any] = {"method": METHOD, "space": space}
    keys = ("accuracy", "auc", "accuracy_sd", "auc_sd")
    for label in labels:
        gen = two_sample_test(test[label], generated[label])
        ref = two_sample_test(test[label], other_patients[label])
        result[label] = {
            release.GENERATED: {k: gen[k] for k in keys},
            release.REFERENCE: {k: ref[k] for k in keys},
            "n": gen["n"],
            "n_reference": ref["n"],
            "folds": gen["folds"],
        }
    return result
