"""latent: what the code space looks like, and what its random points decode to.

For an autoencoder (``--variant``, default ``fc``) and, when the checkout has it, the VAE:

- a 2-D map of the test codes coloured by label: the codes themselves when k = 2, else t-SNE
  (scikit-learn) on a subsample;
- 250 decoded random codes per scheme (``ae_lightning.generate``): uniform in each unit's
  [min, max] over the test codes ("per-dim"), uniform in the global [min, max] ("same"), and
  N(0, I) for the VAE ("prior");
- each scheme scored by how many of its 250 images a pixel CNN (``models/pixel_cnn.py``, trained in
  this study through ``fit``) labels with confidence >= 0.9: an automatic stand-in for the original
  study's human count of recognizable digits.
"""
from __future__ import annotations

import torch

from ae_lightning import config as config_mod
from ae_lightning import resolve
from ae_lightning.fid import Distance, load_judge
from ae_lightning.studies.common import Context
from ae_lightning.studies.plots import map_2d, scatter
from ae_lightning.studies.presets import overrides_of
from ae_lightning.studies.report import fmt
from ae_lightning.text import plural
from ae_lightning.viz import tile
from ae_lightning.walks import generate

N_GENERATED = 250
THRESHOLD = 0.9
N_SHOWN = 12  # reconstructions shown
# human count of good digits out of 250 in the original study
REFERENCE = {"ae/uniform_global": 6, "ae/uniform_per_dim": 41, "vae/uniform_global": 94, "vae/uniform_per_dim": 100}
PIXEL_CNN = "pixel_cnn"  # the judge: ae_lightning/models/pixel_cnn.py
SCHEME_NAMES = {"uniform_global": "same min/max", "uniform_per_dim": "per-dim min/max", "prior": "prior N(0, I)"}


def pixel_classifier_config(base: dict) -> dict:
    """A resolved config for the pixel CNN, with the data, seed and trainer settings of ``base``
    (a resolved autoencoder config of the study)."""
    cfg = {"variant": PIXEL_CNN, "module": PIXEL_CNN, "seed": base["seed"], "data": dict(base["data"]),
           "model": {"optimizer": "adam", "lr": 1e-3},
           "trainer": {**base["trainer"], "images_every_n_epochs": 0, "log_embedding": False}}
    cfg["data"]["binarize"] = "none"  # it judges the decoded means, which are grey-level images
    return resolve.validate(cfg)


def train_models(ctx: Context) -> dict:
    """key -> Trained: a preset's ``models``, else the variant's ("ae") and the VAE when the checkout has it."""
    if ctx.params.models is not None:
        return {key: ctx.train(spec.get("variant"), label=f"{key} ({spec.get('variant') or ctx.variant})",
                               **overrides_of(spec.get("config")))
                for key, spec in ctx.params.models.items()}
    models = {"ae": ctx.train(label=f"autoencoder ({ctx.variant})")}
    if "vae" in config_mod.variants():
        models["vae"] = ctx.train("vae", label="vae")
    return models


