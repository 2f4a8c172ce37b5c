"""Small fully-connected networks."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


def make_mlp(
    in_dim: int,
    out_dim: int,
    hidden_dim: int,
    num_hidden_layers: int,
    generator: torch.Generator | None = None,
    output_activation: Literal["none", "sigmoid"] = "none",
) -> nn.Sequential:
    """``num_hidden_layers`` ReLU layers of width ``hidden_dim`` then a linear output layer.

    Weights are initialised with Kaiming-uniform from ``generator`` so that a seed fixes them.
    """
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_hidden_layers):
        layers += [nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    if output_activation == "sigmoid":
        layers.append(nn.Sigmoid())
    mlp = nn.Sequential(*layers)
    with torch.no_grad():
        for m in mlp:
            if isinstance(m, nn.Linear):
                bound = (6.0 / m.in_features) ** 0.5 / 2**0.5
                m.weight.uniform_(-bound, bound, generator=generator)
                m.bias.zero_()
    return mlp
