"""classifier: how well each variant's codes separate the classes.

For every autoencoder variant of the checkout (or the one ``--variant`` names): train it at latent
32, then the project's latent classifier on its frozen encoder (``--variant classifier``, through
``fit``), and the probes of ``ae_lightning.probes`` (kNN with k = 5 and a linear probe on the codes;
the same two on the pixels and on PCA with as many components, computed once as baselines).
"""
from __future__ import annotations

from ae_lightning import config as config_mod
from ae_lightning.errors import UserError
from ae_lightning.models import get_module
from ae_lightning.models.base import AutoencoderModule
from ae_lightning.probes import run_probes
from ae_lightning.studies.catalog import TSNE_POINTS
from ae_lightning.studies.common import Context
from ae_lightning.studies.plots import bar_plot, map_2d, scatter, tsne_perplexity
from ae_lightning.studies.presets import overrides_of
from ae_lightning.text import plural

ORDER = ["fc", "deep", "conv", "denoising", "contractive", "sparse", "vae", "randomized", "shallow", "linear"]
HEAD_MIN_EPOCHS = 20  # the head trains on codes computed once: an epoch costs a few small matmuls
REFERENCE = ("The studies: 98.36 % test accuracy on MNIST with a 32-dimensional code and a small head "
             "trained 80 epochs with Adam; 88–94 % depending on the kind of autoencoder.")


def autoencoder_variants() -> list[str]:
    out = []
    for v in config_mod.variants():
        module = config_mod.load_yaml(config_mod.CONFIG_DIR / f"{v}.yaml").get("module")
        if module and issubclass(get_module(module), AutoencoderModule):
            out.append(v)
    return sorted(out, key=lambda v: (ORDER.index(v) if v in ORDER else len(ORDER), v))


def model_specs(ctx: Context, available: list[str]) -> dict[str, tuple[str, dict]]:
    """label -> (variant, ctx.train overrides): a preset's ``models``, else ``--variant`` or the
    checkout's autoencoders; each at ``latent`` unless that is null."""
    if ctx.params.models is not None:
        specs = {label: (spec.get("variant", label), overrides_of(spec.get("config")))
                 for label, spec in ctx.params.models.items()}
    else:
        chosen = [ctx.opts.variant] if ctx.opts.variant else [v for v in available if v in ORDER[:8]]
        specs = {v: (v, {}) for v in chosen}
    if ctx.params.latent is None:
        return specs
    return {v: (variant, {"model__latent_dim": ctx.params.latent, **over}) for v, (variant, over) in specs.items()}


def code_map(ctx: Context, v: str, ae) -> dict:
    """A PNG of the 2-D map (t-SNE unless k = 2) of ``map_points`` test codes of one autoencoder by label;
    returns what its caption says."""
    import torch

    x, y = ctx.tensors(ae.cfg, "test")
    g = torch.Generator().manual_seed(ctx.opts.seed)
    sub = torch.randperm(len(x), generator=g)[:ctx.params.map_points or TSNE_POINTS].sort().values
    z = ae.module.encode_all(x[sub]).float().cpu()
    pts, method = map_2d(z.numpy(), ctx.opts.seed)
    ctx.report.save_figure(f"map_{v}", scatter(pts, y[sub].cpu().numpy(), f"{v}: test codes, {method}",
                                               ctx.datamodule(ae.cfg).class_names))
    return {"variant": ae.cfg["variant"], "k": z.shape[1], "points": len(pts), "method": method}


def stored_map(ctx: Context, r: dict, v: str) -> dict:
    """A map's caption in results written before ``maps`` was a key: the model's variant and code size, the
    test codes drawn and the method ``map_2d`` takes for them (its captions' words)."""
    n, k = min(ctx.params.map_points or TSNE_POINTS, r["by_variant"][v]["n_test"]), r["by_variant"][v]["latent_dim"]
    return {"variant": (ctx.params.models or {}).get(v, {}).get("variant", v), "k": k, "points": n,
            "method": f"codes (k = {k})" if k <= 2 else f"t-SNE (perplexity {tsne_perplexity(n):g})"}


