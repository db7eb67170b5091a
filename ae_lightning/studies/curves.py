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








def run(ctx: Context) -> None:
    """Epoch-by-epoch training loss, reconstructions and first-layer weights of each model."""
    models = ctx.params.models if ctx.params.models is not None else DEFAULT_MODELS
    rep = ctx.report
    results: dict[str, dict] = {}
    curves, rows = {}, []
    for label, spec in models.items():
        over = overrides_of(spec.get("config"))
        if "epochs" in spec:
            over["trainer__max_epochs"] = spec["epochs"]
        run_ = ctx.train(spec.get("variant"), label=label, **over)
        m = run_.module
        losses = (run_.metrics.get("history") or {}).get("train_loss") or []
        ref = list(spec.get("reference") or [])
        curves[f"{label} (ours)"] = (list(range(1, len(losses) + 1)), losses)
        if ref:
            curves[f"{label} (reference)"] = (list(range(1, len(ref) + 1)), ref)
        diffs = [abs(a - b) for a, b in zip(losses, ref) if a is not None and b is not None]
        rows.append([label, run_.cfg["variant"], len(losses), losses[-1] if losses else None,
                     ref[-1] if ref else None, (losses[-1] - ref[-1]) if losses and ref and len(losses) == len(ref) else None,
                     max(diffs) if diffs else None])
        x, _ = ctx.tensors(run_.cfg, "test", N_SHOWN)
        with torch.no_grad():
            inp = m.corrupt(x, "test")
            out = m.output(m.decode(m.encode(inp)))
        strip = [x] + ([inp] if not torch.equal(inp, x) else []) + [out]
        rep.image(f"reconstructions_{label}", tile(torch.cat(strip), nrow=N_SHOWN),
                  f"{label}: test images" + (", their noisy inputs" if len(strip) == 3 else "") + " and the outputs")
        enc = linear_layers(m.encoder)
        units = list(spec.get("units") or range(N_UNITS))
        if enc and enc[0].in_features == 784:
            w = enc[0].weight
            units = [u for u in units if u < len(w)]
            rep.image(f"weights_{label}", tile(unit_images(w[units]), nrow=len(units)),
                      f"{label}: first-layer weights of units {units[0]}..{units[-1]}, each scaled to its own range")
        results[label] = {"variant": run_.cfg["variant"], "train_loss": losses, "reference": ref,
                          "val_loss": (run_.metrics.get("history") or {}).get("val_loss"),
                          "test_loss": run_.metrics.get("test_loss"), "epochs": run_.metrics.get("epochs"),
                          "config": {k: run_.cfg[k] for k in ("data", "model")}}
    loss_names = sorted({r["config"]["model"].get("loss") for r in results.values()})
    rep.text(f"Each model's training loss ({', '.join(map(str, loss_names))}) after every epoch: the mean of the "
             "epoch's batch losses, weighted by batch size, as Keras logs it.")
    rep.table(["model", "variant", "epochs", "last epoch loss (ours)", "reference", "ours − reference",
               "max |ours − reference| over the epochs"], rows)
    per_epoch = max(len(r["train_loss"]) for r in results.values())
    rep.table(["epoch"] + [f"{lb} ours / ref" for lb in results],
              [[e + 1] + [" / ".join("—" if v is None else f"{v:.4f}" for v in
                                     ((r["train_loss"][e] if e < len(r["train_loss"]) else None),
                                      (r["reference"][e] if e < len(r["reference"]) else None)))
                          for r in results.values()] for e in range(per_epoch)],
              caption="Epoch by epoch")
    rep.figure("train_loss", line_plot(curves, "epoch", "training loss", "Training loss by epoch", marker="."),
               "Training loss by epoch, ours beside the reference")
    rep.results.update({"models": results})


