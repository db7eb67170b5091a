"""The Ax integration's traps (search/ax_searcher.py), objectives, fronts and hypervolumes.

The searcher tests drive ``AxSearch`` as Tune does (suggest, then on_trial_complete with the
trial's last result) without a Ray cluster, and read Ax's own record of each trial through its
public ``Client.summarize``.
"""
from __future__ import annotations

import csv
import json
import math

import pytest

from ae_lightning.errors import UserError
from ae_lightning.resolve import load
from search.objectives import Objective, hypervolume, hypervolume_by_trial, pareto_mask, parse, reference_point

SPACE = """
space:
  model.lr:         {type: loguniform, low: 1.0e-4, high: 1.0e-1}
  data.batch_size:  {type: choice, values: [32, 64, 128, 256, 512, 1024]}
  model.latent_dim: {type: logint, low: 2, high: 64}
"""


@pytest.fixture
def space(tmp_path, data_dir):
    from search.space import load_space

    (tmp_path / "space.yaml").write_text(SPACE)
    return load_space(tmp_path / "space.yaml", load("fc", None, {"data.data_dir": str(data_dir)}))


def searcher(space, objectives=None, init_trials=3, **kw):
    from search.ax_searcher import AxSearch

    return AxSearch(space, objectives or [Objective("val_loss")], 0, init_trials, **kw)


def trials(s):
    """Ax's record of the trials, by index: status, generator, parameters and metric means."""
    return s._client.summarize().set_index("trial_index")


def status(s, index: int) -> str:
    return str(trials(s).loc[index, "trial_status"])


def final(value: float, latent: int | None = None, **extra) -> dict:
    out = {"best_val_loss": value, "final": True, "epochs_total": 2, "training_iteration": 3, **extra}
    if latent is not None:
        out["model.latent_dim"] = latent
    return out


# ---------------------------------------------------------------------------------------------
# the traps
@pytest.mark.parametrize("stopped", ["abandon", "fit"])
def test_a_trial_stopped_early_is_abandoned_or_fitted_with_its_last_value(space, stopped):
    """A trial that ASHA (or Ax's own rule) stops is ABANDONED, left out of Ax's fit (the default,
    measured better), or with ``--stopped-trials fit`` EARLY_STOPPED with the value it reached;
    a full trial is COMPLETED; a stop before any value is ABANDONED."""
    s = searcher(space, stopped=stopped)
    for t in "abc":
        s.suggest(t)
    # "a" stopped after epoch 1: its last result is an epoch result, without `final`
    s.on_trial_complete("a", {"best_val_loss": 0.08, "epochs_total": 1, "training_iteration": 1})
    s.on_trial_complete("b", final(0.07))
    s.on_trial_complete("c", {"epochs_total": 0})
    t = trials(s)
    assert list(t["trial_status"]) == [{"abandon": "ABANDONED", "fit": "EARLY_STOPPED"}[stopped], "COMPLETED", "ABANDONED"]
    assert t.loc[1, "best_val_loss"] == 0.07
    if stopped == "fit":
        assert t.loc[0, "best_val_loss"] == 0.08
    else:
        assert "best_val_loss" not in t or math.isnan(t.loc[0, "best_val_loss"])


def test_a_failed_trial_is_failed_and_one_without_a_finite_value_abandoned(space):
    s = searcher(space)
    for t in "abc":
        s.suggest(t)
    s.on_trial_complete("a", None, error=True)
    s.on_trial_complete("b", final(math.nan))
    s.on_trial_complete("c", final(0.05))
    assert [status(s, i) for i in range(3)] == ["FAILED", "ABANDONED", "COMPLETED"]


