"""IDX reading and validation, download (against a local server), and the DataModule."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest
import torch
from conftest import idx_bytes, write_dataset

from ae_lightning import data as D
from ae_lightning.configs.data import DataConfig
from ae_lightning.errors import UserError


def _dm(data_dir, **kw):
    kw.setdefault("subset", 1000)
    dm = D.MNISTDataModule(data_dir=str(data_dir), download=False, **kw)
    dm.setup()
    return dm


def test_reads_gz_and_plain_identically(data_dir, tmp_path):
    plain = write_dataset(tmp_path, "MNIST", 1200, 300, gz=False)
    a = D.load_split(data_dir, "mnist", "train", download=False)
    b = D.load_split(plain, "mnist", "train", download=False)
    assert a[0].shape == (1200, 28, 28) and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-7], "truncated"),
    (lambda b: b + b"\x00", "trailing bytes"),
    (lambda b: b"\x01\x02" + b[2:], "bad magic"),
    (lambda b: b[:2] + b"\x0d" + b[3:], "IDX type"),
    (lambda b: b[:3] + b"\x02" + b[4:], "dimensions"),
])
def test_corrupt_image_file_named_in_error(tmp_path, mutate, message):
    root = write_dataset(tmp_path, "MNIST", 50, 20, gz=False)
    f = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    f.write_bytes(mutate(f.read_bytes()))
    with pytest.raises(UserError, match=message) as e:
        D.load_split(root, "mnist", "train", download=False)
    assert str(f) in str(e.value)


def test_bad_gzip_label_range_and_count_mismatch(tmp_path):
    root = write_dataset(tmp_path, "MNIST", 50, 20, gz=True)
    raw = root / "MNIST" / "raw"
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(UserError, match="cannot decompress"):
        D.load_split(root, "mnist", "test", download=False)
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.full(50, 12, np.uint8))))
    with pytest.raises(UserError, match="label 12 out of range"):
        D.load_split(root, "mnist", "train", download=False)
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(49, np.uint8))))
    with pytest.raises(UserError, match="50 images but .* 49 labels"):
        D.load_split(root, "mnist", "train", download=False)


def test_missing_offline_fails_fast_with_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(D.DATASETS["mnist"], "mirrors", ["http://127.0.0.1:9/"])  # closed port: refused
    with pytest.raises(UserError) as e:
        D.load_split(tmp_path, "mnist", "train", download=True)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "MNIST" / "raw") in msg and "--data-dir" in msg
    with pytest.raises(UserError, match="--data-dir"):
        D.load_split(tmp_path, "mnist", "train", download=False)


@pytest.fixture
def file_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(served), **k)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()


def test_download_verifies_md5_and_writes_atomically(tmp_path, file_server, monkeypatch):
    served, url = file_server
    src = write_dataset(tmp_path / "src", "MNIST", 60, 20, gz=True) / "MNIST" / "raw"
    md5 = {}
    for f in src.iterdir():
        (served / f.name).write_bytes(f.read_bytes())
        md5[f.name] = hashlib.md5(f.read_bytes()).hexdigest()
    monkeypatch.setitem(D.DATASETS["mnist"], "mirrors", [url])
    bad = dict(md5, **{"train-images-idx3-ubyte.gz": "0" * 32})
    monkeypatch.setitem(D.DATASETS["mnist"], "md5", bad)
    dest = tmp_path / "dest"
    with pytest.raises(UserError, match="MD5"):
        D.load_split(dest, "mnist", "train", download=True)
    assert not any((dest / "MNIST" / "raw").glob("train-images*"))  # nothing half-written left behind
    monkeypatch.setitem(D.DATASETS["mnist"], "md5", md5)
    x, y = D.load_split(dest, "mnist", "train", download=True)
    assert x.shape == (60, 28, 28) and sorted(p.name for p in (dest / "MNIST" / "raw").iterdir()) == \
        ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def test_splits_are_disjoint_seeded_and_sized(data_dir):
    dm = _dm(data_dir, subset=500)
    (xt, _), (xv, _), (xs, _) = dm.split("train"), dm.split("val"), dm.split("test")
    assert len(xt) == 500 and len(xv) == 50 and len(xs) == 300  # val = a tenth of the subset; test whole
    rows = {r.tobytes() for r in xt.numpy()}
    assert not any(r.tobytes() in rows for r in xv.numpy())
    assert torch.equal(_dm(data_dir, subset=500).split("val")[0], xv)
    assert not torch.equal(_dm(data_dir, subset=500, split_seed=1).split("val")[0], xv)
    assert len(_dm(data_dir, test_subset=100).split("test")[0]) == 100


def test_subset_too_large_is_a_user_error(data_dir):
    with pytest.raises(UserError, match="exceed"):
        _dm(data_dir, subset=1190)


def test_unit_and_standardize_normalization(data_dir):
    dm = _dm(data_dir)
    x, _ = dm.tensors("train")
    raw = dm.split("train")[0].float().unsqueeze(1) / 255
    assert torch.allclose(x, raw)
    # standardize: each pixel's training range maps to [0, 1] (z-score, then a per-pixel min-max)
    st = _dm(data_dir, normalize="standardize")
    xs, _ = st.tensors("train")
    u8 = st.split("train")[0].double().flatten(1)
    lo, hi = u8.min(0).values, u8.max(0).values
    varying = hi > lo
    flat = xs.flatten(1).double()
    assert torch.allclose(flat.min(0).values[varying], torch.zeros(int(varying.sum()), dtype=torch.float64), atol=1e-5)
    assert torch.allclose(flat.max(0).values[varying], torch.ones(int(varying.sum()), dtype=torch.float64), atol=1e-5)
    expected = (u8 - lo) / torch.where(varying, hi - lo, torch.ones_like(hi))
    assert torch.allclose(flat, expected, atol=1e-5)  # the same as a per-pixel min-max of the raw pixels
    const = torch.zeros(4, 28, 28, dtype=torch.uint8)
    const[:, 0, 0], const[1:, 5, 5] = 200, 255  # pixel (0, 0) constant at 200, pixel (5, 5) 0 or 255
    st._fit_normalization(const)
    assert abs(float(st._b[0, 0, 0] + 200 * st._a[0, 0, 0])) < 1e-6  # a constant pixel maps to 0
    assert abs(float(st._b[0, 5, 5] + 255 * st._a[0, 5, 5]) - 1) < 1e-6 and float(st._b[0, 5, 5]) == 0.0
    st._fit_normalization(st.split("train")[0])
    # test pixels outside a pixel's training range are clipped to [0, 1], and follow the same map inside it
    xt, _ = st.tensors("test")
    t8 = st.split("test")[0].double().flatten(1)
    want = ((t8 - lo) / torch.where(varying, hi - lo, torch.ones_like(hi))).clamp(0, 1)
    assert xt.min() >= 0 and xt.max() <= 1
    assert torch.allclose(xt.flatten(1).double()[:, varying], want[:, varying], atol=1e-5)
    assert bool(((t8 > hi) | (t8 < lo))[:, varying].any())  # the tiny data has such pixels: the clip was exercised
    # the global reading squashes the data: one min and max over every pixel's z-score
    sg = _dm(data_dir, normalize="standardize_global")
    xg, _ = sg.tensors("train")
    assert xg.min() >= 0 and xg.max() <= 1 and abs(xg.min().item()) < 1e-6 and abs(xg.max().item() - 1) < 1e-6
    assert float(xg.std()) < 0.5 * float(xs.std())
    means = xg.flatten(1).mean(0)  # per-pixel mean 0 before the global rescale -> equal means after it
    assert means[varying].std() < 1e-4


def test_validation_on_the_test_file_trains_on_every_training_image(data_dir):
    dm = _dm(data_dir, subset=None, validation="test")
    assert len(dm.split("train")[0]) == 1200 and torch.equal(dm.split("val")[0], dm.split("test")[0])
    assert len(_dm(data_dir, subset=600, validation="test").split("train")[0]) == 600
    with pytest.raises(UserError, match="validation test"):
        DataConfig(validation="test", val_size=100).check()


def test_batches_cover_the_split_and_shuffle_by_epoch(data_dir):
    dm = _dm(data_dir, batch_size=128)
    epoch = {"e": 0}
    loader = dm.train_dataloader()
    loader.epoch_fn = lambda: epoch["e"]
    batches = list(loader)
    assert len(batches) == len(loader) == 8 and batches[0][0].shape == (128, 1, 28, 28)
    assert sum(len(b[1]) for b in batches) == 1000
    assert batches[0][0].dtype == torch.float32 and 0 <= batches[0][0].min() and batches[0][0].max() <= 1
    again = list(loader)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again))  # same epoch, same order
    epoch["e"] = 1
    assert not torch.equal(list(loader)[0][1], batches[0][1])
    val = list(dm.val_dataloader())
    assert sum(len(b[1]) for b in val) == 100


def test_binarize_static_and_dynamic(data_dir):
    st = _dm(data_dir, binarize="static")
    x, _ = next(iter(st.train_dataloader()))
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    dy = _dm(data_dir, binarize="dynamic")
    loader = dy.train_dataloader()
    x1, _ = next(iter(loader))
    assert set(x1.unique().tolist()) <= {0.0, 1.0}
    loader.epoch_fn = lambda: 1
    x2, y2 = next(iter(loader))
    # a fresh draw each epoch, but eval splits are fixed draws
    v1, v2 = dy.tensors("val")[0], dy.tensors("val")[0]
    assert torch.equal(v1, v2) and set(v1.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(x1, x2)
