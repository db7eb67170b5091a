"""``reproduce`` for the three MNIST studies (issue 12): neighbours, tuned, zoo."""
from __future__ import annotations

import pytest
import torch


def _preset_models(name: str, entry: str, data_dir, tmp_path) -> dict:
    """Every model config of a preset entry's ``models``, resolved the way ``reproduce`` resolves them."""
    from ae_lightning.resolve import load
    from ae_lightning.studies.presets import load_preset
    from ae_lightning.studies.presets import overrides_of as flat

    preset = load_preset(name, [])
    base = {**flat(preset.get("config")), "data.data_dir": str(data_dir), "data.download": False,
            "trainer.accelerator": "cpu", "trainer.output_dir": str(tmp_path / "runs")}
    spec = preset["studies"][entry]
    return {label: load(m["variant"], None, {**base, **flat(spec.get("config")), **flat(m.get("config"))})
            for label, m in spec["models"].items()}


# -- neighbours: the fast exact neighbours and the chunked score ----------------------------------
def _brute(x: torch.Tensor, k: int, p: float) -> list[list[int]]:
    """Each point's k nearest others, by a full distance matrix computed one pair at a time in float64."""
    x = x.double()
    n = len(x)
    d = torch.stack([(x[i] - x).abs().pow(p).sum(1) for i in range(n)])
    d.fill_diagonal_(float("inf"))
    return [row.tolist() for row in d.argsort(dim=1, stable=True)[:, :k]]


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_chunked_score_at_k_equals_a_brute_force_count(p):
    from ae_lightning.knn import knn, knn_l1, knn_l2
    from ae_lightning.studies.neighbors import score_at_k

    g = torch.Generator().manual_seed(5)
    x = torch.rand(150, 784, generator=g) * (torch.rand(150, 784, generator=g) < 0.3)  # sparse, like digits
    z = x @ torch.randn(784, 2, generator=g)
    fast = knn_l1(x, 20, chunk=16, candidates=30) if p == 1.0 else knn_l2(x, 20, chunk=16)
    bx, bz = _brute(x, 20, p), _brute(z, 20, p)
    assert [set(r) for r in fast.tolist()] == [set(r) for r in bx]
    code_nn = knn(z, 20, p, chunk=9)
    for k in (5, 10, 20):
        count = sum(len(set(a[:k]) & set(b[:k])) for a, b in zip(bx, bz))
        ours = score_at_k(fast, code_nn, k, chunk=7)
        assert float(ours.sum()) * k == pytest.approx(count, abs=1e-4)
        assert 0 < count < k * len(x)


# -- neighbours: the original's two architectures ---------------------------------------------
def test_neighbours_preset_builds_the_originals_two_networks(data_dir, tmp_path):
    from ae_lightning.fit import build

    cfgs = _preset_models("neighbours", "neighbours", data_dir, tmp_path)
    assert set(cfgs) == {"relu_mse", "relu_l1", "linear_mse", "linear_l1"}
    sizes = [(784, 128), (128, 64), (64, 12), (12, 2), (2, 12), (12, 64), (64, 128), (128, 784)]
    for label, cfg in cfgs.items():
        module, dm = build(cfg)
        layers = [m for m in [*module.encoder, *module.decoder]]
        linear = [(m.in_features, m.out_features) for m in layers if isinstance(m, torch.nn.Linear)]
        assert linear == sizes, label
        kinds = [type(m).__name__ for m in layers]
        if label.startswith("relu"):  # a ReLU after every layer but the code and the output
            assert kinds == ["Linear", "ReLU"] * 3 + ["Linear"] + ["Linear", "ReLU"] * 3 + ["Linear"]
            assert module.hparams.output_act == "tanh"
        else:
            assert kinds == ["Linear"] * 8 and module.hparams.output_act == "none"
        hp = module.hparams
        assert hp.loss == label.split("_")[1] and hp.latent_dim == 2 and hp.pixel_scale == "symmetric"
        assert (hp.optimizer, hp.lr, hp.weight_decay, hp.eps) == ("adam", 1e-3, 1e-3, None)
        opt = module.configure_optimizers()
        assert isinstance(opt, torch.optim.Adam) and opt.defaults["weight_decay"] == 1e-3
        assert dm.hparams.batch_size == 100 and dm.hparams.validation == "test"


