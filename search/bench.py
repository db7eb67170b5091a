"""The search benchmark: Ax against random search on one cheap, real task, over several seeds.

    python -m search.bench --out docs/search --storage runs/bench --resume      # the committed run
    python -m search.bench --smoke --out /tmp/bench                            # the pipeline in a minute

Each sweep is ``python -m search.tune`` itself (Ray Tune, the project's AxSearch, ``fit`` for
every trial), one trial at a time, so that both searches see every result before their next
proposal and the comparison is trial for trial:

- ``single``: the objective val_loss; Ax and random search, ``--trials`` trials, each seed;
- ``multi``: the objectives val_loss and model.latent_dim; Ax at each seed. Random search ignores
  the objectives, so its ``single`` sweep at the same seed is its multi-objective sweep too: the
  same trials, the front taken from them;
- ``asha``: Ax + ASHA and random + ASHA with the compute of ``single``'s full sweeps
  (``--epoch-budget trials x epochs``: equal training time on any machine), beside Ax alone;
- ``acquisition``: what the cut acquisition optimisation gives up, replayed on ``single``'s Ax
  sweeps (search/bench_acquisition.py).

The searches' own settings are chosen once, for every seed alike (``BenchSettings``). Outputs, in
``--out``: bench.json, bench.md and the figures; each sweep's folder stays in ``--storage``.
``--resume`` reuses every finished sweep and continues an interrupted one.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Literal

from ae_lightning import files
from ae_lightning.config import ROOT, cli, coerce, parse_value, schema_of
from ae_lightning.errors import UserError
from ae_lightning.hints import NonNegInt, PosInt
from search import bench_acquisition, bench_report, report, tune
from search.objectives import Objective, hypervolume, hypervolume_by_trial, reference_point
from search.pareto import bounds_of, front, objective_values
from search.report import load_settings, settings_space

PARTS = ("single", "multi", "asha", "acquisition")
ACQUISITION = "acquisition.json"  # in --storage: the replays of search.bench_acquisition


@dataclasses.dataclass
class BenchSettings:
    """The task and the searches' own settings: one set for every seed."""

    seeds: list[NonNegInt] = dataclasses.field(default_factory=lambda: [0, 1, 2, 3, 4])
    trials: PosInt = 30
    variant: str = "fc"
    dataset: Literal["mnist", "fashion_mnist"] = "fashion_mnist"
    subset: PosInt = 10000
    epochs: PosInt = 2
    init_trials: PosInt = 8  # Sobol: twice the searched keys (Ax's own rule gives the same)
    num_restarts: PosInt = 4  # acquisition optimisation, cut from Ax's 20 / 1024 (bench.md: the cost)
    raw_samples: PosInt = 128
    asha_seeds: list[NonNegInt] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    # the searched space (relative to the project); a toy run on a few hundred images narrows its
    # batch sizes (search.tune refuses a batch size above the --subset training split)
    space: str = "configs/search/bench.yaml"


def _checked(values: dict) -> BenchSettings:
    schema = schema_of(BenchSettings)
    return BenchSettings(**{k: coerce(f"--{k.replace('_', '-')}", v, schema[k][0]) for k, v in values.items()})


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version

    import ray
    import torch

    return (f"{cpu}, {os.cpu_count()} cores; python {platform.python_version()}, torch {torch.__version__}, "
            f"ray {ray.__version__}, ax-platform {version('ax-platform')}, botorch {version('botorch')}")


def sweeps(b: BenchSettings, parts: tuple[str, ...]) -> list[dict]:
    """Every sweep of the benchmark: name, part, algo, seed and the search.tune flags."""
    out = []
    for seed in b.seeds:
        if "single" in parts or "multi" in parts:  # multi reads random's single sweep
            out += [{"name": f"single-{a}-s{seed}", "part": "single", "algo": a, "seed": seed, "flags": []}
                    for a in ("ax", "random") if "single" in parts or a == "random"]
        if "multi" in parts:
            out.append({"name": f"multi-ax-s{seed}", "part": "multi", "algo": "ax", "seed": seed,
                        "flags": ["--objective", "val_loss", "--objective", "model.latent_dim"]})
    if "asha" in parts:
        for seed in b.asha_seeds:
            out += [{"name": f"asha-{a}-s{seed}", "part": "asha", "algo": a, "seed": seed,
                     "flags": ["--scheduler", "asha", "--num-samples", str(4 * b.trials),
                               "--epoch-budget", str(b.trials * b.epochs)]} for a in ("ax", "random")]
    return out  # asha compares with single's Ax sweeps at the same seeds


