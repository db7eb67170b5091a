"""The names in a trial's results and folder, written by trainable.py, and the Ax searcher's saved
state, written by ax_searcher.py; read by the driver (tune.py, report.py, searchers.py). A leaf
module, so that reading a sweep's results imports neither Lightning nor Ray nor Ax."""
import json
import re
from pathlib import Path

from ae_lightning.errors import UserError

METRIC = "best_val_loss"
FINAL = "final"  # in a trial's last result once it has trained and tested in full (search.ax_searcher)
DIVERGED = "diverged.txt"
SEARCHER_STATE = "searcher-state-{}.json"  # Tune names the file per session; Ax's JSON inside
STATE_FORMAT = 1
_ERR_LINE = re.compile(r"^(?:\S+\.)?(\w+(?:Error|Exception)): (.+)$")


def error_line(text: str) -> str:
    """The one line that says why a trial failed: the last ``XxxError: message`` of its error file."""
    lines = [ln.strip() for ln in text.splitlines() if _ERR_LINE.match(ln.strip())]
    return lines[-1] if lines else (text.strip().splitlines() or [""])[-1]


def read_state(path: Path) -> dict:
    """A searcher state written by ``AxSearch.save``; one line for anything else."""
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: the searcher state cannot be read ({e})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{path}: saved by an older version: start a new sweep")
    return state
