"""The search benchmark: Ax against random search at equal wall time, on one cheap, real task.

    python -m search.bench --out docs/search --storage runs/bench --resume      # the committed run
    python -m search.bench --smoke --out /tmp/bench                            # the pipeline in minutes

Each sweep is ``python -m search.tune`` itself (Ray Tune, the project's AxSearch, ``fit`` for
every trial), one trial at a time, ended by the same wall-clock budget (``--time-budget``): what a
user pays. Arms, at every seed:

- one objective (val_loss): ``random``, ``random+asha``, ``ax`` and ``ax+stop`` (Ax with its own
  early stopping, ``--scheduler ax``, its stopped trials fitted); ``ax+stop-abandon`` (the same,
  its stopped trials abandoned) measured beside them with ``--extra-arms``;
- two objectives (val_loss, model.latent_dim): ``ax`` and ``random``. Random search ignores the
  objectives, so its one-objective sweep at the same seed is its two-objective sweep too: the same
  trials, the front taken from them. Early stopping ranks by val_loss alone and is refused with
  two objectives (it would stop the small latent sizes that make the front).

The searches' settings are fixed once for every seed (``BenchSettings``). Outputs, in ``--out``:
bench.json (its part ``wall``: one row per seed and arm), bench.md and the figures; each sweep's
folder stays in ``--storage``, and ``--resume`` reuses every finished sweep (an interrupted one
starts again: a wall-clock budget cannot be split).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import sys
from pathlib import Path
from typing import Literal

from ae_lightning import files, flags
from ae_lightning.config import ROOT, cli, schema_of
from ae_lightning.errors import UserError
from ae_lightning.hints import NonNegInt, PosFloat, PosInt
from search import bench_report, report, tune
from search.objectives import Objective, hypervolume, reference_point
from search.pareto import bounds_of, front, objective_values
from search.report import load_settings, settings_space

ARMS = {  # arm -> (algo, extra search.tune flags) for one objective
    "random": ("random", []),
    "random+asha": ("random", ["--scheduler", "asha"]),
    "ax": ("ax", []),
    "ax+stop": ("ax", ["--scheduler", "ax", "--stopped-trials", "fit"]),
    "ax+stop-abandon": ("ax", ["--scheduler", "ax", "--stopped-trials", "abandon"]),
}
TWO = ["--objective", "val_loss", "--objective", "model.latent_dim"]
OBJECTIVES2 = [Objective("val_loss"), Objective("model.latent_dim")]
# the reference point of the benchmark run before this searcher (Ax 1.2's qLogNEHVI with the latent
# size modelled, 30 trials a sweep, seeds 0-4; docs/search.md): hypervolumes at 30 trials are
# compared with its figures on this point
EARLIER_REFERENCE = [0.7160294398665428, 70.2]


@dataclasses.dataclass
class BenchSettings:
    """The task and the searches' own settings: one set for every seed."""

    seeds: list[NonNegInt] = dataclasses.field(default_factory=lambda: [10, 11, 12, 13, 14])
    arms: list[str] = dataclasses.field(default_factory=lambda: ["random", "random+asha", "ax", "ax+stop"])
    # measured beside the arms, left out of the goals (the goals compare the arms fixed beforehand)
    extra_arms: list[str] = dataclasses.field(default_factory=list)
    budget_s: PosFloat = 200.0  # wall-clock seconds per sweep, every arm alike
    variant: str = "fc"
    dataset: Literal["mnist", "fashion_mnist"] = "fashion_mnist"
    subset: PosInt = 10000
    epochs: PosInt = 2
    init_trials: PosInt = 6  # Sobol trials before Ax's Bayesian step
    grace_period: PosInt = 1  # ASHA's and Ax's early stopping: epochs before a trial can be stopped
    space: str = "configs/search/bench.yaml"  # relative to the project


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version

    return (f"{cpu}, {os.cpu_count()} cores; python {platform.python_version()}, torch {version('torch')}, "
            f"ray {version('ray')}, ax-platform {version('ax-platform')}, botorch {version('botorch')}")


