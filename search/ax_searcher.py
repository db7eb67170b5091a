"""Ray's AxSearch with failed trials abandoned in Ax: its own module, so that a random search (and
every sweep's driver before Ax is asked for) does not import Ax, BoTorch and GPyTorch (about 1 s).
"""
from __future__ import annotations

from ray.tune.search.ax import AxSearch


class FailureAwareAxSearch(AxSearch):
    """Ray's AxSearch, plus: a failed trial (diverged, crashed) is *abandoned* in Ax with a reason.

    Ray's AxSearch only forgets a failed trial, which leaves it RUNNING inside Ax forever; Ax then
    counts it against its parallelism limit of the Bayesian step and can stall the search."""

    @staticmethod
    def convert_search_space(spec: dict) -> list[dict]:
        """Ray's conversion, with numeric choices marked ordered (batch size 128 < 256 < ...) and
        others unordered, as Ax would guess, but said so (Ax warns about each one otherwise)."""
        params = AxSearch.convert_search_space(spec)
        for p in params:
            if p["type"] == "choice":
                p["is_ordered"] = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p["values"])
        return params

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error and trial_id in self._live_trial_mapping:
            index = self._live_trial_mapping.pop(trial_id)
            self._ax.abandon_trial(trial_index=index, reason=f"Tune trial {trial_id} failed")
            return
        super().on_trial_complete(trial_id, result=result, error=error)
