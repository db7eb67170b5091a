"""Latent-space probes: the kNN and linear probes themselves, the whole run, the command, bad inputs."""
from __future__ import annotations

import json

import pytest
import torch


def test_linear_probe_separable_and_chance():
    from ae_lightning.probes import linear_probe

    g = torch.Generator().manual_seed(1)
    w = torch.randn(20, 10, generator=g)
    x = torch.randn(2000, 20, generator=g) * 3 + 5  # off-centre and scaled: the probe standardizes
    y = ((x - 5) @ w).argmax(1)  # linearly separable labels
    assert linear_probe(x[:1500], y[:1500], x[1500:], y[1500:], max_iter=40) >= 0.9
    noise_y = torch.randint(0, 10, (2000,), generator=g)  # labels unrelated to the features
    assert linear_probe(x[:1500], noise_y[:1500], x[1500:], noise_y[1500:], max_iter=40) < 0.2


def test_sklearn_probe_is_scikit_learns_default_on_the_raw_features():
    """The reading beside the linear probe: LogisticRegression() as scikit-learn runs it (raw features, C = 1,
    100 L-BFGS iterations): separable data is learnt, noise is not, and the figure is the one
    scikit-learn's own fit gives; unlike the standardized probe, it feels the features' scale."""
    from sklearn.linear_model import LogisticRegression

    from ae_lightning.probes import linear_probe, sklearn_probe

    g = torch.Generator().manual_seed(1)
    w = torch.randn(20, 10, generator=g)
    x = torch.randn(2000, 20, generator=g)
    y = (x @ w).argmax(1)
    assert sklearn_probe(x[:1500], y[:1500], x[1500:], y[1500:]) >= 0.9
    noise_y = torch.randint(0, 10, (2000,), generator=g)
    assert sklearn_probe(x[:1500], noise_y[:1500], x[1500:], noise_y[1500:]) < 0.2
    big = x * 1e4  # C = 1 regularizes raw weights: scaled features change the fit, the standardized probe's not
    ref = LogisticRegression(max_iter=100).fit(big[:1500].double().numpy(), y[:1500].numpy())
    assert sklearn_probe(big[:1500], y[:1500], big[1500:], y[1500:]) == float(
        (ref.predict(big[1500:].double().numpy()) == y[1500:].numpy()).mean())
    assert linear_probe(big[:1500], y[:1500], big[1500:], y[1500:]) == pytest.approx(
        linear_probe(x[:1500], y[:1500], x[1500:], y[1500:]), abs=0.01)


def test_pca_finds_the_spread_directions():
    from ae_lightning.probes import pca

    g = torch.Generator().manual_seed(2)
    x = torch.randn(4000, 5, generator=g) * torch.tensor([10.0, 0.1, 5.0, 0.1, 0.1]) + 3
    mean, comps = pca(x, 2)
    assert torch.allclose(mean, torch.full((5,), 3.0), atol=0.5)
    assert comps.shape == (5, 2)
    assert comps[0, 0].abs() > 0.99 and comps[2, 1].abs() > 0.99  # largest spread first


def test_run_probes_on_separable_data(encoder_ckpt, data_dir):
    from ae_lightning.probes import format_table, run_probes

    res = run_probes(encoder_ckpt, data_dir=data_dir, device="cpu", train_limit=600, test_limit=200)
    rows = {r["features"]: r for r in res["rows"]}
    assert set(rows) == {"code", "pixels", "pca8"} and rows["pca8"]["dim"] == rows["code"]["dim"] == 8
    assert rows["pixels"]["dim"] == 784 and res["k"] == 5
    assert res["n_train"] == 600 and res["n_test"] == 200
    for r in rows.values():
        assert r["knn_acc"] >= 0.9 and r["linear_acc"] >= 0.9, r
    assert "sklearn_acc" not in rows["code"]  # asked for with sklearn=True (the classifier study asks)
    assert run_probes(encoder_ckpt, data_dir=data_dir, device="cpu", train_limit=600, test_limit=200, baselines=False,
                      sklearn=True)["rows"][0]["sklearn_acc"] >= 0.9
    table = format_table(res)
    assert "knn@5" in table and f"{rows['code']['knn_acc']:.4f}" in table


