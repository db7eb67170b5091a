"""Study presets, read and checked: ``configs/studies/<name>.yaml`` and the ``reproduce`` command's flags.

Everything here runs before torch, Lightning or Ray is imported, so a misspelled preset, flag, ``--set``
path, config key, seed list, ``--only`` entry or data folder is one line in well under a second
(``prepare``), each entry's study parameters included (typed by its study's declared parameters,
:mod:`ae_lightning.studies.catalog`).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
from typing import Any, Literal

from ae_lightning import dotted, flags, resolve
from ae_lightning.config import CONFIG_DIR, SECTIONS, check_keys, load_yaml, parse_value
from ae_lightning.config import nearest as config_nearest
from ae_lightning.datafiles import check_folder, locate_all
from ae_lightning.errors import UserError
from ae_lightning.hints import NonNegInt, PosInt
from ae_lightning.studies import get
from ae_lightning.studies.fidelity import GOALS, check_findings

HELP = """reproduce: an original study at its own settings, from a preset, with its figures checked.

    python -m ae_lightning.studies reproduce fcae   [--out DIR] [--smoke] [--resume] [--accelerator A]
    python -m ae_lightning.studies reproduce keras  [...]
    python -m ae_lightning.studies reproduce all    [...]        # every preset, one report
    python -m ae_lightning.studies reproduce keras --render-only [--out DIR]   # the reports again, no training

A preset is ``configs/studies/<name>.yaml``: the original's settings as config overrides under
every run (``config``), the readings chosen where the original is ambiguous (``readings``, each with
the flag that selects the alternative), the existing study modules to run with their parameters
(``studies``: entry name -> ``{study, dataset, variant, epochs, config, <study parameters>}``) and
the original's figures to compare with (``fidelity``: rows ``{id, figure, reference, goal, ours}``,
``ours`` a path into the entries' results, e.g. ``compression.by_latent.8.test.nrmse``), with the
measured cause of each miss beside its row (``findings``: row id -> ``{cause, alternative, command}``).

``--seeds 0,1,2`` (or the preset's ``seeds``) runs every entry at each seed (an entry whose
``config`` sets ``seed`` runs at that one): the preset's own seed into ``<entry>/``, another into
``<entry>.seed<s>/``. A row then holds ``seeds`` and ``values`` and its ``ours`` is their median, or
for an order row the majority (``ae_lightning/studies/fidelity.py``).

Each preset writes ``<out>/<name>/``: ``report.md``, ``results.json``, ``fidelity.json``, one folder
per entry (its report, figures and TensorBoard); training runs go to ``--runs-dir``
(default ``<out>/runs``). ``<fidelity-dir>/fidelity.json`` and ``fidelity.md`` (default ``--out``)
gather the rows of every preset finished under ``--out``, with commands, machine and wall times.

``--resume`` reads back the entries already finished under ``--out`` and reuses the training runs
already finished under ``--runs-dir`` with the same config (continuing unfinished ones from their
``last.ckpt``), so a stopped run loses at most one epoch. ``--set PATH=VALUE`` changes the preset,
e.g. ``--set config.data.normalize=standardize_global`` (the alternative readings use it). ``--render-only``
writes the reports and fidelity rows again from what is under ``--out`` (results.json, PNGs), training nothing.
"""

PRESET_DIR = CONFIG_DIR / "studies"


@dataclasses.dataclass(frozen=True)
class Entry:
    """A ``studies`` entry's own keys, beside its study's parameters (``catalog``)."""

    study: str
    dataset: Literal["mnist", "fashion_mnist"] | None = None  # None: the preset's
    variant: str | None = None  # None: the preset's, or the study's
    epochs: PosInt | None = None  # None: the preset's
    config: dict | None = None  # nested config overrides of this entry's runs
    seeds: list[NonNegInt] | None = None  # this entry's own seeds


@dataclasses.dataclass(frozen=True)
class Smoke:
    """``smoke``: what ``--smoke`` changes beyond ``SMOKE``."""

    epochs: PosInt | None = None
    subset: PosInt | None = None
    test_subset: PosInt | None = None
    batch_size: PosInt | None = None  # a cap below the subset (one batch of the whole subset is one step an epoch)
    studies: dict[str, dict] | None = None  # entry -> study parameters (typed by the entry's study)


@dataclasses.dataclass(frozen=True)
class Row:
    """A ``fidelity`` row: one of the original's figures and the path of ours."""

    id: str
    goal: Literal[GOALS]
    ours: str  # a path into the entries' results, e.g. compression.by_latent.8.test.nrmse
    figure: str = ""
    reference: Any = None
    setting: str | None = None
    tolerance: float | None = None  # goal within
    reference_epochs: PosInt | None = None
    our_epochs: PosInt | None = None


