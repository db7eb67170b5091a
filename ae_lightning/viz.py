"""Image grids, figures and PNG files, with no torchvision (a tile is a reshape)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from ae_lightning import files


def tile(images: torch.Tensor, nrow: int, pad: int = 1) -> torch.Tensor:
    """``(N,1,H,W)`` in [0,1] -> one ``(1, rows*(H+pad)+pad, nrow*(W+pad)+pad)`` image, row-major."""
    images = images.detach().float().cpu().clamp(0, 1)
    n, _, h, w = images.shape
    rows = -(-n // nrow)
    canvas = torch.ones(rows * nrow, 1, h + pad, w + pad)
    canvas[:n, :, :h, :w] = images
    grid = canvas.view(rows, nrow, h + pad, w + pad).permute(0, 2, 1, 3).reshape(rows * (h + pad), nrow * (w + pad))
    grid = torch.nn.functional.pad(grid, (pad, 0, pad, 0), value=1.0)
    return grid.unsqueeze(0)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(path: str | Path, image: torch.Tensor | np.ndarray) -> Path:
    """Write a ``(1,H,W)`` or ``(H,W)`` image in [0,1] as a greyscale PNG (atomically)."""
    plt = _pyplot()
    arr = image.squeeze().numpy() if isinstance(image, torch.Tensor) else np.squeeze(image)
    buf = io.BytesIO()
    plt.imsave(buf, arr, cmap="gray", vmin=0, vmax=1, format="png")
    return files.write_bytes(path, buf.getvalue())


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    plt = _pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


def confusion_figure(cm: np.ndarray, class_names: list[str]):
    """A (10, 10) confusion matrix (rows = true class) as an annotated matplotlib figure: colour =
    share of the true class, text = count. The caller closes it (``add_figure`` does)."""
    plt = _pyplot()
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=100)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    n = len(class_names)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {np.trace(cm) / max(cm.sum(), 1):.2%} ({int(cm.sum())} images)", fontsize=10)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    return fig
