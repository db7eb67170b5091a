"""Generation from any trained autoencoder: decode random codes, and walk its latent space.

    python -m ae_lightning.generate runs/mnist/vae/version_0        # its best checkpoint, into <run>/generated/
    python -m ae_lightning.generate runs/mnist/vae/version_0/checkpoints/last.ckpt --out runs/gen
    python -m ae_lightning.generate runs/mnist/vae/version_0 --interpolate --traverse   # + the latent walks

Codes are drawn from three distributions, each decoded to a grid of images:

    uniform_per_dim  z_j ~ U[min_j, max_j], the range of code unit j over the test codes
    uniform_global   z_j ~ U[min, max], the range over all units and test images
    prior            z ~ N(0, I), for modules with ``sample(n)`` (the VAE)

and, with ``--interpolate`` / ``--traverse``, the latent walks of ``ae_lightning.walks`` (seeded test images):

    interpolate      8 pairs of test images, 10 decoded codes on the straight line between theirs: a row per pair
    traverse         a test image's code, one unit swept over its test range (±3 σ of the prior for the VAE)
                     and the others held: a row per unit (the 10 of largest test variance, if more)

``fit`` writes the same grids to TensorBoard (``z_generated/<kind>``: a closed group after the loss
curves) and the walks (``z_interpolate``, ``z_traverse``) at the end of every run whose
``trainer.images_every_n_epochs`` is not 0 (``callbacks.GenerationImages``). A checkpoint of a module
that is no autoencoder (the latent classifier, pixel_cnn) is refused in one line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import torch

from ae_lightning import files, flags
from ae_lightning.config import cli
from ae_lightning.hints import PosInt, Seed
from ae_lightning.viz import save_png, tile
from ae_lightning.walks import PAIRS, STEPS, UNITS, WALKS, generate, latent_walks, sample_codes  # noqa: F401


def generate_from_checkpoint(ckpt: str | Path, out: str | Path, n: PosInt = 64, seed: Seed = 0,
                             limit: PosInt | None = None, data_dir: str | None = None,
                             walks: Sequence[str] = (), fid: bool = True) -> dict[str, Path]:
    """Load a run's checkpoint, write ``<kind>.png`` grids and ``code_ranges.json`` into ``out``;
    ``walks``: any of ``WALKS``, a ``<walk>.png`` grid each (what they walked in ``code_ranges.json``);
    with ``fid``, each scheme's ``fid_cls`` into ``fid_cls.json``."""
    from ae_lightning.data import MNISTDataModule  # late, as above
    from ae_lightning.models import load_checkpoint

    module, cfg = load_checkpoint(ckpt)
    dm = MNISTDataModule(**dict(cfg["data"], **({"data_dir": data_dir} if data_dir else {})))
    x, _ = dm.tensors("test", limit=limit)
    images, ranges = generate(module, x, n, seed)  # refuses a module that is no autoencoder
    rows, walked = latent_walks(module, x, walks, seed)
    out = Path(out)
    paths = {name: save_png(out / f"{name}.png", tile(imgs, nrow=8)) for name, imgs in images.items()}
    paths.update({name: save_png(out / f"{name}.png", tile(r.flatten(0, 1), nrow=r.shape[1])) for name, r in rows.items()})
    paths["code_ranges"] = files.write_json(out / "code_ranges.json",
                                            {"checkpoint": str(ckpt), "seed": seed, **ranges, **walked})
    if fid:
        paths["fid_cls"] = files.write_json(out / "fid_cls.json", fid_per_scheme(module, dm, x, seed, cfg))
    return paths


def fid_per_scheme(module, dm, x: torch.Tensor, seed: int, cfg: dict) -> dict:
    """``fid_cls`` of each sampling scheme: as many decoded codes (in the ranges of the codes of ``x``) as
    the test split has images, against them, in the features of the dataset's judge (``ae_lightning.fid``,
    trained once through ``fit`` if missing)."""
    from ae_lightning.fid import load_judge  # late, as above
    from ae_lightning.fit import fit

    judge = load_judge(dm, cfg["trainer"]["output_dir"], lambda c: fit(c, label="fid_cls judge"))
    distance = judge.distance()
    images, _ = generate(module, x, distance.n, seed)  # the codes' ranges: from the test images x
    return {"fid_cls": {name: distance(imgs) for name, imgs in images.items()}, "n": distance.n, "seed": seed,
            "judge": str(judge.folder), "judge_test_acc": judge.meta["test_acc"], "scale": judge.meta["scale"],
            "about": f"{distance.n} samples each against as many test images; {judge.scale_text()}"}


def parser() -> flags.Parser:
    hint = flags.param_hints(generate_from_checkpoint, ("n", "seed", "limit", "data_dir"))
    p = flags.Parser("python -m ae_lightning.generate", "Decode random codes of a trained autoencoder into image grids.")
    p.add_argument("checkpoint", help="a .ckpt written by train.py / fit, or its run folder (its best checkpoint)")
    p.add_argument("--out", help="folder for the PNG grids and code_ranges.json (default <run folder>/generated, "
                   "or runs/generate/<name> for a checkpoint outside a run folder)")
    p.add_argument("--n", hint=hint["n"], default=64, help="images per grid (default 64)")
    p.add_argument("--seed", hint=hint["seed"], default=0)
    p.add_argument("--limit", hint=hint["limit"], default=None, help="test images whose codes set the ranges (default all)")
    p.add_argument("--data-dir", hint=hint["data_dir"],
                   help="where the dataset lives, if not where the run found it")
    p.add_argument("--interpolate", action="store_true", help=f"also interpolate.png: {PAIRS} pairs of test images, "
                   f"{STEPS} steps on the line between their codes")
    p.add_argument("--traverse", action="store_true", help=f"also traverse.png: one code unit swept per row (at most "
                   f"{UNITS}), the others held at a test image's code")
    p.add_argument("--no-fid", action="store_true", help="skip fid_cls (each scheme's Fréchet distance to the test "
                   "images in the digit classifier's features; its first use trains that classifier once)")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # before the data and the models' imports (seconds); a run folder stands for its best checkpoint
    checkpoint = files.checkpoint_file(args.checkpoint, runs=True)
    run = files.run_folder(checkpoint)
    out = args.out or (run / "generated" if run else Path("runs") / "generate" / checkpoint.stem)
    walks = [w for w in WALKS if getattr(args, w)]
    paths = generate_from_checkpoint(checkpoint, out, args.n, args.seed, args.limit, args.data_dir, walks,
                                     not args.no_fid)
    for path in paths.values():
        print(path)
    if "fid_cls" in paths:
        scores = json.loads(paths["fid_cls"].read_text())
        print("fid_cls (lower is closer to the test images): " + ", ".join(
            f"{name} {v:.4g}" for name, v in scores["fid_cls"].items()) + f" ({scores['about']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