def test_numeric_choices_reach_ax_by_rank_not_by_value(space):
    """Batch 32 ... 1024 reaches Ax as the ordered ranks 0 ... 5, equally spaced for the GP (Ax's
    BoTorch transforms keep a numeric choice's values: 32 and 64 would be near, 1024 far); the
    searchers' value decodes back to the batch size, and log-integers are log-scale ranges."""
    from ray.tune.search.sample import Categorical

    from search.ax_searcher import ax_parameters

    params = {p.name: p for p in ax_parameters(space)}
    batch = params["data/batch_size"]
    assert batch.values == [0, 1, 2, 3, 4, 5] and batch.is_ordered and batch.parameter_type == "int"
    assert params["model/latent_dim"].scaling == "log" and params["model/latent_dim"].bounds == (2, 64)
    assert params["model/lr"].bounds == (0.0, 1.0)
    decode = [space.from_searcher({"data/batch_size": r, "model/lr": 0.5, "model/latent_dim": 4})["data.batch_size"]
              for r in range(6)]
    assert decode == [32, 64, 128, 256, 512, 1024]
    assert space.encode({"data.batch_size": 256}) == {"data.batch_size": 3}
    s = searcher(space)
    s.suggest("a")
    assert trials(s).loc[0, "data/batch_size"] in range(6)  # Ax holds the rank
    dom = space.to_tune()["data"]["batch_size"]  # random search samples the same choices uniformly, as values
    assert isinstance(dom, Categorical) and dom.categories == [32, 64, 128, 256, 512, 1024]


def test_proposals_reach_tune_in_real_values_ax_keeps_its_encoding(space):
    """Ray's tables and files print a trial's config: AxSearch hands Tune the real values (lr
    0.0025, batch 256), decoded from Ax's own encoded arm (positions in [0, 1], ranks)."""
    from search.space import flatten

    s = searcher(space, init_trials=3)
    for i, t in enumerate("ab"):
        flat = flatten(s.suggest(t))
        assert set(flat) == set(space.params)
        assert all(space.params[k].contains(v) for k, v in flat.items()), flat
        arm = trials(s).loc[i, ["model/lr", "data/batch_size", "model/latent_dim"]].to_dict()
        assert 0.0 <= arm["model/lr"] <= 1.0 and arm["data/batch_size"] in range(6)
        assert space.from_searcher(arm) == flat


def test_exactly_init_trials_sobol_while_others_run_then_bayesian(space):
    """Sobol proposes init_trials, Tune is told to wait (None) until one has run in full, and then
    every proposal is Bayesian, the running trials pending."""
    s = searcher(space, init_trials=3)
    got = [s.suggest(t) for t in "abcde"]
    assert [g is not None for g in got] == [True, True, True, False, False]
    s.on_trial_complete("a", final(0.1))
    assert s.suggest("f") is not None and s.suggest("g") is not None  # b, c in flight: pending points
    log = s._proposals  # saved with the searcher's state (search.report.proposals reads it)
    assert [p["generator"] for p in log] == ["Sobol", "Sobol", "Sobol", "MBM", "MBM"]
    assert all(p["wall_s"] >= 0 and p["cpu_s"] >= 0 for p in log)
    assert list(trials(s)["trial_status"]) == ["COMPLETED", "RUNNING", "RUNNING", "RUNNING", "RUNNING"]


@pytest.mark.parametrize("stopped", ["abandon", "fit"])
def test_sobol_points_stopped_early_are_spent_a_failed_one_replaced(space, stopped):
    """A Sobol trial stopped early has used its point, abandoned or not (Ax's own strategy replaces
    an abandoned one: with ASHA stopping most, a sweep stayed in Sobol): the Bayesian step starts
    after init_trials Sobol trials once one ran in full; a failed trial is replaced."""
    s = searcher(space, init_trials=3, stopped=stopped)
    for t in "abc":
        s.suggest(t)
    cut = {"best_val_loss": 0.2, "epochs_total": 1, "training_iteration": 1}
    s.on_trial_complete("a", cut)
    s.on_trial_complete("b", None, error=True)  # failed: Sobol proposes a replacement
    assert s.suggest("d") is not None and s._proposals[-1]["generator"] == "Sobol"
    s.on_trial_complete("c", cut)
    assert s.suggest("x") is None  # 3 Sobol trials spent, none ran in full: wait
    s.on_trial_complete("d", final(0.05))
    assert s.suggest("e") is not None
    assert [p["generator"] for p in s._proposals] == ["Sobol"] * 4 + ["MBM"]


