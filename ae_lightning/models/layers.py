"""Building blocks shared by the variants: activations by name, and MLP stacks."""
from __future__ import annotations

from torch import nn


def initialize(module: nn.Module, scheme: str) -> None:
    """Re-initialize every Linear and (transposed) conv layer of ``module``: ``torch`` keeps
    PyTorch's defaults (Kaiming-uniform weights, uniform biases); ``glorot_uniform`` is Keras'
    default, Glorot-uniform weights and zero biases."""
    if scheme == "torch":
        return
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def activation(name: str, slope: float = 0.01) -> nn.Module:
    """``name`` -> a fresh module. ``none`` is the identity (a linear layer stays linear)."""
    return {
        "leaky_relu": lambda: nn.LeakyReLU(slope),
        "relu": nn.ReLU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "gelu": nn.GELU,
        "none": nn.Identity,
    }[name]()


def mlp(sizes: list[int], act: str, last_act: str, slope: float = 0.01) -> nn.Sequential:
    """Linear layers through ``sizes``; ``act`` after each hidden layer, ``last_act`` after the last.

    ``mlp([784, 392, 196, 8], "leaky_relu", "none")``: 784 -> 392 -> 196 -> 8.
    Identity activations are left out, so the Sequential holds only Linear and real nonlinearities.
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        name = last_act if i == len(sizes) - 2 else act
        if name != "none":
            layers.append(activation(name, slope))
    return nn.Sequential(*layers)


