"""Random codes and latent walks of any trained autoencoder: ``generate`` decodes codes drawn in the
test codes' ranges (and the prior's); the walks decode straight lines between codes, and one unit swept at a time.

    interpolate  decode((1 - t) z_a + t z_b), t from 0 to 1: one row per pair of images, whose ends
                 are the two images' reconstructions
    traverse     one image's code with a single unit swept over its range, the others held: one row
                 per unit. The range is the unit's [min, max] over the test codes, or ±3 σ of the prior
                 for a module that has one (the VAE, ``prior_std``); with more than ``units`` units,
                 the ``units`` of largest test variance

The codes are the module's ``encode`` (the posterior mean for the VAE). Pure torch: images come back as
``(rows, steps, C, H, W)`` in pixel scale; the ``generate`` command writes them as PNG grids and
``callbacks.GenerationImages`` adds them to TensorBoard.
"""
from __future__ import annotations

import contextlib

import torch

from ae_lightning.errors import UserError


def sample_codes(z: torch.Tensor, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random codes (n,k) inside the ranges of the codes ``z`` (N,k): per unit, and over all units."""
    lo, hi = z.min(0).values, z.max(0).values  # (k,)
    return {"uniform_per_dim": lo + torch.rand(n, z.shape[1], generator=generator) * (hi - lo),
            "uniform_global": z.min() + torch.rand(n, z.shape[1], generator=generator) * (z.max() - z.min())}


@torch.no_grad()
def generate(module, x_test: torch.Tensor, n: int = 64, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict]:
    """``({kind: images (n,1,28,28) in [0,1]}, code ranges)`` from an autoencoder and test images."""
    from ae_lightning.models.base import AutoencoderModule  # late: Lightning (seconds), which the CLI's checks do without

    if not isinstance(module, AutoencoderModule):
        raise UserError(f"generation needs an autoencoder; this checkpoint holds a {type(module).__name__}")
    was = module.training
    module.eval()
    z = module.encode_all(x_test).float().cpu()  # (N,k) test codes (the posterior mean for the VAE)
    g = torch.Generator().manual_seed(seed)
    codes = sample_codes(z, n, g)
    out = {name: module.output(module.decode(c.to(module.device))).cpu() for name, c in codes.items()}
    prior = module.sample(n, generator=g)  # None: the model has no prior (only the VAE has one)
    if prior is not None:
        out["prior"] = prior.cpu()
    module.train(was)
    ranges = {"per_dim_min": z.min(0).values.tolist(), "per_dim_max": z.max(0).values.tolist(),
              "global_min": float(z.min()), "global_max": float(z.max()), "n_codes": len(z)}
    return out, ranges


WALKS = ("interpolate", "traverse")
PAIRS, STEPS, UNITS = 8, 10, 10  # 8 pairs x 10 steps; at most 10 traversed units
PRIOR_SIGMAS = 3.0  # a traversal of a module with a prior spans ±3 of its standard deviations


@contextlib.contextmanager
def _evaluating(module):
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was)


def _decode(module, z: torch.Tensor) -> torch.Tensor:
    """Codes (R,S,k) -> images (R,S,C,H,W) in pixel scale, on the CPU."""
    images = module.output(module.decode(z.flatten(0, 1).to(module.device)))
    return images.unflatten(0, z.shape[:2]).cpu()


def interpolate(module, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = STEPS) -> torch.Tensor:
    """``(P, steps, C, H, W)``: row p decodes ``steps`` evenly spaced codes from ``x_a[p]``'s to ``x_b[p]``'s."""
    with _evaluating(module):
        z_a, z_b = module.encode_all(x_a), module.encode_all(x_b)  # (P,k)
        t = torch.linspace(0, 1, steps, device=z_a.device, dtype=z_a.dtype).view(1, steps, 1)
        # (1 - t) z_a + t z_b rather than z_a + t (z_b - z_a): exactly z_a and z_b at the ends
        return _decode(module, (1 - t) * z_a.unsqueeze(1) + t * z_b.unsqueeze(1))


def unit_ranges(module, z_test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each unit's traversal range ``(low, high)``, each (k,): ±3 σ of the prior, else the test codes' [min, max]."""
    if module.prior_std is not None:
        high = torch.full(z_test.shape[1:], PRIOR_SIGMAS * module.prior_std, dtype=z_test.dtype, device=z_test.device)
        return -high, high
    return z_test.min(0).values, z_test.max(0).values


def traversed_units(z_test: torch.Tensor, units: int = UNITS) -> list[int]:
    """Every unit, or the ``units`` of largest variance over the test codes (N,k), in unit order."""
    k = z_test.shape[1]
    return list(range(k)) if k <= units else sorted(z_test.var(0).topk(units).indices.tolist())


def traverse(module, x: torch.Tensor, z_test: torch.Tensor, steps: int = STEPS,
             units: int = UNITS) -> tuple[torch.Tensor, list[int]]:
    """``(images (U, steps, C, H, W), the U units)``: row u holds the code of the image ``x`` (1,C,H,W)
    but unit ``units[u]``, swept from its low to its high end (``unit_ranges`` of the test codes ``z_test``)."""
    chosen = traversed_units(z_test, units)
    low, high = (r.cpu() for r in unit_ranges(module, z_test))
    with _evaluating(module):
        z = module.encode_all(x[:1]).cpu().repeat(len(chosen), steps, 1)  # (U,S,k)
        for row, unit in enumerate(chosen):
            z[row, :, unit] = torch.linspace(float(low[unit]), float(high[unit]), steps, dtype=z.dtype)
        return _decode(module, z), chosen


def latent_walks(module, x_test: torch.Tensor, kinds=WALKS, seed: int = 0, pairs: int = PAIRS,
                 steps: int = STEPS, units: int = UNITS) -> tuple[dict[str, torch.Tensor], dict]:
    """``({kind: images (rows, steps, C, H, W)}, {kind: what was walked})`` over test images drawn with
    ``seed``: ``pairs`` pairs of distinct images to interpolate, one image to traverse (indices into ``x_test``)."""
    order = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(seed))
    images, info = {}, {}
    if "interpolate" in kinds:
        n = min(pairs, len(x_test) // 2)
        if n == 0:
            raise UserError(f"interpolation needs 2 test images or more, got {len(x_test)}")
        a, b = order[:n], order[n:2 * n]
        images["interpolate"] = interpolate(module, x_test[a], x_test[b], steps)
        info["interpolate"] = {"pairs": [[int(i), int(j)] for i, j in zip(a, b)], "steps": steps}
    if "traverse" in kinds:
        i = int(order[0])
        z_test = module.encode_all(x_test)
        images["traverse"], chosen = traverse(module, x_test[i:i + 1], z_test, steps, units)
        low, high = unit_ranges(module, z_test)
        info["traverse"] = {"image": i, "units": chosen, "steps": steps,
                            "low": low[chosen].tolist(), "high": high[chosen].tolist()}
    return images, info
