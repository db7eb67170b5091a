"""The latent classifier: a trained autoencoder's encoder, then a small head, trained on labels.

    python train.py --variant classifier --encoder runs/mnist/fc/version_0/checkpoints/last.ckpt
    python train.py --variant classifier --encoder ENC.ckpt --finetune --max-epochs 30

The encoder is rebuilt from its checkpoint's run config (variant, latent size, weights); its
weights are then part of this module's ``state_dict``, so a classifier checkpoint is
self-contained: the encoder's run config travels in ``checkpoint["classifier_encoder"]`` and
:meth:`LatentClassifier.load_from_checkpoint` rebuilds from it, never from the original file.

Frozen (the default): the encoder runs once per split, in eval mode, when the data module asks for
the split's batches (``MNISTDataModule.features``); the head then trains on the cached codes, so an
epoch costs the head only. ``finetune: true`` trains the encoder too, on image batches.

Head: codes, standardized with the training codes' mean and std (fixed buffers), then
Linear(k, 128), ReLU, Linear(128, 10) by default (``hidden`` lists the hidden sizes).
Metrics, exact over a split: ``acc``, ``acc_<i>`` per class i, the confusion matrix (TensorBoard
image ``<stage>/confusion_matrix``; ``confusion_test.{png,json}`` in the run folder).
"""
from __future__ import annotations

import contextvars
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ae_lightning import files
from ae_lightning.data import NUM_CLASSES
from ae_lightning.errors import UserError
from ae_lightning.hints import Fraction, NonNegInt
from ae_lightning.metrics import BatchMeans
from ae_lightning.models import CKPT_KEY, get_module, read_checkpoint, register
from ae_lightning.models.base import AutoencoderModule, BaseModule

ENCODER_KEY = "classifier_encoder"  # checkpoint[ENCODER_KEY] = {"config": encoder run config, "path": str}
# Set only while load_from_checkpoint rebuilds a classifier: the encoder's run config stored in the
# classifier's own checkpoint, so the rebuild does not read (or need) the original encoder file.
_STORED_ENCODER: contextvars.ContextVar[dict | None] = contextvars.ContextVar("stored_encoder", default=None)
# Lightning warns about submodules in eval mode when training starts: a frozen encoder is, on purpose.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")


def load_encoder(path: str | Path) -> tuple[AutoencoderModule, dict]:
    """``(autoencoder in eval mode, its run config)`` from a checkpoint of this project; UserError
    for a missing, corrupt or foreign file, or a checkpoint that is not an autoencoder's."""
    ckpt = read_checkpoint(path)
    cfg = ckpt[CKPT_KEY].get("config") if isinstance(ckpt[CKPT_KEY], dict) else None
    ae = build_autoencoder(cfg, str(path))
    try:
        ae.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: weights do not fit its {cfg['variant']!r} config ({first})") from None
    return ae.eval(), cfg


