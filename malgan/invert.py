"""Gradient-free GAN inversion: find the latent whose generated cell matches a real cell.

ONNX Runtime gives no gradients, so the search is a black-box optimisation batched through the
generator and the classifier. The optimiser is hand-written in numpy (no optimisation library).

Design:
    1. **Loss.** For a generated cell ``x`` and the target ``t`` (both scaled to [0, 1]):
       ``pixel MSE(x, t) weighted by a foreground mask + FEATURE_WEIGHT * (1 - cos(f(x), f(t)))
       + PRIOR_WEIGHT * (|z| / sqrt(z_dim) - 1)^2``. ``f`` are the classifier's penultimate
       features (``runtime.Classifier.features``), which make the match perceptual rather than
       pixel-exact. Cells sit on a black background, so target pixels darker than
       ``FOREGROUND_LEVEL`` count ``BACKGROUND_WEIGHT`` as much as cell pixels (weights
       normalised to mean 1). The prior term keeps z near the shell where N(0, I) latents live,
       so that edits along the infection direction stay meaningful.
    2. **Initialisation.** A pool of ``pool_size`` latents, ``latent.sample_z(seed, ...)``, is
       generated in batches for every class searched (the same latents for each class) and
       scored. The pool stops early when it has used ``POOL_TIME_SHARE`` of the time budget.
    3. **Refinement.** A (mu/mu_w, lambda) evolution strategy with isotropic Gaussian mutations,
       log-rank recombination weights and cumulative step-size adaptation (CSA, as in CMA-ES
       without the covariance update: 128 dimensions and a few hundred evaluations are too few
       to learn a covariance). Several runs start from the best pool candidates (for a search
       over classes, the best candidate of each class) and share each ONNX Runtime batch; once
       ``HALVING_SHARE`` of the refinement budget is spent, only the best run goes on.
       For the conditional generator without a fixed label, the class weights are part of the
       search vector (clipped at zero and normalised to sum 1), so the search may pick either
       class or a blend. For per-class generators each run keeps its class.
    4. **Budgets.** The search stops before a batch would exceed ``max_evals`` evaluations or
       (predicted from the last batch's duration) the time budget. ``progress(fraction,
       best_loss)`` is called after every batch. The result is deterministic for a seed
       whenever the evaluation budget, not the clock, ends the search.

Editing pushes the found cell with ``malgan.infection``: for the conditional generator its
class input moves (the found z is kept), which is what makes the parasite; the per-class
generators have only their fitted InterFaceGAN direction of z.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from malgan import infection, latent, metrics
from malgan.evolution import (
    INITIAL_STEP,
    POPULATION,
    Budget,
    Run,
    Strategy,
    evolution_step,
)
from malgan.infection import infection_direction as infection_direction
from malgan.runtime import CellGenerator, Classifier

Progress = Callable[[float, float], None]

DEFAULT_TIME_BUDGET_S = 8.0
DEFAULT_MAX_EVALS = 4000
# Candidates of the initial pool, shared between the classes searched.
DEFAULT_POOL_SIZE = 256
# Latents per class and ONNX Runtime call while scoring the pool; the first call is small so
# that it measures the speed of the machine without overrunning a short time budget.
FIRST_POOL_BATCH = 8
POOL_BATCH = 32
# The pool stops early once it has used this share of the time budget.
POOL_TIME_SHARE = 0.4
# Weight of the feature term next to the pixel MSE (both are ~0.01 for a close match).
FEATURE_WEIGHT = 0.1
# Weight of the latent-norm prior (negligible inside the typical shell, |z| ~ sqrt(z_dim)).
PRIOR_WEIGHT = 0.01
# Target pixels whose brightest channel is at most this level are background.
FOREGROUND_LEVEL = 20
# Relative weight of background pixels in the pixel MSE.
BACKGROUND_WEIGHT = 0.25
# Parallel runs of the evolution strategy when the class is fixed.
DEFAULT_STARTS = 2
# Share of the refinement budget after which only the best run goes on.
HALVING_SHARE = 0.3
# Class coordinates whose clipped sum is below this give a uniform blend.
CLASS_EPS = 1e-6


@dataclass(frozen=True, eq=False)
class InversionResult:
    """The latent found for a real cell and how well it reproduces it.

    Attributes:
        z: float32 [z_dim] latent.
        class_weights: float32 [len(generator.classes)] class weights (one-hot for per-class
            generators and fixed labels).
        label: The class with the largest weight.
        reconstruction: uint8 [S, S, 3] generated cell (S: the generator's img_size).
        loss: Inversion loss of the reconstruction (see the module docstring).
        ssim: ``metrics.ssim`` of the reconstruction against the input.
        evals: Generated cells scored, pool included.
        seconds: Wall time of the search.
        pool_best_loss: Best loss of the initial pool.
        pool_mean_loss: Mean loss of the initial pool.
    """

    z: np.ndarray = field(repr=False)
    class_weights: np.ndarray
    label: str
    reconstruction: np.ndarray = field(repr=False)
    loss: float
    ssim: float
    evals: int
    seconds: float
    pool_best_loss: float
    pool_mean_loss: float


@dataclass
class _Objective:
    """The inversion loss of generated cells against one target."""

    target: np.ndarray  # float32 [S, S, 3] in [0, 1]
    pixel_weights: np.ndarray  # float32 [S, S, 1], mean 1
    target_features: np.ndarray  # float32 [F], unit norm
    classifier: Classifier

    @classmethod
    def build(cls, image: np.ndarray, classifier: Classifier) -> _Objective:
        foreground = image.max(axis=-1, keepdims=True) > FOREGROUND_LEVEL
        weights = np.where(foreground, 1.0, BACKGROUND_WEIGHT).astype(np.float32)
        weights /= weights.mean()
        features = classifier.features(image[None])[0]
        return cls(
            target=image.astype(np.float32) / 255.0,
            pixel_weights=weights,
            target_features=_unit_rows(features[None])[0],
            classifier=classifier,
        )

    def __call__(self, images: np.ndarray, z: np.ndarray) -> np.ndarray:
        """float64 [N] losses of uint8 cells [N, S, S, 3] made from latents z [N, z_dim]."""
        diff = images.astype(np.float32) / 255.0 - self.target
        pixel = (diff * diff * self.pixel_weights).mean(axis=(1, 2, 3))
        cosine = _unit_rows(self.classifier.features(images)) @ self.target_features
        norm_ratio = np.linalg.norm(z, axis=1) / math.sqrt(z.shape[1])
        prior = (norm_ratio - 1.0) ** 2
        return (
            pixel.astype(np.float64)
            + FEATURE_WEIGHT * (1.0 - cosine.astype(np.float64))
            + PRIOR_WEIGHT * prior
        )


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


class _Search:
    """Maps search vectors to (z, class weights) and renders them in one batch."""

    def __init__(self, generator: CellGenerator, objective: _Objective, search_class: bool):
        self.generator = generator
        self.objective = objective
        self.search_class = search_class
        self.z_dim = generator.z_dim
        self.classes = generator.classes

    def decode(self, x: np.ndarray, fixed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Latents [N, z_dim] and class weights [N, K] of search vectors [N, D]."""
        z = x[:, : self.z_dim].astype(np.float32)
        if fixed is not None:
            return z, np.repeat(fixed[None], len(x), axis=0).astype(np.float32)
        raw = np.clip(x[:, self.z_dim :], 0.0, None)
        sums = raw.sum(axis=1, keepdims=True)
        uniform = np.full_like(raw, 1.0 / raw.shape[1])
        weights = np.where(sums > CLASS_EPS, raw / np.where(sums > CLASS_EPS, sums, 1.0), uniform)
        return z, weights.astype(np.float32)

    def score(self, z: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(images, losses) of latents and class weights."""
        images = render(self.generator, z, weights)
        return images, self.objective(images, z)


def render(generator: CellGenerator, z: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
    """Generate cells from latents [N, z_dim] and class weights [N, K].

    A conditional generator takes the weights as they are (a blend interpolates classes); a
    per-class generator needs one-hot rows (see ``CellGenerator.generate_mix``).

    Returns:
        uint8 [N, S, S, 3].
    """
    return generator.generate_mix(np.asarray(z, np.float32), np.asarray(class_weights, np.float32))


def _one_hot(classes: tuple[str, ...], label: str) -> np.ndarray:
    weights = np.zeros(len(classes), np.float32)
    weights[classes.index(label)] = 1.0
    return weights


def _check_image(image: np.ndarray, size: int) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.shape != (size, size, 3):
        raise ValueError(
            f"Inversion needs a uint8 [{size}, {size}, 3] cell, got {image.dtype} {image.shape}."
        )
    return image


@dataclass
class _Pool:
    """The scored initial candidates: the same latents for every class searched."""

    z: np.ndarray  # float32 [P, z_dim]
    loss: dict[str, np.ndarray]  # class -> float64 [P] (inf where not scored)
    images: dict[str, np.ndarray]  # class -> uint8 [P, S, S, 3]
    per_cell_s: float  # duration of one cell in the last batch

    @property
    def mean_loss(self) -> float:
        return float(np.concatenate([v[np.isfinite(v)] for v in self.loss.values()]).mean())


def _score_pool(
    search: _Search,
    searched: tuple[str, ...],
    per_class: int,
    seed: int,
    clock: Budget,
    report: Callable[[float], None],
) -> _Pool:
    """Generate and score the pool in batches until it is full or has used its time share."""
    side = search.generator.img_size
    pool = _Pool(
        z=latent.sample_z(seed, per_class, search.z_dim),
        loss={cls: np.full(per_class, np.inf) for cls in searched},
        images={cls: np.zeros((per_class, side, side, 3), np.uint8) for cls in searched},
        per_cell_s=0.0,
    )
    start = 0
    while start < per_class:
        size = POOL_BATCH if start else min(FIRST_POOL_BATCH, clock.max_evals // len(searched))
        stop = min(per_class, start + size)
        batch = (stop - start) * len(searched)
        if start > 0 and not clock.allows(batch, pool.per_cell_s, time_share=POOL_TIME_SHARE):
            break
        tic = time.perf_counter()
        for cls in searched:
            z = pool.z[start:stop]
            weights = np.repeat(_one_hot(search.classes, cls)[None], len(z), axis=0)
            pool.images[cls][start:stop], pool.loss[cls][start:stop] = search.score(z, weights)
        clock.evals += batch
        pool.per_cell_s = (time.perf_counter() - tic) / batch
        start = stop
        report(min(float(v.min()) for v in pool.loss.values()))
    return pool


def _start_runs(pool: _Pool, searched: tuple[str, ...], search: _Search) -> list[Run]:
    """One run from the best candidate of each class searched, or from the best few of the one
    class."""
    if len(searched) > 1:
        starts = [(cls, int(np.argmin(pool.loss[cls]))) for cls in searched]
    else:
        order = np.argsort(pool.loss[searched[0]], kind="stable")
        starts = [(searched[0], int(i)) for i in order[:DEFAULT_STARTS]]
    runs = []
    for cls, i in starts:
        onehot = _one_hot(search.classes, cls)
        x = np.concatenate([pool.z[i], onehot]) if search.search_class else pool.z[i]
        x = x.astype(np.float64)
        runs.append(
            Run(
                mean=x,
                step=INITIAL_STEP,
                path=np.zeros(len(x)),
                fixed_weights=None if search.search_class else onehot,
                best_loss=float(pool.loss[cls][i]),
                best_x=x,
                best_image=pool.images[cls][i],
            )
        )
    return runs


def _refine(
    runs: list[Run],
    search: _Search,
    rng: np.random.Generator,
    clock: Budget,
    per_cell_s: float,
    report: Callable[[float], None],
) -> Run:
    """Evolve the runs, each population of every run in one batch, while the budgets allow;
    after ``HALVING_SHARE`` of the refinement budget only the best run goes on. Returns it."""
    strategy = Strategy.for_dim(len(runs[0].mean))
    refine_start = clock.fraction()
    while clock.allows(POPULATION * len(runs), per_cell_s):
        tic = time.perf_counter()
        noise = [rng.standard_normal((POPULATION, len(run.mean))) for run in runs]
        xs = [run.mean + run.step * eps for run, eps in zip(runs, noise, strict=True)]
        decoded = [search.decode(x, run.fixed_weights) for run, x in zip(runs, xs, strict=True)]
        z_all = np.concatenate([d[0] for d in decoded])
        images, losses = search.score(z_all, np.concatenate([d[1] for d in decoded]))
        clock.evals += len(z_all)
        for k, (run, x, eps) in enumerate(zip(runs, xs, noise, strict=True)):
            batch = slice(k * POPULATION, (k + 1) * POPULATION)
            evolution_step(run, strategy, x, eps, losses[batch], images[batch])
        per_cell_s = (time.perf_counter() - tic) / len(z_all)
        if len(runs) > 1:
            share = (clock.fraction() - refine_start) / max(1e-9, 1.0 - refine_start)
            if share >= HALVING_SHARE:
                runs = [min(runs, key=lambda r: r.best_loss)]
        report(min(r.best_loss for r in runs))
    return min(runs, key=lambda r: r.best_loss)


def invert(
    image: np.ndarray,
    generator: CellGenerator,
    classifier: Classifier,
    *,
    label: str | None = None,
    seed: int = 0,
    time_budget_s: float | None = DEFAULT_TIME_BUDGET_S,
    max_evals: int = DEFAULT_MAX_EVALS,
    pool_size: int = DEFAULT_POOL_SIZE,
    progress: Progress | None = None,
) -> InversionResult:
    """Find a latent (and class) whose generated cell matches a real cell.

    See the module docstring for the loss and the search.

    Args:
        image: uint8 [S, S, 3] cell, S the generator's ``img_size`` (``decode.decode_image``
            output).
        generator: The generator.
        classifier: The classifier whose features make the loss perceptual.
        label: Fix the class; ``None`` searches every class of the generator.
        seed: Seed of the pool and of the mutations.
        time_budget_s: Wall-time budget in seconds (``None`` for evaluations only).
        max_evals: Most generated cells to score, pool included.
        pool_size: Initial candidates, shared between the classes searched.
        progress: Called as ``progress(fraction, best_loss)`` after every batch.

    Returns:
        The best latent found, its reconstruction and figures.

    Raises:
        ValueError: For an image that is not uint8 [S, S, 3], an unknown label or budgets
            too small for one pool batch per class.
    """
    image = _check_image(image, generator.img_size)
    classes = generator.classes
    if label is not None and label not in classes:
        raise ValueError(f"{generator.display_name} cannot generate {label!r}; it has {classes}.")
    searched = (label,) if label is not None else classes
    per_class = pool_size // len(searched)
    if per_class < 1 or max_evals < len(searched):
        raise ValueError("The pool and evaluation budgets must allow one cell per class.")
    clock = Budget(time_budget_s, max_evals)
    rng = np.random.default_rng(seed)
    search = _Search(
        generator, _Objective.build(image, classifier), label is None and generator.conditional
    )

    def report(best: float) -> None:
        if progress is not None:
            progress(clock.fraction(), float(best))

    # Pool, starts, then the evolution strategy's refinement.
    pool = _score_pool(search, searched, per_class, seed, clock, report)
    runs = _start_runs(pool, searched, search)
    pool_best = min(r.best_loss for r in runs)
    best = _refine(runs, search, rng, clock, pool.per_cell_s, report)

    z, weights = search.decode(best.best_x[None], best.fixed_weights)
    reconstruction = np.asarray(best.best_image, np.uint8)
    result = InversionResult(
        z=z[0],
        class_weights=weights[0],
        label=classes[int(np.argmax(weights[0]))],
        reconstruction=reconstruction,
        loss=best.best_loss,
        ssim=metrics.ssim(image, reconstruction),
        evals=clock.evals,
        seconds=clock.elapsed,
        pool_best_loss=pool_best,
        pool_mean_loss=pool.mean_loss,
    )
    if progress is not None:
        progress(1.0, result.loss)
    return result


def edit(
    result: InversionResult,
    generator: CellGenerator,
    amount: float,
    control: str | None = None,
) -> np.ndarray:
    """The inverted cell pushed towards Parasitized (+) or Uninfected (-).

    Args:
        result: An ``invert`` result for this generator.
        generator: The generator that was inverted.
        amount: In [``infection.AMOUNT_MIN``, ``infection.AMOUNT_MAX``]; see ``infection.push``.
        control: One of ``infection.CONTROLS``; None for ``infection.default_control``
            (the class input of a conditional generator, else the fitted direction).

    Returns:
        uint8 [S, S, 3]; the reconstruction itself for ``amount == 0``.

    Raises:
        ValueError: For an amount out of range, or a control the generator lacks.
    """
    amount = float(amount)
    if amount == 0.0:
        return result.reconstruction.copy()
    control = control or infection.default_control(generator)
    z, weights = infection.push(
        generator, result.z[None], result.class_weights[None], amount, control
    )
    return render(generator, z, weights)[0]
