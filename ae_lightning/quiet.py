"""Quiet by default: progress bars and the project's own lines, not third-party banners.

At the default verbosity of train.py, ``python -m ae_lightning.studies`` and ``python -m search.tune``,
Lightning's INFO lines ("GPU available: ...", "TPU available: ...", the litlogger "Tip" advert, the
model summary, "Restoring states from the checkpoint ..."), Ray Train's "Checkpoint successfully
created" after every epoch of a trial, Ax's generator notes and seed warning
(``search.ax_searcher.make_client`` reads :func:`verbose`) and warnings that repeat every run
(Lightning's worker and logging-interval notes) are not shown; ``--verbose`` brings them back.
A torch-free leaf: the commands call :func:`set_verbose` before anything heavy is imported.
"""
from __future__ import annotations

import logging
import warnings

# INFO and below of these loggers are banners and adverts (warnings and errors still show)
LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning",
           "ray.train")  # a trial's "Checkpoint successfully created at: ..." every epoch
# warnings that every run would repeat, and that say nothing about this run
WARNINGS = (r".*smaller than the logging interval.*", r".*does not have many workers.*",
            r".*Checkpoint directory .* exists and is not empty.*", r".*LeafSpec.*",
            r".*The `srun` command is available.*", r".*which may be a bottleneck.*",
            r".*module\(s\) in eval mode at the start of training.*")  # frozen encoders

_verbose = False


def verbose() -> bool:
    """The command's ``--verbose`` (False unless it was given)."""
    return _verbose


def set_verbose(on: bool) -> None:
    """The command's verbosity, applied now and read by :func:`ae_lightning.fit.fit` later."""
    global _verbose
    _verbose = bool(on)
    apply(_verbose)


def apply(on: bool) -> None:
    """Third-party INFO lines and repeated warnings off (``on`` False) or back (True)."""
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if on else logging.WARNING)
    if on:
        return
    for pattern in WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