def measure_model(ctx: Context, v: str, ae, heads: dict[str, dict], baselines: bool) -> tuple[dict, dict, list]:
    """One autoencoder's numbers: each head and the classifier on its frozen encoder (through ``fit``),
    then the probes on its codes (and on the pixel and PCA baselines if ``baselines``); with the
    probes' output and the classifier's hidden layers."""
    ckpt = ae.metrics["best_checkpoint"]
    by_head = {}
    for h, h_over in heads.items():
        run_h = ctx.train_config(ctx.config("classifier", model__encoder=str(ckpt), **h_over),
                                 label=f"classifier on {v}" + (f" ({h})" if len(heads) > 1 else ""))
        by_head[h] = {"test_acc": run_h.metrics.get("test_acc"), "epochs": run_h.metrics.get("epochs"),
                      "optimizer": run_h.cfg["model"]["optimizer"], "lr": run_h.cfg["model"]["lr"],
                      "run": str(run_h.run_dir)}
    clf = ctx.train_config(ctx.config("classifier", model__encoder=str(ckpt), **next(iter(heads.values()))),
                           label=f"classifier on {v}")
    probes = run_probes(ckpt, data_dir=ctx.opts.data_dir, train_limit=ctx.opts.subset,
                        test_limit=ctx.opts.test_subset, baselines=baselines, device=str(ctx.device), sklearn=True)
    code = {r["features"]: r for r in probes["rows"]}["code"]
    res = {"test_acc": clf.metrics.get("test_acc"), "knn_acc": code["knn_acc"],
           "linear_acc": code["sklearn_acc" if ctx.params.linear_probe == "sklearn" else "linear_acc"],
           "standardized_acc": code["linear_acc"], "sklearn_acc": code["sklearn_acc"],
           "ae_test_nrmse": ae.metrics.get("test_nrmse"), "ae_epochs": ae.metrics.get("epochs"),
           "classifier_run": str(clf.run_dir), "n_train": probes["n_train"], "n_test": probes["n_test"],
           "latent_dim": int(ae.cfg["model"]["latent_dim"]), **({"heads": by_head} if ctx.params.heads is not None else {})}
    return res, probes, clf.cfg["model"]["hidden"]


def measure(ctx: Context) -> dict:
    """Train every autoencoder, its heads and its probes; a model that does not fit the budget is skipped.

    A preset may set ``models`` (label -> {variant, config}: the autoencoders, each with its own
    settings; the label names the row), ``latent`` (null: each model's own latent size), ``heads``
    (label -> nested config overrides of the classifier run, e.g. its optimizer and epochs; every head
    is reported, the first one in the main column), ``maps`` (a t-SNE map of each model's test codes,
    ``map_points`` of them), ``baselines`` (false: no pixel / PCA probes), ``reference`` (a model's
    or a head's label -> the original's accuracy) and ``description``."""
    available = autoencoder_variants()
    if ctx.opts.variant is not None and ctx.opts.variant not in available:
        raise UserError(f"classifier: --variant {ctx.opts.variant!r} is not an autoencoder variant "
                        f"(choose one of {', '.join(available)})")
    head_epochs, specs = max(ctx.opts.epochs, HEAD_MIN_EPOCHS), model_specs(ctx, available)
    heads = {label: overrides_of(over) for label, over in ctx.params.heads.items()} if ctx.params.heads is not None \
        else {"head": {"trainer__max_epochs": head_epochs}}
    res, skipped, baselines, maps, hidden = {}, {}, None, {}, [128]
    for v, (variant, over) in specs.items():
        try:  # one variant's bad fit to the budget (e.g. randomized needs an epoch per layer) skips it only
            ae = ctx.train(variant, label=f"{v} (latent {ctx.params.latent or 'own'})", **over)
        except UserError as e:
            if ctx.opts.variant:
                raise
            skipped[v] = str(e)
            continue
        if ctx.params.maps:
            maps[v] = code_map(ctx, v, ae)
        want_baselines = baselines is None and ctx.params.baselines  # computed once, with the first model's probes
        res[v], probes, hidden = measure_model(ctx, v, ae, heads, want_baselines)
        if want_baselines:
            baselines = [r for r in probes["rows"] if r["features"] != "code"]
    return {"latent_dim": ctx.params.latent, "head_epochs": head_epochs, "by_variant": res,
            "skipped": skipped, "baselines": baselines, "reference": REFERENCE, "models": list(specs),
            "head_hidden": hidden, "maps": maps}


