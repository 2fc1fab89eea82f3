"""The synthetic-set benchmark's view settings: what each recheck band averages and costs."""

from __future__ import annotations

import numpy as np

from benchmarks import synth_throughput as bench


def per_view_probabilities() -> np.ndarray:
    """8 views of 4 cells: two far from one half in every view, two close in view 0."""
    p0 = np.array(
        [
            [0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95],
            [0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05],
            [0.55, 0.20, 0.20, 0.20, 0.20, 0.20, 0.20, 0.20],
            [0.45, 0.90, 0.90, 0.90, 0.90, 0.90, 0.90, 0.90],
        ]
    ).T
    return np.stack([p0, 1 - p0], axis=-1)


def test_a_band_takes_the_eight_view_average_for_close_cells_only() -> None:
    per_view = per_view_probabilities()
    settings = bench.view_settings(per_view, [0.0, 0.1])
    assert (1, 0.0) in settings and (8, 0.0) in settings and (8, 0.1) not in settings
    one, cost_one = settings[(1, 0.0)]
    rechecked, cost = settings[(1, 0.1)]
    np.testing.assert_array_equal(one, per_view[0])
    np.testing.assert_array_equal(rechecked[:2], per_view[0][:2])
    np.testing.assert_allclose(rechecked[2:], per_view.mean(axis=0)[2:])
    assert (cost_one, cost) == (1.0, 1.0 + 8 * 2 / 4)
    # The band turns the two close cells' verdicts to those of the 8 views.
    assert (one[2:, 0] > 0.5).tolist() == [True, False]
    assert (rechecked[2:, 0] > 0.5).tolist() == [False, True]


def test_fewest_views_ignores_the_rechecked_settings() -> None:
    agreement = {(8, 0.0): 1.0, (4, 0.0): 0.996, (2, 0.0): 0.99, (1, 0.2): 1.0}
    assert bench.fewest_views(agreement) == 4
    assert bench.fewest_views({(8, 0.0): 0.99}) is None
    assert bench.setting_name(1, 0.2) == "1 view(s), 8 within 0.2"
