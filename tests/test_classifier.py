"""The latent classifier: accuracy on separable data, frozen encoder, caching, reload, bad inputs."""
from __future__ import annotations

import json
import shutil

import pytest
import torch


@pytest.fixture(scope="module")
def trained(encoder_ckpt, data_dir, tmp_path_factory):
    """A frozen-encoder classifier trained 6 epochs on cached codes, with encode() calls counted."""
    import lightning as L

    from ae_lightning.models.classifier import load_encoder
    from ae_lightning.resolve import load

    seen = {"images": 0}

    class CountEncodes(L.Callback):
        def setup(self, trainer, pl_module, stage):
            if getattr(pl_module.autoencoder, "_counted", False):
                return
            inner = pl_module.autoencoder.encode

            def counting(x):
                seen["images"] += len(x)
                return inner(x)
            pl_module.autoencoder.encode, pl_module.autoencoder._counted = counting, True

    from ae_lightning.fit import fit

    out = tmp_path_factory.mktemp("clf")
    cfg = load("classifier", None, {"model.encoder": str(encoder_ckpt), "data.data_dir": str(data_dir),
                                    "data.subset": 1000, "data.batch_size": 100, "data.download": False,
                                    "model.lr": 3e-3, "trainer.max_epochs": 6, "trainer.accelerator": "cpu",
                                    "trainer.output_dir": str(out)})
    before = {k: v.clone() for k, v in load_encoder(encoder_ckpt)[0].state_dict().items()}
    res = fit(cfg, callbacks=[CountEncodes()])
    return res, before, seen


def test_frozen_classifier_learns_separable_data(trained):
    res, _, _ = trained
    m = json.loads((res.run_dir / "metrics.json").read_text())
    assert m["test_acc"] >= 0.9, m["test_acc"]
    per_class = [m[f"test_acc_{i}"] for i in range(10)]
    assert min(per_class) >= 0.5 and abs(sum(per_class) / 10 - m["test_acc"]) < 0.1
    cm = json.loads((res.run_dir / "confusion_test.json").read_text())
    assert sum(map(sum, cm["matrix"])) == 300  # every synthetic test image, counted once
    assert sum(cm["matrix"][i][i] for i in range(10)) / 300 == pytest.approx(m["test_acc"])
    assert (res.run_dir / "confusion_test.png").read_bytes()[:4] == b"\x89PNG"


def test_confusion_matrix_image_in_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res, _, _ = trained
    ea = EventAccumulator(str(res.run_dir), size_guidance={"images": 0})
    ea.Reload()
    assert {"test/confusion_matrix", "val/confusion_matrix"} <= set(ea.Tags()["images"])
    assert {"val/loss", "val/acc", "z_test/test_acc", "z_test/test_acc_3", "train/loss_epoch"} <= set(ea.Tags()["scalars"])


def test_confusion_figure_read_back_from_the_event_file(trained):
    """The callback (not the model) draws the matrix with add_figure: an RGB(A) image of the figure's
    size at the last epoch (val) and the test, the same counts as confusion_test.json."""
    import io

    import numpy as np
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res, _, _ = trained
    ea = EventAccumulator(str(res.run_dir), size_guidance={"images": 0})
    ea.Reload()
    (val,) = ea.Images("val/confusion_matrix")  # only at the last epoch
    assert val.step == 5
    (test,) = ea.Images("test/confusion_matrix")
    img = np.asarray(Image.open(io.BytesIO(test.encoded_image_string)))
    assert (test.width, test.height) == (640, 560) and img.shape[:2] == (560, 640)
    assert img.std() > 10  # drawn, not blank
    png = Image.open(res.run_dir / "confusion_test.png")
    assert png.size == (640, 560)


def test_encoder_config_is_a_hyperparameter_of_the_checkpoint(trained, encoder_ckpt, tmp_path):
    """The encoder's run config is in the classifier checkpoint's hparams; a checkpoint of the former
    layout (config beside the hparams, under classifier_encoder) still loads."""
    from ae_lightning.models import load_checkpoint
    from ae_lightning.models.classifier import LEGACY_ENCODER_KEY, load_encoder

    res, _, _ = trained
    best = res.metrics["best_checkpoint"]
    ckpt = torch.load(best, weights_only=False)
    enc_cfg = load_encoder(encoder_ckpt)[1]
    assert ckpt["hyper_parameters"]["encoder_config"] == enc_cfg
    clf, _ = load_checkpoint(best)
    assert clf.hparams.encoder_config == enc_cfg and clf.encoder_config == enc_cfg
    legacy = tmp_path / "legacy.ckpt"
    del ckpt["hyper_parameters"]["encoder_config"]
    ckpt[LEGACY_ENCODER_KEY] = {"config": enc_cfg, "path": str(encoder_ckpt)}
    torch.save(ckpt, legacy)
    old, _ = load_checkpoint(legacy)
    assert old.encoder_config == enc_cfg
    for k, v in clf.state_dict().items():
        assert torch.equal(old.state_dict()[k], v)


def test_frozen_encoder_unchanged_and_encoded_once(trained):
    from ae_lightning.models import load_checkpoint

    res, before, seen = trained
    clf, cfg = load_checkpoint(res.metrics["best_checkpoint"])
    after = clf.autoencoder.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # 1000 train + 100 val + 300 test images, each encoded once over 6 epochs and the test
    assert seen["images"] == 1400
    assert res.metrics["epochs"] == 6


