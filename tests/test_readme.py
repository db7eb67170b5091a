"""Every command of the README runs, in the README's order, on the tests' tiny data: none goes stale.

Each command runs as written, with flags appended that make it small (argparse: the last of a
repeated flag wins): fewer images and epochs, the tiny data, a smoke-sized reproduction. The set-up
block is what CI itself runs, and is left out.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = ("python3 -m venv", "-m pytest")


def readme_commands() -> list[list[str]]:
    """The README's shell commands, in order, each split into words (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words and not any(s in line for s in SETUP):
                out.append(words)
    return out


def small(words: list[str], data_dir: Path) -> list[str]:
    """The command with the flags that make it small appended (its own flags stay as written)."""
    if words[0].endswith("tensorboard"):
        return [str(Path(sys.executable).parent / "tensorboard"), "--version_tb"]
    args = words[1:]
    if args[0] == "train.py":
        if "--help" in args:
            return [sys.executable, str(ROOT / "train.py"), *args[1:]]
        epochs = "2" if "--resume" in args else "1"  # a resumed run: the epochs it lacks
        tail = ["--data-dir", str(data_dir), "--subset", "600", "--max-epochs", epochs, "--set", "data.test_subset=200"]
        return [sys.executable, str(ROOT / "train.py"), *args[1:], *tail]
    module = args[1]
    tail = {"search.tune": ["--data-dir", str(data_dir), "--subset", "600", "--max-epochs", "1", "--num-samples", "3"],
            "ae_lightning.studies": ["--smoke", "--data-dir", str(data_dir), "--only", "compression"],
            }.get(module, ["--test-limit", "200"] if module == "ae_lightning.probes" else ["--limit", "200"])
    return [sys.executable, *args, *tail]


@pytest.mark.slow
def test_every_readme_command_runs_smoke_sized(data_dir, tmp_path):
    commands = readme_commands()
    entry_points = {w[1] if w[1] != "-m" else w[2] for w in commands if len(w) > 1}
    assert {"train.py", "search.tune", "ae_lightning.studies", "ae_lightning.probes", "ae_lightning.generate"} <= entry_points
    (tmp_path / "configs").symlink_to(ROOT / "configs")  # paths in the README are relative to the project
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for words in commands:
        if "--resume" in words:  # what it continues: the latest run, killed after its first epoch
            latest = max((tmp_path / "runs" / "mnist" / "fc").glob("version_*"), key=lambda p: int(p.name[8:]))
            (latest / "metrics.json").unlink()
        argv = small(words, data_dir)
        p = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, (" ".join(words), p.stderr[-2000:])
    # what the later commands read was written by the earlier ones, where the README says
    assert (tmp_path / "runs" / "mnist" / "vae" / "version_0" / "generated").is_dir()
    assert (tmp_path / "runs" / "mnist" / "fc" / "version_0" / "probes.json").is_file()
    assert list((tmp_path / "runs" / "search").glob("*/pareto.csv"))
    assert list((tmp_path / "runs" / "reproduce").rglob("fidelity.json"))
