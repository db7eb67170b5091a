"""neighbors: how well an autoencoder's code space keeps the neighbourhoods of pixel space.

For every test image: its k nearest other test images in pixel space and in code space (k = 5, 10,
20, 50; L1 and L2). score@k is the fraction of the pixel-space neighbours that are also code-space
neighbours, averaged over images (overall and per label). The same-label rate is the fraction of an
image's k neighbours that share its label, in each space; their difference says whether the code
space groups the classes better (> 0) or worse than the pixels.

The neighbours are exact, by the kernels of :mod:`ae_lightning.knn` (``knn``: row chunks, the (N, N)
matrix never held; a GEMM per chunk for pixel-space L2, a proven GEMM bound for pixel-space L1).
Pixel-space neighbours are computed once per metric and shared by every model. Measured on the
project's 2-core CPU, idle (2026-12-01), MNIST's 60,000 training images, top 200 each
(``python -m ae_lightning.studies.neighbors``): L2 43 s, L1 108 s, 151 s together (5.7 min while
two training runs shared the cores); ``cdist(p=1)`` alone would take about 40 minutes.

A preset (``reproduce neighbours``) sets, through ``ctx.params`` (:class:`Params`): ``models`` (label -> {variant,
config}), ``neighbour_set`` (``test``, the default, or ``train``: the original took its neighbours
over the 60,000 training images), ``pixel_k`` (neighbours kept per image), ``ks``, ``code_maps``,
``description`` and ``reference`` (the original's tables: ``score``, ``improvement``,
``similarity``, ``score20_per_label``).
"""
from __future__ import annotations

import time

import torch

from ae_lightning import flags
from ae_lightning.data import default_data_dir, load_split
from ae_lightning.errors import UserError
from ae_lightning.hints import PosInt
from ae_lightning.knn import knn
from ae_lightning.studies.catalog import NEIGHBOUR_KS
from ae_lightning.studies.common import Context
from ae_lightning.studies.plots import line_plot, scatter
from ae_lightning.studies.presets import overrides_of

KS = NEIGHBOUR_KS
METRICS = {"L1": 1.0, "L2": 2.0}
LATENT = 2
# (label, variant, loss); "deep" is the ReLU model of the study (reference name relu_*)
MODELS = [("linear_mse", "linear", "mse"), ("linear_l1", "linear", "l1"),
          ("deep_mse", "deep", "mse"), ("deep_l1", "deep", "l1")]
REFERENCE = {"deep_mse": 0.0278, "linear_mse": 0.0050}  # score@5 at latent 2 (relu_mse, linear_mse)
MAP_POINTS = 10000  # codes drawn in a map


def score_at_k(pixel_nn: torch.Tensor, code_nn: torch.Tensor, k: int, chunk: int = 4096) -> torch.Tensor:
    """Per-image fraction ``(N,)`` of the k pixel-space neighbours that are among the k code-space ones
    (a (chunk, k, k) comparison per chunk of rows)."""
    a, b = pixel_nn[:, :k], code_nn[:, :k]
    return torch.cat([(a[i:i + chunk, :, None] == b[i:i + chunk, None, :]).any(-1).float().mean(1)
                      for i in range(0, len(a), chunk)])


