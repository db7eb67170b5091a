"""Checkpoints load as tensors and plain data only (``weights_only``): a checkpoint whose pickle
would run code is refused in one line naming what it needs, by every command that reads
checkpoints, and nothing in it runs; a checkpoint written before this still loads, unchanged."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
# written by the code before weights-only loading: fc, layers [784], latent 4, one epoch on the
# synthetic digits of conftest; expected.pt holds the codes and reconstructions it gave then
LEGACY = ROOT / "tests" / "data" / "legacy_fc"


class WritesMarker:
    """Unpickled unsafely, this creates ``marker`` (``io.open(marker, "w")``): proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def plant(source: Path, dest: Path, payload) -> Path:
    """A copy of a real checkpoint of this project, with ``payload`` inside its run config."""
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    ckpt["ae_lightning"]["config"]["note"] = payload
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dest)
    return dest


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "MARKER"
    yield m
    assert not m.exists(), "the payload ran"


def assert_refused(err: str, path: Path, needs: str = "io.open") -> None:
    err = err.strip()
    assert err.startswith(f"error: refused checkpoint {path}: it needs {needs}, ") and "\n" not in err, err
    assert "weights_only" not in err and "Traceback" not in err, err


def test_a_checkpoint_written_before_weights_only_loading_still_loads_and_gives_the_same_output():
    from ae_lightning.checkpoint_io import AtomicCheckpointIO
    from ae_lightning.models import load_checkpoint
    from ae_lightning.models.classifier import load_encoder

    expected = torch.load(LEGACY / "expected.pt", weights_only=True)
    last = LEGACY / "last.ckpt"
    assert last.stat().st_size < 200_000
    for module in (load_checkpoint(last)[0], load_encoder(last)[0]):  # generate and studies; probes and --encoder
        with torch.no_grad():
            z = module.encode(expected["x"])
            x_hat = module.output(module.decode(z))
        torch.testing.assert_close(z, expected["z"])
        torch.testing.assert_close(x_hat, expected["x_hat"])
    resumed = AtomicCheckpointIO().load_checkpoint(last)  # Lightning's resume: optimizer and loop state too
    assert resumed["epoch"] == 0 and resumed["optimizer_states"] and resumed["loops"]


def test_the_payload_is_live(tmp_path):
    """The control: loaded as torch did before 2.6, the planted checkpoint runs its payload."""
    m = tmp_path / "MARKER"
    torch.load(plant(LEGACY / "last.ckpt", tmp_path / "x.ckpt", WritesMarker(m)), weights_only=False)
    assert m.exists()


@pytest.mark.parametrize("command", ["generate", "probes", "encoder", "resume"])
def test_no_command_runs_a_payload_checkpoint(command, encoder_ckpt, data_dir, tmp_path, marker):
    if command == "resume":  # a killed run whose every checkpoint carries the payload (no intact one to fall back to)
        run = tmp_path / "runs" / "mnist" / "fc" / "version_0"
        shutil.copytree(encoder_ckpt.parent.parent, run, ignore=shutil.ignore_patterns("run.lock", "metrics.json"))
        for ckpt in (run / "checkpoints").glob("*.ckpt"):
            plant(encoder_ckpt, ckpt, WritesMarker(marker))
        bad = run / "checkpoints" / "last.ckpt"
        argv = ["train.py", "--variant", "fc", "--resume", "--output-dir", str(tmp_path / "runs"),
                "--data-dir", str(data_dir), "--max-epochs", "2", "--set", "data.download=false"]
    else:
        bad = plant(encoder_ckpt, tmp_path / "ckpts" / "last.ckpt", WritesMarker(marker))
        argv = {"generate": ["-m", "ae_lightning.generate", str(bad), "--out", str(tmp_path / "g")],
                "probes": ["-m", "ae_lightning.probes", str(bad), "--out", str(tmp_path / "p")],
                "encoder": ["train.py", "--variant", "classifier", "--encoder", str(bad),
                            "--output-dir", str(tmp_path / "runs")]}[command] + ["--data-dir", str(data_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # run from ROOT: its modules come first on sys.path
    p = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert_refused(p.stderr, bad)
    assert not list((tmp_path / "runs").glob("mnist/classifier/version_*"))


def test_lightning_and_the_library_loads_refuse_a_payload(cfg_for, tmp_path, marker, monkeypatch):
    """The loads with no command of their own: the studies' cache (``models.load_checkpoint``), a
    sweep trial or study continued from its ``last.ckpt`` (``fit(ckpt_path=...)``), and Lightning's
    own resume load (the CheckpointIO plugin), reached here with ``fit``'s own check skipped."""
    from ae_lightning import fit as fit_mod
    from ae_lightning.checkpoint_io import AtomicCheckpointIO, read, resume_point
    from ae_lightning.errors import UserError
    from ae_lightning.models import load_checkpoint

    bad = plant(LEGACY / "last.ckpt", tmp_path / "ckpts" / "last.ckpt", WritesMarker(marker))
    cfg = cfg_for("fc", model__layers=[784], model__latent_dim=4)
    loads = [lambda: load_checkpoint(bad), lambda: read(bad), lambda: resume_point(bad),
             lambda: AtomicCheckpointIO().load_checkpoint(bad), lambda: fit_mod.fit(cfg, ckpt_path=bad)]
    for load in loads:
        with pytest.raises(UserError) as e:
            load()
        assert_refused(f"error: {e.value}", bad)
    monkeypatch.setattr(fit_mod, "check_fits", lambda module, path: 0)
    with pytest.raises(UserError) as e:
        fit_mod.fit(cfg, ckpt_path=bad)
    assert_refused(f"error: {e.value}", bad)


def test_a_refusal_names_a_blocked_module_too(tmp_path):
    """torch words a global of a blocked module (os, subprocess, ...) otherwise: it is named alike."""
    from ae_lightning.checkpoint_io import read
    from ae_lightning.errors import UserError

    class RunsShell:
        def __reduce__(self):
            return os.system, ("exit 0",)

    bad = plant(LEGACY / "last.ckpt", tmp_path / "x.ckpt", RunsShell())
    with pytest.raises(UserError) as e:
        read(bad)
    assert_refused(f"error: {e.value}", bad, needs=f"{os.system.__module__}.system")
