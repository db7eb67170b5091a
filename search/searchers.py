"""The searchers (Ax, random) and the optional ASHA scheduler of a sweep.

Kept out of ``search/tune.py`` (which runs as ``__main__``) so Tune can pickle them by reference
into the experiment folder and ``--resume`` finds them again.
"""
from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler
from ray.tune.stopper import Stopper

from ae_lightning.errors import UserError
from search.results import FINAL, METRIC
from search.settings import SweepSettings
from search.space import Space


def trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default repeats every sampled value and a timestamp)."""
    return f"trial_{trial.trial_id}"


def check_ax(space: Space, s: SweepSettings) -> None:
    """Build the Ax experiment once in the driver, before Ray starts, so a space or objectives
    that Ax refuses fail with one line instead of as a traceback after the cluster is up."""
    # late: Ax takes seconds to import; a random sweep needs none of it
    from search.ax_searcher import Quiet, make_client

    try:
        with Quiet():
            make_client(space, space.objectives, s.seed, s.sobol_trials(len(space.params)))
    except Exception as e:  # Ax's UserInputError, ValueError...
        raise UserError(f"Ax refuses the search space {space.source}: {str(e).splitlines()[0]}") from None


def build_searcher(s: SweepSettings, space: Space):
    if s.algo == "ax":
        from search.ax_searcher import AxSearch  # late: Ax (seconds)

        return AxSearch(space, space.objectives, s.seed, s.sobol_trials(len(space.params)),
                        stop_early=s.scheduler == "ax", grace_period=s.grace_period, stopped=s.stopped_trials)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=space.points_nested() or None, random_state=s.seed,
                                 max_concurrent=s.max_concurrent or 0)


def describe(s: SweepSettings, space: Space) -> dict:
    """The search's own settings, reported with every sweep (search.json, the first line, bench)."""
    objectives = [o.text() for o in space.objectives]
    out: dict = {"algo": s.algo, "objectives": objectives, "encodings": space.encodings(),
                 "parallelism": s.max_concurrent or "as resources allow", "scheduler": s.scheduler}
    if s.algo == "ax":
        modelled = [o for o in space.objectives if not o.is_param]
        acqf = "qLogNEHVI" if len(modelled) > 1 else "qLogNEI"
        out.update(sobol_trials=s.sobol_trials(len(space.params)),
                   then=f"Ax's BoTorch step (GP of {', '.join(o.name for o in modelled)}, {acqf})",
                   known={o.name: "not modelled: each Bayesian proposal fixes it at the next level spread over its range"
                          for o in space.objectives if o.is_param} or None,
                   thresholds={o.name: (o.threshold if o.threshold is not None else "inferred by Ax")
                               for o in modelled} if len(modelled) > 1 else None)
    return out


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


def build_scheduler(name: str, max_epochs: int, grace_period: int, searcher=None):
    if name == "none":
        return None
    if name == "ax":  # Ax's own early stopping, asked through the searcher that holds the trials' curves
        from search.ax_searcher import AxEarlyStopping

        return AxEarlyStopping(searcher, max_epochs)
    # time = epochs reported; rungs at grace_period * 3^k epochs below max_epochs
    return FinishingASHA(time_attr="training_iteration", max_t=max_epochs, grace_period=grace_period,
                         reduction_factor=3)


__all__ = ["build_searcher", "build_scheduler", "check_ax", "describe", "trial_dirname", "METRIC"]


class EpochBudget(Stopper):
    """A Tune stopper that ends the sweep once its trials have trained ``budget`` epochs in all
    (``--epoch-budget``): the same compute for a sweep with ASHA as for one without, whatever the
    machine. Checked when a trial ends in full, so that no trial is cut off by the budget alone
    while it runs by itself (with several trials in flight, the others are stopped then); the
    trials ASHA stops before that add their epochs too, so a sweep can end a few epochs past the
    budget (the benchmark records the epochs each sweep trained)."""

    def __init__(self, budget: int):
        self.budget, self._epochs, self._done = budget, {}, False

    def __call__(self, trial_id: str, result: dict) -> bool:
        self._epochs[trial_id] = max(self._epochs.get(trial_id, 0), int(result.get("epochs_total", 0)))
        if result.get(FINAL) and sum(self._epochs.values()) >= self.budget:
            self._done = True
        return False

    def stop_all(self) -> bool:
        return self._done
