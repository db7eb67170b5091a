"""Fast errors (issue 21.4): a config or flag mistake is refused before torch, Lightning or Ray is
imported: the schema is the torch-free dataclasses of ae_lightning.configs, which build the modules."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "lightning", "ray", "ax")


def test_every_module_is_built_from_its_registered_config():
    import dataclasses

    from ae_lightning import configs
    from ae_lightning.models import get_module, module_names

    assert module_names() == configs.model_names()  # the pixel CNN of the latent study included
    for name in module_names():
        cls, config = get_module(name), configs.model_config(name)
        assert cls.Config is config and config.registry_name == name
        if name != "classifier":  # it needs a trained encoder (tests/test_classifier.py)
            built = cls(**{"lr": 0.25})
            # the input shape beside the options: MNIST's when none is given
            assert dict(built.hparams) == {**dataclasses.asdict(config()), "lr": 0.25, "input_shape": (1, 28, 28)}


def test_every_declared_study_runs_from_its_module_and_every_study_module_is_declared():
    import pkgutil

    import ae_lightning.studies as package
    from ae_lightning.studies import studies

    helpers = {"__main__", "catalog", "common", "fidelity", "one_variable", "plots", "presets", "report",
               "reproduce", "runner", "seeds"}
    modules = {m.name for m in pkgutil.iter_modules(package.__path__)} - helpers
    assert {s.name for s in studies()} == modules
    assert all(callable(s.module.measure) and callable(s.module.render) for s in studies())


def imported_by(args: list[str]) -> tuple[int, list[str], set[str]]:
    """Exit code, stderr lines (import times left out) and the heavy top-level packages imported."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # run from ROOT: its modules come first on sys.path
    p = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    times = [line for line in p.stderr.splitlines() if line.startswith("import time:")]
    other = [line for line in p.stderr.splitlines() if not line.startswith("import time:")]
    heavy = {line.rsplit("|", 1)[1].strip() for line in times} & set(HEAVY)
    return p.returncode, other, heavy


@pytest.mark.parametrize("args, message", [
    (["train.py", "--variant", "fc", "--set", "model.bogus=1"], "unknown config key model.bogus"),
    (["train.py", "--variant", "vae", "--lr", "-1"], "--lr (model.lr): expected float > 0"),
    (["train.py", "--variant", "fc", "--max-epochs", "ten"], "--max-epochs (trainer.max_epochs): expected int > 0"),
    (["train.py", "--variant", "conv", "--set", "data.normalise=unit"], "(did you mean 'normalize'?)"),
    (["train.py", "--variant", "fc", "--set", "trainer.max_epochs=0"], "trainer.max_epochs: expected int > 0"),
    (["train.py", "--variant", "nope"], "unknown variant 'nope'"),
    (["train.py", "--variant", "fc", "--data-dir", "/nonexistent", "--set", "data.download=false"],
     "missing data file train-images-idx3-ubyte[.gz] in /nonexistent/MNIST/raw"),
    (["-m", "search.tune", "--variant", "fc", "--set", "model.bogus=1"], "unknown config key model.bogus"),
    (["-m", "ae_lightning.studies", "compression", "--epochs", "abc"], "--epochs (trainer.max_epochs): expected int"),
    (["-m", "ae_lightning.studies", "compresion"], "unknown study 'compresion'"),
    (["-m", "ae_lightning.studies", "compression", "--latents", "2,x"], "--latents '2,x' (model.latent_dim)"),
    (["-m", "ae_lightning.studies", "compression", "--data-dir", "/nonexistent"], "--data-dir /nonexistent: no such folder"),
    (["-m", "search.tune", "--variant", "fc", "--data-dir", "/nonexistent", "--set", "data.download=false"],
     "missing data file train-images-idx3-ubyte[.gz] in /nonexistent/MNIST/raw"),
    (["-m", "ae_lightning.studies", "reproduce", "kears"], "unknown preset 'kears': choose one of"),
    (["-m", "ae_lightning.studies", "reproduce", "keras", "--set", "config.model.bogus=1"],
     "unknown config key model.bogus for variant"),
    (["-m", "ae_lightning.studies", "reproduce", "keras", "--set", "config.data.download=false", "--data-dir", "tests"],
     "missing data file train-images-idx3-ubyte[.gz] in tests/FashionMNIST/raw"),
    (["-m", "ae_lightning.studies", "reproduce", "zoo", "--data-dir", "/nonexistent"], "--data-dir /nonexistent: no such folder"),
    (["-m", "ae_lightning.studies", "reproduce", "zoo", "--only", "clasifier"], "--only clasifier: preset zoo has no"),
    (["-m", "ae_lightning.studies", "reproduce", "zoo", "--seeds", "0,x"], "--seeds '0,x': expected non-negative"),
    (["-m", "ae_lightning.studies", "reproduce", "zoo", "--set", "studies.classifier.bogus=1", "--smoke"],
     "unknown key studies.classifier.bogus of study classifier"),
])
def test_a_bad_key_or_flag_is_one_line_before_torch_lightning_and_ray(args, message):
    rc, err, heavy = imported_by(args)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not heavy, f"imported {heavy} before the error"


