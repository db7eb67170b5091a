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


def measure(ctx: Context) -> dict:
    """First-layer encoder weights (and last-layer decoder weights) as images, and their norms."""
    run_ = ctx.train(label=ctx.variant)
    m = run_.module
    enc, dec = (linear_layers(m.encoder), linear_layers(m.decoder)) if isinstance(m, AutoencoderModule) else ([], [])
    if not enc or enc[0].in_features != 784:
        raise UserError(f"weights: variant {ctx.variant!r} has no fully connected first layer on the 784 pixels "
                        "(use an fc, shallow, deep or linear model)")
    first = enc[0].weight  # (units, 784)
    n = min(MAX_UNITS, len(first))
    ctx.report.save_image("encoder_first_layer", tile(unit_images(first[:n]), nrow=10 if n >= 40 else 8))
    results = {"variant": ctx.variant, "units": len(first), "shown": n,
               "weight_norms": first.detach().norm(dim=1).tolist(), "test_nrmse": run_.metrics.get("test_nrmse")}
    if dec and dec[-1].out_features == 784:
        last = dec[-1].weight.T  # (in units, 784): each input unit's contribution to the image
        k = min(MAX_UNITS, len(last))
        ctx.report.save_image("decoder_last_layer", tile(unit_images(last[:k]), nrow=10 if k >= 40 else 8))
        results["decoder_units"] = len(last)
    return results


def render(ctx: Context, r: dict) -> None:
    """The images ``measure`` wrote, and the statistics of the first layer's weight norms."""
    rep, units, n = ctx.report, r["units"], r["shown"]
    norms = torch.tensor(r["weight_norms"])  # float32, as measured
    rep.text(f"`{ctx.variant}`: first layer Linear(784 → {units}); "
             f"{'all' if n == units else f'the first {n} of'} {units} units shown, each scaled to "
             f"its own [min, max] (white = most positive). {plural(ctx.opts.epochs, 'epoch')}; test NRMSE "
             f"{float('nan') if r['test_nrmse'] is None else r['test_nrmse']:.4f}.")
    rep.link("encoder_first_layer", f"Input weights of the first {n} units of the first encoder layer")
    if "decoder_units" in r:
        rep.link("decoder_last_layer", f"Output weights of the first {min(MAX_UNITS, r['decoder_units'])} units "
                 "feeding the decoder's last layer")
    rep.table(["statistic", "value"], [["units", units], ["mean ‖w‖", float(norms.mean())],
                                        ["min ‖w‖", float(norms.min())], ["max ‖w‖", float(norms.max())]])
