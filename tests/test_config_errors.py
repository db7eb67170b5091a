"""Errors that say what is wrong: YAML with its cause and line, a folder or an empty file as
--config, a batch larger than its training split, an absurd latent size. One line, exit 2."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
from test_train_cli import tiny_args  # noqa: E402

import train  # noqa: E402


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("text, wanted", [
    ("model:\n  latent_dim: 4\n\tlr: 0.1\n", ["line 3, column 1", "a tab character", "spaces"]),
    ("model: {latent_dim: 4\ndata: {}\n", ["line 2", "expected ',' or '}'", "flow mapping from line 1"]),
])
def test_a_yaml_error_names_its_cause_and_line(tmp_path, capsys, text, wanted):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    assert train.main(["--variant", "fc", "--config", str(f)]) == 2
    err = one_line(capsys)
    assert f"{f}: not valid YAML: " in err and all(w in err for w in wanted), err
    assert "while scanning for the next token" not in err


def test_a_folder_as_config_says_it_is_a_folder(tmp_path, capsys):
    assert train.main(["--variant", "fc", "--config", str(tmp_path)]) == 2
    assert f"{tmp_path} is a folder, not a config file" in one_line(capsys)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_config_file_is_refused(tmp_path, capsys, text):
    f = tmp_path / "empty.yaml"
    f.write_text(text)
    assert train.main(["--variant", "fc", "--config", str(f)]) == 2
    assert f"{f} is empty" in one_line(capsys)


@pytest.mark.parametrize("extra, size", [
    (["--batch-size", "501"], 500),  # --subset 500
    (["--batch-size", "441", "--set", "data.folds=5"], 440),  # 5 folds of 500 + 50: 4 train
    (["--batch-size", "1081", "--set", "data.subset=null"], 1080),  # 1200 less 120 for validation
])
def test_a_batch_larger_than_its_training_split_is_refused_with_the_split_size(
        data_dir, tmp_path, capsys, extra, size):
    assert train.main(tiny_args(data_dir, tmp_path, *extra)) == 2
    err = one_line(capsys)
    assert f"is larger than the training split, {size} images" in err and f"to {size} or less" in err
    assert not list(tmp_path.rglob("version_*"))  # nothing trained, no run folder left


def test_a_batch_as_large_as_the_split_trains(data_dir, tmp_path):
    assert train.main(tiny_args(data_dir, tmp_path, "--batch-size", "500", "--max-epochs", "1")) == 0


def test_an_absurd_latent_size_is_refused_with_its_bound(tmp_path, capsys):
    from ae_lightning.resolve import load

    assert train.main(["--variant", "fc", "--latent-dim", "100000", "--output-dir", str(tmp_path)]) == 2
    err = one_line(capsys)
    assert "model.latent_dim 100000 is above 12544, 16x the 784 input pixels" in err and "MB" in err
    assert load("sparse", None, {"model.latent_dim": 12544})["model"]["latent_dim"] == 12544