@dataclasses.dataclass(frozen=True)
class Preset:
    """``configs/studies/<name>.yaml`` (the module's ``HELP`` says what each part does)."""

    title: str
    dataset: Literal["mnist", "fashion_mnist"]
    studies: dict[str, dict]  # entry -> Entry and its study's parameters
    fidelity: list[dict]  # Row each
    source: str = ""
    description: str = ""
    setting: str = ""
    variant: str | None = None
    epochs: PosInt | None = None
    reference_epochs: PosInt | None = None
    seeds: list[NonNegInt] | None = None
    config: dict | None = None
    readings: list[dict] | None = None
    findings: dict | None = None
    smoke: Smoke | None = None


ENTRY_KEYS = tuple(f.name for f in dataclasses.fields(Entry))  # an entry's keys beside its study's parameters
SMOKE = {"subset": 512, "test_subset": 256, "epochs": 1}


def overrides_of(nested: dict[str, Any] | None) -> dict[str, Any]:
    """A preset's nested config overrides ``{model: {lr: 0.01}}`` as dotted keys
    (``{"model.lr": 0.01}``), which ``resolve.load`` and ``ctx.train(**...)`` both take; top-level
    keys (``seed``, ``variant``) stay as they are, a mapping-valued key one value."""
    return dotted.flatten(nested, levels=1)


def parse_seeds(text: str | None, where: str = "--seeds") -> list[int] | None:
    """``0,1,2`` -> [0, 1, 2]; distinct non-negative integers, in the order given."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise UserError(f"{where} {text!r}: expected non-negative integers separated by commas, e.g. 0,1,2")
    return check_seeds([int(p) for p in parts], where)


def check_seeds(seeds: Any, where: str) -> list[int]:
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise UserError(f"{where}: expected a list of non-negative integers, e.g. [0, 1, 2]")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where} {','.join(map(str, seeds))}: a seed is given twice")
    return list(seeds)


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def parser() -> flags.Parser:
    p = flags.Parser("python -m ae_lightning.studies reproduce", HELP)
    p.add_argument("name", help="a preset (" + ", ".join(presets()) + ") or all")
    p.add_argument("--out", default="runs/reproduce", help="output folder (default runs/reproduce)")
    p.add_argument("--runs-dir", help="where the training runs go (default <out>/runs)")
    p.add_argument("--fidelity-dir", help="where fidelity.json / fidelity.md of every finished preset go (default --out)")
    p.add_argument("--smoke", action="store_true", help="the same pipeline on a tiny subset, 1 epoch per run, at "
                   "the preset's own seed (unless --seeds); its fidelity rows are marked smoke, not judged")
    p.add_argument("--resume", action="store_true", help="reuse what an earlier call with the same options finished")
    p.add_argument("--render-only", action="store_true", help="render the reports and fidelity rows again from the "
                   "results under --out, without training")
    p.add_argument("--accelerator", key="trainer.accelerator", default="auto", help="auto, cpu, gpu, cuda or mps")
    p.add_argument("--data-dir", key="data.data_dir",
                   help="folder holding MNIST/raw and FashionMNIST/raw (default: found automatically)")
    p.add_argument("--only", metavar="ENTRY[,ENTRY]", help="run only these entries of the preset (e.g. two calls "
                   "in parallel on disjoint entries); with --resume the other finished entries are read back, the rest count as "
                   "not run until a later --resume call")
    p.add_argument("--seeds", metavar="S[,S]", help="run every row's runs at each of these seeds (e.g. 0,1,2; default "
                   "the preset's seeds, else its one seed): ours is the median, or an order row's majority; --resume "
                   "reuses the seeds already finished")
    p.add_argument("--verbose", action="store_true", help="Lightning's banners and repeated warnings too")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="change the preset, e.g. config.model.lr=0.01 or studies.compression.latents=[4,8]")
    return p


# -- presets ---------------------------------------------------------------------------------------
def load_preset(name: str, sets: list[str]) -> dict:
    """The preset ``name`` with ``--set`` items applied, checked, its study parameters included."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown preset {name!r}: choose one of {', '.join(presets())}, or all")
    preset = load_yaml(path)
    for item in sets:
        apply_set(preset, item)
    check_preset(name, preset)
    check_params(name, preset)
    return preset


