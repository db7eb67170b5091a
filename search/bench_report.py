"""The search benchmark's figures and bench.md, from bench.json's content (``search.bench``)."""
from __future__ import annotations

import io
import math
import statistics
from pathlib import Path

from ae_lightning import files

COLORS = {"ax": "C3", "random": "C0", "ax+asha": "C1", "random+asha": "C2"}


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    files.write_bytes(path, buf.getvalue())
    return path.name


def _band(ax, curves: list[list[float]], color: str, label: str, x: list[list[float]] | None = None) -> None:
    """Median with a min-max band of curves of equal length (non-finite values left out)."""
    n = min(len(c) for c in curves)
    xs = list(range(1, n + 1))
    cols = [[c[i] for c in curves if math.isfinite(c[i])] for i in range(n)]
    keep = [i for i in range(n) if cols[i]]
    med = [statistics.median(cols[i]) for i in keep]
    ax.fill_between([xs[i] for i in keep], [min(cols[i]) for i in keep], [max(cols[i]) for i in keep],
                    color=color, alpha=0.18, step="post", lw=0)
    ax.step([xs[i] for i in keep], med, where="post", color=color, label=f"{label} (median, min-max of {len(curves)})")


def _axes(ax, xlabel: str, ylabel: str, title: str, log: bool = False) -> None:
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def figures(out: Path, r: dict) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    single = r["single"]
    if single:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for algo in ("ax", "random"):
            curves = [x["curve"] for x in single if x["algo"] == algo]
            if curves:
                _band(ax, curves, COLORS[algo], algo)
        _axes(ax, "trial", "best val_loss so far", "single objective: best-so-far over seeds", log=True)
        names.append(_save(fig, out / "bench_single.png"))
    multi = r["multi"]
    if multi:
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
        for x in multi:
            pts = sorted((p["val_loss"], p["model.latent_dim"]) for p in x["front"])
            if pts:
                a.step(*zip(*pts), where="post", color=COLORS[x["algo"]], alpha=0.7,
                       label=x["algo"] if x["seed"] == min(m["seed"] for m in multi) else None)
                a.scatter(*zip(*pts), s=12, color=COLORS[x["algo"]], alpha=0.7)
        a.set_xscale("log")
        a.set_yscale("log", base=2)
        a.set_xlabel("val_loss")
        a.set_ylabel("model.latent_dim")
        a.set_title("fronts, every seed", fontsize=10)
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=8)
        for algo in ("ax", "random"):
            curves = [x["hypervolume_by_trial"] for x in multi if x["algo"] == algo]
            if curves:
                _band(b, curves, COLORS[algo], algo)
        _axes(b, "trial", "hypervolume", f"hypervolume by trial (reference {multi[0]['reference_point'][0]:.4g}, "
              f"{multi[0]['reference_point'][1]:.4g})")
        names.append(_save(fig, out / "bench_multi.png"))
    prop = [(x, "single") for x in single if x["algo"] == "ax"] + [(x, "multi") for x in multi if x["algo"] == "ax"]
    if prop:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for part, color in (("single", "C3"), ("multi", "C4")):
            curves = [x["proposal_s"] for x, p in prop if p == part and x["proposal_s"]]
            if curves:
                _band(ax, curves, color, f"Ax, {part} objective")
        _axes(ax, "trial", "driver's proposal time (s, wall)", "Ax's proposal time per trial")
        names.append(_save(fig, out / "bench_proposal_time.png"))
    asha = r["asha"]
    if asha:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        alone = [x for x in single if x["algo"] == "ax" and x["seed"] in {a["seed"] for a in asha}]
        for x in alone:
            epochs = r["settings"]["task"]["epochs"]
            ax.step([epochs * (i + 1) for i in range(len(x["curve"]))], x["curve"], where="post", color=COLORS["ax"],
                    alpha=0.8, label="ax alone" if x is alone[0] else None)
        for algo in ("ax+asha", "random+asha"):
            runs = [x for x in asha if x["algo"] == algo]
            for x in runs:
                ax.step(x["epochs_by_trial"], x["curve"], where="post", color=COLORS[algo], alpha=0.8,
                        label=algo if x is runs[0] else None)
        _axes(ax, "epochs trained by the sweep (its compute)", "best val_loss so far", "ASHA at equal compute", log=True)
        names.append(_save(fig, out / "bench_asha.png"))
    return names


def _f(v, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}g}"


