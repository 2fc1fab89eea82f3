"""The iteration loop shared by the GAN scripts: resume, graph replay, logs, snapshots, probes."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

import torch
from PIL import Image
from tqdm import tqdm

from malgan.data import CellSet
from malgan.imaging import make_grid
from train import accel, config, models, runs
from train.probes import Probe, probe_score

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
        default="",
        metadata={"help": "Classifier for recovery probes: a model.pt, or an exported .onnx."},
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


@dataclass
class _Loop:
    """The state of one GAN run and what it does between steps: log, snapshot, probe, save."""

    run: runs.Run
    cfg: GANLoopOptions
    parts: GANParts
    state: dict[str, Any]
    probe: Probe | None
    snap_z: torch.Tensor  # [SNAPSHOT_CELLS, z_dim]
    probe_z: torch.Tensor  # [probe_cells, z_dim]

    @classmethod
    def start(
        cls, run: runs.Run, cfg: GANLoopOptions, parts: GANParts, reference: CellSet | None
    ) -> _Loop:
        """A fresh loop, or the one its checkpoint saved (networks, optimisers, generators)."""
        state: dict[str, Any] = {
            "iteration": 0,
            "losses": [],
            "probes": [],
            "train_seconds": 0.0,
            "best": None,
        }
        ckpt_path = run.out / models.CHECKPOINT
        if ckpt_path.exists():
            ckpt = runs.load_checkpoint(ckpt_path, run.device)
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
        snap_z = torch.randn(SNAPSHOT_CELLS, cfg.z_dim, generator=fixed).to(run.device)
        probe_z = torch.randn(cfg.probe_cells, cfg.z_dim, generator=fixed).to(run.device)
        probe = Probe.load(cfg.classifier, run.device, reference)
        if run.main:
            (run.out / SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)
        return cls(run, cfg, parts, state, probe, snap_z, probe_z)

    @property
    def sampler(self) -> torch.nn.Module:
        return self.parts.modules[self.parts.sampler]

    def flush_losses(self, iteration: int, steps: int) -> None:
        """Log the mean losses since the last flush; stop on a non-finite one."""
        values = (self.parts.losses / max(steps, 1)).tolist()
        self.parts.losses.zero_()
        record = dict(zip(self.parts.loss_names, values, strict=True))
        runs.check_finite(record, iteration)
        self.state["losses"].append({"iteration": iteration, **record})
        self.run.log({"iteration": iteration, **record})

    @torch.no_grad()
    def snapshot(self, iteration: int) -> None:
        """Save a grid of the fixed latents' cells per class."""
        # Every process holds the same generator; one writes the grids.
        if not self.run.main:
            return
        sampler, was = self.sampler, self.sampler.training
        sampler.eval()
        for label, name in enumerate(self.parts.classes):
            images = models.to_uint8_nhwc(self.parts.sample(self.snap_z, label))
            grid = make_grid(images, ncol=5)
            path = self.run.out / SNAPSHOT_DIR / f"{name}_iter_{iteration:06d}.png"
            Image.fromarray(grid).save(path)
        sampler.train(was)

    @torch.no_grad()
    def measure_probe(self, iteration: int, seconds: float) -> None:
        """Measure the probe per class; keep the best probe's weights."""
        if self.probe is None or not self.run.main:
            return
        sampler, was = self.sampler, self.sampler.training
        sampler.eval()
        record: dict[str, Any] = {"iteration": iteration, "minutes": round(seconds / 60, 2)}
        fds: dict[str, float] = {}
        for label, name in enumerate(self.parts.classes):
            measured = self.probe.measure(self.parts.sample(self.probe_z, label), name)
            record[name] = measured["recovery"]
            if measured["fd"] is not None:
                fds[name] = measured["fd"]
            for key in ("recall", "coverage"):
                if measured[key] is not None:
                    record.setdefault(key, {})[name] = measured[key]
        sampler.train(was)
        if len(fds) == len(self.parts.classes):
            record["fd"] = fds
            record["score"] = probe_score(record, self.parts.classes, self.cfg.probe_cells)
            best = self.state["best"]
            if best is None or record["score"] > best["score"]:
                self.state["best"] = {"iteration": iteration, "score": record["score"]}
                runs.save_checkpoint(
                    {"state_dict": runs.to_cpu_state(sampler), "probe": record},
                    self.run.out / BEST,
                )
        self.state["probes"].append(record)
        self.run.log({"probe": record})

    def save(self) -> None:
        """Checkpoint everything a resumption needs."""
        if not self.run.main:
            return
        parts = self.parts
        runs.save_checkpoint(
            {
                "config": asdict(self.cfg),
                "modules": {k: runs.to_cpu_state(m) for k, m in parts.modules.items()},
                "optimizers": {k: o.state_dict() for k, o in parts.optimizers.items()},
                "rng": [g.get_state() for g in parts.generators],
                "state": self.state,
            },
            self.run.out / models.CHECKPOINT,
        )

    def save_final(self) -> None:
        """The final generator, self-describing: the best probe's weights when asked and
        measured."""
        if not self.run.main:
            return
        weights = runs.to_cpu_state(self.sampler)
        if self.cfg.keep_best and self.state["best"] is not None:
            weights = runs.load_checkpoint(self.run.out / BEST)["state_dict"]
        runs.save_checkpoint(
            {
                "config": asdict(self.cfg),
                "net": self.parts.net_spec,
                "state_dict": weights,
                "classes": list(self.parts.classes),
                "state": self.state,
            },
            self.run.out / models.FINAL,
        )

    def summary(self, iterations_per_second: float) -> dict[str, Any]:
        """What the run did, logged as its last line and returned."""
        state = self.state
        self.run.log(
            {
                "event": "done",
                "iterations": state["iteration"],
                "iterations_per_second": iterations_per_second,
                "cuda_graph": state["cuda_graph"],
                "best": state["best"],
            }
        )
        return {
            "iterations": state["iteration"],
            "train_seconds": state["train_seconds"],
            "iterations_per_second": iterations_per_second,
            "cuda_graph": state["cuda_graph"],
            "losses": state["losses"],
            "probes": state["probes"],
            "best": state["best"],
        }


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
    # Resume.
    loop = _Loop.start(run, cfg, parts, reference)
    state = loop.state
    marks = snapshot_iterations(cfg.iterations, cfg.snapshot_every)
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

    # Train.
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
                loop.flush_losses(iteration, steps_since_flush)
                steps_since_flush = 0
            if iteration in marks or last:
                loop.snapshot(iteration)
            if cfg.probe_every and (iteration % cfg.probe_every == 0 or last):
                loop.measure_probe(iteration, spent())
            if due_ckpt:
                state["iteration"] = iteration
                state["train_seconds"] = spent()
                t0 = time.perf_counter()
                loop.save()
                run.barrier()
            if last:
                break
    state["iteration"] = iteration

    # Final model and summary over every attempt: train_seconds counts them all (capture
    # warm-up steps are not timed).
    loop.save_final()
    timed = iteration - warm
    its = timed / max(state["train_seconds"], 1e-9) if iteration > start + warm else 0.0
    return loop.summary(its)
