"""One study into its folder: measured (``results.json``, the PNGs of model outputs), then rendered from that
folder, as a re-render (``--resume``, ``--render-only``) renders it. What ``studies`` and ``reproduce`` share.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ae_lightning import files
from ae_lightning.errors import UserError
from ae_lightning.studies.common import Context, command_line
from ae_lightning.studies.report import Report


def run_one(study, opts, out_dir: Path, cache: dict, argv: list[str],
            preset_entry: dict | None = None) -> tuple[Report, float]:
    """Run one study into ``out_dir``; returns its report and its wall time, rendering included (results.json's,
    which the report states, is the measuring's). ``preset_entry``: the preset's settings of it, kept in results.json."""
    t0 = time.time()
    ctx = Context(study, opts, out_dir, cache)
    results = study.module.measure(ctx)
    results.update({"settings": {"dataset": ctx.dataset, "variant": ctx.variant, "epochs": opts.epochs,
                                 "subset": opts.subset, "test_subset": opts.test_subset,
                                 "seed": opts.seed, "device": str(ctx.device)},
                    "runs": ctx.trained, "wall_time_s": round(time.time() - t0, 1)})
    if preset_entry is not None:
        results["preset_entry"] = preset_entry
    files.write_json(ctx.dir / "results.json", results)
    return render(ctx, argv), round(time.time() - t0, 1)


def read_results(out_dir: Path) -> dict | None:
    """A study folder's ``results.json``; None where there is none (not measured, or killed before)."""
    try:
        return json.loads((Path(out_dir) / "results.json").read_text())
    except (OSError, ValueError):
        return None


def render(ctx: Context, argv: list[str] | None = None) -> Report:
    """report.md and the figures of numbers from the folder's results.json (again: a Context without TensorBoard)."""
    results = read_results(ctx.dir)
    rep = ctx.report
    rep.text((f"Command: `{command_line(argv)}`\n\n" if argv else "") + ctx.settings_text(results["settings"]))
    ctx.study.module.render(ctx, int_keys(results))
    rep.text(f"Wall time of this study: {results['wall_time_s']:.0f} s.")
    rep.results = results
    rep.write()
    return rep


def int_keys(node):
    """``results`` with the number keys JSON wrote as text (a latent size, k, a class label) as ints again."""
    if isinstance(node, dict):
        return {int(k) if k.isdigit() else k: int_keys(v) for k, v in node.items()}
    return [int_keys(v) for v in node] if isinstance(node, list) else node


def check_resumable(name: str, settings: dict, opts, flag: str = "--resume") -> None:
    """A study read back by ``--resume`` (or ``--render-only``) must have run with this call's options."""
    for key in ("epochs", "subset", "test_subset", "seed"):
        if settings.get(key) != getattr(opts, key):
            raise UserError(f"{flag}: {name} was run with {key} {settings.get(key)!r}, this call asks for "
                            f"{getattr(opts, key)!r} (use the same options, or another --out)")
    if opts.dataset is not None and settings.get("dataset") != opts.dataset:
        raise UserError(f"{flag}: {name} was run on {settings.get('dataset')}, this call asks for {opts.dataset}")