def test_every_modelled_objective_reaches_ax(space):
    """Two metric objectives: both reach Ax with every trial (Ray's AxSearch sent the first one
    only, and Ax failed the trial); the known objective (a searched key) is not sent at all."""
    objs = [Objective("val_loss"), Objective("test_mse"), Objective("model.latent_dim")]
    s = searcher(space, objs, init_trials=3)
    for i, t in enumerate("abc"):
        cfg = s.suggest(t)
        s.on_trial_complete(t, final(0.1 - 0.01 * i, latent=int(cfg["model"]["latent_dim"]), test_mse=0.2 + 0.01 * i))
    t = trials(s)
    assert list(t["trial_status"]) == ["COMPLETED"] * 3
    assert {"best_val_loss", "test_mse"} <= set(t.columns) and "model.latent_dim" not in t.columns
    assert t["test_mse"].tolist() == pytest.approx([0.2, 0.21, 0.22])
    assert s.suggest("d") is not None and s._proposals[-1]["generator"] == "MBM"


def test_known_objective_levels_spread_over_its_range(space):
    """The Bayesian proposals fix the known key at both ends first, then the middle, the quarters,
    on its own scale; a threshold bounds the part that counts."""
    from search.ax_searcher import KnownLevels

    lat = [KnownLevels(space, [Objective("val_loss"), Objective("model.latent_dim")]).fixed(n)["model/latent_dim"]
           for n in range(9)]
    assert lat[:5] == [2, 64, 11, 5, 27] and len(set(lat)) == 9
    capped = KnownLevels(space, [Objective("val_loss"), Objective("model.latent_dim", threshold=16)])
    assert [capped.fixed(n)["model/latent_dim"] for n in range(3)] == [2, 16, 6]
    batch = KnownLevels(space, [Objective("val_loss"), Objective("data.batch_size", minimize=False)])
    assert [batch.fixed(n)["data/batch_size"] for n in range(3)] == [5, 0, 2]  # ranks, largest first


def test_proposals_spread_along_a_synthetic_front(space):
    """A synthetic two-objective problem where one objective is a searched key: the loss falls
    with the latent size and is best at lr 1e-2. The Bayesian proposals spread over the latent
    sizes (no size takes more than a third of them), and at each size they find the lr."""
    objs = [Objective("val_loss"), Objective("model.latent_dim")]
    s = searcher(space, objs, init_trials=4)

    def loss(c):
        lr, lat = c["model"]["lr"], c["model"]["latent_dim"]
        return 1.0 / lat + 0.1 * (math.log10(lr) + 2) ** 2

    for i in range(16):
        c = s.suggest(str(i))
        s.on_trial_complete(str(i), final(loss(c), latent=c["model"]["latent_dim"]))
    bayes = [p for p in s._proposals if p["generator"] == "MBM"]
    sizes = [p["fixed"]["model/latent_dim"] for p in bayes]
    assert len(bayes) == 12 and max(sizes.count(x) for x in sizes) <= 4 and min(sizes) == 2 and max(sizes) == 64
    t = trials(s)
    lrs = [space.params["model.lr"].from_unit(u) for u in t.loc[[p["ax_trial"] for p in bayes[-6:]], "model/lr"]]
    assert sum(1e-3 <= lr <= 1e-1 for lr in lrs) >= 4, lrs  # the GP found the good lr at the later sizes


