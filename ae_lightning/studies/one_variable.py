"""The design of the fcAE study's optimizers, activations and losses studies: one setting changed at
a time, everything else held, beside the original's test NRMSE after 1000 epochs.
"""
from __future__ import annotations

from ae_lightning.studies.common import Context
from ae_lightning.studies.plots import bar_plot
from ae_lightning.studies.presets import overrides_of


def measure(ctx: Context, what: str, choices: list[tuple[str, dict]], reference: dict[str, float],
            latent: int = 8) -> dict:
    """One setting changed at a time, everything else held, at latent ``latent``. ``choices`` are
    ``(label, config overrides)``; a diverged run is reported, not fatal. A preset replaces them with
    its ``choices`` (label -> nested config overrides) and may add to ``reference``. Returns the
    numbers by label, beside the reference test NRMSE."""
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
        out[label] = {"overrides": overrides, **ctx.split_metrics(run), "test_loss": run.metrics.get("test_loss"),
                      "epochs": run.metrics.get("epochs")}
    test_nrmse = {lb: None if r.get("diverged") else r["test"]["nrmse"] for lb, r in out.items()}
    return {"latent_dim": latent, "by_choice": out, "reference_test_nrmse": reference,
            "order": sorted(out, key=lambda lb: float("inf") if test_nrmse[lb] is None else test_nrmse[lb]),
            "reference_order": sorted((lb for lb in out if lb in reference), key=lambda lb: reference[lb]),
            "test_nrmse": test_nrmse, "model": ctx.config()["model"]}


def render(ctx: Context, what: str, r: dict) -> None:
    """A table and a bar chart beside the reference test NRMSE, and the order of the choices."""
    out, reference, ours = r["by_choice"], r["reference_test_nrmse"], r["test_nrmse"]
    ctx.report.table([what, "train NRMSE", "test NRMSE", "test loss (its own objective)", "reference test NRMSE"],
                     [[label, "diverged", "diverged", None, reference.get(label)] if x.get("diverged") else
                      [label, x["train"]["nrmse"], x["test"]["nrmse"], x["test_loss"], reference.get(label)]
                      for label, x in out.items()])
    ctx.report.figure(f"{what}_nrmse", bar_plot(list(out), {"this run": list(ours.values()), "reference (1000 epochs)":
                                                            [reference.get(lb) for lb in out]},
                                                "test NRMSE", f"test NRMSE by {what}"),
                      f"Test NRMSE by {what}, beside the reference")
    ctx.report.text(f"Order by test NRMSE, best first: this run {' < '.join(r['order'])}; "
                    f"reference {' < '.join(r['reference_order'])}.")
