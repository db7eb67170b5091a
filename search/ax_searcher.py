"""The project's AxSearch: a Ray Tune ``Searcher`` that drives Ax's ``Client`` (``ax.api``) by ask
and tell. Its own module, so that a random sweep (and every driver before Ax is asked for) does not
import Ax, BoTorch and GPyTorch.

Why not Ray's own ``ray.tune.search.ax.AxSearch``: it is built on Ax's service-API client, which
Ax deprecates and removes in 1.4, and it breaks on Ax 1.3; it completes a trial with its first
objective alone; it passes numeric choices as values; and fixing any of that meant reading its
private state. This one uses Ax's public ``Client`` methods only (docs/search.md).

What it does, each tested in tests/test_search_ax.py:

- **Exactly ``init_trials`` Sobol trials** (a failed one is replaced, a stopped one spent), then
  Ax's Bayesian step (its BoTorch generator: a GP with qLogNEI, qLogNEHVI for several modelled
  objectives) once one trial has run in full; until then ``suggest`` returns None and Tune waits.
- **Every objective reported.** A trial's final result completes it with every modelled objective.
- **Failed, stopped, abandoned.** A crashed or diverged trial is FAILED (Ax may propose it again).
  A trial stopped early (by ASHA or by Ax's own early stopping) is ABANDONED: Ax's model leaves
  it out and does not propose it again. With ``--stopped-trials fit`` it is EARLY_STOPPED with the
  value it reached, which Ax 1.3's model fits as it fits a finished trial's; measured worse on
  every seed of the benchmark (docs/search.md). A trial with no value is ABANDONED.
- **Running trials are pending points**: Ax's Client takes them from the trials' status.
- **Numeric choices reach Ax by rank** (``search.space``), floats as a position in [0, 1].
- **A searched key as an objective is known, not modelled** (``model.latent_dim``): Ax models the
  metric objectives alone, and each Bayesian proposal fixes the known key at the next level of a
  sequence that spreads over its range (``KnownLevels``), so the front is explored end to end
  instead of collapsing onto its cheapest corner.
- **State in Ax's own JSON**, not a pickle: ``save`` writes Ax's snapshot with the few things Tune
  needs back (which Tune trial is which Ax trial, the proposals' times); ``restore`` reads it on
  ``--resume``. Pickled (Tune pickles its config at the start), the searcher is its arguments.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Sequence

from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from ae_lightning import files, quiet
from search.objectives import Objective
from search.results import FINAL, METRIC, SEARCHER_STATE, STATE_FORMAT, read_state
from search.space import FLOAT_TYPES, INT_TYPES, Param, Space, ax_name, nest

# BoTorch's fits of a few dozen points are overhead-bound: with a trial training on the other core,
# one thread is faster than two (docs/search.md)
PROPOSAL_THREADS = 1
_QUIET_MODULES = r"(ax|botorch|gpytorch|linear_operator|pandas)(\.|$)"


def ax_parameters(space: Space) -> list:
    """The space as Ax's parameter configs, in the searchers' encoding (``Space.searcher_domain``)."""
    from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig

    out = []
    for p in space.params.values():
        d = space.searcher_domain(p)
        if d["type"] == "range":
            out.append(RangeParameterConfig(name=ax_name(p.key), bounds=tuple(d["bounds"]), parameter_type=d["value_type"],
                                            scaling="log" if d["log_scale"] else "linear"))
        else:
            kind = {bool: "bool", int: "int", float: "float", str: "str"}[type(d["values"][0])]
            if kind in ("int", "float") and any(isinstance(v, float) for v in d["values"]):
                kind = "float"
            out.append(ChoiceParameterConfig(name=ax_name(p.key), values=list(d["values"]), parameter_type=kind,
                                             is_ordered=d["is_ordered"]))
    return out


def objective_string(objectives: Sequence[Objective]) -> tuple[str, list[str]]:
    """Ax's objective (``"-best_val_loss"``) and the thresholds of several modelled objectives as
    Ax's outcome constraints on them (Ax reads those as the front's reference point)."""
    modelled = [o for o in objectives if not o.is_param]
    text = ", ".join(f"{'-' if o.minimize else ''}{o.key}" for o in modelled)
    bounds = [f"{o.key} {'<=' if o.minimize else '>='} {o.threshold!r}" for o in modelled
              if o.threshold is not None] if len(modelled) > 1 else []
    return text, bounds


def _vdc(i: int, base: int) -> float:
    """The i-th point of the van der Corput sequence in ``base`` (0, 1/2, 1/4, 3/4, ... in base 2)."""
    out, denom = 0.0, 1.0
    while i:
        i, digit = divmod(i, base)
        denom *= base
        out += digit / denom
    return out


class KnownLevels:
    """Where the Bayesian proposals fix the known objectives: the n-th proposal takes, for each
    known key, the n-th point of a low-discrepancy sequence over the part of its range that can
    count (up to its threshold): both ends first, then the middle, the quarters, ... on the key's
    own scale (log for logint and loguniform). Each proposal then optimises the modelled objectives
    at that level, so every level is searched as well as the GP can, and no level is left out."""

    PRIMES = (2, 3, 5, 7, 11, 13)

    def __init__(self, space: Space, objectives: Sequence[Objective]):
        self.keys = [(space.params[o.name], o, space) for o in objectives if o.is_param]

    def __bool__(self) -> bool:
        return bool(self.keys)

    def fixed(self, n: int) -> dict:
        """The Ax parameters (encoded) of the n-th Bayesian proposal (n = 0, 1, ...)."""
        out = {}
        for j, (p, o, space) in enumerate(self.keys):
            u = (0.0, 1.0)[n] if n < 2 else _vdc(n - 1, self.PRIMES[j % len(self.PRIMES)])
            out[ax_name(p.key)] = self.value(p, o, space, u if o.minimize else 1.0 - u)
        return out

    @staticmethod
    def value(p: Param, o: Objective, space: Space, u: float):
        """The encoded value at position ``u`` of the countable part of ``p``'s range."""
        if space.ranked(p):
            ranks = [i for i, v in enumerate(sorted(p.values)) if o.threshold is None or not o.better(o.threshold, v)]
            return ranks[round(u * (len(ranks) - 1))]
        lo, hi = float(p.low), float(p.high)
        if o.threshold is not None:
            lo, hi = (lo, min(hi, o.threshold)) if o.minimize else (max(lo, o.threshold), hi)
        log = p.type in ("logint", "loguniform")
        v = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if log else lo + u * (hi - lo)
        if p.type in INT_TYPES:
            return int(min(max(round(v), math.ceil(lo)), math.floor(hi)))
        return p.to_unit(v) if p.type in FLOAT_TYPES else v