def run_sweep(sw: dict, b: BenchSettings, storage: Path, data_dir: str | None, resume: bool) -> Path:
    """One sweep through ``search.tune``: skipped when finished, continued when interrupted."""
    exp = storage / sw["name"]
    if (exp / "best.json").is_file():
        return exp
    if resume and (exp / "search.json").is_file():
        argv = ["--resume", "--name", sw["name"], "--storage", str(storage), "--quiet"]
    else:
        if exp.exists():
            raise UserError(f"{exp} exists from an earlier call: use --resume, or another --storage")
        argv = ["--variant", b.variant, "--dataset", b.dataset, "--subset", str(b.subset),
                "--max-epochs", str(b.epochs), "--space", str(ROOT / b.space), "--algo", sw["algo"],
                "--num-samples", str(b.trials), "--max-concurrent", "1", "--seed", str(sw["seed"]),
                "--name", sw["name"], "--storage", str(storage), "--quiet", "--num-cpus", "1"]
        if sw["algo"] == "ax":
            argv += ["--init-trials", str(b.init_trials), "--num-restarts", str(b.num_restarts),
                     "--raw-samples", str(b.raw_samples)]
        if data_dir:
            argv += ["--data-dir", data_dir]
        argv = _merge_flags(argv, sw["flags"])
    print(f"bench: {sw['name']}: python -m search.tune {' '.join(argv)}", file=sys.stderr, flush=True)
    rc = tune.main(argv)
    if rc != 0 or not (exp / "best.json").is_file():
        raise UserError(f"bench: the sweep {sw['name']} failed (exit {rc}); see {exp}")
    return exp


def _merge_flags(argv: list[str], extra: list[str]) -> list[str]:
    """``argv`` with the flags of ``extra`` (a later value replaces an earlier one; --objective adds)."""
    out = list(argv)
    for i in range(0, len(extra), 2):
        flag, value = extra[i], extra[i + 1]
        if flag != "--objective" and flag in out:
            out[out.index(flag) + 1] = value
        else:
            out += [flag, value]
    return out


