"""Hyperparameter search with Ray Tune: Ax (Bayesian optimization) or random search.

    python -m search.tune --variant vae --num-samples 200 --max-epochs 40
    python -m search.tune --variant deep --algo random --num-samples 30 --max-epochs 3 --subset 10000
    python -m search.tune --variant vae --gpus-per-trial 0.25 --scheduler asha      # 4 trials per GPU
    python -m search.tune --variant vae --name vae-ax --resume                      # after a crash
    python -m search.tune --variant vae --address auto                              # a Ray cluster
    python -m search.tune --variant fc --objective val_loss --objective model.latent_dim   # a Pareto front
    python -m search.tune --variant fc --time-budget 600 --num-samples 1000       # ten minutes, as many trials as fit

Every trial trains through ``ae_lightning.fit.fit`` (the path of train.py) in its own folder
``<storage>/<name>/trial_<id>/``; ``.venv/bin/tensorboard --logdir <storage>/<name>`` shows them all, with
the HParams tab. At the end: results.csv, best.json, best.yaml, search.png in <storage>/<name>/
(with several objectives also pareto.csv, pareto.png and front/), and the command that retrains
the best config. See docs/search.md.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ae_lightning import dotted, files, flags, quiet, runlock
from ae_lightning.config import ROOT, cli, parse_value, schema_of, variants
from ae_lightning.datafiles import default_data_dir, locate_all
from ae_lightning.errors import UserError
from ae_lightning.hints import PosInt
from ae_lightning.resolve import load
from search import cluster, objectives, report
from search.results import METRIC
from search.settings import ALGOS, SCHEDULERS, SweepSettings, check
from search.space import apply, capped, load_space, parse_space, with_objectives

DEFAULT_SPACE = ROOT / "configs" / "search" / "default.yaml"
SMALL_SPACE = DEFAULT_SPACE.with_name("small.yaml")  # batch sizes that fit a quick --subset


# flags that are fields of SweepSettings: each one's type is the field's schema (search.settings)
SETTING_FLAGS = {
    "--algo": ("algo", f"{' or '.join(ALGOS)} (default ax: Bayesian optimization)"),
    "--scheduler": ("scheduler", f"{', '.join(SCHEDULERS)} (default none; asha, or ax with --algo ax: early stopping)"),
    "--num-samples": ("num_samples", "trials (default 200)"),
    "--max-epochs": ("max_epochs", "epochs per trial (default 40)"),
    "--grace-period": ("grace_period", "asha, ax: epochs before a trial can be stopped (default 1)"),
    "--stopped-trials": ("stopped_trials", "abandon (default): Ax's model leaves a trial stopped early out; fit: it "
                                           "fits the value the trial reached (docs/search.md)"),
    "--init-trials": ("init_trials", "ax: Sobol trials before the Bayesian step (default max(5, 2 x searched keys))"),
    "--cpus-per-trial": ("cpus_per_trial", "default 1"),
    "--gpus-per-trial": ("gpus_per_trial", "a fraction packs several trials per GPU (0.25: four)"),
    "--max-concurrent": ("max_concurrent", "at most N trials at once (default: as resources allow)"),
    "--max-failures": ("max_failures", "retries of a crashed trial from its last checkpoint (default 2)"),
    "--cv": ("cv", "K-fold cross-validation inside each trial (K >= 2)"),
    "--seed": ("seed", "training seed and searcher seed (default 0)"),
    "--retrain-epochs": ("retrain_epochs", "epochs of the full run that best.yaml (and front/) describe: on all the "
                                           "training data (default: the variant's own max_epochs)"),
    "--epoch-budget": ("epoch_budget", "end the sweep once its trials have trained N epochs in all "
                                       "(--num-samples is then an upper bound): equal compute with and without ASHA"),
    "--time-budget": ("time_budget", "end the sweep after N seconds (--num-samples is then an upper bound; "
                                     "a trial running then is stopped)"),
}


def parser() -> flags.Parser:
    p = flags.Parser("python -m search.tune", __doc__)
    schema = schema_of(SweepSettings)
    p.add_argument("--variant", help="the variant to tune (configs/<variant>.yaml)")
    p.add_argument("--dataset", help="mnist (default) or fashion_mnist")
    p.add_argument("--space", help=f"search space YAML (default {DEFAULT_SPACE.relative_to(ROOT)})")
    for flag, (field, text) in SETTING_FLAGS.items():
        p.add_argument(flag, dest=field, hint=schema[field][0], help=text)
    p.add_argument("--objective", action="append", default=[], metavar="NAME[:min|max][<=|>=VALUE]",
                   help="what to optimise, repeatable: val_loss (default), test_mse, test_nrmse, ... or a "
                        "searched key such as model.latent_dim; two or more give a Pareto front "
                        "(search/objectives.py); overrides the space file's objectives:")
    p.add_argument("--subset", key="data.subset", help="train on the first N training images (val: N/10)")
    p.add_argument("--data-dir", help="data folder; on a cluster, a path every node can read")
    p.add_argument("--storage", default="runs/search", help="experiments folder (default runs/search); "
                   "on a cluster, shared by every node")
    p.add_argument("--name", help="experiment name (default <variant>-<dataset>-<algo>, then the objectives unless val_loss "
                   "alone: fc-mnist-ax-val_loss+model.latent_dim)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted experiment --name")
    p.add_argument("--address", help="join a running Ray cluster (auto, or HOST:PORT of `ray start --head`)")
    p.add_argument("--num-cpus", hint=PosInt, help="CPUs Ray may use on this machine (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fix any other config key for every trial, e.g. --set model.beta=2")
    p.add_argument("--quiet", action="store_true", help="no line per trial, and nothing from the trials' own output")
    p.add_argument("--verbose", action="store_true", help="Ray Tune's progress tables, each trial's epoch lines, and "
                   "Ax's, Ray Tune's and Lightning's notes and repeated warnings too")
    p.add_argument("--keep-checkpoints", action="store_true", default=None,
                   help="a finished trial keeps its last.ckpt and Tune's checkpoint beside its best one "
                        "(default: the best checkpoint alone, about 1/3 of the disk)")
    return p


def _training_images(base: dict, cv: int) -> tuple[int | None, str]:
    """The images a trial trains on under ``--subset`` (None: the full split), and the words for it."""
    subset = base["data"].get("subset")
    if not subset:
        return None, ""
    if cv < 2:
        return subset, f"the {subset} training images"
    # K-fold over the train+val pool (ae_lightning.data): the smallest K-1 folds train
    data = base["data"]
    pool = subset + (0 if data.get("validation") == "test" else data.get("val_size") or max(1, subset // 10))
    n_train = pool - -(-pool // cv)
    return n_train, f"the {n_train} training images of each fold (--cv {cv})"


def _fit_batches(space, base: dict, cv: int, space_file: Path):
    """A batch size above the training split of ``--subset`` fails every such trial three times with
    a traceback: the space's batch sizes above it are left out, in one line on stderr, before Ray
    starts (``(space, base)``, either new); a space or a base config with none that fits is refused."""
    n_train, images = _training_images(base, cv)
    key, subset = "data.batch_size", base["data"].get("subset")
    if n_train is None:
        return space, base  # the full split: far above any batch size a space sensibly holds
    if key not in space.params:
        if base["data"]["batch_size"] > n_train:
            raise UserError(f"--subset {subset}: data.batch_size is {base['data']['batch_size']}, more than {images}: "
                            "raise --subset (or leave it out: the full set) or lower --set data.batch_size")
        return space, base
    raw, dropped, fixed = capped(space, key, n_train)
    if not dropped:
        return space, base
    way_out = f"use --space {SMALL_SPACE.relative_to(ROOT)} (batch sizes 16 to 128), or raise --subset"
    if fixed is None and key not in raw["space"]:
        raise UserError(f"--subset {subset}: every {key} of the space ({space.params[key].describe().split(': ', 1)[1]}) "
                        f"is above {images}: {way_out}")
    if not raw["space"]:
        raise UserError(f"--subset {subset}: of the space's {key} only {fixed} fits {images}, and the space "
                        f"searches nothing else: {way_out}")
    p = space.params[key]
    gone = (f"choices {', '.join(map(str, dropped))}" if p.type == "choice" else f"values {dropped[0]} to {dropped[1]}")
    then = f"; {key} fixed at {fixed}" if fixed is not None else ""
    print(f"note: --subset {subset}: {key} {gone} dropped (above {images}){then}", file=sys.stderr)
    if fixed is not None:
        base = apply(base, {key: fixed})
    return parse_space(raw, base, str(space_file)), base


def _settings_new(args) -> tuple[SweepSettings, object]:
    """Validate everything a fresh sweep needs, before Ray starts: the settings and the space."""
    if not args.variant:
        raise UserError("no variant given: use --variant NAME (one of " + ", ".join(variants()) + ")")
    given = {field: getattr(args, field) for field, _ in SETTING_FLAGS.values() if getattr(args, field) is not None}
    if args.keep_checkpoints:
        given["keep_checkpoints"] = True
    s = SweepSettings(variant=args.variant, objectives=list(args.objective), **given)
    overrides = {"trainer.max_epochs": s.max_epochs, "seed": s.seed}
    if args.dataset:
        overrides["data.dataset"] = args.dataset
    if args.subset:
        overrides["data.subset"] = args.subset
    for item in args.set:
        k, v = dotted.parse_set(item)
        overrides[k] = parse_value(v)
    base = load(args.variant, None, overrides)
    # one absolute data path for every trial (trials run in other folders, maybe on other nodes)
    data_dir = Path(args.data_dir) if args.data_dir else (Path(base["data"]["data_dir"]) if base["data"]["data_dir"]
                                                          else default_data_dir(base["data"]["dataset"]))
    base["data"]["data_dir"] = str(data_dir.resolve())
    local = not args.address  # local trials read the data at that path; a cluster's nodes hold their own copy
    if local:  # a file that no download may bring answers before torch and Ray
        locate_all(data_dir, base["data"]["dataset"], base["data"]["download"], fetch=False)
    space_file = Path(args.space) if args.space else DEFAULT_SPACE
    space, base = _fit_batches(load_space(space_file, base), base, s.cv, space_file)
    space = with_objectives(space, s.objectives, base)
    check(s, space.objectives)
    s.variant, s.base, s.space_file, s.space_raw = base["variant"], base, str(space_file.resolve()), space.raw
    s.objectives = [o.text() for o in space.objectives]
    if s.algo == "ax":
        from search.searchers import check_ax  # late: Ray Tune and Ax (seconds)
        check_ax(space, s)
    if local and base["data"]["download"]:  # every check passed: a download now, once, not in each trial
        locate_all(data_dir, base["data"]["dataset"], download=True)
    return s, space


def default_name(variant: str, dataset: str, algo: str, objs) -> str:
    """``<variant>-<dataset>-<algo>``, then the objectives unless they are the default (val_loss)."""
    tag = objectives.tag(objs)
    return f"{variant}-{dataset}-{algo}" + (f"-{tag}" if tag else "")


# what makes two sweeps different searches: a sweep of other settings is no sweep to --resume
COMPARED = ("variant", "algo", "scheduler", "cv", "max_epochs", "objectives", "space_raw", "base")


def _taken(exp_dir: Path, name: str, s: SweepSettings) -> str:
    """The line for an experiment folder that exists: --resume when it holds the same search, else --name."""
    try:
        old = report.load_settings(exp_dir).to_json()
    except UserError:  # unreadable, or an older format: --resume says which
        old = None
    new = json.loads(json.dumps(s.to_json(), default=str))  # as search.json holds it
    differ = [] if old is None else [f for f in COMPARED if old.get(f) != new[f]]
    if not differ:
        return f"experiment {exp_dir} exists: continue it with --resume --name {name}, or choose another --name"
    words = []
    for f in differ:
        if f == "objectives":
            words.append(f"objectives {', '.join(old[f])} there, {', '.join(new[f])} now")
        elif f == "base":
            a, b = dotted.flatten(old[f]), dotted.flatten(new[f])
            words.append("config " + ", ".join(sorted(k for k in {*a, *b} if a.get(k) != b.get(k))))
        else:
            words.append("another space" if f == "space_raw" else f"{f} {old[f]} there, {new[f]} now")
    return (f"experiment {exp_dir} holds another sweep ({'; '.join(words)}): give this one another --name "
            "(--resume would continue that sweep as it was)")


def _settings_resumed(args, storage: Path) -> tuple[SweepSettings, object, Path]:
    """The settings, space and folder of the sweep ``--resume`` continues, checked before Ray starts."""
    if not args.name and not args.variant:
        raise UserError("--resume needs --name NAME (the folder under --storage) or the --variant, "
                        "--dataset and --algo of the sweep")
    exp_dir = storage / (args.name or default_name(args.variant, args.dataset or "mnist", args.algo or "ax",
                                                   [objectives.loose(o) for o in args.objective]))
    if not (exp_dir / report.SETTINGS).is_file():
        raise UserError(f"--resume: nothing to resume, no search experiment in {exp_dir}")
    s = report.load_settings(exp_dir)
    if args.objective and args.objective != s.objectives and \
            [o.text() for o in report.settings_space(s, args.objective).objectives] != s.objectives:
        raise UserError(f"--resume with --objective: the sweep's objectives are fixed at its start "
                        f"({', '.join(s.objectives)}); leave --objective out, or start a new sweep")
    from ray.tune import Tuner
    if not Tuner.can_restore(str(exp_dir)):
        raise UserError(f"--resume: {exp_dir} holds no Tune experiment state (it stopped before its "
                        "first trial); delete the folder and start the sweep again")
    return s, report.settings_space(s), exp_dir


def _check_local_resources(gpus_per_trial: float, cpus_per_trial: float, args) -> None:
    """A trial asking for more than this machine has would wait forever: fail at once instead."""
    if args.address:
        return
    if gpus_per_trial > 0:
        import torch
        if not torch.cuda.is_available():
            raise UserError(f"--gpus-per-trial {gpus_per_trial:g}: this machine has no CUDA GPU "
                            "(use --gpus-per-trial 0, or --address a Ray cluster with GPUs)")
    cpus = args.num_cpus or os.cpu_count() or 1
    if cpus_per_trial > cpus:
        raise UserError(f"--cpus-per-trial {cpus_per_trial:g}: this machine offers Ray only {cpus} CPUs, "
                        "so no trial could ever start")


@runlock.scoped
def run(args) -> int:
    storage = Path(args.storage).resolve()
    if args.resume:
        s, space, exp_dir = _settings_resumed(args, storage)
    else:
        s, space = _settings_new(args)
        name = args.name or default_name(s.variant, s.base["data"]["dataset"], s.algo, space.objectives)
        exp_dir = storage / name
        if exp_dir.exists() and any(exp_dir.iterdir()):
            raise UserError(_taken(exp_dir, name, s))
    _check_local_resources(s.gpus_per_trial, s.cpus_per_trial, args)
    if s.base["model"].get("fid_cls") and not args.resume:
        _judge_once(s.base)
    # one driver per experiment: a second --resume of a live sweep is refused, naming its PID; the
    # lock lives beside the folder, since Tune syncs its staged copy of the folder over it
    exp_dir.mkdir(parents=True, exist_ok=True)
    runlock.hold(exp_dir, storage / f".{exp_dir.name}.lock", doing="running the sweep")
    if args.resume:
        note = cluster.set_aside_damaged_snapshot(exp_dir)
        if note:
            print(f"warning: {note}", file=sys.stderr)

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # fit writes TensorBoard; no 2nd HParams
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's older output engine: the one that takes a reporter of the caller's, and that prints
    # nothing at verbosity 0 (search.progress: the newer one rounds small floats to 0)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    cluster.start(args.address, args.num_cpus, args.quiet, s.cpus_per_trial, s.gpus_per_trial)
    import ray
    try:
        _tune(args, s, space, exp_dir, storage)
    finally:
        ray.shutdown()

    from search.trainable import prune_checkpoints  # late: trainable imports Lightning (seconds)

    rows = report.collect(exp_dir)
    if not s.keep_checkpoints:  # a finished trial keeps its best checkpoint alone
        for row in rows:
            if row["status"] in ("completed", "stopped", "diverged") and row["trial_dir"]:
                prune_checkpoints(Path(row["trial_dir"]))
    info = report.write_outputs(exp_dir, rows)
    print(f"results: {exp_dir / 'results.csv'}  figure: {exp_dir / 'search.png'}")
    print(f".venv/bin/tensorboard --logdir {exp_dir}")
    if info is None:
        print("error: no trial produced a validation loss (see results.csv)", file=sys.stderr)
        return 1
    if info.get("front") is not None:
        print(f"Pareto front: {len(info['front'])} of {info['trials']} trials ({exp_dir / 'pareto.csv'}), "
              f"hypervolume {info['hypervolume']:.6g}; one config per front point in {exp_dir / 'front'}/")
    print(f"best {METRIC} {info['value']:.6g} (trial {info['trial']} of {info['trials']}, {info['statuses']}): "
          + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info["params"].items()))
    print(f"retrain: {info['retrain']}")
    return 0


def _judge_once(base: dict) -> None:
    """The trials of a variant with ``model.fid_cls`` measure ``test_fid_cls`` in the dataset's judge
    (``ae_lightning.fid``): trained here, once, before any trial, and cached under an absolute
    ``trainer.output_dir``, since trials run side by side, each in a working folder of its own."""
    from ae_lightning.data import MNISTDataModule  # late, as in _tune
    from ae_lightning.fid import load_judge
    from ae_lightning.fit import fit

    base["trainer"]["output_dir"] = str(Path(base["trainer"]["output_dir"]).resolve())
    load_judge(MNISTDataModule(**base["data"]), base["trainer"]["output_dir"], lambda c: fit(c, label="fid_cls judge"),
               accelerator=base["trainer"]["accelerator"])


def _tune(args, s: SweepSettings, space, exp_dir: Path, storage: Path) -> None:
    """Build the Tuner (or restore it) and run it to the end."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    # late, as the lines above: Ray Tune, Ax and Lightning take seconds; --help and the checks do without
    from search.progress import TrialLines, tables
    from search.searchers import EpochBudget, build_scheduler, build_searcher, describe, trial_dirname
    from search.trainable import train_trial

    trainable = tune.with_resources(
        tune.with_parameters(train_trial, base=s.base, space=space, cv=s.cv, cpus=s.cpus_per_trial,
                             gpus=s.gpus_per_trial, verbose=quiet.verbose()),
        {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial})
    if args.resume:
        print(f"resuming {exp_dir} (its own settings: {s.algo}, {s.num_samples} trials)", file=sys.stderr)
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    else:
        files.write_json(exp_dir / report.SETTINGS, {**s.to_json(), "searcher": describe(s, space),
                                                     "space": space.describe(), "space_keys": list(space.params)})
        d = describe(s, space)
        how = f"Sobol {d['sobol_trials']} then {d['then']}" if s.algo == "ax" else "random"
        print(f"search {exp_dir}: {how}; {s.num_samples} trials x {s.max_epochs} epochs; objectives "
              f"{', '.join(d['objectives'])}; parallelism {d['parallelism']}; {space.describe()}", file=sys.stderr)
        searcher = build_searcher(s, space)
        tuner = tune.Tuner(
            trainable, param_space={} if s.algo == "ax" else space.to_tune(),
            tune_config=tune.TuneConfig(
                metric=METRIC, mode="min", num_samples=s.num_samples, search_alg=searcher,
                scheduler=build_scheduler(s.scheduler, s.max_epochs, s.grace_period, searcher),
                time_budget_s=s.time_budget,
                # random: BasicVariantGenerator limits itself (Tune's limiter takes Searchers only)
                max_concurrent_trials=s.max_concurrent if s.algo == "ax" else None,
                trial_dirname_creator=trial_dirname,
                trial_name_creator=trial_dirname, reuse_actors=True),
            run_config=tune.RunConfig(
                name=exp_dir.name, storage_path=str(storage), verbose=1 if quiet.verbose() else 0,
                progress_reporter=tables(space) if quiet.verbose() else None,
                failure_config=tune.FailureConfig(max_failures=s.max_failures),
                stop=EpochBudget(s.epoch_budget) if s.epoch_budget else None,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[JsonLoggerCallback(), CSVLoggerCallback(),
                           *([] if args.quiet else [TrialLines(space, s.num_samples)])]))
    tuner.fit()


@cli
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    quiet.set_verbose(args.verbose)
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"interrupted: continue with --resume --name {args.name or '<name>'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
