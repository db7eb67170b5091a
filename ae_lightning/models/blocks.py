"""Convolutional encoder / decoder builders shared by ``conv``, ``denoising`` and ``vae``.

Registers nothing: a helper module of the models package.

Two encoder layouts, both ending in a flattened feature vector that fully connected layers take on:

    strided  Conv(c_in -> c, 3, stride 2) per stage, ReLU       28 -> 14 -> 7 -> 3  (channels 8-16-32:
             padding 1 while the size is even, else 0)          Flatten(288))
    pooled   Conv(c_in -> c, 3, padding 1) (same size), ReLU,   28 -> 14 -> 7 -> 3
             MaxPool(2) per stage                               (the studies' "increasing filters")

The decoder of either layout is the mirror image with ConvTranspose(3, stride 2) layers whose
padding / output_padding give back exactly the encoder's spatial sizes, ending at logits of the input
shape (C, H, W) (1x28x28 for MNIST). Height and width are sized each on its own.
"""
from __future__ import annotations

from torch import nn

from ae_lightning.models.layers import activation, mlp


def spatial_sizes(n_stages: int, layout: str, size: int) -> list[int]:
    """Feature-map side after each stage, input first: ``[28, 14, 7, 3]`` for three stages of 28."""
    sizes = [size]
    for _ in range(n_stages):
        n = sizes[-1]
        if layout == "strided":  # kernel 3, stride 2, padding 1 on even sides, 0 on odd ones
            pad = 1 if n % 2 == 0 else 0
            sizes.append((n + 2 * pad - 3) // 2 + 1)
        else:  # max pool 2 after a same-size conv
            sizes.append(n // 2)
    return sizes


def _stage_sizes(n_stages: int, layout: str, input_shape: tuple[int, int, int]) -> list[tuple[int, int]]:
    """(height, width) of the feature maps after each stage, the input's first."""
    _, h, w = input_shape
    return list(zip(spatial_sizes(n_stages, layout, h), spatial_sizes(n_stages, layout, w)))


def _even_pad(hw: tuple[int, int]) -> tuple[int, int]:
    """The strided layout's padding per side: 1 where it is even, else 0."""
    return 1 if hw[0] % 2 == 0 else 0, 1 if hw[1] % 2 == 0 else 0


def conv_encoder(channels: list[int], layout: str, act: str, input_shape: tuple[int, int, int],
                 slope: float = 0.01) -> tuple[nn.Sequential, int]:
    """``(B,C,H,W) -> (B, channels[-1] * h * w)`` and that flat size (288 for 8-16-32 on 1x28x28)."""
    sizes = _stage_sizes(len(channels), layout, input_shape)
    layers: list[nn.Module] = []
    c_in = input_shape[0]
    for c, hw in zip(channels, sizes[:-1]):
        if layout == "strided":
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=_even_pad(hw)), activation(act, slope)]
        else:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), activation(act, slope), nn.MaxPool2d(2)]
        c_in = c
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), channels[-1] * sizes[-1][0] * sizes[-1][1]


def conv_decoder(channels: list[int], layout: str, act: str, input_shape: tuple[int, int, int],
                 slope: float = 0.01) -> nn.Sequential:
    """``(B, channels[-1] * h * w) -> (B,C,H,W)`` logits: Unflatten, then ConvTranspose(3, s2) per
    stage, each sized to land exactly on the encoder's matching feature-map size."""
    sizes = _stage_sizes(len(channels), layout, input_shape)
    layers: list[nn.Module] = [nn.Unflatten(1, (channels[-1], *sizes[-1]))]
    outs = [input_shape[0], *channels[:-1]]  # channel count the i-th decoder stage gives back
    for i in reversed(range(len(channels))):
        n_in, n_out = sizes[i + 1], sizes[i]
        pad = _even_pad(n_out)
        out_pad = tuple(o - ((n - 1) * 2 - 2 * p + 3) for n, o, p in zip(n_in, n_out, pad))  # 0 or 1 each
        layers.append(nn.ConvTranspose2d(channels[i], outs[i], 3, stride=2, padding=pad, output_padding=out_pad))
        if i > 0:  # the last layer gives logits
            layers.append(activation(act, slope))
    return nn.Sequential(*layers)


def conv_autoencoder(channels: list[int], hidden: list[int], latent_dim: int, layout: str, act: str,
                     input_shape: tuple[int, int, int], code_act: str = "none",
                     slope: float = 0.01) -> tuple[nn.Sequential, nn.Sequential]:
    """Encoder ``(B,C,H,W) -> (B,k)`` (convs, Flatten, Linear through ``hidden`` to k) and the
    mirror decoder ``(B,k) -> (B,C,H,W)`` logits."""
    convs, flat = conv_encoder(channels, layout, act, input_shape, slope)
    encoder = nn.Sequential(convs, mlp([flat, *hidden, latent_dim], act, code_act, slope))
    decoder = nn.Sequential(mlp([latent_dim, *reversed(hidden), flat], act, act, slope),
                            conv_decoder(channels, layout, act, input_shape, slope))
    return encoder, decoder


def mlp_autoencoder(layers: list[int], latent_dim: int, act: str, code_act: str = "none",
                    slope: float = 0.01) -> tuple[nn.Sequential, nn.Sequential]:
    """The fully connected pair on flat inputs: ``layers`` from the input size (C*H*W) up to (not
    incl.) the code."""
    return (mlp([*layers, latent_dim], act, code_act, slope),
            mlp([latent_dim, *reversed(layers)], act, "none", slope))