def read_sweep(exp: Path) -> dict:
    """A finished sweep's trials (in the order they finished), Ax's proposal times and wall time."""
    rows = report.collect(exp)
    times = []
    for r in rows:
        p = Path(r["trial_dir"]) / "result.json"
        if p.is_file():
            lines = [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
            if not lines:  # a trial the sweep's end stopped before its first result
                continue
            times.append((min(x["timestamp"] - x["time_total_s"] for x in lines), max(x["timestamp"] for x in lines)))
    wall = (max(t for _, t in times) - min(t for t, _ in times)) if times else 0.0
    by_id = report.proposals(exp)
    return {"rows": rows, "wall_s": round(wall, 1), "proposals": sorted(by_id.values(), key=lambda p: p["ax_trial"])}


def best_so_far(rows: list[dict]) -> list[float]:
    """Best completed val_loss after trials 1..N (inf until one completes)."""
    out, best = [], math.inf
    for r in rows:
        v = r.get("best_val_loss")
        if r["status"] == "completed" and isinstance(v, (int, float)) and math.isfinite(v):
            best = min(best, v)
        out.append(best)
    return out


def _points(rows: list[dict], objectives: list[Objective]) -> list[tuple[float, ...] | None]:
    return [objective_values(r, objectives) for r in rows]


def summarize(b: BenchSettings, runs: dict[str, dict]) -> dict:
    """bench.json's ``single``, ``multi``, ``asha`` and ``goals`` from the sweeps read back."""
    single = []
    for name, r in runs.items():
        if name.startswith("single-"):
            _, algo, s = name.split("-")
            single.append({"seed": int(s[1:]), "algo": algo, "curve": best_so_far(r["rows"])[: b.trials],
                           "trials": len(r["rows"]), "wall_s": r["wall_s"],
                           "proposal_s": [p["wall_s"] for p in r["proposals"]],
                           "proposal_cpu_s": [p["cpu_s"] for p in r["proposals"]],
                           "generators": [p["generator"] for p in r["proposals"]],
                           "statuses": _statuses(r["rows"])})
    objectives = [Objective("val_loss"), Objective("model.latent_dim")]
    multi_src = {(int(n.split("-s")[-1]), "ax" if n.startswith("multi-ax") else "random"): r for n, r in runs.items()
                 if n.startswith("multi-ax") or n.startswith("single-random")}
    multi = []
    if any(k[1] == "ax" for k in multi_src):
        space = settings_space(load_settings(Path(next(iter(runs.values()))["exp"])))
        pooled = [p for r in multi_src.values() for p in _points(r["rows"][: b.trials], objectives) if p is not None]
        ref = reference_point(pooled, objectives, bounds_of(space))
        for (seed, algo), r in sorted(multi_src.items()):
            rows = r["rows"][: b.trials]
            pts = _points(rows, objectives)
            f = front(rows, objectives, space)
            multi.append({"seed": seed, "algo": algo, "reference_point": ref,
                          "hypervolume": hypervolume([p for p in pts if p is not None], objectives, ref),
                          "hypervolume_by_trial": hypervolume_by_trial(pts, objectives, ref),
                          "front": [{"trial_id": x["trial_id"], "val_loss": x["best_val_loss"],
                                     "model.latent_dim": x["model.latent_dim"]} for x in f["rows"]],
                          "proposal_s": [p["wall_s"] for p in r["proposals"]] if algo == "ax" else [],
                          "wall_s": r["wall_s"]})
    asha = []
    for name, r in runs.items():
        if name.startswith("asha-"):
            _, algo, s = name.split("-")
            cum = [sum(x["epochs"] for x in r["rows"][: i + 1]) for i in range(len(r["rows"]))]
            asha.append({"seed": int(s[1:]), "algo": f"{algo}+asha", "curve": best_so_far(r["rows"]),
                         "epochs_by_trial": cum,
                         "trials": len(r["rows"]), "epochs": sum(x["epochs"] for x in r["rows"]),
                         "statuses": _statuses(r["rows"]), "wall_s": r["wall_s"], "final": min(best_so_far(r["rows"]))})
    return {"single": sorted(single, key=lambda x: (x["algo"], x["seed"])),
            "multi": multi, "asha": sorted(asha, key=lambda x: (x["algo"], x["seed"])),
            "goals": goals(b, single, multi)}


def _statuses(rows: list[dict]) -> dict[str, int]:
    return {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})}


