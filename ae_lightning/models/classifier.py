"""The latent classifier: a trained autoencoder's encoder, then a small head, trained on labels.

    python train.py --variant classifier --encoder runs/mnist/fc/version_0/checkpoints/last.ckpt
    python train.py --variant classifier --encoder ENC.ckpt --finetune --max-epochs 30

The encoder is rebuilt from its checkpoint's run config (variant, latent size, weights); its
weights are then part of this module's ``state_dict``, so a classifier checkpoint is
self-contained: the encoder's run config is a hyperparameter (``hparams.encoder_config``, in the
checkpoint's ``hyper_parameters``) and ``load_from_checkpoint`` rebuilds from it, never from the
original file.

Frozen (the default): the encoder runs once per split, in eval mode, when the data module asks for
the split's batches (``MNISTDataModule.features``); the head then trains on the cached codes, so an
epoch costs the head only. ``finetune: true`` trains the encoder too, on image batches.

Head: codes, standardized with the training codes' mean and std (fixed buffers), then
Linear(k, 128), ReLU, Linear(128, 10) by default (``hidden`` lists the hidden sizes).
Metrics, exact over a split: ``acc``, ``acc_<i>`` per class i, and the confusion matrix
(``confusion_matrix(stage)``), which ``callbacks.ConfusionFigures`` draws into TensorBoard
(``<stage>/confusion_matrix``) and writes as ``confusion_test.{png,json}`` into the run folder.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from ae_lightning.configs.classifier import ClassifierConfig
from ae_lightning.data import IMAGE_SHAPE, NUM_CLASSES
from ae_lightning.errors import UserError
from ae_lightning.metrics import BatchMeans, per_class_accuracy
from ae_lightning.models import CKPT_KEY, get_module, read_checkpoint, register
from ae_lightning.models.base import AutoencoderModule, BaseModule

# where checkpoints written before the encoder config was a hyperparameter kept it:
# checkpoint[LEGACY_ENCODER_KEY] = {"config": encoder run config, "path": str}
LEGACY_ENCODER_KEY = "classifier_encoder"
# Lightning warns about submodules in eval mode when training starts: a frozen encoder is, on purpose.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")


def load_encoder(path: str | Path) -> tuple[AutoencoderModule, dict]:
    """``(autoencoder in eval mode, its run config)`` from a checkpoint of this project; UserError
    for a missing, corrupt or foreign file, or a checkpoint that is not an autoencoder's. The
    autoencoder takes the input shape it was trained on (MNIST's in a checkpoint from before it was
    saved)."""
    ckpt = read_checkpoint(path)
    cfg = ckpt[CKPT_KEY].get("config") if isinstance(ckpt[CKPT_KEY], dict) else None
    hparams = ckpt.get("hyper_parameters")
    shape = (hparams.get("input_shape") if isinstance(hparams, dict) else None) or IMAGE_SHAPE
    ae = build_autoencoder(cfg, str(path), shape)
    try:
        ae.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: weights do not fit its {cfg['variant']!r} config ({first})") from None
    return ae.eval(), cfg


def build_autoencoder(cfg: Any, where: str, input_shape: tuple[int, ...] = IMAGE_SHAPE) -> AutoencoderModule:
    """A fresh autoencoder of images ``input_shape`` (C, H, W) from a run config; UserError unless
    the config names an autoencoder."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict) or "module" not in cfg:
        raise UserError(f"{where} is not a checkpoint of an ae-lightning autoencoder (no usable run config)")
    cls = get_module(cfg["module"])
    if not issubclass(cls, AutoencoderModule):
        raise UserError(f"{where} is a checkpoint of a {cfg.get('variant', cfg['module'])!r} run, not of an "
                        f"autoencoder: give the checkpoint of a trained autoencoder variant")
    try:
        return cls(input_shape=input_shape, **cfg["model"])
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{where}: cannot rebuild its {cfg.get('variant')!r} autoencoder: {type(e).__name__}: {e}") from None