def apply_set(preset: dict, item: str) -> None:
    """``--set a.b.c=value``: the leaf must exist, except inside a ``config`` section (data, model, trainer)
    and for a study parameter (``studies.ENTRY.KEY``), which the study's ``Params`` then checks."""
    path, text = dotted.parse_set(item, "PATH=VALUE, e.g. config.model.lr=0.01", quoted=True)
    keys = dotted.split(path)
    node: Any = preset
    for i, key in enumerate(keys[:-1]):
        if not isinstance(node, dict) or key not in node:
            if isinstance(node, dict) and key in SECTIONS and i > 0 and keys[i - 1] == "config":
                node[key] = {}
            else:
                raise UserError(f"--set {path}: the preset has no {dotted.join(*keys[:i + 1])}")
        node = node[key]
    leaf = keys[-1]
    in_config = len(keys) >= 2 and keys[-2] in SECTIONS
    study_param = len(keys) == 3 and keys[0] == "studies"
    if not isinstance(node, dict) or (leaf not in node and not in_config and not study_param):
        raise UserError(f"--set {path}: the preset has no {path}")
    node[leaf] = parse_value(text)


def check_preset(name: str, preset: dict) -> None:
    """Every key and type of the preset (:class:`Preset`, its smoke part and rows), and what joins them."""
    where = f"preset {name}"
    check_keys("", preset, Preset, prefix=f"{where}: ")
    if not preset["studies"]:
        raise UserError(f"{where}: 'studies' must map entry names to study settings")
    for entry, spec in preset["studies"].items():
        if not isinstance(spec, dict) or "study" not in spec:
            raise UserError(f"{where}: studies.{entry} must name its 'study'")
        if "seeds" in spec:
            check_seeds(spec["seeds"], f"{where}: studies.{entry}.seeds")
    for entry in (preset.get("smoke") or {}).get("studies") or {}:
        if entry not in preset["studies"]:
            raise UserError(f"{where}: smoke.studies.{entry}: no such entry{config_nearest(entry, preset['studies'])} "
                            f"(entries: {', '.join(preset['studies'])})")
    if "seeds" in preset:
        check_seeds(preset["seeds"], f"{where}: seeds")
    ids = set()
    for row in preset["fidelity"]:
        rid = row.get("id") if isinstance(row, dict) else None
        if not rid or rid in ids:
            raise UserError(f"{where}: every fidelity row needs a unique id (got {rid!r})")
        ids.add(rid)
        check_keys(f"fidelity.{rid}", row, Row, prefix=f"{where}: ")
        if row["goal"] == "within" and row.get("tolerance") is None:
            raise UserError(f"{where}: fidelity row {rid}: goal within needs a numeric tolerance")
        entry = dotted.split(str(row["ours"]))[0]
        if entry not in preset["studies"]:
            raise UserError(f"{where}: fidelity row {rid}: 'ours' must start with a studies entry, got {row['ours']!r}")
    check_findings(where, preset.get("findings"), ids)


def check_params(name: str, preset: dict) -> None:
    """Every entry's study parameters, and its smoke part's on their own (they can neither mask nor carry a
    bad key), typed by the study's ``Params``."""
    where = f"preset {name}"
    for entry, spec in preset["studies"].items():
        entry_params(where, entry, spec)
    for entry, params in ((preset.get("smoke") or {}).get("studies") or {}).items():
        get(preset["studies"][entry]["study"]).make_params(params, f"smoke.studies.{entry}", prefix=f"{where}: ")


def entry_params(where: str, entry: str, spec: dict):
    """The entry's study parameters (its keys beside ``ENTRY_KEYS``), typed by its study's ``Params``."""
    study = get(spec["study"])  # a UserError naming the known studies
    params = study.make_params({k: v for k, v in spec.items() if k not in ENTRY_KEYS}, f"studies.{entry}",
                               also=ENTRY_KEYS, prefix=f"{where}: ")
    check_keys(f"studies.{entry}", spec, Entry, also=[f.name for f in dataclasses.fields(study.params)],
               prefix=f"{where}: ")
    return params