def method_text(ctx: Context, r: dict, hidden: list, available: list[str]) -> str:
    """How the autoencoders, the head and the probes were trained, and what this checkout lacks."""
    missing = [v for v in ORDER[:8] if v not in available]
    sizes = "/".join(str(k) for k in sorted({m["latent_dim"] for m in r["by_variant"].values()})) or "k"  # the codes' sizes
    head = " → ".join([sizes, *map(str, hidden), "10"])
    # a stopping rule or a model's own cap may end a run early: the table gives the epochs each trained
    return (f"Each autoencoder trained at latent {r['latent_dim'] or sizes} for at most {plural(ctx.opts.epochs, 'epoch')} "
            "unless a model sets its own cap (the `AE epochs` column: the epochs it trained); the classifier head "
            f"(an MLP {head}, ReLU after each hidden layer, frozen encoder, on codes computed once) for at most "
            f"{r['head_epochs']} epochs (a cap of at least {HEAD_MIN_EPOCHS}: an epoch on cached codes costs next to nothing). "
            "Probes: kNN (k = 5) and logistic regression, train codes as memory / training set: the linear probe "
            + ("on standardized codes, fitted to convergence; beside it, scikit-learn's LogisticRegression() with "
               "its defaults on the raw codes. " if ctx.params.linear_probe == "standardized" else
               "as scikit-learn's LogisticRegression() runs it with its defaults on the raw codes; beside it, "
               "the same on standardized codes fitted to convergence. ")
            + REFERENCE + (f" Not in this checkout: {', '.join(missing)}." if missing else "")
            + "".join(f" Not run, {v}: {msg}." for v, msg in r["skipped"].items()))


def render(ctx: Context, r: dict) -> None:
    """The maps ``measure`` wrote, the settings, the accuracy table and plot, and the heads' table."""
    rep, ref = ctx.report, ctx.params.reference or {}
    res, standardized = r["by_variant"], ctx.params.linear_probe == "standardized"
    # results written before models, head_hidden and maps were keys: the preset's models, the head's config
    hidden = r["head_hidden"] if "head_hidden" in r else ctx.config("classifier", model__encoder="a measured one", **(
        overrides_of(next(iter(ctx.params.heads.values()))) if ctx.params.heads else {}))["model"]["hidden"]
    for v in (r["maps"] if "maps" in r else list(res) if ctx.params.maps else []):
        m = r["maps"][v] if "maps" in r else stored_map(ctx, r, v)
        rep.link(f"map_{v}", f"{v} ({m['variant']}, k = {m['k']}): {m['points']} test codes by label, {m['method']}")
    if ctx.params.description is not None:
        rep.text(ctx.params.description.strip())
    rep.text(method_text(ctx, r, hidden, autoencoder_variants()))
    # results written before ae_epochs and the second probe were keys: the epochs its run recorded, and a dash
    epochs = {x["label"].rsplit(" (latent ", 1)[0]: x.get("epochs") for x in r["runs"]}
    rows = [[v, r["latent_dim"], None, None, None, None, None] if v in r["skipped"] else
            [v, res[v]["latent_dim"], res[v].get("ae_epochs", epochs.get(v)), res[v]["ae_test_nrmse"], res[v]["test_acc"],
             res[v]["knn_acc"], res[v]["linear_acc"], res[v].get("sklearn_acc" if standardized else "standardized_acc")]
            for v in r.get("models") or list(ctx.params.models or {**res, **r["skipped"]})]
    rows += [[f"baseline: {b['features']}", b["dim"], None, None, None, b["knn_acc"], b["linear_acc"], None]
             for b in r["baselines"] or []]
    headers = ["features", "dim", "AE epochs", "AE test NRMSE", "classifier test acc", "kNN@5 acc",
               "linear probe acc", "sklearn LR acc (raw codes)" if standardized else "standardized LR acc"]
    if ctx.params.models is not None and any(v in ref for v in res):
        rep.table(headers + ["reference"], [row + [ref.get(row[0])] for row in rows])
    else:
        rep.table(headers, rows)
    rep.figure("accuracy_by_variant", bar_plot(list(res), {
        "classifier": [res[v]["test_acc"] for v in res], "kNN@5": [res[v]["knn_acc"] for v in res],
        "linear probe": [res[v]["linear_acc"] for v in res]}, "test accuracy", "Accuracy from the codes"),
        "Test accuracy of the latent classifier and the probes, per variant")
    if ctx.params.heads is not None:
        rep.heading("Classifier heads")
        rep.table(["model", "head", "optimizer", "lr", "epochs", "test accuracy", "reference"],
                  [[v, h, x["optimizer"], x["lr"], x["epochs"], x["test_acc"], ref.get(h)]
                   for v in res for h, x in res[v]["heads"].items()])
