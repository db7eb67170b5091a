"""inversion: least-squares inversion of a trained decoder, from its outputs back to the latent code.

The decoder of an MLP autoencoder is ``Linear, LeakyReLU, ..., Linear`` and then the output
activation. Each step is undone in reverse, in float64:

    sigmoid output   logit(clip(x, eps, 1 - eps))
    LeakyReLU(a)     y if y >= 0 else y / a                      (exact)
    Linear(W, b)     x_in = (x_out - b) · pinv(Wᵀ)                (least squares; exact when W has
                                                                  full column rank and x_out is in range)

Two experiments at each latent size: from the autoencoder's own outputs (the codes must come back:
Frobenius norm between recovered and encoder codes), and from true images (the code whose decoding
is closest, at the logit level, to the image; then the re-decoded image's error against the image
and against the autoencoder's own reconstruction error).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ae_lightning.errors import UserError
from ae_lightning.fit import build
from ae_lightning.models.base import AutoencoderModule
from ae_lightning.studies.common import Context, recon_metrics
from ae_lightning.studies.compression import LATENTS, PIXELS
from ae_lightning.studies.plots import line_plot

OWN_EPS = 1e-7  # own float32 outputs: clip only against float32 rounding at 0 and 1
OWN_EPS64 = 1e-15  # own outputs decoded in float64
TRUE_EPS = 1e-3  # true pixels are often exactly 0 or 1, whose logits are infinite: clip to ±6.9
# fcAE study at latent 8: Frobenius norm between recovered and encoder codes from the AE's outputs
REFERENCE = {"own_train_frobenius": 0.0153, "own_test_frobenius": 0.0062}


def decoder_steps(module) -> list[nn.Module]:
    """The decoder's layers in forward order, checked to be invertible; a UserError names the first
    that is not. The output activation comes last as ``nn.Sigmoid`` (or nothing, for a linear output)."""
    name = type(module).__name__
    dec = module.decoder if isinstance(module, AutoencoderModule) else None
    if not isinstance(dec, nn.Sequential):
        raise UserError(f"inversion: {name} has no fully connected decoder (an nn.Sequential `decoder` of Linear "
                        "and LeakyReLU layers); only MLP decoders can be inverted, e.g. --variant fc or linear")
    leaves = _expand(dec)
    while leaves and isinstance(leaves[-1], (nn.Unflatten, nn.Identity)):
        leaves.pop()  # a final reshape to (1, 28, 28): inverted by flattening the images
    steps: list[nn.Module] = []
    for layer in leaves:
        if isinstance(layer, (nn.Linear, nn.LeakyReLU)):
            if isinstance(layer, nn.LeakyReLU) and layer.negative_slope <= 0:
                raise UserError("inversion: LeakyReLU with slope 0 is not invertible")
            steps.append(layer)
        elif not isinstance(layer, nn.Identity):
            why = " (it maps every negative input to 0)" if isinstance(layer, nn.ReLU) else ""
            raise UserError(f"inversion: the decoder of {name} holds {type(layer).__name__}{why}, which has no exact "
                            "inverse; supported layers are Linear and LeakyReLU (with a sigmoid or linear output), "
                            "e.g. --variant fc or linear")
    out_act = module.hparams.get("output_act", "none")
    if out_act not in ("sigmoid", "none"):
        raise UserError(f"inversion: output activation {out_act!r} is not supported (sigmoid or none)")
    return steps + ([nn.Sigmoid()] if out_act == "sigmoid" else [])


def _expand(seq: nn.Sequential) -> list[nn.Module]:
    """The layers of nested Sequentials, in forward order."""
    out: list[nn.Module] = []
    for layer in seq:
        out += _expand(layer) if isinstance(layer, nn.Sequential) else [layer]
    return out


@torch.no_grad()
def invert(module, x: torch.Tensor, eps: float = OWN_EPS, skip_saturated: bool = False) -> torch.Tensor:
    """Codes ``(N, k)`` whose decoding best matches ``x`` ``(N,1,28,28)`` (or ``(N,784)``), layer by
    layer from the top, in float64.

    ``skip_saturated``: pixels at the clip bounds (a sigmoid output that rounded to 0 or 1 has lost
    its logit) are left out of the top layer's least squares, image by image, instead of entering
    it with the clipped logit. Only images that have such pixels pay for a solve of their own."""
    h = x.reshape(len(x), -1).double()
    valid = None
    for layer in reversed(decoder_steps(module)):
        if isinstance(layer, nn.Sigmoid):
            if skip_saturated:
                valid = (h > eps) & (h < 1 - eps)  # (N, 784): pixels whose logit survived
            h = torch.logit(h.clamp(eps, 1 - eps))
        elif isinstance(layer, nn.LeakyReLU):
            h = torch.where(h >= 0, h, h / layer.negative_slope)
        else:  # Linear: y = x Wᵀ + b, so x = (y - b) pinv(Wᵀ); W (out, in), pinv(Wᵀ) (out, in)
            w, b = layer.weight.double(), layer.bias.double() if layer.bias is not None else 0.0
            y = h - b
            h = y @ torch.linalg.pinv(w.T)
            if valid is not None:
                for i in (~valid).any(1).nonzero().flatten().tolist():
                    rows = valid[i]  # least squares on this image's unsaturated outputs only
                    h[i] = torch.linalg.lstsq(w[rows], y[i, rows].unsqueeze(1)).solution.squeeze(1)
                valid = None
    return h


@torch.no_grad()
def decode_codes(module, z: torch.Tensor) -> torch.Tensor:
    """Images ``(N,1,28,28)`` in pixel scale from codes, through the module's own decoder."""
    return module.output(module.decode(z.to(module.device, torch.float32)))


