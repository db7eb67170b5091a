"""The studies: registry and CLI errors, exact decoder inversion, neighbourhood scores, smoke runs."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch

from ae_lightning.errors import UserError

EXPECTED = ["compression", "optimizers", "activations", "losses", "inversion", "neighbors", "latent",
            "denoising", "weights", "classifier", "curves"]


def _module(cfg):
    from ae_lightning.fit import build
    return build(cfg)[0].eval()


def _run(argv, capsys):
    from ae_lightning.studies.__main__ import main
    code = main([str(a) for a in argv])
    return code, capsys.readouterr()


# -- registry and options -------------------------------------------------------------------------
def test_registry_holds_every_study_in_report_order():
    from ae_lightning.studies import get, studies
    assert [s.name for s in studies()] == EXPECTED
    assert get("inversion").variant == "fc" and get("neighbors").variant is None
    with pytest.raises(UserError, match="unknown study 'nope'"):
        get("nope")


@pytest.mark.parametrize("argv, message", [
    (["nope"], "unknown study 'nope'"),
    (["compression", "--epochs", "0"], "--epochs (trainer.max_epochs): expected int > 0, got '0'"),
    (["compression", "--subset", "-5"], "--subset (data.subset): expected int > 0, got '-5'"),
    (["compression", "--dataset", "cifar"], "--dataset (data.dataset): expected one of mnist, fashion_mnist"),
    (["compression", "--variant", "nope"], "--variant 'nope': choose one of"),
    (["compression", "--latents", "2,x"], "--latents '2,x' (model.latent_dim): expected int > 0, got 'x'"),
    (["compression", "--latents", "0"], "--latents '0'"),
    (["compression", "--accelerator", "tpu"], "--accelerator (trainer.accelerator): expected one of"),
    (["neighbors", "--variant", "fc"], "study neighbors: --variant is not an option here"),
    (["inversion", "--variant", "deep"], "holds ReLU (it maps every negative input to 0)"),
    (["inversion", "--variant", "conv"], "inversion: the decoder of ConvAutoencoder holds"),
    (["denoising", "--variant", "fc"], "variant 'fc' adds no noise"),
    (["classifier", "--variant", "classifier"], "is not an autoencoder variant"),
    (["neighbors", "--test-subset", "50"], "--test-subset must exceed the largest k (50), got 50"),
    ([], "name a study"),
])
def test_bad_options_give_one_clear_line(argv, message, data_dir, tmp_path, capsys):
    code, out = _run(argv + ["--data-dir", data_dir, "--out", tmp_path / "out"], capsys)
    assert code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.err
    assert not (tmp_path / "out" / "runs").exists()  # refused before anything trained


def test_resume_refuses_a_study_run_with_other_options(data_dir, tmp_path, capsys):
    from ae_lightning import files

    out = tmp_path / "all"
    files.write_json(out / "compression" / "results.json", {"settings": {"epochs": 3, "subset": 200, "seed": 0,
                                                                          "test_subset": None}})
    code, res = _run(["all", "--resume", "--epochs", 1, "--subset", 200, "--data-dir", data_dir, "--out", out], capsys)
    assert code == 2 and "error: --resume: compression was run with epochs 3, this call asks for 1" in res.err
    code, res = _run(["weights", "--resume", "--data-dir", data_dir, "--out", out], capsys)
    assert code == 2 and "--resume applies to all" in res.err


# -- inversion ------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["fc", "linear"])
def test_inversion_recovers_codes_of_a_random_decoder(variant, cfg_for):
    from ae_lightning.studies.inversion import decoder_steps, invert

    torch.manual_seed(0)
    module = _module(cfg_for(variant, model__latent_dim=8))
    kinds = [type(m).__name__ for m in decoder_steps(module)]
    assert kinds.count("Linear") == (3 if variant == "fc" else 4)
    assert ("LeakyReLU" in kinds) == (variant == "fc") and (kinds[-1] == "Sigmoid") == (variant == "fc")
    z = torch.randn(64, 8)
    with torch.no_grad():
        x = module.output(module.decode(z))  # (64,1,28,28): a random decoder's outputs
    z_rec = invert(module, x)
    assert z_rec.shape == (64, 8)
    assert torch.allclose(z_rec.float(), z, atol=1e-4), (z_rec.float() - z).abs().max()


def test_inversion_measure_on_own_outputs_is_exact_and_on_images_is_not(cfg_for):
    from ae_lightning.studies.inversion import measure_split

    torch.manual_seed(1)
    module = _module(cfg_for("fc", model__latent_dim=4))
    x = torch.rand(32, 1, 28, 28)
    m = measure_split(module, x)
    assert m["own_frobenius"] < 1e-3 and m["own_relative"] < 1e-4
    assert m["true_output_frobenius"] > 1 and 0 < m["true_nrmse"] < 1 and m["n"] == 32


# -- neighbours -----------------------------------------------------------------------------------
def test_score_is_one_for_the_identity_encoder():
    from ae_lightning.knn import knn
    from ae_lightning.studies.neighbors import compare

    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 784, generator=g)
    y = torch.randint(0, 10, (300,), generator=g)
    for p in (1.0, 2.0):
        pix = knn(x, 50, p, chunk=64)
        res = compare(pix, knn(x.clone(), 50, p, chunk=100), y)
        for k, r in res.items():
            assert r["score"] == 1.0 and r["same_label_diff"] == 0.0
            assert set(r["score_per_label"].values()) == {1.0}


def _brute_neighbours(x: torch.Tensor, k: int, p: float) -> list[set[int]]:
    out = []
    for i in range(len(x)):
        d = [(float((x[i] - x[j]).abs().pow(p).sum() ** (1 / p)), j) for j in range(len(x)) if j != i]
        out.append({j for _, j in sorted(d)[:k]})
    return out


def test_score_and_same_label_rate_match_a_brute_force_count():
    from ae_lightning.knn import knn
    from ae_lightning.studies.neighbors import compare

    g = torch.Generator().manual_seed(3)
    x = torch.rand(40, 784, generator=g, dtype=torch.float64).float()
    z = x @ torch.randn(784, 2, generator=g)  # a 2-D "code": a random projection
    y = torch.randint(0, 4, (40,), generator=g)
    for p in (1.0, 2.0):
        res = compare(knn(x, 10, p, chunk=7), knn(z, 10, p), y, ks=(5, 10))
        for k in (5, 10):
            bx, bz = _brute_neighbours(x, k, p), _brute_neighbours(z, k, p)
            score = sum(len(a & b) for a, b in zip(bx, bz)) / (k * len(x))
            same = sum(sum(int(y[j] == y[i]) for j in bz[i]) for i in range(len(x))) / (k * len(x))
            assert res[k]["score"] == pytest.approx(score, abs=1e-6)
            assert res[k]["same_label_code"] == pytest.approx(same, abs=1e-6)
            assert 0 < score < 1  # a projection to 2-D keeps some neighbours, not all


def test_a_study_run_takes_a_modules_cheap_evaluation_unless_it_sets_the_key(tmp_path, data_dir):
    """The VAE declares ``cheap_evaluation`` (10 NLL samples, not 100): studies use it, a run's own value wins."""
    from ae_lightning.studies import get
    from ae_lightning.studies.common import Context, Options

    ctx = Context(get("latent"), Options(out=str(tmp_path), data_dir=str(data_dir)), tmp_path, tensorboard=False)
    assert ctx.config("vae")["model"]["nll_samples"] == 10
    assert ctx.config("vae", model__nll_samples=3)["model"]["nll_samples"] == 3
    assert "nll_samples" not in ctx.config("fc")["model"]


