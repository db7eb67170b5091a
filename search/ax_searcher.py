"""Ray's AxSearch over an Ax experiment that this project builds itself: its own module, so that a
random search (and every sweep's driver before Ax is asked for) does not import Ax, BoTorch and
GPyTorch (about 1 s).

What Ray's AxSearch gets wrong, and what ``SweepAxSearch`` does instead (each tested in
tests/test_search_ax.py):

- **A trial stopped by ASHA reached Ax as a finished trial**, its 1-epoch value fitted beside full
  runs as one objective. Here a trial that ends without its final report (``final`` in the result,
  sent by ``search.trainable`` after the test) is *abandoned* in Ax, with the reason "stopped by
  the scheduler at epoch k of N": the GP is fitted on full-length trials only, and Ax keeps the
  abandoned point as pending, so it is not proposed again. A Sobol point stopped this way is
  spent, not replaced. A failed trial (crashed, diverged) is marked FAILED.
- **Batch size on a linear scale.** Numeric choices reach Ax as their rank (0, 1, 2, ... an ordered
  choice), so 32, 64, ..., 1024 are equally spaced for the GP, as they are for the user; Ray's
  conversion passed the values themselves, which Ax models linearly (128 is then "near" 256 and
  far from 1024). Floats reach Ax as a position in [0, 1] of their (log) range, log-integers as
  Ax log-scale integer ranges (see ``search.space``).
- **Sobol while others run.** Ax's default strategy, with more trials in flight than its Bayesian
  step allows, keeps proposing Sobol points. Here Sobol proposes exactly ``init_trials`` points
  (a failed one is replaced, one stopped by ASHA is spent) and the Bayesian step starts once one
  of them has run in full; until then ``suggest`` returns None and Tune waits. Every later trial
  is a Bayesian proposal, with the running trials as pending points.
- **One metric only.** Ray's ``_process_result`` completes a trial with the first objective alone,
  which Ax marks FAILED in a multi-objective experiment. Here every objective is sent.

Each proposal's generator and driver time (wall and CPU) are kept in the searcher's state
(``_proposals``), which Tune saves with the experiment (``searcher-state-*.pkl``) and restores on
``--resume``; ``search.report`` reads them from there. (A file written beside it by the driver
would not survive a resume: Tune syncs its staged copy of the experiment folder over it.)
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Sequence

from ray.tune.search.ax import AxSearch

from ae_lightning import quiet
from search.objectives import Objective
from search.results import FINAL
from search.space import Space, ax_name, nest

# BoTorch's fits of a few dozen points are overhead-bound: on the 2-core CPU, with trials training
# beside the driver, one thread made a two-objective proposal 4-7x faster than two (docs/search.md)
PROPOSAL_THREADS = 1


def ax_parameters(space: Space) -> list[dict]:
    """The space as Ax parameters, in the searchers' encoding (``Space.searcher_domain``)."""
    return [{"name": ax_name(p.key), **space.searcher_domain(p)} for p in space.params.values()]


def generation_strategy(init_trials: int, seed: int, num_restarts: int, raw_samples: int):
    """Sobol for exactly ``init_trials`` trials (a failed one replaced), then BoTorch once one of
    them has run in full: Ax's modular BoTorch generator (a GP with qLogNEI, or qLogNEHVI for
    several objectives) with the acquisition optimised from ``num_restarts`` starts chosen among
    ``raw_samples`` random points. Until the first Sobol trial has finished, ``get_next_trial``
    raises DataRequiredError and AxSearch tells Tune to wait."""
    from ax.adapter.registry import Generators
    from ax.core.base_trial import TrialStatus
    from ax.generation_strategy.generation_node import GenerationStep
    from ax.generation_strategy.generation_strategy import GenerationStrategy
    from ax.generation_strategy.transition_criterion import MaxTrialsAwaitingData, MinTrials

    options = {"model_gen_options": {"optimizer_kwargs": {"num_restarts": num_restarts,
                                                          "raw_samples": raw_samples}}}
    bayes = GenerationStep(generator=Generators.BOTORCH_MODULAR, num_trials=-1, generator_gen_kwargs=options)
    if init_trials == 0:  # every trial Bayesian (search.bench_acquisition replays observed trials)
        return GenerationStrategy(name="BoTorch", steps=[bayes])
    sobol = GenerationStep(generator=Generators.SOBOL, num_trials=init_trials, min_trials_observed=1,
                           generator_kwargs={"seed": seed})
    # A Sobol point stopped by ASHA has been spent (abandoned in Ax, see on_trial_complete): only a
    # failed one is replaced. Ax's step replaces abandoned ones too, which kept a sweep with ASHA
    # in Sobol for as long as fewer than init_trials trials had run in full (measured: a 16-trial
    # conv sweep with 12 trials stopped never left Sobol).
    for c in [*sobol.transition_criteria, *sobol.pausing_criteria]:
        if isinstance(c, (MinTrials, MaxTrialsAwaitingData)) and TrialStatus.ABANDONED in (c.not_in_statuses or []):
            c.not_in_statuses = [TrialStatus.FAILED]
    return GenerationStrategy(name=f"Sobol({init_trials})+BoTorch", steps=[sobol, bayes])