def test_symmetric_pixel_scale_trains_in_minus_one_one_and_reports_on_unit_pixels(cfg_for):
    from ae_lightning.fit import build

    module, _ = build(cfg_for("linear", model__hidden_act="relu", model__output_act="tanh",
                              model__pixel_scale="symmetric", model__loss="l1"))
    x = torch.rand(4, 1, 28, 28)
    loss, out = module.loss(x, "train")
    logits = module.decode(module.encoder(2 * x.flatten(1) - 1))
    assert torch.allclose(loss, (torch.tanh(logits) - (2 * x - 1)).abs().mean())  # the original's L1Loss in [-1, 1]
    assert torch.allclose(out.x_hat, (torch.tanh(logits) + 1) / 2)  # metrics on [0, 1]
    assert torch.allclose(module(x), out.x_hat)


@pytest.mark.parametrize("over, message", [
    ({"model__pixel_scale": "symmetric", "model__output_act": "sigmoid"}, "needs model.output_act tanh or none"),
    ({"model__output_act": "tanh", "model__loss": "bce"}, "needs model.output_act sigmoid"),
])
def test_bad_output_scale_combinations_are_one_line_errors(cfg_for, over, message):
    from ae_lightning.errors import UserError
    with pytest.raises(UserError, match=message):
        cfg_for("linear", **over)


# -- tuned: the tuned settings and the appendix's network ------------------------------------------
def test_tuned_preset_holds_the_tuned_values(data_dir, tmp_path):
    from ae_lightning.fit import build
    from ae_lightning.resolve import load
    from ae_lightning.studies.presets import load_preset
    from ae_lightning.studies.presets import overrides_of as flat
    from ae_lightning.studies.seeds import entry_runs

    preset = load_preset("tuned", [])
    assert preset["epochs"] == 40 and preset["config"]["data"]["batch_size"] == 1024
    base = {**flat(preset["config"]), "data.data_dir": str(data_dir), "data.download": False,
            "trainer.accelerator": "cpu", "trainer.output_dir": str(tmp_path / "runs")}
    st = preset["studies"]
    ae = load("conv", None, {**base, **flat(st["latent"]["models"]["ae"]["config"])})
    vae = load("vae", None, {**base, **flat(st["latent"]["models"]["vae"]["config"])})
    den = load("denoising", None, {**base, **flat(st["denoising"]["config"])})
    # every row at the three pre-registered seeds (the config pins none); the latent-32 reading beside, at seed 0
    assert preset["seeds"] == [0, 1, 2] and "seed" not in flat(preset["config"])
    assert entry_runs(preset, "denoising", preset["seeds"]) == [(0, 0, "denoising"), (1, 1, "denoising.seed1"),
                                                              (2, 2, "denoising.seed2")]
    assert entry_runs(preset, "denoising_latent32", preset["seeds"]) == [(0, 0, "denoising_latent32")]
    clf_ae = load("conv", None, {**base, **flat(st["classifier"]["models"]["conv"]["config"])})
    for cfg in (ae, den, clf_ae):
        m = cfg["model"]
        assert (m["optimizer"], m["lr"], m["weight_decay"]) == ("adam", 0.0033, 1.477e-6)
        assert cfg["data"]["batch_size"] == 1024
    assert ae["model"]["latent_dim"] == 5 and den["model"]["latent_dim"] == 5 and clf_ae["model"]["latent_dim"] == 32
    m = vae["model"]
    assert (m["optimizer"], m["lr"], m["weight_decay"], m["latent_dim"]) == ("adam", 0.0052, 2.3686e-6, 5)
    assert vae["data"]["batch_size"] == 1024
    vmod, _ = build(vae)  # the appendix's EncoderVAE: ... ReLU, Linear(128, 64), then the heads
    body = [type(m).__name__ for m in vmod.body.modules() if not isinstance(m, torch.nn.Sequential)]
    assert body[-3:] == ["Linear", "ReLU", "Linear"] and (vmod.mu.in_features, vmod.mu.out_features) == (64, 5)
    assert st["denoising"]["factors"] == [0.3, 0.6]
    for head, opt in (("adam80", "adam"), ("sgd80", "sgd")):
        h = st["classifier"]["heads"][head]
        assert h["trainer"]["max_epochs"] == 80 and h["model"]["optimizer"] == opt and h["model"]["hidden"] == [128]
    # the appendix's conv AE, layer by layer (k = 5)
    module, _ = build(ae)
    convs = [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding)
             for c in module.encoder.modules() if isinstance(c, torch.nn.Conv2d)]
    assert convs == [(1, 8, (3, 3), (2, 2), (1, 1)), (8, 16, (3, 3), (2, 2), (1, 1)), (16, 32, (3, 3), (2, 2), (0, 0))]
    lin = [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, torch.nn.Linear)]
    assert lin == [(288, 64), (64, 5), (5, 64), (64, 288)]
    deconvs = [(c.in_channels, c.out_channels, c.stride, c.padding, c.output_padding)
               for c in module.decoder.modules() if isinstance(c, torch.nn.ConvTranspose2d)]
    assert deconvs == [(32, 16, (2, 2), (0, 0), (0, 0)), (16, 8, (2, 2), (1, 1), (1, 1)), (8, 1, (2, 2), (1, 1), (1, 1))]
    assert module(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)


