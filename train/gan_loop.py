"""The iteration loop shared by the GAN scripts: resume, graph replay, logs, snapshots, probes."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from malgan import metrics
from malgan.data import CLASSES, CellSet
from malgan.imaging import make_grid
from train import accel, config, models, runs

BEST = "best.pt"
SNAPSHOT_CELLS = 25
SNAPSHOT_DIR = "snapshots"
# Iterations at which the report's figures show sample grids.
REPORT_MILESTONES = (1, 5000, 10000, 15000)


@dataclass(frozen=True)
class GANLoopOptions:
    """Options every GAN script shares: data, schedule of logs, snapshots and checkpoints."""

    data: str = field(default="", metadata={"help": "Folder in the NIH layout."})
    seed: int = 0
    iterations: int = 15000
    z_dim: int = 128
    log_every: int = 100
    snapshot_every: int = 2500
    checkpoint_every: int = 2500
    probe_every: int = 1000
    probe_cells: int = 256
    classifier: str = field(
        default="", metadata={"help": "Classifier model.pt for recovery probes."}
    )
    minutes: float = field(
        default=0.0,
        metadata={"help": "Wall-time budget of the loop in minutes (0: none); it stops early."},
    )
    keep_best: bool = field(
        default=True,
        metadata={"help": "Export the probe that is best on both classes, not the last state."},
    )
    cuda_graph: bool = True
    cache_dir: str = ""
    smoke: bool = False


SMOKE_LOOP = {
    "iterations": 12,
    "batch": 8,
    "log_every": 2,
    "snapshot_every": 6,
    "checkpoint_every": 4,
    "probe_every": 6,
    "probe_cells": 8,
}


LoopConfig = TypeVar("LoopConfig", bound=GANLoopOptions)


def smoke_loop(cfg: LoopConfig, **extra: Any) -> LoopConfig:
    """A GAN config that runs the whole path in seconds on a CPU."""
    names = {f.name for f in fields(cfg)}
    return config.replace(cfg, **{k: v for k, v in {**SMOKE_LOOP, **extra}.items() if k in names})


@dataclass
class GANParts:
    """What a GAN script hands to ``run_loop``.

    Attributes:
        step: One training iteration; keeps its tensors static (see ``accel.graphed``).
        modules: Networks to checkpoint, by name (the generator to sample from is ``sampler``).
        optimizers: Optimisers to checkpoint, by name.
        losses: Static tensor accumulating the loss values of each step.
        loss_names: Names of the entries of ``losses``.
        sample: ``sample(z, label_index) -> images [-1, 1]`` with the generator to judge.
        net_spec: Constructor arguments of the generator, stored with it.
        classes: Classes this generator makes (for snapshots and probes).
        generators: Torch generators used inside ``step`` (registered with the CUDA graph).
    """

    step: Callable[[], None]
    modules: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    losses: torch.Tensor
    loss_names: tuple[str, ...]
    sample: Callable[[torch.Tensor, int], torch.Tensor]
    net_spec: dict[str, Any]
    classes: tuple[str, ...]
    sampler: str = "G"
    generators: list[torch.Generator] = field(default_factory=list)


def snapshot_iterations(iterations: int, every: int) -> set[int]:
    """The report's milestones (1, 5,000, 10,000, 15,000) that fit, every ``every``, and the end."""
    marks = {m for m in REPORT_MILESTONES if m <= iterations}
    marks |= set(range(every, iterations + 1, every)) if every > 0 else set()
    return marks | {iterations}


# Smallest coverage a probe's score counts: one real cell's ball in a thousand.
COVERAGE_FLOOR = 1e-3


def probe_score(record: dict[str, Any], classes: Sequence[str], n_cells: int) -> float:
    """How good a probe is on every class at once: sum of log recovery minus log FD plus log
    coverage.

    Scale-free in every measure, so halving one class's Fréchet distance is worth as much as
    doubling its recovery or its coverage, and a class near zero recovery or coverage sinks the
    score whatever the other class does. Recovery is floored at half a cell and coverage at
    ``COVERAGE_FLOOR`` so that zero stays finite. Coverage counts only where the record has it
    for every class (the validation patients hold more than k cells of each).
    """
    floor = 0.5 / max(n_cells, 1)
    score = sum(
        math.log(max(record[c], floor)) - math.log(max(record["fd"][c], 1e-6)) for c in classes
    )
    coverage = record.get("coverage") or {}
    if all(isinstance(coverage.get(c), float) and math.isfinite(coverage[c]) for c in classes):
        score += sum(math.log(max(coverage[c], COVERAGE_FLOOR)) for c in classes)
    return float(score)


