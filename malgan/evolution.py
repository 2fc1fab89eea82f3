"""A (mu/mu_w, lambda) evolution strategy with cumulative step-size adaptation, in numpy.

Isotropic Gaussian mutations, log-rank recombination weights and CSA, as in CMA-ES without the
covariance update (Hansen 2016). ``malgan.invert`` runs it in a generator's latent space;
``evolution_step`` moves one run from one scored population, ``Budget`` says when to stop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

# Offspring per run and generation.
POPULATION = 12
# Initial mutation step in z units (the prior has unit variance per coordinate).
INITIAL_STEP = 0.3
MIN_STEP = 1e-3
MAX_STEP = 2.0


@dataclass
class Run:
    """One evolution-strategy run: mean, step size and evolution path in search space."""

    mean: np.ndarray
    step: float
    path: np.ndarray
    fixed_weights: np.ndarray | None  # class weights when the class is not searched
    best_loss: float = math.inf
    best_x: np.ndarray | None = None
    best_image: np.ndarray | None = None


class Budget:
    """A search's budgets: elapsed time, evaluation count and the fraction used."""

    def __init__(self, time_budget_s: float | None, max_evals: int):
        self.start = time.perf_counter()
        self.time_budget_s = time_budget_s
        self.max_evals = max_evals
        self.evals = 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fraction(self) -> float:
        used = self.evals / self.max_evals
        if self.time_budget_s:
            used = max(used, self.elapsed / self.time_budget_s)
        return min(1.0, used)

    def allows(self, batch: int, per_cell_s: float, *, time_share: float = 1.0) -> bool:
        """Whether a batch fits in the budgets, its duration predicted from the last one."""
        if self.evals + batch > self.max_evals:
            return False
        if self.time_budget_s is None:
            return True
        return self.elapsed + batch * per_cell_s <= time_share * self.time_budget_s


@dataclass(frozen=True)
class Strategy:
    """The constants of a (mu/mu_w, lambda) evolution strategy with cumulative step-size
    adaptation in ``dim`` dimensions (Hansen's CMA-ES defaults without the covariance)."""

    mu: int
    rank_weights: np.ndarray  # float64 [mu], log-rank recombination weights, sum 1
    mu_eff: float
    c_sigma: float
    d_sigma: float
    chi_n: float  # expected norm of an N(0, I) vector

    @classmethod
    def for_dim(cls, dim: int, population: int = POPULATION) -> Strategy:
        mu = population // 2
        rank_weights = math.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
        rank_weights /= rank_weights.sum()
        mu_eff = 1.0 / float((rank_weights**2).sum())
        c_sigma = (mu_eff + 2.0) / (dim + mu_eff + 5.0)
        d_sigma = 1.0 + 2.0 * max(0.0, math.sqrt((mu_eff - 1.0) / (dim + 1.0)) - 1.0) + c_sigma
        chi_n = math.sqrt(dim) * (1.0 - 1.0 / (4.0 * dim) + 1.0 / (21.0 * dim * dim))
        return cls(mu, rank_weights, mu_eff, c_sigma, d_sigma, chi_n)


def evolution_step(
    run: Run,
    strategy: Strategy,
    x: np.ndarray,
    eps: np.ndarray,
    losses: np.ndarray,
    images: np.ndarray | None = None,
) -> None:
    """Update one run in place from one scored population.

    Args:
        run: The run whose mean, step size, evolution path and best point move.
        strategy: The strategy's constants.
        x: Search vectors [lambda, D] that were scored, ``run.mean + run.step * eps``.
        eps: Their standard normal mutations [lambda, D].
        losses: Their losses [lambda].
        images: Their cells [lambda, S, S, 3], kept with the best point (None: keep none).
    """
    order = np.argsort(losses, kind="stable")
    if losses[order[0]] < run.best_loss:
        run.best_loss = float(losses[order[0]])
        run.best_x = x[order[0]].copy()
        run.best_image = None if images is None else images[order[0]]
    step_dir = strategy.rank_weights @ eps[order[: strategy.mu]]
    run.mean = run.mean + run.step * step_dir
    c_sigma = strategy.c_sigma
    run.path = (1.0 - c_sigma) * run.path + math.sqrt(
        c_sigma * (2.0 - c_sigma) * strategy.mu_eff
    ) * step_dir
    factor = math.exp(
        (c_sigma / strategy.d_sigma) * (np.linalg.norm(run.path) / strategy.chi_n - 1.0)
    )
    run.step = float(np.clip(run.step * factor, MIN_STEP, MAX_STEP))
