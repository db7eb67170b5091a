"""Multi-device training (Lightning DDP, 2 CPU processes over gloo) through train.py: one run folder,
exact split metrics equal to a one-process evaluation of the same checkpoint, resume, NaN guard,
reconstruction images and the latent classifier."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

ROOT = Path(__file__).resolve().parent.parent
# one thread per process: the 2 ranks share the 2 cores of CI
ENV = dict(os.environ, OMP_NUM_THREADS="1", CI="1")
ENV.pop("AE_LIGHTNING_RUN_DIR", None)


def train(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def ddp_args(data_dir, out, *extra):
    # odd split sizes and small eval batches: uneven shards with uneven batch counts per rank
    # (val 51 images -> 26 + 25; test 299 -> 149 + 150)
    return ["--data-dir", data_dir, "--output-dir", out, "--accelerator", "cpu", "--devices", "2",
            "--set", "data.download=false", "--set", "data.eval_batch_size=20", "--set", "data.test_subset=299",
            *extra]


def evaluate_one_process(ckpt: str | Path, root: Path, stage: str = "test") -> dict[str, float]:
    """The figures of one process (no DDP) on the same checkpoint and data."""
    from ae_lightning.data import MNISTDataModule
    from ae_lightning.models import load_checkpoint

    module, cfg = load_checkpoint(ckpt)
    if cfg["module"] == "classifier":
        module.prepare_for_data(dm := MNISTDataModule(**cfg["data"]))
    else:
        dm = MNISTDataModule(**cfg["data"])
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=root)  # the classifier writes there
    run = trainer.test if stage == "test" else trainer.validate
    return {k.replace("/", "_"): float(v) for k, v in run(module, datamodule=dm, verbose=False)[0].items()}


def assert_close(ddp: dict, one: dict, keys) -> None:
    for k in keys:
        assert abs(ddp[k] - one[k]) <= 1e-6 * abs(one[k]), (k, ddp[k], one[k])


def one_line_out(r: subprocess.CompletedProcess, out: Path, variant: str) -> Path:
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[1].startswith(f"{variant} on mnist"), r.stdout  # rank 0 alone prints
    assert "sync_dist" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    run = Path(lines[0])
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]  # one run folder for both ranks
    return run


@pytest.mark.slow
def test_ddp_run_is_one_run_with_exact_metrics_and_resumes(data_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "runs"
    r = train("--variant", "fc", *ddp_args(data_dir, out, "--subset", "511", "--batch-size", "50",
                                          "--max-epochs", "2", "--latent-dim", "4",
                                          "--set", "trainer.images_every_n_epochs=1"))
    run = one_line_out(r, out, "fc")
    assert (run / "config.yaml").is_file() and (run / "metrics.json").is_file()
    m = json.loads((run / "metrics.json").read_text())
    assert m["epochs"] == 2 and m["run_dir"] == str(run)
    # the DDP test pass equals one process on the same checkpoint: every test image counted once
    one = evaluate_one_process(m["best_checkpoint"], tmp_path)
    assert_close(m, one, ("test_mse", "test_nrmse", "test_rel_error", "test_loss"))
    # and so does validation (the monitored val/loss that chose the best checkpoint)
    assert_close({"val_loss": m["best_val_loss"]}, evaluate_one_process(m["best_checkpoint"], tmp_path, "val"), ["val_loss"])
    # one TensorBoard stream, with rank 0's reconstruction images
    tags: dict[str, set] = {}
    for ev in run.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(ev))
        acc.Reload()
        for kind, names in acc.Tags().items():
            if isinstance(names, list):
                tags.setdefault(kind, set()).update(names)
    assert {"val/loss", "val/mse", "z_test/test_mse", "train/loss_epoch"} <= tags["scalars"]
    assert "val/reconstructions" in tags["images"]
    # resume under DDP: continue the same folder from last.ckpt (metrics.json removed: unfinished)
    (run / "metrics.json").unlink()
    r = train("--variant", "fc", *ddp_args(data_dir, out, "--resume", "--max-epochs", "3"))
    assert one_line_out(r, out, "fc") == run
    assert r.stderr.count("resuming") == 1
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3


@pytest.mark.slow
def test_ddp_nan_guard_stops_every_rank_with_one_line(data_dir, tmp_path):
    out = tmp_path / "runs"
    r = train("--variant", "fc", *ddp_args(data_dir, out, "--subset", "400", "--batch-size", "50",
                                          "--max-epochs", "2", "--lr", "1e6"))
    assert r.returncode == 3, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "training diverged" in errors[0] and "Traceback" not in r.stderr
    assert not list(out.rglob("version_*"))  # failed before its first checkpoint: no folder left


@pytest.mark.slow
def test_ddp_latent_classifier_counts_every_test_image_once(data_dir, tmp_path, encoder_ckpt):
    out = tmp_path / "runs"
    r = train("--variant", "classifier", "--encoder", encoder_ckpt,
              *ddp_args(data_dir, out, "--subset", "511", "--batch-size", "50", "--max-epochs", "2"))
    run = one_line_out(r, out, "classifier")
    m = json.loads((run / "metrics.json").read_text())
    cm = json.loads((run / "confusion_test.json").read_text())["matrix"]
    assert sum(map(sum, cm)) == 299  # the confusion counts of both ranks, each image once
    one = evaluate_one_process(m["best_checkpoint"], tmp_path)
    assert_close(m, one, ["test_acc", "test_loss", *(f"test_acc_{i}" for i in range(10))])


def test_more_devices_than_gpus_is_one_line(monkeypatch, capsys):
    import torch

    import train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for accelerator in ("gpu", "auto"):
        assert train.main(["--variant", "fc", "--devices", "2", "--accelerator", accelerator]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: trainer.devices 2: this machine has 1 CUDA GPU") and "\n" not in err
