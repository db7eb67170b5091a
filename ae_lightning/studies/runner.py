"""Running one study into its folder: what ``python -m ae_lightning.studies`` and ``reproduce`` share."""
from __future__ import annotations

import time
from pathlib import Path

from ae_lightning.errors import UserError
from ae_lightning.studies.common import Context, command_line


def run_one(study, opts, out_dir: Path, cache: dict, argv: list[str],
            preset_entry: dict | None = None) -> tuple[object, float]:
    """Run one study into ``out_dir``; returns its Context (report written) and wall time.
    ``preset_entry``: the ``reproduce`` preset's settings of this study, kept in results.json."""
    t0 = time.time()
    ctx = Context(study, opts, out_dir, cache)
    ctx.report.text((f"Command: `{command_line(argv)}`\n\n" if argv else "") + ctx.settings_text())
    study.run(ctx)
    wall = time.time() - t0
    ctx.report.results.update({"settings": {"dataset": ctx.dataset, "variant": ctx.variant, "epochs": opts.epochs,
                                            "subset": opts.subset, "test_subset": opts.test_subset,
                                            "seed": opts.seed, "device": str(ctx.device)},
                               "runs": ctx.trained, "wall_time_s": round(wall, 1)})
    if preset_entry is not None:
        ctx.report.results["preset_entry"] = preset_entry
    ctx.report.text(f"Wall time of this study: {wall:.0f} s.")
    ctx.report.write()
    return ctx, wall


def check_resumable(name: str, settings: dict, opts) -> None:
    """A study read back by ``--resume`` must have run with this call's options."""
    for key in ("epochs", "subset", "test_subset", "seed"):
        if settings.get(key) != getattr(opts, key):
            raise UserError(f"--resume: {name} was run with {key} {settings.get(key)!r}, this call asks for "
                            f"{getattr(opts, key)!r} (use the same options, or another --out)")
    if opts.dataset is not None and settings.get("dataset") != opts.dataset:
        raise UserError(f"--resume: {name} was run on {settings.get('dataset')}, this call asks for {opts.dataset}")