@torch.no_grad()
def measure_split(module, x: torch.Tensor) -> dict[str, float]:
    """Both experiments on one split ``x`` ``(N,1,28,28)``.

    Own outputs are inverted twice: as the model emits them (float32), and decoded in float64. A
    trained decoder's sigmoid saturates: float32 cannot tell 1 - 1e-8 from 1 (nor keep much below
    1e-38), so pixels with large |logit| lose their value and the float32 inversion is only as
    good as the unsaturated pixels; in float64 the sigmoid keeps |logits| up to ~36."""
    z = module.encode_all(x).double()
    # float32 as emitted and clipped: most trained-decoder images have background pixels beyond
    # float32's sigmoid range, so a per-image solve would cost one lstsq per image
    z_own32 = invert(module, decode_codes(module, z), OWN_EPS)
    dec64 = copy.deepcopy(module).double()
    x_hat64 = torch.cat([dec64.output(dec64.decode(z[i:i + 4096].to(dec64.device)))
                         for i in range(0, len(z), 4096)])
    z_own = invert(module, x_hat64, OWN_EPS64, skip_saturated=True)
    saturated = ((x_hat64 <= OWN_EPS64) | (x_hat64 >= 1 - OWN_EPS64)).flatten(1)  # (N, 784)
    z_true = invert(module, x, TRUE_EPS)
    x_re = decode_codes(module, z_true)
    span = float(x.max() - x.min())
    return {
        "own_frobenius": float((z_own - z).norm()),
        "own_relative": float((z_own - z).norm() / z.norm().clamp_min(1e-12)),
        "own_saturated_pixels": int(saturated.sum()),
        "own_images_with_saturated_pixels": int(saturated.any(1).sum()),
        "own_frobenius_float32": float((z_own32 - z).norm()),
        "own_relative_float32": float((z_own32 - z).norm() / z.norm().clamp_min(1e-12)),
        "true_code_frobenius": float((z_true - z).norm()),
        "true_output_frobenius": float((x_re.double() - x.double()).norm()),
        "true_nrmse": float((x_re.double() - x.double()).square().mean().sqrt() / max(span, 1e-12)),
        "ae_nrmse": recon_metrics(module, x)["nrmse"],
        "n": len(x),
    }


def measure(ctx: Context) -> dict:
    """Least-squares inversion of the decoder at each latent size, on the train and the test split."""
    decoder_steps(_build(ctx))  # a decoder that cannot be inverted fails before anything trains
    ks = list(ctx.opts.latents or ctx.params.latents or LATENTS)
    by_k = {}
    for k in ks:
        run_ = ctx.train(label=f"latent {k}", model__latent_dim=k)
        by_k[k] = {split: measure_split(run_.module, ctx.tensors(run_.cfg, split)[0]) for split in ("train", "test")}
    worse_everywhere = all(by_k[k][s]["true_nrmse"] > by_k[k][s]["ae_nrmse"] for k in ks for s in ("train", "test"))
    return {"variant": ctx.variant, "own_eps_float32": OWN_EPS, "own_eps_float64": OWN_EPS64, "true_eps": TRUE_EPS,
            "by_latent": by_k, "reference": REFERENCE, "true_worse_at_every_k": worse_everywhere}


