"""Quantization-aware training of a trained TT network, and its integer twin.

:class:`QuantTTNetwork` fake-quantizes exactly where the accelerator quantizes
(docs/numerics.md): every core (per core, 1–4 bits or ternary), every intermediate between TT
stages (signed, ``activation_bits``), every hidden layer's output after ReLU (unsigned), and the
biases onto their accumulator's grid. The first layer reads the 8-bit pixels as they come and the
last layer's logits stay integer (no requantization): those are the documented choices for the
first and last layers. :func:`to_int_network` turns the trained quantizers into the
:class:`~edge3u.models.golden.IntNetwork` the hardware implements.
"""

from __future__ import annotations

import torch
from torch import nn

from edge3u.models import tt
from edge3u.models.golden import IntLayer, IntNetwork, requant_from_scale
from edge3u.train.network import pixels_to_input
from edge3u.train.quantizers import (WeightFormat, make_activation_quantizer,
                                     make_weight_quantizer)

__all__ = ["QuantTTLayer", "QuantTTNetwork", "to_int_network", "INPUT_SCALE", "INPUT_MAX"]

INPUT_SCALE = 1 / 256
INPUT_MAX = 255


class _RoundToGrid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, unit):
        return torch.floor(x / unit + 0.5) * unit

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class QuantTTLayer(nn.Module):
    """One TT layer with fake-quantized cores, stage outputs, bias and (hidden) output.

    Parameters
    ----------
    cores : list of tensors
        Trained float cores (copied into parameters).
    bias : tensor
    gamma : float
        The layer's constant factor (``TTLinear.scale``).
    order : tuple of int
        Stage order, as the hardware runs it.
    method : str
        The weight quantizer: ``"ul2q"``, ``"uniform"`` or ``"lsq"``. Activations always use a
        learned step (LSQ), so methods differ in the weights alone.
    weight_bits : int or "ternary"
    activation_bits : int
    relu : bool
        Hidden layer (ReLU + unsigned output quantizer) or logits layer.
    """

    def __init__(self, cores, bias, gamma: float, order, *, method: str, weight_bits,
                 activation_bits: int, relu: bool):
        super().__init__()
        self.cores = nn.ParameterList(nn.Parameter(c.detach().clone().float()) for c in cores)
        self.bias = nn.Parameter(bias.detach().clone().float())
        self.gamma = float(gamma)
        self.order = tt.check_order(tuple(order), len(cores))
        self.fmt = WeightFormat(weight_bits)
        self.activation_bits = activation_bits
        self.relu = relu
        self.weight_quant = nn.ModuleList(make_weight_quantizer(method, self.fmt, init=c)
                                          for c in self.cores)
        # activations use the learned step (LSQ) whatever the weight method, so the methods
        # compare on weight quantization alone
        self.stage_quant = nn.ModuleList(make_activation_quantizer("lsq", activation_bits, True)
                                         for _ in range(len(cores) - 1))
        self.out_quant = make_activation_quantizer("lsq", activation_bits, False) if relu else None

    def forward(self, x: torch.Tensor, in_scale: float) -> torch.Tensor:
        cores = [q(c) for q, c in zip(self.weight_quant, self.cores)]
        quantizers = iter(self.stage_quant)
        # tt_matvec hands intermediates over as (features, batch): quantize them per sample row
        y = tt.tt_matvec(x, cores, self.order, between=lambda h: next(quantizers)(h.t()).t())
        last_in = self.stage_quant[-1].scale if len(self.stage_quant) else in_scale
        last = self.order[-1]
        unit = last_in * self.weight_quant[last].scale_for(self.cores[last])
        # the last accumulator is an integer multiple of ``unit``: snap float noise back onto the
        # grid so equal integer logits stay exactly equal (argmax then breaks ties alike)
        y = _RoundToGrid.apply(y + _RoundToGrid.apply(self.bias / self.gamma, unit), unit)
        y = y * self.gamma
        return self.out_quant(torch.relu(y)) if self.relu else y

    @property
    def out_scale(self) -> float:
        return self.out_quant.scale


class QuantTTNetwork(nn.Module):
    """The fake-quantized network built from a trained run's ``model.pt`` state."""

    def __init__(self, model_state: dict, *, method: str, weight_bits, activation_bits: int,
                 orders: dict[str, tuple[int, ...]] | None = None):
        super().__init__()
        self.method, self.weight_bits, self.activation_bits = method, weight_bits, activation_bits
        layers = model_state["layers"]
        self.names = tuple(layer["name"] for layer in layers)
        self.layers = nn.ModuleList()
        for i, layer in enumerate(layers):
            modes_in = tuple(int(c.shape[1]) for c in layer["cores"])
            modes_out = tuple(int(c.shape[2]) for c in layer["cores"])
            ranks = tt.tt_ranks(layer["cores"])
            order = (orders or {}).get(layer["name"]) or tt.choose_order(modes_in, modes_out, ranks)
            self.layers.append(QuantTTLayer(
                layer["cores"], layer["bias"], layer["scale"], order, method=method,
                weight_bits=weight_bits, activation_bits=activation_bits,
                relu=i < len(layers) - 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x, scale = pixels_to_input(pixels), INPUT_SCALE
        for layer in self.layers:
            x = layer(x, scale)
            scale = layer.out_scale if layer.relu else None
        return x

    def orders(self) -> dict[str, tuple[int, ...]]:
        return {name: layer.order for name, layer in zip(self.names, self.layers)}


def _half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5).to(torch.int64)


@torch.no_grad()
def to_int_network(net: QuantTTNetwork) -> IntNetwork:
    """The integer network that computes what ``net`` fake-computes (docs/numerics.md)."""
    scale, in_max = INPUT_SCALE, INPUT_MAX
    layers = []
    for name, layer in zip(net.names, net.layers):
        pairs = [q.to_int(c) for q, c in zip(layer.weight_quant, layer.cores)]
        codes = [c.to(torch.int64) for c, _ in pairs]
        core_scales = [s for _, s in pairs]
        stage_requant = []
        for quant, k in zip(layer.stage_quant, layer.order[:-1]):
            stage_requant.append(requant_from_scale(scale * core_scales[k] / quant.scale,
                                                    quant.code_min, quant.code_max))
            scale = quant.scale
        unit = scale * core_scales[layer.order[-1]]
        bias = _half_up(layer.bias / layer.gamma / unit)
        out_requant = None
        if layer.relu:
            quant = layer.out_quant
            out_requant = requant_from_scale(unit * layer.gamma / quant.scale, 0, quant.code_max)
        layers.append(IntLayer(name, codes, layer.order, stage_requant, bias, out_requant, in_max))
        if layer.relu:
            scale, in_max = quant.scale, quant.code_max
    return IntNetwork(layers)
