"""Config layering and strict validation."""
from __future__ import annotations

import pytest

from ae_lightning.config import parse_value, schema_of, variants
from ae_lightning.errors import UserError
from ae_lightning.resolve import load


def test_layers_and_flags_win_in_order(tmp_path):
    cfg = load("fc")
    assert cfg["module"] == "mlp" and cfg["model"]["leaky_slope"] == 0.5 and cfg["model"]["lr"] == 1e-3
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  lr: 2e-3\n  latent_dim: 8\ntrainer:\n  max_epochs: 3\n")
    cfg = load("fc", f, {"model.latent_dim": 4})
    assert cfg["model"]["lr"] == 2e-3 and cfg["model"]["latent_dim"] == 4 and cfg["trainer"]["max_epochs"] == 3


def test_a_run_config_reloads_identically(tmp_path):
    from ae_lightning.config import dump_yaml

    cfg = load("deep", None, {"model.latent_dim": 5, "data.subset": 100})
    f = tmp_path / "config.yaml"
    f.write_text(dump_yaml(cfg))
    assert load(None, f) == cfg


def test_parse_value_reads_yaml_scalars():
    assert parse_value("1e-3") == 1e-3 and parse_value("[784, 200]") == [784, 200]
    assert parse_value("null") is None and parse_value("adam") == "adam" and parse_value("3") == 3


@pytest.mark.parametrize("overrides, message", [
    ({"model.latent_dim": 0}, "model.latent_dim: expected int > 0"),
    ({"model.latent_dim": 2.5}, "model.latent_dim"),
    ({"data.batch_size": -4}, "data.batch_size"),
    ({"trainer.max_epochs": 0}, "trainer.max_epochs"),
    ({"model.lr": 0.0}, "model.lr"),
    ({"model.lr": float("inf")}, "model.lr"),
    ({"model.lr": float("nan")}, "model.lr"),
    ({"model.lr": "fast"}, "model.lr"),
    ({"model.optimizer": "lion"}, "model.optimizer: expected one of adam"),
    ({"model.nonsense": 1}, "unknown config key model.nonsense"),
    ({"data.dataset": "cifar"}, "data.dataset"),
    ({"model.layers": [100, 50]}, "must start at 784"),
    ({"model.loss": "bce", "model.output_act": "none"}, "needs model.output_act sigmoid"),
    ({"trainer.deterministic": "yes"}, "trainer.deterministic: expected bool"),
])
def test_bad_values_are_one_line_user_errors(overrides, message):
    with pytest.raises(UserError, match=message) as e:
        load("fc", None, overrides)
    assert "\n" not in str(e.value)


def test_unknown_variant_file_and_top_level_key(tmp_path):
    with pytest.raises(UserError, match="unknown variant 'nope'"):
        load("nope")
    with pytest.raises(UserError, match="config file not found"):
        load("fc", tmp_path / "missing.yaml")
    f = tmp_path / "bad.yaml"
    f.write_text("modle: {}\n")
    with pytest.raises(UserError, match="unknown config key 'modle'"):
        load("fc", f)
    f.write_text("model: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load("fc", f)


def test_every_variant_config_resolves():
    assert {"linear", "shallow", "deep", "fc"} <= set(variants())
    for v in variants():
        if v == "classifier":  # needs --encoder
            continue
        cfg = load(v)
        assert cfg["variant"] == v


def test_schema_includes_the_base_configs_fields():
    from ae_lightning.configs.mlp import MLPConfig

    keys = schema_of(MLPConfig)
    assert {"layers", "code_act", "latent_dim", "loss", "lr", "optimizer"} <= keys.keys()


def test_cli_wrapper_turns_user_errors_into_one_line_and_exit_2(capsys):
    from ae_lightning.config import cli

    @cli
    def main(argv=None):
        if argv == ["bad"]:
            raise UserError("--x must be positive")
        if argv == ["bug"]:
            raise ValueError("a bug is not the user's error")
        return 0

    assert main([]) == 0
    assert main(["bad"]) == 2
    assert capsys.readouterr().err == "error: --x must be positive\n"
    with pytest.raises(ValueError):  # anything else keeps its traceback
        main(["bug"])