def render(ctx: Context, r: dict) -> None:
    """The inversion's setting, its two tables (own outputs, true images), the NRMSE against the ratio beside
    the autoencoder's, and which is better."""
    rep, by_k = ctx.report, r["by_latent"]
    ks = list(by_k)
    rep.text(f"Decoders of `{ctx.variant}` inverted layer by layer (pseudo-inverse of each Linear, exact inverse "
             f"of each LeakyReLU, logit of the sigmoid output), in float64. Own outputs are clipped to "
             f"[{OWN_EPS64:g}, 1 − {OWN_EPS64:g}] (float64; [{OWN_EPS:g}, 1 − {OWN_EPS:g}] for float32) before the "
             f"logit, true images to [{TRUE_EPS:g}, 1 − {TRUE_EPS:g}] "
             "(their 0 and 1 pixels have infinite logits). Frobenius norms are over the whole split "
             f"({by_k[ks[0]]['train']['n']} train, {by_k[ks[0]]['test']['n']} test images); the study's split "
             "sizes are not stated, so compare magnitudes, not digits.")
    rep.heading("From the autoencoder's own outputs")
    rep.text("Outputs decoded in float64 (the inversion itself), and as the model emits them in float32. A "
             "pixel whose sigmoid rounded to 0 or 1 (|logit| beyond ~36 in float64, ~16 in float32) has lost its "
             "logit: in float64 it is left out of the top layer's least squares for its image; the float32 "
             "columns invert the outputs as emitted, clipped, to show what the precision costs.")
    rep.table(["latent k", "‖Z_rec − Z‖_F train", "‖Z_rec − Z‖_F test", "relative test",
               "test images with saturated pixels", "float32 outputs: ‖Z_rec − Z‖_F train / test",
               "float32: relative test", "reference (k = 8) train / test"],
              [[k, by_k[k]["train"]["own_frobenius"], by_k[k]["test"]["own_frobenius"], by_k[k]["test"]["own_relative"],
                by_k[k]["test"]["own_images_with_saturated_pixels"],
                f"{by_k[k]['train']['own_frobenius_float32']:.4g} / {by_k[k]['test']['own_frobenius_float32']:.4g}",
                by_k[k]["test"]["own_relative_float32"], "0.0153 / 0.0062" if k == 8 else None] for k in ks])
    rep.heading("From true images")
    rep.table(["latent k", "ratio 784/k", "‖Z* − Z_enc‖_F test", "‖decode(Z*) − X‖_F test",
               "NRMSE decode(Z*) train", "NRMSE decode(Z*) test", "AE's own NRMSE test"],
              [[k, f"{PIXELS / k:.1f}", by_k[k]["test"]["true_code_frobenius"],
                by_k[k]["test"]["true_output_frobenius"], by_k[k]["train"]["true_nrmse"],
                by_k[k]["test"]["true_nrmse"], by_k[k]["test"]["ae_nrmse"]] for k in ks])
    ratios = [PIXELS / k for k in ks]
    rep.figure("inversion_nrmse_vs_ratio", line_plot(
        {"inverted decoder (test)": (ratios, [by_k[k]["test"]["true_nrmse"] for k in ks]),
         "autoencoder (test)": (ratios, [by_k[k]["test"]["ae_nrmse"] for k in ks])},
        "compression ratio 784 / k", "NRMSE", "Least-squares decoder inversion vs the encoder", logx=True),
        "NRMSE of the re-decoded least-squares codes and of the autoencoder, against the compression ratio")
    rep.scalars("inversion/true_nrmse_test", {k: by_k[k]["test"]["true_nrmse"] for k in ks})
    rep.scalars("inversion/ae_nrmse_test", {k: by_k[k]["test"]["ae_nrmse"] for k in ks})
    better = [k for k in ks if by_k[k]["test"]["true_nrmse"] < by_k[k]["test"]["ae_nrmse"]]
    rep.text("The least-squares code beats the encoder's at k = " + ", ".join(map(str, better)) + "."
             if better else "The encoder's code reconstructs better than the least-squares code at every k "
             "(the inversion fits logits, where the clipped 0 pixels weigh as much as the strokes).")


def _build(ctx: Context):
    return build(ctx.config(model__latent_dim=2))[0]  # the module as the run builds it (data's shape)


