"""The names in a trial's results and folder: written by trainable.py, read by the driver (tune.py,
report.py, searchers.py, ax_searcher.py). A leaf module, so that reading a sweep's results does not
import the trainable (and Lightning with it)."""

METRIC = "best_val_loss"
FINAL = "final"  # in a trial's last result once it has trained and tested in full (search.ax_searcher)
DIVERGED = "diverged.txt"
