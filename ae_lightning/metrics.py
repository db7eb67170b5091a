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

Logged as ``<stage>/mse``, ``<stage>/nrmse``, ``<stage>/rel_error``; in ``metrics.json`` as
``test_mse``, ``test_nrmse``, ``test_rel_error``.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

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


def distributed_world() -> int:
    """The number of processes of the initialized ``torch.distributed`` group (1 without one)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``t`` reduced in place over every rank (``sum``, ``min`` or ``max``); a no-op in one process.

    Every rank must call it, with the same shape and dtype. The split-level metrics reduce their
    sums, counts and extremes with it, so a DDP evaluation equals a one-process one (not a mean of
    per-rank figures)."""
    if distributed_world() > 1:
        torch.distributed.all_reduce(t, op=getattr(torch.distributed.ReduceOp, op.upper()))
    return t


def _dist_device() -> torch.device:
    """Where a collective's tensors must live: the current CUDA device under NCCL, else the CPU."""
    if distributed_world() > 1 and torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class BatchMeans:
    """Exact means over a split of per-batch means (an evaluation loss and its terms), weighted by
    batch size: ``update`` adds ``mean * batch_size`` into one float64 device tensor (no sync);
    ``compute`` reduces the sums and the image count over the DDP ranks (one collective), so uneven
    shards weigh exactly as in one process (Lightning's ``sync_dist`` mean truncates an uneven
    count: gloo divides its integer batch-size total by the world size in place)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums, self.n, self.names = None, 0, []

    @torch.no_grad()
    def update(self, values: dict[str, torch.Tensor], batch_size: int) -> None:
        ref = next(iter(values.values()))
        dev = ref.device if isinstance(ref, torch.Tensor) else None
        vals = torch.stack([torch.as_tensor(v).detach().to(dev, torch.float64) for v in values.values()])
        self.sums = vals * batch_size if self.sums is None else self.sums.add_(vals, alpha=batch_size)
        self.n, self.names = self.n + batch_size, list(values)

    def compute(self) -> dict[str, torch.Tensor]:
        if self.sums is None:  # every DDP rank has batches (MNISTDataModule refuses smaller splits)
            return {}
        total = all_reduce_(torch.cat([self.sums, self.sums.new_tensor([float(self.n)])]), "sum")
        return {name: (total[i] / total[-1]).float() for i, name in enumerate(self.names)}


class ReconMetrics:
    """Exact split-level mse / nrmse / rel_error, accumulated on the device without syncing.

    ``update`` only adds into device tensors; ``compute`` (once per epoch) is the only sync. Under
    DDP (an initialized ``torch.distributed`` group), ``compute`` first reduces the sums and counts
    (sum) and the target's extremes (min / max) over the ranks: every rank must call it, and every
    rank then gets the figures of the whole split, exactly as one process would.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sse = self.sx2 = self.n = None
        self.lo = self.hi = None

    @torch.no_grad()
    def update(self, out: torch.Tensor, target: torch.Tensor) -> None:
        out, target = out.detach().float(), target.detach().float()
        sse = (out - target).square().sum(dtype=torch.float64)
        sx2 = target.square().sum(dtype=torch.float64)
        lo, hi = target.min(), target.max()
        if self.sse is None:
            self.sse, self.sx2, self.lo, self.hi = sse, sx2, lo, hi
            self.n = torch.zeros((), dtype=torch.float64, device=out.device)
        else:
            self.sse, self.sx2 = self.sse + sse, self.sx2 + sx2
            self.lo, self.hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)
        self.n += target.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        sse, sx2, n, lo, hi = self.sse, self.sx2, self.n, self.lo, self.hi
        if distributed_world() > 1:  # every rank joins the collectives, one without batches too
            dev = sse.device if sse is not None else _dist_device()
            f64 = functools.partial(torch.full, (), dtype=torch.float64, device=dev)
            sums = torch.stack([f64(0.0)] * 3 if sse is None else [sse, sx2, n])
            ext = torch.stack([f64(-math.inf)] * 2 if sse is None else [-lo.double(), hi.double()])
            all_reduce_(sums, "sum")
            all_reduce_(ext, "max")  # [-min, max]: one collective for both extremes
            sse, sx2, n, lo, hi = (None,) * 5 if not float(sums[2]) else (*sums, -ext[0], ext[1])
        if sse is None:
            return {}
        mse = sse / n
        span = (hi - lo).double().clamp_min(EPS)
        return {"mse": mse.float(),
                "nrmse": (mse.sqrt() / span).float(),
                "rel_error": (sse.sqrt() / sx2.sqrt().clamp_min(EPS)).float()}