def generation_strategy(init_trials: int, seed: int):
    """Sobol for exactly ``init_trials`` trials, then Ax's BoTorch generator (its defaults: what
    Ax's "fast" method uses) once one trial has run in full. Ax's own ``configure_generation_strategy``
    counts neither FAILED nor ABANDONED Sobol trials, so it replaces a trial stopped early and
    abandoned (with ASHA stopping most of them, a sweep stayed in Sobol); built here from Ax's
    public classes, a stopped Sobol trial is spent and only a failed one is replaced."""
    from ax.adapter.registry import Generators
    from ax.core.trial_status import TrialStatus
    from ax.generation_strategy.generation_node import GenerationNode
    from ax.generation_strategy.generation_strategy import GenerationStrategy
    from ax.generation_strategy.generator_spec import GeneratorSpec
    from ax.generation_strategy.transition_criterion import MaxTrialsAwaitingData, MinTrials

    bayes = GenerationNode(name="MBM", generator_specs=[GeneratorSpec(generator_enum=Generators.BOTORCH_MODULAR)],
                           should_deduplicate=True)
    if init_trials == 0:
        return GenerationStrategy(name="MBM", nodes=[bayes])
    failed = [TrialStatus.FAILED]
    sobol = GenerationNode(
        name="Sobol", generator_specs=[GeneratorSpec(generator_enum=Generators.SOBOL, generator_kwargs={"seed": seed})],
        transition_criteria=[
            MinTrials(threshold=init_trials, transition_to="MBM", use_all_trials_in_exp=False, not_in_statuses=failed),
            MinTrials(threshold=1, transition_to="MBM", use_all_trials_in_exp=True,
                      only_in_statuses=[TrialStatus.COMPLETED], count_only_trials_with_data=True)],
        pausing_criteria=[MaxTrialsAwaitingData(threshold=init_trials, not_in_statuses=failed, use_all_trials_in_exp=False)],
        should_deduplicate=True)
    return GenerationStrategy(name=f"Sobol({init_trials})+MBM", nodes=[sobol, bayes])