def test_reload_is_self_contained(trained, encoder_ckpt, tmp_path, data_dir):
    """A classifier checkpoint reloads with the same predictions after the encoder file is gone."""
    from ae_lightning.data import MNISTDataModule
    from ae_lightning.models import load_checkpoint

    res, _, _ = trained
    best = res.metrics["best_checkpoint"]
    x, y = MNISTDataModule(data_dir=str(data_dir), download=False).tensors("test", limit=64)
    clf, _ = load_checkpoint(best)
    with torch.no_grad():
        ref = clf(x)
    assert bool(clf.stats_ready) and not torch.equal(clf.code_std, torch.ones_like(clf.code_std))
    moved = tmp_path / "moved.ckpt"
    shutil.move(encoder_ckpt, moved)
    try:
        again, cfg = load_checkpoint(best)
        with torch.no_grad():
            assert torch.equal(again(x), ref)
        assert cfg["module"] == "classifier"
        assert (ref.argmax(1) == y).float().mean() >= 0.85
    finally:
        shutil.move(moved, encoder_ckpt)


def test_finetune_trains_encoder_not_decoder(encoder_ckpt, cfg_for):
    from ae_lightning.fit import fit
    from ae_lightning.models import load_checkpoint
    from ae_lightning.models.classifier import load_encoder

    ae, _ = load_encoder(encoder_ckpt)
    res = fit(cfg_for("classifier", model__encoder=str(encoder_ckpt), model__finetune=True,
                      model__augment_shift=2, trainer__max_epochs=2))
    clf, _ = load_checkpoint(res.metrics["best_checkpoint"])
    enc0, enc1 = ae.encoder[0].weight, clf.autoencoder.encoder[0].weight
    assert not torch.equal(enc0, enc1)  # the encoder trained
    assert torch.equal(ae.decoder[0].weight, clf.autoencoder.decoder[0].weight)  # the decoder did not
    assert res.metrics["test_acc"] > 0.5


def test_random_shift_moves_images():
    from ae_lightning.models.classifier import random_shift

    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1
    torch.manual_seed(0)
    out = random_shift(x, 2)
    assert out.shape == x.shape and torch.equal(out.sum((1, 2, 3)), x.sum((1, 2, 3)))  # nothing cut off
    assert (out != x).flatten(1).any(1).float().mean() > 0.7  # most images moved (1/25 stay put)
    assert torch.equal(random_shift(x, 0), x)


# -- bad input: one line on stderr, exit status 2, through train.py ----------------------------------
def _train(args, capsys):
    import train

    rc = train.main(args)
    err = capsys.readouterr().err.strip()
    return rc, err


def _args(data_dir, tmp_path, *extra):
    return ["--variant", "classifier", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "runs"),
            "--max-epochs", "1", "--accelerator", "cpu", "--set", "data.download=false", *extra]


def test_missing_encoder_flag(data_dir, tmp_path, capsys):
    rc, err = _train(_args(data_dir, tmp_path), capsys)
    assert rc == 2 and err.startswith("error: the classifier needs an encoder: pass --encoder") and "\n" not in err


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "truncated", "foreign", "no_config"])
def test_bad_encoder_file(kind, data_dir, tmp_path, capsys, encoder_ckpt):
    path = tmp_path / "enc.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"this is not a checkpoint\n" * 10)
    elif kind == "truncated":
        path.write_bytes(encoder_ckpt.read_bytes()[:5000])
    elif kind == "foreign":  # a plain PyTorch checkpoint of some other project
        torch.save({"state_dict": {"w": torch.zeros(3)}, "epoch": 1}, path)
    elif kind == "no_config":  # our key, but nothing usable inside
        torch.save({"state_dict": {}, "ae_lightning": {"oops": 1}}, path)
    rc, err = _train(_args(data_dir, tmp_path, "--encoder", str(path)), capsys)
    expected = {"missing": "checkpoint not found", "empty": "damaged checkpoint",
                "garbage": "damaged checkpoint", "truncated": "damaged checkpoint",
                "foreign": "is not a checkpoint of an ae-lightning run",
                "no_config": "is not a checkpoint of an ae-lightning autoencoder"}[kind]
    assert rc == 2 and err.startswith("error: ") and expected in err and "\n" not in err, err


def test_classifier_checkpoint_is_not_an_encoder(trained, data_dir, tmp_path, capsys):
    res, _, _ = trained
    rc, err = _train(_args(data_dir, tmp_path, "--encoder", res.metrics["best_checkpoint"]), capsys)
    assert rc == 2 and "not of an autoencoder" in err and "\n" not in err, err


def test_weights_that_do_not_fit(encoder_ckpt, data_dir, tmp_path, capsys):
    ckpt = torch.load(encoder_ckpt, map_location="cpu", weights_only=False)
    ckpt["ae_lightning"]["config"]["model"]["latent_dim"] = 5  # the weights say 8
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    rc, err = _train(_args(data_dir, tmp_path, "--encoder", str(bad)), capsys)
    assert rc == 2 and "weights do not fit" in err and "\n" not in err, err


def test_dataset_must_match(encoder_ckpt, data_dir, tmp_path, capsys):
    rc, err = _train(_args(data_dir, tmp_path, "--encoder", str(encoder_ckpt), "--dataset", "fashion_mnist"), capsys)
    assert rc == 2 and err == (f"error: the encoder {encoder_ckpt} was trained on mnist, but this run uses "
                               "fashion_mnist: pass --dataset mnist")
    rc, err = _train(_args(data_dir, tmp_path, "--encoder", str(encoder_ckpt), "--set", "data.normalize=standardize"),
                     capsys)
    assert rc == 2 and "--set data.normalize=unit" in err


def test_augment_needs_finetune(encoder_ckpt, data_dir, tmp_path, capsys):
    rc, err = _train(_args(data_dir, tmp_path, "--encoder", str(encoder_ckpt), "--set", "model.augment_shift=2"),
                     capsys)
    assert rc == 2 and "model.augment_shift needs --finetune" in err