def test_state_is_axs_json_and_restores_the_search(space, tmp_path):
    """``save`` writes Ax's own JSON snapshot with the Tune trial mapping (no pickle); a fresh
    searcher restored from it continues: the running trial completes, the next proposal follows."""
    from search.ax_searcher import AxSearch

    s = searcher(space, init_trials=3)
    for t in "abc":
        s.suggest(t)
    s.on_trial_complete("a", final(0.1))
    path = tmp_path / "searcher-state-x.json"
    s.save(str(path))
    state = json.loads(path.read_text())
    assert state["format"] == 1 and state["live"] == {"b": 1, "c": 2} and "experiment" in state["ax"]
    import pickle

    again = pickle.loads(pickle.dumps(s))  # Tune pickles its config: the searcher as its arguments
    assert isinstance(again, AxSearch) and again._live == {}
    again.restore(str(path))
    again.on_trial_complete("b", final(0.2))
    assert [status(again, i) for i in range(3)] == ["COMPLETED", "COMPLETED", "RUNNING"]
    assert again.suggest("d") is not None and again._proposals[-1]["ax_trial"] == 3
    path.write_text(json.dumps({"format": 0}))
    with pytest.raises(UserError, match="saved by an older version: start a new sweep"):
        again.restore(str(path))


def test_ax_early_stopping_stops_the_worse_half_at_the_grace_epoch(space):
    """Ax's percentile rule through the scheduler: once 5 trials have curves, a trial worse than
    the median at epoch 1 is stopped there, a better one goes on; never at the last epoch."""
    from search.ax_searcher import AxEarlyStopping

    s = searcher(space, init_trials=8, stop_early=True, grace_period=1)
    sched = AxEarlyStopping(s, max_epochs=3)

    class T:
        def __init__(self, trial_id):
            self.trial_id = trial_id

    def epoch(t, k, v):
        return sched.on_trial_result(None, T(t), {"best_val_loss": v, "epochs_total": k})

    for i in range(5):
        s.suggest(str(i))
        assert epoch(str(i), 1, 0.1 * (i + 1)) == "CONTINUE"  # fewer than 5 curves: nobody stops
        for k in (2, 3):
            epoch(str(i), k, 0.1 * (i + 1) - 0.01 * k)
        s.on_trial_complete(str(i), final(0.1 * (i + 1) - 0.03))
    s.suggest("bad")
    s.suggest("good")
    assert epoch("bad", 1, 0.9) == "STOP"
    assert epoch("good", 1, 0.05) == "CONTINUE"
    assert epoch("good", 3, 0.9) == "CONTINUE"  # the last epoch: the trial ends by itself
    s.on_trial_complete("bad", {"best_val_loss": 0.9, "epochs_total": 1})
    assert status(s, 5) == "ABANDONED"


# Ax 1.3.1's own calls that raise deprecation notes, whoever calls Ax (docs/search.md lists them):
# its Client adds metrics through its own deprecated add_tracking_metric, and its data code uses
# pandas keywords that pandas deprecates
AX_OWN_DEPRECATIONS = ("add_tracking_metric is deprecated", "The 'future.infer_string' option is deprecated",
                       "The inplace keyword in DataFrame", "The 'lsuffix' and 'rsuffix' keywords")