def make_client(space: Space, objectives: Sequence[Objective], seed: int, init_trials: int):
    """Ax's Client for the sweep: the space, the modelled objectives, ``generation_strategy``."""
    from ax.api.client import Client
    from ax.utils.common.logger import set_ax_logger_levels

    # Ax logs every trial at INFO and warns at each start (a seed is set, thresholds inferred): --verbose only
    set_ax_logger_levels(logging.INFO if quiet.verbose() else logging.ERROR)
    client = Client(random_seed=seed)
    client.configure_experiment(parameters=ax_parameters(space))
    objective, bounds = objective_string(objectives)
    client.configure_optimization(objective=objective, outcome_constraints=bounds or None)
    client.set_generation_strategy(generation_strategy(init_trials, seed))
    return client


def early_stopping(grace_period: int):
    """Ax's percentile rule on val_loss: at each epoch from ``grace_period`` on, a trial whose best
    val_loss so far is worse than the median of the trials' at that epoch stops (Ax's defaults
    otherwise: at least 5 trials with curves before the first stop)."""
    from ax.early_stopping.strategies import PercentileEarlyStoppingStrategy

    # Ax compares the latest epoch with min_progression strictly ("greater than")
    return PercentileEarlyStoppingStrategy(metric_signatures=[METRIC], percentile_threshold=50.0,
                                           min_progression=grace_period - 0.5)


class Quiet:
    """Ax's own calls raise pandas' and Ax's deprecation notes (docs/search.md): --verbose only.
    One thread for BoTorch while it works (``PROPOSAL_THREADS``)."""

    def __enter__(self):
        import torch

        self._threads = torch.get_num_threads()
        torch.set_num_threads(PROPOSAL_THREADS)
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        if not quiet.verbose():
            warnings.filterwarnings("ignore", module=_QUIET_MODULES)
        return self

    def __exit__(self, *exc):
        import torch

        self._w.__exit__(*exc)
        torch.set_num_threads(self._threads)