def score_model(ctx: Context, key: str, run_, judge, distance: Distance, sub: torch.Tensor) -> dict:
    """One model's numbers (its codes' map method and ranges, each scheme's confident count and its
    ``fid_cls`` over as many decoded codes as the reference has images), with PNGs of its map of the
    codes, the first 100 decoded codes per scheme and its reconstructions."""
    m = run_.module
    xm, ym = ctx.tensors(run_.cfg, "test")  # the model's own preprocessing (the VAE may binarize)
    z = m.encode_all(xm).float().cpu()
    pts, method = map_2d(z[sub].numpy(), ctx.opts.seed)
    ctx.report.save_figure(f"map_{key}", scatter(pts, ym[sub].cpu().numpy(), f"{key}: test codes, {method}",
                                                 ctx.datamodule(run_.cfg).class_names))
    images, ranges = generate(m, xm, N_GENERATED, ctx.opts.seed)
    many, _ = generate(m, xm, distance.n, ctx.opts.seed)
    scored = {}
    for scheme, imgs in images.items():
        conf, cls = judge.confidence(imgs)
        good = conf >= THRESHOLD
        scored[scheme] = {"count": int(good.sum()), "of": len(imgs), "mean_confidence": float(conf.mean()),
                          "classes_of_confident": torch.bincount(cls[good].cpu(), minlength=10).tolist(),
                          "confident_of_first_100": int(good[:100].sum()), "fid_cls": distance(many[scheme])}
        ctx.report.save_image(f"generated_{key}_{scheme}", tile(imgs[:100], nrow=20))
    if key in ctx.params.reconstructions:
        with torch.no_grad():
            shown = torch.cat([xm[:N_SHOWN], m.output(m.decode(m.encode(xm[:N_SHOWN])))])
        ctx.report.save_image(f"reconstructions_{key}", tile(shown, nrow=N_SHOWN))
    return {"variant": run_.cfg["variant"], "latent_dim": int(z.shape[1]), "map": method, "code_ranges": ranges,
            "scores": scored}


def generation_order(ctx: Context, counts: dict[str, float], reference: dict, lower_better: bool = False) -> dict | None:
    """The counts (or with ``lower_better`` the distances) against the reference's order: a preset's
    ``generation_order`` ([key, "<" or "<=", key, ...], worse to better), else strict by the reference's
    counts; None when they cannot be ordered."""
    spec = ctx.params.generation_order
    if spec is None:
        keys = sorted((k for k in counts if k in reference), key=reference.get)
        spec = [t for k in keys for t in ("<", k)][1:]
    keys, rels = spec[0::2], spec[1::2]
    if len(keys) < 2 or not all(k in counts for k in keys):
        return None
    worth = (lambda k: -counts[k]) if lower_better else counts.get
    holds = all(worth(a) < worth(b) if r == "<" else worth(a) <= worth(b) for a, r, b in zip(keys, rels, keys[1:]))
    shown = " ".join(f"{t} {fmt(counts[t])}" if i % 2 == 0 else t for i, t in enumerate(spec))
    return {"counts": counts, "reference_order": " ".join(spec), "ours": shown,
            "order": sorted(counts, key=worth), "order_holds": holds}


def measure(ctx: Context) -> dict:
    """Train the models and the judge; map each model's test codes and score its decoded random codes.

    A preset may set ``models`` ({"ae": {variant, config}, "vae": {variant, config}}: each model's own
    settings, e.g. its tuned lr), ``map_points`` (test codes in each map), ``judge_epochs`` (the pixel
    CNN's), ``reconstructions`` (the models whose test reconstructions are shown) and ``reference``
    ("<model>/<scheme>" -> the original's count)."""
    models = train_models(ctx)
    reference = dict(REFERENCE if ctx.params.reference is None else ctx.params.reference)  # "<model>/<scheme>" -> count
    judge_cfg = pixel_classifier_config(models["ae"].cfg)
    if ctx.params.judge_epochs is not None:
        judge_cfg = resolve.validate({**judge_cfg, "trainer": {**judge_cfg["trainer"],
                                                               "max_epochs": ctx.params.judge_epochs}})
    clf_run = ctx.train_config(judge_cfg, label="pixel CNN")
    x, _ = ctx.tensors(models["ae"].cfg, "test")
    g = torch.Generator().manual_seed(ctx.opts.seed)
    sub = torch.randperm(len(x), generator=g)[:ctx.params.map_points].sort().values
    fid_judge = load_judge(ctx.datamodule(models["ae"].cfg), ctx.runs_dir,
                           lambda c: ctx.train_config(c, label="fid_cls judge"), ctx.device, ctx.opts.accelerator)
    distance = fid_judge.distance()
    results = {"pixel_classifier": {"test_acc": clf_run.metrics.get("test_acc"), "run_dir": str(clf_run.run_dir),
                                    "max_epochs": clf_run.cfg["trainer"]["max_epochs"]},
               "fid_judge": {"test_acc": fid_judge.meta["test_acc"], "scale": fid_judge.meta["scale"], "n": distance.n},
               "models": {key: score_model(ctx, key, run_, clf_run.module, distance, sub) for key, run_ in models.items()}}
    results.update({"threshold": THRESHOLD, "n_generated": N_GENERATED, "map_points": len(sub),
                    "reference": reference})
    counts = {f"{key}/{scheme}": sc["count"] for key, r in results["models"].items() for scheme, sc in r["scores"].items()}
    fids = {f"{key}/{scheme}": sc["fid_cls"] for key, r in results["models"].items() for scheme, sc in r["scores"].items()}
    for name, order in (("generation", generation_order(ctx, counts, reference)),
                        ("generation_fid", generation_order(ctx, fids, reference, lower_better=True))):
        if order is not None:
            results[name] = order
    return results


