"""train.py end to end: outputs, bad input, determinism, resume after kill -9, TensorBoard."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
import train  # noqa: E402


def tiny_args(data_dir, out, *extra):
    return ["--variant", "fc", "--data-dir", str(data_dir), "--output-dir", str(out), "--subset", "500",
            "--batch-size", "50", "--max-epochs", "2", "--latent-dim", "4", "--accelerator", "cpu",
            "--set", "data.download=false", *extra]


def test_run_writes_everything_and_reruns_from_its_config(data_dir, tmp_path, capsys):
    assert train.main(tiny_args(data_dir, tmp_path)) == 0
    out = capsys.readouterr().out.strip().splitlines()
    run = Path(out[0])
    assert run == tmp_path / "mnist" / "fc" / "version_0"
    assert "test_mse=" in out[1] and "2 epochs" in out[1]
    assert out[2] == f".venv/bin/tensorboard --logdir {run}" and len(out) == 3  # where the curves are
    m = json.loads((run / "metrics.json").read_text())
    assert m["epochs"] == 2 and m["config"]["model"]["latent_dim"] == 4
    assert 0 < m["test_mse"] < 0.2 and 0 < m["test_nrmse"] < 1 and 0 < m["test_rel_error"] < 1
    assert (run / "checkpoints" / "last.ckpt").is_file() and len(list((run / "checkpoints").glob("best-*.ckpt"))) == 1
    assert list(run.glob("events.out.tfevents.*"))
    # --config with a run's config.yaml reruns it exactly: same seed, same device, same figures
    assert train.main(["--config", str(run / "config.yaml")]) == 0
    m2 = json.loads((tmp_path / "mnist" / "fc" / "version_1" / "metrics.json").read_text())
    for k in ("test_mse", "test_nrmse", "test_rel_error", "best_val_loss"):
        assert m2[k] == m[k], k
    assert m2["config"] == m["config"]


def test_seed_changes_results(data_dir, tmp_path):
    assert train.main(tiny_args(data_dir, tmp_path, "--seed", "1")) == 0
    assert train.main(tiny_args(data_dir, tmp_path, "--seed", "2")) == 0
    a, b = (json.loads((tmp_path / "mnist" / "fc" / f"version_{i}" / "metrics.json").read_text()) for i in (0, 1))
    assert a["test_mse"] != b["test_mse"]


@pytest.mark.parametrize("argv, message", [
    (["--variant", "nope"], "unknown variant 'nope'"),
    (["--variant", "fc", "--dataset", "cifar10"], "--dataset (data.dataset): expected one of mnist, fashion_mnist"),
    (["--variant", "fc", "--latent-dim", "0"], "model.latent_dim"),
    (["--variant", "fc", "--batch-size", "-2"], "data.batch_size"),
    (["--variant", "fc", "--max-epochs", "0"], "trainer.max_epochs"),
    (["--variant", "fc", "--lr", "-1"], "model.lr"),
    (["--variant", "fc", "--lr", "nan"], "model.lr"),
    (["--variant", "fc", "--config", "/nonexistent.yaml"], "config file not found"),
    (["--variant", "fc", "--set", "model.bogus=1"], "unknown config key model.bogus"),
    (["--variant", "fc", "--set", "trainer.max_epochs=two"], "trainer.max_epochs"),
    (["--variant", "fc", "--set", "nosection"], "expected KEY=VALUE"),
    (["--variant", "fc", "--resume"], "nothing to resume"),
])
def test_bad_input_exits_2_with_one_line(argv, message, tmp_path, capsys):
    assert train.main([*argv, "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_data_missing_offline_and_corrupt_file(tmp_path, capsys, monkeypatch):
    from conftest import write_dataset

    from ae_lightning import data as D

    monkeypatch.setitem(D.DATASETS["mnist"], "mirrors", ["http://127.0.0.1:9/"])
    assert train.main(["--variant", "fc", "--data-dir", str(tmp_path / "empty"), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "missing data file" in err and "--data-dir" in err and "Traceback" not in err
    root = write_dataset(tmp_path / "d", "MNIST", 200, 50, gz=False)
    f = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    f.write_bytes(f.read_bytes()[:-3])
    assert train.main(["--variant", "fc", "--data-dir", str(root), "--subset", "100", "--output-dir", str(tmp_path)]) == 2
    assert f"corrupt data file {f}" in capsys.readouterr().err


def test_help_lists_variants_and_datasets_and_no_traceback():
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "variants: " in r.stdout and "fc" in r.stdout and "fashion_mnist" in r.stdout
    r = subprocess.run([sys.executable, "train.py", "--variant", "fc", "--lr", "0"], cwd=ROOT,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.startswith("error: --lr (model.lr)") and "Traceback" not in r.stderr


@pytest.mark.slow
def test_resume_after_kill_9_matches_an_unbroken_run(data_dir, tmp_path):
    """kill -9 mid-training, then --resume: same epochs, same optimizer state, same final figures."""
    args = ["--variant", "fc", "--data-dir", str(data_dir), "--subset", "1000", "--batch-size", "10",
            "--max-epochs", "4", "--latent-dim", "4", "--accelerator", "cpu", "--set", "data.download=false",
            "--set", "trainer.images_every_n_epochs=0"]
    # every run in its own process with one thread: float sums then match bit for bit
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def run(out, *extra):
        return subprocess.Popen([sys.executable, "train.py", *args, "--output-dir", str(out), *extra], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    out = tmp_path / "broken"
    proc = run(out)
    last = out / "mnist/fc/version_0/checkpoints/last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists() and not (out / "mnist/fc/version_0/metrics.json").exists(), "killed too late"
    unbroken_proc = run(tmp_path / "unbroken")
    resume_proc = run(out, "--resume")
    assert resume_proc.wait() == 0, resume_proc.stderr.read()
    assert unbroken_proc.wait() == 0, unbroken_proc.stderr.read()
    unbroken = json.loads((tmp_path / "unbroken/mnist/fc/version_0/metrics.json").read_text())
    resumed = json.loads((out / "mnist/fc/version_0/metrics.json").read_text())
    assert resumed["epochs"] == 4
    names = sorted(p.name for p in last.parent.iterdir())  # last.ckpt overwritten, never last-v1.ckpt
    assert "last.ckpt" in names and len(names) == 2 and not any("-v" in n for n in names), names
    assert __import__("torch").load(last, weights_only=False)["epoch"] == 3
    for k in ("test_mse", "test_nrmse", "best_val_loss"):
        assert resumed[k] == unbroken[k], k
    assert train.main([*args, "--output-dir", str(out), "--resume"]) == 2  # finished: nothing to resume


def test_sigterm_mid_training_is_one_line_and_exit_143_and_resume_finishes_the_run(data_dir, tmp_path):
    """Lightning turns SIGTERM into a SystemExit without a code: the command ended with exit 0 as if the run had
    finished. Now: one line, exit 143, the finished epochs kept, and --resume finishes the run."""
    args = ["train.py", "--variant", "fc", "--data-dir", str(data_dir), "--subset", "1000", "--batch-size", "10",
            "--max-epochs", "30", "--latent-dim", "4", "--accelerator", "cpu", "--set", "data.download=false",
            "--set", "trainer.images_every_n_epochs=0", "--output-dir", str(tmp_path)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    last = tmp_path / "mnist/fc/version_0/checkpoints/last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait() == 143, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "terminated (SIGTERM) while training" in lines[0] and "--resume" in lines[0], err
    assert "Traceback" not in err and last.exists()
    assert not (tmp_path / "mnist/fc/version_0/metrics.json").exists()  # not a finished run
    done = subprocess.run([sys.executable, *args, "--max-epochs", "3", "--resume"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "mnist/fc/version_0/metrics.json").read_text())["epochs"] == 3


def test_tensorboard_has_scalars_images_and_hparams(data_dir, tmp_path):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    assert train.main(tiny_args(data_dir, tmp_path, "--set", "trainer.images_every_n_epochs=1",
                                "--set", "trainer.log_every_n_steps=2",
                                "--set", "trainer.log_embedding=true")) == 0
    run = tmp_path / "mnist" / "fc" / "version_0"
    mux = EventMultiplexer().AddRunsFromDirectory(str(run))
    mux.Reload()
    tags = {}
    for name in mux.Runs():
        for kind, names in mux.GetAccumulator(name).Tags().items():
            if isinstance(names, list):
                tags.setdefault(kind, set()).update(names)
    scalars = tags["scalars"]
    assert {"train/loss_step", "train/loss_epoch", "val/loss", "val/mse", "val/nrmse", "z_test/test_mse",
            "z_test/test_nrmse", "z_test/test_rel_error"} <= scalars
    # the loss curves are the first two tag groups, which TensorBoard opens: no epoch counter, no
    # one-point test/* or hp/* charts before them; what is written once sorts after val/
    groups = sorted({t.split("/", 1)[0] for t in scalars | set(tags["images"])})
    assert groups[:2] == ["train", "val"] and all(g > "val" for g in groups[2:]), groups
    assert "val/reconstructions" in tags["images"]
    plugins = set().union(*(mux.GetAccumulator(n).PluginTagToContent("hparams").keys() for n in mux.Runs()))
    assert "_hparams_/session_start_info" in plugins
    # the HParams session lives in the event file: no hparams.yaml (Lightning's held {}) beside it
    assert not list(run.rglob("hparams.yaml")), sorted(p.name for p in run.rglob("*"))
    assert (run / "projector_config.pbtxt").exists() or list(run.rglob("projector_config.pbtxt"))


def test_output_dir_that_is_a_file_exits_2_with_one_line(data_dir, tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("not a folder")
    for out in (f, f / "sub"):
        assert train.main(tiny_args(data_dir, out)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: trainer.output_dir") and str(f) in err and "\n" not in err


def test_a_run_that_fails_before_training_leaves_no_folder(tmp_path, capsys, monkeypatch):
    from ae_lightning import data as D

    monkeypatch.setitem(D.DATASETS["mnist"], "mirrors", ["http://127.0.0.1:9/"])
    out = tmp_path / "runs"
    assert train.main(["--variant", "fc", "--data-dir", str(tmp_path / "empty"), "--output-dir", str(out)]) == 2
    assert "missing data file" in capsys.readouterr().err
    assert not list(out.rglob("version_*"))


def test_a_run_that_fails_before_its_first_checkpoint_is_removed(data_dir, tmp_path, capsys):
    assert train.main(tiny_args(data_dir, tmp_path, "--lr", "1e6")) == 3  # diverges in epoch 0
    assert "error: training diverged" in capsys.readouterr().err
    assert not list(tmp_path.rglob("version_*"))


def test_resume_skips_folders_of_runs_that_never_wrote_a_checkpoint(data_dir, tmp_path, capsys):
    assert train.main(tiny_args(data_dir, tmp_path)) == 0
    run = tmp_path / "mnist" / "fc" / "version_0"
    (run / "metrics.json").unlink()  # unfinished, with its last.ckpt
    stale = tmp_path / "mnist" / "fc" / "version_1"  # e.g. killed -9 while loading the data
    stale.mkdir()
    (stale / "config.yaml").write_text((run / "config.yaml").read_text())
    capsys.readouterr()
    assert train.main(tiny_args(data_dir, tmp_path, "--resume", "--max-epochs", "3")) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == str(run) and f"resuming {run}" in out.err
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3


def test_hparams_tab_ticks_the_run_its_variant_config_and_searched_keys_first(cfg_for):
    from ae_lightning.eventfiles import hparams_tab
    from ae_lightning.fit import fit, hparams

    tab = hparams_tab(fit(cfg_for("fc", model__latent_dim=4, model__layers=[784, 32])).run_dir)
    # who the run is, what its variant sets, then the usual suspects while TensorBoard ticks more
    assert tab["ticked"] == ["run", "fc.yaml", "lr", "batch_size", "max_epochs"]
    assert tab["values"]["run"] == "fc on mnist"
    assert tab["values"]["fc.yaml"].startswith("latent_dim=4 layers=[784,32] hidden_act=leaky_relu")
    # integers read as written (a float64 column prints 256.00); floats stay numbers
    assert tab["values"]["batch_size"] == "100" and tab["values"]["max_epochs"] == "1"
    assert tab["values"]["lr"] == 1e-3
    assert {"variant", "dataset", "optimizer", "lr", "weight_decay", "latent_dim", "loss"} <= set(tab["columns"])
    assert tab["metrics"] == ["test_loss", "test_mse", "test_nrmse", "test_rel_error"]
    vae = list(hparams(cfg_for("vae")))
    assert "model.loss" not in vae and "model.beta" in vae and "model.likelihood" in vae
    assert "data.binarize" in hparams(cfg_for("vae_fc"))  # the variant's own data option
    # a sweep: its searched keys first (four of them and the run fill the five ticked columns)
    keys = ["model.lr", "model.weight_decay", "data.batch_size", "model.latent_dim"]
    tab = hparams_tab(fit(cfg_for("fc", model__latent_dim=4, model__layers=[784, 32]), hparam_keys=keys).run_dir)
    assert tab["ticked"] == ["lr", "weight_decay", "batch_size", "latent_dim", "run"]
    assert tab["columns"].count("lr") == 1 and len(tab["columns"]) < 25
    assert tab["values"]["latent_dim"] == "4"


def test_every_tensorboard_command_shown_to_a_user_works_after_the_readme_setup():
    # the README's setup installs into .venv/ without activating it: a bare `tensorboard` is not on PATH
    import re
    sources = [ROOT / "README.md", ROOT / "train.py", *(ROOT / "docs").rglob("*.md"), *(ROOT / "search").rglob("*.py"),
               *(ROOT / "ae_lightning").rglob("*.py")]
    found = {}
    for path in sources:
        for m in re.finditer(r"([^\s`\"'{(]*)tensorboard --logdir", path.read_text()):
            found.setdefault(str(path.relative_to(ROOT)), []).append(m.group(1))
    assert {"README.md", "docs/search.md", "search/tune.py"} <= set(found)
    assert all(prefix == ".venv/bin/" for prefixes in found.values() for prefix in prefixes), found


EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+)  train_loss (\S+)  val_loss (\S+)  (\d+\.\d) s$")


def test_a_log_gets_one_line_per_epoch_and_the_bar_asked_for_gets_none(data_dir, tmp_path):
    """Output redirected (a log: nohup, tee, CI): one line per epoch on stderr with the epoch, the
    train and validation losses and the seconds, and nothing else of the kind; with
    trainer.progress_bar=true the bar is what was asked for, and no lines."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    errs = []
    for extra in (["--max-epochs", "3"], ["--max-epochs", "1", "--set", "trainer.progress_bar=true"]):
        p = subprocess.run([sys.executable, str(ROOT / "train.py"), *tiny_args(data_dir, tmp_path / str(len(errs)), *extra)],
                           env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        errs.append(p.stderr)
    lines = [EPOCH_LINE.match(line) for line in errs[0].splitlines() if line.startswith("epoch")]
    assert [(m[1], m[2]) for m in lines if m] == [("1", "3"), ("2", "3"), ("3", "3")], errs[0]
    history = json.loads(next((tmp_path / "0").rglob("metrics.json")).read_text())["history"]
    assert [float(m[3]) for m in lines] == pytest.approx(history["train_loss"], rel=1e-3)
    assert [float(m[4]) for m in lines] == pytest.approx(history["val_loss"], rel=1e-3)
    assert not [line for line in errs[1].splitlines() if line.startswith("epoch ")], errs[1]


@pytest.mark.parametrize("progress_bar, terminal, epoch_lines, bar, lines", [
    (None, True, None, True, False), (None, False, None, False, True), (True, False, None, True, False),
    (False, False, None, False, True), (False, True, None, False, False), (None, False, False, False, False),
    (False, True, True, False, True)])
def test_the_bar_on_a_terminal_and_the_epoch_lines_in_a_log(monkeypatch, progress_bar, terminal, epoch_lines, bar,
                                                           lines):
    from ae_lightning import fit

    monkeypatch.setattr(fit, "on_terminal", lambda: terminal)
    shown, callbacks = fit._progress(progress_bar, epoch_lines, "")
    assert (shown, bool(callbacks)) == (bar, lines)


BANNERS = ("GPU available", "TPU available", "litlogger", "Total params", "Restoring states from the checkpoint")


def test_quiet_by_default_and_banners_back_with_verbose(data_dir, tmp_path):
    """Lightning's banners, advert and model summary only with --verbose (in a subprocess: Lightning's
    log handler writes to the stderr it found at import)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # run from ROOT: its modules come first on sys.path
    errs = {}
    for extra in ([], ["--verbose"]):
        p = subprocess.run([sys.executable, str(ROOT / "train.py"), *tiny_args(data_dir, tmp_path / str(len(extra)),
                           "--max-epochs", "1", *extra)], env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines()[-2].startswith("fc on mnist (latent 4): test_loss=")  # the project's lines
        errs[bool(extra)] = p.stderr
    assert not [b for b in BANNERS if b in errs[False]], errs[False]
    assert all(b in errs[True] for b in BANNERS), errs[True]
