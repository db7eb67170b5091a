"""denoising: a denoising autoencoder at Gaussian noise factors 0.2, 0.3 and 0.6.

One model per noise factor (``model.noise_factor``), trained on corrupted inputs against clean
targets. The loss table reads, for each split, the MSE of reconstructions *from noisy inputs*
against the clean images (the denoising objective; the noise is the variant's seeded evaluation
noise), and the test MSE from clean inputs beside it. Image rows: original, noisy, denoised.
"""
from __future__ import annotations

import torch

from ae_lightning.errors import UserError
from ae_lightning.studies.common import Context, recon_metrics
from ae_lightning.studies.plots import line_plot
from ae_lightning.text import plural
from ae_lightning.viz import tile

FACTORS = [0.2, 0.3, 0.6]
N_SHOWN = 12
REFERENCE = {0.3: 0.0246, 0.6: 0.0332}  # the study's MNIST test loss


@torch.no_grad()
def noisy_copy(module, x: torch.Tensor) -> torch.Tensor:
    """The variant's seeded evaluation noise on ``x`` (N,1,28,28): the same draw on every call."""
    return module.corrupt(x, "test")


def measure(ctx: Context) -> dict:
    """Train/test loss by noise factor, and a PNG of original / noisy / denoised images.

    A preset may set ``factors`` (the noise factors) and ``reference`` (factor -> test loss)."""
    factors = [float(f) for f in (ctx.params.factors if ctx.params.factors is not None else FACTORS)]
    reference = {float(k): v for k, v in (ctx.params.reference if ctx.params.reference is not None else REFERENCE).items()}
    probe = ctx.config()
    if "noise_factor" not in probe["model"]:
        raise UserError(f"denoising: variant {ctx.variant!r} adds no noise (no model.noise_factor); "
                        "use --variant denoising")
    res, strips = {}, []
    for f in factors:
        run_ = ctx.train(label=f"noise {f}", model__noise="gaussian", model__noise_factor=f)
        m = run_.module
        split = {}
        for name in ("train", "test"):
            x, _ = ctx.tensors(run_.cfg, name)
            noisy = noisy_copy(m, x)
            split[name] = {"noisy_input": recon_metrics(m, x, noisy), "clean_input": recon_metrics(m, x),
                           "noise_only_mse": float((noisy - x).square().mean())}
        res[f] = {**split, "fit_test_loss": run_.metrics.get("test_loss"), "epochs": run_.metrics.get("epochs")}
        x, _ = ctx.tensors(run_.cfg, "test", N_SHOWN)
        noisy = noisy_copy(m, x)
        strips += [x, noisy, m.output(m.decode(m.encode(noisy)))] if not strips else [noisy, m.output(m.decode(m.encode(noisy)))]
    ctx.report.save_image("denoising_rows", tile(torch.cat(strips), nrow=N_SHOWN))
    return {"variant": ctx.variant, "factors": factors, "by_factor": res, "reference_test_loss": reference,
            # in the order of `factors` (a dotted results path cannot name the key 0.3)
            "test_loss_noisy_in": [res[f]["test"]["noisy_input"]["mse"] for f in factors], "model": probe["model"]}


def render(ctx: Context, r: dict) -> None:
    """The loss table and plot by noise factor, and the images ``measure`` wrote."""
    factors, res = r["factors"], {float(f): v for f, v in r["by_factor"].items()}
    reference = {float(k): v for k, v in r["reference_test_loss"].items()}
    rep, model = ctx.report, ctx.base_model(r)
    rep.text(f"`{ctx.variant}` ({model.get('architecture', ctx.variant)} architecture, latent {model.get('latent_dim')}), "
             "Gaussian noise x + f·N(0, 1) clipped to [0, 1], MSE against the clean image, "
             f"{plural(ctx.opts.epochs, 'epoch')} per factor. Reference: the study's MNIST test loss, "
             + ", ".join(f"{v} at {k:g}" for k, v in reference.items()) + ".")
    rep.table(["noise factor", "train loss (noisy in)", "test loss (noisy in)", "test MSE (clean in)",
               "MSE of the noisy input itself", "reference test loss"],
              [[f, res[f]["train"]["noisy_input"]["mse"], res[f]["test"]["noisy_input"]["mse"],
                res[f]["test"]["clean_input"]["mse"], res[f]["test"]["noise_only_mse"], reference.get(f)] for f in factors])
    rep.figure("denoising_loss", line_plot(
        {"train (noisy in)": (factors, [res[f]["train"]["noisy_input"]["mse"] for f in factors]),
         "test (noisy in)": (factors, [res[f]["test"]["noisy_input"]["mse"] for f in factors]),
         "reference test": (list(reference), list(reference.values()))},
        "noise factor", "MSE", "Denoising loss by noise factor"), "Loss against the noise factor, beside the reference")
    rep.link("denoising_rows", "Top row: test images; then, for noise " + ", ".join(f"{f:g}" for f in factors)
             + " in turn, the noisy input and its denoised reconstruction")