def test_no_deprecation_warning_comes_from_our_use_of_ax_or_botorch(space, tmp_path):
    """A whole search (Sobol, Bayesian proposals with a known objective, early stopping, a failed
    and a stopped trial, save and restore), every warning recorded: none is attributed to this
    project's code (Ax and BoTorch attribute a deprecated call to its caller), none names an API
    of Ax or BoTorch that we call, and Ax's own are exactly the documented ones."""
    import warnings
    from pathlib import Path

    import search
    from ae_lightning import quiet
    from search.ax_searcher import AxEarlyStopping

    ours = str(Path(search.__file__).parent.parent)
    quiet.set_verbose(True)  # the searcher hides Ax's notes otherwise
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            warnings.filterwarnings("error", category=DeprecationWarning, module=r"(search|ae_lightning)(\.|$)")
            s = searcher(space, [Objective("val_loss"), Objective("model.latent_dim")], init_trials=3)
            for i in range(6):
                c = s.suggest(str(i))
                s.on_trial_complete(str(i), None if i == 1 else final(0.1 / (i + 1), latent=c["model"]["latent_dim"]))
            s.save(str(tmp_path / "state.json"))
            s.restore(str(tmp_path / "state.json"))
            one = searcher(space, init_trials=3, stop_early=True)
            sched = AxEarlyStopping(one, max_epochs=2)
            for i in range(7):
                one.suggest(str(i))
                sched.on_trial_result(None, type("T", (), {"trial_id": str(i)})(), {"best_val_loss": 0.1 * i, "epochs_total": 1})
                one.on_trial_complete(str(i), final(0.1 * i) if i < 6 else {"best_val_loss": 0.7, "epochs_total": 1})
    finally:
        quiet.set_verbose(False)
    deprecations = [w for w in seen if issubclass(w.category, DeprecationWarning)]
    assert not [w for w in deprecations if w.filename.startswith(ours) and ".venv" not in w.filename]
    assert all(str(w.message).startswith(AX_OWN_DEPRECATIONS) for w in deprecations), \
        sorted({f"{w.filename}:{w.lineno}: {w.message}" for w in deprecations})


# ---------------------------------------------------------------------------------------------
# objectives
@pytest.mark.parametrize("text, message", [
    ("val_los", "unknown objective 'val_los'"),
    ("model.beta", "a config key must be searched"),
    ("val_loss:up", "the direction is min or max"),
    ("val_loss:min>=0.1", "takes a threshold <=VALUE"),
    ("val_loss<=abc", "the threshold must be a finite number"),
    ("val loss", "expected NAME[:min|max]"),
])
def test_objective_errors_name_the_problem(text, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("|", r"\|")):
        parse(text, ["model.latent_dim"], ["test_mse"])


def test_objective_forms():
    o = parse("model.latent_dim:min<=32", ["model.latent_dim"], [])
    assert (o.name, o.minimize, o.threshold, o.is_param, o.key) == ("model.latent_dim", True, 32.0, True,
                                                                    "model.latent_dim")
    v = parse("val_loss", [], [])
    assert (v.key, v.minimize, v.per_epoch, v.text()) == ("best_val_loss", True, True, "val_loss:min")
    assert parse("test_acc:max>=0.9", [], ["test_acc"]).text() == "test_acc:max>=0.9"


def test_pareto_set_on_a_synthetic_problem():
    """min-min: the front of y = 1/x with dominated points above it; a duplicate counts once;
    a max objective flips the direction."""
    objs = [Objective("a"), Objective("b")]
    front = [(1.0, 4.0), (2.0, 2.0), (4.0, 1.0)]
    dominated = [(2.0, 4.0), (4.5, 1.5), (3.0, 3.0)]
    pts = front + dominated + [(2.0, 2.0)]
    assert pareto_mask(pts, objs) == [True, True, True, False, False, False, False]
    maxed = [Objective("a"), Objective("b", minimize=False)]
    assert pareto_mask([(1.0, 1.0), (2.0, 5.0), (3.0, 4.0)], maxed) == [True, True, False]


def test_hypervolume_against_a_hand_computed_case():
    """(1,3), (2,2), (3,1) minimised, reference (4,4): 1x1 + 1x2 + 1x3 = 6; a point beyond the
    reference adds nothing; by trial it only grows."""
    objs = [Objective("a"), Objective("b")]
    pts = [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]
    assert hypervolume(pts, objs, [4.0, 4.0]) == pytest.approx(6.0)
    assert hypervolume(pts + [(0.5, 5.0)], objs, [4.0, 4.0]) == pytest.approx(6.0)
    assert hypervolume_by_trial([(2.0, 2.0), None, (1.0, 3.0), (3.0, 1.0)], objs, [4.0, 4.0]) == \
        pytest.approx([4.0, 4.0, 5.0, 6.0])
    # a maximised objective: (value, -value) mirror of the same case
    mixed = [Objective("a"), Objective("b", minimize=False)]
    assert hypervolume([(1.0, -3.0), (2.0, -2.0), (3.0, -1.0)], mixed, [4.0, -4.0]) == pytest.approx(6.0)


