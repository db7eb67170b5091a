"""MNIST and Fashion-MNIST as tensors: the one LightningDataModule and its batches. The raw files
(layout, IDX reading and validation, download) are ``ae_lightning.datafiles``.

Speed: a split is held as one uint8 tensor ``(N, 28, 28)`` (47 MB for all of MNIST), moved once to
the training device when ``data_on_device``. Batches are served by indexing with a shuffled
permutation and one fused affine map ``x * a + b`` per pixel (normalization), so there is no
per-sample Python, no DataLoader and no worker process.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterator

import lightning as L
import numpy as np
import torch

from ae_lightning.configs.data import DataConfig
from ae_lightning.datafiles import DATASETS, IMAGE_SHAPE, NUM_CLASSES, SPLIT_FILES, default_data_dir, load_split
from ae_lightning.errors import UserError


# ----------------------------------------------------------------------------------------------
# Batches served from tensors
class TensorBatches:
    """An iterable of ``(x, y)`` batches: ``x`` float ``(B, 1, 28, 28)`` in [0, 1], ``y`` int64 ``(B,)``.

    ``images`` stay uint8 on their device; each batch is one gather plus ``x * a + b`` (per-pixel
    affine normalization), optionally a Bernoulli draw (dynamic binarization). Shuffling draws a
    permutation from ``seed + epoch``, so a resumed run sees the same order as an unbroken one.

    DDP (``world`` > 1) gives each ``rank`` a disjoint shard. ``equal_shards`` (training, the default
    when shuffling): every rank gets ``N // world`` images of the epoch's permutation, strided, so
    every rank runs the same number of steps (the remainder, fewer than ``world`` images, waits for
    another epoch's permutation). Otherwise (evaluation): contiguous shards of ``N // world`` or
    ``N // world + 1`` images, so every image is counted exactly once, with no padding duplicates.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                 batch_size: int, shuffle: bool = False, drop_last: bool = False, bernoulli: bool = False,
                 seed: int = 0, epoch_fn: Callable[[], int] | None = None, rank: int = 0, world: int = 1,
                 features: torch.Tensor | None = None, equal_shards: bool | None = None):
        self.images, self.labels, self.a, self.b = images, labels, a, b
        self.features = features  # (N, ...) served as x instead of the images (MNISTDataModule.features)
        self.batch_size, self.shuffle, self.drop_last, self.bernoulli = batch_size, shuffle, drop_last, bernoulli
        self.seed, self.epoch_fn, self.rank, self.world = seed, epoch_fn or (lambda: 0), rank, world
        self.equal_shards = shuffle if equal_shards is None else equal_shards
        # One scale for every pixel and no offset (unit normalization, binarized splits): ``u8 * s``
        # gives the same floats as the broadcast addcmul in two passes instead of three and needs no
        # clamp (benchmarks/bench_batch.py: a batch of 1024 costs ~1.5 ms of CPU instead of ~1.75 ms).
        flat_a = a.flatten()
        self.scale = (float(flat_a[0]) if len(flat_a) and bool((a == flat_a[0]).all()) and not bool(b.any())
                      and float(flat_a[0] * 255) <= 1 else None)  # in float32, as the batches are

    def _bounds(self) -> tuple[int, int]:
        """This rank's uneven contiguous shard ``[start, stop)`` (evaluation)."""
        n = len(self.images)
        return self.rank * n // self.world, (self.rank + 1) * n // self.world

    def _count(self) -> int:
        if self.equal_shards:
            return len(self.images) // self.world
        start, stop = self._bounds()
        return stop - start

    def __len__(self) -> int:
        n = self._count()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dev = self.images.device
        g = torch.Generator(device=dev)
        g.manual_seed(self.seed * 100_003 + self.epoch_fn())
        n_all = len(self.images)
        order = torch.randperm(n_all, generator=g, device=dev) if self.shuffle else torch.arange(n_all, device=dev)
        if self.equal_shards:  # DDP: a disjoint, strided shard per rank, the same size on every rank
            order = order[self.rank: self._count() * self.world: self.world]
        else:  # every image exactly once over the ranks
            order = order[slice(*self._bounds())]
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            if self.features is not None:  # precomputed inputs, e.g. cached codes: one gather
                yield self.features[idx], self.labels[idx]
                continue
            if self.scale is not None:
                x = self.images[idx].unsqueeze(1).float().mul_(self.scale)
            else:  # (B,1,28,28) = u8 * a + b; the clamp matters only for standardized test pixels
                x = torch.addcmul(self.b, self.images[idx].unsqueeze(1).float(), self.a).clamp_(0, 1)
            if self.bernoulli:
                x = torch.bernoulli(x, generator=g)
            yield x, self.labels[idx]


