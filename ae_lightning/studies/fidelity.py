"""Fidelity rows: a preset's figures read from its entries' results, over seeds, judged against the original's.

A row's ``ours`` is a path into the results (``compression.by_latent.8.test.nrmse``). Read at every
seed the entry ran at (``seeds``, ``values``, in the seeds' order), ``ours`` is their median, or for
an ``order`` row (a ranking, a yes/no) the value most seeds agree on, if more than half do.
``matched`` judges ``ours`` alone. A preset's ``findings`` (row id -> ``{cause, alternative,
command}``) put the measured cause of a miss beside the row; a finding never changes ``matched``.
A smoke run's rows (the preset from ``reproduce.smoke_preset``) are never judged: ``matched`` is false,
``smoke`` true, and ``our_epochs`` the epochs they ran (capped at the smoke epochs).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ae_lightning import dotted, files
from ae_lightning.errors import UserError

GOALS = ("lower", "higher", "order", "within")
FINDING_KEYS = {"cause", "alternative", "command"}


# -- reading and judging ---------------------------------------------------------------------------
def lookup(results: dict, path: str) -> Any:
    """``entry.key.key``: dict keys as written or as ints (results read back have string keys);
    list positions as integers, negative from the end."""
    node: Any = results
    for key in dotted.split(path):
        if isinstance(node, dict):
            for cand in (key, _int(key), str(key)):
                if cand is not None and cand in node:
                    node = node[cand]
                    break
            else:
                return None
        elif isinstance(node, list) and _int(key) is not None and -len(node) <= _int(key) < len(node):
            node = node[_int(key)]
        else:
            return None
    return node


def _int(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def judge(goal: str, ours: Any, reference: Any, tolerance: float | None = None) -> bool:
    if ours is None or (isinstance(ours, float) and not math.isfinite(ours)):
        return False
    if goal == "order":
        return ours == reference
    if not isinstance(ours, (int, float)):
        return False
    if goal == "lower":
        return ours <= reference
    if goal == "higher":
        return ours >= reference
    return abs(ours - reference) <= tolerance


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def median(values: list[Any]) -> float | None:
    """The median of the seeds' values; None unless every seed gave a finite number."""
    if not values or not all(_number(v) for v in values):
        return None
    s = sorted(float(v) for v in values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def majority(values: list[Any]) -> Any:
    """The value more than half of the seeds give (an order, a yes/no); None without such a majority."""
    if not values or any(v is None for v in values):
        return None
    keys = [json.dumps(v, sort_keys=True) for v in values]
    best = max(keys, key=keys.count)
    return values[keys.index(best)] if 2 * keys.count(best) > len(keys) else None


def aggregate(goal: str, values: list[Any]) -> Any:
    """One value per seed -> the row's ``ours``: the majority for an order row, else the median."""
    if len(values) == 1:
        return values[0]
    return majority(values) if goal == "order" else median(values)


# -- findings --------------------------------------------------------------------------------------
def check_findings(where: str, findings: Any, row_ids: set[str]) -> None:
    if findings is None:
        return
    if not isinstance(findings, dict):
        raise UserError(f"{where}: 'findings' must map fidelity row ids to {{cause, alternative, command}}")
    for rid, f in findings.items():
        if rid not in row_ids:
            raise UserError(f"{where}: finding {rid!r} names no fidelity row")
        if not isinstance(f, dict) or not isinstance(f.get("cause"), str) or not f["cause"].strip():
            raise UserError(f"{where}: finding {rid}: needs 'cause', the measured cause in one sentence")
        unknown = set(f) - FINDING_KEYS
        if unknown:
            raise UserError(f"{where}: finding {rid}: unknown key(s) {', '.join(sorted(unknown))}")
        if not all(isinstance(f.get(k, ""), str) for k in FINDING_KEYS):
            raise UserError(f"{where}: finding {rid}: cause, alternative and command are text")


def finding_text(f: dict | None) -> str:
    if not f:
        return ""
    text = f["cause"].strip()
    if f.get("alternative"):
        text += " " + f["alternative"].strip()
    if f.get("command"):
        text += f" (`{f['command'].strip()}`)"
    return text


# -- rows ------------------------------------------------------------------------------------------
def fidelity_rows(name: str, preset: dict, by_seed: dict[int, dict], entry_seeds: dict[str, list[int]],
                  cmd: str) -> list[dict]:
    """``by_seed``: seed -> entry -> results; ``entry_seeds``: the seeds each entry ran at. A smoke
    preset's rows (``smoke_settings`` set) carry ``smoke: true``, never match, and record the smoke epochs."""
    findings = preset.get("findings") or {}
    smoke = preset.get("smoke_settings")
    rows = []
    for row in preset["fidelity"]:
        entry = dotted.split(row["ours"])[0]
        spec = preset["studies"][entry]
        seeds = entry_seeds.get(entry, [])
        values = [lookup(by_seed.get(s, {}), row["ours"]) for s in seeds]
        ours = aggregate(row["goal"], values) if values else None
        our_epochs = row.get("our_epochs", spec.get("epochs", preset.get("epochs")))
        if smoke:  # what the smoke run trained, not the full run's epochs
            our_epochs = min(our_epochs, smoke["epochs"]) if isinstance(our_epochs, int) else smoke["epochs"]
        rows.append({
            "id": row["id"], "study": name, "figure": row.get("figure", row["id"]),
            "setting": row.get("setting", preset.get("setting", "")),
            "reference": row["reference"], "ours": ours, "seeds": seeds, "values": values, "goal": row["goal"],
            **({"tolerance": row["tolerance"]} if "tolerance" in row else {}),
            "reference_epochs": row.get("reference_epochs", preset.get("reference_epochs")),
            "our_epochs": our_epochs,
            "matched": not smoke and judge(row["goal"], ours, row["reference"], row.get("tolerance")),
            **({"smoke": True} if smoke else {}),
            **({"finding": dict(findings[row["id"]])} if row["id"] in findings else {}),
            "command": cmd,
        })
    return rows


def cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return " < ".join(map(str, v))
    if isinstance(v, bool):
        return "true" if v else "false"
    return "—" if v is None else str(v)


def ours_cell(r: dict) -> str:
    """The median and the range over the seeds (min-max); an order row, the majority and its count."""
    values = r.get("values") or []
    if len(values) < 2:
        return cell(r["ours"])
    if r["goal"] == "order":
        agree = sum(json.dumps(v, sort_keys=True) == json.dumps(r["ours"], sort_keys=True) for v in values)
        return f"{cell(r['ours'])} ({agree} of {len(values)} seeds)" if r["ours"] is not None else "no majority"
    nums = [v for v in values if _number(v)]
    span = f" ({cell(float(min(nums)))}–{cell(float(max(nums)))})" if nums else ""
    return cell(r["ours"]) + span


def rows_table(rows: list[dict]) -> str:
    head = ("| id | figure | reference | ours (median, range) | seeds | goal | epochs (ref / ours) | matched | finding |\n"
            "|---|---|---|---|---|---|---|---|---|")
    body = [f"| `{r['id']}` | {r['figure']} | {cell(r['reference'])} | {ours_cell(r)} | "
            f"{', '.join(map(str, r.get('seeds') or [])) or '—'} | {r['goal']}"
            + (f" ±{r['tolerance']:g}" if r.get("tolerance") is not None else "")
            + f" | {cell(r['reference_epochs'])} / {cell(r['our_epochs'])} | "
            + ("smoke" if r.get("smoke") else "**yes**" if r["matched"] else "no") + " | "
            + finding_text(r.get("finding")).replace("|", "\\|") + " |"
            for r in rows]
    return "\n".join([head, *body])


def matched_text(rows: list[dict], noun: str = "") -> str:
    """``N of M matched``; smoke rows are not judged and not counted: ``smoke run: not judged (M rows)``."""
    smoke = sum(bool(r.get("smoke")) for r in rows)
    judged = len(rows) - smoke
    counted = f"{sum(r['matched'] for r in rows)} of {judged} {noun}matched"
    if not smoke:
        return counted
    not_judged = f"{smoke} smoke row{'' if smoke == 1 else 's'} not judged"
    return f"smoke run: not judged ({smoke} row{'' if smoke == 1 else 's'})" if not judged else f"{counted}; {not_judged}"


# -- the union over presets ------------------------------------------------------------------------
def training(summary: dict) -> str:
    if not summary.get("runs"):
        return ""
    return (f"Training time of its {summary['runs']} runs, as each run recorded it when it trained "
            f"(a `--resume` call reuses them): {summary['training_time_s'] / 60:.1f} min.")


def elapsed(summary: dict) -> str:
    e = summary.get("elapsed_since_first_call_s")
    if e is None or e <= summary["wall_time_s"] + 1:
        return ""
    return f"Elapsed since the first call (continued with --resume): {e / 60:.1f} min; "


def write_fidelity(out: Path, target: Path, names: list[str]) -> list[dict]:
    """``fidelity.json`` / ``fidelity.md`` over every preset in ``names`` finished under ``out``."""
    summaries = []
    for name in names:
        path = out / name / "summary.json"
        if path.is_file():
            summaries.append(json.loads(path.read_text()))
    rows = [r for s in summaries for r in s["rows"]]
    files.write_json(target / "fidelity.json", rows)
    md = ["# Fidelity: our figures against the original studies'", "",
          "Generated by `reproduce` (`ae_lightning/studies/reproduce.py`) from the presets in `configs/studies/`. "
          "`goal`: lower / higher, ours at or below / above the reference; within, inside the tolerance; order, the same "
          "ranking (or the same yes/no). `seeds`: the seeds a row was measured at; over more than one, `ours` is "
          "the median with the range (min–max) beside it, or for an order row the majority, and `matched` judges "
          "that. A row that misses stays in the table; its `finding` is the measured cause (from the preset's "
          "`findings`; it never changes `matched`).", ""]
    for s in summaries:
        md += [f"## {s['title']}", "", f"- command: `{s['command']}`" + (" (**smoke**)" if s.get("smoke") else ""),
               f"- machine: {s['machine']}", f"- date: {s['date']}"
               + (f" (re-rendered from its results on {s['rendered']})" if s.get("rendered") else ""),
               f"- {elapsed(s)}wall time of the studies: {s['wall_time_s'] / 60:.1f} min (" + ", ".join(
                   f"{k} {v / 60:.1f} min" for k, v in s["entry_wall_time_s"].items() if v is not None) + ")",
               *([f"- {training(s)}"] if s.get("runs") else []),
               f"- report: [{s['preset']}/report.md]({os.path.relpath(out / s['preset'] / 'report.md', target)})", "",
               f"{matched_text(s['rows'])}.", "",
               rows_table(s["rows"]), ""]
    files.write_text(target / "fidelity.md", "\n".join(md))
    return rows
