"""Latent-space probes: how well a trained encoder's codes separate the classes.

    python -m ae_lightning.probes runs/mnist/fc/version_0          # the run's best checkpoint
    python -m ae_lightning.probes runs/mnist/fc/version_0/checkpoints/last.ckpt
    python -m ae_lightning.probes ENC.ckpt --out results/ --no-baselines

For the codes of the checkpoint's encoder, and as baselines for the raw pixels and for PCA with as
many components as the code has dimensions:

    knn     k-nearest-neighbour accuracy (k=5, Euclidean) on the test split, the training split's
            features as the memory; majority vote, ties to the class of the nearer neighbours
    linear  a linear probe: multinomial logistic regression on standardized features (full-batch
            L-BFGS, L2 penalty ``l2`` on the weights), test accuracy

The data is the checkpoint's dataset and preprocessing; ``train`` is its training split (the
validation hold-out excluded), ``test`` the official test file. A table is printed and written
to ``probes.json`` (in ``--out``, by default the checkpoint's run folder).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ae_lightning import files, flags
from ae_lightning.config import cli
from ae_lightning.errors import UserError
from ae_lightning.hints import NonNegFloat, PosInt
from ae_lightning.knn import knn_accuracy


# ----------------------------------------------------------------------------------------------
# The probes, on any features (N, d); the kNN vote is ae_lightning.knn.knn_predict
def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 l2: float = 1e-4, max_iter: int = 150, num_classes: int = 10) -> float:
    """Test accuracy of multinomial logistic regression fitted on the training features.

    Features are standardized with the training mean and std (constant ones left at 0); the loss is
    the mean cross-entropy plus ``l2 * |W|^2``, minimized by full-batch L-BFGS (strong Wolfe line
    search), which is deterministic and needs no learning rate.
    """
    mu = train_x.float().mean(0)
    sd = train_x.float().std(0)
    sd = torch.where(sd > 1e-6, sd, torch.ones_like(sd))
    xtr, xte = (train_x.float() - mu) / sd, (test_x.float() - mu) / sd
    w = torch.zeros(xtr.shape[1], num_classes, device=xtr.device, requires_grad=True)
    b = torch.zeros(num_classes, device=xtr.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ w + b, train_y) + l2 * w.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return ((xte @ w + b).argmax(1) == test_y).float().mean().item()


def sklearn_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor) -> float:
    """Test accuracy of logistic regression as scikit-learn runs it by default: ``LogisticRegression()``
    (L-BFGS, C = 1, at most 100 iterations, stopped there unconverged if need be) on the raw features, not
    standardized. The common reading of "a classifier on the codes" in course code; beside ``linear_probe``."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression  # late: scikit-learn takes a second to import

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the default's 100 iterations are part of the reading
        clf = LogisticRegression().fit(train_x.double().cpu().numpy(), train_y.cpu().numpy())
    return float((clf.predict(test_x.double().cpu().numpy()) == test_y.cpu().numpy()).mean())