@register(ClassifierConfig)
class LatentClassifier(BaseModule):
    def __init__(self, **options: Any):
        # the encoder's run config: given back by load_from_checkpoint from the saved hyperparameters
        # (architecture from there, weights from the state_dict); a new classifier reads the file.
        # Not a field of the config, so no config key: the run config names the file only.
        stored = options.pop("encoder_config", None)
        super().__init__(**options)  # saves the hyperparameters (all plain values)
        hp = self.hparams
        encoder, finetune, hidden, dropout = hp.encoder, hp.finetune, hp.hidden, hp.dropout
        if stored is not None:  # the classifier's input shape is its encoder's
            self.autoencoder = build_autoencoder(stored, "the classifier checkpoint", self.input_shape)
            self.encoder_config = stored
        else:
            self.autoencoder, self.encoder_config = load_encoder(encoder)
            if self.autoencoder.input_shape != self.input_shape:
                raise UserError(f"the encoder {encoder} takes images of shape {self.autoencoder.input_shape}, "
                                f"this run's data has {self.input_shape}")
        self.hparams["encoder_config"] = self.encoder_config  # saved in every checkpoint
        k = int(self.encoder_config["model"]["latent_dim"])
        self.latent_dim = k
        layers: list[nn.Module] = []
        for a, b in zip([k, *hidden], hidden):
            layers += [nn.Linear(a, b), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        layers.append(nn.Linear(([k, *hidden])[-1], NUM_CLASSES))
        self.head = nn.Sequential(*layers)
        # code statistics (k,), fixed once from the training codes; buffers, so checkpoints keep them
        self.register_buffer("code_mean", torch.zeros(k))
        self.register_buffer("code_std", torch.ones(k))
        self.register_buffer("stats_ready", torch.zeros((), dtype=torch.bool))
        self.autoencoder.requires_grad_(finetune)
        self.autoencoder.train(finetune)
        if finetune:
            self._freeze_unused_parameters()
        self._datamodule = None
        self._codes: dict[str, torch.Tensor] = {}  # split -> (N, k) codes of the frozen encoder
        # (10, 10) counts, rows = true class, columns = prediction; summed over the DDP ranks at compute
        self.confusion = nn.ModuleDict({s: MulticlassConfusionMatrix(NUM_CLASSES, validate_args=False) for s in ("val", "test")})
        self._confusion: dict[str, np.ndarray] = {}  # stage -> the last epoch's matrix
        self._eval_loss = {"val": BatchMeans(), "test": BatchMeans()}

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None, **kwargs):
        """Rebuild from the checkpoint alone (the encoder config in its hyperparameters). A checkpoint
        written before that kept the config beside them, under ``LEGACY_ENCODER_KEY``."""
        ckpt = read_checkpoint(checkpoint_path)
        if "encoder_config" not in (ckpt.get("hyper_parameters") or {}) and "encoder_config" not in kwargs:
            kwargs["encoder_config"] = (ckpt.get(LEGACY_ENCODER_KEY) or {}).get("config")
        return super().load_from_checkpoint(checkpoint_path, map_location=map_location,
                                            hparams_file=hparams_file, strict=strict, **kwargs)

    def _freeze_unused_parameters(self) -> None:
        """Finetuning trains what ``encode`` uses: one backward pass finds it; the decoder stays frozen
        (it would get no gradient, which costs optimizer state and breaks DDP)."""
        ae = self.autoencoder
        was = ae.training
        ae.eval()
        ae.encode(torch.rand(2, *self.input_shape)).float().sum().backward()
        for p in ae.parameters():
            if p.grad is None:
                p.requires_grad_(False)
            p.grad = None
        ae.train(was)

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.hparams.finetune:
            self.autoencoder.eval()  # a frozen encoder never trains: no dropout, no BN updates
        return self

    # -- data ------------------------------------------------------------------------------------
    def prepare_for_data(self, dm) -> None:
        """Called by ``fit.build``: the data must be what the encoder was trained on; a frozen
        encoder's codes are then served in place of the images."""
        enc = self.encoder_config.get("data", {})
        if enc.get("dataset") != dm.dataset:
            raise UserError(f"the encoder {self.hparams.encoder} was trained on {enc.get('dataset')}, but this "
                            f"run uses {dm.dataset}: pass --dataset {enc.get('dataset')}")
        if enc.get("normalize", "unit") != dm.hparams.normalize:
            raise UserError(f"the encoder {self.hparams.encoder} was trained with data.normalize "
                            f"{enc.get('normalize')}, this run uses {dm.hparams.normalize}: pass "
                            f"--set data.normalize={enc.get('normalize')}")
        self._datamodule = dm
        if not self.hparams.finetune:
            dm.features = self.cached_codes

    @torch.no_grad()
    def cached_codes(self, split: str) -> torch.Tensor:
        """``(N, k)`` codes of a split, encoded once (eval mode, on the module's device)."""
        if split not in self._codes:
            x, _ = self._datamodule.tensors(split, self.device)
            self._codes[split] = self.autoencoder.encode_all(x).float()
        return self._codes[split]

    def on_fit_start(self) -> None:
        if self.hparams.standardize_codes and not bool(self.stats_ready) and self._datamodule is not None:
            if self.hparams.finetune:  # the initial encoder's codes; fixed from then on
                x, _ = self._datamodule.tensors("train", self.device)
                z = self.autoencoder.encode_all(x).float()
            else:
                z = self.cached_codes("train")
            self.code_mean.copy_(z.mean(0))
            self.code_std.copy_(z.std(0).clamp_min(1e-6))
            self.stats_ready.fill_(True)

    # -- model -----------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.encode(x)

    def encode_all(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        return self.autoencoder.encode_all(x, batch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 10) of images (B,C,H,W), or of codes (B, k) when the batches are cached codes."""
        z = x if x.dim() == 2 else self.encode(x)
        if self.hparams.standardize_codes:
            z = (z - self.code_mean) / self.code_std
        return self.head(z)

    # -- loop ------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.hparams.augment_shift and x.dim() == 4:
            x = random_shift(x, self.hparams.augment_shift)
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        # the step value unsynced (no collective per step); the epoch means are reduced over the DDP
        # ranks once, at the epoch's end (sync_dist on an epoch-only value)
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=len(y), prog_bar=True)
        self.log("train/loss_epoch", loss.detach(), on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        self.log("train/acc", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True,
                 batch_size=len(y), sync_dist=True)
        return loss

    def _eval_step(self, batch, stage: str) -> None:
        x, y = batch
        logits = self(x)
        # summed on the device, logged as the exact split mean (over the DDP ranks) at the epoch's end
        self._eval_loss[stage].update({"loss": F.cross_entropy(logits, y)}, len(y))
        self.confusion[stage].update(logits.argmax(1), y)  # counts on the device, no sync

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self._start_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._start_epoch("test")

    def _start_epoch(self, stage: str) -> None:
        self.confusion[stage].reset()
        self._confusion.pop(stage, None)
        self._eval_loss[stage].reset()

    def on_validation_epoch_end(self) -> None:
        self._epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_metrics("test")

    def confusion_matrix(self, stage: str) -> np.ndarray | None:
        """The last ``stage`` epoch's (10, 10) counts over the whole split (rows = true class)."""
        return self._confusion.get(stage)

    def _epoch_metrics(self, stage: str) -> None:
        for name, value in self._eval_loss[stage].compute().items():
            self.log_reduced(f"{stage}/{name}", value, prog_bar=stage == "val")
        self._eval_loss[stage].reset()
        # every DDP rank's counts (torchmetrics sums the state over the ranks): the whole split's accuracies
        cm = self.confusion[stage].compute().cpu().numpy()
        self.confusion[stage].reset()
        if not cm.sum():
            return
        self._confusion[stage] = cm
        self.log_reduced(f"{stage}/acc", float(np.trace(cm) / max(cm.sum(), 1)))
        for i, acc in enumerate(per_class_accuracy(cm)):
            self.log_reduced(f"{stage}/acc_{i}", float(acc))


def random_shift(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Each image (B,C,H,W) moved by its own random offset in [-max_shift, max_shift]^2, zero-filled."""
    b, c, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p))  # (B, C, h+2p, w+2p)
    dy = torch.randint(0, 2 * p + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * p + 1, (b, 1, 1), device=x.device)
    rows = dy + torch.arange(h, device=x.device).view(1, h, 1)  # (B, h, 1)
    cols = dx + torch.arange(w, device=x.device).view(1, 1, w)  # (B, 1, w)
    images = torch.arange(b, device=x.device).view(b, 1, 1)
    return torch.stack([padded[images, i, rows, cols] for i in range(c)], 1)  # every channel moved alike
