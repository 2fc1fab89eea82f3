"""The training scripts under torchrun: two CPU processes with the gloo backend."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from harness.fakes import write_fake_nih_tree  # noqa: E402
from malgan.data import CLASSES, load_dataset  # noqa: E402
from malgan.nn.registry import rebuild  # noqa: E402
from tests.support.paths import REPO_ROOT  # noqa: E402
from train import models  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built"),
]

WORLD = 2
SMALL_CH = 8
# Two processes start torch, join the group and train at smoke size.
RUN_TIMEOUT_S = 300
# Runs each rank's script under an audit hook that records every file it opens for writing
# (or creates, renames or removes) below the run folder, one JSON list per rank.
AUDIT_WRAPPER = """
import json, os, runpy, sys

out = os.path.realpath(sys.argv[1])
record = sys.argv[2]
module = sys.argv[3]
writes = []
WRITE_EVENTS = {"os.mkdir", "os.rename", "os.remove", "shutil.copyfile"}


def inside(path):
    try:
        path = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return path == out or path.startswith(out + os.sep)


def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1], args[2]
        writing = (mode and any(c in mode for c in "wax+")) or (
            mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
        if writing and inside(args[0]):
            writes.append(os.fsdecode(args[0]))
    elif event in WRITE_EVENTS and any(inside(a) for a in args[:2] if a is not None):
        writes.append(f"{event} {args[0]}")


sys.addaudithook(hook)
sys.argv = [module, *sys.argv[4:]]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
finally:
    rank = os.environ.get("RANK", "0")
    with open(f"{record}.{rank}.json", "w") as fh:
        json.dump(writes, fh)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def nih(tmp_path_factory) -> dict[str, Path]:
    """A fake NIH folder whose decode cache exists before any rank starts (no write race)."""
    root = tmp_path_factory.mktemp("ddp")
    data = write_fake_nih_tree(root / "nih")
    cache = root / "cache"
    load_dataset(data, cache_dir=cache, progress=False)
    wrapper = root / "audit_wrapper.py"
    wrapper.write_text(AUDIT_WRAPPER)
    return {"data": data, "cache": cache, "root": root, "wrapper": wrapper}


def _torchrun(nih: dict[str, Path], module: str, name: str, *extra: str) -> tuple[Path, dict]:
    """Run ``module --smoke`` on two ranks; return the run folder and each rank's writes."""
    out = nih["root"] / name
    record = nih["root"] / f"{name}_writes"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(WORLD),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        str(nih["wrapper"]),
        str(out),
        str(record),
        module,
        "--data",
        str(nih["data"]),
        "--out",
        str(out),
        "--smoke",
        "--cache-dir",
        str(nih["cache"]),
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    writes = {rank: json.loads(Path(f"{record}.{rank}.json").read_text()) for rank in range(WORLD)}
    return out, writes


def _check_rank_zero_only(out: Path, writes: dict[int, list[str]]) -> dict:
    assert writes[0], "rank 0 wrote nothing"
    assert writes[1] == [], f"rank 1 wrote {writes[1]}"
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == WORLD
    # One log, written once: no line is repeated by a second process.
    lines = (out / "log.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(lines) == len(set(lines))
    assert [r for r in records if r.get("event") == "done"] == records[-1:]
    assert not list(out.glob(".*.tmp")), "a temporary checkpoint was left behind"
    return config


def test_classifier_under_torchrun(nih):
    out, writes = _torchrun(nih, "train.classifier", "classifier", "--arch", "simple_cnn")
    _check_rank_zero_only(out, writes)
    ckpt = torch.load(out / models.FINAL, map_location="cpu", weights_only=True)
    net = rebuild(ckpt)
    assert all(torch.isfinite(p).all() for p in net.state_dict().values())
    logits, _ = net(torch.zeros(2, 3, 64, 64))
    assert torch.isfinite(logits).all()
    records = map(json.loads, (out / "log.jsonl").read_text().splitlines())
    assert [r["epoch"] for r in records if "val_accuracy" in r] == [1, 2]


@pytest.mark.parametrize(
    ("module", "extra"),
    [("train.seed_gan", ("--class-name", "Parasitized")), ("train.cgan", ("--ch", str(SMALL_CH)))],
)
def test_gan_under_torchrun(nih, module, extra):
    name = module.split(".")[1]
    out, writes = _torchrun(nih, module, name, *extra)
    _check_rank_zero_only(out, writes)
    ckpt = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    net = rebuild(ckpt)
    assert all(torch.isfinite(t).all() for t in net.state_dict().values())
    z = torch.randn(2, net.z_dim)
    with torch.no_grad():
        images = net(z, torch.eye(len(CLASSES))) if module == "train.cgan" else net(z)
    assert torch.isfinite(images).all()
    snapshots = sorted(p.name for p in (out / "snapshots").glob("*.png"))
    assert snapshots and all(name.split("_iter_")[0] in CLASSES for name in snapshots)