@pytest.mark.parametrize("args, message", [
    (["-m", "ae_lightning.probes", "/nonexistent.ckpt"], "checkpoint not found: /nonexistent.ckpt"),
    (["-m", "ae_lightning.probes", "tests", "--k", "0"], "--k: expected int > 0"),
    (["-m", "ae_lightning.generate", "/nonexistent.ckpt", "--out", "x"], "checkpoint not found: /nonexistent.ckpt"),
    (["-m", "ae_lightning.generate", "tests", "--out", "x"], "tests is a folder, not a checkpoint file"),
    (["-m", "ae_lightning.generate", "tests"], "tests is a folder, not a checkpoint file or a run folder"),
])
def test_a_checkpoint_command_s_bad_flag_or_file_is_one_line_before_lightning(args, message):
    """probes and generate compute with torch in the module itself; the data and the models (Lightning) wait."""
    rc, err, heavy = imported_by(args)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert heavy <= {"torch"}, f"imported {heavy} before the error"


def test_a_bad_key_of_a_search_space_is_one_line_before_torch_lightning_and_ray(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("space:\n  model.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}\n"
                     "  model.latnet_dim: {type: choice, values: [2, 4]}\n")
    rc, err, heavy = imported_by(["-m", "search.tune", "--variant", "fc", "--space", str(space)])
    assert rc == 2 and len(err) == 1 and "unknown config key model.latnet_dim" in err[0], err
    assert not heavy, f"imported {heavy} before the error"
    # the base config's own cross-field checks still run (after the space's keys, with the classes)
    space.write_text("space:\n  model.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}\n")
    rc, err, _ = imported_by(["-m", "search.tune", "--variant", "fc", "--space", str(space),
                              "--set", "model.optimizer=sgd", "--set", "model.eps=1.0e-7"])
    assert rc == 2 and len(err) == 1 and "model.eps: sgd has no epsilon" in err[0], err


@pytest.mark.parametrize("args, message", [
    (["train.py", "--variant", "fc", "--latent-dim", "100000"], "model.latent_dim 100000 is above"),
    (["train.py", "--variant", "fc", "--resume", "--output-dir", "{tmp}/runs"], "nothing to resume"),
    (["-m", "search.tune", "--variant", "fc", "--cv", "1"], "--cv 1"),
    (["-m", "search.tune", "--variant", "fc", "--subset", "100"], "--subset 100: every data.batch_size of the space"),
    (["-m", "ae_lightning.studies", "reproduce", "zoo", "--smoke", "--set", "studies.classifier.bogus=1"],
     "unknown key studies.classifier.bogus of study classifier"),
])
def test_a_bad_flag_answers_as_itself_while_the_data_is_still_to_be_downloaded(args, message, tmp_path):
    """A fresh clone has no data until the first run downloads it: every check answers before that download
    (CI's clone has no data, and no network but the package registries)."""
    empty = tmp_path / "data"
    empty.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args] + ["--data-dir", str(empty)]
    p = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], p.stderr
    assert not any(empty.rglob("*")), "downloaded before the flag was checked"