def test_reference_point_uses_thresholds_bounds_then_the_data():
    objs = [Objective("val_loss"), Objective("model.latent_dim"), Objective("test_mse", threshold=0.5)]
    ref = reference_point([(0.1, 4, 0.2), (0.3, 8, 0.1)], objs, {"model.latent_dim": (2.0, 64.0)})
    assert ref == pytest.approx([0.3 + 0.1 * 0.2, 64 + 6.2, 0.5])


# ---------------------------------------------------------------------------------------------
# CLI
@pytest.mark.parametrize("argv, message", [
    (["--objective", "val_los"], "unknown objective 'val_los'"),
    (["--objective", "val_loss", "--objective", "val_loss"], "val_loss given twice"),
    (["--objective", "model.latent_dim"], "every objective is a searched key"),
    (["--objective", "val_loss", "--objective", "model.latent_dim", "--scheduler", "asha"],
     "--scheduler asha with several objectives"),
    (["--objective", "test_mse", "--scheduler", "asha"], "needs val_loss as the objective"),
    (["--objective", "test_mse", "--cv", "3"], "--cv with the objective test_mse"),
    (["--objective", "val_loss", "--objective", "model.latent_dim", "--scheduler", "ax"],
     "--scheduler ax with several objectives"),
    (["--algo", "random", "--scheduler", "ax"], "--scheduler ax is Ax's own early stopping"),
    (["--algo", "random", "--init-trials", "3"], "--init-trials applies to --algo ax only"),
    (["--stopped-trials", "fit"], "--stopped-trials fit applies to --algo ax with --scheduler"),
    (["--scheduler", "ax", "--cv", "3"], "--cv with --scheduler ax"),
    (["--epoch-budget", "0"], "--epoch-budget: expected int > 0, got '0'"),
    (["--time-budget", "-1"], "--time-budget: expected"),
])
def test_objective_and_searcher_flags_one_line_exit_2(tmp_path, capsys, data_dir, argv, message):
    import ray

    from search.tune import main

    try:
        code = main(["--variant", "deep", "--storage", str(tmp_path), "--data-dir", str(data_dir), *argv])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and err.startswith("error: ") and "\n" not in err, err
    assert not ray.is_initialized()


def test_space_file_objectives_are_read_and_checked(tmp_path, data_dir):
    from search.space import load_space

    base = load("fc", None, {"data.data_dir": str(data_dir)})
    (tmp_path / "s.yaml").write_text(SPACE + "objectives: [val_loss, 'model.latent_dim:min<=16']\n")
    sp = load_space(tmp_path / "s.yaml", base)
    assert [o.text() for o in sp.objectives] == ["val_loss:min", "model.latent_dim:min<=16"]
    (tmp_path / "bad.yaml").write_text(SPACE + "objectives: [val_loss, model.beta]\n")
    with pytest.raises(UserError, match=r"bad.yaml: objectives: 'model.beta'"):
        load_space(tmp_path / "bad.yaml", base)


