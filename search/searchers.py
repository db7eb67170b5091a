"""The searchers (Ax, random) and the optional ASHA scheduler of a sweep.

Kept out of ``search/tune.py`` (which runs as ``__main__``) so Tune can pickle them by reference
into the experiment folder and ``--resume`` finds them again.
"""
from __future__ import annotations

import logging

from ray.tune.schedulers import ASHAScheduler

from search.space import Space
from search.trainable import METRIC


def __getattr__(name: str):
    """``search.searchers.FailureAwareAxSearch``, where sweeps saved before it moved pickled it."""
    if name == "FailureAwareAxSearch":
        from search.ax_searcher import FailureAwareAxSearch

        return FailureAwareAxSearch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def check_ax(space: Space, seed: int, init_trials: int | None = None) -> None:
    """Build the Ax experiment once in the driver, before Ray starts, so a space Ax refuses
    fails with one line instead of as a traceback after the cluster is up."""
    from ae_lightning.config import UserError

    searcher = build_searcher("ax", space, seed, init_trials)
    try:
        searcher.set_search_properties(METRIC, "min", space.to_tune())
    except Exception as e:  # Ax's UserInputError, ValueError...
        raise UserError(f"Ax refuses the search space {space.source}: {str(e).splitlines()[0]}") from None


def build_searcher(algo: str, space: Space, seed: int, init_trials: int | None = None,
                   max_concurrent: int | None = None):
    if algo == "ax":
        from ax.utils.common.logger import set_ax_logger_levels

        from search.ax_searcher import FailureAwareAxSearch

        set_ax_logger_levels(logging.WARNING)  # Ax logs every generator choice at INFO
        kwargs = {"generation_strategy": ax_generation_strategy(init_trials, seed)} if init_trials else {}
        # enforce_sequential_optimization=False: Ax's default caps the Bayesian step at 3 trials
        # in flight, which would idle a GPU packed with 8 trials; Tune's --max-concurrent limits
        return FailureAwareAxSearch(points_to_evaluate=space.points_flat() or None, random_seed=seed,
                                    verbose_logging=False, enforce_sequential_optimization=False, **kwargs)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=space.points_nested() or None, random_state=seed,
                                 max_concurrent=max_concurrent or 0)


class FinishingASHA(ASHAScheduler):
    """ASHA that never stops a trial at its last epoch.

    Plain ASHA answers STOP to the result at ``max_t`` (and to a rung placed there), which ends
    the trial inside ``tune.report``: ``fit`` would never test the best epoch, write metrics.json
    or its HParams session. Here the last epoch's result is recorded and the trial ends by
    itself, a moment later, through the rest of ``fit``."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        from ray.tune.schedulers import TrialScheduler

        if result.get(self._time_attr, 0) >= self._max_t:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


def build_scheduler(name: str, max_epochs: int, grace_period: int):
    if name == "none":
        return None
    # time = epochs reported; rungs at grace_period * 3^k epochs below max_epochs
    return FinishingASHA(time_attr="training_iteration", max_t=max_epochs, grace_period=grace_period,
                         reduction_factor=3)


__all__ = ["FailureAwareAxSearch", "build_searcher", "build_scheduler", "trial_dirname", "METRIC"]
