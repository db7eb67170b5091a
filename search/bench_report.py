"""The search benchmark's figures and bench.md, from bench.json's content (``search.bench``)."""
from __future__ import annotations

import io
import math
import statistics
from pathlib import Path

from ae_lightning import files

COLORS = {"ax": "C3", "ax+stop": "C1", "random": "C0", "random+asha": "C2"}


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    files.write_bytes(path, buf.getvalue())
    return path.name


def at(curve: list, t: float, empty: float) -> float:
    """A step curve [(seconds, value), ...] read at time t (``empty`` before its first point)."""
    out = empty
    for s, v in curve:
        if s > t:
            break
        out = v
    return out


def _band(ax, curves: list[list], budget: float, color: str, label: str, empty: float) -> None:
    """Median and min-max over seeds of step curves, on a grid of the budget."""
    grid = [budget * i / 200 for i in range(201)]
    cols = [[at(c, t, empty) for c in curves] for t in grid]
    keep = [i for i, col in enumerate(cols) if all(math.isfinite(v) for v in col)]
    xs = [grid[i] for i in keep]
    ax.fill_between(xs, [min(cols[i]) for i in keep], [max(cols[i]) for i in keep], color=color, alpha=0.15, step="post", lw=0)
    ax.step(xs, [statistics.median(cols[i]) for i in keep], where="post", color=color,
            label=f"{label} (median, min-max of {len(curves)} seeds)")


def figures(out: Path, r: dict) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = r["settings"]["task"]["budget_s"]
    names = []
    for k, ylabel, fname, empty, log in ((1, "best val_loss so far", "bench_wall_one.png", math.inf, True),
                                         (2, "hypervolume (val_loss, latent size)", "bench_wall_two.png", 0.0, False)):
        cs = [c for c in r["curves"] if c["objectives"] == k]
        if not cs:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for arm in sorted({c["arm"] for c in cs}):
            _band(ax, [c["curve"] for c in cs if c["arm"] == arm], budget, COLORS.get(arm, "C5"), arm, empty)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("wall time of the sweep (s)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{'one objective' if k == 1 else 'two objectives'}: every arm {budget:g} s a sweep", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        names.append(_save(fig, out / fname))
    return names


def _f(v, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}g}"


def _head(r: dict) -> list[str]:
    """The title, the settings every arm ran under and the goals table."""
    s, g, t = r["settings"], r["goals"], r["settings"]["task"]
    smoke = " (smoke run: not a result)" if s["smoke"] else ""
    return [f"# Search benchmark: Ax against random search at equal wall time{smoke}",
            "", f"- command: `{s['command']}`", f"- machine: {s['machine']}", f"- date: {s['date']}",
            f"- task: {t['variant']} on {t['dataset']}, {t['subset']} training images, {t['epochs']} epochs a trial, space "
            f"`{t['space']}`; each sweep {t['budget_s']:g} s of wall time, one trial at a time; seeds {t['seeds']}",
            f"- Ax: Sobol {t['init_trials']} trials, then Ax's BoTorch step (GP of val_loss, qLogNEI); with two objectives "
            "the latent size is known, not modelled: each Bayesian proposal fixes it at the next level of a sequence "
            "spread over its range. Early stopping (ASHA, Ax's percentile rule): from epoch "
            f"{t['grace_period']}." + (f" Measured beside the arms, not in the goals: {', '.join(t['extra_arms'])}."
                                        if t.get("extra_arms") else ""), "",
            "## Goals", "", "| goal | measured | passed |", "|---|---|---|",
            f"| best Ax arm's final best below the best random arm's, {g['final_best_below']['goal']} seeds | "
            f"{g['final_best_below']['met']} of {g['final_best_below']['of']} ({g['median_gap']['ax_arm']} against "
            f"{g['median_gap']['random_arm']}) | {g['final_best_below']['passed']} |",
            f"| its median final best >= 5 % below | {_f(g['median_gap']['ax'], 5)} against {_f(g['median_gap']['random'], 5)}"
            f" ({_f(100 * g['median_gap']['gap'] if g['median_gap']['gap'] is not None else None, 3)} %) | "
            f"{g['median_gap']['passed']} |",
            f"| Ax's final hypervolume >= random's, {g['hypervolume']['goal']} seeds | {g['hypervolume']['met']} of "
            f"{g['hypervolume']['of']} | {g['hypervolume']['passed']} |", ""]


