"""Text helpers for the lines and reports a user reads (a leaf module: imports nothing of the project)."""
from __future__ import annotations


def plural(n: int | float, word: str) -> str:
    """``plural(1, "epoch")`` -> "1 epoch", ``plural(5, "epoch")`` -> "5 epochs"."""
    return f"{n} {word}{'s' * (n != 1)}"
