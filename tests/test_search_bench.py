"""The trial profile of issue 14.1 (``benchmarks/profile_trial.py``) in smoke mode: it runs end to
end and prints its table. Timings are never asserted (docs/benchmarks.md holds the measured figures)."""
from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.slow  # a Lightning fit and test per trial


def test_profile_trial_smoke(capsys, data_dir):
    importlib.import_module("profile_trial").main(["--data-dir", str(data_dir), "--subset", "300", "--trials", "2"])
    out = capsys.readouterr().out
    assert "imports (first trial only)" in out and out.strip().splitlines()[-1].split()[0] == "1"