def make_client(space: Space, objectives: Sequence[Objective], seed: int, init_trials: int,
                num_restarts: int, raw_samples: int):
    import logging

    from ax.service.ax_client import AxClient
    from ax.service.utils.instantiation import ObjectiveProperties
    from ax.utils.common.logger import set_ax_logger_levels

    # Ax logs every generator choice at INFO, and warns at every start that a seed is set and
    # that thresholds will be inferred (search.json and the sweep's first line say both): --verbose only
    set_ax_logger_levels(logging.INFO if quiet.verbose() else logging.ERROR)

    client = AxClient(generation_strategy=generation_strategy(init_trials, seed, num_restarts, raw_samples),
                      random_seed=seed, verbose_logging=False, enforce_sequential_optimization=False)
    client.create_experiment(
        parameters=ax_parameters(space),
        objectives={o.key: ObjectiveProperties(minimize=o.minimize, threshold=o.threshold) for o in objectives})
    return client


class SweepAxSearch(AxSearch):
    """AxSearch over ``make_client``'s experiment, with the fixes in the module's docstring. Its
    proposals reach Tune in real values (Ray's tables and files print them); Ax keeps its encoding."""

    # the space that decodes Ax's proposals (AxSearch's own ``_space`` is its parameter list); None in a
    # searcher pickled before real trial configs (a sweep saved by 2): its proposals stay encoded
    _decoder: Space | None = None

    def __init__(self, space: Space, objectives: Sequence[Objective], seed: int, init_trials: int,
                 num_restarts: int, raw_samples: int):
        self._objective_keys = [o.key for o in objectives]
        self._proposals: list[dict] = []
        self._decoder = space
        client = make_client(space, objectives, seed, init_trials, num_restarts, raw_samples)
        super().__init__(ax_client=client, points_to_evaluate=space.points_flat() or None)

    def suggest(self, trial_id: str) -> dict | None:
        import torch

        manual = bool(self._points_to_evaluate)
        wall, cpu = time.perf_counter(), time.process_time()
        threads = torch.get_num_threads()
        torch.set_num_threads(PROPOSAL_THREADS)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", module=r"(ax|botorch|gpytorch|linear_operator)(\.|$)")
                config = super().suggest(trial_id)
        finally:
            torch.set_num_threads(threads)
        if config is None:
            return None
        index = self._live_trial_mapping[trial_id]
        run = self._ax.experiment.trials[index].generator_runs[0]
        generator = "Manual" if manual else (run._generation_node_name or "Manual").split("_")[-1]
        self._proposals.append({"trial_id": trial_id, "ax_trial": index, "generator": generator,
                                "wall_s": round(time.perf_counter() - wall, 4),
                                "cpu_s": round(time.process_time() - cpu, 4)})
        return config if self._decoder is None else nest(self._decoder.from_searcher(config))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        index = self._live_trial_mapping.pop(trial_id, None)
        if index is None:
            return
        if error or not result:  # crashed or diverged: FAILED, and in the Sobol phase replaced
            self._ax.log_trial_failure(trial_index=index)
            return
        if not result.get(FINAL):
            epoch = result.get("epochs_total", result.get("training_iteration", "?"))
            self._ax.abandon_trial(trial_index=index, reason=f"stopped by the scheduler after epoch {epoch}: "
                                   "a truncated value is not the objective of a full trial")
            return
        values = {k: result.get(k) for k in self._objective_keys}
        bad = [k for k, v in values.items() if not isinstance(v, (int, float)) or not math.isfinite(v)]
        if bad:
            self._ax.abandon_trial(trial_index=index, reason=f"no finite {', '.join(bad)} from {trial_id}")
            return
        self._ax.complete_trial(trial_index=index, raw_data={k: (float(v), None) for k, v in values.items()})


