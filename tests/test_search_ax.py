"""The Ax integration's traps (search/ax_searcher.py), objectives, fronts and hypervolumes.

The searcher tests drive ``SweepAxSearch`` as Tune does (suggest, then on_trial_complete with the
trial's last result) without a Ray cluster, and read Ax's own record of each trial.
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
FAST = {"num_restarts": 2, "raw_samples": 16}  # a BoTorch step in about a second


@pytest.fixture
def space(tmp_path, data_dir):
    from search.space import load_space

    (tmp_path / "space.yaml").write_text(SPACE)
    return load_space(tmp_path / "space.yaml", load("fc", None, {"data.data_dir": str(data_dir)}))


def searcher(space, objectives=None, init_trials=3):
    from search.ax_searcher import SweepAxSearch

    return SweepAxSearch(space, objectives or [Objective("val_loss")], 0, init_trials, **FAST)


def status(s, trial_id_index: int) -> str:
    return s._ax.experiment.trials[trial_id_index].status.name


def final(value: float, latent: int | None = None, **extra) -> dict:
    out = {"best_val_loss": value, "final": True, "epochs_total": 2, "training_iteration": 3, **extra}
    if latent is not None:
        out["model.latent_dim"] = latent
    return out


# ---------------------------------------------------------------------------------------------
# the traps
def test_a_trial_stopped_by_asha_is_abandoned_in_ax_not_completed(space):
    """Ray's AxSearch completed a stopped trial with its 1-epoch value; here Ax keeps it out of
    the GP's data, marked abandoned with the reason, and a full trial is completed."""
    s = searcher(space)
    s.suggest("a")
    s.suggest("b")
    # ASHA stops "a" after epoch 1: its last result is an epoch result, without `final`
    s.on_trial_complete("a", {"best_val_loss": 0.08, "epochs_total": 1, "training_iteration": 1})
    s.on_trial_complete("b", final(0.07))
    trials = s._ax.experiment.trials
    assert trials[0].status.name == "ABANDONED" and "stopped by the scheduler" in trials[0].status_reason
    assert trials[1].status.name == "COMPLETED"
    data = s._ax.experiment.lookup_data().df
    assert set(data["trial_index"]) == {1}  # the truncated 0.08 never reached Ax's data


def test_a_failed_or_incomplete_trial_is_abandoned(space):
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

    ax_space = searcher(space)._ax.experiment.search_space.parameters
    batch = ax_space["data/batch_size"]
    assert batch.values == [0, 1, 2, 3, 4, 5] and batch.is_ordered
    assert ax_space["model/latent_dim"].log_scale and ax_space["model/latent_dim"].lower == 2
    assert [space.from_searcher({"data": {"batch_size": r}})["data.batch_size"] for r in range(6)] == \
        [32, 64, 128, 256, 512, 1024]
    assert space.encode({"data.batch_size": 256}) == {"data.batch_size": 3}
    dom = space.to_tune()["data"]["batch_size"]  # random search samples the same choices uniformly, as values
    assert isinstance(dom, Categorical) and dom.categories == [32, 64, 128, 256, 512, 1024]


def test_proposals_reach_tune_in_real_values_ax_keeps_its_encoding(space):
    """Ray's tables and files print a trial's config: SweepAxSearch hands Tune the real values
    (lr 0.0025, batch 256), decoded from Ax's own encoded arm (positions in [0, 1], ranks); a
    searcher pickled before real trial configs (no ``_decoder``) keeps handing out the encoding."""
    from search.space import flatten, nest

    s = searcher(space, init_trials=3)
    for t in "ab":
        flat = flatten(s.suggest(t))
        assert set(flat) == set(space.params)
        assert all(space.params[k].contains(v) for k, v in flat.items()), flat
        arm = s._ax.experiment.trials[s._live_trial_mapping[t]].arm.parameters
        assert 0.0 <= arm["model/lr"] <= 1.0 and arm["data/batch_size"] in range(6)
        assert space.from_searcher(nest({k.replace("/", "."): v for k, v in arm.items()})) == flat
    del s.__dict__["_decoder"]  # as unpickled from a sweep saved by 2
    encoded = flatten(s.suggest("c"))
    assert 0.0 <= encoded["model.lr"] <= 1.0 and encoded["data.batch_size"] in range(6)