@dataclass
class Probe:
    """The classifier that judges a generator during training, and real validation features.

    Recovery, the Fréchet distance and k-NN recall and coverage (k = 5, in the classifier's
    features) are measured against cells of the validation patients, never the test patients,
    so choosing the best probe does not peek at the final evaluation.
    """

    net: torch.nn.Module
    input_scale: str
    real_feats: dict[str, np.ndarray]

    @classmethod
    def load(cls, path: str, device: torch.device, reference: CellSet | None) -> Probe | None:
        """The probe of ``path`` with features of ``reference`` (None without a classifier)."""
        if not path or not Path(path).exists():
            return None
        net, ckpt = models.load_classifier(path, device)
        scale = ckpt["input_scale"]
        real_feats: dict[str, np.ndarray] = {}
        if reference is not None and len(reference):
            _, feats = models.predict(net, models.to_device_nchw(reference.images, device), scale)
            real_feats = {c: feats[reference.labels == i] for i, c in enumerate(CLASSES)}
        return cls(net=net, input_scale=scale, real_feats=real_feats)

    def measure(self, images: torch.Tensor, label: str) -> dict[str, float | None]:
        """Recovery, and the Fréchet distance, k-NN recall and coverage against real cells of
        ``label``, for generated [-1, 1] cells (None where there are too few real cells)."""
        proba, feats = models.predict(self.net, models.to_uint8(images), self.input_scale)
        out: dict[str, float | None] = {
            "recovery": metrics.recovery(proba, CLASSES.index(label))["rate"],
            "fd": None,
            "recall": None,
            "coverage": None,
        }
        real = self.real_feats.get(label)
        if real is not None and len(real) > 1:
            out["fd"] = metrics.frechet_distance(feats, real)
        if real is not None and min(len(real), len(feats)) > metrics.DIVERSITY_K:
            knn = metrics.precision_recall_density_coverage(real, feats)
            out["recall"], out["coverage"] = knn["recall"], knn["coverage"]
        return out