def sweeps(b: BenchSettings) -> list[dict]:
    """Every sweep: name, arm, objectives (1 or 2), seed and its search.tune flags."""
    out = []
    for seed in b.seeds:
        out += [{"name": f"one-{arm}-s{seed}", "arm": arm, "objectives": 1, "seed": seed, "algo": ARMS[arm][0],
                 "flags": ARMS[arm][1]} for arm in [*b.arms, *b.extra_arms]]
        out.append({"name": f"two-ax-s{seed}", "arm": "ax", "objectives": 2, "seed": seed, "algo": "ax", "flags": TWO})
    return out


def run_sweep(sw: dict, b: BenchSettings, storage: Path, data_dir: str | None, resume: bool) -> Path:
    """One sweep through ``search.tune``: skipped when finished; with ``resume``, an interrupted one
    starts again (a wall-clock budget cannot be split across two runs)."""
    exp = storage / sw["name"]
    if (exp / "best.json").is_file():
        return exp
    if exp.exists():
        if not resume:
            raise UserError(f"{exp} exists from an earlier call: use --resume, or another --storage")
        shutil.rmtree(exp)
    argv = ["--variant", b.variant, "--dataset", b.dataset, "--subset", str(b.subset),
            "--max-epochs", str(b.epochs), "--space", str(ROOT / b.space), "--algo", sw["algo"],
            "--num-samples", "10000", "--time-budget", f"{b.budget_s:g}", "--max-concurrent", "1",
            "--seed", str(sw["seed"]), "--grace-period", str(b.grace_period), "--name", sw["name"],
            "--storage", str(storage), "--quiet", "--num-cpus", "1", *sw["flags"]]
    if sw["algo"] == "ax":
        argv += ["--init-trials", str(b.init_trials)]
    if data_dir:
        argv += ["--data-dir", data_dir]
    print(f"bench: {sw['name']}: python -m search.tune {' '.join(argv)}", file=sys.stderr, flush=True)
    rc = tune.main(argv)
    if rc != 0 or not (exp / "best.json").is_file():
        raise UserError(f"bench: the sweep {sw['name']} failed (exit {rc}); see {exp}")
    return exp


