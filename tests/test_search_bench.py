"""The sweep benchmarks of issue 14.1 in smoke mode: they run end to end and print their table.
Timings are never asserted (docs/benchmarks.md holds the measured figures)."""
from __future__ import annotations

import importlib
import math
import sys

import pytest

from ae_lightning.config import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
pytestmark = pytest.mark.slow  # each sweep is a fresh process that starts Ray


def test_bench_sweep_compare_smoke(capsys, data_dir):
    ratio = importlib.import_module("bench_sweep").main(["--smoke", "--compare", "--data-dir", str(data_dir)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("ratio=") and math.isfinite(ratio) and ratio > 0
    table = {line.split()[0]: line.split() for line in lines if line.split()[0] in ("old", "new")}
    assert set(table) == {"old", "new"} and all(float(row[4]) > 0 for row in table.values())  # fixed s/trial


def test_profile_trial_smoke(capsys, data_dir):
    importlib.import_module("profile_trial").main(["--data-dir", str(data_dir), "--subset", "300", "--trials", "2"])
    out = capsys.readouterr().out
    assert "imports (first trial only)" in out and out.strip().splitlines()[-1].split()[0] == "1"