# -- shared figures -------------------------------------------------------------------------------
def test_shared_plots_build_figures_and_maps_keep_two_dimensional_codes():
    import matplotlib.pyplot as plt
    import numpy as np

    from ae_lightning.studies.plots import bar_plot, line_plot, map_2d, scatter

    z = np.random.default_rng(0).normal(size=(40, 2))
    pts, method = map_2d(z, seed=0)
    assert pts is z and method == "codes (k = 2)"
    one, _ = map_2d(z[:, :1], seed=0)
    assert one.shape == (40, 2) and not one[:, 1].any()
    figs = [scatter(pts, np.arange(40) % 10, "t", [str(i) for i in range(10)]),
            line_plot({"train": ([1, 2], [0.5, None]), "test": ([1, 2], [0.6, 0.4])}, "x", "y", "t", logx=True),
            bar_plot(["a", "b"], {"ours": [1.0, None], "reference": [0.9, 1.1]}, "y", "t")]
    assert [len(f.axes[0].get_title()) for f in figs] == [1, 1, 1]
    for f in figs:
        plt.close(f)


# -- smoke runs -----------------------------------------------------------------------------------
def _finite(obj) -> bool:
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return not isinstance(obj, float) or math.isfinite(obj)


def _assert_study_outputs(folder, n_png: int = 1):
    report = (folder / "report.md").read_text()
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) >= n_png and all(p.stat().st_size > 500 for p in pngs)
    for p in pngs:
        assert f"({p.name})" in report  # every figure is linked from the report
    assert "|---|" in report  # at least one table
    results = json.loads((folder / "results.json").read_text())
    assert results["runs"] and results["settings"]["epochs"] == 1 and _finite(results)
    assert list((folder / "tensorboard").glob("events.out.tfevents.*"))
    return report, results