def smoke_preset(preset: dict) -> dict:
    """The same pipeline, tiny: every ``epochs`` capped, every ``batch_size`` too (at the smoke subset: a
    batch larger than the training split is refused; at the smoke ``batch_size`` where a preset sets one, and
    its runs then take it where they set none), the preset's ``smoke.studies`` parameters on top, at the
    preset's own seed (its ``seeds`` dropped; ``--seeds`` still runs more)."""
    out = copy.deepcopy(preset)
    smoke = {**SMOKE, **{k: v for k, v in (preset.get("smoke") or {}).items() if k != "studies"}}
    out["smoke_settings"] = smoke
    out["smoke_of"] = preset  # its study parameters are checked as written (the smoke part's would mask them)
    # a batch as large as the subset is one optimizer step an epoch: too few for some figures to leave the
    # initialization (e.g. tuned's denoising losses), so a preset may set a smaller smoke batch_size
    batch = min((b for b in (smoke.get("subset"), smoke.get("batch_size")) if b), default=None)
    if smoke.get("batch_size"):
        out["config"] = out.get("config") or {}
        out["config"]["data"] = {"batch_size": smoke["batch_size"], **(out["config"].get("data") or {})}

    def cap(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (min(v, smoke["epochs"]) if k == "epochs" and isinstance(v, int) else
                        min(v, batch) if k == "batch_size" and isinstance(v, int) and batch
                        else cap(v)) for k, v in node.items()}
        return [cap(v) for v in node] if isinstance(node, list) else node

    out.pop("seeds", None)  # one seed, the preset's own: a smoke run checks the pipeline (--seeds still asks for more)
    out["epochs"] = min(out.get("epochs", 1), smoke["epochs"])
    out["studies"] = cap(out["studies"])
    if isinstance(out.get("config"), dict):
        out["config"] = cap(out["config"])
    for entry, params in ((preset.get("smoke") or {}).get("studies") or {}).items():
        if entry in out["studies"]:
            out["studies"][entry].update(params)
    return out



def check_configs(preset: dict, args) -> list[dict]:
    """Every run config a preset implies, resolved (a bad key fails in a second, not after hours):
    the preset's and the entry's ``config`` over the entry's variant, with each of its ``choices``
    and each of its ``models``."""
    configs = []
    for entry, spec in preset["studies"].items():
        base = {**overrides_of(preset.get("config")), **overrides_of(spec.get("config")),
                "data.dataset": spec.get("dataset", preset["dataset"])}
        if args.data_dir:
            base["data.data_dir"] = args.data_dir
        variants = [(spec.get("variant", preset.get("variant")), {})]
        variants += [(spec.get("variant", preset.get("variant")), overrides_of(c)) for c in (spec.get("choices") or {}).values()]
        variants += [(m.get("variant"), overrides_of(m.get("config"))) for m in (spec.get("models") or {}).values()]
        configs += [resolve.load(variant, None, {**base, **extra}) for variant, extra in variants if variant]
    return configs


def prepare(argv: list[str]) -> tuple[argparse.Namespace, dict[str, dict]]:
    """The flags and the presets they name, checked before torch: ``(args, {name: preset})``, each
    preset with its ``--set`` applied (and made tiny by ``--smoke``), every run config it implies
    resolved, its ``--only`` entries known and its data files found (or left to a download)."""
    args = parser().parse_args(argv)
    parse_seeds(args.seeds)
    names = presets() if args.name == "all" else [args.name]
    loaded = {n: load_preset(n, args.set) for n in names}
    if args.smoke:
        loaded = {n: smoke_preset(p) for n, p in loaded.items()}
    for n, p in loaded.items():
        unknown = set(args.only.split(",")) - set(p["studies"]) if args.only else set()
        if unknown:
            raise UserError(f"--only {args.only}: preset {n} has no {', '.join(sorted(unknown))} "
                            f"(its entries: {', '.join(p['studies'])})")
        if args.render_only:
            continue  # no data is read
        check_folder(args.data_dir)
        data = {(c["data"]["data_dir"], c["data"]["dataset"], c["data"]["download"])
                for c in check_configs(p, args)}
        for data_dir, dataset, download in sorted(data, key=str):  # a download waits until the first run needs it
            locate_all(data_dir, dataset, download, fetch=False)
    return args, loaded
