"""classifier: how well each variant's codes separate the classes.

For every autoencoder variant of the checkout (or the one ``--variant`` names): train it at latent
32, then the project's latent classifier on its frozen encoder (``--variant classifier``, through
``fit``), and the probes of ``ae_lightning.probes`` (kNN with k = 5 and a linear probe on the codes;
the same two on the pixels and on PCA with as many components, computed once as baselines).
"""
from __future__ import annotations

from ae_lightning import config as config_mod
from ae_lightning.config import UserError
from ae_lightning.studies import register
from ae_lightning.studies.common import Context
from ae_lightning.studies.report import bar_plot

ORDER = ["fc", "deep", "conv", "denoising", "contractive", "sparse", "vae", "randomized", "shallow", "linear"]
LATENT = 32
HEAD_MIN_EPOCHS = 20  # the head trains on codes computed once: an epoch costs a few small matmuls
REFERENCE = ("The studies: 98.36 % test accuracy on MNIST with a 32-dimensional code and a small head "
             "trained 80 epochs with Adam; 88–94 % depending on the kind of autoencoder.")


def autoencoder_variants() -> list[str]:
    from ae_lightning.models import get_module
    from ae_lightning.models.base import AutoencoderModule
    out = []
    for v in config_mod.variants():
        module = config_mod.load_yaml(config_mod.CONFIG_DIR / f"{v}.yaml").get("module")
        if module and issubclass(get_module(module), AutoencoderModule):
            out.append(v)
    return sorted(out, key=lambda v: (ORDER.index(v) if v in ORDER else len(ORDER), v))


def run(ctx: Context) -> None:
    """Latent classifier and probe accuracy per variant, beside pixel and PCA baselines."""
    from ae_lightning.probes import run_probes

    available = autoencoder_variants()
    if ctx.opts.variant is not None and ctx.opts.variant not in available:
        raise UserError(f"classifier: --variant {ctx.opts.variant!r} is not an autoencoder variant "
                        f"(choose one of {', '.join(available)})")
    chosen = [ctx.opts.variant] if ctx.opts.variant else [v for v in available if v in ORDER[:8]]
    rows, res, baselines = [], {}, None
    head_epochs = max(ctx.opts.epochs, HEAD_MIN_EPOCHS)
    skipped = {}
    for v in chosen:
        try:  # one variant's bad fit to the budget (e.g. randomized needs an epoch per layer) skips it only
            ae = ctx.train(v, label=f"{v} (latent {LATENT})", model__latent_dim=LATENT)
        except UserError as e:
            if ctx.opts.variant:
                raise
            skipped[v] = str(e)
            rows.append([v, LATENT, None, None, None, None])
            continue
        ckpt = ae.metrics["best_checkpoint"]
        clf = ctx.train_config(ctx.config("classifier", model__encoder=str(ckpt), trainer__max_epochs=head_epochs),
                               label=f"classifier on {v}")
        probes = run_probes(ckpt, data_dir=ctx.opts.data_dir, train_limit=ctx.opts.subset,
                            test_limit=ctx.opts.test_subset, baselines=baselines is None,
                            device=str(ctx.device))
        by_name = {r["features"]: r for r in probes["rows"]}
        if baselines is None:
            baselines = [r for r in probes["rows"] if r["features"] != "code"]
        res[v] = {"test_acc": clf.metrics.get("test_acc"), "knn_acc": by_name["code"]["knn_acc"],
                  "linear_acc": by_name["code"]["linear_acc"], "ae_test_nrmse": ae.metrics.get("test_nrmse"),
                  "classifier_run": str(clf.run_dir), "n_train": probes["n_train"], "n_test": probes["n_test"]}
        rows.append([v, LATENT, ae.metrics.get("test_nrmse"), res[v]["test_acc"], res[v]["knn_acc"], res[v]["linear_acc"]])
    for b in baselines or []:
        rows.append([f"baseline: {b['features']}", b["dim"], None, None, b["knn_acc"], b["linear_acc"]])
    rep = ctx.report
    missing = [v for v in ORDER[:8] if v not in available]
    rep.text(f"Each autoencoder trained {ctx.opts.epochs} epoch(s) at latent {LATENT}; the classifier head "
             f"(Linear(32→128), ReLU, Linear(128→10), frozen encoder, on codes computed once) trained {head_epochs} "
             f"epochs (at least {HEAD_MIN_EPOCHS}: an epoch on cached codes costs next to nothing). "
             "Probes: kNN (k = 5) and logistic regression, train codes as memory / training set. "
             + REFERENCE + (f" Not in this checkout: {', '.join(missing)}." if missing else "")
             + "".join(f" Not run, {v}: {msg}." for v, msg in skipped.items()))
    rep.table(["features", "dim", "AE test NRMSE", "classifier test acc", "kNN@5 acc", "linear probe acc"], rows)
    rep.figure("accuracy_by_variant", bar_plot(list(res), {
        "classifier": [res[v]["test_acc"] for v in res], "kNN@5": [res[v]["knn_acc"] for v in res],
        "linear probe": [res[v]["linear_acc"] for v in res]}, "test accuracy", "Accuracy from the codes"),
        "Test accuracy of the latent classifier and the probes, per variant")
    rep.results.update({"latent_dim": LATENT, "head_epochs": head_epochs, "by_variant": res, "skipped": skipped, "baselines": baselines, "reference": REFERENCE})


register("classifier", "Classifier and probes per variant", order=10, dataset="mnist", variant="")(run)
