"""Verified ONNX files: sidecars, sha256, low-precision copies and CPU sessions (no torch)."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnxruntime as ort

from malgan.errors import ModelError
from malgan.onnx_rewrite import SUBPIXEL, rewrite_bytes

# Threads per session: the dashboard shares one session between all its users, so a session
# never takes more than this many cores.
DEFAULT_THREADS = 2
# Precisions a model can run at: its exported fp32 file, or an int8 copy beside it that passed
# parity (``train/quantize.py``).
FP32 = "fp32"
INT8 = "int8"
PRECISIONS = (FP32, INT8)
# Whether sessions made now keep ONNX Runtime's memory arena (see ``memory_arena``).
_ARENA = contextvars.ContextVar("malgan_memory_arena", default=False)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    return sha256_bytes(Path(path).read_bytes())


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """The JSON sidecar that travels with an ONNX file."""
    return Path(model_path).with_suffix(".json")


def low_precision_path(model_path: str | os.PathLike, precision: str) -> Path:
    """Where the ``precision`` copy of a model file sits: ``<stem>.<precision>.onnx``."""
    path = Path(model_path)
    return path if precision == FP32 else path.with_name(f"{path.stem}.{precision}.onnx")


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object, turning every failure into a ModelError that names the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"The {what} {path} is missing.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"The {what} {path} cannot be read ({err}).") from None
    if not isinstance(data, dict):
        raise ModelError(f"The {what} {path} does not hold a JSON object.")
    return data


@contextlib.contextmanager
def memory_arena() -> Iterator[None]:
    """Sessions made inside this block keep ONNX Runtime's CPU memory arena.

    One process running large batches (``malgan-synth``) then reuses its buffers instead of
    asking the system for fresh pages on every call: the generator and the classifier take 1.1
    to 1.25x less CPU per cell at the same results. The dashboard's shared sessions are made
    outside, so that their memory goes back after each call.
    """
    token = _ARENA.set(True)
    try:
        yield
    finally:
        _ARENA.reset(token)


def _session_options(threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, min(threads, os.cpu_count() or 1))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Idle threads sleep instead of spinning: one server shares a few cores among many users.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Without the arena, memory goes back after each call instead of growing with the number of
    # concurrent requests (measured: 10 concurrent users held 1.1 GiB with it, 0.5 GiB without,
    # at the same speed); a batch export asks for it (``memory_arena``).
    opts.enable_cpu_mem_arena = _ARENA.get()
    return opts


def session_from_bytes(data: bytes, name: str, *, threads: int = DEFAULT_THREADS) -> Any:
    """An ONNX Runtime CPU session over a model's bytes (``name`` is for the error message).

    Raises:
        ModelError: ONNX Runtime rejects the bytes.
    """
    try:
        return ort.InferenceSession(
            data, sess_options=_session_options(threads), providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # ONNX Runtime raises its own exception types
        raise ModelError(f"ONNX Runtime cannot load {name}: {err}") from None


def usable_copy(path: str | os.PathLike, precision: str) -> Path:
    """The file to load for ``precision``: its copy when one made from this very file exists.

    A copy is used only when its sidecar names the current file's sha256 as its source, so a
    copy left from an earlier model is never used; otherwise the fp32 file itself.

    Raises:
        ValueError: For a precision outside ``PRECISIONS``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    path = Path(path)
    copy = low_precision_path(path, precision)
    if copy == path or not copy.is_file() or not sidecar_path(copy).is_file():
        return path
    try:
        source = read_json(sidecar_path(copy), "model sidecar").get("source_sha256")
        current = read_json(sidecar_path(path), "model sidecar").get("sha256")
    except ModelError:
        return path
    return copy if source and source == current else path


def load_verified(
    path: str | os.PathLike, kind: str, *, threads: int = DEFAULT_THREADS, rewrite: bool = False
):
    """Open an ONNX file after checking it against the sha256 in its sidecar.

    Args:
        path: The ``.onnx`` file.
        kind: The ``kind`` the sidecar must declare ("generator" or "classifier").
        threads: Intra-op threads for the session.
        rewrite: Run the verified bytes through the exact sub-pixel rewrite
            (``malgan.onnx_rewrite``); the sidecar then gains ``graph: "sub-pixel"``.

    Returns:
        ``(session, meta)``: the ONNX Runtime session and the sidecar dict.

    Raises:
        ModelError: The file or sidecar is missing, the hash does not match (truncated, swapped
            or altered file), the sidecar declares another kind, or ONNX Runtime rejects the file.
    """
    path = Path(path)
    meta = read_json(sidecar_path(path), "model sidecar")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"The model file {path} is missing.") from None
    except OSError as err:
        raise ModelError(f"The model file {path} cannot be read ({err}).") from None
    if meta.get("kind") != kind:
        raise ModelError(
            f"{path.name} is described as a {meta.get('kind', 'unknown')} model, not a {kind}."
        )
    expected = meta.get("sha256")
    if not expected:
        raise ModelError(f"The sidecar of {path.name} has no sha256, so it cannot be verified.")
    actual = sha256_bytes(data)
    if actual != expected:
        raise ModelError(
            f"{path.name} does not match its sidecar (sha256 {actual[:12]}… instead of "
            f"{expected[:12]}…): the file is truncated, replaced or corrupt. Export it again."
        )
    if rewrite:
        data, pairs = rewrite_bytes(data)
        if pairs:
            meta = {**meta, "graph": SUBPIXEL, "graph_rewrites": pairs}
    session = session_from_bytes(data, path.name, threads=threads)
    declared = [spec["name"] for spec in meta.get("inputs", [])]
    present = [node.name for node in session.get_inputs()]
    if declared != present:
        raise ModelError(f"{path.name} has inputs {present}, but its sidecar declares {declared}.")
    return session, meta