# -- zoo: the variants the slides describe ------------------------------------------------------
def test_zoo_preset_builds_the_slides_networks(data_dir, tmp_path):
    from ae_lightning.fit import build
    from ae_lightning.studies.presets import load_preset
    from ae_lightning.studies.seeds import entry_runs

    cfgs = _preset_models("zoo", "classifier", data_dir, tmp_path)
    assert set(cfgs) == {"shallow", "deep", "contractive", "denoising", "denoising_occlusion", "conv", "randomized"}
    readings = _preset_models("zoo", "readings", data_dir, tmp_path)  # the other readings, beside the rows
    assert set(readings) == {"shallow_relu_code", "shallow_sigmoid_code", "randomized_2_per_stage"}
    preset = load_preset("zoo", [])
    assert entry_runs(preset, "readings", preset["seeds"]) == [(0, 0, "readings")] and preset["seeds"] == [0, 1, 2]
    assert all(c["model"]["latent_dim"] == 10 for c in [*cfgs.values(), *readings.values()])
    # the stopping rule, fixed before any run: < 1 % over 5 epochs, at most 40; randomized 5 epochs per layer stage
    assert preset["epochs"] == 40  # the study's epochs: every run's trainer.max_epochs but where a model sets its own
    for label, c in cfgs.items():
        own = (preset["studies"]["classifier"]["models"][label].get("config") or {}).get("trainer", {}).get("max_epochs")
        rule = (c["trainer"]["plateau_epochs"], c["trainer"]["plateau_min_improvement"], own)
        assert rule == ((0, 0.01, 20) if label == "randomized" else (5, 0.01, None)), label
    assert readings["randomized_2_per_stage"]["trainer"]["max_epochs"] == 8
    shallow, _ = build(cfgs["shallow"])  # 784-10 with the deep models' linear code
    assert [type(m).__name__ for m in shallow.encoder.children()] == ["Linear"]
    assert readings["shallow_relu_code"]["model"]["code_act"] == "relu"
    deep = [(784, 500), (500, 200), (200, 100), (100, 10)]
    for label in ("deep", "contractive", "denoising", "denoising_occlusion"):
        module, _ = build(cfgs[label])
        enc = [(m.in_features, m.out_features) for m in module.encoder.modules() if isinstance(m, torch.nn.Linear)]
        assert enc == deep, label
    assert cfgs["contractive"]["model"]["penalty"] == "weights"
    assert cfgs["denoising_occlusion"]["model"]["noise"] == "occlusion"
    conv, _ = build(cfgs["conv"])
    convs = [(c.in_channels, c.out_channels, c.stride, c.padding) for c in conv.encoder.modules()
             if isinstance(c, torch.nn.Conv2d)]
    assert convs == [(1, 16, (1, 1), (1, 1)), (16, 32, (1, 1), (1, 1)), (32, 64, (1, 1), (1, 1))]  # same size
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in conv.encoder.modules()) == 3
    assert conv(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    rnd, _ = build(cfgs["randomized"])
    assert type(rnd).__name__.lower().startswith("randomized")
