"""Hyperparameter search with Ray Tune: Ax (Bayesian optimization) or random search.

    python -m search.tune --variant vae --num-samples 200 --max-epochs 40
    python -m search.tune --variant deep --algo random --num-samples 30 --max-epochs 3 --subset 10000
    python -m search.tune --variant vae --gpus-per-trial 0.25 --scheduler asha      # 4 trials per GPU
    python -m search.tune --variant vae --name vae-ax --resume                      # after a crash
    python -m search.tune --variant vae --address auto                              # a Ray cluster

Every trial trains through ``ae_lightning.fit.fit`` (the path of train.py) in its own folder
``<storage>/<name>/trial_<id>/``; ``tensorboard --logdir <storage>/<name>`` shows them all, with
the HParams tab. At the end: results.csv, best.json, best.yaml, search.png in <storage>/<name>/,
and the command that retrains the best config. See docs/search.md.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from pathlib import Path

from ae_lightning.config import ROOT, UserError, cli

DEFAULT_SPACE = ROOT / "configs" / "search" / "default.yaml"
ALGOS, SCHEDULERS = ("ax", "random"), ("asha", "none")


def fast_path() -> bool:
    """Issue 14's cuts of a trial's fixed cost, on unless ``AE_SEARCH_FAST=0`` (a benchmark switch:
    ``benchmarks/bench_sweep.py --compare`` runs the path before them beside it)."""
    return os.environ.get("AE_SEARCH_FAST", "1") != "0"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse would print the usage too)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _int(low: int):
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {v}")
        return v
    return conv


def _float(positive: bool):
    def conv(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not math.isfinite(v) or v < 0 or (positive and v == 0):
            raise argparse.ArgumentTypeError(f"expected a number {'> 0' if positive else '>= 0'}, got {text!r}")
        return v
    return conv


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m search.tune", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", help="the variant to tune (configs/<variant>.yaml)")
    p.add_argument("--dataset", help="mnist (default) or fashion_mnist")
    p.add_argument("--num-samples", type=_int(1), default=200, help="trials (default 200)")
    p.add_argument("--max-epochs", type=_int(1), default=40, help="epochs per trial (default 40)")
    p.add_argument("--space", help=f"search space YAML (default {DEFAULT_SPACE.relative_to(ROOT)})")
    p.add_argument("--algo", default="ax", help="ax (Bayesian optimization, default) or random")
    p.add_argument("--scheduler", default="none", help="asha (early stopping) or none (default)")
    p.add_argument("--grace-period", type=_int(1), default=1, help="asha: epochs before a trial can be stopped")
    p.add_argument("--init-trials", type=_int(1), help="ax: Sobol trials before the Bayesian model "
                   "(default: Ax's choice, max(5, 2 x searched keys))")
    p.add_argument("--cpus-per-trial", type=_float(True), default=1.0)
    p.add_argument("--gpus-per-trial", type=_float(False), default=0.0,
                   help="a fraction packs several trials per GPU (0.25: four)")
    p.add_argument("--max-concurrent", type=_int(1), help="at most N trials at once (default: as resources allow)")
    p.add_argument("--max-failures", type=_int(0), default=2, help="retries of a crashed trial from its last checkpoint")
    p.add_argument("--cv", type=_int(0), default=0, help="K-fold cross-validation inside each trial (K >= 2)")
    p.add_argument("--subset", type=_int(1), help="train on the first N training images (val: N/10)")
    p.add_argument("--data-dir", help="data folder; on a cluster, a path every node can read")
    p.add_argument("--storage", default="runs/search", help="experiments folder (default runs/search); "
                   "on a cluster, shared by every node")
    p.add_argument("--name", help="experiment name (default <variant>-<dataset>-<algo>)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted experiment --name")
    p.add_argument("--address", help="join a running Ray cluster (auto, or HOST:PORT of `ray start --head`)")
    p.add_argument("--num-cpus", type=_int(1), help="CPUs Ray may use on this machine (default: all)")
    p.add_argument("--seed", type=_int(0), default=0, help="training seed and searcher seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fix any other config key for every trial, e.g. --set model.beta=2")
    p.add_argument("--quiet", action="store_true", help="no Tune progress tables")
    return p


def _check_flags(args) -> None:
    """Flag combinations that can never work (argparse already checked each number)."""
    if args.algo not in ALGOS:
        raise UserError(f"--algo {args.algo}: choose one of {', '.join(ALGOS)}")
    if args.scheduler not in SCHEDULERS:
        raise UserError(f"--scheduler {args.scheduler}: choose one of {', '.join(SCHEDULERS)}")
    if args.cv == 1:
        raise UserError("--cv 1: K-fold cross-validation needs K >= 2 (or leave --cv out)")
    if args.cv and args.scheduler == "asha":
        raise UserError("--cv with --scheduler asha: the mean over folds exists only when a trial ends, "
                        "so ASHA cannot compare trials early; use one or the other")
    if args.gpus_per_trial > 1:
        raise UserError(f"--gpus-per-trial {args.gpus_per_trial:g}: a trial trains on one device; "
                        "use 1 or a fraction (0.5, 0.25) to pack several trials per GPU")
    if args.init_trials and args.algo != "ax":
        raise UserError("--init-trials applies to --algo ax only")


def _settings_new(args) -> dict:
    """Validate everything a fresh sweep needs, before Ray starts. Returns search.json's content."""
    from ae_lightning.config import load, parse_value
    from ae_lightning.data import default_data_dir
    from search.space import load_space

    if not args.variant:
        from ae_lightning.config import variants
        raise UserError("no variant given: use --variant NAME (one of " + ", ".join(variants()) + ")")
    overrides = {"trainer.max_epochs": args.max_epochs, "seed": args.seed}
    if args.dataset:
        overrides["data.dataset"] = args.dataset
    if args.subset:
        overrides["data.subset"] = args.subset
    for item in args.set:
        if "=" not in item:
            raise UserError(f"--set {item}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        overrides[k.strip()] = parse_value(v)
    base = load(args.variant, None, overrides)
    # one absolute data path for every trial (trials run in other folders, maybe on other nodes)
    data_dir = Path(args.data_dir) if args.data_dir else (Path(base["data"]["data_dir"]) if base["data"]["data_dir"]
                                                          else default_data_dir(base["data"]["dataset"]))
    base["data"]["data_dir"] = str(data_dir.resolve())
    space_file = Path(args.space) if args.space else DEFAULT_SPACE
    space = load_space(space_file, base)
    if args.algo == "ax":
        from search.searchers import check_ax
        check_ax(space, args.seed, args.init_trials)
    return {"variant": base["variant"], "algo": args.algo, "scheduler": args.scheduler,
            "grace_period": args.grace_period, "init_trials": args.init_trials, "num_samples": args.num_samples,
            "max_epochs": args.max_epochs, "cv": args.cv, "cpus_per_trial": args.cpus_per_trial,
            "gpus_per_trial": args.gpus_per_trial, "max_concurrent": args.max_concurrent,
            "max_failures": args.max_failures, "seed": args.seed, "space_file": str(space_file.resolve()),
            "space_keys": list(space.params), "space": space.describe(), "space_raw": space.raw, "base": base}


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


def _probe(address: str, timeout_s: float = 10.0) -> None:
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address}: expected HOST:PORT of `ray start --head` (port 6379 by default) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserError(f"--address {address}: cannot reach a Ray head there ({e.strerror or e}); "
                        "start one with `ray start --head` or check host and port") from None


