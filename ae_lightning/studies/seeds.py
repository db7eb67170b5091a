"""Pre-registered seeds for ``reproduce``: which seeds each preset entry runs at, and where each goes.

The preset's own seed (``seed``, default 0) writes to ``<out>/<name>/<entry>``, another seed ``s`` to
``<entry>.seed<s>``, so the single-seed results already written are read back by ``--resume``. An
entry whose ``config`` sets ``seed`` runs at that seed only; an entry's own ``seeds`` replace the call's (a
measurement beside the rows, e.g. neighbours' weight decay 1e-5 at seed 0).
"""
from __future__ import annotations

import json
from typing import Any

from ae_lightning.errors import UserError
from ae_lightning.studies.common import overrides_of


def base_seed(preset: dict) -> int:
    """The preset's own seed (default 0): its runs write to ``<out>/<name>/<entry>``, another seed's to
    ``<entry>.seed<s>``, so the single-seed results already written are reused by ``--resume``."""
    return int(preset.get("seed", 0))


def parse_seeds(text: str | None, where: str = "--seeds") -> list[int] | None:
    """``0,1,2`` -> [0, 1, 2]; distinct non-negative integers, in the order given."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise UserError(f"{where} {text!r}: expected non-negative integers separated by commas, e.g. 0,1,2")
    return check_seeds([int(p) for p in parts], where)


def check_seeds(seeds: Any, where: str) -> list[int]:
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise UserError(f"{where}: expected a list of non-negative integers, e.g. [0, 1, 2]")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where} {','.join(map(str, seeds))}: a seed is given twice")
    return list(seeds)


def pinned_seed(preset: dict, entry: str) -> int | None:
    """An entry whose ``config`` sets ``seed`` (e.g. tuned's ``denoising_seed1``) runs at that seed only."""
    seed = {**overrides_of(preset.get("config")), **overrides_of(preset["studies"][entry].get("config"))}.get("seed")
    return None if seed is None else int(seed)


def run_seeds(preset: dict, args) -> list[int]:
    """``--seeds`` over the preset's ``seeds`` over its one ``seed``."""
    return parse_seeds(args.seeds) or preset.get("seeds") or [base_seed(preset)]


def entry_runs(preset: dict, entry: str, seeds: list[int]) -> list[tuple[int, int, str]]:
    """(seed the runs train at, seed given to the study, folder name) for each run of the entry. An entry's own
    ``seeds`` (a measurement beside the rows, e.g. ``[0]``) replace the call's."""
    pinned = pinned_seed(preset, entry)
    if pinned is not None:
        return [(pinned, base_seed(preset), entry)]
    seeds = preset["studies"][entry].get("seeds") or seeds
    return [(s, s, entry if s == base_seed(preset) else f"{entry}.seed{s}") for s in seeds]


def same_entry(stored: dict | None, spec: dict) -> bool:
    """A finished entry is reused when its settings are this call's: compared as JSON wrote them (number keys,
    e.g. k = 5, come back as strings), without ``seeds``, which picks the runs and is no setting of any."""
    settings = [{k: v for k, v in json.loads(json.dumps(d)).items() if k != "seeds"} for d in (stored or {}, spec)]
    return stored is not None and settings[0] == settings[1]
