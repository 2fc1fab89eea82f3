"""The evolution strategy of the inversion's search, on its own: numpy only, no generator."""

import math

import numpy as np
import pytest

from malgan import evolution

DIM = 6


def _run(mean: np.ndarray, step: float = 1.0) -> evolution.Run:
    return evolution.Run(mean=mean, step=step, path=np.zeros(len(mean)), fixed_weights=None)


def _population(run: evolution.Run, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    eps = rng.standard_normal((evolution.POPULATION, len(run.mean)))
    return run.mean + run.step * eps, eps


def test_strategy_weights_are_decreasing_and_sum_to_one():
    strategy = evolution.Strategy.for_dim(DIM)
    assert strategy.mu == evolution.POPULATION // 2
    assert math.isclose(strategy.rank_weights.sum(), 1.0)
    assert np.all(np.diff(strategy.rank_weights) < 0)
    assert 1.0 < strategy.mu_eff < strategy.mu


def test_step_moves_the_mean_towards_the_better_mutations_and_keeps_the_best():
    strategy, rng = evolution.Strategy.for_dim(DIM), np.random.default_rng(0)
    run = _run(np.zeros(DIM))
    x, eps = _population(run, rng)
    losses = x[:, 0]  # lower first coordinate is better
    evolution.evolution_step(run, strategy, x, eps, losses)
    assert run.mean[0] < 0
    assert run.best_loss == losses.min() and np.array_equal(run.best_x, x[np.argmin(losses)])
    # A worse population leaves the best point as it was.
    kept = run.best_x.copy()
    evolution.evolution_step(run, strategy, x, eps, losses + 100.0)
    assert np.array_equal(run.best_x, kept)


def test_repeated_steps_descend_a_quadratic_bowl():
    strategy, rng = evolution.Strategy.for_dim(DIM), np.random.default_rng(1)
    run = _run(np.full(DIM, 3.0))
    start = float(np.sum(run.mean**2))
    for _ in range(60):
        x, eps = _population(run, rng)
        evolution.evolution_step(run, strategy, x, eps, np.sum(x**2, axis=1))
    assert run.best_loss < 0.01 * start
    assert evolution.MIN_STEP <= run.step <= evolution.MAX_STEP


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_step_size_stays_within_its_bounds(direction):
    strategy, rng = evolution.Strategy.for_dim(DIM), np.random.default_rng(2)
    run = _run(np.zeros(DIM), step=evolution.MAX_STEP if direction > 0 else evolution.MIN_STEP)
    for _ in range(20):
        x, eps = _population(run, rng)
        evolution.evolution_step(run, strategy, x, eps, direction * x[:, 0])
    assert evolution.MIN_STEP <= run.step <= evolution.MAX_STEP