def run_loop(
    run: runs.Run, cfg: GANLoopOptions, parts: GANParts, reference: CellSet | None = None
) -> dict[str, Any]:
    """Train ``cfg.iterations`` iterations of ``parts.step``, resuming from a checkpoint.

    The options shared by every GAN script (``GANLoopOptions``) schedule the loop; it stops
    early when ``cfg.minutes`` of wall time (over every resumption) are spent. With a probe
    classifier and ``reference`` cells (the validation patients), each probe measures recovery
    and the Fréchet distance per class, and with ``keep_best`` the final model is the sampler
    of the probe with the best ``probe_score``.

    Returns:
        A summary with the loss and probe histories and the throughput.
    """
    device = run.device
    state: dict[str, Any] = {
        "iteration": 0,
        "losses": [],
        "probes": [],
        "train_seconds": 0.0,
        "best": None,
    }
    ckpt_path = run.out / models.CHECKPOINT

    # Resume.
    if ckpt_path.exists():
        ckpt = runs.load_checkpoint(ckpt_path, device)
        for name, module in parts.modules.items():
            module.load_state_dict(ckpt["modules"][name])
        for name, opt in parts.optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
        for gen, rng_state in zip(parts.generators, ckpt["rng"], strict=True):
            gen.set_state(rng_state.to("cpu"))
        state = {"best": None, **ckpt["state"]}
        runs.log.info("Resumed %s at iteration %d", run.out, state["iteration"])

    # Fixed latents for snapshots and probes, the same for every run with this seed.
    fixed = torch.Generator().manual_seed(cfg.seed)
    snap_z = torch.randn(SNAPSHOT_CELLS, cfg.z_dim, generator=fixed).to(device)
    probe_z = torch.randn(cfg.probe_cells, cfg.z_dim, generator=fixed).to(device)
    probe = Probe.load(cfg.classifier, device, reference)
    marks = snapshot_iterations(cfg.iterations, cfg.snapshot_every)
    if run.main:
        (run.out / SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)
    sampler = parts.modules[parts.sampler]

    def flush_losses(iteration: int, steps: int) -> None:
        values = (parts.losses / max(steps, 1)).tolist()
        parts.losses.zero_()
        record = dict(zip(parts.loss_names, values, strict=True))
        runs.check_finite(record, iteration)
        state["losses"].append({"iteration": iteration, **record})
        run.log({"iteration": iteration, **record})

    @torch.no_grad()
    def snapshot(iteration: int) -> None:
        # Every process holds the same generator; one writes the grids.
        if not run.main:
            return
        was = sampler.training
        sampler.eval()
        for label, name in enumerate(parts.classes):
            images = models.to_uint8_nhwc(parts.sample(snap_z, label))
            grid = make_grid(images, ncol=5)
            Image.fromarray(grid).save(run.out / SNAPSHOT_DIR / f"{name}_iter_{iteration:06d}.png")
        sampler.train(was)

    @torch.no_grad()
    def measure_probe(iteration: int, seconds: float) -> None:
        if probe is None or not run.main:
            return
        was = sampler.training
        sampler.eval()
        record: dict[str, Any] = {"iteration": iteration, "minutes": round(seconds / 60, 2)}
        fds: dict[str, float] = {}
        for label, name in enumerate(parts.classes):
            measured = probe.measure(parts.sample(probe_z, label), name)
            record[name] = measured["recovery"]
            if measured["fd"] is not None:
                fds[name] = measured["fd"]
            for key in ("recall", "coverage"):
                if measured[key] is not None:
                    record.setdefault(key, {})[name] = measured[key]
        sampler.train(was)
        if len(fds) == len(parts.classes):
            record["fd"] = fds
            record["score"] = probe_score(record, parts.classes, cfg.probe_cells)
            best = state["best"]
            if best is None or record["score"] > best["score"]:
                state["best"] = {"iteration": iteration, "score": record["score"]}
                runs.save_checkpoint(
                    {"state_dict": runs.to_cpu_state(sampler), "probe": record},
                    run.out / BEST,
                )
        state["probes"].append(record)
        run.log({"probe": record})

    def save(iteration: int) -> None:
        if not run.main:
            return
        runs.save_checkpoint(
            {
                "config": asdict(cfg),
                "modules": {k: runs.to_cpu_state(m) for k, m in parts.modules.items()},
                "optimizers": {k: o.state_dict() for k, o in parts.optimizers.items()},
                "rng": [g.get_state() for g in parts.generators],
                "state": state,
            },
            ckpt_path,
        )

    start = state["iteration"]
    # Capture (its warm-up steps are real iterations).
    step = parts.step
    warm = 0
    if cfg.cuda_graph and device.type == "cuda" and start < cfg.iterations:
        step, warm = accel.graphed(parts.step, device, True, generators=parts.generators)
    # Which path ran (the last attempt's): a failed capture falls back to the plain step.
    state["cuda_graph"] = step is not parts.step
    iteration = start + warm
    steps_since_flush = warm
    budget = cfg.minutes * 60 if cfg.minutes > 0 else math.inf
    with tqdm(
        total=cfg.iterations, initial=iteration, desc=run.out.name, disable=not run.main
    ) as bar:
        t0 = time.perf_counter()

        def spent() -> float:
            if device.type == "cuda":
                torch.cuda.synchronize()
            return state["train_seconds"] + time.perf_counter() - t0

        while iteration < cfg.iterations:
            step()
            iteration += 1
            steps_since_flush += 1
            bar.update(1)
            # The budget is checked at log steps, where every process agrees on it.
            last = iteration == cfg.iterations or (
                iteration % cfg.log_every == 0 and run.agree(spent() >= budget)
            )
            due_log = iteration % cfg.log_every == 0 or last
            due_ckpt = iteration % cfg.checkpoint_every == 0 or last
            if due_log or due_ckpt or iteration in marks:
                flush_losses(iteration, steps_since_flush)
                steps_since_flush = 0
            if iteration in marks or last:
                snapshot(iteration)
            if cfg.probe_every and (iteration % cfg.probe_every == 0 or last):
                measure_probe(iteration, spent())
            if due_ckpt:
                state["iteration"] = iteration
                state["train_seconds"] = spent()
                t0 = time.perf_counter()
                save(iteration)
                run.barrier()
            if last:
                break
    state["iteration"] = iteration

    # Final generator, self-describing: the best probe's weights when asked and measured.
    if run.main:
        weights = runs.to_cpu_state(sampler)
        if cfg.keep_best and state["best"] is not None:
            weights = runs.load_checkpoint(run.out / BEST)["state_dict"]
        runs.save_checkpoint(
            {
                "config": asdict(cfg),
                "net": parts.net_spec,
                "state_dict": weights,
                "classes": list(parts.classes),
                "state": state,
            },
            run.out / models.FINAL,
        )
    # Over every attempt: train_seconds counts them all (capture warm-up steps are not timed).
    timed = iteration - warm
    its = timed / max(state["train_seconds"], 1e-9) if iteration > start + warm else 0.0
    summary = {
        "iterations": iteration,
        "train_seconds": state["train_seconds"],
        "iterations_per_second": its,
        "cuda_graph": state["cuda_graph"],
        "losses": state["losses"],
        "probes": state["probes"],
        "best": state["best"],
    }
    run.log(
        {
            "event": "done",
            "iterations": iteration,
            "iterations_per_second": its,
            "cuda_graph": state["cuda_graph"],
            "best": state["best"],
        }
    )
    return summary
