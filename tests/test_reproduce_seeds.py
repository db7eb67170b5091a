"""``reproduce --seeds``: rows over pre-registered seeds (median, majority), the flag's errors,
``--resume`` over seeds, and findings beside the rows (which never change ``matched``)."""
from __future__ import annotations

import json

import pytest

from ae_lightning.errors import UserError

TINY = """\
title: tiny
dataset: mnist
variant: fc
epochs: 1
config: {trainer: {images_every_n_epochs: 0}}
smoke: {subset: 256, test_subset: 128, epochs: 1}
studies:
  compression: {study: compression, latents: [4]}
fidelity:
  - {id: tiny.miss, figure: "test NRMSE", reference: 0.0, goal: lower, ours: compression.by_latent.4.test.nrmse}
  - {id: tiny.hit, figure: "test NRMSE", reference: 0.0, goal: higher, ours: compression.by_latent.4.test.nrmse}
findings:
  tiny.miss: {cause: "a measured cause", alternative: "another setting gives 0.1", command: "--set config.model.lr=1"}
  tiny.hit: {cause: "a finding on a matched row stays beside it"}
"""


def _run(argv, capsys):
    from ae_lightning.studies.__main__ import main
    code = main([str(a) for a in argv])
    return code, capsys.readouterr()


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    from ae_lightning.studies import presets as preset_files
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "tiny.yaml").write_text(TINY)
    monkeypatch.setattr(preset_files, "PRESET_DIR", presets)
    return presets / "tiny.yaml"


def test_median_and_majority():
    from ae_lightning.studies.fidelity import aggregate, majority, median
    assert median([0.0352, 0.0259, 0.0253]) == 0.0259  # tuned denoising at noise 0.3, seeds 0, 1, 2
    assert median([1.0, 4.0]) == 2.5 and median([2]) == 2.0
    assert median([0.1, None, 0.2]) is None and median([0.1, float("nan"), 0.2]) is None and median([]) is None
    assert majority([["a", "b"], ["b", "a"], ["a", "b"]]) == ["a", "b"]
    assert majority([True, False, True]) is True and majority([False, False, True]) is False
    assert majority([["a"], ["b"], ["c"]]) is None and majority([True, False]) is None
    assert majority([True, None, True]) is None
    assert aggregate("order", [True, True, False]) is True and aggregate("lower", [0.3, 0.1, 0.2]) == 0.2
    assert aggregate("lower", [None]) is None and aggregate("order", [["x"]]) == ["x"]  # one seed: its value


def test_findings_never_flip_matched():
    from ae_lightning.studies.fidelity import fidelity_rows
    preset = {"studies": {"e": {"study": "compression"}}, "fidelity": [
        {"id": "miss", "reference": 0.1, "goal": "lower", "ours": "e.x"},
        {"id": "hit", "reference": 0.5, "goal": "lower", "ours": "e.x"},
        {"id": "order", "reference": ["a", "b"], "goal": "order", "ours": "e.o"}]}
    by_seed = {0: {"e": {"x": 0.2, "o": ["a", "b"]}}, 1: {"e": {"x": 0.3, "o": ["b", "a"]}},
               2: {"e": {"x": 0.25, "o": ["a", "b"]}}}
    plain = fidelity_rows("p", preset, by_seed, {"e": [0, 1, 2]}, "cmd")
    found = fidelity_rows("p", {**preset, "findings": {r: {"cause": "c"} for r in ("miss", "hit", "order")}},
                          by_seed, {"e": [0, 1, 2]}, "cmd")
    assert [r["matched"] for r in plain] == [r["matched"] for r in found] == [False, True, True]
    assert [r["ours"] for r in found] == [0.25, 0.25, ["a", "b"]]
    assert found[0]["seeds"] == [0, 1, 2] and found[0]["values"] == [0.2, 0.3, 0.25]
    assert all(r["finding"] == {"cause": "c"} for r in found) and not any("finding" in r for r in plain)


@pytest.mark.parametrize("seeds, message", [
    (["--seeds", "0,x"], "--seeds '0,x': expected non-negative integers"),
    (["--seeds=-1"], "--seeds '-1': expected non-negative integers"),
    (["--seeds", ""], "expected non-negative integers"),
    (["--seeds", "0,1,0"], "--seeds 0,1,0: a seed is given twice"),
])
def test_bad_seeds_give_one_line_and_exit_2(seeds, message, data_dir, tmp_path, capsys):
    code, cap = _run(["reproduce", "fcae", "--smoke", "--out", tmp_path / "o", "--data-dir", data_dir, *seeds], capsys)
    assert code == 2
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], cap.err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, message", [
    ("seeds: [0, 0]\n", "preset tiny: seeds 0,0: a seed is given twice"),
    ("seeds: [0, -1]\n", "preset tiny: seeds: expected a list of int >= 0"),
    ("seeds: 3\n", "preset tiny: seeds: expected a list"),
])
def test_a_bad_preset_seeds_key_is_refused(extra, message, tiny):
    from ae_lightning.studies import presets as preset_files
    tiny.write_text(TINY + extra)
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        preset_files.load_preset("tiny", [])


