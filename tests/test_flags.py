"""Every flag of every command goes through the config schema's type and range checks: the parsers
(one factory, ``flags.Parser``) are walked, so a new flag is covered (or this test fails until it is)."""
from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import pytest

ROOT = Path(__file__).resolve().parent.parent
import train  # noqa: E402
from ae_lightning import flags, generate, probes  # noqa: E402
from ae_lightning.config import variants  # noqa: E402
from ae_lightning.hints import Range  # noqa: E402
from ae_lightning.studies import __main__ as studies_cli  # noqa: E402
from ae_lightning.studies import presets, studies  # noqa: E402
from search import bench, tune  # noqa: E402
from search import report as search_report  # noqa: E402

# flags outside the schema, each with a value that must be refused (None: no value can be wrong:
# a switch, or a free path)
SPECIAL = {
    "train": {"variant": "nope", "config": "/nonexistent.yaml", "set": "novalue", "resume": None, "finetune": None,
              "verbose": None},
    "studies": {"variant": "nope", "latents": "2,x", "list": None, "resume": None, "out": None, "runs_dir": None,
                "verbose": None},
    "probes": {"out": None, "no_baselines": None},
    "generate": {"out": None, "no_fid": None, "interpolate": None, "traverse": None},
    "reproduce": {"out": None, "runs_dir": None, "fidelity_dir": None, "smoke": None, "resume": None,
                  "render_only": None, "only": "nope",
                  "seeds": "0,x", "verbose": None, "set": "novalue"},
    "tune": {"variant": "nope", "dataset": "nope", "space": "/nonexistent.yaml", "objective": "nope", "storage": None,
             "name": None, "resume": None, "address": "nohost", "set": "novalue", "quiet": None, "verbose": None,
             "keep_checkpoints": None, "data_dir": "/nonexistent"},
    "bench": {"out": None, "storage": None, "data_dir": None, "resume": None, "report": None, "smoke": None,
              "variant": None, "space": None},
    "report": {"compare": None, "labels": None, "out": None, "title": None},
}


def commands(tmp_path):
    """name -> (parser, argv before the flag)."""
    return {
        "train": (train.parser(variants()), ["--variant", "fc"]),
        "studies": (studies_cli.parser([s.name for s in studies()]), ["compression", "--out", str(tmp_path / "s")]),
        "probes": (probes.parser(), [str(tmp_path / "missing.ckpt")]),
        "generate": (generate.parser(), [str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "g")]),
        "reproduce": (presets.parser(), ["reproduce", "keras", "--smoke", "--out", str(tmp_path / "s")]),
        "tune": (tune.parser(), ["--variant", "fc", "--storage", str(tmp_path / "s")]),
        "bench": (bench.parser(), ["--report", "--out", str(tmp_path / "s"), "--storage", str(tmp_path / "s")]),
        "report": (search_report.parser(), [str(tmp_path / "missing")]),
    }


MAINS = {"train": train.main, "studies": studies_cli.main, "probes": probes.main, "generate": generate.main,
         "reproduce": studies_cli.main, "tune": tune.main, "bench": bench.main, "report": search_report.main}