def test_compression_smoke_writes_report_figures_json_and_tensorboard(data_dir, tmp_path, capsys):
    out = tmp_path / "compression"
    code, res = _run(["compression", "--latents", "2,4", "--epochs", 1, "--subset", 200, "--batch-size", 100,
                      "--test-subset", 100, "--data-dir", data_dir, "--out", out, "--accelerator", "cpu"], capsys)
    assert code == 0, res.err
    report, results = _assert_study_outputs(out, n_png=2)
    assert "Command: `python -m ae_lightning.studies compression --latents 2,4" in report
    assert set(results["by_latent"]) == {"2", "4"}
    for k in ("2", "4"):
        r = results["by_latent"][k]
        assert 0 < r["test"]["nrmse"] < 1 and 0 < r["train"]["nrmse"] < 1 and r["ratio"] == 784 / int(k)
    assert results["settings"]["dataset"] == "fashion_mnist"  # the fcAE study's dataset by default
    # in a log (pytest's capture, as nohup or CI): one line per epoch of each run, named by the run
    lines = [line for line in res.err.splitlines() if " epoch " in line]
    assert len(lines) == 2 and all(re.fullmatch(r"\[compression\] \S.*: epoch 1/1  train_loss \S+  val_loss \S+  "
                                                r"\d+\.\d s", line) for line in lines), res.err
    assert len({line.split(": epoch")[0] for line in lines}) == 2, lines


def test_the_classifier_study_names_its_head_by_the_codes_size_and_gives_each_models_epochs(data_dir, tmp_path, capsys):
    out = tmp_path / "c"
    code, res = _run(["classifier", "--variant", "fc", "--epochs", 1, "--subset", 300, "--test-subset", 150,
                      "--data-dir", data_dir, "--out", out, "--accelerator", "cpu"], capsys)
    assert code == 0, res.err
    row = json.loads((out / "results.json").read_text())["by_variant"]["fc"]
    report = (out / "report.md").read_text()
    assert f"head (an MLP {row['latent_dim']} → 128 → 10, ReLU" in report
    # the epochs each autoencoder trained (a stopping rule or its own cap may end it early) are in its row
    assert row["ae_epochs"] == 1 and f"| fc | {row['latent_dim']} | 1 | " in report
    assert "| features | dim | AE epochs | AE test NRMSE |" in report


@pytest.mark.slow
def test_all_smoke_writes_every_study_and_a_table_of_contents(data_dir, tmp_path, capsys):
    from ae_lightning.studies.report import slug

    out = tmp_path / "all"
    code, res = _run(["all", "--latents", "4", "--epochs", 1, "--subset", 300, "--test-subset", 150,
                      "--data-dir", data_dir, "--out", out, "--accelerator", "cpu"], capsys)
    assert code == 0, res.err
    combined = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    from ae_lightning.studies import studies
    for study in studies():
        _assert_study_outputs(out / study.name)
        assert f"](#{slug(study.title)})" in combined and f"\n## {study.title}\n" in combined
        assert "error" not in results["studies"][study.name]
    s = results["studies"]
    assert set(s["optimizers"]["by_choice"]) == {"adam", "sgd", "adagrad", "adadelta", "rmsprop"}
    assert s["inversion"]["by_latent"]["4"]["test"]["own_relative"] < 1e-3
    assert s["neighbors"]["by_model"]["linear_mse"]["L2"]["5"]["score"] > 0
    assert sum(v["of"] for v in s["latent"]["models"]["ae"]["scores"].values()) == 500
    assert set(s["denoising"]["by_factor"]) == {"0.2", "0.3", "0.6"}
    assert s["classifier"]["by_variant"]["fc"]["test_acc"] > 0.1

    # --resume reads back every finished study and runs only the missing one
    import shutil
    shutil.rmtree(out / "weights")
    code, res = _run(["all", "--resume", "--latents", "4", "--epochs", 1, "--subset", 300, "--test-subset", 150,
                      "--data-dir", data_dir, "--out", out, "--accelerator", "cpu"], capsys)
    assert code == 0, res.err
    assert "== compression: read back" in res.err and "== weights\n" in res.err
    again = (out / "report.md").read_text()
    assert "read back from an earlier call" in again and "--resume" not in again.split("\n")[2]
    assert again.split("## Compression")[1].split("## Optimizers")[0] == \
        combined.split("## Compression")[1].split("## Optimizers")[0]
    _assert_study_outputs(out / "weights")
