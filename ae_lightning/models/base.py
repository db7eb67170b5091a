"""The two base LightningModules every variant builds on.

``BaseModule`` owns the optimizer, the LR scheduler and the shared hyperparameters; the latent
classifier derives from it directly. ``AutoencoderModule`` adds the one training / validation /
test loop of every autoencoder and its logging. A variant overrides only what differs:

    encode(x)  (B,C,H,W) in [0,1]    -> code z (B, latent_dim)
    decode(z)  (B, latent_dim)       -> logits (B,C,H,W), before the output activation
    loss(x, stage)                   -> (scalar loss, LossOutput(x_hat, z, log={name: scalar}))
    corrupt(x, stage)                -> the model's input (the identity but for denoising)

Optional abilities are declared on ``BaseModule`` with their "absent" default, so callers read
them plainly (no probing): ``encode_all`` (None: no codes), ``sample`` and ``prior_std`` (None: no
prior), ``prepare_for_data``, ``selectable_epoch``, ``ddp_find_unused_parameters``,
``hparam_options_unused``; an autoencoder's ``corrupt``, ``encoder`` and ``decoder``.

(C,H,W) is the module's ``input_shape``, the data module's ``dims`` (1x28x28 for MNIST and
Fashion-MNIST): a constructor argument beside the options, not a config key, since the data decides it.

Conventions (losses per element, metrics exact over a split) are in ``ae_lightning.metrics``.
Batches are ``(x, y)`` from ``MNISTDataModule``; labels are ignored by autoencoders.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, Sequence

import lightning as L
import numpy as np
import torch

from ae_lightning.configs.base import BaseConfig
from ae_lightning.datafiles import IMAGE_SHAPE
from ae_lightning.metrics import BatchMeans, ReconMetrics, reconstruction_loss


@dataclasses.dataclass
class LossOutput:
    """What ``loss(x, stage)`` returns beside the scalar loss: the reconstruction ``x_hat`` in pixel
    scale (None where a step has none, e.g. a deeper layer stage of ``randomized``), the code ``z``
    (None where there is none) and the scalars to log as ``<stage>/<name>``."""

    x_hat: torch.Tensor | None
    z: torch.Tensor | None = None
    log: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


def lr_factor(hp: dict[str, Any], max_epochs: int, epoch: int) -> float:
    """The lr multiplier during ``epoch`` (0-based): 1 for the first ``lr_decay_start`` epochs, then
    ``cosine`` to 0 at ``max_epochs``, ``step`` (x ``lr_gamma`` every ``lr_step_size`` epochs) or
    ``exponential`` (x ``lr_gamma`` every epoch)."""
    e = epoch - hp["lr_decay_start"]
    if e <= 0:
        return 1.0
    if hp["lr_scheduler"] == "cosine":
        span = max(1, max_epochs - hp["lr_decay_start"])
        return 0.5 * (1.0 + math.cos(math.pi * min(e, span) / span))
    if hp["lr_scheduler"] == "step":
        return hp["lr_gamma"] ** (e // hp["lr_step_size"])
    return hp["lr_gamma"] ** e  # exponential


class BaseModule(L.LightningModule):
    """Optimizer and scheduler settings shared by every module of the project, and the optional
    abilities a module may have, each declared here as absent."""

    # DDP: a module whose steps leave some trainable parameters unused (the randomized variant's
    # layer-wise stages) sets this; the others skip DDP's search for them
    ddp_find_unused_parameters: ClassVar[bool] = False
    # dotted config keys that mean nothing for this module, left out of the HParams tab (the VAE's
    # objective is set by model.likelihood, not model.loss)
    hparam_options_unused: ClassVar[tuple[str, ...]] = ()

    Config: ClassVar[type] = BaseConfig  # the model section's dataclass (set by models.register)
    # ``model`` values that make a costly evaluation cheap, for runs that read none of its figures (the
    # studies use them unless a run sets the key); e.g. the VAE's importance-sampled test NLL
    cheap_evaluation: ClassVar[dict[str, Any]] = {}
    # the prior over codes is N(0, prior_std² I): latent traversals sweep ±3 prior_std; None: no prior (only the VAE has one)
    prior_std: ClassVar[float | None] = None

    def __init__(self, input_shape: Sequence[int] = IMAGE_SHAPE, **options: Any):
        """``options``: the fields of the module's config (``Config``, checked with the run config;
        missing ones take its defaults), saved as the hyperparameters every checkpoint keeps.
        ``input_shape``: (C, H, W) of the images, the data module's ``dims`` (``fit.build`` passes
        them); saved with the options, so ``load_from_checkpoint`` rebuilds the same module. A
        checkpoint written before it was saved has none: it was trained on the default, MNIST's."""
        super().__init__()
        shape = tuple(int(n) for n in input_shape)
        if len(shape) != 3 or min(shape) <= 0:
            raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
        self.save_hyperparameters({**dataclasses.asdict(self.Config(**options)), "input_shape": shape})

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input image."""
        return tuple(self.hparams.input_shape)

    @property
    def input_size(self) -> int:
        """C * H * W: the length of a flattened input image (the first fully connected layer's)."""
        return math.prod(self.input_shape)

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        kw = {"lr": hp.lr, "weight_decay": hp.weight_decay}
        if hp.get("eps") is not None:  # e.g. Keras' 1e-7 (torch's Adam: 1e-8); SGD has none (BaseConfig.check)
            kw["eps"] = hp.eps
        opt = {
            "adam": lambda: torch.optim.Adam(params, **kw),
            "adamw": lambda: torch.optim.AdamW(params, **kw),
            "sgd": lambda: torch.optim.SGD(params, momentum=hp.momentum, **kw),
            "adagrad": lambda: torch.optim.Adagrad(params, **kw),
            "adadelta": lambda: torch.optim.Adadelta(params, **kw),
            "rmsprop": lambda: torch.optim.RMSprop(params, momentum=hp.momentum, **kw),
        }[hp.optimizer]()
        if hp.lr_scheduler == "none":
            return opt
        if hp.lr_scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=hp.lr_gamma, patience=2)
        else:
            epochs = max(1, self.trainer.max_epochs or 1) if self._trainer is not None else 1
            sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(lr_factor, dict(hp), epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch", "monitor": "val/loss"}}

    def selectable_epoch(self, epoch: int) -> bool:
        """Whether the model after ``epoch`` (0-based) may be kept as the run's best checkpoint.
        Every epoch, except in a model built in stages that is not complete yet (``randomized``)."""
        return True

    def prepare_for_data(self, dm) -> None:
        """Called by ``fit.build`` with the run's datamodule before training (e.g. the classifier
        checks the dataset and serves cached codes). Nothing by default."""

    def encode_all(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor | None:
        """Codes of a whole tensor of images (for the embedding, probes and studies); None for a
        module without codes."""
        return None

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """``n`` images (n,C,H,W) from the model's prior; None for a module without one (only the
        VAE has one)."""
        return None

    def confusion_matrix(self, stage: str) -> np.ndarray | None:
        """The last ``stage`` epoch's (C, C) confusion counts over the whole split (rows = true
        class), for ``callbacks.ConfusionFigures``; None for a module that does not classify."""
        return None

    def log_reduced(self, name: str, value: Any, **kwargs) -> None:
        """Log an epoch-level figure that is already reduced over every DDP rank (the computed
        torchmetrics of ``ae_lightning.metrics``, whose states are summed / min'ed / max'ed exactly
        over the ranks): identical on each rank, so Lightning's ``sync_dist`` with ``max`` returns it
        unchanged (and keeps Lightning from warning that an epoch-level value is not synced). One
        process: a plain ``self.log``."""
        self.log(name, value, sync_dist=True, reduce_fx="max", **kwargs)


class AutoencoderModule(BaseModule):
    """The loop of every autoencoder: loss, exact reconstruction metrics, logging."""

    # the variant's encoder and decoder as one module each (studies read their layers), or None where
    # it has no single one (the VAE's encoder, the randomized variant's per-layer stages)
    encoder: torch.nn.Module | None
    decoder: torch.nn.Module | None

    def __init__(self, **options: Any):
        super().__init__(**options)
        # None until the variant assigns its module (nn.Module then registers it as a submodule; a
        # class attribute would shadow that)
        self.encoder = self.decoder = None
        self.metrics = {"val": ReconMetrics(), "test": ReconMetrics()}
        self.eval_means = {"val": BatchMeans(), "test": BatchMeans()}  # <stage>/loss and its terms

    # -- the variant contract: a subclass defines encode(x) -> z and decode(z) -> logits -------------
    def output(self, logits: torch.Tensor) -> torch.Tensor:
        act = self.hparams.output_act
        return torch.sigmoid(logits) if act == "sigmoid" else torch.tanh(logits) if act == "tanh" else logits

    def corrupt(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` (B,C,H,W) in pixel scale."""
        return self.output(self.decode(self.encode(x)))

    def reconstruction(self, logits: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_hat, mean-per-element loss)`` from decoder logits against the clean target ``x``."""
        x_hat = self.output(logits)
        sigmoid_logits = logits if self.hparams.output_act == "sigmoid" and self.hparams.loss == "bce" else None
        return x_hat, reconstruction_loss(self.hparams.loss, x_hat, x, sigmoid_logits)

    def loss(self, x: torch.Tensor, stage: str) -> tuple[torch.Tensor, LossOutput]:
        z = self.encode(self.corrupt(x, stage))
        x_hat, rec = self.reconstruction(self.decode(z), x)
        return rec, LossOutput(x_hat, z)

    # -- the loop ----------------------------------------------------------------------------------
    def _log_terms(self, stage: str, loss: torch.Tensor, out: LossOutput, batch_size: int) -> None:
        """Evaluation: ``<stage>/loss`` and its terms, summed on the device (no sync per batch) and
        logged as exact split means, reduced over the DDP ranks, at the epoch's end (_log_metrics)."""
        self.eval_means[stage].update({"loss": loss, **out.log}, batch_size)

    def training_step(self, batch, batch_idx):
        x, _ = batch
        loss, out = self.loss(x, "train")
        self._log_train(loss, out, x.shape[0], batch_idx)
        return loss

    def _log_train(self, loss: torch.Tensor, out: LossOutput, batch_size: int, batch_idx: int) -> None:
        """The training scalars of ``self.log(on_step=True, on_epoch=True)`` without its per-step cost.

        Profiled (docs/benchmarks.md): every ``self.log`` call is Python work (metadata checks,
        moving Lightning's accumulator to the device), and a ``prog_bar`` value is turned into a
        number, a device sync, after *every* step even when no bar is shown. So the step sums are
        accumulated here on the device (one op per step, no sync); Lightning gets ``train/loss_step``
        only on the steps its loggers write (``log_every_n_steps``), and the weighted epoch means
        (``train/loss_epoch`` and ``train/<term>``) once, at the epoch's last batch.
        """
        trainer = self._trainer
        if trainer is None:  # a bare module (benchmarks' plain loop, notebooks): nothing to log into
            return
        if getattr(self, "_train_acc_epoch", None) != self.current_epoch:
            self._train_acc_epoch, self._train_sum, self._train_n = self.current_epoch, None, 0
        terms = {"loss": loss, **out.log}
        vals = torch.stack([torch.as_tensor(v).detach().to(loss.device, torch.float32) for v in terms.values()])
        self._train_sum = vals * batch_size if self._train_sum is None else self._train_sum.add_(vals, alpha=batch_size)
        self._train_n, self._train_names = self._train_n + batch_size, list(terms)
        bar = trainer.progress_bar_callback is not None  # a shown bar reads its values every step
        every = trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=batch_size, prog_bar=bar)
        if batch_idx + 1 >= trainer.num_training_batches:
            self._log_train_epoch(self._train_names, bar)

    def _log_train_epoch(self, names: list[str], bar: bool) -> None:
        means = self._train_sum / self._train_n
        for i, name in enumerate(names):
            key = "train/loss_epoch" if name == "loss" else f"train/{name}"
            # once per epoch; DDP: the mean of the ranks' means, which is exact (equal shards)
            self.log(key, means[i], on_step=False, on_epoch=True, batch_size=1, prog_bar=bar and name == "loss",
                     sync_dist=True)
        self._train_n = 0  # logged: on_train_epoch_end's fallback has nothing left to do

    def on_train_epoch_end(self) -> None:
        # fallback for an epoch that ended before its last batch (its means are logged here instead)
        if getattr(self, "_train_n", 0) and self._train_sum is not None:
            self._log_train_epoch(self._train_names, False)

    def _eval_step(self, batch, stage: str):
        x, _ = batch
        loss, out = self.loss(x, stage)
        self._log_terms(stage, loss, out, x.shape[0])
        self.metrics[stage].update(out.x_hat, x)
        return out

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        for name, value in self.eval_means[stage].compute().items():  # reduced over the DDP ranks
            self.log_reduced(f"{stage}/{name}", value, prog_bar=name == "loss" and stage != "test")
        self.eval_means[stage].reset()
        for name, value in self.metrics[stage].compute().items():  # reduced over the DDP ranks
            self.log_reduced(f"{stage}/{name}", value)
        self.metrics[stage].reset()

    def on_validation_epoch_start(self) -> None:
        self.metrics["val"].reset()
        self.eval_means["val"].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_start(self) -> None:
        self.metrics["test"].reset()
        self.eval_means["test"].reset()

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    @torch.no_grad()
    def encode_all(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Codes of a whole tensor of images, in eval mode and batches (for probes and studies)."""
        was = self.training
        self.eval()
        z = torch.cat([self.encode(x[i:i + batch_size].to(self.device)) for i in range(0, len(x), batch_size)])
        self.train(was)
        return z
