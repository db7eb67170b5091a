"""Hyperparameter search (search/): space validation, CLI errors, and real Ray Tune sweeps on CPU.

The unmarked sweep runs real Ray Tune + Ax (Sobol, then a BoTorch step) end to end, so an Ax /
BoTorch / Ray upgrade that breaks AxSearch fails the default test run.
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ae_lightning import runlock
from ae_lightning.config import ROOT
from ae_lightning.errors import UserError
from ae_lightning.resolve import load
from search.cluster import snapshot_intact

# a space where the first trial (the `points:` entry, lr 1e6 with SGD on the linear variant)
# diverges for certain, and the others train normally
NAN_SPACE = """
space:
  model.lr:         {type: choice, values: [0.001, 0.003, 1.0e+6]}
  model.latent_dim: {type: int, low: 2, high: 8}
points:
  - {model.lr: 1.0e+6, model.latent_dim: 4}
"""


def sweep_args(data_dir, storage, name, space, *extra) -> list[str]:
    return ["--variant", "linear", "--space", str(space), "--data-dir", str(data_dir), "--subset", "1000",
            "--storage", str(storage), "--name", name, "--max-concurrent", "1", "--quiet", "--num-cpus", "2",
            "--set", "data.download=false", "--set", "trainer.images_every_n_epochs=0",
            "--set", "model.optimizer=sgd", "--set", "data.batch_size=100", *extra]


def hparam_columns(run_dir: Path) -> list[str]:
    """The HParams tab's ticked columns of a run, in order (read back from its event files)."""
    from ae_lightning.eventfiles import hparams_tab

    return hparams_tab(run_dir)["ticked"]


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture
def base(data_dir):
    return load("deep", None, {"data.data_dir": str(data_dir), "data.download": False})


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path / name


# ---------------------------------------------------------------------------------------------
# search space
def test_default_space_loads_and_maps_to_tune(base):
    from ray import tune

    from search.space import ax_name, load_space, nest
    from search.tune import DEFAULT_SPACE

    space = load_space(DEFAULT_SPACE, base)
    assert list(space.params) == ["model.lr", "model.weight_decay", "data.batch_size", "model.latent_dim"]
    t = space.to_tune()
    # random search samples real values (a trial's config is what Ray's tables print): the same
    # distributions as a uniform draw of the searchers' encoding
    assert isinstance(t["model"]["weight_decay"], tune.search.sample.Float)
    assert (t["model"]["weight_decay"].lower, t["model"]["weight_decay"].upper) == (1e-6, 2e-6)
    assert isinstance(t["model"]["weight_decay"].get_sampler(), tune.search.sample.LogUniform)
    # floats reach Ax as a position in [0, 1] of their range, log-spaced for loguniform
    wd = space.params["model.weight_decay"]
    assert [wd.from_unit(u) for u in (0, 0.5, 1)] == pytest.approx([1e-6, 2 ** 0.5 * 1e-6, 2e-6])
    real = {"model.lr": 0.002, "model.weight_decay": 1.5e-6, "data.batch_size": 256, "model.latent_dim": 3}
    assert space.from_searcher({ax_name(k): v for k, v in space.encode(real).items()}) == pytest.approx(real)
    assert space.decode(nest(real)) == real  # a trial's config holds the real values
    assert t["data"]["batch_size"].categories == [128, 256, 512, 1024]
    # int ranges include their upper bound (Tune's randint excludes it)
    assert (t["model"]["latent_dim"].lower, t["model"]["latent_dim"].upper) == (2, 6)


@pytest.mark.parametrize("space_file, variant", [("default.yaml", "deep"), ("default.yaml", "vae"),
                                                  ("vae.yaml", "vae")])
def test_shipped_space_files_are_valid(data_dir, space_file, variant):
    from search.space import load_space

    space = load_space(ROOT / "configs" / "search" / space_file, load(variant, None, {"data.data_dir": str(data_dir)}))
    assert space.params and all(p.contains(p.samples()[0]) for p in space.params.values())


@pytest.mark.parametrize("text, message", [
    ("space: {model.nope: {type: uniform, low: 0, high: 1}}", "unknown config key model.nope"),
    ("space: {bogus.lr: {type: uniform, low: 0, high: 1}}", "keys are section.key"),
    ("space: {model.lr: {type: loguniform, low: 1.0e-2, high: 1.0e-3}}", "must be below high"),
    ("space: {model.lr: {type: loguniform, low: 0, high: 1.0e-3}}", "needs low > 0"),
    ("space: {model.lr: {type: uniform, low: -1, high: 1}}", "model.lr: expected"),
    ("space: {model.lr: {type: gaussian, low: 0, high: 1}}", "type must be one of"),
    ("space: {model.lr: {type: uniform, low: 0.1}}", "needs both low and high"),
    ("space: {model.lr: {type: uniform, low: 0.1, high: 1, step: 2}}", "unknown field(s) step"),
    ("space: {model.latent_dim: {type: uniform, low: 2, high: 9.5}}", "use type int"),
    ("space: {model.latent_dim: {type: int, low: 2.5, high: 9}}", "expected an integer"),
    ("space: {data.batch_size: {type: choice, values: [64]}}", "at least two"),
    ("space: {data.batch_size: {type: choice, values: [64, 64]}}", "repeat"),
    ("space: {model.loss: {type: choice, values: [mse, huber]}}", "model.loss: expected one of"),
    ("space: {trainer.max_epochs: {type: int, low: 1, high: 5}}", "set by the sweep itself"),
    ("space: {model.lr: {type: uniform, low: 0.1, high: 1}}\nextra: 1", "unknown top-level key(s) extra"),
    ("space: {}", "non-empty mapping"),
    ("space: [1, 2", "not valid YAML"),
    ("space: {model.lr: {type: uniform, low: 0.1, high: 1}}\npoints: [{model.lr: 5.0}]", "outside the space"),
    ("space: {model.lr: {type: uniform, low: 0.1, high: 1}}\npoints: [{model.wd: 0.5}]", "missing model.lr"),
])
def test_space_errors_name_the_problem(tmp_path, base, text, message):
    from search.space import load_space

    with pytest.raises(UserError) as e:
        load_space(write(tmp_path, text), base)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_space_values_pass_the_whole_config_check(tmp_path, data_dir):
    """A value valid for its key alone, but not with the variant's other keys, fails up front:
    BCE needs a sigmoid output, and `linear` has none."""
    from search.space import load_space

    linear = load("linear", None, {"data.data_dir": str(data_dir)})
    with pytest.raises(UserError, match="model.loss='bce' gives an invalid config"):
        load_space(write(tmp_path, "space: {model.loss: {type: choice, values: [mse, bce]}}"), linear)


