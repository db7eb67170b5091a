"""Training beside busy cores: the busy cores are measured, and fit trains on the free ones, saying so."""
from __future__ import annotations

import subprocess
import sys

from ae_lightning import cpus


def test_free_threads_leave_the_busy_cores(monkeypatch):
    monkeypatch.setattr(cpus.os, "cpu_count", lambda: 2)
    assert cpus.free_threads(2, 0.1) == 2 and cpus.free_threads(2, 1.0) == 1 and cpus.free_threads(2, 2.0) == 1
    assert cpus.free_threads(1, 0.0) == 1  # never more threads than asked for


def test_a_busy_loop_is_measured_as_a_busy_core():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert cpus.busy_cores(0.5) >= 0.7  # the loop's core (and whatever else runs here)
    finally:
        hog.kill()


def test_fit_trains_on_the_free_cores_and_says_so(cfg_for, monkeypatch, capsys):
    import torch

    from ae_lightning.fit import fit

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpus.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cpus, "busy_cores", lambda seconds=0.1: 1.0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fit(cfg_for("fc", model__latent_dim=4))
        assert torch.get_num_threads() == 1
        assert "note: other processes keep 1.0 of 2 cores busy: training on 1 torch thread" in capsys.readouterr().err
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # chosen by the user (or a sweep's --cpus-per-trial): kept
        fit(cfg_for("fc", model__latent_dim=4))
        assert torch.get_num_threads() == 2 and "note: other processes" not in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_an_unreadable_proc_stat_measures_nothing(monkeypatch):
    monkeypatch.setattr(cpus, "_times", lambda: None)  # not Linux, or /proc not mounted
    assert cpus.busy_cores(0.01) == 0.0