def _parts(hint: Any) -> tuple[list[Any], list[Range]]:
    """The leaf types of a hint (None left out) and its ranges."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        leaves, ranges = _parts(args[0])
        return leaves, ranges + [m for m in args[1:] if isinstance(m, Range)]
    if origin in (Union, types.UnionType):
        out: tuple[list, list] = ([], [])
        for a in args:
            if a is not type(None):
                leaves, ranges = _parts(a)
                out[0].extend(leaves)
                out[1].extend(ranges)
        return out
    return [hint], []


def bad_values(hint: Any) -> list[tuple[str, str]]:
    """``[(kind, text)]``: a value of the wrong type and one out of range, where the hint has them."""
    leaves, ranges = _parts(hint)
    out = []
    if any(typing.get_origin(t) is Literal for t in leaves):
        out.append(("out of range", "bogus"))
        return out
    if all(t is str for t in leaves):
        return out  # any text is a valid path
    out.append(("wrong type", "abc" if float not in leaves else "[1, 2]"))
    out.append(("wrong type", "1.5" if int in leaves else "true"))
    for r in ranges:
        for bound, delta in ((r.gt, 0), (r.ge, -1), (r.lt, 0), (r.le, 1)):
            if bound is not None:
                v = bound + delta
                out.append(("out of range", str(int(v)) if float(v).is_integer() else str(v)))
    return out


def cases():
    import tempfile
    tmp = Path(tempfile.gettempdir()) / "ae-flags-test"
    for name, (parser, _) in commands(tmp).items():
        assert isinstance(parser, flags.Parser), name
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            if action.dest in SPECIAL[name]:
                if SPECIAL[name][action.dest] is not None:
                    yield name, action.option_strings[0], "special", SPECIAL[name][action.dest], action.dest
                continue
            assert action.dest in parser.hints, f"{name} {action.option_strings[0]} bypasses the schema"
            assert action.type is None and action.choices is None, f"{name} {action.option_strings[0]}: argparse checks it"
            for kind, text in bad_values(parser.hints[action.dest]):
                yield name, action.option_strings[0], kind, text, action.dest


CASES = list(cases())


def test_every_flag_is_walked():
    walked = {(c, f) for c, f, *_ in CASES}
    for flag in ("--latent-dim", "--max-epochs", "--batch-size", "--lr", "--seed", "--devices"):
        assert ("train", flag) in walked
    for flag in ("--epochs", "--subset", "--test-subset", "--seed", "--batch-size", "--accelerator", "--dataset"):
        assert ("studies", flag) in walked
    assert {("probes", f) for f in ("--k", "--l2", "--train-limit", "--test-limit", "--device")} <= walked
    assert {("generate", f) for f in ("--n", "--seed", "--limit")} <= walked
    assert {("tune", f) for f in ("--num-samples", "--max-epochs", "--algo", "--subset", "--num-cpus")} <= walked
    assert {("bench", f) for f in ("--seeds", "--budget-s", "--dataset")} <= walked
    assert ("reproduce", "--accelerator") in walked


def test_an_unknown_flag_names_the_nearest(capsys):
    assert train.main(["--variant", "fc", "--max_epochs", "3"]) == 2
    assert "unrecognized arguments: --max_epochs 3 (did you mean '--max-epochs'?)" in capsys.readouterr().err
    # no abbreviations: a prefix is a near miss, never silently the longer flag (a real sweep would start)
    assert tune.main(["--variant", "fc", "--num-sample", "3"]) == 2
    assert "--num-sample 3 (did you mean '--num-samples'?)" in capsys.readouterr().err


@pytest.mark.parametrize("command, flag, kind, text, dest", CASES,
                         ids=[f"{c}{f}={t}" for c, f, _, t, _ in CASES])
def test_a_bad_flag_value_is_one_line_and_exit_2(command, flag, kind, text, dest, tmp_path, capsys):
    parser, before = commands(tmp_path)[command]
    assert MAINS[command]([*before, f"{flag}={text}"]) == 2, (kind, text)
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert flag in err or parser.keys.get(dest, "-") in err or kind == "special", err
    assert not (tmp_path / "s" / "runs").exists()


@pytest.mark.parametrize("command", sorted(MAINS))
def test_argparse_errors_are_one_line_too(command, tmp_path, capsys):
    _, before = commands(tmp_path)[command]
    for argv in ([*before, "--no-such-flag"], [*before, "--seed"]):
        assert MAINS[command](argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "usage:" not in err, err


def test_a_value_of_the_right_type_reaches_the_schema_as_that_type(tmp_path):
    from ae_lightning.config import Text
    from ae_lightning.resolve import load

    cfg = load("fc", None, {"trainer.precision": Text("32"), "data.data_dir": Text("2024"), "data.subset": Text("null"),
                            "model.lr": Text("1e-3"), "seed": Text("7")})
    assert cfg["trainer"]["precision"] == "32" and cfg["data"]["data_dir"] == "2024"
    assert cfg["data"]["subset"] is None and cfg["model"]["lr"] == 1e-3 and cfg["seed"] == 7
