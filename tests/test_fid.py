"""fid_cls: the Fréchet distance in the judge's features, its scale, its cache, and the VAE's test_fid_cls."""
from __future__ import annotations

import json

import pytest
import torch

from ae_lightning import fid
from ae_lightning.data import MNISTDataModule
from ae_lightning.fit import fit


@pytest.fixture(scope="module")
def judged(data_dir, tmp_path_factory):
    """A judge trained once on the tiny data (through fit, counted), and the test images."""
    out = tmp_path_factory.mktemp("judges")
    dm = MNISTDataModule(dataset="mnist", data_dir=str(data_dir), download=False)
    dm.setup()
    calls = []

    def train(cfg):
        calls.append(cfg)
        cfg = {**cfg, "trainer": {**cfg["trainer"], "accelerator": "cpu"}}
        return fit(cfg)

    return fid.load_judge(dm, out, train), dm, out, train, calls


def test_a_set_against_itself_is_zero_and_noise_raises_it(judged):
    judge, dm, *_ = judged
    x = dm.tensors("test")[0]
    assert torch.equal(judge.test_images(), x)
    distance = judge.distance()
    g = torch.Generator().manual_seed(0)
    scores = [distance((x + s * torch.randn(x.shape, generator=g)).clamp(0, 1)) for s in (0.0, 0.1, 0.3, 1.0)]
    assert scores[0] == pytest.approx(0.0, abs=1e-3)
    assert scores == sorted(scores) and scores[1] > 1e-3, scores


def test_the_scale_runs_from_real_against_real_to_noise(judged):
    judge, *_ = judged
    s = judge.meta["scale"]
    assert 0 <= s["floor"] < s["blurred"] < s["noise"], s
    assert judge.meta["n_reference"] == 300 and 0.5 < judge.meta["test_acc"] <= 1.0
    assert "judge test accuracy" in judge.scale_text()


def test_blur_keeps_the_mean_and_smooths():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    y = fid.blur(x, sigma=1.0)
    assert y.sum() == pytest.approx(1.0, rel=1e-5) and y[0, 0, 4, 4] < 0.5 and y[0, 0, 4, 5] > 0


def test_the_cache_is_read_back_then_refused_and_rebuilt_when_its_checksum_fails(judged, capsys):
    judge, dm, out, train, calls = judged
    assert len(calls) == 1
    again = fid.load_judge(dm, out, train)  # read back: no training
    assert len(calls) == 1 and again.meta["sha256"] == judge.meta["sha256"]
    x = dm.tensors("test")[0][:100]
    assert again.features(x).shape == (100, 128)
    assert torch.equal(again.features(x), judge.features(x))
    ckpt = judge.folder / "judge.ckpt"
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    ckpt.write_bytes(bytes(data))
    rebuilt = fid.load_judge(dm, out, train)
    assert len(calls) == 2
    assert "fails its checksum: training the judge again" in capsys.readouterr().err
    assert fid.sha256(ckpt) == rebuilt.meta["sha256"] == json.loads((judge.folder / "judge.json").read_text())["sha256"]


def test_the_vae_reports_test_fid_cls_behind_its_switch(cfg_for, tmp_path):
    on = fit(cfg_for("vae", model__nll_samples=2))
    assert on.metrics["test_fid_cls"] > 0
    assert list((tmp_path / "runs" / "judges").glob("mnist-*/judge.json"))
    off = fit(cfg_for("vae", model__nll_samples=2, model__fid_cls=False))
    assert "test_fid_cls" not in off.metrics


def test_a_vae_sweep_may_minimise_test_fid_cls_and_its_judge_is_trained_once_beforehand(data_dir, tmp_path, monkeypatch):
    from ae_lightning.resolve import load
    from search import tune
    from search.objectives import metrics_of
    from search.space import _schemas

    base = load("vae_fc", None, {"data.data_dir": str(data_dir), "data.download": False,
                                 "trainer.accelerator": "cpu", "trainer.output_dir": "runs"})
    assert "test_fid_cls" in metrics_of(_schemas(base)["model"])
    assert "test_fid_cls" not in metrics_of(_schemas(load("fc", None, {}))["model"])
    monkeypatch.chdir(tmp_path)
    tune._judge_once(base)  # trials run in folders of their own: they find the judge by an absolute path
    assert base["trainer"]["output_dir"] == str(tmp_path / "runs")
    assert len(list((tmp_path / "runs" / "judges").glob("mnist-*/judge.json"))) == 1
