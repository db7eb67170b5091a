"""Atomic checkpoints and files on any filesystem; a full disk or a refused write is one line."""
from __future__ import annotations

import builtins
import errno
import os
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
from test_train_cli import tiny_args  # noqa: E402

import train  # noqa: E402


@pytest.fixture
def other_fs(tmp_path):
    """A folder on another filesystem than the system temporary folder when the machine has one
    (/dev/shm is a tmpfs on Linux), else a plain temporary folder."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(tempfile.gettempdir()).st_dev:
        d = Path(tempfile.mkdtemp(dir=shm, prefix="ae-test-"))
        yield d
        import shutil
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


class _Recorder:
    """Records every path opened for writing, through builtins.open and os.open."""

    def __init__(self, monkeypatch):
        self.paths: list[Path] = []
        real_open, real_os_open = builtins.open, os.open

        def rec_open(file, mode="r", *a, **k):
            if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
                self.paths.append(Path(file).resolve())
            return real_open(file, mode, *a, **k)

        def rec_os_open(path, flags, *a, **k):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                self.paths.append(Path(path).resolve())
            return real_os_open(path, flags, *a, **k)

        monkeypatch.setattr(builtins, "open", rec_open)
        monkeypatch.setattr(os, "open", rec_os_open)


def test_training_never_opens_a_checkpoint_name_for_writing(data_dir, other_fs, monkeypatch, capsys):
    rec = _Recorder(monkeypatch)
    assert train.main(tiny_args(data_dir, other_fs, "--max-epochs", "3")) == 0
    ckpts = other_fs / "mnist" / "fc" / "version_0" / "checkpoints"
    written = [p for p in rec.paths if ".ckpt" in p.name]
    assert written, "no checkpoint was saved"
    assert not [p for p in written if p.suffix == ".ckpt"], "a final checkpoint name was opened for writing"
    # every temporary checkpoint lies beside its checkpoint (never in the system temporary folder)
    assert all(p.parent == ckpts.resolve() and p.name.startswith(".") for p in written), written
    assert not [p for p in rec.paths if p.is_relative_to(Path(tempfile.gettempdir()).resolve())
                and not p.is_relative_to(other_fs.resolve())]
    assert sorted(p.name for p in ckpts.iterdir())[-1] == "last.ckpt" and not list(ckpts.glob(".*"))


class _Dies(Exception):
    pass


class FailingFile:
    """A file whose ``write`` first asks ``before_write(file, data)``, which may fail it."""

    def __init__(self, f, before_write):
        self.f, self.before_write = f, before_write

    def write(self, data):
        self.before_write(self.f, data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)


@pytest.mark.parametrize("where", ["open", "write-start", "write-middle", "fsync", "replace"])
def test_a_save_killed_at_any_point_leaves_the_previous_checkpoint(other_fs, monkeypatch, where):
    from ae_lightning.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = other_fs / "checkpoints" / "last.ckpt"
    old = {"epoch": 1, "state_dict": {"w": torch.arange(10.0)}}
    io.save_checkpoint(old, path)
    new = {"epoch": 2, "state_dict": {"w": torch.zeros(200_000)}}
    writes = {"n": 0}
    real_fdopen, real_fsync, real_replace = os.fdopen, os.fsync, os.replace

    def breaking(f, data):
        writes["n"] += 1
        if where == "write-start" or (where == "write-middle" and writes["n"] > 3):
            f.write(bytes(data)[: len(data) // 2])
            raise _Dies()

    def fdopen(fd, *a, **k):
        if where == "open":
            os.close(fd)
            raise _Dies()
        return FailingFile(real_fdopen(fd, *a, **k), breaking)

    monkeypatch.setattr(os, "fdopen", fdopen)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(_Dies()) if where == "fsync" else real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(_Dies()) if where == "replace"
                        else real_replace(a, b))
    with pytest.raises(Exception):  # _Dies, or torch's error about the stream that died under it
        io.save_checkpoint(new, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary file left


def test_files_write_is_atomic_and_leaves_no_temporary_file(other_fs, monkeypatch):
    from ae_lightning import files

    target = other_fs / "metrics.json"
    files.write_json(target, {"a": 1})
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(_Dies()))
    with pytest.raises(_Dies):
        files.write_json(target, {"a": 2})
    assert target.read_text() == '{\n  "a": 1\n}\n' and [p.name for p in other_fs.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize("err, fail_at", [(errno.ENOSPC, 3), (errno.EACCES, 3), (errno.ENOSPC, 1)])
def test_disk_full_or_permission_denied_while_training_is_one_line_naming_the_path(
        data_dir, tmp_path, monkeypatch, capsys, err, fail_at):
    """The file write fails under torch.save (which then raises its own RuntimeError about the zip
    stream, the OSError as its context), as on a full disk."""
    saves = {"n": 0}
    real_fdopen = os.fdopen

    written = {"n": 0}

    def full(f, data):
        written["n"] += len(data)
        if written["n"] > 4096:
            raise OSError(err, os.strerror(err))

    def fdopen(fd, *a, **k):
        f = real_fdopen(fd, *a, **k)
        if ".ckpt." in os.readlink(f"/proc/self/fd/{fd}"):
            saves["n"] += 1
            if saves["n"] >= fail_at:  # 3: epoch 0 saved its best and last checkpoints; epoch 1 fails
                return FailingFile(f, full)
        return f

    monkeypatch.setattr(os, "fdopen", fdopen)
    assert train.main(tiny_args(data_dir, tmp_path, "--max-epochs", "3")) == 2
    # the epochs before the failure printed their progress lines (stderr is no terminal here)
    msg = "\n".join(ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("epoch "))
    ckpts = tmp_path / "mnist" / "fc" / "version_0" / "checkpoints"
    assert msg.startswith(f"error: cannot write {ckpts}") and os.strerror(err) in msg and "\n" not in msg, msg
    if fail_at == 1:  # no checkpoint yet: the run's folder is gone, and --resume is not advised
        assert "run it again" in msg and "--resume" not in msg and not list(tmp_path.rglob("version_*"))
        return
    assert "continue with --resume" in msg
    assert not list(ckpts.glob(".*"))
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["epoch"] == 0  # recoverable: --resume continues


def test_an_epoch_trained_again_after_a_kill_replaces_its_best_checkpoint(cfg_for):
    """A kill -9 between an epoch's best and last checkpoints: the resumed run trains that epoch again
    and replaces its best-*.ckpt (atomically), as an unbroken run names it, never best-001-v1.ckpt."""
    import shutil

    from conftest import fixed_val_loss

    from ae_lightning.fit import fit

    first = fit(cfg_for("fc", trainer__max_epochs=1, data__subset=300), callbacks=[fixed_val_loss([1.0])],
                verbose=False)
    ckpts = first.run_dir / "checkpoints"
    shutil.copy(ckpts / "last.ckpt", ckpts / "best-001.ckpt")  # epoch 1's best, written just before the kill
    stale = torch.load(ckpts / "best-001.ckpt", weights_only=True)  # the stale copy: epoch 0's
    res = fit(cfg_for("fc", trainer__max_epochs=3, data__subset=300), run_dir=first.run_dir,
              ckpt_path=ckpts / "last.ckpt", callbacks=[fixed_val_loss([1.0, 0.5, 2.0])], verbose=False)
    assert sorted(p.name for p in ckpts.iterdir()) == ["best-001.ckpt", "last.ckpt"]
    assert res.metrics["best_checkpoint"].endswith("best-001.ckpt")
    # the file is the resumed run's epoch 1 (twice the steps of the stale copy, other weights), not the copy
    best = torch.load(ckpts / "best-001.ckpt", weights_only=True)
    assert (stale["epoch"], best["epoch"]) == (0, 1)
    assert best["global_step"] == 2 * stale["global_step"] > 0
    assert any(not torch.equal(best["state_dict"][k], v) for k, v in stale["state_dict"].items())
