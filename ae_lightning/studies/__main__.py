"""Run a study, or all of them into one report with a table of contents.

    python -m ae_lightning.studies compression [--variant fc] [--dataset fashion_mnist] [--epochs 20]
    python -m ae_lightning.studies all --out studies --epochs 5 --subset 20000
    python -m ae_lightning.studies --list
    python -m ae_lightning.studies reproduce PRESET|all [--smoke] [--resume]   # an original, at its settings

A single study writes ``report.md``, ``results.json``, its PNG figures and ``tensorboard/`` into
``--out``; ``all`` writes each study into ``<out>/<study>/`` and the combined ``<out>/report.md`` and
``<out>/results.json``. Training runs (checkpoints, TensorBoard logs) go to ``--runs-dir``
(default ``<out>/runs``). Without ``--dataset`` each study uses the dataset of the original study.
"""
from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

from ae_lightning import files, flags, quiet
from ae_lightning.config import Text, cli, coerce
from ae_lightning.datafiles import check_folder
from ae_lightning.errors import UserError
from ae_lightning.resolve import config_hint
from ae_lightning.studies import get, presets, studies, study_names
from ae_lightning.text import plural


def parser(names: list[str]) -> flags.Parser:
    # a flag that sets a config key in every run of a study is checked by that key's schema
    p = flags.Parser("python -m ae_lightning.studies", __doc__)
    p.add_argument("study", nargs="?", help="one of: " + ", ".join(names) + ", or all")
    p.add_argument("--list", action="store_true", help="list the studies and exit")
    p.add_argument("--resume", action="store_true",
                   help="all: read back the studies already finished under --out (same options); run the rest")
    p.add_argument("--variant", help="the variant a study trains (studies with a fixed set of models refuse it)")
    p.add_argument("--dataset", key="data.dataset", help="mnist or fashion_mnist (default: the original study's)")
    p.add_argument("--epochs", key="trainer.max_epochs", default=5, help="epochs per training run (default 5)")
    p.add_argument("--subset", key="data.subset", help="training images (default: all but the validation hold-out)")
    p.add_argument("--test-subset", key="data.test_subset", help="test images for metrics, maps and neighbours (default: all)")
    p.add_argument("--latents", help="latent sizes for compression and inversion, e.g. 2,8,32 "
                   "(default 2,4,8,16,32,64 and the sweep 5,20,...,95)")
    p.add_argument("--seed", key="seed", default=0)
    p.add_argument("--batch-size", key="data.batch_size", help="training batch size (default: the variant's)")
    p.add_argument("--out", default="runs/studies", help="output folder (default runs/studies)")
    p.add_argument("--runs-dir", help="where the training runs go (default <out>/runs)")
    p.add_argument("--accelerator", key="trainer.accelerator", default="auto", help="auto, cpu, gpu, cuda or mps")
    p.add_argument("--data-dir", key="data.data_dir",
                   help="folder holding MNIST/raw and FashionMNIST/raw (default: found automatically)")
    p.add_argument("--verbose", action="store_true", help="Lightning's banners and repeated warnings too")
    return p


def _report_head(cmd: str, opts, studies, summary: list, reused: list[str], total: float) -> list[str]:
    """The combined report's opening: the command, how to read the references, and the contents."""
    from ae_lightning.studies.report import slug

    budgets = list(dict.fromkeys(s.reference_budget for s in studies if s.reference_budget))  # e.g. 1000 epochs
    head = ["# Autoencoder studies", "",
            f"Command: `{cmd}`", ""]
    if reused:
        head += [f"(Run in more than one call with `--resume`: {', '.join(reused)} read back from an earlier call "
                 "with the same options.)", ""]
    head += [
            f"Every study trained {plural(opts.epochs, 'epoch')} per run; total wall time {total / 60:.1f} min. "
            "Each study's own folder holds its report.md, results.json, figures and TensorBoard run.", "",
            "**Reading the references.** The reference figures come from the original studies and are set "
            "beside ours in every table. They differ from ours for three reasons: (1) the epoch budget "
            f"({'; '.join([*budgets, f'these runs {opts.epochs}'])}"
            + (f", on {opts.subset} training images" if opts.subset else "") + "), so our errors are "
            "higher and slow optimizers are hit hardest; (2) the preprocessing (here pixels / 255 in [0, 1], "
            "no standardization, float32 PyTorch rather than Keras); (3) the split (here the official test "
            "file for every test figure, and a validation hold-out from the training file ("
            + (f"{max(1, opts.subset // 10)} images" if opts.subset else "5,000 images") + ") that picks the "
            "best epoch's checkpoint; the studies trained on all 60,000 and validated on the test file). "
            "Compare orders and magnitudes, not digits.", "",
            "## Contents", ""]
    for study, wall, status in summary:
        took = f"{wall:.0f} s" if wall is not None else status
        head.append(f"- [{study.title}](#{slug(study.title)}) — {study.summary} ({took})")
    return head


