"""k nearest neighbours: the one module of the kNN kernels, for the probes and the neighbours study.

- :func:`knn_predict` / :func:`knn_accuracy` (``ae_lightning.probes``): labels of queries by a vote
  of their k nearest rows of a memory (Euclidean), in blocks of queries.
- :func:`knn` (``ae_lightning.studies.neighbors``): each point's k nearest *other* points, exact,
  over row chunks (the (N, N) matrix is never held): ``cdist`` for few dimensions (the codes) or
  few points, one GEMM per chunk for many-dimensional L2 (:func:`knn_l2`), and for L1 a GEMM lower
  bound, an exact re-rank of the candidates and a proof per row (:func:`knn_l1`). Measured on the
  project's 2-core CPU, idle (2026-12-01), MNIST's 60,000 training images, top 200 each
  (``python -m ae_lightning.studies.neighbors``): L2 43 s, L1 108 s, 151 s together;
  ``cdist(p=1)`` alone would take about 40 minutes.

Both L2 paths rank by :func:`l2_rank`, ``|m|^2 - 2 q.m`` (``|q|^2`` is the same along a row).
Torch only; it knows nothing of studies, configs or data.
"""
from __future__ import annotations

import torch

from ae_lightning.errors import UserError


def l2_rank(queries: torch.Tensor, memory: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    """``(Q, N)``: the squared L2 distance of each query to each memory row minus the query's own
    ``|q|^2`` (the same along a row, so the ranking needs no more): one fused addmm, float32 as the
    GEMM gives it. ``sq`` (N,): the memory's squared norms."""
    return torch.addmm(sq, queries, memory.T, alpha=-2.0)


@torch.no_grad()
def knn_predict(memory: torch.Tensor, memory_labels: torch.Tensor, queries: torch.Tensor, k: int = 5,
                num_classes: int = 10, max_block: int = 1 << 24) -> torch.Tensor:
    """Labels (Q,) of ``queries`` (Q, d) by a vote of their ``k`` nearest rows of ``memory`` (N, d).

    Distances in blocks of queries: ``|m|^2 - 2 q.m`` as one fused matmul per block (``|q|^2`` is the
    same for every row of memory, so the ranking needs no more; a block's (B, N) matrix stays under
    ``max_block`` floats). Ties go to the class whose neighbours
    are nearer: each vote weighs 1 + 1e-3 (k - rank) / k, which never outweighs a whole vote.
    """
    if not 1 <= k <= len(memory):
        raise UserError(f"k must be between 1 and the memory size {len(memory)}, got {k}")
    memory, queries = memory.float(), queries.float()
    m2 = memory.square().sum(1)  # (N,)
    weights = 1 + 1e-3 * (k - torch.arange(k, device=memory.device, dtype=torch.float32)) / k  # (k,)
    block = max(1, max_block // len(memory))
    out = []
    for i in range(0, len(queries), block):
        q = queries[i:i + block]
        d2 = l2_rank(q, memory, m2)  # (B, N): squared distance minus |q|^2
        idx = d2.topk(k, dim=1, largest=False, sorted=True).indices  # (B, k), nearest first
        votes = torch.zeros(len(q), num_classes, device=q.device).scatter_add_(
            1, memory_labels[idx], weights.expand(len(q), k))
        out.append(votes.argmax(1))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 k: int = 5) -> float:
    return (knn_predict(train_x, train_y, test_x, k) == test_y).float().mean().item()


LOW_DIM = 16  # up to this many dimensions (the codes): torch.cdist rows; above (pixels): the fast paths
SMALL = 4096  # up to this many points torch.cdist is quick in any dimension (smoke runs, tests)


@torch.no_grad()
def knn(points: torch.Tensor, k: int, p: float = 2.0, chunk: int = 1024) -> torch.Tensor:
    """Indices ``(N, k)`` of each point's k nearest *other* points, nearest first.

    ``points`` (N, D), over row chunks of ``chunk`` queries (the (N, N) matrix is never held). The
    point itself is excluded by giving its own distance +inf. Few dimensions (the codes): one
    ``cdist`` (chunk, N) plus a ``topk`` per chunk. Many dimensions (pixels): L2 through the matmul
    form ||b||^2 - 2 a.b (one GEMM per chunk); L1 through a bound (``knn_l1``), exact. Up to
    ``SMALL`` points, ``cdist`` in any dimension."""
    pts = points.reshape(len(points), -1).float()
    n = len(pts)
    if k >= n:
        raise ValueError(f"k = {k} needs more than {k} points, got {n}")
    if pts.shape[1] <= LOW_DIM or p not in (1.0, 2.0) or n <= SMALL:
        return knn_cdist(pts, k, p, chunk)
    return knn_l2(pts, k, chunk) if p == 2.0 else knn_l1(pts, k, chunk)


def _exclude_self(d: torch.Tensor, start: int) -> None:
    rows = torch.arange(len(d), device=d.device)
    d[rows, rows + start] = float("inf")


def knn_cdist(pts: torch.Tensor, k: int, p: float, chunk: int) -> torch.Tensor:
    out = torch.empty(len(pts), k, dtype=torch.long, device=pts.device)
    for i in range(0, len(pts), chunk):
        d = torch.cdist(pts[i:i + chunk], pts, p=p)  # (c, N)
        _exclude_self(d, i)
        out[i:i + chunk] = d.topk(k, dim=1, largest=False).indices
    return out


def knn_l2(pts: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b; ||a||^2 is the same along a row, so each row ranks
    ||b||^2 - 2 a.b: one addmm per chunk (float32, as the GEMM gives it)."""
    sq = pts.square().sum(1)
    out = torch.empty(len(pts), k, dtype=torch.long, device=pts.device)
    for i in range(0, len(pts), chunk):
        d = l2_rank(pts[i:i + chunk], pts, sq)
        _exclude_self(d, i)
        out[i:i + chunk] = d.topk(k, dim=1, largest=False).indices
    return out


def _fast_bf16(device: torch.device) -> bool:
    """bf16 GEMMs run at several times the float32 rate here (CUDA, or a CPU with AVX512-BF16)."""
    if device.type == "cuda":
        return True
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return device.type == "cpu" and probe is not None and bool(probe())


def l1_bound_features(u: torch.Tensor) -> torch.Tensor:
    """Features F (N, 4D) of points ``u`` in [0, 1] with F_a . F_b >= sum_p min(a_p, b_p) for every pair.

    min(a, b) over [0, 1] splits at 1/2 into two cells of width 1/2, min(a, b) = sum_j 1/2 min(h_j(a),
    h_j(b)) with h_1 = min(2a, 1), h_2 = max(2a - 1, 0); and for u, v in [0, 1],
    min(u, v) <= u v + sqrt(u (1 - u)) sqrt(v (1 - v)) (for u <= v: u (1 - v) <= sqrt(u (1 - u) v (1 - v))
    as u (1 - v) <= v (1 - u)). So L1(a, b) = |a| + |b| - 2 sum min(a, b) >= |a| + |b| - 2 F_a . F_b;
    the bound is exact where the pixels sit at 0, 1/2 or 1, tight for MNIST's near-binary strokes."""
    h1, h2 = (2 * u).clamp(max=1.0), (2 * u - 1).clamp(min=0.0)
    w1, w2 = (h1 * (1 - h1)).clamp(min=0).sqrt(), (h2 * (1 - h2)).clamp(min=0).sqrt()
    return torch.cat([h1, w1, h2, w2], 1) * 0.5 ** 0.5


def _l1_bound_gemm(u: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The bound's features of points ``u`` in [0, 1], as the GEMM takes them, and the factor c of
    F_i.F_j that keeps the lower bound a bound through the GEMM's rounding."""
    bf16 = _fast_bf16(u.device)
    feats = l1_bound_features(u)
    feats = feats[:, feats.amax(0) > 0]  # drop the columns that are zero for every point
    if bf16:  # rounded up (the products can only grow); the bf16 result is rounded to nearest: 2^-8
        low = feats.bfloat16()
        feats = torch.where(low.float() < feats, torch.nextafter(low, torch.full_like(low, float("inf"))), low)
    # the GEMM's float32 accumulation over n terms: relative error <= n 2^-24 (twice that for fp32 inputs)
    acc = (feats.shape[1] + 8) * 2.0 ** (-24 if bf16 else -23)
    return feats, 2 * (1 + (2.0 ** -8 if bf16 else 0.0) + acc)


def _exact_source(u: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The rows the exact step gathers, and their unit: 8-bit data (MNIST's pixels / 255) as bytes in
    integer units, a quarter of the memory traffic; other data as they are."""
    scaled = (u * 255).round()
    if torch.equal(scaled, u * 255):
        return scaled.to(torch.uint8), 255.0
    return u, 1.0


def _l1_exact(src: torch.Tensor, unit: float, rows: torch.Tensor, cand: torch.Tensor, k: int,
              block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest of ``cand`` (R, M') for the query ``rows`` (R,) by exact L1 over ``src`` (in units
    of ``unit``), in blocks of ``block`` rows: indices and k-th distance."""
    idx = torch.empty(len(rows), k, dtype=torch.long, device=src.device)
    kth = torch.empty(len(rows), device=src.device)
    width = cand.shape[1]
    for b in range(0, len(rows), block):
        cb = cand[b:b + block]
        g = src.index_select(0, cb.reshape(-1)).view(len(cb), width, src.shape[1]).float()  # 2x faster than src[idx]
        d = torch.cdist(src[rows[b:b + block], None, :].float(), g, p=1)[:, 0]
        top = d.topk(k, dim=1, largest=False)
        idx[b:b + len(cb)] = cb.gather(1, top.indices)
        kth[b:b + len(cb)] = top.values[:, -1] / unit
    return idx, kth


def knn_l1(pts: torch.Tensor, k: int, chunk: int, candidates: int | None = None,
            exact_block: int = 32, wide_cap: int = 4096) -> torch.Tensor:
    """Exact L1 neighbours without the (N, N, D) work of ``cdist(p=1)`` (about 40 minutes for MNIST's
    60,000 x 60,000 on 2 cores).

    The points are rescaled to [0, 1] (one affine map: the L1 ranking is unchanged). Per chunk of rows,
    one GEMM gives a lower bound LB of every L1 distance (``l1_bound_features``); the M rows with the
    lowest LB are the candidates, their exact L1 (``cdist`` on the gathered rows) ranks them, and a row
    is proven exact when its (M+1)-th lowest LB is at least its k-th exact distance: no point outside
    can then be closer. A row that fails is redone once with every point whose LB lies below its k-th
    exact distance as candidates, which proves it. The GEMM runs in bf16 where that is fast (its
    inputs rounded up, so the products can only grow; its result's rounding, relative <= 2^-8, and
    the float32 accumulation's, <= n 2^-24, taken off the bound). 8-bit data
    (MNIST's pixels / 255) are gathered as bytes for the exact step (a quarter of the memory traffic)."""
    n = len(pts)
    lo, hi = pts.min(), pts.max()
    u = (pts - lo) / (hi - lo) if hi > lo else torch.zeros_like(pts)
    feats, c = _l1_bound_gemm(u)
    sums = u.sum(1)
    tol = 1e-5 * (sums + sums.max() + 1)  # the sums' and the exact distances' float rounding
    src, unit = _exact_source(u)
    m = min(n - 1, candidates if candidates is not None else k + max(k, 256))
    out = torch.empty(n, k, dtype=torch.long, device=u.device)
    for i in range(0, n, chunk):
        rows = torch.arange(i, min(i + chunk, n), device=u.device)
        # LB_ij = sums_i + sums_j - c F_i.F_j - tol_i; each row ranks r_ij = sums_j - c F_i.F_j
        r = torch.sub(sums[None, :], feats[i:i + len(rows)] @ feats.T, alpha=c)
        _exclude_self(r, i)
        rs, cand = r.topk(min(m + 1, n - 1), dim=1, largest=False)
        idx, kth = _l1_exact(src, unit, rows, cand[:, :m], k, exact_block)
        out[rows] = idx
        if m < n - 1:
            shift = (sums[rows] - tol[rows])[:, None]
            bad = (rs[:, m] + shift[:, 0] < kth).nonzero().flatten()
            # every point that may be closer than the k-th found, in groups of rows of similar width;
            # a row whose bound admits more than `wide_cap` points gets a full exact cdist row
            width = (r[bad] + shift[bad] < kth[bad, None]).sum(1)
            order = width.argsort()
            for g in range(0, len(bad), exact_block):
                grp = bad[order[g:g + exact_block]]
                wide = min(n - 1, max(k, int(width[order[g:g + exact_block]].max())))  # ties at LB = k-th: >= k
                if wide <= wide_cap:
                    near = r[grp].topk(wide, dim=1, largest=False).indices
                    out[rows[grp]] = _l1_exact(src, unit, rows[grp], near, k, exact_block)[0]
                else:
                    d = torch.cdist(src[rows[grp]].float(), src.float(), p=1)
                    d[torch.arange(len(grp), device=u.device), rows[grp]] = float("inf")
                    out[rows[grp]] = d.topk(k, dim=1, largest=False).indices
    return out