# ---------------------------------------------------------------------------------------------
# a real two-objective sweep
@pytest.mark.filterwarnings(r"error::DeprecationWarning:(search|ae_lightning)(\.|$)")  # our calls into Ax
def test_two_objective_ax_sweep_end_to_end(tmp_path, data_dir, capsys):
    """A real Ray Tune + Ax sweep on val_loss and model.latent_dim: every trial is COMPLETED in Ax
    (val_loss modelled, the latent size known and fixed by each Bayesian proposal), the search
    reaches its Bayesian step, and the experiment has pareto.csv (non-dominated, with every
    searched key), pareto.png, one config per front point that trains, and the front in TensorBoard."""
    import train
    from search.ax_searcher import client_from_state
    from search.results import SEARCHER_STATE, read_state
    from search.tune import main

    storage = tmp_path / "s"
    (tmp_path / "space.yaml").write_text(SPACE.replace("[32, 64, 128, 256, 512, 1024]", "[64, 128]"))
    code = main(["--variant", "linear", "--space", str(tmp_path / "space.yaml"), "--data-dir", str(data_dir),
                 "--subset", "600", "--storage", str(storage), "--name", "moo", "--max-concurrent", "1", "--quiet",
                 "--num-cpus", "2", "--set", "data.download=false", "--set", "trainer.images_every_n_epochs=0",
                 "--num-samples", "4", "--max-epochs", "1", "--init-trials", "2",
                 "--objective", "val_loss", "--objective", "model.latent_dim"])
    out = capsys.readouterr().out
    assert code == 0, out
    exp = storage / "moo"
    rows = list(csv.DictReader(open(exp / "results.csv")))
    assert [r["status"] for r in rows] == ["completed"] * 4
    assert [r["generator"] for r in rows].count("MBM") == 2
    ax = client_from_state(read_state(sorted(exp.glob(SEARCHER_STATE.format("*")))[-1])).summarize()
    assert list(ax["trial_status"]) == ["COMPLETED"] * 4 and "best_val_loss" in ax
    bayes = [int(r["model.latent_dim"]) for r in rows if r["generator"] == "MBM"]
    assert sorted(bayes) == [2, 64]  # the known objective's levels: both ends first
    front = list(csv.DictReader(open(exp / "pareto.csv")))
    pts = [(float(r["best_val_loss"]), int(r["model.latent_dim"])) for r in rows]
    on = pareto_mask(pts, [Objective("val_loss"), Objective("model.latent_dim")])
    assert sorted(r["trial_id"] for r in front) == sorted(r["trial_id"] for r, m in zip(rows, on) if m)
    assert set(front[0]) >= {"trial", "trial_id", "best_val_loss", "model.latent_dim", "model.lr",
                             "data.batch_size", "config"}
    assert (exp / "pareto.png").stat().st_size > 1000 and list((exp / "pareto").glob("events.out.tfevents.*"))
    best = json.loads((exp / "best.json").read_text())
    assert len(best["front"]) == len(front) and best["hypervolume"] > 0
    assert "Pareto front:" in out
    cfg = exp / front[0]["config"]
    assert train.main(["--config", str(cfg), "--output-dir", str(tmp_path / "retrain")]) == 0