def test_command_writes_json(encoder_ckpt, data_dir, tmp_path, capsys):
    from ae_lightning.probes import main

    rc = main([str(encoder_ckpt), "--out", str(tmp_path / "p"), "--data-dir", str(data_dir),
               "--no-baselines", "--k", "3", "--train-limit", "500", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0
    res = json.loads((tmp_path / "p" / "probes.json").read_text())
    assert res["k"] == 3 and res["n_train"] == 500 and [r["features"] for r in res["rows"]] == ["code"]
    assert "knn@3" in out and f"{res['rows'][0]['linear_acc']:.4f}" in out



def test_command_takes_a_run_folder(encoder_ckpt, data_dir, tmp_path, capsys):
    """`probes RUN`: the run's best checkpoint, the one its test metrics were measured on."""
    from ae_lightning.probes import main

    run = encoder_ckpt.parent.parent
    best = json.loads((run / "metrics.json").read_text())["best_checkpoint"]
    assert main([str(run), "--out", str(tmp_path), "--data-dir", str(data_dir), "--no-baselines",
                 "--train-limit", "300", "--test-limit", "100", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith(f"probes of {best}\n")
    assert json.loads((tmp_path / "probes.json").read_text())["checkpoint"] == best and "best-" in best

def test_default_out_is_the_run_folder(tmp_path):
    from pathlib import Path

    from ae_lightning.probes import default_out_dir

    assert default_out_dir(tmp_path / "run" / "checkpoints" / "last.ckpt") == (tmp_path / "run").resolve()
    assert default_out_dir(tmp_path / "x.ckpt") == tmp_path.resolve()
    assert isinstance(default_out_dir(Path("a.ckpt")), Path)


@pytest.mark.parametrize("kind", ["missing", "garbage", "truncated", "foreign", "classifier_config"])
def test_bad_checkpoints(kind, encoder_ckpt, data_dir, tmp_path, capsys):
    from ae_lightning.probes import main

    path = tmp_path / "x.ckpt"
    if kind == "garbage":
        path.write_bytes(b"\x00\x01garbage" * 100)
    elif kind == "truncated":
        path.write_bytes(encoder_ckpt.read_bytes()[:3000])
    elif kind == "foreign":
        torch.save({"model": {"w": torch.zeros(2)}}, path)
    elif kind == "classifier_config":  # a run of this project, but not an autoencoder
        ckpt = torch.load(encoder_ckpt, map_location="cpu", weights_only=False)
        ckpt["ae_lightning"]["config"] = dict(ckpt["ae_lightning"]["config"], module="classifier", variant="classifier")
        torch.save(ckpt, path)
    rc = main([str(path), "--data-dir", str(data_dir), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    expected = {"missing": "checkpoint not found", "garbage": "damaged checkpoint",
                "truncated": "damaged checkpoint", "foreign": "is not a checkpoint of an ae-lightning run",
                "classifier_config": "not of an autoencoder"}[kind]
    assert rc == 2 and err.startswith("error: ") and expected in err and "\n" not in err, err
    assert not (tmp_path / "probes.json").exists()


@pytest.mark.parametrize("flags, expected", [(["--k", "0"], "--k: expected int > 0, got '0'"),
                                             (["--k", "5000"], "exceeds the 1080 training images"),
                                             (["--train-limit", "0"], "--train-limit: expected int > 0, got '0'"),
                                             (["--l2", "-1"], "--l2: expected float >= 0, got '-1'")])
def test_bad_flags(flags, expected, encoder_ckpt, data_dir, tmp_path, capsys):
    from ae_lightning.probes import main

    rc = main([str(encoder_ckpt), "--data-dir", str(data_dir), "--out", str(tmp_path), *flags])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and expected in err and "\n" not in err, err
