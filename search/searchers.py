"""The searchers (Ax, random) and the optional ASHA scheduler of a sweep.

Kept out of ``search/tune.py`` (which runs as ``__main__``) so Tune can pickle them by reference
into the experiment folder and ``--resume`` finds them again.
"""
from __future__ import annotations

from ray.tune.search.ax import AxSearch

from search.space import Space
from search.trainable import METRIC


class FailureAwareAxSearch(AxSearch):
    """Ray's AxSearch, plus: a failed trial (diverged, crashed) is *abandoned* in Ax with a reason.

    Ray's AxSearch only forgets a failed trial, which leaves it RUNNING inside Ax forever; Ax then
    counts it against its parallelism limit of the Bayesian step and can stall the search."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error and trial_id in self._live_trial_mapping:
            index = self._live_trial_mapping.pop(trial_id)
            self._ax.abandon_trial(trial_index=index, reason=f"Tune trial {trial_id} failed")
            return
        super().on_trial_complete(trial_id, result=result, error=error)


def trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default repeats every sampled value and a timestamp)."""
    return f"trial_{trial.trial_id}"


def ax_generation_strategy(init_trials: int, seed: int):
    """Sobol for ``init_trials`` trials, then BoTorch's GP + expected-improvement (Ax's own
    default pair, with the initial count chosen here instead of max(5, 2 * #params))."""
    from ax.adapter.registry import Generators
    from ax.generation_strategy.generation_node import GenerationStep
    from ax.generation_strategy.generation_strategy import GenerationStrategy

    return GenerationStrategy(name=f"Sobol({init_trials})+BoTorch", steps=[
        GenerationStep(generator=Generators.SOBOL, num_trials=init_trials, generator_kwargs={"seed": seed}),
        GenerationStep(generator=Generators.BOTORCH_MODULAR, num_trials=-1),
    ])


def build_searcher(algo: str, space: Space, seed: int, init_trials: int | None = None):
    if algo == "ax":
        kwargs = {"generation_strategy": ax_generation_strategy(init_trials, seed)} if init_trials else {}
        return FailureAwareAxSearch(points_to_evaluate=space.points_flat() or None, random_seed=seed,
                                    verbose_logging=False, **kwargs)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=space.points_nested() or None, random_state=seed)


def build_scheduler(name: str, max_epochs: int, grace_period: int):
    if name == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    # time = epochs reported; rungs at grace_period * 3^k epochs
    return ASHAScheduler(time_attr="training_iteration", max_t=max_epochs, grace_period=grace_period,
                         reduction_factor=3)


__all__ = ["FailureAwareAxSearch", "build_searcher", "build_scheduler", "trial_dirname", "METRIC"]