@pytest.mark.parametrize("findings, message", [
    ("  nope: {cause: c}\n", "finding 'nope' names no fidelity row"),
    ("  tiny.miss: {alternative: a}\n", "finding tiny.miss: needs 'cause'"),
    ("  tiny.miss: {cause: c, value: 1}\n", "finding tiny.miss: unknown key"),
])
def test_bad_findings_are_refused(findings, message, tiny):
    from ae_lightning.studies import presets as preset_files
    tiny.write_text(TINY.split("findings:")[0] + "findings:\n" + findings)
    with pytest.raises(UserError, match=message):
        preset_files.load_preset("tiny", [])


def _versions(runs):
    return sorted(str(p.relative_to(runs)) for p in runs.rglob("version_*"))


def test_seeds_run_each_seed_and_resume_reuses_finished_ones(tiny, data_dir, tmp_path, capsys):
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["reproduce", "tiny", "--smoke", "--out", out, "--runs-dir", runs, "--data-dir", data_dir,
            "--accelerator", "cpu"]
    code, cap = _run(argv, capsys)  # the single-seed call: the preset's seed 0
    assert code == 0, cap.err
    rows = json.loads((out / "tiny" / "fidelity.json").read_text())
    assert [r["seeds"] for r in rows] == [[0], [0]] and rows[0]["values"] == [rows[0]["ours"]]
    assert "unmatched rows without a finding" not in cap.err
    one = _versions(runs)
    assert len(one) == 1

    code, cap = _run(argv + ["--seeds", "0,1", "--resume"], capsys)
    assert code == 0, cap.err
    assert "tiny/compression: read back" in cap.err and "== tiny/compression.seed1 (compression)" in cap.err
    two = _versions(runs)
    assert len(two) == 2 and set(one) < set(two)  # seed 0's run reused, seed 1 trained
    new = runs / (set(two) - set(one)).pop()
    assert json.loads((new / "metrics.json").read_text())["config"]["seed"] == 1
    rows = json.loads((out / "tiny" / "fidelity.json").read_text())
    miss, hit = rows
    assert miss["seeds"] == [0, 1] and len(miss["values"]) == 2
    assert miss["ours"] == pytest.approx(sum(miss["values"]) / 2)
    # the finding sits beside the number (a smoke run's rows are not judged: test_findings_never_flip_matched)
    assert not miss["matched"] and not hit["matched"] and miss["smoke"] and hit["smoke"]
    assert miss["finding"]["cause"] == "a measured cause" and hit["finding"]
    md = (out / "fidelity.md").read_text()
    assert "a measured cause another setting gives 0.1 (`--set config.model.lr=1`)" in md
    lo, hi = sorted(miss["values"])
    assert f"({lo:.4g}–{hi:.4g})" in md and "| 0, 1 |" in md

    # a seed's folder lost: --resume reads seed 0 back, finds seed 1's finished run, trains only seed 2
    import shutil
    shutil.rmtree(out / "tiny" / "compression.seed1")
    code, cap = _run(argv + ["--seeds", "0,1,2", "--resume"], capsys)
    assert code == 0, cap.err
    three = _versions(runs)
    assert len(three) == 3 and set(two) < set(three)
    rows = json.loads((out / "tiny" / "fidelity.json").read_text())
    assert rows[0]["seeds"] == [0, 1, 2] and rows[0]["values"][:2] == miss["values"]
    assert rows[0]["ours"] == sorted(rows[0]["values"])[1]
    results = json.loads((out / "tiny" / "results.json").read_text())
    assert results["seeds"] == [0, 1, 2] and set(results["studies_by_seed"]) == {"1", "2"}


def test_an_entry_with_its_own_seed_runs_once(tiny):
    from ae_lightning.studies.presets import load_preset
    from ae_lightning.studies.seeds import entry_runs
    tiny.write_text(TINY.replace("studies:\n", "studies:\n  pinned: {study: compression, latents: [4], "
                                 "config: {seed: 1}}\n"))
    preset = load_preset("tiny", [])
    assert entry_runs(preset, "pinned", [0, 1, 2]) == [(1, 0, "pinned")]
    assert entry_runs(preset, "compression", [0, 2]) == [(0, 0, "compression"), (2, 2, "compression.seed2")]


