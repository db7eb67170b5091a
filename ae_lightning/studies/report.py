"""A study's report: markdown with tables and PNG figures, and TensorBoard.

Every figure goes to the study's folder as a PNG and to its TensorBoard run (``<study dir>/tensorboard``)
at once, so the two views never disagree; the markdown links it. A study's ``measure`` saves the images of
model outputs (``save_image``, ``save_figure``: no link), its ``render`` draws the figures of numbers
(``figure``) and links both (``link``). Blocks are kept structured until rendering, so ``all`` and
``reproduce`` can render each study one heading level down, with image links relative to their report.
"""
from __future__ import annotations

import io
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
        self.results: dict[str, Any] = {}  # what results.json holds, once rendered (``runner.render``)
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            # a study run rewrites its whole report: events left by an earlier, killed run would
            # show in TensorBoard as a second set of points
            for stale in (self.dir / "tensorboard").glob("events.out.tfevents.*"):
                stale.unlink()
            self._writer = SummaryWriter(str(self.dir / "tensorboard"))

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

    def save_figure(self, name: str, fig: "plt.Figure") -> Path:
        """Save a matplotlib figure as ``<name>.png`` and add it to TensorBoard (no link: see ``link``)."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        path = files.write_bytes(self.dir / f"{name}.png", buf.getvalue())
        if self._writer is not None:
            self._writer.add_figure(name, fig, global_step=0, close=False)
        plt.close(fig)
        return path

    def figure(self, name: str, fig: "plt.Figure", caption: str) -> None:
        """A figure of numbers: saved as ``save_figure`` does, and linked."""
        self.save_figure(name, fig)
        self.link(name, caption)

    def save_image(self, name: str, image: torch.Tensor) -> Path:
        """Save a ``(1,H,W)`` greyscale image in [0,1] (a tile of digits) as PNG + TensorBoard (no link)."""
        if self._writer is not None:
            self._writer.add_image(name, image.clamp(0, 1), global_step=0)
        return save_png(self.dir / f"{name}.png", image)

    def link(self, name: str, caption: str) -> None:
        """Show ``<name>.png`` of the study's folder, with its caption."""
        self.blocks.append(("img", (f"{name}.png", caption)))

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
        """``report.md`` in the study's folder, and its text in TensorBoard (closed)."""
        if self._writer is not None:
            self._writer.add_text("report", self.render(), global_step=0)
            self._writer.flush()
            self._writer.close()
            self._writer = None
        return files.write_text(self.dir / "report.md", self.render())
