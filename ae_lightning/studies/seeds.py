"""Pre-registered seeds for ``reproduce``: which seeds each preset entry runs at, and where each goes.

The preset's own seed (``seed``, default 0) writes to ``<out>/<name>/<entry>``, another seed ``s`` to
``<entry>.seed<s>``, so the single-seed results already written are read back by ``--resume``. An
entry whose ``config`` sets ``seed`` runs at that seed only; an entry's own ``seeds`` replace the call's (a
measurement beside the rows, e.g. neighbours' weight decay 1e-5 at seed 0).
"""
from __future__ import annotations

import json

from ae_lightning.studies.presets import overrides_of, parse_seeds


def base_seed(preset: dict) -> int:
    """The preset's own seed (default 0): its runs write to ``<out>/<name>/<entry>``, another seed's to
    ``<entry>.seed<s>``, so the single-seed results already written are reused by ``--resume``."""
    return int(preset.get("seed", 0))


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