def render(ctx: Context, r: dict) -> None:
    """The setting, then per model the PNGs ``measure`` wrote (its map, its decoded random codes, its
    reconstructions); the counts against the reference."""
    rep, acc = ctx.report, r["pixel_classifier"]["test_acc"]
    judge_epochs = r["pixel_classifier"].get("max_epochs", ctx.params.judge_epochs)  # older results: the preset's
    rep.text(f"Models: `{ctx.variant}` (\"ae\")" + (" and `vae`" if "vae" in r["models"] else
             " (no `vae` variant in this checkout, so no VAE rows)") +
             f", each at its config's latent size. The judge is a pixel CNN trained here through `fit` "
             f"({plural(judge_epochs, 'epoch')}): test accuracy {float('nan') if acc is None else acc:.4f}. "
             f"An image counts when its top softmax probability is ≥ {THRESHOLD}. The original study counted "
             "recognizable digits by eye, so compare the order of the schemes more than the numbers.")
    for key, m in r["models"].items():
        rep.link(f"map_{key}", f"{key} ({m['variant']}, k = {m['latent_dim']}): {r['map_points']} test codes by label, "
                 f"{m['map']}")
        for scheme, sc in m["scores"].items():
            rep.link(f"generated_{key}_{scheme}", f"{key}: the first 100 of {sc['of']} decoded {SCHEME_NAMES[scheme]} "
                     f"codes ({sc['confident_of_first_100']} of these 100 confident)")
        if key in ctx.params.reconstructions:
            rep.link(f"reconstructions_{key}", f"{key}: test images (top) and their reconstructions (bottom)")
    rep.heading("Recognizable generated images")
    fj = r.get("fid_judge")  # results measured before fid_cls have none
    rep.table(["model", "variant", "k", "codes drawn", f"confidence ≥ {THRESHOLD}", "mean confidence"]
              + (["fid_cls"] if fj else []) + ["reference (human count of 250)"],
              [[key, m["variant"], m["latent_dim"], SCHEME_NAMES[scheme], f"{sc['count']} / {sc['of']}",
                sc["mean_confidence"]] + ([sc["fid_cls"]] if fj else []) + [r["reference"].get(f"{key}/{scheme}")]
               for key, m in r["models"].items() for scheme, sc in m["scores"].items()])
    if fj:
        s = fj["scale"]
        rep.text(f"`fid_cls`: the Fréchet distance of {fj['n']} decoded codes per scheme to as many test images, in "
                 f"the features of the project's digit classifier (test accuracy {fj['test_acc']:.4f}; "
                 "`ae_lightning/fid.py`); lower is closer. Its scale on the same images: real against real "
                 f"{fmt(s['floor'])}, blurred test images {fmt(s['blurred'])}, noise {fmt(s['noise'])}.")
    for name, what in (("generation", "The judge's counts"),
                       ("generation_fid", "`fid_cls` (lower is better: `<` reads \"worse than\")")):
        if name in r:
            gen = r[name]
            rep.text(f"{what} against the reference's order ({gen['reference_order']}): {gen['ours']}"
                     + (": the same order." if gen["order_holds"] else ": **not** the reference's order."))