def goals(b: BenchSettings, single: list[dict], multi: list[dict]) -> dict:
    """The issue's three goals, each with its per-seed evidence."""
    by = {(x["algo"], x["seed"]): x for x in single}
    seeds = sorted({s for a, s in by if (("ax", s) in by and ("random", s) in by)})
    half = []
    for s in seeds:
        target = by[("random", s)]["curve"][-1]
        reach = next((i + 1 for i, v in enumerate(by[("ax", s)]["curve"]) if v <= target), None)
        half.append({"seed": s, "random_final": target, "ax_reaches_it_at_trial": reach,
                     "within_half": reach is not None and reach <= b.trials // 2})
    finals = {a: [by[(a, s)]["curve"][-1] for s in seeds] for a in ("ax", "random")}
    hv = {(x["algo"], x["seed"]): x["hypervolume"] for x in multi}
    hv_seeds = sorted({s for a, s in hv if ("ax", s) in hv and ("random", s) in hv})
    hv_rows = [{"seed": s, "ax": hv[("ax", s)], "random": hv[("random", s)],
                "ax_at_least_random": hv[("ax", s)] >= hv[("random", s)]} for s in hv_seeds]
    need = math.ceil(0.8 * len(seeds)) if seeds else 0
    return {
        "reach_within_half": {"per_seed": half, "met": sum(h["within_half"] for h in half),
                              "of": len(half), "goal": f">= {need} of {len(half)}",
                              "passed": bool(half) and sum(h["within_half"] for h in half) >= need},
        "median_final": {"ax": statistics.median(finals["ax"]) if seeds else None,
                         "random": statistics.median(finals["random"]) if seeds else None,
                         "passed": bool(seeds) and statistics.median(finals["ax"]) < statistics.median(finals["random"])},
        "hypervolume": {"per_seed": hv_rows, "met": sum(h["ax_at_least_random"] for h in hv_rows), "of": len(hv_rows),
                        "goal": f">= {math.ceil(0.8 * len(hv_rows))} of {len(hv_rows)}",
                        "passed": bool(hv_rows) and sum(h["ax_at_least_random"] for h in hv_rows)
                        >= math.ceil(0.8 * len(hv_rows))},
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/search", help="bench.json, bench.md and the figures (default docs/search)")
    p.add_argument("--storage", default="runs/bench", help="the sweeps' folders (default runs/bench)")
    p.add_argument("--data-dir", help="data folder (default: as train.py finds it)")
    p.add_argument("--only", action="append", default=[], help=f"run only these parts ({', '.join(PARTS)}); repeatable")
    p.add_argument("--resume", action="store_true", help="reuse finished sweeps, continue an interrupted one")
    p.add_argument("--report", action="store_true", help="write the outputs from the finished sweeps, run nothing")
    p.add_argument("--smoke", action="store_true", help="2 seeds, 10 trials of 1 epoch on 1,000 images")
    for f in dataclasses.fields(BenchSettings):
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, help=f"default {getattr(BenchSettings(), f.name)}")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    bad = [x for x in args.only if x not in PARTS]
    if bad:
        raise UserError(f"--only {bad[0]}: choose from {', '.join(PARTS)}")
    values = {f.name: parse_value(getattr(args, f.name)) for f in dataclasses.fields(BenchSettings)
              if getattr(args, f.name) is not None}
    for k in ("seeds", "asha_seeds"):
        if isinstance(values.get(k), int):
            values[k] = [values[k]]
        elif isinstance(values.get(k), str):
            values[k] = [parse_value(x) for x in values[k].split(",")]
    if args.smoke:
        values = {"seeds": [0, 1], "asha_seeds": [0], "trials": 10, "subset": 1000, "epochs": 1, "init_trials": 4,
                  "space": "configs/search/small.yaml", **values}  # 1,000 images: batch sizes up to 128
    b = _checked(values)
    if len(set(b.seeds)) != len(b.seeds):
        raise UserError(f"--seeds {b.seeds}: a seed is given twice")
    parts = tuple(args.only) or PARTS
    storage, out = Path(args.storage).resolve(), Path(args.out)
    command = "python -m search.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    if not args.report:
        for sw in sweeps(b, tuple(p for p in parts if p != "acquisition")):
            run_sweep(sw, b, storage, args.data_dir, args.resume)
    if "acquisition" in parts and not args.report:
        exps = {s: storage / f"single-ax-s{s}" for s in b.seeds if (storage / f"single-ax-s{s}" / "best.json").is_file()}
        files.write_json(storage / ACQUISITION, bench_acquisition.measure(exps, (b.num_restarts, b.raw_samples)))
    runs = {}  # every finished sweep of the benchmark, whichever call ran it (parts may run side by side)
    for sw in sweeps(b, PARTS):
        exp = storage / sw["name"]
        if (exp / "best.json").is_file():
            runs[sw["name"]] = {**read_sweep(exp), "exp": str(exp)}
    if not runs:
        raise UserError(f"no finished sweep in {storage}")
    result = {"settings": {"command": command, "machine": machine(), "date": datetime.date.today().isoformat(),
                           "task": dataclasses.asdict(b), "space": b.space,
                           "smoke": args.smoke},
              **summarize(b, runs),
              "acquisition": json.loads((storage / ACQUISITION).read_text()) if (storage / ACQUISITION).is_file()
              else None}
    files.write_json(out / "bench.json", result)
    bench_report.write(out, result)
    g = result["goals"]
    print(f"bench: {out / 'bench.md'}: reach within half {g['reach_within_half']['met']}/"
          f"{g['reach_within_half']['of']}, median final ax {g['median_final']['ax']} vs random "
          f"{g['median_final']['random']}, hypervolume {g['hypervolume']['met']}/{g['hypervolume']['of']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
