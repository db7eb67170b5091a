"""compression: train and test NRMSE against the latent size k and the compression ratio 784 / k.

Two families of sizes: the fcAE study's 2, 4, 8, 16, 32, 64 and the shallow/deep study's code-size
sweep 5, 20, 35, ..., 95. One model per size, everything else held. Train NRMSE is measured on the
training images after training (eval mode), test NRMSE on the test split, both exactly over the
split with the project's metric (``ae_lightning.metrics``).
"""
from __future__ import annotations

from ae_lightning.studies.common import Context
from ae_lightning.studies.plots import line_plot
from ae_lightning.text import plural

LATENTS = [2, 4, 8, 16, 32, 64]
SWEEP = list(range(5, 96, 15))  # 5, 20, 35, 50, 65, 80, 95
PIXELS = 784
# fcAE study (784-392-196-k, LeakyReLU, Adam, MSE, 1000 epochs): test NRMSE at latent 8
REFERENCE = {8: 0.1139}


def sizes(ctx: Context) -> dict[str, list[int]]:
    """The latent sizes to train, by family (``--latents`` or a preset's ``latents`` replaces both)."""
    if ctx.opts.latents:
        return {"--latents": list(ctx.opts.latents)}
    if ctx.params.latents is not None:
        return {ctx.params.family: list(ctx.params.latents)}
    return {"fcAE sizes": LATENTS, "sweep 5..95": SWEEP}


def falls(values: list[float | None], slack: float = 0.0) -> bool:
    """``values`` fall as the size grows: no step up by more than ``slack``, and the last below the first."""
    if not values or any(v is None for v in values):
        return False
    return all(b <= a + slack for a, b in zip(values, values[1:])) and values[-1] < values[0]


def measure(ctx: Context) -> dict:
    """One model per latent size: train and test NRMSE, and the objective as trained."""
    families = sizes(ctx)
    by_k = {}
    for k in sorted({k for ks in families.values() for k in ks}):
        run = ctx.train(label=f"latent {k}", model__latent_dim=k)
        history = run.metrics.get("history") or {}
        by_k[k] = {"ratio": PIXELS / k, **ctx.split_metrics(run),
                   # the objective as trained: the last epoch's mean batch loss, and the test split's loss
                   "train_loss_last_epoch": (history.get("train_loss") or [None])[-1],
                   "test_loss": run.metrics.get("test_loss"), "epochs": run.metrics["epochs"]}
    train_loss, test_loss = ([r[key] for r in by_k.values()] for key in ("train_loss_last_epoch", "test_loss"))
    slack = ctx.params.falls_slack
    shape = {"train_loss_falls": falls(train_loss, slack), "test_loss_falls": falls(test_loss, slack)}
    shape["both_fall"] = shape["train_loss_falls"] and shape["test_loss_falls"]
    return {"variant": ctx.variant, "families": families, "reference_test_nrmse": REFERENCE, "loss_shape": shape,
            "by_latent": by_k, "model": ctx.config()["model"]}


def render(ctx: Context, r: dict) -> None:
    """NRMSE against latent size and compression ratio, and the objective against the code size."""
    rep, families, res = ctx.report, r["families"], r["by_latent"]
    all_k = sorted(res)
    rep.text(f"One `{ctx.variant}` model per latent size k, trained {plural(ctx.opts.epochs, 'epoch')}, everything else "
             "held. NRMSE = RMSE / (max − min of the targets), exact over each split. "
             "Reference: the fcAE study, test NRMSE 0.1139 at k = 8 after 1000 epochs (Adam, MSE).")
    rep.table(["latent k", "ratio 784/k", "family", "train NRMSE", "test NRMSE", "test MSE", "reference test NRMSE"],
              [[k, f"{PIXELS / k:.1f}", ", ".join(f for f, ks in families.items() if k in ks),
                res[k]["train"]["nrmse"], res[k]["test"]["nrmse"], res[k]["test"]["mse"], REFERENCE.get(k)]
               for k in all_k])
    series = {f"{split} ({name})": (ks, [res[k][split]["nrmse"] for k in ks])
              for name, ks in families.items() for split in ("train", "test")}
    rep.figure("nrmse_vs_latent", line_plot(series, "latent size k", "NRMSE", "NRMSE against latent size", logx=True),
               "Train and test NRMSE against the latent size")
    ratio_series = {n: ([PIXELS / k for k in ks], ys) for n, (ks, ys) in series.items()}
    rep.figure("nrmse_vs_ratio", line_plot(ratio_series, "compression ratio 784 / k", "NRMSE",
                                           "NRMSE against compression ratio", logx=True),
               "Train and test NRMSE against the compression ratio")
    loss = ctx.base_model(r).get("loss", "the objective")
    train_loss, test_loss = ([res[k][key] for k in all_k] for key in ("train_loss_last_epoch", "test_loss"))
    rep.heading("The training objective against the latent size")
    rep.text(f"The `{loss}` loss as the runs logged it: train, the mean over the last epoch's batches (Keras' "
             "`history['loss'][-1]`); test, the test split's loss of the tested model (Keras' `val_loss` when the "
             "test set validates).")
    rep.table(["latent k", "train loss (last epoch)", "test loss"],
              [[k, a, b] for k, a, b in zip(all_k, train_loss, test_loss)])
    rep.figure("loss_vs_latent", line_plot({"train loss": (all_k, train_loss), "test loss": (all_k, test_loss)},
                                           "code size", f"{loss} loss", "Model loss against code size"),
               "Train and test loss against the code size")
    shape = r["loss_shape"]
    rep.text(f"Both losses fall as the code size grows (no step up by more than {ctx.params.falls_slack:g}): "
             f"train {'yes' if shape['train_loss_falls'] else 'no'}, test {'yes' if shape['test_loss_falls'] else 'no'}.")
    rep.scalars("compression/test_nrmse_by_latent", {k: res[k]["test"]["nrmse"] for k in all_k})
    rep.scalars("compression/train_nrmse_by_latent", {k: res[k]["train"]["nrmse"] for k in all_k})
    best = min(all_k, key=lambda k: res[k]["test"]["nrmse"])
    rep.text(f"Lowest test NRMSE: {res[best]['test']['nrmse']:.4f} at k = {best}. "
             f"Gap train − test at the largest k: "
             f"{res[all_k[-1]]['train']['nrmse'] - res[all_k[-1]]['test']['nrmse']:+.4f}.")