def read_sweep(exp: Path) -> dict:
    """A finished sweep's trials in the order they finished, each with its end in seconds from the
    sweep's first trial start, and Ax's proposals."""
    rows, starts = report.collect(exp), []
    for r in rows:
        p = Path(r["trial_dir"]) / "result.json"
        lines = [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.is_file() else []
        r["_span"] = ((min(x["timestamp"] - x["time_total_s"] for x in lines), max(x["timestamp"] for x in lines))
                      if lines else None)
        starts += [r["_span"][0]] if lines else []
    t0 = min(starts) if starts else 0.0
    for r in rows:
        r["end_s"] = round(r.pop("_span")[1] - t0, 2) if r.get("_span") else None
    rows = [r for r in rows if r["end_s"] is not None]
    return {"rows": rows, "proposals": sorted(report.proposals(exp).values(), key=lambda p: p["ax_trial"])}


def _value(r: dict) -> float | None:
    v = r.get("best_val_loss")
    return v if r["status"] == "completed" and isinstance(v, (int, float)) and math.isfinite(v) else None


def curve(rows: list[dict], budget_s: float) -> list[tuple[float, float]]:
    """(seconds, best completed val_loss so far) at each improvement within the budget."""
    out, best = [], math.inf
    for r in rows:
        v = _value(r)
        if v is not None and v < best and r["end_s"] <= budget_s:
            best = v
            out.append((r["end_s"], v))
    return out


def best_within_epochs(rows: list[dict], epochs: int) -> float:
    """Best completed val_loss once the sweep had trained ``epochs`` epochs (its compute)."""
    best, spent = math.inf, 0
    for r in rows:
        spent += r["epochs"]
        if spent > epochs:
            break
        v = _value(r)
        best = min(best, v) if v is not None else best
    return best


def hv_curve(rows: list[dict], ref: list[float], budget_s: float) -> list[tuple[float, float]]:
    """(seconds, hypervolume of the completed trials' front) after each completed trial."""
    pts, out = [], []
    for r in rows:
        p = objective_values(r, OBJECTIVES2) if r["status"] == "completed" else None
        if p is not None and r["end_s"] <= budget_s:
            pts.append(p)
            out.append((r["end_s"], hypervolume(pts, OBJECTIVES2, ref)))
    return out


def _bayes_share(proposals: list[dict]) -> dict:
    """The latent sizes of Ax's Bayesian proposals: how many, and the share of the most chosen one."""
    sizes = [(p.get("fixed") or {}).get("model/latent_dim") for p in proposals if p["generator"] == "MBM"]
    sizes = [s for s in sizes if s is not None]
    top = max((sizes.count(s) for s in set(sizes)), default=0)
    return {"bayesian": len(sizes), "distinct": len(set(sizes)), "top_share": round(top / len(sizes), 3) if sizes else None}


def summarize(b: BenchSettings, runs: dict[str, dict]) -> dict:
    """bench.json's ``wall`` (one row per seed, arm and number of objectives), ``epochs`` (the
    same sweeps at equal compute), ``curves`` and ``goals``."""
    wall, curves, by_epochs = [], [], []
    for sw in sweeps(b):
        r = runs.get(sw["name"])
        if r is None or sw["objectives"] != 1:
            continue
        c = curve(r["rows"], b.budget_s)
        props = [p["wall_s"] for p in r["proposals"] if p["generator"] == "MBM"]
        wall.append({"seed": sw["seed"], "arm": sw["arm"], "objectives": 1, "budget_s": b.budget_s,
                     "final_best": c[-1][1] if c else None, "trials": len(r["rows"]),
                     "completed": sum(x["status"] == "completed" for x in r["rows"]),
                     "stopped": sum(x["status"] == "stopped" for x in r["rows"]),
                     "epochs": sum(x["epochs"] for x in r["rows"]),
                     "proposal_s_median": statistics.median(props) if props else None})
        curves.append({"seed": sw["seed"], "arm": sw["arm"], "objectives": 1, "curve": c})
    for seed in b.seeds:  # the same sweeps at equal compute: the fewest epochs any arm trained
        arms = [w for w in wall if w["seed"] == seed]
        if arms:
            e = min(w["epochs"] for w in arms)
            by_epochs += [{"seed": seed, "arm": w["arm"], "epochs": e,
                           "best": best_within_epochs(runs[f"one-{w['arm']}-s{seed}"]["rows"], e)} for w in arms]
    two = {(sw["seed"], arm): runs[name] for sw in sweeps(b) if sw["objectives"] == 2
           for arm, name in (("ax", sw["name"]), ("random", f"one-random-s{sw['seed']}")) if name in runs}
    if two:
        space = settings_space(load_settings(Path(next(iter(two.values()))["exp"])))
        pooled = [p for r in two.values() for p in (objective_values(x, OBJECTIVES2) for x in r["rows"]
                                                    if x["status"] == "completed") if p is not None]
        ref = reference_point(pooled, OBJECTIVES2, bounds_of(space))
        for (seed, arm), r in sorted(two.items()):
            c = hv_curve(r["rows"], ref, b.budget_s)
            done = [x for x in r["rows"] if x["status"] == "completed"]
            props = [p["wall_s"] for p in r["proposals"] if p["generator"] == "MBM"]
            first30 = [objective_values(x, OBJECTIVES2) for x in r["rows"][:30] if x["status"] == "completed"]
            wall.append({"seed": seed, "arm": arm, "objectives": 2, "budget_s": b.budget_s,
                         "hypervolume": c[-1][1] if c else 0.0, "reference_point": ref, "trials": len(r["rows"]),
                         "hypervolume_30_trials_earlier_reference": hypervolume([p for p in first30 if p is not None],
                                                                                OBJECTIVES2, EARLIER_REFERENCE),
                         "distinct_latent": len({x["model.latent_dim"] for x in done}),
                         "front": len(front(done, OBJECTIVES2, space)["rows"]),
                         "proposal_s_median": statistics.median(props) if props else None,
                         **({"latent_of_bayesian": _bayes_share(r["proposals"])} if arm == "ax" else {})})
            curves.append({"seed": seed, "arm": arm, "objectives": 2, "curve": c})
    return {"wall": wall, "epochs": by_epochs, "curves": curves,
            "goals": goals([w for w in wall if w["arm"] not in b.extra_arms]),
            "proposal_cost": proposal_cost(runs, b)}


def proposal_cost(runs: dict[str, dict], b: BenchSettings, n: int = 30, repeats: int = 3) -> list[dict]:
    """Ax's two-objective proposal at ``n`` observed trials, timed side by side on the same data
    (each seed's first ``n`` completed trials of its random and Ax sweeps): the latent size known
    (this project: a GP of val_loss, the latent size fixed at a level) and modelled (a GP of each
    objective, qLogNEHVI, as the searcher before did). Driver wall seconds, one thread, the
    median of ``repeats`` consecutive proposals."""
    import time

    from search.ax_searcher import KnownLevels, Quiet, ax_parameters, make_client
    from search.space import ax_name

    out = []
    for seed in b.seeds:
        names = [f"one-random-s{seed}", f"two-ax-s{seed}"]
        if not all(x in runs for x in names):
            continue
        rows = sorted((r for x in names for r in runs[x]["rows"] if _value(r) is not None), key=lambda r: r["end_s"])[:n]
        if len(rows) < n:
            continue
        space = settings_space(load_settings(Path(runs[names[1]]["exp"])))
        levels = KnownLevels(space, OBJECTIVES2)
        row = {"seed": seed, "trials": n}
        for how in ("known", "modelled"):
            with Quiet():
                if how == "known":
                    client = make_client(space, OBJECTIVES2, seed, 0)
                else:
                    from ax.api.client import Client

                    client = Client(random_seed=seed)
                    client.configure_experiment(parameters=ax_parameters(space))
                    client.configure_optimization(objective="-best_val_loss, -latent_dim")
                    client.configure_generation_strategy(method="fast", initialization_budget=0,
                                                         initialize_with_center=False)
                for r in rows:
                    real = {k: r[k] for k in space.params}
                    i = client.attach_trial(parameters={ax_name(k): v for k, v in space.encode(real).items()})
                    data = {"best_val_loss": float(r["best_val_loss"])}
                    if how == "modelled":
                        data["latent_dim"] = float(r["model.latent_dim"])
                    client.complete_trial(trial_index=i, raw_data=data)
                times = []
                for k in range(repeats):
                    t0 = time.perf_counter()
                    client.get_next_trials(max_trials=1, fixed_parameters=levels.fixed(2 + k) if how == "known" else None)
                    times.append(time.perf_counter() - t0)
            row[f"{how}_s"] = round(statistics.median(times), 3)
        out.append(row)
    return out


def goals(wall: list[dict]) -> dict:
    """The issue's three goals, each with its per-seed evidence: the best Ax arm (by median final
    best) against the best random arm, per seed."""
    one = [w for w in wall if w["objectives"] == 1 and w["final_best"] is not None]
    seeds = sorted({w["seed"] for w in one})

    def med(arm):
        vals = [w["final_best"] for w in one if w["arm"] == arm]
        return statistics.median(vals) if vals else math.inf
    arms = sorted({w["arm"] for w in one})
    best_ax = min((a for a in arms if a.startswith("ax")), key=med, default=None)
    best_rnd = min((a for a in arms if a.startswith("random")), key=med, default=None)
    at = {(w["seed"], w["arm"]): w["final_best"] for w in one}
    per_seed = [{"seed": s, "ax_arm": best_ax, "random_arm": best_rnd, "ax": at.get((s, best_ax)),
                 "random": at.get((s, best_rnd))} for s in seeds]
    wins = sum(1 for p in per_seed if p["ax"] is not None and p["random"] is not None and p["ax"] < p["random"])
    need = math.ceil(0.8 * len(per_seed))
    gap = (1 - med(best_ax) / med(best_rnd)) if best_ax and best_rnd else None
    two = [w for w in wall if w["objectives"] == 2]
    hv = {(w["seed"], w["arm"]): w["hypervolume"] for w in two}
    hv_rows = [{"seed": s, "ax": hv[(s, "ax")], "random": hv[(s, "random")],
                "ax_at_least_random": hv[(s, "ax")] >= hv[(s, "random")]}
               for s in sorted({s for s, _ in hv}) if (s, "ax") in hv and (s, "random") in hv]
    need_hv = math.ceil(0.8 * len(hv_rows))
    return {
        "final_best_below": {"per_seed": per_seed, "met": wins, "of": len(per_seed), "goal": f">= {need} of {len(per_seed)}",
                             "passed": bool(per_seed) and wins >= need},
        "median_gap": {"ax_arm": best_ax, "random_arm": best_rnd, "ax": med(best_ax) if best_ax else None,
                       "random": med(best_rnd) if best_rnd else None, "gap": gap, "goal": ">= 5 % below",
                       "passed": gap is not None and gap >= 0.05},
        "hypervolume": {"per_seed": hv_rows, "met": sum(h["ax_at_least_random"] for h in hv_rows), "of": len(hv_rows),
                        "goal": f">= {need_hv} of {len(hv_rows)}",
                        "passed": bool(hv_rows) and sum(h["ax_at_least_random"] for h in hv_rows) >= need_hv},
    }


def parser() -> flags.Parser:
    p = flags.Parser("python -m search.bench", __doc__)
    schema = schema_of(BenchSettings)
    p.add_argument("--out", default="docs/search", help="bench.json, bench.md and the figures (default docs/search)")
    p.add_argument("--storage", default="runs/bench", help="the sweeps' folders (default runs/bench)")
    p.add_argument("--data-dir", help="data folder (default: as train.py finds it)")
    p.add_argument("--resume", action="store_true", help="reuse finished sweeps, start an interrupted one again")
    p.add_argument("--report", action="store_true", help="write the outputs from the finished sweeps, run nothing")
    p.add_argument("--smoke", action="store_true", help="1 seed, 40 s sweeps of 1-epoch trials on 1,000 images")
    for f in dataclasses.fields(BenchSettings):
        p.add_argument(flags.flag_name(f.name), dest=f.name, hint=schema[f.name][0],
                       help=f"default {getattr(BenchSettings(), f.name)}")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(BenchSettings) if getattr(args, f.name) is not None}
    if args.smoke:
        values = {"seeds": [0], "budget_s": 40.0, "subset": 1000, "epochs": 1, "init_trials": 3,
                  "space": "configs/search/small.yaml", **values}  # 1,000 images: batch sizes up to 128
    b = BenchSettings(**values)
    if len(set(b.seeds)) != len(b.seeds):
        raise UserError(f"--seeds {b.seeds}: a seed is given twice")
    if any(a not in ARMS for a in [*b.arms, *b.extra_arms]) or "random" not in b.arms:
        raise UserError(f"--arms {','.join(b.arms)}: choose from {', '.join(ARMS)}, random among them "
                        "(the two-objective comparison reads its sweeps)")
    storage, out = Path(args.storage).resolve(), Path(args.out)
    command = "python -m search.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    if not args.report:
        for sw in sweeps(b):
            run_sweep(sw, b, storage, args.data_dir, args.resume)
    runs = {sw["name"]: {**read_sweep(storage / sw["name"]), "exp": str(storage / sw["name"])}
            for sw in sweeps(b) if (storage / sw["name"] / "best.json").is_file()}
    if not runs:
        raise UserError(f"no finished sweep in {storage}")
    result = {"settings": {"command": command, "machine": machine(), "date": datetime.date.today().isoformat(),
                           "task": dataclasses.asdict(b), "smoke": args.smoke}, **summarize(b, runs)}
    files.write_json(out / "bench.json", result)
    bench_report.write(out, result)
    g = result["goals"]
    below = g["final_best_below"]
    print(f"bench: {out / 'bench.md'}: final best below {below['met']}/{below['of']}, "
          f"median gap {g['median_gap']['gap']}, hypervolume {g['hypervolume']['met']}/{g['hypervolume']['of']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
