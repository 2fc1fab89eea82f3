"""Making training fast: the device, data parallelism, CUDA graphs, bf16 autocast, fused Adam.

Each piece is a no-op where it does not apply (one process, a CPU, a CPU without native bf16),
so the scripts call them unconditionally.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger("malgan.train")


def pick_device(local_rank: int = 0) -> torch.device:
    """CUDA when present, else the CPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


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