def _two_objectives(two: list[dict], seeds: list) -> list[str]:
    """The two-objective section: each seed's hypervolume, front and latent sizes, random beside Ax."""
    lines = ["", "## Two objectives (val_loss, model.latent_dim): hypervolume at equal wall time", "",
             f"Reference point (pooled over every sweep): {[round(v, 4) for v in two[0]['reference_point']]}. "
             "Latent sizes: the distinct sizes among completed trials; for Ax, its Bayesian proposals and the share "
             "of them that the most chosen size took.", "",
             "| seed | random HV | Ax HV | random front / sizes | Ax front / sizes | Ax Bayesian proposals: "
             "most chosen size's share | Ax proposal s (median) | HV at 30 trials, earlier reference: random, Ax |",
             "|---|---|---|---|---|---|---|---|"]
    by2 = {(w["seed"], w["arm"]): w for w in two}
    for seed in seeds:
        a, rr = by2.get((seed, "ax")), by2.get((seed, "random"))
        if not a or not rr:
            continue
        share = a.get("latent_of_bayesian") or {}
        lines.append(f"| {seed} | {_f(rr['hypervolume'], 6)} | {_f(a['hypervolume'], 6)} | {rr['front']} / "
                     f"{rr['distinct_latent']} | {a['front']} / {a['distinct_latent']} | {share.get('bayesian', 0)}: "
                     f"{_f(share.get('top_share'), 3)} | {_f(a['proposal_s_median'], 3)} | "
                     f"{_f(rr['hypervolume_30_trials_earlier_reference'], 5)}, "
                     f"{_f(a['hypervolume_30_trials_earlier_reference'], 5)} |")
    return lines


def _proposal_cost(cost: list[dict]) -> list[str]:
    """The side-by-side cost of a two-objective proposal, the latent size known against modelled."""
    return ["", "## Two-objective proposal cost, side by side", "",
            f"At {cost[0]['trials']} observed trials (each seed's first completed trials of its random and Ax "
            "sweeps), the same data given to two Ax clients: the latent size known (a GP of val_loss, the size "
            "fixed at a level: this project) and modelled (a GP of each objective, qLogNEHVI: the searcher "
            "before). Driver wall seconds, one thread, median of 3 consecutive proposals.", "",
            "| seed | known | modelled |", "|---|---|---|",
            *[f"| {c['seed']} | {c['known_s']} | {c['modelled_s']} |" for c in cost],
            f"| median | {_f(statistics.median(c['known_s'] for c in cost), 3)} | "
            f"{_f(statistics.median(c['modelled_s'] for c in cost), 3)} |"]


def markdown(r: dict, figs: list[str]) -> str:
    t = r["settings"]["task"]
    one = [w for w in r["wall"] if w["objectives"] == 1]
    two = [w for w in r["wall"] if w["objectives"] == 2]
    arms = sorted({w["arm"] for w in one})
    lines = _head(r) + ["## One objective (val_loss): final best at equal wall time", "",
                        "| seed | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    at_ = {(w["seed"], w["arm"]): w for w in one}
    for seed in t["seeds"]:
        cells = [at_.get((seed, a)) for a in arms]
        lines.append(f"| {seed} | " + " | ".join(
            f"{_f(c['final_best'], 5)} ({c['completed']} done, {c['stopped']} stopped)" if c else "-" for c in cells) + " |")
    lines.append("| median | " + " | ".join(_f(statistics.median([w["final_best"] for w in one if w["arm"] == a
                                                                     and w["final_best"] is not None] or [math.nan]), 5)
                                             for a in arms) + " |")
    if r["epochs"]:
        lines += ["", "## The same sweeps at equal compute (epochs)", "",
                  "Each arm's best after the fewest epochs any arm of that seed trained in the budget.", "",
                  "| seed | epochs | " + " | ".join(arms) + " |", "|---|---|" + "---|" * len(arms)]
        by = {(e["seed"], e["arm"]): e for e in r["epochs"]}
        for seed in t["seeds"]:
            row = [by.get((seed, a)) for a in arms]
            if any(row):
                lines.append(f"| {seed} | {next(x for x in row if x)['epochs']} | " +
                             " | ".join(_f(x["best"], 5) if x else "-" for x in row) + " |")
    if two:
        lines += _two_objectives(two, t["seeds"])
    props = [w["proposal_s_median"] for w in one if w["arm"].startswith("ax") and w["proposal_s_median"] is not None]
    if props:
        lines += ["", "Ax's Bayesian proposals, one objective: median of the sweeps' medians "
                  f"{_f(statistics.median(props), 3)} s of the driver's wall time."]
    if r.get("proposal_cost"):
        lines += _proposal_cost(r["proposal_cost"])
    lines += ["", "## Figures", ""] + [f"![{n}]({n})" for n in figs]
    return "\n".join(lines) + "\n"


def write(out: Path, result: dict) -> None:
    figs = figures(out, result)
    files.write_text(out / "bench.md", markdown(result, figs))
