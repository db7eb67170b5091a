"""One writer per run: a live run's folder is refused to a second process, naming its PID; the lock
dies with its process (kill -9 included), so the dead run resumes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from test_train_cli import tiny_args  # noqa: E402

import train  # noqa: E402


def _epochs_in(ckpt: Path) -> int:
    """Epochs a checkpoint has trained (0 before it exists; written atomically, so never read half-written)."""
    import torch

    return torch.load(ckpt, weights_only=True)["epoch"] + 1 if ckpt.exists() else 0


def test_resume_of_a_live_run_is_refused_naming_its_pid_and_works_once_it_died(data_dir, tmp_path, capsys):
    args = tiny_args(data_dir, tmp_path, "--batch-size", "5", "--max-epochs", "30", "--set",
                     "data.val_size=20")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "mnist" / "fc" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    try:
        deadline = time.time() + 120
        while not last.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert last.exists() and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else "slow"
        config_before = (run / "config.yaml").read_text()
        events_before = sorted(run.glob("events.out.tfevents.*"))
        assert train.main([*args, "--resume", "--max-epochs", "40"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
        assert f"process {proc.pid} is training in it" in err and str(run) in err
        assert proc.poll() is None  # the live run goes on, its folder untouched
        assert (run / "config.yaml").read_text() == config_before
        assert sorted(run.glob("events.out.tfevents.*")) == events_before
        # killed once it trained 2 epochs (however slow): the refusal below of fewer epochs always runs
        while _epochs_in(last) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert _epochs_in(last) >= 2 and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else "slow"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # the lock died with its process: --resume continues the run
    done = _epochs_in(last)
    assert train.main([*args, "--resume", "--max-epochs", str(done - 1)]) == 2  # fewer than trained
    err = capsys.readouterr().err.strip()
    assert f"has trained {done} epochs, more than trainer.max_epochs {done - 1}" in err and "\n" not in err, err
    assert train.main([*args, "--resume", "--max-epochs", str(done + 1)]) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs"] == done + 1
    assert not list((run / "checkpoints").glob(".*"))


def test_the_lock_is_released_when_the_command_ends(tmp_path):
    from ae_lightning import runlock

    code = ("import sys; from ae_lightning import runlock; "
            "runlock.hold(%r); print('held', flush=True); sys.stdin.read()") % str(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        try:
            runlock.hold(tmp_path)
            raise AssertionError("a held folder was locked twice")
        except runlock.UserError as e:
            assert f"process {holder.pid} " in str(e)
    finally:
        holder.stdin.close()
        holder.wait()
    runlock.hold(tmp_path)  # free again
    runlock.release(tmp_path)


def test_hold_waits_for_a_holder_that_ends_and_refuses_one_that_outlasts_the_wait(tmp_path, capsys):
    """A resumed sweep's trial waits (``wait_s``) for a worker of the killed driver to let go of
    its folder; a holder that outlasts the wait is refused as without one."""
    import pytest

    from ae_lightning import runlock

    code = ("import sys; from ae_lightning import runlock; "
            "runlock.hold(%r); print('held', flush=True); sys.stdin.readline()") % str(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with pytest.raises(runlock.UserError, match=f"process {holder.pid} is training"):
            runlock.hold(tmp_path, wait_s=0.6)
        assert time.monotonic() - t0 >= 0.6  # it did wait
        assert f"waiting up to 1 s for process {holder.pid}" in capsys.readouterr().err
        # the holder ends 0.5 s into a 30 s wait: the lock is taken then, not at the deadline
        threading.Timer(0.5, lambda: (holder.stdin.write("\n"), holder.stdin.flush())).start()
        t0 = time.monotonic()
        runlock.hold(tmp_path, wait_s=30)
        assert time.monotonic() - t0 < 20
        assert runlock.holder(tmp_path / runlock.LOCK_NAME) == str(os.getpid())
    finally:
        holder.kill()
        holder.wait()
        runlock.release(tmp_path)
