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
    *paths, fid_line = capsys.readouterr().out.splitlines()
    names = {"uniform_per_dim.png", "uniform_global.png", "prior.png", "code_ranges.json", "fid_cls.json"}
    assert {p.rsplit("/", 1)[-1] for p in paths} == names
    for name in names:
        assert (out / name).stat().st_size > 0
    ranges = json.loads((out / "code_ranges.json").read_text())
    assert ranges["n_codes"] == 50 and len(ranges["per_dim_min"]) == 4
    assert ranges["global_min"] == min(ranges["per_dim_min"])
    # each scheme's fid_cls, as many samples as test images, in the judge cached beside the run
    fid = json.loads((out / "fid_cls.json").read_text())
    assert set(fid["fid_cls"]) == {"uniform_per_dim", "uniform_global", "prior"} and fid["n"] == 300  # the whole test split
    assert all(v > 0 for v in fid["fid_cls"].values())
    assert fid_line.startswith("fid_cls (lower is closer to the test images): uniform_per_dim ")
    assert f"prior {fid['fid_cls']['prior']:.4g} (300 samples each against as many test images; judge test accuracy" in fid_line
    assert main([vae_run.metrics["best_checkpoint"], "--out", str(tmp_path / "nofid"), "--no-fid"]) == 0
    assert "fid_cls" not in capsys.readouterr().out and not (tmp_path / "nofid" / "fid_cls.json").exists()


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
    assert {"z_interpolate", "z_traverse"} <= tags  # the latent walks, groups after the losses too


def png_size(path) -> tuple[int, int]:
    import struct

    return struct.unpack(">II", path.read_bytes()[16:24])  # IHDR: width, height


def test_generate_walks_from_the_cli(vae_run, tmp_path, capsys):
    out = tmp_path / "walks"
    argv = [vae_run.metrics["best_checkpoint"], "--out", str(out), "--n", "4", "--limit", "30"]
    assert main([*argv, "--interpolate", "--traverse", "--no-fid"]) == 0
    printed = [p.rsplit("/", 1)[-1] for p in capsys.readouterr().out.split()]
    assert printed == ["uniform_per_dim.png", "uniform_global.png", "prior.png", "interpolate.png", "traverse.png",
                       "code_ranges.json"]
    # a row of 10 steps per pair (8) and per unit (the 4 of the latent code), 28-pixel images 1 pixel apart
    assert png_size(out / "interpolate.png") == (10 * 29 + 1, 8 * 29 + 1)
    assert png_size(out / "traverse.png") == (10 * 29 + 1, 4 * 29 + 1)
    walked = json.loads((out / "code_ranges.json").read_text())
    assert len(walked["interpolate"]["pairs"]) == 8 and walked["interpolate"]["steps"] == 10
    assert walked["traverse"]["units"] == [0, 1, 2, 3] and walked["traverse"]["low"] == [-3.0] * 4
    assert 0 <= walked["traverse"]["image"] < 30


def test_a_module_without_a_decoder_is_refused_in_one_line(data_dir, tmp_path, capsys):
    import lightning

    from ae_lightning.models import CKPT_KEY, get_module
    from ae_lightning.resolve import load

    cfg = dict(load("fc", None, {"data.data_dir": str(data_dir), "data.download": False}), module="pixel_cnn")
    m = get_module("pixel_cnn")()
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams), CKPT_KEY: {"config": cfg},
                "pytorch-lightning_version": lightning.__version__}, tmp_path / "pixel.ckpt")
    assert main([str(tmp_path / "pixel.ckpt"), "--interpolate", "--traverse", "--limit", "10", "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: generation needs an autoencoder; this checkpoint holds a PixelCNN\n"
    assert captured.out == "" and not list(tmp_path.glob("*.png"))


def test_generate_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert main([str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: damaged checkpoint") and "\n" not in err
    assert main([str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_generate_takes_a_run_folder_and_writes_into_it(vae_run, capsys):
    """`generate RUN` decodes with the run's best checkpoint (the one its test metrics were measured
    on) into RUN/generated/: nothing lands in the clone; its config.yaml points at the folder."""
    run = vae_run.run_dir
    assert main([str(run), "--n", "4", "--limit", "20"]) == 0
    capsys.readouterr()
    ranges = json.loads((run / "generated" / "code_ranges.json").read_text())
    assert ranges["checkpoint"] == vae_run.metrics["best_checkpoint"] and "best-" in ranges["checkpoint"]
    assert (run / "generated" / "prior.png").stat().st_size > 0
    assert main([str(run / "config.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {run / 'config.yaml'} is a file of a run, not a checkpoint: give the run folder, {run}"


def test_generate_writes_a_loose_checkpoints_grids_under_runs(vae_run, tmp_path, monkeypatch, capsys):
    import shutil

    shutil.copy(vae_run.metrics["best_checkpoint"], tmp_path / "mine.ckpt")
    monkeypatch.chdir(tmp_path)
    assert main(["mine.ckpt", "--n", "4", "--limit", "20"]) == 0
    assert (tmp_path / "runs" / "generate" / "mine" / "code_ranges.json").is_file()


def test_a_run_folder_stands_for_its_best_checkpoint(tmp_path):
    from ae_lightning.errors import UserError
    from ae_lightning.files import checkpoint_file

    run, ckpts = tmp_path / "version_0", tmp_path / "version_0" / "checkpoints"
    ckpts.mkdir(parents=True)
    with pytest.raises(UserError, match=f"^{run} holds no checkpoint \\(no best-\\*.ckpt or last.ckpt in {ckpts}\\)$"):
        checkpoint_file(run, runs=True)
    (ckpts / "last.ckpt").write_bytes(b"x")
    assert checkpoint_file(run, runs=True) == ckpts / "last.ckpt"  # a run stopped before its test
    (ckpts / "best-001.ckpt").write_bytes(b"x")
    (ckpts / "best-003.ckpt").write_bytes(b"x")
    assert checkpoint_file(run, runs=True) == checkpoint_file(ckpts, runs=True) == ckpts / "best-003.ckpt"
    # the one metrics.json names, looked up in this folder: the run may have moved since
    (run / "metrics.json").write_text(json.dumps({"best_checkpoint": "/elsewhere/checkpoints/best-001.ckpt"}))
    assert checkpoint_file(run, runs=True) == ckpts / "best-001.ckpt"
    with pytest.raises(UserError, match="is a folder, not a checkpoint file$"):
        checkpoint_file(run)  # the commands that take a checkpoint alone (--encoder, --resume's)
    with pytest.raises(UserError, match="is a folder, not a checkpoint file or a run folder"):
        checkpoint_file(tmp_path, runs=True)
    (run / "config.yaml").write_text("variant: fc\n")
    with pytest.raises(UserError, match=f"is a file of a run, not a checkpoint: give one of its checkpoints, in {ckpts}$"):
        checkpoint_file(run / "config.yaml")


def test_the_commands_outputs_go_under_runs_by_default():
    """runs/ is ignored by git: the README's generate, studies and reproduce calls leave the clone clean
    (the committed docs/studies results name their own --out)."""
    from ae_lightning.config import ROOT
    from ae_lightning.studies import __main__ as studies_cli
    from ae_lightning.studies import presets, studies

    assert "runs/" in (ROOT / ".gitignore").read_text().split()
    assert presets.parser().parse_args(["fcae", "--smoke"]).out == "runs/reproduce"
    assert studies_cli.parser([s.name for s in studies()]).parse_args(["compression"]).out == "runs/studies"
    assert " --out gen/" not in (ROOT / "README.md").read_text()