def markdown(r: dict, figs: list[str]) -> str:
    s, g = r["settings"], r["goals"]
    t = s["task"]
    lines = [f"# Search benchmark: Ax against random search{' (smoke run: not a result)' if s['smoke'] else ''}", "",
             f"- command: `{s['command']}`", f"- machine: {s['machine']}", f"- date: {s['date']}",
             f"- task: {t['variant']} on {t['dataset']}, {t['subset']} training images, {t['epochs']} epochs a trial, "
             f"space `{s['space']}`; {t['trials']} trials a sweep, one at a time; seeds {t['seeds']}",
             f"- Ax: Sobol {t['init_trials']} trials, then BoTorch (qLogNEI; qLogNEHVI with two objectives, "
             f"thresholds inferred), acquisition {t['num_restarts']} restarts / {t['raw_samples']} raw samples", "",
             "## Goals", "", "| goal | measured | passed |", "|---|---|---|",
             f"| Ax reaches random's final best within half the trials, >= 4 of 5 seeds | "
             f"{g['reach_within_half']['met']} of {g['reach_within_half']['of']} | {g['reach_within_half']['passed']} |",
             f"| Ax's median final best below random's | {_f(g['median_final']['ax'], 5)} vs "
             f"{_f(g['median_final']['random'], 5)} | {g['median_final']['passed']} |",
             f"| Ax's final hypervolume >= random's, >= 4 of 5 seeds | {g['hypervolume']['met']} of "
             f"{g['hypervolume']['of']} | {g['hypervolume']['passed']} |", "",
             "## Single objective (val_loss)", "",
             "| seed | random final | Ax final | Ax reaches random's final at trial | Ax wall s | random wall s |",
             "|---|---|---|---|---|---|"]
    by = {(x["algo"], x["seed"]): x for x in r["single"]}
    for h in g["reach_within_half"]["per_seed"]:
        lines.append(f"| {h['seed']} | {_f(h['random_final'], 5)} | {_f(by[('ax', h['seed'])]['curve'][-1], 5)} | "
                     f"{h['ax_reaches_it_at_trial'] or 'never'} | {by[('ax', h['seed'])]['wall_s']} | "
                     f"{by[('random', h['seed'])]['wall_s']} |")
    if r["multi"]:
        lines += ["", "## Two objectives (val_loss, model.latent_dim)", "",
                  f"Reference point (pooled over every sweep): {r['multi'][0]['reference_point']}.", "",
                  "| seed | random hypervolume | Ax hypervolume | random front | Ax front |", "|---|---|---|---|---|"]
        for h in g["hypervolume"]["per_seed"]:
            fr = {x["algo"]: x for x in r["multi"] if x["seed"] == h["seed"]}
            lines.append(f"| {h['seed']} | {_f(h['random'], 5)} | {_f(h['ax'], 5)} | {len(fr['random']['front'])} points | "
                         f"{len(fr['ax']['front'])} points |")
    props = [x for x in r["single"] if x["algo"] == "ax"] + [x for x in r["multi"] if x["algo"] == "ax"]
    if props:
        lines += ["", "## Ax's proposal time (driver, wall seconds per trial)", "",
                  "| sweeps | Sobol trials | BoTorch trials, median | BoTorch, max | total per sweep, median |",
                  "|---|---|---|---|---|"]
        for label, xs in (("single", [x for x in r["single"] if x["algo"] == "ax"]),
                          ("multi", [x for x in r["multi"] if x["algo"] == "ax"])):
            if not xs:
                continue
            n0 = t["init_trials"]
            bo = [v for x in xs for v in x["proposal_s"][n0:]]
            lines.append(f"| {label} | {_f(statistics.median([v for x in xs for v in x['proposal_s'][:n0]] or [0]), 2)} | "
                         f"{_f(statistics.median(bo) if bo else None, 3)} | {_f(max(bo) if bo else None, 3)} | "
                         f"{_f(statistics.median([sum(x['proposal_s']) for x in xs]), 4)} |")
    if r["asha"]:
        lines += ["", "## ASHA at equal compute", "",
                  f"Each ASHA sweep trains {t['trials'] * t['epochs']} epochs in all, the compute of a {t['trials']}-trial "
                  "sweep without it. Ax is told a stopped trial was abandoned (search/ax_searcher.py).", "",
                  "| seed | Ax alone final | Ax + ASHA final (trials, stopped) | random + ASHA final (trials, stopped) |",
                  "|---|---|---|---|"]
        for seed in sorted({x["seed"] for x in r["asha"]}):
            a = {x["algo"]: x for x in r["asha"] if x["seed"] == seed}
            alone = by.get(("ax", seed))

            def cell(x):
                return f"{_f(x['final'], 5)} ({x['trials']}, {x['statuses'].get('stopped', 0)})" if x else "-"
            lines.append(f"| {seed} | {_f(alone['curve'][-1], 5) if alone else '-'} | {cell(a.get('ax+asha'))} | "
                         f"{cell(a.get('random+asha'))} |")
    acq = r.get("acquisition")
    if acq and acq["replays"]:
        full, cut = acq["full"], acq["cut"]
        lines += ["", "## The acquisition cut", "",
                  f"Each single-objective Ax sweep replayed at 10, 20 and 29 observed trials; one proposal with Ax's "
                  f"{full['num_restarts']} restarts / {full['raw_samples']} raw samples and one with the benchmark's "
                  f"{cut['num_restarts']} / {cut['raw_samples']}, same data and seed (search/bench_acquisition.py). "
                  "The ratio is the cut's expected improvement over the full setting's (qLogNEI values are logs).", "",
                  "| seed | trials | full: s | cut: s | EI ratio cut / full |", "|---|---|---|---|---|"]
        for x in acq["replays"]:
            ratio = math.exp(x["difference"]) if x["difference"] is not None else None
            lines.append(f"| {x['seed']} | {x['trials']} | {x['full']['wall_s']} | {x['cut']['wall_s']} | {_f(ratio, 3)} |")
        med = acq["median_difference"]
        lines += ["", f"Median time {_f(acq['median_wall_s']['full'], 3)} s against {_f(acq['median_wall_s']['cut'], 3)} s; "
                  f"median EI ratio {_f(math.exp(med), 3) if med is not None else '-'}, worst "
                  f"{_f(math.exp(acq['worst_difference']), 3) if acq['worst_difference'] is not None else '-'}."]
    lines += ["", "## Figures", ""] + [f"![{n}]({n})" for n in figs]
    return "\n".join(lines) + "\n"


def write(out: Path, result: dict) -> None:
    figs = figures(out, result)
    files.write_text(out / "bench.md", markdown(result, figs))