TOKEN_HELP = ("copy the head's token to this machine: `ray get-auth-token` on the head prints it; put it in "
              "~/.ray/auth_token here, or set RAY_AUTH_TOKEN=<token> or RAY_AUTH_TOKEN_PATH=<file> (docs/search.md)")


def _token_source() -> str | None:
    """Where Ray reads this machine's authentication token, in Ray's own order of precedence
    (RAY_AUTH_TOKEN, then the file RAY_AUTH_TOKEN_PATH names, then ~/.ray/auth_token), or None.
    A RAY_AUTH_TOKEN_PATH naming no token is refused here: Ray itself aborts the process on it."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        try:
            token = Path(path).expanduser().read_text().strip()
        except (OSError, UnicodeDecodeError):
            token = ""
        if not token:
            raise UserError(f"RAY_AUTH_TOKEN_PATH={path}: no token in that file (missing, unreadable or empty); "
                            + TOKEN_HELP)
        return f"RAY_AUTH_TOKEN_PATH={path}"
    try:
        default = Path.home() / ".ray" / "auth_token"
        if default.is_file() and default.read_text().strip():
            return str(default)
    except (OSError, RuntimeError, UnicodeDecodeError):  # no home folder, unreadable file
        pass
    return None


def _enable_token_auth(source: str | None) -> None:
    """Ray 2.60's ``ray start --head`` turns token authentication on whenever a token exists
    (~/.ray/auth_token, which any local ``ray.init()`` creates), but ``ray.init(address=HOST:PORT)``
    never does (only ``address="auto"`` does): the driver then sends no token and the head refuses
    it. So, as "auto" does: with RAY_AUTH_MODE unset and a token on this machine, this driver uses
    token mode. A head without authentication accepts such a driver too. An explicit RAY_AUTH_MODE
    (``disabled``, ``token``) is left as it is."""
    if os.environ.get("RAY_AUTH_MODE") is not None or source is None:
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    try:
        from ray._raylet import Config

        Config.initialize("")  # what Ray's own auto-enable does: re-read RAY_AUTH_MODE
    except ImportError:  # a Ray without token authentication
        pass


def _check_auth(address: str, source: str | None, timeout_s: float = 15.0) -> None:
    """One short GCS request: a refused token fails here, at once and in one line, instead of
    after ray.init's 20 s of retries (whose message does not say why)."""
    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    if mode == "token" and source is None:  # Ray's C++ side would abort the process
        raise UserError(f"--address {address}: RAY_AUTH_MODE=token is set but this machine has no token: {TOKEN_HELP}")
    if "://" in address:  # ray:// (Ray Client) is not the GCS port
        return
    try:
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:  # a Ray without token authentication
        return
    outcome: list[str] = []

    def ask() -> None:
        try:
            GcsClient(address=address)
            outcome.append("ok")
        except AuthenticationError:
            outcome.append("refused")
        except Exception:  # anything else: ray.init reports it
            outcome.append("other")

    import threading

    asking = threading.Thread(target=ask, daemon=True)
    with _quiet_fd2():  # Ray's C++ client logs each attempt on stderr
        asking.start()
        asking.join(timeout_s)
    if not outcome:
        raise UserError(f"--address {address}: no Ray head answered there within {timeout_s:g} s (a port that "
                        "accepts connections but is not the GCS port of `ray start --head`, 6379 by default?)")
    if outcome[0] == "refused":
        if mode == "disabled":
            why = "RAY_AUTH_MODE=disabled is set here, but the cluster uses token authentication: unset it and "
        elif source is None:
            why = "the cluster uses token authentication and this machine has no token: "
        else:
            why = f"the cluster uses token authentication and refused the token from {source} (not the cluster's): "
        raise UserError(f"--address {address}: {why}{TOKEN_HELP}")