def test_apply_sets_dotted_keys_and_validates(base):
    from search.space import apply, flatten, nest

    flat = {"model.lr": 0.002, "data.batch_size": 512, "seed": 3}
    assert flatten(nest(flat)) == flat
    cfg = apply(base, flat)
    assert (cfg["model"]["lr"], cfg["data"]["batch_size"], cfg["seed"]) == (0.002, 512, 3)
    assert base["model"]["lr"] == 1e-3  # base untouched
    with pytest.raises(UserError):
        apply(base, {"model.lr": -1.0})


# ---------------------------------------------------------------------------------------------
# cross-validation folds in the data module
def test_data_folds_partition_the_train_val_pool(data_dir):
    from ae_lightning.data import MNISTDataModule

    kw = dict(data_dir=str(data_dir), download=False, subset=600)
    plain = MNISTDataModule(**kw)
    pool = torch_cat_images(plain, ("train", "val"))
    vals = []
    for fold in range(3):
        dm = MNISTDataModule(**kw, folds=3, fold=fold)
        tr, va = dm.split("train")[0], dm.split("val")[0]
        assert len(tr) + len(va) == len(pool) and len(va) in (len(pool) // 3, len(pool) // 3 + 1)
        assert not set(map(bytes_of, tr)) & set(map(bytes_of, va))
        vals += list(map(bytes_of, va))
    assert sorted(vals) == sorted(map(bytes_of, pool))  # every pool image validates exactly once
    with pytest.raises(UserError, match="data.fold must lie in 0..folds-1"):
        load("deep", None, {"data.folds": 3, "data.fold": 3})


def torch_cat_images(dm, splits):
    import torch

    return torch.cat([dm.split(s)[0] for s in splits])


def bytes_of(img) -> bytes:
    return img.numpy().tobytes()


# ---------------------------------------------------------------------------------------------
# CLI: bad input fails with one line, exit 2, before Ray starts
@pytest.mark.parametrize("argv, message", [
    (["--num-samples", "0"], "--num-samples: expected int > 0, got '0'"),
    (["--num-samples", "ten"], "--num-samples: expected int > 0, got 'ten'"),
    (["--algo", "hyperopt"], "--algo: expected one of ax, random, got 'hyperopt'"),
    (["--scheduler", "pbt"], "--scheduler: expected one of asha, ax, none, got 'pbt'"),
    (["--space", "/nonexistent/space.yaml"], "search space file not found"),
    (["--cv", "1"], "--cv 1"),
    (["--cv", "3", "--scheduler", "asha"], "--cv with --scheduler asha"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial: expected float >= 0, got '-1'"),
    (["--gpus-per-trial", "1.5"], "a trial trains on one device"),
    (["--variant", "nope"], "unknown variant"),
    (["--resume", "--name", "never-ran"], "--resume: nothing to resume"),
])
def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, argv, message):
    import ray

    from search.tune import main

    args = ["--variant", "deep", "--storage", str(tmp_path / "s"), *argv]
    if argv[0] == "--variant":
        args = ["--storage", str(tmp_path / "s"), *argv]
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own checks
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and err.startswith("error: ") and "\n" not in err, err
    assert not ray.is_initialized()


def test_cli_gpus_without_gpu_fails_fast(tmp_path, capsys, monkeypatch, data_dir):
    import ray
    import torch

    from search.tune import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    t0 = time.time()
    code = main(["--variant", "deep", "--gpus-per-trial", "0.25", "--storage", str(tmp_path),
                 "--data-dir", str(data_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "this machine has no CUDA GPU" in err and "\n" not in err
    assert time.time() - t0 < 10 and not ray.is_initialized()


def test_cli_refuses_to_overwrite_an_experiment(tmp_path, capsys, data_dir):
    from search.tune import main

    (tmp_path / "s" / "old").mkdir(parents=True)
    (tmp_path / "s" / "old" / "search.json").write_text("{}")
    code = main(["--variant", "deep", "--storage", str(tmp_path / "s"), "--name", "old", "--data-dir", str(data_dir)])
    assert code == 2 and "--resume --name old" in capsys.readouterr().err


@pytest.mark.parametrize("saved", [{}, {"saved_by": 3, "variant": "deep"}, [1]])
def test_a_sweep_saved_by_an_older_version_is_one_line(tmp_path, capsys, data_dir, saved):
    """One settings format: --resume and search.report refuse any other with the same line."""
    from search.report import main as report_main
    from search.tune import main

    exp = tmp_path / "s" / "old"
    exp.mkdir(parents=True)
    (exp / "search.json").write_text(json.dumps(saved))
    assert main(["--storage", str(tmp_path / "s"), "--name", "old", "--resume"]) == 2
    assert report_main([str(exp)]) == 2
    errs = capsys.readouterr().err.strip().splitlines()
    assert errs == [f"error: {exp}: saved by an older version: start a new sweep"] * 2, errs


def test_ray_s_token_enabled_notice_only_with_verbose():
    """Ray logs at every local start that a token turned authentication on: dropped at the default
    verbosity; its warning that authentication is off still shows, and --verbose brings both."""
    import logging

    from ae_lightning import quiet
    from search import cluster

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    log = logging.getLogger(cluster.TOKEN_SETUP_LOGGER)
    log.addHandler(handler)
    try:
        for verbose in (False, True):
            quiet.set_verbose(verbose)
            cluster.quiet_notices()
            log.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.")
            log.warning("Token authentication is disabled for this Ray cluster. Anyone with network access ...")
    finally:
        log.removeHandler(handler)
        quiet.set_verbose(False)
    assert [m.split(" for ")[0] for m in seen] == [
        "Token authentication is disabled",  # default: the safe state's notice dropped
        "Token authentication is enabled", "Token authentication is disabled"]  # --verbose


# ---------------------------------------------------------------------------------------------
# real sweeps
def test_ax_sweep_end_to_end_with_a_diverging_trial_then_retrain_best(tmp_path, data_dir, capsys):
    """3 AxSearch trials: the first (lr 1e6) diverges and is reported failed with its reason, the
    other two finish (Sobol, then Ax's Bayesian proposal); the outputs exist; best.yaml retrains."""
    import train
    from search.tune import main

    storage = tmp_path / "search"
    code = main(sweep_args(data_dir, storage, "ax3", write(tmp_path, NAN_SPACE), "--num-samples", "3",
                           "--max-epochs", "2", "--init-trials", "1", "--max-failures", "1"))
    out, err = capsys.readouterr()
    assert code == 0, out
    assert not [line for line in err.splitlines() if line.startswith("trial ")], err  # --quiet: no line per trial
    exp = storage / "ax3"
    rows = read_rows(exp / "results.csv")
    assert len(rows) == 3
    by_status = {r["status"]: r for r in rows}
    assert sorted(r["status"] for r in rows) == ["completed", "completed", "diverged"]
    bad = by_status["diverged"]
    assert float(bad["model.lr"]) == 1e6 and ("became nan" in bad["reason"] or "became inf" in bad["reason"])
    assert {r["generator"] for r in rows} == {"Manual", "Sobol", "MBM"}  # the Bayesian step ran
    done = [r for r in rows if r["status"] == "completed"]
    assert all(int(r["epochs"]) == 2 and float(r["best_val_loss"]) > 0 and r["test_mse"] for r in done)
    for r in rows:  # Ray's own files and tables hold a trial's real values, not Ax's encoding
        tune_config = json.loads((Path(r["trial_dir"]) / "params.json").read_text())
        assert tune_config["model"]["lr"] == pytest.approx(float(r["model.lr"]))
    for r in rows:  # without --keep-checkpoints a finished trial keeps its best checkpoint alone
        trial = Path(r["trial_dir"])
        assert not list(trial.glob("**/last.ckpt")) and not list(trial.glob("checkpoint_*")), sorted(trial.rglob("*"))
        assert r["status"] != "completed" or len(list(trial.glob("checkpoints/best-*.ckpt"))) == 1

    best = json.loads((exp / "best.json").read_text())
    assert best["value"] == min(float(r["best_val_loss"]) for r in done)
    assert Path(best["checkpoint"]).is_file() and best["checkpoint"].startswith(str(exp))
    assert (exp / "search.png").stat().st_size > 1000
    assert f"retrain: python train.py --config {exp / 'best.yaml'}" in out
    # every trial logs TensorBoard under the experiment folder; finished ones carry HParams, whose
    # columns start with the searched keys (the space file's order)
    for r in done:
        events = list(Path(r["trial_dir"]).glob("events.out.tfevents.*"))
        assert events and any(b"_hparams_/session_start_info" in e.read_bytes() for e in events)
        assert hparam_columns(Path(r["trial_dir"]))[:3] == ["lr", "latent_dim", "run"]

    # best.yaml: the best values as a full run (every training image, the variant's own epochs, the
    # data folder relative); best_trial.yaml: the trial's config exactly
    best_yaml = yaml.safe_load((exp / "best.yaml").read_text())
    trial_yaml = yaml.safe_load((exp / "best_trial.yaml").read_text())
    assert best_yaml["model"]["lr"] == best["params"]["model.lr"] == trial_yaml["model"]["lr"]
    assert best_yaml["model"]["latent_dim"] == best["params"]["model.latent_dim"]
    assert trial_yaml["trainer"]["max_epochs"] == 2 and trial_yaml["data"]["subset"] == 1000
    assert best_yaml["trainer"]["max_epochs"] == load("linear")["trainer"]["max_epochs"] != 2
    assert best_yaml["data"]["subset"] is None and best_yaml["data"]["folds"] == 1
    assert not Path(best_yaml["data"]["data_dir"]).is_absolute()
    assert Path(best_yaml["data"]["data_dir"]).resolve() == Path(data_dir).resolve()
    assert {k: v for k, v in best_yaml["model"].items()} == trial_yaml["model"]
    assert train.main(["--config", str(exp / "best_trial.yaml"), "--output-dir", str(tmp_path / "retrain")]) == 0
    run = Path(capsys.readouterr().out.splitlines()[0])
    retrained = yaml.safe_load((run / "config.yaml").read_text())
    assert retrained["model"] == trial_yaml["model"] and retrained["data"] == trial_yaml["data"]
    m = json.loads((run / "metrics.json").read_text())
    # same config, seed and data: the retrained run reproduces the trial's validation loss
    assert m["best_val_loss"] == pytest.approx(best["value"], rel=1e-4)


LR_SPACE = "space: {model.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}}\n"


@pytest.fixture(scope="module")
def budget_sweep(tmp_path_factory, data_dir):
    """A finished random sweep of up to 6 one-epoch trials, one at a time, under --epoch-budget 2 and
    with --keep-checkpoints, at the default verbosity: (experiment folder, exit code, its stdout and
    stderr together)."""
    import contextlib
    import io

    from search.tune import main

    tmp = tmp_path_factory.mktemp("budget")
    out = io.StringIO()
    args = [a for a in sweep_args(data_dir, tmp / "search", "budget", write(tmp, LR_SPACE)) if a != "--quiet"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main([*args, "--algo", "random", "--num-samples", "6", "--max-epochs", "1", "--epoch-budget", "2",
                     "--keep-checkpoints"])
    return tmp / "search" / "budget", code, out.getvalue()


TRIAL_LINE = re.compile(r"^trial (\d)/6 trial_(\w+) completed: best_val_loss (\S+), 1 epoch, \d+\.\d s \| model\.lr=(\S+)$")


def test_a_sweep_prints_one_line_per_trial_and_no_ray_table(budget_sweep):
    """At the default verbosity a sweep's log has one line per finished trial (its objective,
    epochs, seconds and searched values), and none of Ray Tune's tables (--verbose shows them)."""
    exp, code, out = budget_sweep
    assert code == 0, out
    lines = [TRIAL_LINE.match(line) for line in out.splitlines() if line.startswith("trial ")]
    rows = {r["trial_id"]: r for r in read_rows(exp / "results.csv")}
    assert all(lines) and [m[1] for m in lines] == ["1", "2"] and {m[2] for m in lines} == set(rows), out
    for m in lines:
        assert float(m[3]) == pytest.approx(float(rows[m[2]]["best_val_loss"]), rel=1e-3)
        assert float(m[4]) == pytest.approx(float(rows[m[2]]["model.lr"]), rel=1e-3)
    tables = ("== Status ==", "Trial name", "Configuration for experiment", "+---", "╭", "│")
    assert not [t for t in tables if t in out], out


def test_searched_values_print_to_their_significant_digits(tmp_path, base, capsys, monkeypatch):
    """A searched weight decay of 1.5e-06 prints as such in the trial lines and in Tune's tables
    (--verbose), never rounded to 0 (Tune's newer output engine prints five decimals)."""
    from types import SimpleNamespace

    from search.progress import tables, value_text, values_text
    from search.space import load_space

    assert [value_text(v) for v in (1.5e-06, 0.0081448869, 2.0, 16, "adam")] == ["1.5e-06", "0.008145", "2", "16", "adam"]
    assert values_text({"model.weight_decay": 1.5e-06, "data.batch_size": 16}) == \
        "model.weight_decay=1.5e-06 data.batch_size=16"

    class Trial(SimpleNamespace):  # what Tune's CLIReporter reads of a trial
        __hash__ = object.__hash__

        def __str__(self):
            return self.trial_id

    space = load_space(write(tmp_path, "space: {model.weight_decay: {type: loguniform, low: 1.0e-7, high: 1.0e-2}, "
                                       "model.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}}\n"), base)
    trials = [Trial(trial_id=f"trial_{i}", status="TERMINATED", config=c, last_result={"best_val_loss": v, "config": c},
                    local_experiment_path=str(tmp_path), error_file=None, temporary_state=SimpleNamespace(location=None))
              for i, (c, v) in enumerate([({"model": {"weight_decay": 1.5e-06, "lr": 0.003}}, 0.02),
                                          ({"model": {"weight_decay": 0.004, "lr": 0.01}}, 0.03)])]
    from ray.tune.utils import log

    monkeypatch.setattr(log, "verbosity", log.Verbosity.V1_EXPERIMENT)  # the sweep's --verbose: RunConfig(verbose=1)
    reporter = tables(space)
    reporter.setup(start_time=time.time(), metric="best_val_loss", mode="min")  # as Tune does
    capsys.readouterr()
    reporter.report(trials, True)
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("| trial_0 "))
    assert re.search(r"\|\s+1\.5e-06 \|\s+0\.003 \|", row) and "model.weight_decay" in printed, printed


def test_epoch_budget_ends_the_sweep_once_its_trials_trained_that_many_epochs(budget_sweep):
    """6 trials asked, 1 epoch each, one at a time: the budget of 2 epochs ends the sweep after the
    second trial (without --epoch-budget, all 6 run)."""
    exp, code, out = budget_sweep
    assert code == 0, out
    rows = read_rows(exp / "results.csv")
    assert [(r["status"], r["epochs"]) for r in rows] == [("completed", "1")] * 2, rows
    assert json.loads((exp / "search.json").read_text())["epoch_budget"] == 2


def test_epoch_budget_counts_every_trial_s_epochs_and_stops_when_a_trial_ends_in_full():
    """The stopper itself: a trial's epochs count once (its highest epochs_total), a trial ASHA
    stopped counts too, and the sweep ends only when a trial ends in full with the budget reached."""
    from search.results import FINAL
    from search.searchers import EpochBudget

    stop = EpochBudget(5)
    for epochs in (1, 2, 3):
        assert not stop("a", {"epochs_total": epochs}) and not stop.stop_all()
    assert not stop("b", {"epochs_total": 1}) and not stop.stop_all()  # b: stopped by ASHA after 1 epoch
    assert not stop("a", {"epochs_total": 3, FINAL: True}) and not stop.stop_all()  # 3 + 1 < 5
    assert not stop("c", {"epochs_total": 6}) and not stop.stop_all()  # past the budget, but c runs on
    assert not stop("c", {"epochs_total": 6, FINAL: True}) and stop.stop_all()  # 3 + 1 + 6 >= 5


def test_keep_checkpoints_keeps_each_finished_trial_s_last_and_tune_checkpoints(budget_sweep):
    """--keep-checkpoints: a finished trial keeps its last.ckpt and Tune's checkpoint_* beside its best
    checkpoint (without it they are removed: test_ax_sweep_end_to_end_with_a_diverging_trial_then_retrain_best)."""
    exp, code, out = budget_sweep
    assert code == 0, out
    rows = read_rows(exp / "results.csv")
    assert rows
    for r in rows:
        trial = Path(r["trial_dir"])
        assert len(list(trial.glob("checkpoints/best-*.ckpt"))) == 1 and (trial / "checkpoints" / "last.ckpt").is_file()
        assert list(trial.glob("checkpoint_*/last.ckpt")), sorted(p.name for p in trial.iterdir())


def test_search_report_rewrites_a_finished_sweep_s_outputs_and_compares_sweeps(budget_sweep, tmp_path, capsys):
    """python -m search.report EXP rewrites results.csv, best.json, best.yaml, best_trial.yaml and
    search.png from the experiment folder alone, as the sweep wrote them; --compare draws the curves
    of several sweeps and prints each one's best."""
    from search import report

    exp, code, out = budget_sweep
    assert code == 0, out
    outputs = ("results.csv", "best.json", "best.yaml", "best_trial.yaml", "search.png")
    before = {name: (exp / name).read_bytes() for name in outputs}
    for name in outputs:
        (exp / name).unlink()
    done = subprocess.run([sys.executable, "-m", "search.report", str(exp)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    best = json.loads((exp / "best.json").read_text())
    assert done.stdout.strip().splitlines()[-1] == (f"{exp}: best best_val_loss {best['value']:.6g}; "
                                                    f"retrain: python train.py --config {exp.resolve() / 'best.yaml'}")
    for name in ("results.csv", "best.json", "best.yaml", "best_trial.yaml"):
        assert (exp / name).read_bytes() == before[name], name
    assert (exp / "search.png").stat().st_size > 1000
    rows = read_rows(exp / "results.csv")
    assert best["value"] == min(float(r["best_val_loss"]) for r in rows) and best["trials"] == len(rows) == 2

    png = tmp_path / "compare.png"
    assert report.main([str(exp), str(exp), "--compare", "--labels", "one", "two", "--out", str(png)]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = 1 + [float(r["best_val_loss"]) for r in rows].index(best["value"])
    for label in ("one", "two"):
        assert f"{label}: 2 trials, best {best['value']:.6g} (first reached at trial {first})" in lines, lines
    assert png.stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.parametrize("algo", [["--algo", "random"],
                                  ["--algo", "ax", "--init-trials", "2",
                                   "--objective", "val_loss", "--objective", "model.latent_dim"]],
                         ids=["random", "ax-two-objectives"])
def test_resume_after_kill_9_keeps_finished_trials(tmp_path, data_dir, algo):
    """kill -9 the driver mid-sweep; --resume finishes the sweep and does not redo finished trials.
    With Ax (two objectives, its trials reaching the Bayesian step), every trial, before and after
    the kill, is COMPLETED in Ax with its proposal recorded (the searcher's state, Ax's own JSON,
    is restored), and the front is written."""
    storage = tmp_path / "search"
    space = write(tmp_path, "space: {model.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}, "
                            "model.latent_dim: {type: int, low: 2, high: 8}}")
    cmd = [sys.executable, "-m", "search.tune", *sweep_args(data_dir, storage, "killed", space, *algo,
                                                              "--num-samples", "4", "--max-epochs", "5",
                                                              "--set", "data.batch_size=20")]  # ~1 s epochs
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Tune snapshots its state every 2 s (not every 10 s or more), and the kill comes just after a
    # snapshot that has a trial training: the resumed sweep trains it on in the same folder
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**env, "TUNE_GLOBAL_CHECKPOINT_S": "2"}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    exp = storage / "killed"
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list(exp.glob("trial_*/metrics.json")):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.5)
        finished = {p.parent.name: p.stat().st_mtime_ns for p in exp.glob("trial_*/metrics.json")}
        events = {name: sorted(e.name for e in (exp / name).glob("events.out.tfevents.*")) for name in finished}
        assert finished, "no trial finished in time"

        def training() -> list[str]:  # the folders of trials that train now
            return [str(t.parent) for t in exp.glob(f"trial_*/{runlock.LOCK_NAME}") if t.parent.name not in finished]

        while time.time() < deadline and not training():  # the kill hits a trial mid-training
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.05)
        started = time.time()

        # Tune rewrites every file of its snapshot each time, one by one, with no rename: the kill
        # waits until all of them were rewritten since (in a loaded CI run, a kill 0.1 s after the
        # first of them changed left the snapshot cut short, and the resume refused it)
        def copied() -> bool:
            times = [p.stat().st_mtime for p in exp.glob("*state-*")]
            return bool(times) and min(times) > started

        while time.time() < deadline and not copied():
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.02)
        time.sleep(0.05)  # the last file's write is done; the next snapshot is 2 s away
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        try:  # Ray's own processes of the killed driver (they die with it; make sure)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not (exp / "results.csv").exists()
    assert snapshot_intact(exp), "the kill was to come between two snapshots (a cut one is the next test's case)"
    # a worker of the killed driver trains on for a few seconds, its trial folder locked (its own
    # process group; it ends once it sees its raylet gone): a stand-in holds the unfinished trials'
    # folders for 20 s (longer than the resumed driver takes to start its first trial), and the
    # resumed trials wait for it instead of failing
    unfinished = [d for d in training() if not (Path(d) / "metrics.json").is_file()]
    code = ("import sys, time; from ae_lightning import runlock\n"
            "for d in sys.argv[1:]: runlock.hold(d, wait_s=30)\n"
            "print('held', flush=True); time.sleep(20)")
    leftover = subprocess.Popen([sys.executable, "-c", code, *unfinished], stdout=subprocess.PIPE, text=True)
    assert leftover.stdout.readline().strip() == "held"
    assert unfinished, "no trial was training at the kill"
    done = subprocess.run([sys.executable, "-m", "search.tune", "--storage", str(storage), "--name", "killed",
                           "--resume", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    leftover.wait()
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [d for d in unfinished if list(Path(d).glob("error.*"))]  # waited: no failure, no retry
    rows = read_rows(exp / "results.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}, [(r["status"], r["reason"]) for r in rows]
    assert all(int(r["epochs"]) == 5 for r in rows)
    for name, mtime in finished.items():  # finished before the kill: kept, not trained or tested again
        assert (exp / name / "metrics.json").stat().st_mtime_ns == mtime
        assert sorted(e.name for e in (exp / name).glob("events.out.tfevents.*")) == events[name]
    assert (exp / "best.yaml").is_file()
    assert "Failed to fetch metrics" not in done.stdout + done.stderr  # Tune's false alarm is gone
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for r in rows:  # the interrupted trial shows each epoch once in TensorBoard (purge on resume)
        acc = EventAccumulator(r["trial_dir"], purge_orphaned_data=True)
        acc.Reload()
        steps = [e.step for e in acc.Scalars("val/loss")]
        assert len(steps) == 5 and steps == sorted(set(steps)), (r["trial_id"], steps)
    if "ax" in algo:
        from search.ax_searcher import client_from_state
        from search.report import proposals
        from search.results import SEARCHER_STATE, read_state

        # Tune snapshots its trials and the searcher one after the other: a kill between the two
        # can leave one proposal unrecorded (its trial then lacks a generator) or one Ax trial
        # that Tune never started (RUNNING in Ax, a pending point); at most one, never a trial
        # that Tune finished but Ax did not see completed
        by_id = proposals(exp)
        assert sum(r["trial_id"] not in by_id for r in rows) <= 1
        ax = client_from_state(read_state(sorted(exp.glob(SEARCHER_STATE.format("*")))[-1])).summarize()
        ax = ax.set_index("trial_index")
        for r in rows:
            if r["trial_id"] in by_id:
                assert ax.loc[by_id[r["trial_id"]]["ax_trial"], "trial_status"] == "COMPLETED"
        assert sum(ax["trial_status"] != "COMPLETED") <= 1
        assert "MBM" in set(ax["generation_node"])  # the Bayesian step ran, before or after the kill
        assert (exp / "pareto.csv").is_file()


@pytest.mark.slow
def test_cv_reports_the_mean_over_folds(tmp_path, data_dir, capsys):
    from search.tune import main

    storage = tmp_path / "search"
    space = write(tmp_path, "space: {model.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}}")
    code = main(sweep_args(data_dir, storage, "cv", space, "--algo", "random", "--num-samples", "2",
                           "--max-epochs", "2", "--cv", "3"))
    assert code == 0
    for r in read_rows(storage / "cv" / "results.csv"):
        assert r["status"] == "completed" and int(r["epochs"]) == 6  # 3 folds x 2 epochs
        folds = [json.loads((Path(r["trial_dir"]) / f"fold_{k}" / "metrics.json").read_text()) for k in range(3)]
        assert [f["config"]["data"]["fold"] for f in folds] == [0, 1, 2]
        mean = sum(f["best_val_loss"] for f in folds) / 3
        assert float(r["best_val_loss"]) == pytest.approx(mean, rel=1e-6)


@pytest.mark.slow
def test_failure_config_retries_a_crashed_trial_from_its_checkpoint(tmp_path, data_dir):
    """kill -9 a trial's worker process after its first epochs: FailureConfig restarts the trial
    from its last reported checkpoint, and it still ends with every epoch, each reported once."""
    storage = tmp_path / "search"
    space = write(tmp_path, "space: {model.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}}")
    cmd = [sys.executable, "-m", "search.tune", *sweep_args(data_dir, storage, "crash", space, "--algo", "random",
                                                              "--num-samples", "1", "--max-epochs", "25")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    exp = storage / "crash"
    try:
        deadline, killed = time.time() + 240, None
        while time.time() < deadline and killed is None:
            for result in exp.glob("trial_*/result.json"):
                lines = result.read_text().splitlines()
                if lines and json.loads(lines[-1])["epoch"] >= 2:
                    killed = json.loads(lines[-1])
                    os.kill(killed["pid"], signal.SIGKILL)  # the trial's worker, not the driver
            time.sleep(0.05)
        assert killed is not None, "the trial never reported"
        _, err = proc.communicate(timeout=300)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, err[-2000:]
    (row,) = read_rows(exp / "results.csv")
    assert row["status"] == "completed"
    trial = Path(row["trial_dir"])
    assert (trial / "error.txt").is_file()
    # finished: its best checkpoint alone is kept (the restored copy, last.ckpt and Tune's copies went)
    assert [p.name for p in trial.rglob("*.ckpt")] == [Path(json.loads((trial / "metrics.json").read_text())
                                                            ["best_checkpoint"]).name]
    assert not list(trial.glob("checkpoint_*")) and not (trial / "restored").exists()
    results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [r.get("final", False) for r in results].count(True) == 1 and results[-1]["final"]  # then the test
    epochs = [r["epoch"] for r in results if not r.get("final")]
    assert epochs[-1] == 25 and killed["epoch"] in epochs
    assert epochs == sorted(set(epochs))  # resumed after the checkpoint, no epoch trained twice


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["asha", "ax"])
def test_early_stopping_stops_weak_trials_and_ax_sees_their_values(tmp_path, data_dir, scheduler):
    """ASHA, or Ax's own percentile rule, with Ax, end to end: the stopped trials are ABANDONED in Ax
    (left out of its fit), the finished ones COMPLETED with their value; no trial is stopped at its
    last epoch."""
    from search.ax_searcher import client_from_state
    from search.report import proposals
    from search.results import SEARCHER_STATE, read_state
    from search.tune import main

    storage = tmp_path / "search"
    space = write(tmp_path, "space: {model.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}}")
    n = 6 if scheduler == "asha" else 9  # Ax's rule waits for 5 trials with curves
    code = main(sweep_args(data_dir, storage, "stop", space, "--algo", "ax", "--num-samples", str(n),
                           "--max-epochs", "9" if scheduler == "asha" else "3", "--scheduler", scheduler,
                           "--init-trials", "3"))
    assert code == 0
    exp = storage / "stop"
    ax = client_from_state(read_state(sorted(exp.glob(SEARCHER_STATE.format("*")))[-1])).summarize()
    ax = ax.set_index("trial_index")
    by_index = {k: p["ax_trial"] for k, p in proposals(exp).items()}
    rows = read_rows(exp / "results.csv")
    for r in rows:
        t = ax.loc[by_index[r["trial_id"]]]
        assert t["trial_status"] == {"completed": "COMPLETED", "stopped": "ABANDONED"}[r["status"]]
        if r["status"] == "completed":
            assert t["best_val_loss"] == pytest.approx(float(r["best_val_loss"]))
    assert {r["status"] for r in rows} <= {"completed", "stopped"} and len(rows) == n
    stopped = [r for r in rows if r["status"] == "stopped"]
    rungs = (1, 3) if scheduler == "asha" else (1, 2)  # ASHA's rungs 1, 3 (x3); Ax: any epoch before the last
    assert stopped and all(int(r["epochs"]) in rungs for r in stopped)
    assert all(int(r["epochs"]) == (9 if scheduler == "asha" else 3) for r in rows if r["status"] == "completed")
    if scheduler == "ax":
        return
    for r in rows:  # every trial is in the HParams tab, stopped ones too (with no test metrics)
        events = b"".join(e.read_bytes() for e in Path(r["trial_dir"]).glob("events.out.tfevents.*"))
        assert b"_hparams_/session_start_info" in events
        assert (b"z_test/test_loss" in events) == (r["status"] == "completed")


def test_each_report_carries_the_checkpoint_of_its_own_epoch(monkeypatch, cfg_for, tmp_path):
    """The checkpoint handed to tune.report after epoch k holds epoch k (its last.ckpt written, and
    the best-checkpoint bookkeeping updated), so a restored trial resumes exactly after it."""
    import torch
    from ray import tune

    from ae_lightning.fit import fit
    from search.trainable import STATE, ReportToTune

    seen = []

    def fake_report(metrics, checkpoint=None):
        ckpt = torch.load(Path(checkpoint.path) / "last.ckpt", map_location="cpu", weights_only=False)
        best = next(v for k, v in ckpt["callbacks"].items() if "val/loss" in k)
        state = json.loads((Path(checkpoint.path) / STATE).read_text())
        seen.append((metrics["epoch"], ckpt["epoch"] + 1, state["epoch"], best["best_model_path"]))

    monkeypatch.setattr(tune, "report", fake_report)
    cfg = cfg_for("fc", trainer__max_epochs=3, data__subset=300)
    run_dir = tmp_path / "trial"
    res = fit(cfg, run_dir=run_dir, callbacks=[ReportToTune(run_dir, {"fold": 0, "epoch": 0, "fold_best": [None]}, cfg)])
    assert [s[:3] for s in seen] == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]
    assert seen[-1][3] == res.metrics["best_checkpoint"]


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file's mtime and size; the run lock aside (each try takes it, writing its PID)."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")
            if p.is_file() and p.name != runlock.LOCK_NAME}


def test_a_finished_trial_is_taken_exactly_as_it_is(monkeypatch, tmp_path, data_dir):
    """A trial restored after its metrics.json was written (the driver killed while the trial was
    finishing; --resume) is not trained, tested or logged again: no file of its folder changes
    (metrics.json, TensorBoard events, checkpoints). It sends its final result again, the same
    one, whether or not Tune had received it (a repeated final result changes nothing)."""
    import shutil

    from ray import tune

    from search import trainable
    from search.space import load_space, nest

    base = load("linear", None, {"data.data_dir": str(data_dir), "data.download": False, "data.subset": 300,
                                 "data.batch_size": 100, "trainer.max_epochs": 2, "model.optimizer": "sgd",
                                 "trainer.images_every_n_epochs": 0})
    space = load_space(write(tmp_path, "space: {model.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}}"), base)
    config = nest({"model.lr": 0.005})  # a trial's Tune config: real values
    trial = tmp_path / "trial"
    reports, restored = [], [None]

    def fake_report(metrics, checkpoint=None):
        kept = None
        if checkpoint is not None:  # train_trial deletes its folder after the report
            kept = shutil.copytree(checkpoint.path, tmp_path / f"tune_ckpt_{len(reports)}")
        reports.append((metrics, kept))

    monkeypatch.setattr(trainable, "_trial_folder", lambda: trial)
    monkeypatch.setattr(tune, "report", fake_report)
    monkeypatch.setattr(tune, "get_checkpoint", lambda: restored[0])

    trainable.train_trial(config, base=base, space=space)
    # two epoch results with their checkpoints, then the final one: test metrics, searched values
    assert [(m["epoch"], m.get("final", False), c is not None) for m, c in reports] == \
        [(1, False, True), (2, False, True), (2, True, False)]
    fin = reports[-1][0]
    assert fin["model.lr"] == pytest.approx(0.005) and fin["test_mse"] > 0 and fin["epochs_total"] == 2
    assert fin["best_val_loss"] == min(m["val_loss"] for m, _ in reports[:2])
    assert (trial / "metrics.json").is_file()
    before, first = _tree(trial), list(reports)

    for ckpt in (first[1][1], first[0][1]):  # Tune restored from epoch 2's, then from epoch 1's
        reports.clear()
        restored[0] = tune.Checkpoint.from_directory(str(ckpt))
        trainable.train_trial(config, base=base, space=space)
        assert [m for m, _ in reports] == [fin] and _tree(trial) == before
    assert len(list(trial.glob("events.out.tfevents.*"))) == len([k for k in before if k.startswith("events.")])


@pytest.mark.slow
def test_a_reused_worker_gives_the_same_trial_results_as_a_fresh_one(tmp_path, data_dir, monkeypatch, capsys):
    """Tune reuses a trial's worker process for the next trial (reuse_actors, with the data cached
    per process): the same 2-trial sweep with a fresh process per trial gives the same results,
    to the last digit."""
    from ray import tune

    from search.tune import main

    space = write(tmp_path, "space: {model.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}}")
    args = ["--algo", "random", "--num-samples", "2", "--max-epochs", "2", "--seed", "3"]
    assert main(sweep_args(data_dir, tmp_path / "s", "reused", space, *args)) == 0
    tune_config = tune.TuneConfig.__init__
    monkeypatch.setattr(tune.TuneConfig, "__init__",
                        lambda self, *a, **k: tune_config(self, *a, **{**k, "reuse_actors": False}))
    assert main(sweep_args(data_dir, tmp_path / "s", "fresh", space, *args)) == 0

    def trials(name):
        rows = sorted(read_rows(tmp_path / "s" / name / "results.csv"), key=lambda r: float(r["model.lr"]))
        pids = set()
        for r in rows:
            pids |= {json.loads(line)["pid"] for line in (Path(r["trial_dir"]) / "result.json").read_text().splitlines()}
        keep = [k for k in rows[0] if k not in ("trial", "trial_id", "trial_dir")]
        return [{k: r[k] for k in keep} for r in rows], pids

    reused, reused_pids = trials("reused")
    fresh, fresh_pids = trials("fresh")
    assert len(reused_pids) == 1 and len(fresh_pids) == 2  # one worker for both, one per trial
    assert reused == fresh and all(r["status"] == "completed" and r["test_mse"] for r in reused)


def _ray_sessions() -> set[str]:
    import re

    out = set()
    for pid in os.listdir("/proc"):
        try:
            text = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "ray" in text:
            out.update(re.findall(r"session_\d{4}-\d\d-\d\d_[\d_-]+", text))
    return out


@pytest.mark.slow
def test_a_live_sweep_refuses_a_second_driver_and_its_ray_ends_with_it(tmp_path, data_dir):
    """--resume of a sweep whose driver is alive is refused with one line naming its PID; after
    kill -9 of that driver, the Ray processes it started are gone within seconds."""
    storage = tmp_path / "search"
    space = write(tmp_path, "space: {model.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}}")
    before = _ray_sessions()
    cmd = [sys.executable, "-m", "search.tune", *sweep_args(data_dir, storage, "live", space, "--algo", "random",
                                                              "--num-samples", "3", "--max-epochs", "30")]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list((storage / "live").glob("trial_*/events.out.tfevents.*")):
            assert proc.poll() is None, "the sweep ended early"
            time.sleep(0.5)
        second = subprocess.run([sys.executable, "-m", "search.tune", "--storage", str(storage), "--name", "live",
                                 "--resume", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        err = second.stderr.strip()
        assert second.returncode == 2 and f"process {proc.pid} is running the sweep" in err and "\n" not in err, err
        started = _ray_sessions() - before
        assert started, "the sweep started no Ray session"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 20
        while time.time() < deadline and _ray_sessions() & started:
            time.sleep(0.5)
        assert not _ray_sessions() & started, "Ray's processes outlived the killed driver"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_snapshot_cut_short_by_a_kill_is_set_aside_and_the_session_before_it_resumes(tmp_path):
    """Tune copies its snapshot over the experiment's files without a rename: a kill mid-copy cuts
    the newest session's files short. Resume sets that session aside (renamed, not deleted) and
    goes on from the one before; with no intact session left, or tuner.pkl cut short, one line."""
    import ray.cloudpickle as cloudpickle

    from search.cluster import set_aside_damaged_snapshot

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "tuner.pkl").write_bytes(cloudpickle.dumps({"tuner": 1}))
    old, new = "2026-12-01_10-00-00", "2026-12-02_10-00-00"
    for session in (old, new):
        (exp / f"experiment_state-{session}.json").write_text(json.dumps({"trials": [1, 2]}))
        (exp / f"basic-variant-state-{session}.json").write_bytes(cloudpickle.dumps({"n": 2}))
        (exp / f"search_gen_state-{session}.json").write_bytes(cloudpickle.dumps({"g": 2}))
        (exp / f"searcher-state-{session}.json").write_text(json.dumps({"format": 1, "ax": {}}))
    assert set_aside_damaged_snapshot(exp) is None  # intact: nothing moved
    state = exp / f"basic-variant-state-{new}.json"
    state.write_bytes(state.read_bytes()[:7])  # cut short
    note = set_aside_damaged_snapshot(exp)
    assert note and new in note and "resuming from the session before it" in note
    assert sorted(p.name for p in exp.glob("damaged-*")) == sorted(
        f"damaged-{pre}{new}{suf}" for pre, suf in (("experiment_state-", ".json"), ("basic-variant-state-", ".json"),
                                                    ("search_gen_state-", ".json"), ("searcher-state-", ".json")))
    assert (exp / f"experiment_state-{old}.json").is_file() and not (exp / f"experiment_state-{new}.json").exists()
    (exp / f"experiment_state-{old}.json").write_text('{"trials": [1,')
    with pytest.raises(UserError, match="holds no intact Tune snapshot"):
        set_aside_damaged_snapshot(exp)
    (exp / "tuner.pkl").write_bytes(b"\x80")
    with pytest.raises(UserError, match="tuner.pkl is damaged"):
        set_aside_damaged_snapshot(exp)


def test_best_yaml_is_the_full_run_of_a_trial(tmp_path, monkeypatch):
    """best.yaml (and each front/ config): all the training data, --retrain-epochs (else the
    variant's own epochs), the data folder null where the project finds the same one by itself."""
    from ae_lightning.data import default_data_dir
    from search.report import full_run
    from search.settings import SweepSettings

    cfg = load("fc", None, {"data.subset": 500, "trainer.max_epochs": 1,
                            "data.data_dir": str(default_data_dir("mnist").resolve())})
    out = full_run(cfg, SweepSettings(variant="fc", retrain_epochs=7))
    assert out["data"]["subset"] is None and out["trainer"]["max_epochs"] == 7 and out["data"]["data_dir"] is None
    assert cfg["data"]["subset"] == 500 and cfg["trainer"]["max_epochs"] == 1  # the trial's config untouched
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    out = full_run({**cfg, "data": {**cfg["data"], "data_dir": str(tmp_path / "elsewhere")}}, SweepSettings(variant="fc"))
    assert out["data"]["data_dir"] == "elsewhere" and out["trainer"]["max_epochs"] == load("fc")["trainer"]["max_epochs"]


BATCH_ONLY = "space: {data.batch_size: {type: choice, values: [64, 128, 256]}}"
MIXED = """
space:
  data.batch_size: {type: choice, values: [64, 128, 256]}
  model.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}
points:
  - {data.batch_size: 64, model.lr: 2.0e-3}
  - {data.batch_size: 128, model.lr: 3.0e-3}
"""


@pytest.mark.parametrize("extra, message", [
    (["--subset", "100"], "--subset 100: every data.batch_size of the space (choice of [128, 256, 512, 1024]) is "
                          "above the 100 training images: use --space configs/search/small.yaml"),
    (["--subset", "100", "--set", "data.batch_size=256", "--space", "LR_ONLY"],
     "--subset 100: data.batch_size is 256, more than the 100 training images"),
    (["--subset", "100", "--space", "BATCH_ONLY"], "--subset 100: of the space's data.batch_size only 64 fits the "
                                                   "100 training images, and the space searches nothing else"),
])
def test_a_space_without_a_batch_size_that_fits_the_subset_is_refused_before_ray_starts(extra, message, capsys,
                                                                                         tmp_path):
    """Such a trial would fail three times with a traceback each. A space without batch sizes: the
    base config's batch size is checked."""
    from search.tune import main

    spaces = {"LR_ONLY": write(tmp_path, "space: {model.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}}", "lr.yaml"),
              "BATCH_ONLY": write(tmp_path, BATCH_ONLY, "batch.yaml")}
    extra = [str(spaces.get(a, a)) for a in extra]
    assert main(["--variant", "linear", "--storage", str(tmp_path / "s"), "--name", "x", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not (tmp_path / "s" / "x").exists()


@pytest.mark.parametrize("extra, space_text, note, left", [
    (["--subset", "1000"], None, "data.batch_size choices 1024 dropped (above the 1000 training images)",
     {"type": "choice", "values": [128, 256, 512]}),
    (["--subset", "1100", "--cv", "3"], None,
     "data.batch_size choices 1024 dropped (above the 806 training images of each fold (--cv 3))",
     {"type": "choice", "values": [128, 256, 512]}),
    (["--subset", "300"], "space: {data.batch_size: {type: logint, low: 16, high: 2048}}",
     "data.batch_size values 301 to 2048 dropped (above the 300 training images)",
     {"type": "logint", "low": 16, "high": 300}),
    (["--subset", "100"], MIXED,
     "data.batch_size choices 128, 256 dropped (above the 100 training images); data.batch_size fixed at 64", None),
])
def test_a_quick_sweep_drops_the_batch_sizes_above_its_subset_in_one_line(extra, space_text, note, left, capsys,
                                                                          tmp_path, data_dir):
    """`search.tune --variant fc --num-samples 4 --max-epochs 1 --subset 1000` runs in one try: the
    default space's 1024 is left out, said in one line; search.json keeps the space searched, so
    --resume and the reports decode the trials in that space."""
    from search.report import settings_space
    from search.tune import _settings_new, parser

    space_args = ["--space", str(write(tmp_path, space_text))] if space_text else []
    args = parser().parse_args(["--variant", "linear", "--algo", "random", "--data-dir", str(data_dir),
                                "--set", "data.download=false", *space_args, *extra])
    s, space = _settings_new(args)
    err = capsys.readouterr().err.strip()
    assert err == f"note: {extra[0]} {extra[1]}: {note}", err
    saved = json.loads(json.dumps(s.to_json()))  # as search.json holds it
    assert saved["space_raw"]["space"].get("data.batch_size") == left
    again = settings_space(type(s).from_json(saved, "search.json"))
    assert again.describe() == space.describe() and again.points == space.points
    if left is None:  # one batch size fits: set for every trial, and the points that used another left out
        assert s.base["data"]["batch_size"] == 64 and space.points == [{"model.lr": 2.0e-3}]


def test_sweeps_of_other_objectives_get_their_own_default_folder(tmp_path, capsys):
    """The README's two-objective sweep after the one-objective one: another folder, not a
    collision that offers --resume; --resume finds the folder by the same flags."""
    from search.objectives import Objective, loose
    from search.tune import default_name, main

    assert default_name("fc", "mnist", "ax", [Objective("val_loss")]) == "fc-mnist-ax"
    two = [Objective("val_loss"), Objective("model.latent_dim")]
    assert default_name("fc", "mnist", "ax", two) == "fc-mnist-ax-val_loss+model.latent_dim"
    odd = [Objective("test_nrmse", threshold=0.5), Objective("model.latent_dim", minimize=False, threshold=4)]
    assert default_name("fc", "mnist", "random", odd) == "fc-mnist-random-test_nrmse-le0.5+model.latent_dim-max-ge4"
    assert [loose(o.text()) for o in odd] == odd and loose("val_loss") == Objective("val_loss")
    code = main(["--resume", "--variant", "fc", "--storage", str(tmp_path), "--objective", "val_loss",
                 "--objective", "model.latent_dim"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.endswith(f"no search experiment in {tmp_path / 'fc-mnist-ax-val_loss+model.latent_dim'}")


def test_a_folder_holding_another_sweep_says_name_not_resume(tmp_path, capsys, data_dir):
    """--resume would continue the sweep already there with its own objectives: a sweep of other
    settings is told to take another --name; the same sweep again is told --resume."""
    from ae_lightning import files
    from search.tune import _settings_new, main, parser

    flags = ["--variant", "linear", "--algo", "random", "--data-dir", str(data_dir), "--set", "data.download=false",
             "--storage", str(tmp_path), "--name", "x"]
    s, _ = _settings_new(parser().parse_args(flags))
    files.write_json(tmp_path / "x" / "search.json", s.to_json())
    assert main([*flags, "--objective", "val_loss", "--objective", "model.latent_dim"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: experiment {tmp_path / 'x'} holds another sweep (objectives val_loss:min there, "
                   "val_loss:min, model.latent_dim:min now): give this one another --name (--resume would "
                   "continue that sweep as it was)"), err
    assert main([*flags, "--set", "model.lr=0.002"]) == 2
    assert "holds another sweep (config model.lr): give this one another --name" in capsys.readouterr().err
    assert main(flags) == 2
    assert "exists: continue it with --resume --name x" in capsys.readouterr().err
