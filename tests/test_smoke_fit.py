import json


def test_fit_writes_run_folder(cfg_for):
    from ae_lightning.fit import fit

    cfg = cfg_for("fc", model__latent_dim=8)
    res = fit(cfg)
    m = json.loads((res.run_dir / "metrics.json").read_text())
    assert {"test_mse", "test_nrmse", "test_rel_error"} <= m.keys()
    assert (res.run_dir / "checkpoints" / "last.ckpt").is_file()
