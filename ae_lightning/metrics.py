"""Loss and metric conventions: the one place that defines them.

Reconstruction losses (the training objective of the deterministic autoencoders) are **means per
element**, over pixels and images, computed on pixels in the data's [0, 1] scale:

    mse  mean (x - x_hat)^2
    l1   mean |x - x_hat|
    bce  mean -[x log x_hat + (1 - x) log(1 - x_hat)]  (from logits when the output is a sigmoid)
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

import torch
import torch.nn.functional as F

EPS = 1e-7
LOSSES = ("mse", "bce", "l1", "kl")


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
    if kind == "kl":
        t, o = target.clamp(EPS, 1), out.clamp(EPS, 1)
        return (t * (t.log() - o.log())).mean()
    raise ValueError(f"unknown loss {kind!r}")


class ReconMetrics:
    """Exact split-level mse / nrmse / rel_error, accumulated on the device without syncing.

    ``update`` only adds into device tensors; ``compute`` (once per epoch) is the only sync.
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
        if self.sse is None:
            return {}
        mse = self.sse / self.n
        span = (self.hi - self.lo).double().clamp_min(EPS)
        return {"mse": mse.float(),
                "nrmse": (mse.sqrt() / span).float(),
                "rel_error": (self.sse.sqrt() / self.sx2.sqrt().clamp_min(EPS)).float()}
