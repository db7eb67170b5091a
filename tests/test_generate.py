"""Generation from a checkpoint: code ranges, the CLI, and the TensorBoard grids written by fit."""
from __future__ import annotations

import json

import pytest
import torch

from ae_lightning.generate import generate, main, sample_codes


def test_sampled_codes_stay_inside_the_test_ranges():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 6, generator=g) * torch.arange(1, 7)  # units with very different spreads
    codes = sample_codes(z, 2000, g)
    per, glob = codes["uniform_per_dim"], codes["uniform_global"]
    lo, hi = z.min(0).values, z.max(0).values
    assert per.shape == glob.shape == (2000, 6)
    assert (per >= lo).all() and (per <= hi).all()
    assert (glob >= z.min()).all() and (glob <= z.max()).all()
    # the global box is wider than unit 0's own range, and codes use it
    assert (glob[:, 0] > hi[0]).any() or (glob[:, 0] < lo[0]).any()
    # uniform over the per-unit box: the spread follows the unit's range
    assert torch.allclose(per.std(0), (hi - lo) / 12 ** 0.5, rtol=0.1)


@pytest.fixture(scope="module")
def vae_run(data_dir, tmp_path_factory):
    from ae_lightning.fit import fit
    from ae_lightning.resolve import load

    cfg = load("vae_fc", None, {"data.data_dir": str(data_dir), "data.subset": 100, "data.val_size": 50,
                                "data.test_subset": 50, "data.download": False, "trainer.max_epochs": 1,
                                "trainer.accelerator": "cpu", "model.hidden": [32], "model.latent_dim": 4,
                                "trainer.output_dir": str(tmp_path_factory.mktemp("runs")),
                                "trainer.images_every_n_epochs": 1})
    return fit(cfg)


def test_generate_from_a_vae_checkpoint(vae_run, tmp_path, capsys):
    out = tmp_path / "gen"
    assert main([vae_run.metrics["best_checkpoint"], "--out", str(out), "--n", "16"]) == 0
    printed = capsys.readouterr().out.split()
    names = {"uniform_per_dim.png", "uniform_global.png", "prior.png", "code_ranges.json"}
    assert {p.rsplit("/", 1)[-1] for p in printed} == names
    for name in names:
        assert (out / name).stat().st_size > 0
    ranges = json.loads((out / "code_ranges.json").read_text())
    assert ranges["n_codes"] == 50 and len(ranges["per_dim_min"]) == 4
    assert ranges["global_min"] == min(ranges["per_dim_min"])


def test_generate_images_and_determinism(vae_run):
    from ae_lightning.models import load_checkpoint

    module, _ = load_checkpoint(vae_run.metrics["best_checkpoint"])
    x = torch.rand(30, 1, 28, 28)
    a, _ = generate(module, x, n=9, seed=1)
    b, _ = generate(module, x, n=9, seed=1)
    assert set(a) == {"uniform_per_dim", "uniform_global", "prior"}
    for k in a:
        assert a[k].shape == (9, 1, 28, 28) and torch.equal(a[k], b[k])
        assert 0 <= float(a[k].min()) and float(a[k].max()) <= 1


def test_fit_writes_generated_grids_to_tensorboard(vae_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(vae_run.run_dir), size_guidance={"images": 0})
    ea.Reload()
    tags = set(ea.Tags()["images"])
    assert {"z_generated/uniform_per_dim", "z_generated/uniform_global", "z_generated/prior"} <= tags


def test_generate_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert main([str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: damaged checkpoint") and "\n" not in err
    assert main([str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
