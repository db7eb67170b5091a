"""The raw files of MNIST and Fashion-MNIST: their layout, IDX reading and validation, locating and
downloading them (numpy only, no torch: a CLI can check a data folder in a fraction of a second).

Layout (torchvision's): ``<data_dir>/MNIST/raw/train-images-idx3-ubyte[.gz]`` and the same under
``FashionMNIST/raw``. Every file read is validated (magic, dimensions, size, label range, image /
label agreement); every problem is a :class:`UserError` that names the file.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from ae_lightning import files
from ae_lightning.config import ROOT
from ae_lightning.errors import UserError

IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
SPLIT_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# MD5 of the official .gz downloads (the same sums torchvision checks).
DATASETS = {
    "mnist": {
        "folder": "MNIST",
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        "md5": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        "classes": [str(i) for i in range(10)],
    },
    "fashion_mnist": {
        "folder": "FashionMNIST",
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "md5": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    },
}
DOWNLOAD_TIMEOUT_S = 5.0


# ----------------------------------------------------------------------------------------------
# IDX files
def read_idx(path: str | Path, expect_ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped or not), validating everything it can."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"corrupt data file {path}: cannot decompress ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise UserError(f"corrupt data file {path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise UserError(f"corrupt data file {path}: IDX type 0x{raw[2]:02x}, expected 0x08 (unsigned byte)")
    ndim = raw[3]
    if ndim != expect_ndim:
        raise UserError(f"corrupt data file {path}: {ndim} dimensions, expected {expect_ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"corrupt data file {path}: truncated header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise UserError(f"corrupt data file {path}: {what} ({len(raw)} bytes, expected {expected} for shape {dims})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=8)
def _load_split_cached(images: Path, labels: Path, _stamp: tuple) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images, 3)
    y = read_idx(labels, 1)
    if x.shape[1:] != (28, 28):
        raise UserError(f"corrupt data file {images}: images are {x.shape[1]}x{x.shape[2]}, expected 28x28")
    if len(x) != len(y):
        raise UserError(f"data files disagree: {images} holds {len(x)} images but {labels} holds {len(y)} labels")
    if len(y) and int(y.max()) >= NUM_CLASSES:
        raise UserError(f"corrupt data file {labels}: label {int(y.max())} out of range 0-9")
    if len(x) == 0:
        raise UserError(f"data file {images} holds no images")
    return x, y


def load_split(data_dir: str | Path, dataset: str, split: str, download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28) uint8`` and labels ``(N,) uint8`` of one split, downloading if allowed."""
    paths = [locate(data_dir, dataset, stem, download) for stem in SPLIT_FILES[split]]
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    return _load_split_cached(paths[0], paths[1], stamp)


def raw_dir(data_dir: str | Path, dataset: str) -> Path:
    return Path(data_dir) / DATASETS[dataset]["folder"] / "raw"


def locate(data_dir: str | Path, dataset: str, stem: str, download: bool) -> Path:
    folder = raw_dir(data_dir, dataset)
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    if not download:
        raise UserError(f"missing data file {stem}[.gz] in {folder}; point --data-dir at a folder that "
                        f"holds {DATASETS[dataset]['folder']}/raw/ (or allow download)")
    return _download(folder, dataset, stem + ".gz")


def check_folder(data_dir: str | Path | None) -> None:
    """A ``--data-dir`` that is given must be a folder (the studies' rule: they never create it)."""
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir}: no such folder")


def locate_all(data_dir: str | Path | None, dataset: str, download: bool, fetch: bool = True) -> None:
    """Every file of ``dataset`` found now, or downloaded where ``download`` allows it and ``fetch`` asks.

    The commands call it with ``fetch=False`` before they import torch: a file missing where no download
    may bring it answers in a fraction of a second, while a download waits until every other check has
    passed (a bad flag answers as itself, never as the network's error), and is made before the run."""
    if download and not fetch:
        return  # anything missing may still come from the mirrors
    folder = Path(data_dir) if data_dir else default_data_dir(dataset)
    for stems in SPLIT_FILES.values():
        for stem in stems:
            locate(folder, dataset, stem, download)


def _download(folder: Path, dataset: str, name: str) -> Path:
    info = DATASETS[dataset]
    errors = []
    for mirror in info["mirrors"]:
        url = mirror + name
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as r:
                data = r.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
            continue
        digest = hashlib.md5(data).hexdigest()
        if digest != info["md5"][name]:
            errors.append(f"{url}: MD5 {digest} does not match {info['md5'][name]}")
            continue
        print(f"downloaded {url} -> {folder / name}", file=sys.stderr)
        return files.write_bytes(folder / name, data)  # atomic: never a half file
    raise UserError(f"missing data file {name} in {folder} and the download failed ({'; '.join(errors)}); "
                    f"point --data-dir at a folder that holds {info['folder']}/raw/{name}")


def default_data_dir(dataset: str) -> Path:
    """``../shared/data`` beside the project when it holds the dataset, else ``./data``."""
    for cand in (ROOT.parent / "shared" / "data", Path.cwd() / "data", ROOT / "data"):
        if raw_dir(cand, dataset).is_dir():
            return cand
    return Path.cwd() / "data"
