"""Loss and metric conventions: the one place that defines them.

Reconstruction losses (the training objective of the deterministic autoencoders) are **means per
element**, over pixels and images, computed on pixels in the data's [0, 1] scale:

    mse  mean (x - x_hat)^2
    l1   mean |x - x_hat|
    bce  mean -[x log x_hat + (1 - x) log(1 - x_hat)]  (from logits when the output is a sigmoid)
    bce_clipped  the same on x_hat clipped to [1e-7, 1 - 1e-7], no gradient beyond the clip
                 (Keras' binary_crossentropy, the shallow/deep notebook's loss)
    bce_logits   BCE with the raw (linear) output taken as logits, the model's output unchanged
                 (PyTorch's BCEWithLogitsLoss on a linear output layer, the fcAE study's BCE run;
                 the metrics then judge the raw output, logits and all)
    kl   mean x log(x / x_hat), both clipped to [1e-7, 1] (Keras' KLDivergence, per pixel)

The VAE's objective is the exception, and says so in its name: ``-ELBO`` in **nats per image**
(summed over the 784 pixels), so it compares with published likelihoods.

Evaluation metrics are the same for every variant, accumulated exactly over a whole split (not
averaged per batch), on the reconstruction ``x_hat`` against the target ``x``:

    mse        mean over pixels and images of (x - x_hat)^2
    nrmse      sqrt(mse) / (max(x) - min(x)), max and min over the split's targets
    rel_error  ||x - x_hat||_F / ||x||_F over the split

The split metrics are torchmetrics ``Metric``s with float64 sum / min / max states, reduced exactly
over the DDP ranks at ``compute``. Logged as ``<stage>/mse``, ``<stage>/nrmse``, ``<stage>/rel_error``; in ``metrics.json`` as
``test_mse``, ``test_nrmse``, ``test_rel_error``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric

EPS = 1e-7
LOSSES = ("mse", "bce", "bce_clipped", "bce_logits", "l1", "kl")


def reconstruction_loss(kind: str, out: torch.Tensor, target: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
    """Mean-per-element loss. ``out`` is the model's output in pixel scale; ``logits`` its
    pre-sigmoid value when the output activation is a sigmoid (used for a stable BCE)."""
    if kind == "mse":
        return F.mse_loss(out, target)
    if kind == "l1":
        return F.l1_loss(out, target)
    if kind == "bce":
        if logits is not None:
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.binary_cross_entropy(out.clamp(EPS, 1 - EPS), target)
    if kind == "bce_clipped":
        return F.binary_cross_entropy(out.clamp(EPS, 1 - EPS), target)
    if kind == "bce_logits":
        return F.binary_cross_entropy_with_logits(out, target)
    if kind == "kl":
        t, o = target.clamp(EPS, 1), out.clamp(EPS, 1)
        return (t * (t.log() - o.log())).mean()
    raise ValueError(f"unknown loss {kind!r}")


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a (C, C) confusion matrix (rows = true class); 0 for an absent class."""
    return np.diag(cm) / np.maximum(cm.sum(1), 1)


class _SplitMetric(Metric):
    """A torchmetrics ``Metric`` whose float64 states follow its inputs' device (a plain attribute of
    a module, not a submodule: Lightning's ``.to(dtype)`` of a bf16 or fp64 run never casts them)."""

    full_state_update = False
    is_differentiable = False

    def _follow(self, t: torch.Tensor) -> None:
        if t.device != self.device:
            self.to(t.device)


class BatchMeans(_SplitMetric):
    """Exact means over a split of per-batch means (an evaluation loss and its terms), weighted by
    batch size: ``update`` adds ``mean * batch_size`` into one float64 state (no sync); ``compute``
    sums the states and the image count over the DDP ranks (torchmetrics, ``dist_reduce_fx="sum"``),
    so uneven shards weigh exactly as in one process (Lightning's ``sync_dist`` mean truncates an
    uneven count: gloo divides its integer batch-size total by the world size in place)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("sums", torch.zeros(0, dtype=torch.float64), dist_reduce_fx="sum")  # one per name
        self.add_state("n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.names: list[str] = []

    def update(self, values: dict[str, torch.Tensor], batch_size: int) -> None:
        ref = next(iter(values.values()))
        if isinstance(ref, torch.Tensor):
            self._follow(ref)
        vals = torch.stack([torch.as_tensor(v).detach().to(self.device, torch.float64) for v in values.values()])
        self.sums = vals * batch_size if not self.sums.numel() else self.sums.add_(vals, alpha=batch_size)
        self.n += batch_size
        self.names = list(values)

    def compute(self) -> dict[str, torch.Tensor]:
        if not float(self.n):
            return {}
        return {name: (self.sums[i] / self.n).float() for i, name in enumerate(self.names)}


class ExactMean(_SplitMetric):
    """The mean of per-image values over a split (the VAE's test NLL): float64 sum and count,
    summed over the DDP ranks at ``compute``; None without values."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor) -> None:
        self._follow(values)
        self.total += values.detach().sum(dtype=torch.float64)
        self.n += values.numel()

    def compute(self) -> torch.Tensor | None:
        return (self.total / self.n).float() if float(self.n) else None


class ReconMetrics(_SplitMetric):
    """Exact split-level mse / nrmse / rel_error, accumulated on the device without syncing.

    ``update`` only adds into device tensors; ``compute`` (once per epoch) is the only sync. Under
    DDP, torchmetrics first reduces the float64 sums and count (``sum``) and the target's extremes
    (``min`` / ``max``) over the ranks: every rank must call it, and every rank then gets the figures
    of the whole split, exactly as one process would.
    """

    def __init__(self) -> None:
        super().__init__()
        for name in ("sse", "sx2", "n"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("lo", torch.tensor(math.inf, dtype=torch.float64), dist_reduce_fx="min")
        self.add_state("hi", torch.tensor(-math.inf, dtype=torch.float64), dist_reduce_fx="max")

    def update(self, out: torch.Tensor, target: torch.Tensor) -> None:
        self._follow(target)
        out, target = out.detach().float(), target.detach().float()
        self.sse += (out - target).square().sum(dtype=torch.float64)
        self.sx2 += target.square().sum(dtype=torch.float64)
        self.lo = torch.minimum(self.lo, target.min().double())
        self.hi = torch.maximum(self.hi, target.max().double())
        self.n += target.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        if not float(self.n):
            return {}
        mse = self.sse / self.n
        span = (self.hi - self.lo).clamp_min(EPS)
        return {"mse": mse.float(),
                "nrmse": (mse.sqrt() / span).float(),
                "rel_error": (self.sse.sqrt() / self.sx2.sqrt().clamp_min(EPS)).float()}