def same_label_rate(nn_idx: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Per-image fraction ``(N,)`` of the k neighbours with the image's own label."""
    return (labels[nn_idx[:, :k]] == labels[:, None]).float().mean(1)


def per_label(values: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    return {int(c): float(values[labels == c].mean()) for c in labels.unique()}


def compare(pixel_nn: torch.Tensor, code_nn: torch.Tensor, labels: torch.Tensor, ks=KS) -> dict[int, dict]:
    """Every number of the study for one model and one metric, by k."""
    out = {}
    for k in ks:
        s = score_at_k(pixel_nn, code_nn, k)
        sp, sc = same_label_rate(pixel_nn, labels, k), same_label_rate(code_nn, labels, k)
        out[k] = {"score": float(s.mean()), "score_per_label": per_label(s, labels),
                  "same_label_pixel": float(sp.mean()), "same_label_code": float(sc.mean()),
                  "same_label_diff": float(sc.mean() - sp.mean()),
                  "similarity": float((sc - sp).abs().mean()), "similarity_sum": float((sc - sp).abs().sum()),
                  "same_label_code_per_label": per_label(sc, labels)}
    return out


def models_of(ctx: Context) -> dict[str, tuple[str | None, dict]]:
    """label -> (variant, ctx.train overrides): the study's own four models, or a preset's ``models``
    (label -> {variant, config: nested overrides})."""
    if ctx.params.models is not None:
        return {label: (spec.get("variant"), overrides_of(spec.get("config")))
                for label, spec in ctx.params.models.items()}
    return {label: (variant, {"model__latent_dim": LATENT, "model__loss": loss}) for label, variant, loss in MODELS}


def measure(ctx: Context) -> dict:
    """Train the models, then compare every image's pixel-space and code-space neighbours, by k; a PNG of
    each model's 2-D codes (``code_maps``)."""
    ks = tuple(ctx.params.ks)
    kmax = max(ks)
    pixel_k = max(kmax, ctx.params.pixel_k or kmax)  # neighbours kept per image (the original: 200)
    split = ctx.params.neighbour_set
    if split == "test" and ctx.opts.test_subset is not None and ctx.opts.test_subset <= pixel_k:
        raise UserError(f"neighbors: --test-subset must exceed the largest k ({pixel_k}), got {ctx.opts.test_subset}")
    runs = {label: ctx.train(variant, label=label, **over) for label, (variant, over) in models_of(ctx).items()}
    first = next(iter(runs.values()))
    x, y = ctx.tensors(first.cfg, split)
    if len(x) <= pixel_k:
        raise UserError(f"neighbors: {len(x)} {split} images, need more than k = {pixel_k}")
    pixel_nn, timings = {}, {}
    for name, p in METRICS.items():
        t0 = time.time()
        pixel_nn[name] = knn(x, pixel_k, p)
        timings[name] = round(time.time() - t0, 2)
    res, mapped = {}, []
    picked = torch.randperm(len(x), generator=torch.Generator().manual_seed(ctx.opts.seed))[:MAP_POINTS]
    for label, run_ in runs.items():
        z = run_.module.encode_all(x)
        res[label] = {m: compare(pixel_nn[m], knn(z, kmax, p), y, ks) for m, p in METRICS.items()}
        if ctx.params.code_maps and z.shape[1] == 2:
            ctx.report.save_figure(f"codes_{label}", scatter(z[picked].cpu().numpy(), y[picked].cpu().numpy(),
                                                             f"{label}: codes of {len(picked)} {split} images",
                                                             ctx.datamodule(first.cfg).class_names))
            mapped.append(label)
    ref = ctx.params.reference or {}
    ref_score = {label: (ref.get("score", {}).get(label, {}).get("L2", {}).get(5)) for label in runs} if ref \
        else {label: REFERENCE.get(label) for label in runs}
    order = {m: sorted(runs, key=lambda lb: -res[lb][m][5 if 5 in ks else ks[0]]["score"]) for m in METRICS}
    return {"latent_dim": int(first.module.hparams.latent_dim), "n_test": len(x), "neighbour_set": split,
            "n_images": len(x), "ks": list(ks), "pixel_k": pixel_k, "pixel_knn_seconds": timings,
            "by_model": res, "order": order, "reference_score_at_5": ref_score,
            "order_text": {m: " > ".join(o) for m, o in order.items()}, "code_maps": mapped}


def table_rows(res: dict, cells, metrics=METRICS) -> list[list]:
    """A row per model and metric: the model, the metric, then ``cells(model, metric)``."""
    return [[label, m] + cells(label, m) for label in res for m in metrics]


def same_label_tables(rep, res: dict, ks: list[int], ref: dict) -> None:
    """The same-label rates in each space, their difference (improvement) and its size (similarity)."""
    rep.heading("Same-label neighbours")
    rep.table(["model", "metric"] + [f"pixel / code / diff @{k}" for k in ks],
              table_rows(res, lambda lb, m: [f"{res[lb][m][k]['same_label_pixel']:.3f} / "
                                             f"{res[lb][m][k]['same_label_code']:.3f} / "
                                             f"{res[lb][m][k]['same_label_diff']:+.3f}" for k in ks]))
    for title, key, columns in (
            ("Improvement: code-space minus pixel-space same-label rate", "improvement", {"same_label_diff": "@"}),
            ("Similarity: mean |code-space − pixel-space same-label rate|", "similarity",
             {"similarity": "@", "similarity_sum": "sum over images @"})):
        theirs = ref.get(key)
        rep.heading(title)
        rep.table(["model", "metric"] + [f"{head}{k}" for head in columns.values() for k in ks]
                  + ([f"reference @{k}" for k in ks] if theirs else []),
                  table_rows(res, lambda lb, m: [res[lb][m][k][c] for c in columns for k in ks]
                             + ([theirs.get(lb, {}).get(m, {}).get(k) for k in ks] if theirs else [])))
    if ref.get("similarity_note"):
        rep.text(ref["similarity_note"].strip())


def per_label_tables(rep, res: dict, ks: list[int], ref: dict) -> None:
    """score@5 (L2; none beside a reference) and score@20 (each metric) per label, with the original's."""
    k_label = 20 if 20 in ks else ks[0]
    for k_shown, metrics in ((5, ["L2"]), (k_label, list(METRICS))):
        if k_shown not in ks or (k_shown == 5 and ref):
            continue
        rep.heading(f"score@{k_shown} per label")
        labels = sorted(res[next(iter(res))]["L2"][k_shown]["score_per_label"])
        ref_pl = ref.get("score20_per_label") if k_shown == 20 else None
        rep.table(["model", "metric"] + [str(c) for c in labels],
                  table_rows(res, lambda lb, m: [res[lb][m][k_shown]["score_per_label"][c] for c in labels], metrics)
                  + ([[f"{label} (reference)", m] + [ref_pl[label][m][c] if c < len(ref_pl[label][m]) else None
                                                      for c in labels]
                      for label in res if label in ref_pl for m in metrics if m in ref_pl[label]] if ref_pl else []))


def figures(ctx: Context, r: dict) -> None:
    """score@k and the same-label rates against k, and the maps of the 2-D codes ``measure`` wrote."""
    rep, res, ks = ctx.report, r["by_model"], r["ks"]
    rep.figure("score_at_k", line_plot({f"{label} {m}": (list(ks), [res[label][m][k]["score"] for k in ks])
                                        for label in res for m in METRICS},
                                       "k", "score@k", "Pixel neighbours kept in code space"),
               "score@k against k for every model and metric")
    rep.figure("same_label_at_k", line_plot(
        {**{f"pixels {m}": (list(ks), [res[next(iter(res))][m][k]["same_label_pixel"] for k in ks]) for m in METRICS},
         **{f"{label} {m}": (list(ks), [res[label][m][k]["same_label_code"] for k in ks])
            for label in res for m in METRICS}},
        "k", "same-label rate", "Neighbours sharing the image's label"),
        "Same-label rate of the k nearest neighbours, in pixel space and in each code space")
    # results written before code_maps was a key: every model when they are asked for (latent 2)
    mapped = r["code_maps"] if "code_maps" in r else list(res) if ctx.params.code_maps and r["latent_dim"] == 2 else []
    for label in mapped:
        rep.link(f"codes_{label}", f"{label}: the 2-D codes of {min(MAP_POINTS, r['n_images'])} {r['neighbour_set']} "
                 "images by label")


def render(ctx: Context, r: dict) -> None:
    """The report: the setting, score@k beside the reference, the same-label tables, the plots, the order."""
    rep, ref = ctx.report, ctx.params.reference or {}
    res, ks, n = r["by_model"], r["ks"], r["n_images"]
    if ctx.params.description is not None:
        rep.text(ctx.params.description.strip())
    else:
        rep.text(f"{n} test images; models at latent {LATENT} (`linear`: 784-128-64-12-2 with no nonlinearity; "
                 "`deep`: 784-128-2 with ReLU, the study's ReLU model), trained with MSE or L1.")
    rep.text(f"Neighbours over {n} {r['neighbour_set']} images. Pixel-space neighbours (top {r['pixel_k']} per image) "
             f"took {r['pixel_knn_seconds']['L1']} s (L1) and {r['pixel_knn_seconds']['L2']} s (L2) for all {n} × {n} "
             "distances. " + ("Reference: the study's score@5 at latent 2, relu_mse 0.0278, linear_mse 0.0050 (the metric "
                              "of the reference is not stated; compare with both)." if not ref else
                              "References: the original's tables, beside ours."))
    rep.table(["model", "metric"] + [f"score@{k}" for k in ks] + ["reference score@5" + (" (L2)" if ref else "")],
              table_rows(res, lambda lb, m: [res[lb][m][k]["score"] for k in ks] + [r["reference_score_at_5"].get(lb)]))
    if ref.get("score"):
        rep.table(["model", "metric"] + [f"reference score@{k}" for k in ks],
                  table_rows(res, lambda lb, m: [ref["score"].get(lb, {}).get(m, {}).get(k) for k in ks]),
                  caption="The original's score@k")
    same_label_tables(rep, res, ks, ref)
    per_label_tables(rep, res, ks, ref)
    figures(ctx, r)
    rep.text(f"Order by score@{5 if 5 in ks else ks[0]}, best first: "
             + "; ".join(f"{m} {text}" for m, text in r["order_text"].items()) + ".")


def time_pixel_neighbours(argv: list[str] | None = None) -> None:
    """``python -m ae_lightning.studies.neighbors [--n N] [--k K] [--data-dir DIR]``: the wall and CPU
    time of the pixel-space neighbours (L2, then L1) over the first N MNIST training images."""
    import resource

    p = flags.Parser("python -m ae_lightning.studies.neighbors", time_pixel_neighbours.__doc__)
    p.add_argument("--n", hint=PosInt, default=60000)
    p.add_argument("--k", hint=PosInt, default=200)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    images, _ = load_split(args.data_dir or default_data_dir("mnist"), "mnist", "train", download=False)
    x = torch.tensor(images[:args.n]).reshape(-1, 784).float() / 255
    total = 0.0
    for name, metric in (("L2", 2.0), ("L1", 1.0)):
        c0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
        knn(x, args.k, metric)
        c1, wall = resource.getrusage(resource.RUSAGE_SELF), time.time() - t0
        total += wall
        print(f"{name}: {len(x)} x {len(x)}, top {args.k}: {wall:.1f} s wall, "
              f"{c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime:.1f} s CPU, {torch.get_num_threads()} threads")
    print(f"together: {total:.1f} s wall")


if __name__ == "__main__":
    time_pixel_neighbours()
