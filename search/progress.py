"""What a sweep's driver prints while it runs.

By default one line per trial that ends, on stderr, as train.py prints one line per epoch in a log:

    trial 3/8 trial_4f2a1_00002 completed: best_val_loss 0.02242, 2 epochs, 5.1 s | model.lr=0.008145 model.weight_decay=2.233e-06

With ``--verbose``, Ray Tune's status tables too, every 30 seconds and at the end. Those are the
tables of Tune's ``CLIReporter`` (its older output engine): the newer engine's tables, which Tune
shows by default, print a result's floats with five decimals (a searched weight decay of 1.5e-06
reads 0) and take no reporter of the caller's, so the sweep turns that engine off. The
``CLIReporter`` hands floats to ``tabulate``, which prints six significant digits; its columns are
the searched keys (by their dotted names) and the objectives.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ray import tune

from ae_lightning.text import plural
from search.results import DIVERGED, FINAL, METRIC, error_line
from search.space import Space, split_key

TABLE_EVERY_S = 30  # Tune's own default is 5 s: a long sweep's log would be mostly tables


def value_text(value: Any) -> str:
    """A searched value or a metric as the sweep prints it: floats to four significant digits
    (``2.233e-06``, never a rounded ``0``), anything else as it is."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def values_text(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={value_text(v)}" for k, v in values.items())


def tables(space: Space) -> tune.CLIReporter:
    """Tune's status table (``--verbose``): the searched keys, the epoch and the objectives."""
    params = {"/".join(split_key(k)): k for k in space.params}
    metrics = {"epochs_total": "epochs", METRIC: METRIC,
               **{o.key: o.key for o in space.objectives if not o.is_param and o.key != METRIC}}
    # the metric and mode of its "current best trial" line: the TuneConfig's, which Tune passes on
    # the table in every report, whatever Tune's global verbosity was when this reporter was built
    return tune.CLIReporter(parameter_columns=params, metric_columns=metrics, max_report_frequency=TABLE_EVERY_S,
                            print_intermediate_tables=True)


class TrialLines(tune.Callback):
    """One line on stderr per trial that ends (completed, stopped early, diverged or failed) and per
    crash that its FailureConfig retries: what a log of the sweep keeps instead of Tune's tables."""

    def __init__(self, space: Space, total: int):
        self.space, self.total = space, total
        self.started: dict[str, float] = {}
        self.shown: set[str] = set()

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.started.setdefault(trial.trial_id, time.monotonic())

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        # the final result, not the trial's completion: a sweep that a budget ends stops at the
        # result that reached it, and Tune never reports that trial complete
        if result.get(FINAL):
            self._print(trial, "completed", self._figures(result))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        last = trial.last_result or {}
        self._print(trial, "completed" if last.get(FINAL) else "stopped early", self._figures(last))

    def on_experiment_end(self, trials: list, **info) -> None:  # a trial that --time-budget stopped
        for trial in trials:
            if trial.status == "TERMINATED":
                self.on_trial_complete(0, trials, trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        reason = self._reason(trial)
        diverged = "DivergedError" in reason or bool(trial.path and (Path(trial.path) / DIVERGED).is_file())
        self._print(trial, "diverged" if diverged else "failed",
                    reason.split("DivergedError: ", 1)[-1] or f"see {trial.error_file}")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        print(f"{trial} crashed ({self._reason(trial)}): retried from its last checkpoint", file=sys.stderr, flush=True)

    def _figures(self, last: dict) -> str:
        keys = [METRIC, *(o.key for o in self.space.objectives if not o.is_param and o.key != METRIC)]
        shown = [f"{k} {value_text(last[k])}" for k in keys if last.get(k) is not None]
        return ", ".join([*shown, plural(last.get("epochs_total", 0), "epoch")])

    def _print(self, trial, status: str, what: str) -> None:
        if trial.trial_id in self.shown:
            return
        self.shown.add(trial.trial_id)
        seconds = time.monotonic() - self.started.get(trial.trial_id, time.monotonic())
        decoded = self.space.decode(trial.config)
        searched = {k: decoded[k] for k in self.space.params if k in decoded}
        print(f"trial {len(self.shown)}/{self.total} {trial} {status}: {what}, {seconds:.1f} s | {values_text(searched)}",
              file=sys.stderr, flush=True)

    @staticmethod
    def _reason(trial) -> str:
        try:
            return error_line(Path(trial.error_file).read_text(errors="replace")) if trial.error_file else ""
        except OSError:
            return ""