# ---------------------------------------------------------------------------------------------
# the benchmark, end to end on tiny data
@pytest.mark.slow
def test_search_bench_runs_its_arms_at_equal_wall_time_and_writes_its_outputs(tmp_path, data_dir):
    """python -m search.bench at a toy size: each sweep is search.tune under the same wall-clock
    budget, bench.json's ``wall`` has one row per seed and arm with the promised fields, the curves
    are best-so-far within the budget, the goals are computed, the figures and bench.md written;
    --report rebuilds them from the finished sweeps alone."""
    from search import bench

    argv = ["--out", str(tmp_path / "out"), "--storage", str(tmp_path / "runs"), "--data-dir", str(data_dir),
            "--dataset", "mnist", "--seeds", "0", "--arms", "random,ax+stop", "--budget-s", "25", "--init-trials", "2",
            "--subset", "200", "--space", "configs/search/small.yaml", "--epochs", "2", "--resume"]
    assert bench.main(argv) == 0
    r = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert set(r["settings"]) >= {"command", "machine", "date", "task"}
    one = {w["arm"]: w for w in r["wall"] if w["objectives"] == 1}
    two = {w["arm"]: w for w in r["wall"] if w["objectives"] == 2}
    assert set(one) == {"random", "ax+stop"} and set(two) == {"random", "ax"}
    for w in one.values():
        assert {"seed", "arm", "objectives", "budget_s", "final_best"} <= set(w) and w["budget_s"] == 25
        assert w["trials"] >= 2 and w["final_best"] > 0
    assert all({"seed", "arm", "objectives", "budget_s", "hypervolume"} <= set(w) for w in two.values())
    assert two["ax"]["reference_point"] == two["random"]["reference_point"]
    ends = [x["end_s"] for x in bench.read_sweep(tmp_path / "runs" / "one-random-s0")["rows"]]
    assert 2 <= len(ends) and max(ends) < 25 + 10  # the wall-clock budget ended the sweep (10,000 trials asked)
    for c in r["curves"]:
        times, values = [t for t, _ in c["curve"]], [v for _, v in c["curve"]]
        assert times == sorted(times) and all(t <= 25 for t in times)
        sign = -1 if c["objectives"] == 1 else 1  # best so far falls; the hypervolume grows (to float rounding)
        assert all(sign * (b - a) >= -1e-9 * abs(a) for a, b in zip(values, values[1:])), values
    assert r["goals"]["final_best_below"]["of"] == 1 and r["goals"]["hypervolume"]["of"] == 1
    assert {e["arm"] for e in r["epochs"]} == {"random", "ax+stop"}
    for name in ("bench.md", "bench_wall_one.png", "bench_wall_two.png"):
        assert (tmp_path / "out" / name).stat().st_size > 100, name
    assert bench.main(argv[: argv.index("--resume")] + ["--report"]) == 0  # from the finished sweeps alone
    again = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert again["wall"] == r["wall"]


def test_bench_curves_and_goals_on_made_up_sweeps():
    """The benchmark's arithmetic: best so far within the budget, best at equal epochs, and the
    goals (the best Ax arm against the best random arm, per seed)."""
    from search import bench

    rows = [{"status": "completed", "best_val_loss": 0.5, "end_s": 10, "epochs": 2},
            {"status": "stopped", "best_val_loss": 0.1, "end_s": 20, "epochs": 1},
            {"status": "completed", "best_val_loss": 0.3, "end_s": 30, "epochs": 2},
            {"status": "completed", "best_val_loss": 0.2, "end_s": 99, "epochs": 2}]
    assert bench.curve(rows, 50) == [(10, 0.5), (30, 0.3)]  # a stopped trial's value is not a result
    assert bench.best_within_epochs(rows, 3) == 0.5 and bench.best_within_epochs(rows, 5) == 0.3
    wall = [{"seed": s, "arm": a, "objectives": 1, "final_best": v} for s, a, v in
            [(0, "ax", 0.9), (0, "ax+stop", 0.8), (0, "random", 1.0), (0, "random+asha", 0.95),
             (1, "ax", 0.9), (1, "ax+stop", 0.85), (1, "random", 1.0), (1, "random+asha", 0.8)]]
    wall += [{"seed": s, "arm": a, "objectives": 2, "hypervolume": v} for s, a, v in
             [(0, "ax", 5.0), (0, "random", 4.0), (1, "ax", 3.0), (1, "random", 4.0)]]
    g = bench.goals(wall)
    assert g["median_gap"]["ax_arm"] == "ax+stop" and g["median_gap"]["random_arm"] == "random+asha"
    assert g["final_best_below"]["met"] == 1 and not g["final_best_below"]["passed"]  # 0.85 > 0.8 at seed 1
    assert g["median_gap"]["gap"] == pytest.approx(1 - 0.825 / 0.875)
    assert g["hypervolume"]["met"] == 1 and not g["hypervolume"]["passed"]