def test_an_entry_with_its_own_seeds_runs_at_those_and_resume_reads_it_back_unchanged(tiny, data_dir, tmp_path, capsys):
    """A measurement beside the rows (``seeds: [0]`` on the entry) runs at its own seeds whatever --seeds
    says; a bad entry ``seeds`` is one line; adding ``seeds`` to a finished entry does not make --resume
    train it again (``seeds`` picks runs, it is no setting of any)."""
    from ae_lightning.studies.presets import load_preset
    from ae_lightning.studies.seeds import entry_runs
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["reproduce", "tiny", "--smoke", "--out", out, "--runs-dir", runs, "--data-dir", data_dir,
            "--accelerator", "cpu"]
    tiny.write_text(TINY.replace("studies:\n", "studies:\n  beside: {study: compression, latents: [2]}\n"))
    assert _run(argv, capsys)[0] == 0  # both entries at the preset's seed 0
    assert len(_versions(runs)) == 2
    tiny.write_text(TINY.replace("studies:\n", "studies:\n  beside: {study: compression, latents: [2], seeds: [0]}\n"))
    preset = load_preset("tiny", [])
    assert entry_runs(preset, "beside", [0, 1, 2]) == [(0, 0, "beside")]
    code, cap = _run(argv + ["--seeds", "0,1", "--resume"], capsys)
    assert code == 0, cap.err
    assert "tiny/beside: read back" in cap.err and "beside.seed1" not in cap.err
    assert "== tiny/compression.seed1 (compression)" in cap.err and len(_versions(runs)) == 3
    tiny.write_text(TINY.replace("studies:\n", "studies:\n  beside: {study: compression, latents: [2], seeds: [0, 0]}\n"))
    with pytest.raises(UserError, match="studies.beside.seeds 0,0: a seed is given twice"):
        load_preset("tiny", [])


def test_smoke_runs_the_preset_seed_alone_unless_seeds_is_given(tiny, data_dir, tmp_path, capsys):
    tiny.write_text(TINY.replace("epochs: 1\n", "epochs: 1\nseeds: [0, 1, 2]\n", 1))
    argv = ["reproduce", "tiny", "--smoke", "--out", tmp_path / "out", "--runs-dir", tmp_path / "runs",
            "--data-dir", data_dir, "--accelerator", "cpu"]
    code, cap = _run(argv, capsys)
    assert code == 0, cap.err
    assert len(_versions(tmp_path / "runs")) == 1 and "seed1" not in cap.err
    assert _run(argv + ["--seeds", "0,1", "--resume"], capsys)[0] == 0
    assert len(_versions(tmp_path / "runs")) == 2


def test_only_with_resume_reads_the_other_finished_entries_back(tiny, data_dir, tmp_path, capsys):
    # an entry added beside finished ones (the fcae 1000-epoch headline) runs alone; the other rows stay
    out = tmp_path / "out"
    argv = ["reproduce", "tiny", "--smoke", "--out", out, "--runs-dir", tmp_path / "runs", "--data-dir", data_dir,
            "--accelerator", "cpu"]
    assert _run(argv, capsys)[0] == 0
    tiny.write_text(TINY.replace("studies:\n", "studies:\n  more: {study: compression, latents: [2]}\n")
                    .replace("fidelity:\n", "fidelity:\n  - {id: tiny.more, reference: 1.0, goal: lower, "
                             "ours: more.by_latent.2.test.nrmse}\n"))
    code, cap = _run(argv + ["--only", "more", "--resume"], capsys)
    assert code == 0, cap.err
    assert "tiny/compression: read back" in cap.err and "== tiny/more (compression)" in cap.err
    rows = {r["id"]: r for r in json.loads((out / "tiny" / "fidelity.json").read_text())}
    assert all(r["ours"] is not None for r in rows.values()) and rows["tiny.more"]["seeds"] == [0]


def test_every_committed_miss_has_its_finding_and_every_row_its_seeds():
    # docs/studies/fidelity.json as committed (written by the README's reproduce commands)
    from pathlib import Path
    rows = json.loads((Path(__file__).resolve().parents[1] / "docs" / "studies" / "fidelity.json").read_text())
    assert rows and all(len(r["values"]) == len(r["seeds"]) for r in rows), [r["id"] for r in rows]
    assert all(r["ours"] is None and not r["matched"] for r in rows if not r["seeds"])  # a row not yet run
    measured = [r for r in rows if r["seeds"]]
    assert not [r["id"] for r in measured if not r["matched"] and not (r.get("finding") or {}).get("cause")]
