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
from edge3u.models.golden import IntLayer, IntNetwork, Requant, requant_from_scale
from edge3u.train.network import pixels_to_input
from edge3u.train.quantizers import (WeightFormat, make_activation_quantizer,
                                     make_weight_quantizer)

__all__ = ["QuantTTLayer", "QuantTTNetwork", "snap_scales", "to_int_network", "INPUT_SCALE", "INPUT_MAX"]

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


def _requant_factors(net: QuantTTNetwork, snap: bool):
    """Walk ``net`` in the hardware's order of requantizations.

    Yields ``(layer, codes, stage_requant, unit, out_requant)`` per layer. Each requantizer's
    factor is ``scale_in * core_scale / scale_out``; with ``snap`` the output quantizer's scale
    is first set so that this factor is exactly the integer ``multiplier / 2**shift`` the
    hardware applies (a change of at most 2**-15 relative).
    """
    scale = INPUT_SCALE

    def requant(factor_in: float, quant) -> Requant:
        rq = requant_from_scale(factor_in / quant.scale, quant.code_min, quant.code_max)
        if snap:
            quant.set_scale(factor_in / rq.scale)
        return rq

    for layer in net.layers:
        pairs = [q.to_int(c) for q, c in zip(layer.weight_quant, layer.cores)]
        core_scales = [s for _, s in pairs]
        stage_requant = []
        for quant, k in zip(layer.stage_quant, layer.order[:-1]):
            stage_requant.append(requant(scale * core_scales[k], quant))
            scale = quant.scale
        unit = scale * core_scales[layer.order[-1]]
        out_requant = requant(unit * layer.gamma, layer.out_quant) if layer.relu else None
        yield layer, [c.to(torch.int64) for c, _ in pairs], stage_requant, unit, out_requant
        if layer.relu:
            scale = layer.out_quant.scale


@torch.no_grad()
def snap_scales(net: QuantTTNetwork) -> None:
    """Make every activation scale agree exactly with the requantization the hardware does.

    The integer model rounds ``acc * multiplier / 2**shift``; the fake-quant model rounds
    ``acc * scale_in * core_scale / scale_out``. A 15-bit multiplier is off by up to 2**-15 relative, and
    every value that falls within that much of a rounding boundary would round differently.
    After this the two factors are equal (to float32 precision), so the fake-quant model
    predicts what the integer model computes. Call it once training has ended.
    """
    for _ in _requant_factors(net, snap=True):
        pass


@torch.no_grad()
def to_int_network(net: QuantTTNetwork) -> IntNetwork:
    """The integer network that computes what ``net`` fake-computes (docs/numerics.md)."""
    layers, in_max = [], INPUT_MAX
    for name, (layer, codes, stage_requant, unit, out_requant) in zip(
            net.names, _requant_factors(net, snap=False)):
        bias = _half_up(layer.bias / layer.gamma / unit)
        layers.append(IntLayer(name, codes, layer.order, stage_requant, bias,
                               out_requant, in_max))
        if layer.relu:
            in_max = layer.out_quant.code_max
    return IntNetwork(layers)
