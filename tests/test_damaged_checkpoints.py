"""Damaged checkpoints (truncated, garbage, empty): ``--resume`` falls back to the newest intact
checkpoint of the run and says so in one line; ``--encoder``, probes and generate refuse in one line
naming the file and the way out. Never a traceback, never torch's advice to load unsafely."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
from test_train_cli import tiny_args  # noqa: E402

import train  # noqa: E402

DAMAGES = {
    "truncated": lambda b: b[: len(b) // 2],
    "garbage": lambda b: bytes((i * 7919 + 13) % 256 for i in range(len(b) // 4)),
    "empty": lambda b: b"",
}
CAUSES = {"truncated": "truncated (", "garbage": "not a checkpoint (", "empty": "empty file (0 bytes)"}


def damage(path: Path, how: str) -> None:
    path.write_bytes(DAMAGES[how](path.read_bytes()))


def one_line(err: str) -> str:
    err = err.strip()
    assert err.startswith("error: ") and "\n" not in err and "weights_only" not in err, err
    return err


@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_resume_with_a_damaged_last_checkpoint_continues_from_the_intact_best(how, data_dir, tmp_path, capsys):
    assert train.main(tiny_args(data_dir, tmp_path, "--max-epochs", "2")) == 0
    run = tmp_path / "mnist" / "fc" / "version_0"
    (run / "metrics.json").unlink()  # as if killed after its last epoch's checkpoints
    best = next((run / "checkpoints").glob("best-*.ckpt"))
    damage(run / "checkpoints" / "last.ckpt", how)
    capsys.readouterr()
    assert train.main(tiny_args(data_dir, tmp_path, "--resume", "--max-epochs", "3")) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"resuming {run}"
    warning = [line for line in err if line.startswith("warning: ")]
    assert len(warning) == 1 and f"damaged checkpoint {run / 'checkpoints' / 'last.ckpt'}" in warning[0]
    assert f"resuming from the intact {best.name} instead" in warning[0] and "weights_only" not in warning[0]
    assert CAUSES[how] in warning[0]
    assert not any("Traceback" in line for line in err)
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3


def test_resume_with_no_intact_checkpoint_is_one_line_and_leaves_no_event_file(data_dir, tmp_path, capsys):
    assert train.main(tiny_args(data_dir, tmp_path, "--max-epochs", "1")) == 0
    run = tmp_path / "mnist" / "fc" / "version_0"
    (run / "metrics.json").unlink()
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        damage(ckpt, "truncated")
    before = sorted(p.name for p in run.rglob("*"))
    capsys.readouterr()
    for _ in range(2):
        assert train.main(tiny_args(data_dir, tmp_path, "--resume", "--max-epochs", "3")) == 2
        err = one_line(capsys.readouterr().err)
        assert f"damaged checkpoint {run / 'checkpoints' / 'last.ckpt'}" in err and "truncated" in err
        assert "no intact checkpoint is left" in err and "without --resume" in err
    assert sorted(p.name for p in run.rglob("*")) == before  # no new (empty) event file, nothing else


@pytest.fixture
def damaged_copy(encoder_ckpt, tmp_path):
    """``(damaged, intact)``: a damaged copy of the encoder's last.ckpt beside an intact best one."""
    def make(how: str, with_intact: bool = True):
        folder = tmp_path / f"{how}-{with_intact}" / "checkpoints"
        folder.mkdir(parents=True)
        bad = folder / "last.ckpt"
        shutil.copy(encoder_ckpt, bad)
        damage(bad, how)
        good = folder / "best-000.ckpt"
        if with_intact:
            shutil.copy(encoder_ckpt, good)
        return bad, good
    return make


@pytest.mark.parametrize("how", sorted(DAMAGES))
@pytest.mark.parametrize("command", ["probes", "generate", "encoder"])
def test_probes_generate_and_encoder_refuse_a_damaged_checkpoint_naming_the_way_out(
        command, how, damaged_copy, data_dir, tmp_path, capsys):
    from ae_lightning import generate, probes

    for with_intact in (True, False):
        bad, good = damaged_copy(how, with_intact)
        if command == "probes":
            rc = probes.main([str(bad), "--out", str(tmp_path / "p"), "--data-dir", str(data_dir)])
        elif command == "generate":
            rc = generate.main([str(bad), "--out", str(tmp_path / "g"), "--data-dir", str(data_dir)])
        else:
            rc = train.main(["--variant", "classifier", "--encoder", str(bad), "--data-dir", str(data_dir),
                             "--output-dir", str(tmp_path / "runs"), "--set", "data.download=false"])
        assert rc == 2
        err = one_line(capsys.readouterr().err)
        assert f"damaged checkpoint {bad}: {CAUSES[how]}" in err and "give another checkpoint" in err
        assert (f"e.g. {good} (intact)" in err) if with_intact else ("train the run again" in err)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("version_*"))


def test_resume_with_flags_that_change_the_model_is_one_line_and_touches_nothing(data_dir, tmp_path, capsys):
    assert train.main(tiny_args(data_dir, tmp_path, "--max-epochs", "1")) == 0
    run = tmp_path / "mnist" / "fc" / "version_0"
    (run / "metrics.json").unlink()
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "run.lock"}
    capsys.readouterr()
    assert train.main(tiny_args(data_dir, tmp_path, "--resume", "--latent-dim", "8", "--max-epochs", "2")) == 2
    err = one_line(capsys.readouterr().err.split("\n", 1)[1])  # after "resuming <run>"
    assert "does not fit this config" in err and "(4, 196) there and (8, 196)" in err
    after = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "run.lock"}
    assert after == before  # config.yaml not rewritten, no empty event file


def test_a_failed_try_leaves_no_empty_event_file(data_dir, tmp_path, capsys, monkeypatch):
    import lightning as L

    assert train.main(tiny_args(data_dir, tmp_path, "--max-epochs", "1")) == 0
    run = tmp_path / "mnist" / "fc" / "version_0"
    (run / "metrics.json").unlink()
    events = sorted(run.glob("events.out.tfevents.*"))

    def fails(self, *a, **k):
        self.logger.experiment  # the event file exists from here on
        raise RuntimeError("boom")

    monkeypatch.setattr(L.Trainer, "fit", fails)
    with pytest.raises(RuntimeError):
        train.main(tiny_args(data_dir, tmp_path, "--resume", "--max-epochs", "2"))
    assert sorted(run.glob("events.out.tfevents.*")) == events
