"""The networks the trainer trains: the TT network of a config and its dense FP32 baseline.

Both take pixel codes (``uint8`` 0..255) and see ``x = code / 256``: the input is exactly an
8-bit unsigned fixed-point number, as the hardware receives it.
"""

from __future__ import annotations

import torch
from torch import nn

from edge3u.config import Config
from edge3u.train.lowprec import bfp_quantize
from edge3u.train.tt_linear import TTLinear

__all__ = ["TTNetwork", "DenseNetwork", "pixels_to_input"]


def pixels_to_input(pixels: torch.Tensor) -> torch.Tensor:
    """Pixel codes 0..255 to the network input ``code / 256`` (exact in 8-bit fixed point)."""
    return pixels.to(torch.float32) / 256.0


class TTNetwork(nn.Module):
    """The config's layers as :class:`TTLinear`, ReLU between them.

    With ``activation_bits`` set, every activation (each layer's output and every intermediate
    between TT stages) is fake-quantized to that many bits of block floating point, so what the
    backward pass keeps is really that narrow.
    """

    def __init__(self, config: Config, *, activation_bits: int | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.activation_bits = activation_bits
        self.layers = nn.ModuleList(TTLinear.from_config(layer, generator=generator)
                                    for layer in config.layers)
        self.names = tuple(layer.name for layer in config.layers)
        self.relu = tuple(layer.activation == "relu" for layer in config.layers)
        if activation_bits is not None:
            for layer in self.layers:
                layer.between = self._quantize_columns

    def _quantize_columns(self, h: torch.Tensor) -> torch.Tensor:
        # a TT intermediate as (features, batch): one exponent per sample (column)
        return bfp_quantize(h, self.activation_bits, dim=1)

    def _quantize(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation_bits is None:
            return x
        return bfp_quantize(x, self.activation_bits, dim=0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels_to_input(pixels)
        for layer, relu in zip(self.layers, self.relu):
            x = layer(x)
            if relu:
                x = torch.relu(self._quantize(x))
        return x

    def core_parameters(self) -> list[nn.Parameter]:
        return [core for layer in self.layers for core in layer.cores]

    def bias_parameters(self) -> list[nn.Parameter]:
        return [layer.bias for layer in self.layers if layer.bias is not None]

    def ranks(self) -> dict[str, tuple[int, ...]]:
        return {name: layer.ranks for name, layer in zip(self.names, self.layers)}


class DenseNetwork(nn.Module):
    """The same layer sizes as ``nn.Linear`` in FP32: the baseline TT training is compared with."""

    def __init__(self, config: Config):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(l.in_features, l.out_features) for l in config.layers)
        self.relu = tuple(layer.activation == "relu" for layer in config.layers)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels_to_input(pixels)
        for layer, relu in zip(self.layers, self.relu):
            x = layer(x)
            if relu:
                x = torch.relu(x)
        return x
