#!/usr/bin/env python
"""Issue 14.1: where a sweep trial's fixed cost goes, inside the trial's worker process.

Runs, in one fresh process, what a Tune worker runs for a trial: the imports of the trainable,
then ``fit`` (the sweep's own path: ``search.trainable.ReportToTune`` with ``tune.report``
replaced by a local copy of its checkpoint, as Tune persists it) for ``--trials`` configs one
after another, as one reused worker does. Every phase is timed from inside (wall clock):

    imports        torch, lightning, ae_lightning.fit, search.trainable (first trial only)
    data           reading the IDX files (``ae_lightning.datafiles.load_split``; cached per process)
    setup          config, module, Trainer, TensorBoard logger, up to the first training batch
    train          the training batches of the epochs
    validation     the validation passes
    checkpoints    ModelCheckpoint saves (best, last) and the report's copy of last.ckpt
    test           ``trainer.test`` on the best checkpoint (10,000 test images)
    end            HParams, metrics.json, the rest of fit

    python benchmarks/profile_trial.py --data-dir ../shared/data --subset 5000 --threads 1
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--variant", default="fc")
    p.add_argument("--subset", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    t = time.perf_counter()
    import torch
    t_torch = time.perf_counter() - t
    t = time.perf_counter()
    import lightning as L
    t_lightning = time.perf_counter() - t
    t = time.perf_counter()
    from ae_lightning import datafiles as data_module
    from ae_lightning import fit as fit_module
    from ae_lightning.resolve import load
    t_project = time.perf_counter() - t
    t = time.perf_counter()
    from ray import tune

    from search import trainable
    t_trainable = time.perf_counter() - t
    torch.set_num_threads(args.threads)

    acc: dict[str, float] = {}

    def add(key: str, dt: float) -> None:
        acc[key] = acc.get(key, 0.0) + dt

    def timed(obj, name: str, key: str):
        orig = getattr(obj, name)

        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                add(key, time.perf_counter() - t)
        setattr(obj, name, wrapper)

    timed(data_module, "_load_split_cached", "data")
    timed(L.Trainer, "save_checkpoint", "checkpoints")
    timed(L.Trainer, "test", "test")

    class Phases(L.Callback):
        def on_train_start(self, trainer, pl_module):
            add("setup", time.perf_counter() - self.t_fit)

        def on_train_epoch_start(self, trainer, pl_module):
            self.t = time.perf_counter()

        def on_validation_start(self, trainer, pl_module):
            if not trainer.sanity_checking and trainer.state.fn == "fit":
                add("train", time.perf_counter() - self.t)
                self.tv = time.perf_counter()

        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking and trainer.state.fn == "fit":
                add("validation", time.perf_counter() - self.tv)

    def fake_report(metrics, checkpoint=None):  # what Tune does with the folder: persist a copy
        t = time.perf_counter()
        if checkpoint is not None:
            shutil.copytree(checkpoint.path, Path(tempfile.mkdtemp(prefix="persist-")) / "c")
        add("checkpoints", time.perf_counter() - t)

    tune.report = fake_report
    out = Path(tempfile.mkdtemp(prefix="profile-trial-"))
    rows = []
    for i in range(args.trials):
        acc.clear()
        cfg = load(args.variant, None, {"data.data_dir": args.data_dir, "data.download": False,
                                        "data.subset": args.subset, "trainer.max_epochs": args.epochs,
                                        "trainer.accelerator": "cpu", "trainer.images_every_n_epochs": 0,
                                        "trainer.progress_bar": False, "model.lr": 1e-3 * (1 + i)})
        run_dir = out / f"trial_{i}"
        ph = Phases()
        ph.t_fit = time.perf_counter()
        t = time.perf_counter()
        state = {"fold": 0, "epoch": 0, "fold_best": [None]}
        fit_module.fit(cfg, run_dir=run_dir, verbose=False,
                       callbacks=[ph, trainable.ReportToTune(run_dir, state, cfg, ["model.lr"], run_dir / "state.json")])
        total = time.perf_counter() - t
        add("setup", -acc.get("data", 0.0))  # data loading happens inside the setup window
        acc["end"] = total - sum(acc.values())
        acc["total"] = total
        rows.append(dict(acc))
    shutil.rmtree(out, ignore_errors=True)

    from common import machine  # here: it imports torch and lightning, which are timed above
    print(f"# {machine()}")
    print(f"# {args.variant}, {args.epochs} epoch(s) on {args.subset} images, {args.trials} trials in one process, "
          f"{args.threads} thread(s); wall seconds")
    print(f"imports (first trial only): torch {t_torch:.2f}, lightning {t_lightning:.2f}, ae_lightning {t_project:.2f}, "
          f"ray.tune + search.trainable {t_trainable:.2f} = {t_torch + t_lightning + t_project + t_trainable:.2f}")
    keys = ["data", "setup", "train", "validation", "checkpoints", "test", "end", "total"]
    print(f"{'trial':<8}" + "".join(f"{k:>12}" for k in keys) + f"{'beyond train':>14}")
    for i, r in enumerate(rows):
        print(f"{i:<8}" + "".join(f"{r.get(k, 0.0):12.3f}" for k in keys) + f"{r['total'] - r.get('train', 0):14.3f}")


if __name__ == "__main__":
    main()