def test_exactly_init_trials_sobol_while_others_run_then_bayesian(space, tmp_path):
    """With more trials asked for than Sobol's count, Ax's default strategy kept proposing Sobol
    points; here Sobol proposes init_trials, Tune is told to wait (None) until one has run in
    full, and then every proposal is Bayesian, the running trials pending."""
    s = searcher(space, init_trials=3)
    got = [s.suggest(t) for t in "abcde"]
    assert [g is not None for g in got] == [True, True, True, False, False]
    s.on_trial_complete("a", final(0.1))
    assert s.suggest("f") is not None and s.suggest("g") is not None  # b, c in flight: pending points
    log = s._proposals  # saved with the searcher's state (search.report.proposals reads it)
    assert [p["generator"] for p in log] == ["Sobol", "Sobol", "Sobol", "BoTorch", "BoTorch"]
    assert all(p["wall_s"] >= 0 and p["cpu_s"] >= 0 for p in log)


def test_sobol_points_stopped_by_asha_are_spent_not_replaced(space):
    """A Sobol trial that ASHA stopped has used its point: the Bayesian step starts after
    init_trials Sobol trials once one ran in full (Ax's own step replaced abandoned trials, so a
    sweep whose trials ASHA mostly stops stayed in Sobol); a failed trial is replaced."""
    s = searcher(space, init_trials=3)
    for t in "abc":
        s.suggest(t)
    stopped = {"best_val_loss": 0.2, "epochs_total": 1, "training_iteration": 1}
    s.on_trial_complete("a", stopped)
    s.on_trial_complete("b", None, error=True)  # failed: Sobol proposes a replacement
    assert s.suggest("d") is not None and s._proposals[-1]["generator"] == "Sobol"
    s.on_trial_complete("c", stopped)
    s.on_trial_complete("d", final(0.05))
    assert s.suggest("e") is not None
    assert [p["generator"] for p in s._proposals] == ["Sobol"] * 4 + ["BoTorch"]


def test_every_objective_reaches_ax_and_the_search_leaves_sobol(space):
    """Ray's _process_result sent the first objective only: Ax marked each trial FAILED and never
    left Sobol. Here both reach Ax, trials are COMPLETED, and the next proposal is qLogNEHVI's."""
    objs = [Objective("val_loss"), Objective("model.latent_dim")]
    s = searcher(space, objs, init_trials=3)
    for i, t in enumerate("abc"):
        cfg = s.suggest(t)
        s.on_trial_complete(t, final(0.1 - 0.01 * i, latent=int(cfg["model"]["latent_dim"])))
    assert [status(s, i) for i in range(3)] == ["COMPLETED"] * 3
    df = s._ax.experiment.lookup_data().df
    assert set(df["metric_name"]) == {"best_val_loss", "model.latent_dim"} and len(df) == 6
    assert s.suggest("d") is not None
    run = s._ax.experiment.trials[3].generator_runs[0]
    assert run._generation_node_name.endswith("BoTorch")


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
    (["--num-restarts", "50", "--raw-samples", "16"], "exceeds --raw-samples"),
    (["--algo", "random", "--raw-samples", "64"], "--raw-samples applies to --algo ax only"),
    (["--epoch-budget", "0"], "argument --epoch-budget: expected int > 0, got 0"),
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
def test_two_objective_ax_sweep_end_to_end(tmp_path, data_dir, capsys):
    """A real Ray Tune + Ax sweep on val_loss and model.latent_dim: every trial is COMPLETED in Ax
    with both objectives, the search reaches its Bayesian step (qLogNEHVI), and the experiment has
    pareto.csv (non-dominated, with every searched key), pareto.png, one config per front point
    that trains, and the front in TensorBoard."""
    import cloudpickle

    import train
    from search.tune import main

    storage = tmp_path / "s"
    (tmp_path / "space.yaml").write_text(SPACE.replace("[32, 64, 128, 256, 512, 1024]", "[64, 128]"))
    code = main(["--variant", "linear", "--space", str(tmp_path / "space.yaml"), "--data-dir", str(data_dir),
                 "--subset", "600", "--storage", str(storage), "--name", "moo", "--max-concurrent", "1", "--quiet",
                 "--num-cpus", "2", "--set", "data.download=false", "--set", "trainer.images_every_n_epochs=0",
                 "--num-samples", "4", "--max-epochs", "1", "--init-trials", "2", "--num-restarts", "2",
                 "--raw-samples", "16", "--objective", "val_loss", "--objective", "model.latent_dim"])
    out = capsys.readouterr().out
    assert code == 0, out
    exp = storage / "moo"
    rows = list(csv.DictReader(open(exp / "results.csv")))
    assert [r["status"] for r in rows] == ["completed"] * 4
    assert [r["generator"] for r in rows].count("BoTorch") == 2
    state = sorted(exp.glob("searcher-state-*.pkl"))[-1]
    ax = cloudpickle.loads(state.read_bytes())["_ax"]
    assert [t.status.name for t in ax.experiment.trials.values()] == ["COMPLETED"] * 4
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
def test_search_bench_runs_every_part_and_writes_its_outputs(tmp_path, data_dir):
    """python -m search.bench at a toy size: the single, multi and acquisition parts run through
    search.tune, bench.json has the promised fields, the goals are computed from the curves, and
    the figures and bench.md are written; --report rebuilds them from the finished sweeps alone.
    (The asha part's sweep is Ax + ASHA with --epoch-budget: test_search.py's ASHA test and the
    epoch-budget flag test cover it; here it would double the test's time.)"""
    from search import bench

    argv = ["--out", str(tmp_path / "out"), "--storage", str(tmp_path / "runs"), "--data-dir", str(data_dir),
            "--dataset", "mnist", "--seeds", "0", "--asha-seeds", "0", "--trials", "3", "--init-trials", "2",
            "--subset", "200", "--space", "configs/search/small.yaml", "--epochs", "2", "--num-restarts", "2",
            "--raw-samples", "16", "--resume",
            "--only", "single", "--only", "multi", "--only", "acquisition"]
    assert bench.main(argv) == 0
    r = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert set(r["settings"]) >= {"command", "machine", "date", "task"}
    single = {x["algo"]: x for x in r["single"]}
    assert set(single) == {"ax", "random"} and all(len(x["curve"]) == 3 for x in single.values())
    assert all(a >= b for x in single.values() for a, b in zip(x["curve"], x["curve"][1:]))  # best so far
    failed = sum(v for k, v in single["ax"]["statuses"].items() if k in ("diverged", "error"))  # lr up to 0.1
    assert single["ax"]["generators"] == (["Sobol"] * (2 + failed) + ["BoTorch"] * 3)[:3]
    multi = {x["algo"]: x for x in r["multi"]}
    assert set(multi) == {"ax", "random"} and multi["ax"]["reference_point"] == multi["random"]["reference_point"]
    assert all(x["hypervolume"] == x["hypervolume_by_trial"][-1] > 0 and x["front"] for x in multi.values())
    assert r["asha"] == []
    half = r["goals"]["reach_within_half"]["per_seed"][0]
    assert half["random_final"] == single["random"]["curve"][-1]
    assert r["acquisition"]["replays"] and r["acquisition"]["median_wall_s"]["full"] > 0
    for name in ("bench.md", "bench_single.png", "bench_multi.png", "bench_proposal_time.png"):
        assert (tmp_path / "out" / name).stat().st_size > 100, name
    assert bench.main(argv[: argv.index("--resume")] + ["--report"]) == 0  # from the finished sweeps alone
    again = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert [x["curve"] for x in again["single"]] == [x["curve"] for x in r["single"]]


