"""A training run on disk: its folder, log and config, its provenance, and its checkpoints.

A run writes ``config.json`` and ``log.jsonl`` into its folder (``start_run`` / ``running``),
records the commit and the hardware it ran on, and saves self-describing checkpoints
atomically.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from train.accel import pick_device

log = logging.getLogger("malgan.train")
COMMIT_ENV = "MALGAN_GIT_COMMIT"


# Provenance.
def git_commit() -> str:
    """The current git commit (with ``-dirty`` when the tree has changes), or ``unknown``.

    ``$MALGAN_GIT_COMMIT`` names it where the checkout has no git metadata (a copied tree).
    """
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def hardware() -> dict[str, Any]:
    """What the run ran on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def finite_json(value: Any) -> Any:
    """Replace NaN and infinities (for example the AUC of a diverged network) with None."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


# Runs.
@dataclass
class Run:
    """One script's run: its folder, device, process group and JSONL log."""

    out: Path
    device: torch.device
    rank: int = 0
    world: int = 1
    started: float = field(default_factory=time.perf_counter)
    _log_file: Any = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``log.jsonl`` (main process only).

        Non-finite numbers (the loss of a diverged run) are written as null: NaN is not JSON.
        """
        if self.main and self._log_file is not None:
            line = json.dumps(finite_json({"t": round(self.elapsed(), 3), **record}))
            self._log_file.write(line + "\n")
            self._log_file.flush()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def agree(self, flag: bool) -> bool:
        """True on every process when it is true on any (one all-reduce; free for one process)."""
        if self.world <= 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def start_run(cfg: Any, out: str | os.PathLike) -> Run:
    """Create the run folder, join the process group under torchrun, write ``config.json``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device(int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    run = Run(out=Path(out), device=device, rank=rank, world=world)
    if run.main:
        run.out.mkdir(parents=True, exist_ok=True)
        config = {**asdict(cfg), "world_size": world, "device": str(device)}
        (run.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        run._log_file = open(run.out / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115
    run.barrier()
    return run


def end_run(run: Run) -> None:
    """Close the log and leave the process group."""
    run.close()
    if run.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def running(cfg: Any, out: str | os.PathLike) -> Iterator[Run]:
    """``start_run`` ... ``end_run``, also when training stops on an error."""
    run = start_run(cfg, out)
    try:
        yield run
    finally:
        end_run(run)


# Checkpoints.
def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """Save atomically: write a temporary file beside the target, fsync, then rename.

    A kill during the save leaves the previous checkpoint intact; the next successful save
    removes the partial file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    # Partial files of saves that a kill interrupted.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint`` (tensors and plain data only)."""
    return torch.load(path, map_location=device, weights_only=True)


def to_cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite."""


def check_finite(losses: dict[str, float], iteration: int) -> None:
    """Stop the run with a message naming the iteration when a loss is not finite."""
    bad = {k: v for k, v in losses.items() if not np.isfinite(v)}
    if bad:
        raise NonFiniteLossError(
            f"Non-finite loss at iteration {iteration}: {bad}. Training stopped; the last good "
            "checkpoint is kept. Lower the learning rate or check the data."
        )


@contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Initialise networks from ``seed``, leaving torch's global generator as it was.

    Constructors draw their weights from the global generator, so without this a run's initial
    weights would depend on whatever the process drew before (an earlier pipeline stage, a
    previous test), not on its seed alone.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
