"""Image grids and PNG figures, with no torchvision (a tile is a reshape)."""
from __future__ import annotations

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


def save_png(path: str | Path, image: torch.Tensor | np.ndarray) -> Path:
    """Write a ``(1,H,W)`` or ``(H,W)`` image in [0,1] as a greyscale PNG (atomically)."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = image.squeeze().numpy() if isinstance(image, torch.Tensor) else np.squeeze(image)
    buf = io.BytesIO()
    plt.imsave(buf, arr, cmap="gray", vmin=0, vmax=1, format="png")
    return files.write_bytes(path, buf.getvalue())
