"""Training survives kills, crashes during saves, non-finite losses and bad data folders.

The scripts run as a person runs them (``python -m train.<script> ... --smoke``) on a fake NIH
folder. Subprocesses get one thread each (OMP_NUM_THREADS=1): on a shared two-core machine,
oversubscribed threads make smoke runs many times slower.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.fakes import write_fake_nih_tree
from tests.support.paths import REPO_ROOT

torch = pytest.importorskip("torch")

from malgan.data import CLASSES, load_dataset  # noqa: E402
from train import config, losses, runs, seed_gan  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# Seed of the kill times; each script draws its delay after its first checkpoint from it.
KILL_SEED = 20240611
MAX_KILL_DELAY_S = 1.0
POLL_S = 0.02
RUN_TIMEOUT_S = 180
SMOKE_ITERATIONS = 12  # the GAN scripts' --smoke schedule: checkpoints every 4 iterations
SMOKE_LOG_EVERY = 2
SMOKE_EPOCHS = 2  # the classifier's --smoke schedule: a checkpoint every epoch
# A GAN run short enough for a test: losses checked every iteration, checkpoints every 2.
SHORT_GAN = ["--iterations", "4", "--batch", "8", "--log-every", "1", "--checkpoint-every", "2"]
SHORT_GAN += ["--snapshot-every", "0", "--probe-every", "0"]
# The poisoned loss turns NaN after this many calls: 3 calls per DCGAN iteration, so from
# iteration 3, after the checkpoint of iteration 2.
NAN_AFTER_CALLS = 6
NAN_ITERATION = 3
# SGD at this rate on raw 0-255 pixels overflows within the first epochs.
DIVERGING_LR = "10000"
NONFINITE_CLI = (
    r"error: Non-finite loss at iteration (\d+): \{'train_loss': nan\}\. "
    r"Training stopped; the last good checkpoint is kept\."
)


@pytest.fixture(scope="module")
def nih(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fake NIH folder and its warm decode cache."""
    root = tmp_path_factory.mktemp("resilience")
    data = write_fake_nih_tree(root / "nih")
    cache = root / "cache"
    load_dataset(data, cache_dir=cache, progress=False)
    return {"data": data, "cache": cache}


