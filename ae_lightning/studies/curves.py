"""curves: the epoch-by-epoch training loss of named models, their reconstructions and first-layer weights.

The shallow/deep notebook's design: train each model, log the mean of every epoch's batch losses
(what Keras prints after each epoch), show test images beside their reconstructions (original,
noisy and denoised for a model that corrupts its input) and 12 first-layer filters as 28×28 images.

Without a preset the models are the notebook's three, ``shallow``, ``deep`` and a ``denoising`` deep
net at Gaussian noise 0.2, each at ``--epochs``. A preset (``reproduce keras``) names the models in
``models``: ``label -> {variant, epochs, config (nested overrides), reference (per-epoch losses),
units (which first-layer units to draw)}``.
"""
from __future__ import annotations

import torch

from ae_lightning.studies.common import Context
from ae_lightning.studies.plots import line_plot
from ae_lightning.studies.presets import overrides_of
from ae_lightning.studies.weights import linear_layers, unit_images
from ae_lightning.viz import tile

DEFAULT_MODELS = {
    "shallow": {"variant": "shallow"},
    "deep": {"variant": "deep"},
    "denoising": {"variant": "denoising", "config": {"model": {"architecture": "deep", "noise": "gaussian",
                                                               "noise_factor": 0.2}}},
}
N_SHOWN = 15
N_UNITS = 12


def measure(ctx: Context) -> dict:
    """Train each model; its losses by epoch, and PNGs of its reconstructions and first-layer weights."""
    results: dict[str, dict] = {}
    for label, spec in (ctx.params.models or DEFAULT_MODELS).items():
        over = overrides_of(spec.get("config"))
        if "epochs" in spec:
            over["trainer__max_epochs"] = spec["epochs"]
        run_ = ctx.train(spec.get("variant"), label=label, **over)
        m, history = run_.module, run_.metrics.get("history") or {}
        x, _ = ctx.tensors(run_.cfg, "test", N_SHOWN)
        with torch.no_grad():
            inp = m.corrupt(x, "test")
            out = m.output(m.decode(m.encode(inp)))
        strip = [x] + ([inp] if not torch.equal(inp, x) else []) + [out]
        ctx.report.save_image(f"reconstructions_{label}", tile(torch.cat(strip), nrow=N_SHOWN))
        enc = linear_layers(m.encoder)  # the first layer's weights are drawn where it is fully connected
        units = [u for u in spec.get("units") or range(N_UNITS) if enc and enc[0].in_features == 784 and u < len(enc[0].weight)]
        if units:
            ctx.report.save_image(f"weights_{label}", tile(unit_images(enc[0].weight[units]), nrow=len(units)))
        results[label] = {"variant": run_.cfg["variant"], "train_loss": history.get("train_loss") or [],
                          "reference": list(spec.get("reference") or []), "val_loss": history.get("val_loss"),
                          "test_loss": run_.metrics.get("test_loss"), "epochs": run_.metrics.get("epochs"),
                          "config": {k: run_.cfg[k] for k in ("data", "model")},
                          "noisy_input": len(strip) == 3, "units": units}
    return {"models": results}


def render(ctx: Context, r: dict) -> None:
    """The images ``measure`` wrote; each model's loss by epoch against the reference's, as tables and a plot."""
    rep, results = ctx.report, r["models"]
    curves, rows = {}, []
    for label, m in results.items():
        # older results: noisy where its config adds noise, the preset's units
        noisy = m.get("noisy_input", "noise" in m["config"]["model"])
        units = m.get("units", list((ctx.params.models or DEFAULT_MODELS)[label].get("units") or range(N_UNITS)))
        rep.link(f"reconstructions_{label}", f"{label}: test images" + (", their noisy inputs" if noisy else "")
                 + " and the outputs")
        if units:
            rep.link(f"weights_{label}", f"{label}: first-layer weights of units {units[0]}..{units[-1]}, "
                     "each scaled to its own range")
        losses, ref = m["train_loss"], m["reference"]
        curves[f"{label} (ours)"] = (list(range(1, len(losses) + 1)), losses)
        if ref:
            curves[f"{label} (reference)"] = (list(range(1, len(ref) + 1)), ref)
        diffs = [abs(a - b) for a, b in zip(losses, ref) if a is not None and b is not None]
        rows.append([label, m["variant"], len(losses), losses[-1] if losses else None,
                     ref[-1] if ref else None, (losses[-1] - ref[-1]) if losses and ref and len(losses) == len(ref) else None,
                     max(diffs) if diffs else None])
    loss_names = sorted({m["config"]["model"].get("loss") for m in results.values()})
    rep.text(f"Each model's training loss ({', '.join(map(str, loss_names))}) after every epoch: the mean of the "
             "epoch's batch losses, weighted by batch size, as Keras logs it.")
    rep.table(["model", "variant", "epochs", "last epoch loss (ours)", "reference", "ours − reference",
               "max |ours − reference| over the epochs"], rows)
    per_epoch = max(len(m["train_loss"]) for m in results.values())
    rep.table(["epoch"] + [f"{lb} ours / ref" for lb in results],
              [[e + 1] + [" / ".join("—" if v is None else f"{v:.4f}" for v in
                                     ((m["train_loss"][e] if e < len(m["train_loss"]) else None),
                                      (m["reference"][e] if e < len(m["reference"]) else None)))
                          for m in results.values()] for e in range(per_epoch)],
              caption="Epoch by epoch")
    rep.figure("train_loss", line_plot(curves, "epoch", "training loss", "Training loss by epoch", marker="."),
               "Training loss by epoch, ours beside the reference")