# ---------------------------------------------------------------------------------------------
# every flag of search.tune through the schema (tests/test_flags.py walks the other commands)
SEARCH_SPECIAL = {"variant": "nope", "dataset": "nope", "space": "/nonexistent/space.yaml", "objective": "bogus",
                  "set": "novalue", "address": "nohost", "resume": None, "quiet": None, "data_dir": None,
                  "storage": None, "name": None, "keep_checkpoints": None, "verbose": None}  # None: a switch, any value


def search_flag_cases():
    import argparse

    from test_flags import bad_values

    from ae_lightning.config import schema_of
    from search.settings import SweepSettings
    from search.tune import parser

    schema = schema_of(SweepSettings)
    for action in parser()._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[0]
        if action.dest in SEARCH_SPECIAL:
            if SEARCH_SPECIAL[action.dest] is not None:
                yield flag, "special", SEARCH_SPECIAL[action.dest]
            continue
        field = getattr(action.type, "__name__", None)
        assert field in schema, f"search.tune {flag} bypasses the schema (its type is {action.type})"
        for kind, text in bad_values(schema[field][0]):
            yield flag, kind, text


SEARCH_CASES = list(search_flag_cases())


def test_every_search_flag_is_walked():
    walked = {f for f, *_ in SEARCH_CASES}
    assert {"--num-samples", "--max-epochs", "--init-trials", "--cv", "--gpus-per-trial", "--algo", "--subset",
            "--num-cpus", "--epoch-budget", "--objective", "--address"} <= walked


@pytest.mark.parametrize("flag, kind, text", SEARCH_CASES, ids=[f"{f}={t}" for f, _, t in SEARCH_CASES])
def test_a_bad_search_flag_is_one_line_and_exit_2(flag, kind, text, tmp_path, data_dir, capsys):
    import ray

    from search.tune import main

    argv = ["--storage", str(tmp_path / "s"), "--data-dir", str(data_dir), f"{flag}={text}"]
    if flag != "--variant":
        argv = ["--variant", "deep", *argv]
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, (kind, err)
    assert not ray.is_initialized()
