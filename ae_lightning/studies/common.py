"""What every study shares: its options, training through ``fit.fit`` with a cache, data and evaluation.

A study never trains by hand: ``ctx.train(variant, **overrides)`` resolves a config with
``resolve.load`` (defaults, the variant's yaml, the study's options, the study's overrides), trains
it with ``fit.fit`` and loads the best checkpoint back with ``models.load_checkpoint``. Runs are
cached by their resolved config, so inside ``all`` a model that several studies use (the same
resolved config) trains once. Nothing here names a variant or a study: what differs by model is a
declared ability of its class (e.g. ``cheap_evaluation``), what differs by study lives in the study.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from ae_lightning import config as config_mod
from ae_lightning import dotted, resolve
from ae_lightning.callbacks import DivergedError
from ae_lightning.data import DATASETS, MNISTDataModule
from ae_lightning.datafiles import check_folder
from ae_lightning.errors import UserError
from ae_lightning.fit import RunResult, fit
from ae_lightning.metrics import ReconMetrics
from ae_lightning.models import get_module, load_checkpoint
from ae_lightning.rundir import run_root
from ae_lightning.studies import Study
from ae_lightning.studies.report import Report
from ae_lightning.text import plural

Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]


@dataclasses.dataclass
class Options:
    """The options every study takes (the CLI's flags)."""

    dataset: str | None = None  # None: the dataset of the original study
    epochs: int = 5
    subset: int | None = None  # training images (None: all but the validation hold-out)
    test_subset: int | None = None  # test images used for metrics, maps and neighbours
    seed: int = 0
    out: str = "studies"
    accelerator: str = "auto"
    data_dir: str | None = None
    variant: str | None = None
    batch_size: int | None = None
    runs_dir: str | None = None  # None: <out>/runs
    latents: list[int] | None = None  # compression / inversion sizes (None: each study's defaults)
    # a preset (``reproduce``): config overrides under every run (dotted keys), and the study's own
    # parameters (e.g. ``choices``, ``models``), checked against the study's ``Params`` dataclass
    # and read as ``ctx.params.<name>``
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    resume: bool = False  # reuse finished runs found under runs_dir with the same config; continue unfinished ones

    def check(self) -> None:
        """Every bad option is one clear line naming the flag."""
        if self.dataset is not None and self.dataset not in DATASETS:
            raise UserError(f"--dataset {self.dataset!r}: choose one of {', '.join(DATASETS)}")
        for flag, value in (("--epochs", self.epochs), ("--subset", self.subset),
                            ("--test-subset", self.test_subset), ("--batch-size", self.batch_size)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise UserError(f"{flag} must be a positive integer, got {value!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if self.accelerator not in get_args(Accelerator):
            raise UserError(f"--accelerator {self.accelerator!r}: choose one of {', '.join(get_args(Accelerator))}")
        if self.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
            raise UserError(f"--accelerator {self.accelerator}: this machine has no CUDA GPU (use cpu or auto)")
        check_folder(self.data_dir)
        if self.variant is not None and self.variant not in config_mod.variants():
            raise UserError(f"--variant {self.variant!r}: choose one of {', '.join(config_mod.variants())}")


@dataclasses.dataclass
class Trained:
    """A finished run: its resolved config, ``metrics.json`` and the best checkpoint's module."""

    cfg: dict
    metrics: dict
    module: Any  # the LightningModule, eval mode, on ctx.device
    run_dir: Path


def _key(cfg: dict) -> str:
    c = json.loads(json.dumps(cfg))
    c["trainer"].pop("output_dir", None)
    return json.dumps(c, sort_keys=True)


class Context:
    """One study's run: its options, its report, and the shared run cache."""

    def __init__(self, study: Study, opts: Options, out_dir: Path, cache: dict[str, Trained] | None = None,
                 tensorboard: bool = True):
        self.study, self.opts, self.dir = study, opts, Path(out_dir)
        self.dataset = opts.dataset or study.dataset
        if opts.variant is not None and study.variant is None:
            raise UserError(f"study {study.name}: --variant is not an option here (it trains its own fixed set of models)")
        self.variant = opts.variant or study.variant or None  # "" : every variant unless --variant
        self.cache = {} if cache is None else cache
        self.params = study.make_params(opts.params, "params")  # typed: ctx.params.<name>
        self.runs_dir = Path(opts.runs_dir) if opts.runs_dir else Path(opts.out) / "runs"
        cuda = opts.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        self.device = torch.device("cuda" if cuda else "cpu")
        self.report = Report(self.dir, study.title, tensorboard=tensorboard)
        self.trained: list[dict] = []  # every run this study used, for results.json
        self._dms: dict[str, MNISTDataModule] = {}

    # -- configs and training ----------------------------------------------------------------------
    def config(self, variant: str | None = None, **overrides: Any) -> dict:
        """A resolved config: the variant's, with the study's options and ``overrides`` (dotted keys
        written with ``__``: ``model__latent_dim=8``) on top."""
        o = self.opts
        base: dict[str, Any] = {"data.dataset": self.dataset, "seed": o.seed, "trainer.max_epochs": o.epochs,
                                "trainer.accelerator": o.accelerator, "trainer.output_dir": str(self.runs_dir),
                                "trainer.progress_bar": False}
        for key, value in (("data.data_dir", o.data_dir), ("data.subset", o.subset),
                           ("data.test_subset", o.test_subset), ("data.batch_size", o.batch_size)):
            if value is not None:
                base[key] = value
        base.update(o.overrides)
        base.update({k.replace("__", "."): v for k, v in overrides.items()})
        cfg = resolve.load(variant or self.variant, None, base)
        # a module's costly evaluation settings that no study reads, made cheap unless a run sets them
        cheap = {k: v for k, v in dotted.flatten({"model": get_module(cfg["module"]).cheap_evaluation}).items()
                 if k not in base}
        return resolve.load(variant or self.variant, None, {**base, **cheap}) if cheap else cfg

    def train(self, variant: str | None = None, label: str = "", allow_diverge: bool = False,
              **overrides: Any) -> Trained | None:
        """Train (or reuse) one run through ``fit.fit``; ``None`` if it diverged and that is allowed."""
        return self.train_config(self.config(variant, **overrides), label, allow_diverge)

    def train_config(self, cfg: dict, label: str = "", allow_diverge: bool = False) -> Trained | None:
        key = _key(cfg)
        if key not in self.cache:
            t0, name = time.time(), f"[{self.study.name}] {label or cfg['variant']}"  # its epoch lines' prefix
            done, unfinished = self._on_disk(key, cfg) if self.opts.resume else (None, None)
            try:
                if done is not None:
                    res = done
                elif unfinished is not None:
                    res = fit(cfg, run_dir=unfinished, ckpt_path=unfinished / "checkpoints" / "last.ckpt", label=name)
                else:
                    res = fit(cfg, label=name)  # verbose: the command's --verbose
            except DivergedError as e:
                if not allow_diverge:
                    raise UserError(f"study {self.study.name}: {label or cfg['variant']} diverged ({e})") from None
                print(f"[{self.study.name}] {label}: diverged ({e})", file=sys.stderr)
                self.trained.append({"label": label, "variant": cfg["variant"], "diverged": str(e)})
                return None
            module, _ = load_checkpoint(res.metrics["best_checkpoint"], map_location=self.device)
            self.cache[key] = Trained(cfg, res.metrics, module.to(self.device).eval(), res.run_dir)
            shown = " ".join(f"{k}={v:.4g}" for k, v in res.metrics.items()
                             if k in ("test_nrmse", "test_loss", "test_acc") and isinstance(v, float))
            print(f"{name}: {shown} "
                  f"({plural(res.metrics['epochs'], 'epoch')}, {time.time() - t0:.1f} s)", file=sys.stderr)
        run = self.cache[key]
        self.trained.append({"label": label, "variant": cfg["variant"], "run_dir": str(run.run_dir),
                             "epochs": run.metrics.get("epochs"), "wall_time_s": run.metrics.get("wall_time_s"),
                             "test_metrics": {k: v for k, v in run.metrics.items() if k.startswith("test_")}})
        return run

    def _on_disk(self, key: str, cfg: dict):
        """``--resume``: a finished run of this exact config under ``runs_dir`` (its RunResult), or
        else an unfinished one with a ``last.ckpt`` to continue (its folder)."""
        unfinished = None
        runs = sorted(run_root(cfg).glob("version_*"), key=lambda p: int(p.name[8:]) if p.name[8:].isdigit() else -1)
        def same(stored: dict) -> bool:  # re-validated: keys added since (with their defaults) match
            return _key(resolve.validate(stored)) == key

        for run_dir in runs:
            try:
                if (run_dir / "metrics.json").is_file():
                    metrics = json.loads((run_dir / "metrics.json").read_text())
                    if same(metrics["config"]) and Path(metrics.get("best_checkpoint") or "").is_file():
                        return RunResult(run_dir, metrics), None
                elif (run_dir / "checkpoints" / "last.ckpt").is_file():
                    if same(config_mod.load_yaml(run_dir / "config.yaml")):
                        unfinished = run_dir
            except (OSError, ValueError, KeyError, UserError):
                continue  # a half-written or foreign folder is not this run
        return None, unfinished

    # -- data --------------------------------------------------------------------------------------
    def datamodule(self, cfg: dict) -> MNISTDataModule:
        key = json.dumps(cfg["data"], sort_keys=True)
        if key not in self._dms:
            dm = MNISTDataModule(**cfg["data"])
            dm.setup()
            self._dms[key] = dm
        return self._dms[key]

    def tensors(self, cfg: dict, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x (N,1,28,28) in [0,1], labels (N,))`` of a split, on the study's device."""
        return self.datamodule(cfg).tensors(split, self.device, limit)

    def split_metrics(self, run: Trained) -> dict[str, dict[str, float]]:
        """``recon_metrics`` of a trained run on its training split and on its test split."""
        return {split: recon_metrics(run.module, self.tensors(run.cfg, split)[0]) for split in ("train", "test")}

    # -- the report's frame ------------------------------------------------------------------------
    def base_model(self, results: dict) -> dict:
        """The model section of the study's own config: as measured, or resolved again for older results."""
        return results.get("model") or self.config()["model"]

    def settings_text(self, s: dict) -> str:
        """The settings line, from results.json's ``settings`` (the measuring call's device)."""
        o = self.opts
        on_test = o.overrides.get("data.validation") == "test"
        everything = "all (validated on the test file)" if on_test else "all (minus the validation hold-out)"
        parts = [f"dataset `{s['dataset']}`", f"{plural(s['epochs'], 'epoch')} per run"
                 + (" (unless a model sets its own)" if "models" in o.params else ""),
                 f"training images: {s['subset'] if s['subset'] else everything}",
                 f"test images: {s['test_subset'] or 'all'}", f"seed {s['seed']}", f"device `{s['device']}`"]
        if s["variant"]:
            parts.insert(1, f"variant `{s['variant']}`")
        return "Settings: " + ", ".join(parts) + "."


def command_line(argv: list[str]) -> str:
    return "python -m ae_lightning.studies " + shlex.join(argv)


@torch.no_grad()
def recon_metrics(module: Any, x: torch.Tensor, noisy: torch.Tensor | None = None,
                  batch_size: int = 4096) -> dict[str, float]:
    """Exact split-level mse / nrmse / rel_error (``ae_lightning.metrics``) of ``module`` on ``x``
    ``(N,1,28,28)``; the input is ``noisy`` when given (denoising), the target always ``x``."""
    m = ReconMetrics()
    src = x if noisy is None else noisy
    for i in range(0, len(x), batch_size):
        out = module.output(module.decode(module.encode(src[i:i + batch_size])))
        m.update(out, x[i:i + batch_size])
    return {k: float(v) for k, v in m.compute().items()}