@contextlib.contextmanager
def _quiet_fd2():
    """Standard error (file descriptor 2, where C++ code writes) to /dev/null for a moment."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _start_ray(args, s: dict) -> None:
    import ray
    from ray.exceptions import RayError

    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    os.environ.update(env)  # a local Ray's workers inherit it; a cluster's get it via runtime_env
    kw = dict(include_dashboard=False, configure_logging=False, log_to_driver=not args.quiet)
    source = _token_source()
    if args.address and args.address != "auto":  # Ray would retry an unreachable head for minutes
        _probe(args.address)
        _enable_token_auth(source)
        _check_auth(args.address, source)
    try:
        if args.address:
            ray.init(address=args.address, runtime_env={"env_vars": env}, **kw)
        else:
            ray.init(num_cpus=args.num_cpus or os.cpu_count(), **kw)
    except (ConnectionError, RuntimeError, ValueError, RayError) as e:
        raise UserError(f"cannot start or join Ray ({'--address ' + args.address if args.address else 'local'}): "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    if args.address:
        have = ray.cluster_resources()
        for res, want in (("GPU", s["gpus_per_trial"]), ("CPU", s["cpus_per_trial"])):
            if want > 0 and have.get(res, 0) < want:
                ray.shutdown()
                raise UserError(f"the Ray cluster at {args.address} has {have.get(res, 0):g} {res}s; "
                                f"a trial asks for {want:g}")


def run(args) -> int:
    from search import report
    from search.trainable import METRIC

    storage = Path(args.storage).resolve()
    if args.resume:
        if not args.name and not args.variant:
            raise UserError("--resume needs --name NAME (the folder under --storage) or the --variant, "
                            "--dataset and --algo of the sweep")
        exp_dir = storage / (args.name or f"{args.variant}-{args.dataset or 'mnist'}-{args.algo}")
        if not (exp_dir / report.SETTINGS).is_file():
            raise UserError(f"--resume: nothing to resume, no search experiment in {exp_dir}")
        s = report.load_settings(exp_dir)
        from ray.tune import Tuner
        if not Tuner.can_restore(str(exp_dir)):
            raise UserError(f"--resume: {exp_dir} holds no Tune experiment state (it stopped before its "
                            "first trial); delete the folder and start the sweep again")
    else:
        _check_flags(args)
        _check_local_resources(args.gpus_per_trial, args.cpus_per_trial, args)
        s = _settings_new(args)
        name = args.name or f"{s['variant']}-{s['base']['data']['dataset']}-{s['algo']}"
        exp_dir = storage / name
        if exp_dir.exists() and any(exp_dir.iterdir()):
            raise UserError(f"experiment {exp_dir} exists: continue it with --resume --name {name}, "
                            "or choose another --name")
    _check_local_resources(s["gpus_per_trial"], s["cpus_per_trial"], args)

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # fit writes TensorBoard; no 2nd HParams
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0" if args.quiet else "1")
    _start_ray(args, s)
    import ray
    try:
        _tune(args, s, exp_dir, storage)
    finally:
        ray.shutdown()

    info = report.write_outputs(exp_dir)
    print(f"results: {exp_dir / 'results.csv'}  figure: {exp_dir / 'search.png'}")
    print(f"tensorboard --logdir {exp_dir}")
    if info is None:
        print("error: no trial produced a validation loss (see results.csv)", file=sys.stderr)
        return 1
    print(f"best {METRIC} {info['value']:.6g} (trial {info['trial']} of {info['trials']}, {info['statuses']}): "
          + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info["params"].items()))
    print(f"retrain: {info['retrain']}")
    return 0


def _tune(args, s: dict, exp_dir: Path, storage: Path) -> None:
    """Build the Tuner (or restore it) and run it to the end."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from ae_lightning import files
    from search.searchers import build_scheduler, build_searcher, trial_dirname
    from search import report
    from search.trainable import METRIC, train_trial

    if not fast_path():
        import search.ax_searcher  # noqa: F401  (the path before issue 14 imported Ax in every sweep)
    space = report.settings_space(s)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, base=s["base"], space=space, cv=s["cv"], cpus=s["cpus_per_trial"],
                             gpus=s["gpus_per_trial"]),
        {"cpu": s["cpus_per_trial"], "gpu": s["gpus_per_trial"]})
    if args.resume:
        print(f"resuming {exp_dir} (its own settings: {s['algo']}, {s['num_samples']} trials)", file=sys.stderr)
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    else:
        exp_dir.mkdir(parents=True, exist_ok=True)
        files.write_json(exp_dir / report.SETTINGS, s)
        print(f"search {exp_dir}: {s['algo']}, {s['num_samples']} trials x {s['max_epochs']} epochs; "
              f"{s['space']}", file=sys.stderr)
        tuner = tune.Tuner(
            trainable, param_space=space.to_tune(),
            tune_config=tune.TuneConfig(
                metric=METRIC, mode="min", num_samples=s["num_samples"],
                search_alg=build_searcher(s["algo"], space, s["seed"], s["init_trials"], s["max_concurrent"]),
                scheduler=build_scheduler(s["scheduler"], s["max_epochs"], s["grace_period"]),
                # random: BasicVariantGenerator limits itself (Tune's limiter takes Searchers only)
                max_concurrent_trials=s["max_concurrent"] if s["algo"] == "ax" else None,
                trial_dirname_creator=trial_dirname,
                trial_name_creator=trial_dirname, reuse_actors=True),
            run_config=tune.RunConfig(
                name=exp_dir.name, storage_path=str(storage), verbose=0 if args.quiet else 1,
                failure_config=tune.FailureConfig(max_failures=s["max_failures"]),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[JsonLoggerCallback(), CSVLoggerCallback()]))
    tuner.fit()


@cli
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"interrupted: continue with --resume --name {args.name or '<name>'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
