"""The package is linted as part of the test suite: ruff (pinned in requirements.txt, configured in
pyproject.toml: pyflakes, import sorting, line length) passes on the whole tree."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_passes_on_the_tree():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_the_project_is_installed_not_put_on_sys_path():
    """`pip install -r requirements.txt` installs the project (editable): its modules import from
    any folder, with no sys.path insert and no PYTHONPATH."""
    code = "import ae_lightning, search, train; print(ae_lightning.__file__)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip()).resolve().parent == ROOT / "ae_lightning"