def run_all(argv: list[str], opts, studies, resume: bool = False) -> int:
    # late: the studies' machinery imports torch and Lightning (seconds); --help and bad flags answer without
    from ae_lightning.studies.common import Context, command_line
    from ae_lightning.studies.runner import check_resumable, read_results, render, run_one

    out = Path(opts.out)
    cache: dict = {}
    sections, results, summary, failed = [], {}, [], []
    t0 = time.time()
    reused = []
    for study in studies:
        sub = type(opts)(**{**opts.__dict__, "variant": opts.variant if study.variant is not None else None,
                            "runs_dir": opts.runs_dir or str(out / "runs")})
        done = read_results(out / study.name) if resume else None
        if done is not None:
            check_resumable(study.name, done.get("settings", {}), sub)
        print(f"== {study.name}" + (f": read back from {out / study.name}" if done is not None else ""), file=sys.stderr)
        try:
            rep, wall = run_one(study, sub, out / study.name, cache, []) if done is None else \
                (render(Context(study, sub, out / study.name, tensorboard=False)), done.get("wall_time_s"))
        except Exception as e:  # one study's failure must not lose the others' hours of training
            msg = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
            if not isinstance(e, UserError):
                traceback.print_exc()
            print(f"error: study {study.name}: {msg}", file=sys.stderr)
            failed.append(study.name)
            sections.append(f"## {study.title}\n\n**Not run**: {msg}\n")
            results[study.name] = {"error": msg}
            summary.append((study, None, "failed: " + msg.splitlines()[0]))
            continue
        reused += [study.name] if done is not None else []
        sections.append(rep.render(level=2, image_prefix=f"{study.name}/"))
        results[study.name] = rep.results
        summary.append((study, wall, "ok"))
    total = time.time() - t0 + sum(w or 0 for s, w, _ in summary if s.name in reused)
    cmd = command_line([a for a in argv if a != "--resume"])  # a resumed run equals an unbroken one (seeded, deterministic)
    head = _report_head(cmd, opts, studies, summary, reused, total)
    files.write_text(out / "report.md", "\n".join(head) + "\n\n" + "\n".join(sections))
    files.write_json(out / "results.json", {"command": cmd, "resumed_from_earlier_call": reused,
                                            "wall_time_s": round(total, 1),
                                            "studies": results})
    print(out / "report.md")
    if failed:
        print(f"error: {len(failed)} stud{'y' if len(failed) == 1 else 'ies'} failed: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


def parse_latents(text: str | None) -> list[int] | None:
    """``--latents 2,8,32``: each size checked by the schema of model.latent_dim."""
    if text is None:
        return None
    hint = config_hint("model.latent_dim")
    values = [coerce(f"--latents {text!r} (model.latent_dim)", Text(v), hint)
              for v in text.replace(" ", "").split(",") if v]
    if not values:
        raise UserError(f"--latents {text!r}: expected comma-separated latent sizes, e.g. 2,8,32")
    return sorted(set(values))


@cli
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["reproduce"]:
        prepared = presets.prepare(argv[1:])  # the flags and presets, checked before torch
        quiet.set_verbose(prepared[0].verbose)
        from ae_lightning.studies import reproduce  # late: torch and Lightning (seconds)

        try:
            return reproduce.main(argv[1:], prepared)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    # the flags are checked before the studies (torch, Lightning) are imported
    args = parser(study_names()).parse_args(argv)
    quiet.set_verbose(args.verbose)
    if args.list:
        for s in studies():
            print(f"{s.name:12s} {s.summary}")
        return 0
    try:
        if not args.study:
            raise UserError("name a study (" + ", ".join(study_names()) + ") or all")
        if args.study not in (*study_names(), "all"):
            raise UserError(f"unknown study {args.study!r}: choose one of {', '.join(study_names())}, or all")
        latents = parse_latents(args.latents)
        check_folder(args.data_dir)  # a wrong folder answers before torch; missing files are downloaded by the run
        # late: torch and Lightning (seconds), once the flags are checked
        from ae_lightning.studies.common import Options
        from ae_lightning.studies.runner import run_one

        opts = Options(dataset=args.dataset, epochs=args.epochs, subset=args.subset, test_subset=args.test_subset,
                       seed=args.seed, out=args.out, accelerator=args.accelerator, data_dir=args.data_dir,
                       variant=args.variant, batch_size=args.batch_size, runs_dir=args.runs_dir,
                       latents=latents)
        opts.check()
        if args.study == "all":
            return run_all(argv, opts, studies(), resume=args.resume)
        if args.resume:
            raise UserError("--resume applies to all (a single study always runs afresh)")
        study = get(args.study)
        run_one(study, opts, Path(args.out), {}, argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(Path(args.out) / "report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
