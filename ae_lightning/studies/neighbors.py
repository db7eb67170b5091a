"""neighbors: how well an autoencoder's code space keeps the neighbourhoods of pixel space.

For every test image: its k nearest other test images in pixel space and in code space (k = 5, 10,
20, 50; L1 and L2). score@k is the fraction of the pixel-space neighbours that are also code-space
neighbours, averaged over images (overall and per label). The same-label rate is the fraction of an
image's k neighbours that share its label, in each space; their difference says whether the code
space groups the classes better (> 0) or worse than the pixels.

Distances are batched torch: ``torch.cdist`` on row chunks of the query set and ``topk``, so the
(N, N) matrix is never held whole. Pixel-space neighbours are computed once per metric and shared
by every model.
"""
from __future__ import annotations

import time

import torch

from ae_lightning.config import UserError
from ae_lightning.studies import register
from ae_lightning.studies.common import Context
from ae_lightning.studies.report import line_plot

KS = (5, 10, 20, 50)
METRICS = {"L1": 1.0, "L2": 2.0}
LATENT = 2
# (label, variant, loss); "deep" is the ReLU model of the study (reference name relu_*)
MODELS = [("linear_mse", "linear", "mse"), ("linear_l1", "linear", "l1"),
          ("deep_mse", "deep", "mse"), ("deep_l1", "deep", "l1")]
REFERENCE = {"deep_mse": 0.0278, "linear_mse": 0.0050}  # score@5 at latent 2 (relu_mse, linear_mse)


@torch.no_grad()
def knn(points: torch.Tensor, k: int, p: float = 2.0, chunk: int = 1024) -> torch.Tensor:
    """Indices ``(N, k)`` of each point's k nearest *other* points, nearest first.

    ``points`` (N, D). Each chunk of rows is one ``cdist`` (chunk, N) plus a ``topk``; the point
    itself is excluded by giving its own distance +inf."""
    pts = points.reshape(len(points), -1).float()
    n = len(pts)
    if k >= n:
        raise ValueError(f"k = {k} needs more than {k} points, got {n}")
    out = torch.empty(n, k, dtype=torch.long, device=pts.device)
    for i in range(0, n, chunk):
        d = torch.cdist(pts[i:i + chunk], pts, p=p)  # (c, N)
        rows = torch.arange(len(d), device=pts.device)
        d[rows, rows + i] = float("inf")
        out[i:i + chunk] = d.topk(k, dim=1, largest=False).indices
    return out


def score_at_k(pixel_nn: torch.Tensor, code_nn: torch.Tensor, k: int) -> torch.Tensor:
    """Per-image fraction ``(N,)`` of the k pixel-space neighbours that are among the k code-space ones."""
    a, b = pixel_nn[:, :k], code_nn[:, :k]
    return (a[:, :, None] == b[:, None, :]).any(-1).float().mean(1)


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
                  "same_label_code_per_label": per_label(sc, labels)}
    return out


def run(ctx: Context) -> None:
    """Neighbourhood preservation (score@k) and same-label rates, pixel vs code space."""
    rep = ctx.report
    kmax = max(KS)
    if ctx.opts.test_subset is not None and ctx.opts.test_subset <= kmax:
        raise UserError(f"neighbors: --test-subset must exceed the largest k ({kmax}), got {ctx.opts.test_subset}")
    runs = {label: ctx.train(variant, label=label, model__latent_dim=LATENT, model__loss=loss)
            for label, variant, loss in MODELS}
    first = next(iter(runs.values()))
    x, y = ctx.tensors(first.cfg, "test")
    pixel_nn, timings = {}, {}
    for name, p in METRICS.items():
        t0 = time.time()
        pixel_nn[name] = knn(x, kmax, p)
        timings[name] = round(time.time() - t0, 2)
    res: dict[str, dict] = {}
    for label, run_ in runs.items():
        z = run_.module.encode_all(x)
        res[label] = {m: compare(pixel_nn[m], knn(z, kmax, p), y) for m, p in METRICS.items()}
    rep.text(f"{len(x)} test images; models at latent {LATENT} (`linear`: 784-128-64-12-2 with no nonlinearity; "
             "`deep`: 784-128-2 with ReLU, the study's ReLU model), trained with MSE or L1. "
             f"Pixel-space neighbours took {timings['L1']} s (L1) and {timings['L2']} s (L2) for all "
             f"{len(x)} × {len(x)} distances. Reference: the study's score@5 at latent 2, relu_mse 0.0278, "
             "linear_mse 0.0050 (the metric of the reference is not stated; compare with both).")
    headers = ["model", "metric"] + [f"score@{k}" for k in KS] + ["reference score@5"]
    rep.table(headers, [[label, m] + [res[label][m][k]["score"] for k in KS] + [REFERENCE.get(label)]
                        for label in runs for m in METRICS])
    rep.heading("Same-label neighbours")
    rep.table(["model", "metric"] + [f"pixel / code / diff @{k}" for k in KS],
              [[label, m] + [f"{res[label][m][k]['same_label_pixel']:.3f} / {res[label][m][k]['same_label_code']:.3f}"
                             f" / {res[label][m][k]['same_label_diff']:+.3f}" for k in KS]
               for label in runs for m in METRICS])
    rep.heading("score@5 per label (L2)")
    labels = sorted(res[next(iter(runs))]["L2"][5]["score_per_label"])
    rep.table(["model"] + [str(c) for c in labels],
              [[label] + [res[label]["L2"][5]["score_per_label"][c] for c in labels] for label in runs])
    rep.figure("score_at_k", line_plot({f"{label} {m}": (list(KS), [res[label][m][k]["score"] for k in KS])
                                        for label in runs for m in METRICS},
                                       "k", "score@k", "Pixel neighbours kept in code space"),
               "score@k against k for every model and metric")
    rep.figure("same_label_at_k", line_plot(
        {**{f"pixels {m}": (list(KS), [res[MODELS[0][0]][m][k]["same_label_pixel"] for k in KS]) for m in METRICS},
         **{f"{label} {m}": (list(KS), [res[label][m][k]["same_label_code"] for k in KS])
            for label in runs for m in METRICS}},
        "k", "same-label rate", "Neighbours sharing the image's label"),
        "Same-label rate of the k nearest neighbours, in pixel space and in each code space")
    rep.results.update({"latent_dim": LATENT, "n_test": len(x), "ks": list(KS), "pixel_knn_seconds": timings,
                        "by_model": res, "reference_score_at_5": REFERENCE})


register("neighbors", "Neighbourhood preservation", order=6, dataset="mnist")(run)
