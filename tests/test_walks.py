"""Latent walks (issue 31): interpolation between two images' codes and one unit traversed at a time,
checked on the codes the decoder is given (a spy), on untrained modules: the walks' arithmetic, not a model."""
from __future__ import annotations

import pytest
import torch

from ae_lightning.config import CONFIG_DIR, load_yaml, variants
from ae_lightning.models import get_module
from ae_lightning.models.base import AutoencoderModule
from ae_lightning.walks import interpolate, latent_walks, traverse, unit_ranges


def module(name: str, **options) -> AutoencoderModule:
    torch.manual_seed(0)
    return get_module(name)(**options)


def decoder_spy(m, monkeypatch) -> list[torch.Tensor]:
    """Every batch of codes ``m.decode`` is called with, in order."""
    seen, decode = [], m.decode

    def spy(z):
        seen.append(z.detach().clone())
        return decode(z)
    monkeypatch.setattr(m, "decode", spy)
    return seen


def test_interpolation_ends_are_the_reconstructions_of_the_pair(monkeypatch):
    m = module("mlp", layers=[784, 32], latent_dim=6).eval()
    x_a, x_b = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        rec_a, rec_b, z_a, z_b = m(x_a), m(x_b), m.encode(x_a), m.encode(x_b)
    m.train()
    seen = decoder_spy(m, monkeypatch)
    images = interpolate(m, x_a, x_b, steps=5)
    assert images.shape == (3, 5, 1, 28, 28)
    assert torch.allclose(images[:, 0], rec_a, atol=1e-6) and torch.allclose(images[:, -1], rec_b, atol=1e-6)
    z = torch.cat(seen).view(3, 5, 6)
    assert torch.equal(z[:, 0], z_a) and torch.equal(z[:, -1], z_b)  # the ends are the codes themselves
    t = torch.linspace(0, 1, 5).view(1, 5, 1)
    assert torch.allclose(z, z_a.unsqueeze(1) + t * (z_b - z_a).unsqueeze(1), atol=1e-6)  # evenly on the line
    assert m.training  # left as it was found


def test_a_traversal_row_varies_exactly_one_unit(monkeypatch):
    m = module("mlp", layers=[784, 32], latent_dim=12).eval()
    x = torch.rand(40, 1, 28, 28)
    z_test = m.encode_all(x)
    z_test[:, 5] *= 0.0  # the flattest unit is left out: 12 units, 10 rows
    seen = decoder_spy(m, monkeypatch)
    images, units = traverse(m, x[7:8], z_test, steps=4)
    assert images.shape == (10, 4, 1, 28, 28)
    assert units == sorted(z_test.var(0).topk(10).indices.tolist()) and 5 not in units
    z = torch.cat(seen).view(10, 4, 12)
    held = m.encode_all(x[7:8])[0]
    low, high = z_test.min(0).values, z_test.max(0).values
    for row, unit in enumerate(units):
        others = torch.arange(12) != unit
        assert torch.equal(z[row][:, others], held[others].expand(4, 11))  # the other units are held
        assert torch.allclose(z[row][:, unit], torch.linspace(float(low[unit]), float(high[unit]), 4))


def test_a_vae_is_traversed_over_three_prior_sigmas(monkeypatch):
    vae = module("vae", encoder="fc", hidden=[32], latent_dim=3).eval()
    x = torch.rand(20, 1, 28, 28)
    z_test = vae.encode_all(x)
    assert [r.tolist() for r in unit_ranges(vae, z_test)] == [[-3.0] * 3, [3.0] * 3]
    seen = decoder_spy(vae, monkeypatch)
    _, units = traverse(vae, x[:1], z_test, steps=7)
    z = torch.cat(seen).view(3, 7, 3)
    assert units == [0, 1, 2] and [z[u, :, u].tolist() for u in units] == [torch.linspace(-3, 3, 7).tolist()] * 3
    assert torch.equal(z[0, :, 1:], vae.encode_all(x[:1]).expand(7, 3)[:, 1:])  # the posterior mean held


AE_VARIANTS = [v for v in variants() if issubclass(get_module(load_yaml(CONFIG_DIR / f"{v}.yaml")["module"]),
                                                     AutoencoderModule)]


@pytest.mark.parametrize("variant", AE_VARIANTS)
def test_every_autoencoder_variant_walks(variant, cfg_for):
    cfg = cfg_for(variant)
    m = module(cfg["module"], **cfg["model"]).eval()
    x = torch.rand(9, 1, 28, 28)
    images, walked = latent_walks(m, x, seed=3, pairs=8, steps=3)
    k = cfg["model"]["latent_dim"]
    assert images["interpolate"].shape == (4, 3, 1, 28, 28)  # 9 images: 4 pairs of distinct ones
    assert images["traverse"].shape == (min(k, 10), 3, 1, 28, 28) and len(walked["traverse"]["units"]) == min(k, 10)
    pairs = walked["interpolate"]["pairs"]
    assert len({i for p in pairs for i in p}) == 8
    again, _ = latent_walks(m, x, seed=3, pairs=8, steps=3)
    assert all(torch.equal(images[w], again[w]) for w in images)  # seeded