def pca(train_x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean (d,), components (d, dim))``: the top principal directions of the training features
    (eigenvectors of the (d, d) covariance, in float64 for a stable order)."""
    x = train_x.double()
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / max(len(x) - 1, 1)
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    return mean.float(), vecs[:, -dim:].flip(1).float()


# ----------------------------------------------------------------------------------------------
def _row(name: str, train: torch.Tensor, test: torch.Tensor, ytr: torch.Tensor, yte: torch.Tensor,
         k: int, l2: float, sklearn: bool = False) -> dict[str, Any]:
    t0 = time.time()
    knn = knn_accuracy(train, ytr, test, yte, k)
    t1 = time.time()
    lin = linear_probe(train, ytr, test, yte, l2)
    row = {"features": name, "dim": int(train.shape[1]), "knn_acc": knn, "linear_acc": lin,
           "knn_s": round(t1 - t0, 2), "linear_s": round(time.time() - t1, 2)}
    if sklearn:
        row["sklearn_acc"] = sklearn_probe(train, ytr, test, yte)
    return row


def run_probes(checkpoint: str | Path, *, data_dir: str | None = None, k: PosInt = 5, l2: NonNegFloat = 1e-4,
               train_limit: PosInt | None = None, test_limit: PosInt | None = None, baselines: bool = True,
               device: Literal["auto", "cpu", "cuda"] = "auto", sklearn: bool = False) -> dict[str, Any]:
    """Probe the encoder of an autoencoder checkpoint (and the pixel / PCA baselines); a result dict
    ``{checkpoint, variant, dataset, latent_dim, k, n_train, n_test, rows: [{features, dim, knn_acc,
    linear_acc, ...}]}``; ``sklearn``: the codes' row also has ``sklearn_acc`` (``sklearn_probe``). Bad
    checkpoints raise UserError (see ``classifier.load_encoder``)."""
    # late: the data module and the models import Lightning (seconds), which --help and the flags'
    # checks do without
    from ae_lightning.data import MNISTDataModule
    from ae_lightning.models.classifier import load_encoder

    if k < 1:
        raise UserError(f"--k must be at least 1, got {k}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but this machine has no CUDA GPU")
    ae, cfg = load_encoder(checkpoint)
    ae = ae.to(device)
    data = dict(cfg["data"], subset=None, test_subset=None, data_on_device=None)
    if data_dir is not None:
        data["data_dir"] = str(data_dir)
    elif data.get("data_dir") and not Path(data["data_dir"]).is_dir():
        data["data_dir"] = None  # trained elsewhere: find the data the usual way
    dm = MNISTDataModule(**data)
    xtr, ytr = dm.tensors("train", device, train_limit)  # (N,1,28,28) in [0,1], (N,)
    xte, yte = dm.tensors("test", device, test_limit)
    if k > len(xtr):
        raise UserError(f"--k {k} exceeds the {len(xtr)} training images")
    ztr, zte = ae.encode_all(xtr).float(), ae.encode_all(xte).float()  # (N, latent)
    dim = ztr.shape[1]
    rows = [_row("code", ztr, zte, ytr, yte, k, l2, sklearn)]
    if baselines:
        ptr, pte = xtr.flatten(1), xte.flatten(1)  # (N, 784)
        rows.append(_row("pixels", ptr, pte, ytr, yte, k, l2))
        mean, comps = pca(ptr, min(dim, ptr.shape[1]))
        rows.append(_row(f"pca{dim}", (ptr - mean) @ comps, (pte - mean) @ comps, ytr, yte, k, l2))
    return {"checkpoint": str(checkpoint), "variant": cfg.get("variant"), "dataset": dm.dataset,
            "latent_dim": dim, "k": k, "l2": l2, "n_train": len(xtr), "n_test": len(xte), "rows": rows}


def format_table(result: dict[str, Any]) -> str:
    head = (f"probes of {result['checkpoint']}\n{result['variant']} on {result['dataset']}, latent "
            f"{result['latent_dim']}; {result['n_train']} train / {result['n_test']} test images")
    lines = [head, f"{'features':<10}{'dim':>6}{'knn@' + str(result['k']):>10}{'linear':>10}"]
    for r in result["rows"]:
        lines.append(f"{r['features']:<10}{r['dim']:>6}{r['knn_acc']:>10.4f}{r['linear_acc']:>10.4f}")
    return "\n".join(lines)


def default_out_dir(checkpoint: Path) -> Path:
    """The run folder of ``<run>/checkpoints/x.ckpt``; else the checkpoint's own folder."""
    return files.run_folder(checkpoint) or checkpoint.resolve().parent


def parser() -> flags.Parser:
    hint = flags.param_hints(run_probes, ("k", "l2", "train_limit", "test_limit", "device", "data_dir"))
    p = flags.Parser("python -m ae_lightning.probes", __doc__)
    p.add_argument("checkpoint", help="checkpoint of a trained autoencoder (train.py writes them), or its run "
                   "folder (its best checkpoint)")
    p.add_argument("--out", help="folder for probes.json (default: the checkpoint's run folder)")
    p.add_argument("--k", hint=hint["k"], default=5, help="neighbours of the kNN probe (default 5)")
    p.add_argument("--l2", hint=hint["l2"], default=1e-4, help="L2 penalty of the linear probe (default 1e-4)")
    p.add_argument("--data-dir", hint=hint["data_dir"],
                   help="where MNIST / FashionMNIST live (default: the checkpoint's, else auto)")
    p.add_argument("--train-limit", hint=hint["train_limit"], help="use only the first N training images")
    p.add_argument("--test-limit", hint=hint["test_limit"], help="use only the first N test images")
    p.add_argument("--no-baselines", action="store_true", help="probe the codes only (no pixels, no PCA)")
    p.add_argument("--device", hint=hint["device"], default="auto", help="auto (default: cuda when there is one), cpu or cuda")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # before the data and the models' imports (seconds); a run folder stands for its best checkpoint
    checkpoint = files.checkpoint_file(args.checkpoint, runs=True)
    result = run_probes(checkpoint, data_dir=args.data_dir, k=args.k, l2=args.l2,
                        train_limit=args.train_limit, test_limit=args.test_limit,
                        baselines=not args.no_baselines, device=args.device)
    out = Path(args.out) if args.out else default_out_dir(checkpoint)
    try:
        path = files.write_json(out / "probes.json", result)
    except OSError as e:
        raise UserError(f"cannot write {out / 'probes.json'}: {e.strerror or e}") from None
    print(format_table(result))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
