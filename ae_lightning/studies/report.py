"""A study's report: markdown with tables and PNG figures, results.json, and TensorBoard.

Every figure goes to three places at once: a PNG beside ``report.md``, a link in the markdown, and
the study's TensorBoard run (``<study dir>/tensorboard``), so the two views never disagree.
Blocks are kept structured until rendering, so ``all`` can re-render each study one heading level
down, with image links relative to the combined report.
"""
from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ae_lightning import files  # noqa: E402
from ae_lightning.viz import save_png  # noqa: E402

BLOCKS_FILE = "report_blocks.json"


def fmt(v: Any, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` significant figures, None as a dash."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "diverged"
        return f"{v:.{digits}g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", text.lower()).strip().replace(" ", "-")


class Report:
    """Markdown blocks, figures and numbers of one study."""

    def __init__(self, out_dir: Path, title: str, tensorboard: bool = True):
        self.dir, self.title = Path(out_dir), title
        self.dir.mkdir(parents=True, exist_ok=True)
        self.blocks: list[tuple[str, Any]] = []  # ("md", text) | ("img", (file, caption))
        self.results: dict[str, Any] = {}
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            # a study run rewrites its whole report: events left by an earlier, killed run would
            # show in TensorBoard as a second set of points
            for stale in (self.dir / "tensorboard").glob("events.out.tfevents.*"):
                stale.unlink()
            self._writer = SummaryWriter(str(self.dir / "tensorboard"))
        self._fig_count = 0

    # -- content ---------------------------------------------------------------------------------
    def text(self, markdown: str) -> None:
        self.blocks.append(("md", markdown.strip("\n")))

    def heading(self, text: str) -> None:
        self.blocks.append(("h", text))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> None:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
        if caption:
            lines.insert(0, f"*{caption}*\n")
        self.blocks.append(("md", "\n".join(lines)))

    def figure(self, name: str, fig: "plt.Figure", caption: str) -> Path:
        """Save a matplotlib figure as ``<name>.png``, link it, and add it to TensorBoard."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        path = files.write_bytes(self.dir / f"{name}.png", buf.getvalue())
        if self._writer is not None:
            self._writer.add_figure(name, fig, global_step=0, close=False)
        plt.close(fig)
        self.blocks.append(("img", (path.name, caption)))
        return path

    def image(self, name: str, image: torch.Tensor, caption: str) -> Path:
        """Save a ``(1,H,W)`` greyscale image in [0,1] (a tile of digits) as PNG + TensorBoard."""
        path = save_png(self.dir / f"{name}.png", image)
        if self._writer is not None:
            self._writer.add_image(name, image.clamp(0, 1), global_step=0)
        self.blocks.append(("img", (path.name, caption)))
        return path

    def scalars(self, tag: str, values: dict[Any, float]) -> None:
        """A series (x -> y) as TensorBoard scalars, e.g. NRMSE against latent size."""
        if self._writer is None:
            return
        for x, y in values.items():
            if isinstance(y, (int, float)) and math.isfinite(y) and isinstance(x, (int, float)):
                self._writer.add_scalar(tag, y, global_step=int(x))

    # -- output ----------------------------------------------------------------------------------
    def render(self, level: int = 1, image_prefix: str = "", title: bool = True) -> str:
        """Markdown of the study; ``level`` is its title's heading level, images under ``image_prefix``."""
        out = [f"{'#' * level} {self.title}"] if title else []
        for kind, payload in self.blocks:
            if kind == "md":
                out.append(payload)
            elif kind == "h":
                out.append(f"{'#' * (level + 1)} {payload}")
            else:
                name, caption = payload
                out.append(f"![{caption}]({image_prefix}{name})\n*{caption}*")
        return "\n\n".join(out) + "\n"

    def write(self) -> Path:
        """``report.md``, ``results.json`` and the blocks (to re-render it, ``all --resume``) in the
        study's folder; closes TensorBoard."""
        files.write_json(self.dir / "results.json", self.results)
        files.write_json(self.dir / BLOCKS_FILE, {"title": self.title, "blocks": self.blocks})
        if self._writer is not None:
            self._writer.add_text("report", self.render(), global_step=0)
            self._writer.flush()
            self._writer.close()
            self._writer = None
        return files.write_text(self.dir / "report.md", self.render())


def load_report(out_dir: Path) -> Report | None:
    """A study's finished report read back from its folder (no TensorBoard); None if incomplete."""
    out_dir = Path(out_dir)
    try:
        data = json.loads((out_dir / BLOCKS_FILE).read_text())
        results = json.loads((out_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
    rep = Report(out_dir, data["title"], tensorboard=False)
    rep.blocks = [(kind, tuple(payload) if kind == "img" else payload) for kind, payload in data["blocks"]]
    rep.results = results
    return rep
