"""Shared pieces of the training scripts: configs, runs, checkpoints, devices and data."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import numpy as np
import torch
import torch.distributed as dist

from malgan.data import CLASSES, CellSet, load_dataset
from malgan.errors import DataError, ModelError

log = logging.getLogger("malgan.train")
T = TypeVar("T")
# Cells per class and split kept by --smoke: enough for every code path, seconds on a CPU.
SMOKE_CELLS = 24
COMMIT_ENV = "MALGAN_GIT_COMMIT"
# Iterations at which the report's figures show sample grids.
REPORT_MILESTONES = (1, 5000, 10000, 15000)


# Configs.
def _flag_type(tp: Any) -> tuple[Any, dict[str, Any]]:
    origin = get_origin(tp)
    if tp is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    if origin is tuple:
        inner = get_args(tp)[0]
        # "*" so that an empty tuple round-trips through config_flags.
        return inner, {"nargs": "*"}
    return tp, {}


def parse_config(cls: type[T], argv: Sequence[str] | None = None, description: str = "") -> T:
    """Build a frozen dataclass config from command-line flags named after its fields.

    Each field ``foo_bar`` becomes ``--foo-bar``; booleans get ``--foo`` / ``--no-foo``; tuple
    fields take several values. Field metadata ``help`` is shown by ``--help``.
    """
    parser = argparse.ArgumentParser(description=description or cls.__doc__)
    hints = get_type_hints(cls)
    for f in fields(cls):
        tp, extra = _flag_type(hints[f.name])
        kwargs: dict[str, Any] = {"default": f.default, "help": f.metadata.get("help", "")}
        if tp is not None:
            kwargs["type"] = tp
        kwargs.update(extra)
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)
    args = vars(parser.parse_args(argv))
    for f in fields(cls):
        if get_origin(hints[f.name]) is tuple:
            args[f.name] = tuple(args[f.name])
    return cls(**args)


def config_flags(cfg: Any) -> list[str]:
    """The command-line flags that rebuild ``cfg`` (inverse of ``parse_config``)."""
    flags: list[str] = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        name = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(name if value else "--no-" + f.name.replace("_", "-"))
        elif isinstance(value, tuple):
            flags += [name, *map(str, value)]
        else:
            flags += [name, str(value)]
    return flags


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


def pick_device(local_rank: int = 0) -> torch.device:
    """CUDA when present, else the CPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


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


# Data.
@dataclass(frozen=True)
class Splits:
    """The train/val/test cells of a data folder."""

    train: CellSet
    val: CellSet
    test: CellSet
    corrupt: tuple[str, ...]
    skipped: tuple[str, ...]


def _smoke_subset(cells: CellSet, per_class: int, rng: np.random.Generator) -> CellSet:
    keep: list[int] = []
    for label in range(len(CLASSES)):
        idx = np.flatnonzero(cells.labels == label)
        keep += sorted(rng.permutation(idx)[:per_class].tolist())
    return cells.subset(np.asarray(sorted(keep), dtype=np.int64))


def load_splits(
    data: str, *, cache_dir: str = "", seed: int = 0, smoke: bool = False, progress: bool = True
) -> Splits:
    """Decode (or read from cache) a data folder in the NIH layout and split it by patient."""
    loaded = load_dataset(data, cache_dir=cache_dir or None, seed=seed, progress=progress)
    parts = {name: loaded.split(name) for name in ("train", "val", "test")}
    if smoke:
        rng = np.random.default_rng(seed)
        parts = {k: _smoke_subset(v, SMOKE_CELLS, rng) for k, v in parts.items()}
    for name, cells in parts.items():
        if len(cells) == 0:
            raise ValueError(f"The {name} split of {data} is empty: too few patients.")
    return Splits(**parts, corrupt=loaded.corrupt, skipped=loaded.skipped)


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


# Distributed data parallelism.
def sync_gradients(params: Sequence[torch.nn.Parameter], world: int) -> None:
    """Average gradients over processes (data parallelism without wrapping the module).

    One all-reduce over a flattened buffer per call keeps it cheap; a no-op for one process.
    """
    if world <= 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(world)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_module(module: torch.nn.Module, world: int) -> None:
    """Give every process rank 0's weights."""
    if world > 1:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, 0)


# CUDA graphs.
WARMUP_STEPS = 3


def graphed(
    step: Callable[[], None],
    device: torch.device,
    enabled: bool,
    *,
    generators: Sequence[torch.Generator] = (),
) -> tuple[Callable[[], None], int]:
    """Capture ``step`` (a whole D+G or training step) in one CUDA graph and return its replay.

    At batch 32 the step is bound by kernel launches, not arithmetic; replaying a graph issues
    them all at once. On the CPU, or when disabled, ``step`` is returned unchanged. The step must
    keep its tensors static: sample data and noise inside it on the device from ``generators``
    (registered with the graph so that each replay draws new numbers), use capturable
    optimisers, and never read values back to the host.

    Returns:
        ``(run_one_step, warmup_steps)``: the warm-up steps before capture are real steps. Where
        the capture fails, ``run_one_step`` is ``step`` itself.
    """
    if not enabled or device.type != "cuda":
        return step, 0
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(WARMUP_STEPS):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    for gen in generators:
        if gen.device.type == "cuda":
            graph.register_generator_state(gen)
    try:
        with torch.cuda.graph(graph):
            step()
    except RuntimeError as err:
        # A capture changes nothing it recorded, so the step runs on uncaptured.
        log.warning("CUDA graph capture failed (%s); the step runs without a graph", err)
        torch.cuda.synchronize(device)
        return step, WARMUP_STEPS
    return graph.replay, WARMUP_STEPS


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively: CUDA, or a CPU with AVX512-BF16 or AMX.

    Elsewhere bf16 is emulated and slower than fp32, so autocast stays off there.
    """
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast when asked and native (weight cache off so CUDA graphs stay valid)."""
    return torch.autocast(
        device_type=device.type,
        dtype=torch.bfloat16,
        enabled=bf16 and bf16_native(device),
        cache_enabled=False,
    )


def channels_last(x: torch.Tensor | torch.nn.Module) -> Any:
    """NHWC memory layout: faster convolutions with cuDNN and with oneDNN on the CPU."""
    return x.to(memory_format=torch.channels_last)


def adam(params, *, lr: float, betas: tuple[float, float], device: torch.device, weight_decay=0.0):
    """Fused Adam(W); capturable on CUDA so that its step can live inside a CUDA graph."""
    kwargs: dict[str, Any] = {"lr": lr, "betas": betas, "weight_decay": weight_decay}
    if device.type == "cuda":
        kwargs.update(fused=True, capturable=True)
    cls = torch.optim.AdamW if weight_decay else torch.optim.Adam
    return cls(params, **kwargs)


def configure_logging() -> None:
    """Plain log lines on stderr for the training scripts."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    # The ONNX exporter's optimisation passes log every rewrite at INFO.
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# Errors a person can act on: their message is the whole story, so no traceback is shown.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    DataError,
    ModelError,
    NonFiniteLossError,
    FileNotFoundError,
    ValueError,
)
EXIT_USAGE = 2


def run_cli(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a script's ``main``; print an expected error as one clear line and exit with 2."""
    configure_logging()
    try:
        main(argv)
    except EXPECTED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def replace(cfg: T, **changes: Any) -> T:
    """A copy of a frozen config with some fields changed."""
    return dataclasses.replace(cfg, **changes)
