#!/usr/bin/env python
"""Train one autoencoder variant (or the latent classifier) on MNIST / Fashion-MNIST.

    python train.py --variant vae
    python train.py --variant fc --dataset fashion_mnist --latent-dim 8 --max-epochs 50
    python train.py --config runs/mnist/fc/version_0/config.yaml      # rerun exactly
    python train.py --variant fc --resume                              # continue the latest run

Layers, later wins: configs/defaults.yaml, configs/<variant>.yaml, --config, flags, --set.
"""
from __future__ import annotations

import sys

from ae_lightning import dotted, flags, quiet, runlock
from ae_lightning.config import Text, cli, variants
from ae_lightning.datafiles import locate_all
from ae_lightning.errors import UserError
from ae_lightning.resolve import load

# flag -> the dotted config key it sets; the parser types it by that key's schema
FLAGS = {
    "dataset": "data.dataset", "latent_dim": "model.latent_dim", "max_epochs": "trainer.max_epochs",
    "batch_size": "data.batch_size", "lr": "model.lr", "weight_decay": "model.weight_decay",
    "optimizer": "model.optimizer", "seed": "seed", "subset": "data.subset", "data_dir": "data.data_dir",
    "output_dir": "trainer.output_dir", "accelerator": "trainer.accelerator", "devices": "trainer.devices",
    "precision": "trainer.precision", "encoder": "model.encoder", "finetune": "model.finetune",
}


def parser(variants: list[str]) -> flags.Parser:
    # model keys: the autoencoders' schema, or the classifier's (--encoder, --finetune)
    p = flags.Parser(None, __doc__, models=("mlp", "classifier"),
                     epilog=f"variants: {', '.join(variants)}\ndatasets: mnist, fashion_mnist")
    p.add_argument("--variant", help="one of: " + ", ".join(variants))
    p.add_argument("--dataset", key=FLAGS["dataset"], help="mnist (default) or fashion_mnist")
    p.add_argument("--config", help="a YAML file layered over the variant's config (or a run's config.yaml)")
    for flag in ("latent-dim", "max-epochs", "batch-size", "lr", "weight-decay", "optimizer", "seed",
                 "subset", "data-dir", "output-dir", "accelerator", "devices", "precision"):
        p.add_argument(f"--{flag}", key=FLAGS[flag.replace("-", "_")], metavar=flag.split("-")[-1].upper())
    p.add_argument("--encoder", key=FLAGS["encoder"], help="classifier: checkpoint of a trained autoencoder")
    p.add_argument("--finetune", key=FLAGS["finetune"], action="store_const", const="true",
                   help="classifier: train the encoder too")
    p.add_argument("--resume", action="store_true", help="continue the latest unfinished run of this variant")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, e.g. --set model.beta=4 --set trainer.images_every_n_epochs=0")
    p.add_argument("--verbose", action="store_true",
                   help="Lightning's banners, model summary and repeated warnings too (default: progress and results)")
    return p


@cli
@runlock.scoped  # the run's lock ends with the command, however it ends
def main(argv: list[str] | None = None) -> int:
    args = parser(variants()).parse_args(argv)
    quiet.set_verbose(args.verbose)
    overrides = {}
    for name, key in FLAGS.items():
        value = getattr(args, name)
        if value is not None:  # typed by the parser, checked again with the variant's whole config
            overrides[key] = value
    for item in args.set:
        k, v = dotted.parse_set(item)
        overrides[k] = Text(v)
    cfg = load(args.variant, args.config, overrides)  # every check: no torch yet
    # a file that no download may bring answers now; a download waits until the run (after every check)
    locate_all(cfg["data"]["data_dir"], cfg["data"]["dataset"], cfg["data"]["download"], fetch=False)

    # late: these import torch and Lightning (seconds); a bad flag or key has answered before them
    from ae_lightning.callbacks import DivergedError
    from ae_lightning.checkpoint_io import resume_point
    from ae_lightning.files import WriteError
    from ae_lightning.fit import fit, summary_line
    from ae_lightning.rundir import latest_run_dir, process_rank

    # DDP (--devices N): Lightning starts this script again for ranks 1..N-1; rank 0 alone prints
    rank = process_rank()
    run_dir = ckpt = None
    if args.resume:  # the run's own config, then the flags given now (e.g. more epochs)
        run_dir = latest_run_dir(cfg)
        if rank == 0:  # one writer per run: refused here, in one line, while another process trains in it
            runlock.hold(run_dir)
        cfg = load(args.variant, run_dir / "config.yaml", overrides)
        # a damaged last.ckpt: the newest intact checkpoint of the run, said in one line
        ckpt, note = resume_point(run_dir / "checkpoints" / "last.ckpt", cfg["trainer"]["max_epochs"])
        if rank == 0:
            print(f"resuming {run_dir}", file=sys.stderr)
            if note:
                print(f"warning: {note}", file=sys.stderr)
    try:
        result = fit(cfg, run_dir=run_dir, ckpt_path=ckpt)
    except WriteError as e:  # e.g. disk full: the checkpoints written so far are intact
        if rank:
            return 2
        resumable = any((d / "checkpoints" / "last.ckpt").is_file() for d in e.path.parents)
        raise UserError(f"{e} (free space or fix the permissions, then " +
                        ("continue with --resume)" if resumable else "run it again: it had no checkpoint yet)")) from None
    except UserError:
        if rank:  # every rank meets the same bad input; rank 0 prints the line
            return 2
        raise
    except DivergedError as e:
        if not rank:
            print(f"error: training diverged: {e} (lower --lr?)", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted: continue with --resume", file=sys.stderr)
        return 130
    if result.rank:
        return 0
    # the run, its figures, and where its curves and images are
    print(result.run_dir, summary_line(cfg, result.metrics), f".venv/bin/tensorboard --logdir {result.run_dir}", sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
