"""The studies' shared figures: line and bar charts, and 2-D maps of the codes coloured by label.

Each returns a matplotlib figure for ``Report.figure`` (which saves, links and closes it); none
writes a file. Image grids are ``ae_lightning.viz`` (``tile``, ``save_png``), below the studies.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def line_plot(series: dict[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str,
              title: str, logx: bool = False, marker: str = "o") -> "plt.Figure":
    """One line per named series of (x, y) points."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, (xs, ys) in series.items():
        style = "--" if label.startswith("train") else "-"  # train and test often overlap: keep both visible
        ax.plot(list(xs), [np.nan if y is None else y for y in ys], style, marker=marker, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logx:
        ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def bar_plot(labels: Sequence[str], groups: dict[str, Sequence[float | None]], ylabel: str, title: str) -> "plt.Figure":
    """Grouped bars: one group per label, one bar per named series (e.g. ours vs the reference)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    width = 0.8 / max(1, len(groups))
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(groups.items()):
        ax.bar(x + i * width - 0.4 + width / 2, [np.nan if v is None else v for v in values], width, label=name)
    ax.set_xticks(x, labels, rotation=20)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def tsne_perplexity(n: int) -> float:
    return float(min(30.0, max(2.0, (n - 1) / 3)))


def map_2d(z: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """``(points (N, 2), method)``: the codes when k = 2 (k = 1: beside zeros), else their t-SNE embedding."""
    if z.shape[1] <= 2:
        return (z if z.shape[1] == 2 else np.concatenate([z, np.zeros_like(z)], 1)), f"codes (k = {z.shape[1]})"
    from sklearn.manifold import TSNE
    perplexity = tsne_perplexity(len(z))
    emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)
    return emb, f"t-SNE (perplexity {perplexity:g})"


def scatter(points: np.ndarray, labels: np.ndarray, title: str, names: list[str]) -> "plt.Figure":
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
    cbar = fig.colorbar(sc, ax=ax, ticks=range(10))
    cbar.ax.set_yticklabels(names, fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig
