"""ae_lightning.knn: the kNN vote of the probes and the exact neighbours of the neighbours study."""
from __future__ import annotations

import pytest
import torch


def test_knn_matches_brute_force():
    """Two classes and odd k, so no vote ties: exactly the brute-force majority of the 5 nearest."""
    from ae_lightning.knn import knn_predict

    g = torch.Generator().manual_seed(0)
    mem, q = torch.randn(300, 6, generator=g), torch.randn(97, 6, generator=g)
    labels = (mem[:, 0] + 0.8 * torch.randn(300, generator=g) > 0).long()
    got = knn_predict(mem, labels, q, k=5, max_block=1000)  # blocks of 3 queries: the blocking is exercised
    nearest = torch.cdist(q, mem).argsort(1)[:, :5]
    want = (labels[nearest].sum(1) >= 3).long()
    assert torch.equal(got, want)


def test_knn_ties_go_to_the_nearer_class():
    from ae_lightning.knn import knn_predict

    mem = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    # k=4: two votes each for class 7 (the nearer pair) and class 2
    assert knn_predict(mem, torch.tensor([2, 2, 7, 7]), torch.tensor([[2.6]]), k=4).item() == 7
    assert knn_predict(mem, torch.tensor([2, 2, 7, 7]), torch.tensor([[0.4]]), k=4).item() == 2
    assert knn_predict(mem, torch.tensor([1, 3, 3, 1]), torch.tensor([[1.4]]), k=1).item() == 3


def test_knn_excludes_the_point_itself_and_orders_by_distance():
    from ae_lightning.knn import knn

    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn(x, 2, 1.0, chunk=3).tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]


def test_fast_l1_is_exact_on_8_bit_pixels_with_ties():
    """MNIST's pixels / 255: the exact step runs in integer units; with ties, the k distances equal brute force's."""
    from ae_lightning.knn import knn_l1

    g = torch.Generator().manual_seed(1)
    u8 = (torch.randint(0, 256, (120, 784), generator=g) * (torch.rand(120, 784, generator=g) < 0.2)).to(torch.uint8)
    u8[60:70] = u8[50:60]  # duplicates: distance-0 ties
    x = u8.float() / 255
    got = knn_l1(x, 25, chunk=32, candidates=26)  # few candidates: most rows need the second round
    d = torch.cdist(u8.double(), u8.double(), p=1)
    d.fill_diagonal_(float("inf"))
    want = d.topk(25, dim=1, largest=False).values
    assert torch.equal(d.gather(1, got).sort(1).values, want)
    capped = knn_l1(x, 25, chunk=32, candidates=26, wide_cap=30)  # wide rows: a full exact row each
    assert torch.equal(d.gather(1, capped).sort(1).values, want)


def test_l1_bound_features_bound_the_sum_of_minima():
    from ae_lightning.knn import l1_bound_features

    g = torch.Generator().manual_seed(2)
    u = torch.rand(200, 50, generator=g)
    u[:, :10] = u[:, :10].round()  # some pixels exactly 0 or 1
    f = l1_bound_features(u)
    mins = torch.minimum(u[:, None, :], u[None, :, :]).sum(-1)
    assert (f @ f.T >= mins * (1 - 1e-6)).all()  # float32: a few units in the last place of sums up to ~30
    l1 = torch.cdist(u, u, p=1)
    s = u.sum(1)
    assert (s[:, None] + s[None] - 2 * (f @ f.T) <= l1 + 1e-4).all()


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_the_fast_paths_equal_cdist_above_the_small_size(p):
    """Above ``SMALL`` points and ``LOW_DIM`` dimensions ``knn`` takes the GEMM paths: the same
    neighbour distances as a full cdist (8-bit pixels, so L1 is exact in integer units)."""
    from ae_lightning import knn as knn_mod

    g = torch.Generator().manual_seed(4)
    n = knn_mod.SMALL + 96
    u8 = (torch.randint(0, 256, (n, 40), generator=g) * (torch.rand(n, 40, generator=g) < 0.5)).to(torch.uint8)
    got = knn_mod.knn(u8.float() / 255, 5, p, chunk=1024)
    d = torch.cdist(u8.double(), u8.double(), p=p)
    d.fill_diagonal_(float("inf"))
    want = d.topk(5, dim=1, largest=False).values
    assert torch.allclose(d.gather(1, got).sort(1).values, want, rtol=0, atol=1e-6 if p == 1.0 else 1e-3)


def test_the_vote_and_the_neighbours_rank_by_the_same_l2_kernel():
    """k = 1 without the point itself: the vote's memory is every other point, so its label is the
    label of ``knn``'s nearest neighbour."""
    from ae_lightning.knn import knn, knn_l2, knn_predict

    g = torch.Generator().manual_seed(6)
    x = torch.randn(60, 30, generator=g)
    labels = torch.arange(60) % 10
    nearest = knn_l2(x, 1, chunk=16)[:, 0]
    assert torch.equal(nearest, knn(x, 1, 2.0)[:, 0])
    for i in range(0, 60, 7):
        rest = torch.cat([torch.arange(i), torch.arange(i + 1, 60)])
        assert knn_predict(x[rest], labels[rest], x[i:i + 1], k=1).item() == labels[nearest[i]].item()