def build_autoencoder(cfg: Any, where: str) -> AutoencoderModule:
    """A fresh autoencoder from a run config; UserError unless the config names an autoencoder."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict) or "module" not in cfg:
        raise UserError(f"{where} is not a checkpoint of an ae-lightning autoencoder (no usable run config)")
    cls = get_module(cfg["module"])
    if not issubclass(cls, AutoencoderModule):
        raise UserError(f"{where} is a checkpoint of a {cfg.get('variant', cfg['module'])!r} run, not of an "
                        f"autoencoder: give the checkpoint of a trained autoencoder variant")
    try:
        return cls(**cfg["model"])
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{where}: cannot rebuild its {cfg.get('variant')!r} autoencoder: {type(e).__name__}: {e}") from None


@register("classifier")
class LatentClassifier(BaseModule):
    def __init__(
        self,
        encoder: str | None = None,  # checkpoint of a trained autoencoder (train.py --encoder)
        finetune: bool = False,  # train the encoder too (else frozen, on cached codes)
        hidden: list[int] = [128],  # hidden sizes of the head; [] is a linear head
        dropout: Fraction = 0.0,  # after each hidden layer of the head
        standardize_codes: bool = True,  # z-score the codes with the training codes' statistics
        label_smoothing: Fraction = 0.0,
        augment_shift: NonNegInt = 0,  # finetune: random shifts of up to N pixels of training images
        **kwargs,
    ):
        super().__init__(**kwargs)  # saves the hyperparameters (all plain values) and checks them
        stored = _STORED_ENCODER.get()
        if stored is not None:  # reload: architecture from the classifier checkpoint, weights follow
            self.autoencoder, self.encoder_config = build_autoencoder(stored, "the classifier checkpoint"), stored
        else:
            self.autoencoder, self.encoder_config = load_encoder(encoder)
        self.encoder_path = str(Path(encoder).resolve())
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
        self._confusion: dict[str, torch.Tensor] = {}
        self._eval_loss = {"val": BatchMeans(), "test": BatchMeans()}

    @classmethod
    def check_config(cls, model: dict[str, Any]) -> None:
        super().check_config(model)
        if not model.get("encoder"):
            raise UserError("the classifier needs an encoder: pass --encoder PATH/TO/autoencoder.ckpt "
                            "(a checkpoint written by train.py)")
        if model.get("augment_shift") and not model.get("finetune"):
            raise UserError("model.augment_shift needs --finetune (a frozen encoder's codes are computed once, "
                            "from unshifted images)")
        if model.get("augment_shift", 0) > 8:
            raise UserError(f"model.augment_shift must be at most 8 pixels, got {model['augment_shift']}")

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None, **kwargs):
        """Rebuild from the checkpoint alone: the encoder's architecture comes from the run config
        stored inside it and its weights from the state_dict, not from the original encoder file."""
        ckpt = read_checkpoint(checkpoint_path)
        stored = (ckpt.get(ENCODER_KEY) or {}).get("config")
        token = _STORED_ENCODER.set(stored)
        try:
            return super().load_from_checkpoint(checkpoint_path, map_location=map_location,
                                                hparams_file=hparams_file, strict=strict, **kwargs)
        finally:
            _STORED_ENCODER.reset(token)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[ENCODER_KEY] = {"config": self.encoder_config, "path": self.encoder_path}

    def _freeze_unused_parameters(self) -> None:
        """Finetuning trains what ``encode`` uses: one backward pass finds it; the decoder stays frozen
        (it would get no gradient, which costs optimizer state and breaks DDP)."""
        ae = self.autoencoder
        was = ae.training
        ae.eval()
        ae.encode(torch.rand(2, 1, 28, 28)).float().sum().backward()
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
        """Logits (B, 10) of images (B,1,28,28), or of codes (B, k) when the batches are cached codes."""
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
        # (10, 10) counts, rows = true class, columns = prediction; one bincount, no sync
        counts = torch.bincount(y * NUM_CLASSES + logits.argmax(1), minlength=NUM_CLASSES ** 2)
        cm = self._confusion.get(stage)
        self._confusion[stage] = counts if cm is None else cm + counts

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self._confusion.pop("val", None)
        self._eval_loss["val"].reset()

    def on_test_epoch_start(self) -> None:
        self._confusion.pop("test", None)
        self._eval_loss["test"].reset()

    def on_validation_epoch_end(self) -> None:
        trainer = self._trainer
        last = trainer is not None and trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        self._epoch_metrics("val", image=last)

    def on_test_epoch_end(self) -> None:
        cm = self._epoch_metrics("test", image=True)
        log_dir = getattr(self._trainer, "log_dir", None) if self._trainer is not None else None
        if cm is not None and log_dir and self.global_rank == 0:
            names = self._class_names()
            files.write_json(Path(log_dir) / "confusion_test.json", {
                "classes": names, "rows": "true class", "columns": "predicted class",
                "matrix": cm.tolist(), "per_class_acc": dict(zip(names, per_class_accuracy(cm).tolist()))})
            files.write_bytes(Path(log_dir) / "confusion_test.png", confusion_png(cm, names))

    def _class_names(self) -> list[str]:
        dm = self._datamodule
        return list(dm.class_names) if dm is not None else [str(i) for i in range(NUM_CLASSES)]

    def _epoch_metrics(self, stage: str, image: bool) -> np.ndarray | None:
        for name, value in self._eval_loss[stage].compute().items():
            self.log_reduced(f"{stage}/{name}", value, prog_bar=stage == "val")
        self._eval_loss[stage].reset()
        counts = self._confusion.pop(stage, None)
        if counts is None and getattr(self._trainer, "world_size", 1) == 1:
            return None
        if counts is None:  # a DDP rank without batches still joins the gather
            counts = torch.zeros(NUM_CLASSES ** 2, dtype=torch.long, device=self.device)
        # the counts of every DDP rank: the accuracies are those of the whole split
        cm = self.all_gather(counts).reshape(-1, NUM_CLASSES, NUM_CLASSES).sum(0).cpu().numpy()
        if not cm.sum():
            return None
        self.log_reduced(f"{stage}/acc", float(np.trace(cm) / max(cm.sum(), 1)))
        for i, acc in enumerate(per_class_accuracy(cm)):
            self.log_reduced(f"{stage}/acc_{i}", float(acc))
        experiment = getattr(self.logger, "experiment", None) if self._trainer is not None else None
        if image and experiment is not None and hasattr(experiment, "add_image") and self.global_rank == 0:
            png = confusion_png(cm, self._class_names())
            import matplotlib.image as mpimg
            rgb = mpimg.imread(io.BytesIO(png), format="png")[..., :3]  # (H, W, 3) in [0, 1]
            experiment.add_image(f"{stage}/confusion_matrix", rgb, self.current_epoch, dataformats="HWC")
        return cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a (10, 10) confusion matrix (rows = true class); 0 for an absent class."""
    return np.diag(cm) / np.maximum(cm.sum(1), 1)


def random_shift(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Each image (B,1,28,28) moved by its own random offset in [-max_shift, max_shift]^2, zero-filled."""
    b, _, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p))  # (B, 1, h+2p, w+2p)
    dy = torch.randint(0, 2 * p + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * p + 1, (b, 1, 1), device=x.device)
    rows = dy + torch.arange(h, device=x.device).view(1, h, 1)  # (B, h, 1)
    cols = dx + torch.arange(w, device=x.device).view(1, 1, w)  # (B, 1, w)
    return padded[torch.arange(b, device=x.device).view(b, 1, 1), 0, rows, cols].unsqueeze(1)


def confusion_png(cm: np.ndarray, class_names: list[str]) -> bytes:
    """A (10, 10) confusion matrix as an annotated PNG: colour = share of the true class, text = count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=100)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    n = len(class_names)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {np.trace(cm) / max(cm.sum(), 1):.2%} ({int(cm.sum())} images)", fontsize=10)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