def command(script: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", f"train.{script}", *map(str, args)]


def run(cmd: list[str], log: Path) -> subprocess.CompletedProcess[str]:
    """Runs a command to its end; its stderr is returned and kept in ``log``."""
    done = subprocess.run(
        cmd, cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    log.write_text(done.stderr)
    return done


def log_records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def kill_after_first_checkpoint(cmd: list[str], checkpoint: Path, delay: float) -> int:
    """Starts ``cmd``, waits for ``checkpoint``, then ``delay`` seconds, then SIGKILLs it.

    Returns:
        The exit status: -SIGKILL when killed, 0 when the run ended before the kill.
    """
    with open(checkpoint.parent.parent / f"{checkpoint.parent.name}.killed.log", "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=ENV, stdout=err, stderr=err)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while not checkpoint.exists():
                assert proc.poll() is None, f"the run ended before its first checkpoint: {cmd}"
                assert time.monotonic() < deadline, "no checkpoint in time"
                time.sleep(POLL_S)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            return proc.wait(timeout=RUN_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def killed_run(
    script: str, nih: dict[str, Path], tmp_path: Path, rng: random.Random, *args: str
) -> tuple[list[str], Path]:
    """A run killed at a random moment after its first checkpoint, and its command.

    The delay is drawn from ``rng``; should the run end first (a heavily loaded machine can
    stall the poll), it is repeated with no delay, which always lands before the end.
    """
    for attempt, delay in enumerate((rng.uniform(0, MAX_KILL_DELAY_S), 0.0)):
        out = tmp_path / f"{script}_{attempt}"
        cmd = command(
            script, "--data", nih["data"], "--out", out, "--smoke", "--cache-dir", nih["cache"]
        )
        status = kill_after_first_checkpoint([*cmd, *args], out / "checkpoint.pt", delay)
        if status == -signal.SIGKILL:
            return [*cmd, *args], out
        assert status == 0, f"{script} failed before the kill (status {status})"
    raise AssertionError(f"{script} could not be killed before it finished")


def assert_clean_exit(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


# Kill and resume.


def test_seed_gan_killed_then_rerun_resumes(nih: dict[str, Path], tmp_path: Path) -> None:
    cmd, out = killed_run("seed_gan", nih, tmp_path, random.Random(KILL_SEED))
    # The checkpoint a kill leaves behind always loads.
    resumed_at = runs.load_checkpoint(out / "checkpoint.pt")["state"]["iteration"]
    assert resumed_at in range(4, SMOKE_ITERATIONS + 1, 4)
    before = len(log_records(out))

    done = run(cmd, tmp_path / "rerun.log")
    assert_clean_exit(done)
    assert f"Resumed {out} at iteration {resumed_at}" in done.stderr
    added = log_records(out)[before:]
    iterations = [r["iteration"] for r in added if "iteration" in r and "event" not in r]
    # Nothing restarted from 0: the rerun logs only the iterations after the checkpoint.
    assert iterations == list(
        range(resumed_at + SMOKE_LOG_EVERY, SMOKE_ITERATIONS + 1, SMOKE_LOG_EVERY)
    )
    assert added[-1]["event"] == "done" and added[-1]["iterations"] == SMOKE_ITERATIONS
    final = runs.load_checkpoint(out / "model.pt")
    assert final["state"]["iteration"] == SMOKE_ITERATIONS
    assert [r["iteration"] for r in final["state"]["losses"]] == sorted(
        {r["iteration"] for r in final["state"]["losses"]}
    )


def test_classifier_killed_then_rerun_resumes(nih: dict[str, Path], tmp_path: Path) -> None:
    cmd, out = killed_run(
        "classifier", nih, tmp_path, random.Random(KILL_SEED + 1), "--arch", "simple_cnn"
    )
    resumed_at = runs.load_checkpoint(out / "checkpoint.pt")["state"]["epoch"]
    assert 1 <= resumed_at <= SMOKE_EPOCHS
    before = len(log_records(out))

    done = run(cmd, tmp_path / "rerun.log")
    assert_clean_exit(done)
    assert f"Resumed {out} at epoch {resumed_at}" in done.stderr
    added = log_records(out)[before:]
    epochs = [r["epoch"] for r in added if "epoch" in r and "event" not in r]
    assert epochs == list(range(resumed_at + 1, SMOKE_EPOCHS + 1))
    assert added[-1]["event"] == "done" and added[-1]["epochs"] == SMOKE_EPOCHS
    final = runs.load_checkpoint(out / "model.pt")
    assert [r["epoch"] for r in final["summary"]["history"]] == list(range(1, SMOKE_EPOCHS + 1))


# Atomic checkpoints.

DYING_SAVE = """
import io, os, sys
import torch
from train import runs

real_save = torch.save


def dying_save(obj, fh, *args, **kwargs):
    # Writes half of the checkpoint, then the process dies as a kill would leave it.
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    fh.write(data[: len(data) // 2])
    fh.flush()
    os._exit(9)


torch.save = dying_save
runs.save_checkpoint({"step": 2, "weights": torch.full((4096,), 2.0)}, sys.argv[1])
"""


def test_kill_during_save_keeps_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    runs.save_checkpoint({"step": 1, "weights": torch.ones(4096)}, path)
    before = path.read_bytes()

    done = subprocess.run(
        [sys.executable, "-c", DYING_SAVE, str(path)],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 9, done.stderr
    # The half-written file exists (the save really was cut) but never replaced the checkpoint.
    partial = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < len(before)
    with pytest.raises(Exception):  # noqa: B017 - torch raises several types for a cut file
        runs.load_checkpoint(partial[0])
    assert path.read_bytes() == before
    ckpt = runs.load_checkpoint(path)
    assert ckpt["step"] == 1 and torch.equal(ckpt["weights"], torch.ones(4096))


def test_kill_during_first_save_leaves_no_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    done = subprocess.run(
        [sys.executable, "-c", DYING_SAVE, str(path)], cwd=REPO_ROOT, env=ENV, timeout=60
    )
    assert done.returncode == 9
    # A resumed run starts afresh rather than loading half a file.
    assert not path.exists()


# Non-finite losses.


def test_nonfinite_loss_stops_gan_and_keeps_last_good_checkpoint(
    nih: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = losses.F.binary_cross_entropy_with_logits
    calls = itertools.count(1)

    def poisoned(*args: Any, **kwargs: Any) -> torch.Tensor:
        loss = real(*args, **kwargs)
        return loss * float("nan") if next(calls) > NAN_AFTER_CALLS else loss

    monkeypatch.setattr(losses.F, "binary_cross_entropy_with_logits", poisoned)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path / "nan_gan"
    argv = ["--data", str(nih["data"]), "--out", str(out), "--cache-dir", str(nih["cache"])]
    try:
        with pytest.raises(runs.NonFiniteLossError) as err:
            seed_gan.train(config.parse_config(seed_gan.SeedGANConfig, [*argv, *SHORT_GAN]))
    finally:
        torch.set_num_threads(threads)

    message = str(err.value)
    # Frees the failed run's frames now, so that its progress bar closes while output is captured.
    del err
    gc.collect()
    assert message.startswith(f"Non-finite loss at iteration {NAN_ITERATION}: ")
    assert "the last good checkpoint is kept" in message
    ckpt = runs.load_checkpoint(out / "checkpoint.pt")
    assert ckpt["state"]["iteration"] == NAN_ITERATION - 1
    for module in ckpt["modules"].values():
        assert all(torch.isfinite(t).all() for t in module.values() if t.is_floating_point())
    assert all(np.isfinite(v) for r in ckpt["state"]["losses"] for k, v in r.items())
    assert not (out / "model.pt").exists()


def test_nonfinite_loss_cli_exits_2_with_one_line(nih: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "diverged"
    cmd = command(
        "classifier",
        *("--data", nih["data"], "--out", out, "--cache-dir", nih["cache"], "--smoke"),
        *("--arch", "simple_cnn", "--recipe", "report", "--input-scale", "raw", "--no-bf16"),
        *("--lr", DIVERGING_LR),
    )
    done = run(cmd, tmp_path / "diverged.log")
    assert done.returncode == config.EXIT_USAGE, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and done.stderr.rstrip().endswith(errors[0])
    found = re.match(NONFINITE_CLI, errors[0])
    assert found, errors[0]
    # The classifier counts epochs; the epochs before the bad one are kept, and only those.
    bad_epoch = int(found.group(1))
    assert 1 <= bad_epoch <= SMOKE_EPOCHS
    if bad_epoch == 1:
        assert not (out / "checkpoint.pt").exists()
    else:
        state = runs.load_checkpoint(out / "checkpoint.pt")["state"]
        assert state["epoch"] == bad_epoch - 1
        assert all(np.isfinite(r["train_loss"]) for r in state["history"])


# Bad data folders.


def _missing(root: Path) -> Path:
    return root / "nowhere"


def _empty(root: Path) -> Path:
    (root / "empty").mkdir()
    return root / "empty"


def _one_class(root: Path) -> Path:
    data = write_fake_nih_tree(root / "one", patients=3, cells=2)
    for path in (data / CLASSES[1]).iterdir():
        path.unlink()
    (data / CLASSES[1]).rmdir()
    return data


def _all_corrupt(root: Path) -> Path:
    data = write_fake_nih_tree(root / "corrupt", patients=3, cells=2, junk=False)
    for path in data.rglob("*.png"):
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return data


BAD_DATA = {
    "missing": (_missing, "error: Dataset folder {data} does not exist"),
    "empty": (_empty, "error: Class folder {data}/Parasitized is missing; {data} must hold one"),
    "one_class": (_one_class, "error: Class folder {data}/Uninfected is missing"),
    "all_corrupt": (_all_corrupt, "error: all 6 images in {data}/Parasitized are unreadable"),
}


def test_bad_data_folders_give_one_clear_error(tmp_path: Path) -> None:
    # The four runs fail at the same early point; running them side by side saves time.
    procs = {}
    for name, (make, _) in BAD_DATA.items():
        data = make(tmp_path)
        base = tmp_path / f"{name}_run"
        cmd = command(
            "pipeline",
            *("--data", data, "--smoke", "--out", base / "out", "--runs", base / "runs"),
            *("--cache-dir", base / "cache"),
        )
        procs[name] = (
            data,
            subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env=ENV,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ),
        )
    for name, (data, proc) in procs.items():
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
        assert proc.returncode == config.EXIT_USAGE, (name, stderr[-3000:])
        assert "Traceback" not in stderr, name
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, (name, errors)
        assert stderr.rstrip().endswith(errors[0]), name
        assert errors[0].startswith(BAD_DATA[name][1].format(data=data)), (name, errors[0])
        assert not stdout.strip(), name