class AxSearch(Searcher):
    """Bayesian search with Ax's Client, by ask (``suggest``) and tell (``on_trial_complete``).
    Its proposals reach Tune in real values (Ray's tables and files print them); Ax keeps its
    encoding."""

    CKPT_FILE_TMPL = SEARCHER_STATE

    def __init__(self, space: Space, objectives: Sequence[Objective], seed: int, init_trials: int,
                 stop_early: bool = False, grace_period: int = 1, stopped: str = "abandon"):
        super().__init__(metric=METRIC, mode="min")
        self._args = (space, list(objectives), seed, init_trials, stop_early, grace_period, stopped)
        self._space, self._init_trials = space, init_trials
        self._modelled = [o.key for o in objectives if not o.is_param]
        self._levels = KnownLevels(space, objectives)
        self._stop_early, self._grace_period, self._fit_stopped = stop_early, grace_period, stopped == "fit"
        self._live: dict[str, int] = {}  # Tune trial id -> Ax trial index
        self._proposals: list[dict] = []
        self._points = space.points_flat()  # the space's own points, tried first
        with Quiet():
            self._client = make_client(space, objectives, seed, init_trials)
            if stop_early:
                self._client.set_early_stopping_strategy(early_stopping(grace_period))

    def __reduce__(self):  # pickled as its arguments: the state lives in Ax's JSON (save/restore)
        return type(self), self._args

    # ---- ask
    def _sobol_spent(self) -> int:
        """Sobol trials that count against the budget: every one but the failed (replaced)."""
        df = self._client.summarize()
        if "generation_node" not in df:
            return 0
        return int(((df["generation_node"] == "Sobol") & (df["trial_status"] != "FAILED")).sum())

    def suggest(self, trial_id: str) -> dict | None:
        from ax.exceptions.core import DataRequiredError

        wall, cpu = time.perf_counter(), time.process_time()
        fixed = None
        with Quiet():
            if self._points:
                params = self._points.pop(0)
                index, generator = self._client.attach_trial(parameters=params), "Manual"
            else:
                bayesian = self._levels and self._sobol_spent() >= self._init_trials
                if bayesian:
                    fixed = self._levels.fixed(sum(p.get("fixed") is not None for p in self._proposals))
                try:
                    (index, params), = self._client.get_next_trials(max_trials=1, fixed_parameters=fixed).items()
                except DataRequiredError:  # every Sobol trial proposed, none finished yet: Tune waits
                    return None
                generator = str(self._client.summarize(trial_indices=[index])["generation_node"].iloc[0])
        self._live[trial_id] = index
        self._proposals.append({"trial_id": trial_id, "ax_trial": index, "generator": generator,
                                "fixed": fixed or None,
                                "wall_s": round(time.perf_counter() - wall, 4),
                                "cpu_s": round(time.process_time() - cpu, 4)})
        return nest(self._space.from_searcher(params))

    # ---- tell
    def should_stop(self, trial_id: str, result: dict) -> bool:
        """Ax's early-stopping verdict on a running trial, its val_loss curve attached epoch by
        epoch (``AxEarlyStopping`` asks after every epoch)."""
        index, value = self._live.get(trial_id), result.get(METRIC)
        if index is None or not _finite(value):
            return False
        with Quiet():
            self._client.attach_data(trial_index=index, raw_data={METRIC: float(value)},
                                     progression=int(result.get("epochs_total", 0)))
            return self._client.should_stop_trial_early(trial_index=index)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        index = self._live.pop(trial_id, None)
        if index is None:
            return
        with Quiet():
            if error or not result:  # crashed or diverged: FAILED (in the Sobol phase, replaced)
                self._client.mark_trial_failed(trial_index=index, failed_reason=f"trial {trial_id} failed")
            elif not result.get(FINAL):  # stopped by the scheduler: abandoned, or fitted with its last value
                if _finite(result.get(METRIC)) and self._fit_stopped:
                    self._client.attach_data(trial_index=index, raw_data={METRIC: float(result[METRIC])},
                                             progression=int(result.get("epochs_total", 0)))
                    self._client.mark_trial_early_stopped(trial_index=index)
                else:
                    self._client.mark_trial_abandoned(trial_index=index)
            elif all(_finite(result.get(k)) for k in self._modelled):
                self._client.complete_trial(trial_index=index, raw_data={k: float(result[k]) for k in self._modelled},
                                            progression=int(result.get("epochs_total", 0)))
            else:  # ran in full without a finite objective: nothing to fit, not proposed again
                self._client.mark_trial_abandoned(trial_index=index)

    # ---- state
    def save(self, checkpoint_path: str) -> None:
        with Quiet(), tempfile.TemporaryDirectory(dir=os.path.dirname(checkpoint_path) or ".") as tmp:
            snap = Path(tmp) / "ax.json"
            self._client.save_to_json_file(str(snap))
            ax = json.loads(snap.read_text())
        files.write_json(Path(checkpoint_path), {"format": STATE_FORMAT, "ax": ax, "live": self._live,
                                                  "points": self._points, "proposals": self._proposals})

    def restore(self, checkpoint_path: str) -> None:
        state = read_state(Path(checkpoint_path))
        with Quiet():
            self._client = client_from_state(state)
            if self._stop_early:  # not part of Ax's snapshot
                self._client.set_early_stopping_strategy(early_stopping(self._grace_period))
        self._live, self._points, self._proposals = state["live"], state["points"], state["proposals"]


def client_from_state(state: dict):
    """Ax's Client back from a saved searcher state (``read_state``), through Ax's own JSON loader."""
    from ax.api.client import Client

    with tempfile.TemporaryDirectory() as tmp:
        snap = Path(tmp) / "ax.json"
        snap.write_text(json.dumps(state["ax"]))
        return Client.load_from_json_file(str(snap))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class AxEarlyStopping(FIFOScheduler):
    """Ax's own early stopping as a Tune scheduler: after each epoch it asks the searcher, which
    attaches the epoch's value to the trial in Ax and asks Ax (``AxSearch.should_stop``). Like
    ``FinishingASHA``, it never stops a trial at its last epoch, which ends by itself."""

    def __init__(self, searcher: AxSearch, max_epochs: int):
        super().__init__()
        self.searcher, self.max_epochs = searcher, max_epochs

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(FINAL) or result.get("epochs_total", 0) >= self.max_epochs:
            return TrialScheduler.CONTINUE
        return TrialScheduler.STOP if self.searcher.should_stop(trial.trial_id, result) else TrialScheduler.CONTINUE
