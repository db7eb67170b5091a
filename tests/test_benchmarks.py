"""The benchmarks in smoke mode (tiny synthetic data, one epoch): each runs end to end and ends
with its ``ratio=`` / ``speedup=`` line. Timings are never asserted (benchmarks are scripts, not
timed tests; docs/benchmarks.md holds the measured figures). Also the speed flags and the
training logging that the benchmarks motivated."""
from __future__ import annotations

import importlib
import math

import lightning as L
import pytest
import torch


def _run(capsys, script: str, *argv: str) -> float:
    value = importlib.import_module(script).main(["--smoke", *argv])
    lines = capsys.readouterr().out.strip().splitlines()
    key = lines[-1].split("=")[0]
    assert key in ("ratio", "speedup"), lines[-1]
    assert math.isfinite(value) and value > 0 and float(lines[-1].split("=")[1]) == pytest.approx(value, abs=6e-3)
    print(f"{script}: {lines[-1]}")  # shown with -rP; never compared with a target
    return value


def test_bench_fit_smoke(capsys, data_dir):
    _run(capsys, "bench_fit", "--data-dir", str(data_dir))


def test_bench_step_smoke(capsys, data_dir):
    _run(capsys, "bench_step", "--data-dir", str(data_dir), "--variants", "fc", "no_such_variant",
         "--batch-sizes", "64")


def test_bench_input_smoke(capsys, data_dir):
    # "0" is the always-present loader-0 (it once became a second, persistent 0-worker loader and failed)
    _run(capsys, "bench_input", "--data-dir", str(data_dir), "--workers", "0", "1")


def test_bench_batch_smoke(capsys):
    _run(capsys, "bench_batch")


def test_bench_options_smoke(capsys, data_dir):
    _run(capsys, "bench_options", "--data-dir", str(data_dir), "--variants", "fc",
         "--options", "fp32", "bf16", "compile")


@pytest.mark.slow
def test_profile_step_smoke(capsys, data_dir):
    _run(capsys, "profile_step", "--data-dir", str(data_dir))


@pytest.mark.slow  # Ray's start alone takes most of it
def test_bench_sweep_smoke(capsys, data_dir):
    _run(capsys, "bench_sweep", "--data-dir", str(data_dir))


class _StepLosses(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append((float(outputs["loss"]), len(batch[0])))


def test_train_logging_epoch_mean_and_step_values(cfg_for):
    """The device-side training logs give what self.log(on_step, on_epoch) gave: the batch-size
    weighted epoch mean as train/loss_epoch, and train/loss_step on the logging steps."""
    from ae_lightning.fit import fit

    cb = _StepLosses()
    cfg = cfg_for("vae", data__batch_size=96, trainer__log_every_n_steps=4,  # last batch smaller
                  model__nll_samples=2)
    res = fit(cfg, callbacks=[cb])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(res.run_dir))
    acc.Reload()
    epoch = [e.value for e in acc.Scalars("train/loss_epoch")]
    want = sum(v * n for v, n in cb.losses) / sum(n for _, n in cb.losses)
    assert epoch == pytest.approx([want], rel=1e-5)
    steps = acc.Scalars("train/loss_step")
    assert [e.step for e in steps] == [3, 7]
    assert [e.value for e in steps] == pytest.approx([cb.losses[3][0], cb.losses[7][0]], rel=1e-6)
    assert {"train/kl", "train/recon", "train/elbo"} <= set(acc.Tags()["scalars"])


def test_channels_last_flag_trains_conv(cfg_for):
    from ae_lightning.fit import fit

    res = fit(cfg_for("conv", trainer__channels_last=True))
    assert math.isfinite(res.metrics["test_mse"])


@pytest.mark.slow  # inductor compiles C++ on the CPU
def test_compile_flag_trains_fc_and_checkpoints_keep_plain_keys(cfg_for):
    from ae_lightning.fit import fit

    res = fit(cfg_for("fc", trainer__compile=True))
    assert math.isfinite(res.metrics["test_mse"])
    ckpt = torch.load(res.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not any("_orig_mod" in k for k in ckpt["state_dict"])


def test_unit_scale_batches_equal_the_affine_map():
    """The one-scale fast path of TensorBatches gives the very floats of ``clamp(u8 * a + b)``."""
    from ae_lightning.data import TensorBatches

    u8 = torch.arange(256, dtype=torch.uint8).repeat(4).view(-1, 1, 1).expand(-1, 28, 28).contiguous()
    labels = torch.zeros(len(u8), dtype=torch.long)
    for a, b, fast in ((torch.full((1, 28, 28), 1 / 255), torch.zeros(1, 28, 28), True),
                       (torch.rand(1, 28, 28) / 100, torch.rand(1, 28, 28) / 2, False)):
        tb = TensorBatches(u8, labels, a, b, batch_size=100)
        assert (tb.scale is not None) == fast
        x = torch.cat([x for x, _ in tb])
        assert torch.equal(x, torch.addcmul(b, u8.unsqueeze(1).float(), a).clamp_(0, 1))
