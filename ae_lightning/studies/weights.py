"""weights: the first-layer weights of a fully connected autoencoder, drawn as 28×28 images.

Each hidden unit of the first encoder layer has 784 input weights: one image per unit, each scaled
to its own [min, max] (so the pattern shows, not the scale). For the decoder's last layer, each
latent or hidden unit's 784 outgoing weights are drawn the same way: what that unit adds to the
output image.
"""
from __future__ import annotations

import torch
from torch import nn

from ae_lightning.errors import UserError
from ae_lightning.models.base import AutoencoderModule
from ae_lightning.studies.common import Context
from ae_lightning.text import plural
from ae_lightning.viz import tile

MAX_UNITS = 100


def unit_images(w: torch.Tensor) -> torch.Tensor:
    """``w`` (units, 784) -> (units, 1, 28, 28), each unit min-max scaled to [0, 1]."""
    w = w.detach().float().cpu()
    lo, hi = w.min(1, keepdim=True).values, w.max(1, keepdim=True).values
    return ((w - lo) / (hi - lo).clamp_min(1e-12)).view(-1, 1, 28, 28)


def linear_layers(part: nn.Module | None) -> list[nn.Linear]:
    """The Linear layers of an autoencoder's ``encoder`` or ``decoder`` (none where it has no such module)."""
    return [m for m in part.modules() if isinstance(m, nn.Linear)] if part is not None else []


def run(ctx: Context) -> None:
    """First-layer encoder weights (and last-layer decoder weights) as images."""
    run_ = ctx.train(label=ctx.variant)
    m = run_.module
    enc, dec = (linear_layers(m.encoder), linear_layers(m.decoder)) if isinstance(m, AutoencoderModule) else ([], [])
    if not enc or enc[0].in_features != 784:
        raise UserError(f"weights: variant {ctx.variant!r} has no fully connected first layer on the 784 pixels "
                        "(use an fc, shallow, deep or linear model)")
    first = enc[0].weight  # (units, 784)
    rep = ctx.report
    n = min(MAX_UNITS, len(first))
    nrow = 10 if n >= 40 else 8
    norms = first.detach().norm(dim=1)
    rep.text(f"`{ctx.variant}`: first layer Linear(784 → {len(first)}); "
             f"{'all' if n == len(first) else f'the first {n} of'} {len(first)} units shown, each scaled to "
             f"its own [min, max] (white = most positive). {plural(ctx.opts.epochs, 'epoch')}; test NRMSE "
             f"{run_.metrics.get('test_nrmse', float('nan')):.4f}.")
    rep.image("encoder_first_layer", tile(unit_images(first[:n]), nrow=nrow),
              f"Input weights of the first {n} units of the first encoder layer")
    results = {"variant": ctx.variant, "units": len(first), "shown": n,
               "weight_norms": norms.tolist(), "test_nrmse": run_.metrics.get("test_nrmse")}
    if dec and dec[-1].out_features == 784:
        last = dec[-1].weight.T  # (in units, 784): each input unit's contribution to the image
        k = min(MAX_UNITS, len(last))
        rep.image("decoder_last_layer", tile(unit_images(last[:k]), nrow=10 if k >= 40 else 8),
                  f"Output weights of the first {k} units feeding the decoder's last layer")
        results["decoder_units"] = len(last)
    rep.table(["statistic", "value"], [["units", len(first)], ["mean ‖w‖", float(norms.mean())],
                                        ["min ‖w‖", float(norms.min())], ["max ‖w‖", float(norms.max())]])
    rep.results.update(results)


