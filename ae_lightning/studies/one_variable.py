"""The design of the fcAE study's optimizers, activations and losses studies: one setting changed at
a time, everything else held, beside the original's test NRMSE after 1000 epochs.
"""
from __future__ import annotations

from ae_lightning.studies.common import Context, recon_metrics
from ae_lightning.studies.plots import bar_plot
from ae_lightning.studies.presets import overrides_of


def one_variable(ctx: Context, what: str, choices: list[tuple[str, dict]], reference: dict[str, float],
                 latent: int = 8) -> dict[str, dict]:
    """One setting changed at a time, everything else held, at latent
    ``latent``. ``choices`` are ``(label, config overrides)``; a diverged run is reported, not fatal.
    A preset replaces them with its ``choices`` (label -> nested config overrides) and may add to
    ``reference``. Writes a table and a bar chart beside the reference test NRMSE; returns the
    numbers by label."""
    if ctx.params.choices is not None:
        choices = [(label, overrides_of(over)) for label, over in ctx.params.choices.items()]
    reference = {**reference, **ctx.params.reference}
    latent = ctx.params.latent if ctx.params.latent is not None else latent

    out: dict[str, dict] = {}
    for label, overrides in choices:
        run = ctx.train(label=f"{what} {label}", allow_diverge=True, model__latent_dim=latent, **overrides)
        if run is None:
            out[label] = {"diverged": True, "overrides": overrides}
            continue
        x_train, _ = ctx.tensors(run.cfg, "train")
        x_test, _ = ctx.tensors(run.cfg, "test")
        out[label] = {"overrides": overrides, "train": recon_metrics(run.module, x_train),
                      "test": recon_metrics(run.module, x_test), "test_loss": run.metrics.get("test_loss"),
                      "epochs": run.metrics.get("epochs")}
    rows = []
    for label, _ in choices:
        r = out[label]
        if r.get("diverged"):
            rows.append([label, "diverged", "diverged", None, reference.get(label)])
        else:
            rows.append([label, r["train"]["nrmse"], r["test"]["nrmse"], r["test_loss"], reference.get(label)])
    ctx.report.table([what, "train NRMSE", "test NRMSE", "test loss (its own objective)", "reference test NRMSE"], rows)
    labels = [label for label, _ in choices]
    ours = [None if out[lb].get("diverged") else out[lb]["test"]["nrmse"] for lb in labels]
    ctx.report.figure(f"{what}_nrmse", bar_plot(labels, {"this run": ours, "reference (1000 epochs)":
                                                         [reference.get(lb) for lb in labels]},
                                                "test NRMSE", f"test NRMSE by {what}"),
                      f"Test NRMSE by {what}, beside the reference")
    ranked = [lb for lb in sorted(labels, key=lambda lb: float("inf") if out[lb].get("diverged")
                                  else out[lb]["test"]["nrmse"])]
    ref_ranked = sorted((lb for lb in labels if lb in reference), key=lambda lb: reference[lb])
    ctx.report.text(f"Order by test NRMSE, best first: this run {' < '.join(ranked)}; "
                    f"reference {' < '.join(ref_ranked)}.")
    ctx.report.results.update({"latent_dim": latent, "by_choice": out, "reference_test_nrmse": reference,
                               "order": ranked, "reference_order": ref_ranked,
                               "test_nrmse": {lb: None if out[lb].get("diverged") else out[lb]["test"]["nrmse"]
                                              for lb in labels}})
    return out