# ----------------------------------------------------------------------------------------------
class MNISTDataModule(L.LightningDataModule):
    """MNIST / Fashion-MNIST for every module of the project.

    Splits: ``train`` and ``val`` come from the official training file (a hold-out of ``val_size``
    images drawn with ``split_seed``); ``test`` is the official test file, used for test metrics only.
    ``validation: test`` is the original studies' practice instead: train on the whole training file
    (or ``subset`` images of it) and validate on the test file.

    ``normalize``: ``unit`` divides by 255. ``standardize`` is the fcAE study's preprocessing read
    per pixel: a z-score from training statistics, then each pixel's training [min, max] rescaled
    to [0, 1] (test pixels outside it are clipped); since both steps are per-pixel affine maps this
    equals a per-pixel min-max rescale. ``standardize_global`` rescales the z-scores with one min
    and max over all pixels instead, the other reading of the study's code, which squashes the data
    (Fashion-MNIST: mean 0.012, std 0.005) and is inconsistent with the study's own NRMSE figures.
    """

    def __init__(self, **options):
        """``options``: the fields of :class:`~ae_lightning.configs.data.DataConfig` (missing ones take
        its defaults)."""
        super().__init__()
        self.save_hyperparameters(dataclasses.asdict(DataConfig(**options)))
        dataset, batch_size, eval_batch_size, data_dir = (self.hparams[k] for k in (
            "dataset", "batch_size", "eval_batch_size", "data_dir"))
        self.dataset, self.batch_size, self.eval_batch_size = dataset, batch_size, eval_batch_size
        self.data_dir = Path(data_dir) if data_dir else default_data_dir(dataset)
        self.class_names = DATASETS[dataset]["classes"]
        self.dims, self.num_classes = IMAGE_SHAPE, NUM_CLASSES
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        # Optional hook: split name -> an (N, ...) tensor served as the batches' x in place of that
        # split's images (same order, shuffling and sharding), or None for the images. The latent
        # classifier sets it to serve a frozen encoder's codes, computed once instead of every epoch.
        self.features: Callable[[str], torch.Tensor | None] | None = None

    # -- loading -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        for split in SPLIT_FILES:
            load_split(self.data_dir, self.dataset, split, self.hparams.download)

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        hp = self.hparams
        x_all, y_all = load_split(self.data_dir, self.dataset, "train", hp.download)
        x_test, y_test = load_split(self.data_dir, self.dataset, "test", hp.download)
        n = len(x_all)
        on_test = hp.validation == "test"
        val_size = 0 if on_test else hp.val_size or (max(1, hp.subset // 10) if hp.subset else min(5000, n // 10))
        n_train = hp.subset or (n - val_size)
        if val_size + n_train > n:
            raise UserError(f"data: {val_size} validation + {n_train} training images exceed the "
                            f"{n} images of the {self.dataset} training file (lower subset or val_size)")
        g = torch.Generator().manual_seed(hp.split_seed)
        perm = torch.randperm(n, generator=g)
        val_idx, train_idx = perm[:val_size], perm[val_size:val_size + n_train]
        if hp.folds > 1:  # CV: the same train+val pool, cut into `folds` parts; part `fold` validates
            parts = perm[:val_size + n_train].tensor_split(hp.folds)
            val_idx, train_idx = parts[hp.fold], torch.cat([q for i, q in enumerate(parts) if i != hp.fold])
        test_idx = torch.arange(len(x_test))
        if hp.test_subset:
            if hp.test_subset > len(x_test):
                raise UserError(f"data: test_subset {hp.test_subset} exceeds the {len(x_test)} test images")
            test_idx = torch.randperm(len(x_test), generator=g)[:hp.test_subset].sort().values
        x_all, y_all = torch.from_numpy(x_all.copy()), torch.from_numpy(y_all.astype(np.int64))
        x_test, y_test = torch.from_numpy(x_test.copy()), torch.from_numpy(y_test.astype(np.int64))
        self._splits = {"train": (x_all[train_idx], y_all[train_idx]),
                        "val": (x_all[val_idx], y_all[val_idx]),
                        "test": (x_test[test_idx], y_test[test_idx])}
        if on_test:
            self._splits["val"] = self._splits["test"]
        self._fit_normalization(self._splits["train"][0])
        if hp.binarize != "none":  # eval splits are binarized once, with a fixed seed, to stay comparable
            gb = torch.Generator().manual_seed(hp.split_seed + 1)
            for split in ("val", "test") + (("train",) if hp.binarize == "static" else ()):
                x, y = self._splits[split]
                p = self._affine(x.unsqueeze(1)).clamp(0, 1).squeeze(1)
                xb = (p > 0.5) if hp.binarize == "static" else torch.bernoulli(p, generator=gb).bool()
                self._splits[split] = (xb.to(torch.uint8) * 255, y)
            self._bin_a, self._bin_b = torch.full(IMAGE_SHAPE, 1 / 255), torch.zeros(IMAGE_SHAPE)

    def _fit_normalization(self, x_train: torch.Tensor) -> None:
        """Per-pixel affine map (a, b) such that x01 = clamp(u8 * a + b); training statistics only."""
        if self.hparams.normalize == "unit":
            a, b = torch.full(IMAGE_SHAPE, 1 / 255), torch.zeros(IMAGE_SHAPE)
        else:  # per-pixel standardization, then a min-max rescale to [0, 1], per pixel or global
            u = x_train.double().div(255).reshape(-1, 1, 28, 28)
            mu, sd = u.mean(0), u.std(0, unbiased=False)
            sd = torch.where(sd > 1e-8, sd, torch.ones_like(sd))  # constant pixels (MNIST borders)
            z = (u - mu) / sd
            if self.hparams.normalize == "standardize":
                lo, hi = z.amin(0), z.amax(0)  # (1, 28, 28): each pixel's training range
            else:
                lo, hi = z.min(), z.max()
            span = torch.where(hi - lo > 1e-12, hi - lo, torch.ones_like(hi))  # a constant pixel maps to 0
            a = (1 / (255 * sd * span)).float()
            b = ((-mu / sd - lo) / span).float()
        self._a, self._b = a, b

    def _affine(self, x_u8: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self._b, x_u8.float(), self._a)

    # -- access ----------------------------------------------------------------------------------
    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ``(uint8 images (N,28,28), int64 labels (N,))`` of a split (after ``setup``)."""
        self.setup()
        return self._splits[name]

    def tensors(self, name: str, device: str | torch.device = "cpu",
                limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A split (its first ``limit`` images) as model input: float ``(N,1,28,28)`` in [0,1] and
        labels. Eval-style (no dynamic binarization): the form probes, studies and generation read."""
        x, y = self.split(name)
        x, y = x[:limit], y[:limit]
        a, b = self._ab(name)
        x = x.to(device)
        return torch.addcmul(b.to(device), x.unsqueeze(1).float(), a.to(device)).clamp_(0, 1), y.to(device)

    def _ab(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        binarized = self.hparams.binarize == "static" or (self.hparams.binarize == "dynamic" and name != "train")
        return (self._bin_a, self._bin_b) if binarized else (self._a, self._b)

    def _device(self) -> torch.device:
        on_device = self.hparams.data_on_device
        trainer = self.trainer
        root = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        if on_device is None:
            on_device = root.type != "cpu"
        return root if on_device else torch.device("cpu")

    def _batches(self, name: str, train: bool) -> TensorBatches:
        self.setup()
        dev = self._device()
        x, y = self._splits[name]
        a, b = self._ab(name)
        feats = self.features(name) if self.features is not None else None
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if train and self.batch_size > len(x):  # else one short batch per epoch, without a word
            raise UserError(f"data.batch_size {self.batch_size} is larger than the training split, {len(x)} images "
                            f"(data.subset {self.hparams.subset}, folds {self.hparams.folds}); lower --batch-size "
                            f"to {len(x)} or less")
        if len(x) < world:  # a rank without a batch would skip the epoch's collectives and hang
            raise UserError(f"data: the {name} split holds {len(x)} images, fewer than the {world} devices "
                            f"(raise --subset or lower --devices)")
        return TensorBatches(
            x.to(dev), y.to(dev), a.to(dev), b.to(dev),
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train, drop_last=train and self.hparams.drop_last, equal_shards=train,
            bernoulli=train and self.hparams.binarize == "dynamic",
            seed=torch.initial_seed() % (2**31) if train else 0,
            epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else None,
            rank=rank, world=world, features=feats.to(dev) if feats is not None else None)

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", train=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", train=False)

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", train=False)

    def predict_dataloader(self) -> TensorBatches:
        return self._batches("test", train=False)
