"""The one configuration object that train/, models/, rtl/ and sim/ all read.

A configuration is a TOML file (see ``configs/fashion_mnist.toml``) loaded into a frozen
:class:`Config`. Everything is validated on load, before any expensive work starts: an unknown
key, a mode factorisation whose product is not the layer size, a rank below 1 or a bit-width out
of range is a :class:`ConfigError` that names the bad value and what would be valid.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError", "DataConfig", "LayerConfig", "TrainConfig", "QuantConfig", "HardwareConfig",
    "Config", "load_config", "default_config_path", "mode_groups",
]

DATASETS = {"fashion-mnist": (784, 10), "digits": (64, 10)}
ACTIVATIONS = ("relu", "none")
RANK_PRIORS = ("half_cauchy", "log_uniform")
OPTIMIZERS = ("normalized_sgd", "sgd")
TRAIN_WEIGHT_BITS = (4, 8)
QUANT_WEIGHT_BITS = (1, 2, 3, 4, "ternary")
QUANT_METHODS = ("ul2q", "uniform", "lsq")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key, the value and what is valid."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(where: str, value: Any, lo: int, hi: int | None = None) -> None:
    valid = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
    _check(_is_int(value) and value >= lo and (hi is None or value <= hi),
           f"{where} must be {valid}, not {value!r}")


def _number(where: str, value: Any, lo: float, hi: float | None = None, *, lo_open=False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)
    bound = f"> {lo}" if lo_open else f">= {lo}"
    valid = f"a number {bound}" + ("" if hi is None else f" and <= {hi}")
    _check(ok, f"{where} must be {valid}, not {value!r}")


def _choice(where: str, value: Any, choices: tuple) -> None:
    _check(value in choices and type(value) in {type(c) for c in choices},
           f"{where} must be one of {', '.join(map(repr, choices))}, not {value!r}")


def _modes(where: str, value: Any, size: int) -> tuple[int, ...]:
    _check(isinstance(value, (list, tuple)) and len(value) >= 2
           and all(_is_int(v) and v >= 2 for v in value),
           f"{where} must be a list of at least 2 integers >= 2, not {value!r}")
    product = math.prod(value)
    _check(product == size, f"{where} = {list(value)} multiplies to {product}, "
                            f"but the layer size is {size}")
    return tuple(value)


@dataclass(frozen=True)
class DataConfig:
    """Which data set and where its files are.

    Parameters
    ----------
    dataset : str
        ``"fashion-mnist"`` (IDX files from Debian's ``dataset-fashion-mnist``) or ``"digits"``
        (scikit-learn's 8x8 digits, for tests).
    path : str
        Folder holding the IDX files; empty means ``$EDGE3U_FASHION_MNIST`` or the Debian folder.
    """
    dataset: str = "fashion-mnist"
    path: str = ""

    def __post_init__(self):
        _choice("data.dataset", self.dataset, tuple(DATASETS))
        _check(isinstance(self.path, str), f"data.path must be a string, not {self.path!r}")

    @property
    def features(self) -> int:
        return DATASETS[self.dataset][0]

    @property
    def classes(self) -> int:
        return DATASETS[self.dataset][1]


@dataclass(frozen=True)
class LayerConfig:
    """One TT-matrix layer: ``y = act(W x + b)`` with ``W`` of shape ``out_features x in_features``.

    ``in_modes`` factorises ``in_features`` (the n_k) and ``out_modes`` factorises
    ``out_features`` (the m_k); both lists have one entry per TT core. ``max_rank`` is the rank
    every inner bond starts with before rank-adaptive training prunes it.
    """
    name: str
    in_features: int
    out_features: int
    in_modes: tuple[int, ...]
    out_modes: tuple[int, ...]
    max_rank: int
    activation: str = "relu"

    def __post_init__(self):
        where = f"network.layers[{self.name!r}]"
        _check(isinstance(self.name, str) and self.name.isidentifier(),
               f"{where}.name must be an identifier such as 'fc1', not {self.name!r}")
        _int(f"{where}.in_features", self.in_features, 1)
        _int(f"{where}.out_features", self.out_features, 1)
        object.__setattr__(self, "in_modes",
                           _modes(f"{where}.in_modes", self.in_modes, self.in_features))
        object.__setattr__(self, "out_modes",
                           _modes(f"{where}.out_modes", self.out_modes, self.out_features))
        _check(len(self.in_modes) == len(self.out_modes),
               f"{where}: in_modes {list(self.in_modes)} and out_modes {list(self.out_modes)} "
               f"must have the same number of entries (one per TT core)")
        _int(f"{where}.max_rank", self.max_rank, 1, 256)
        _choice(f"{where}.activation", self.activation, ACTIVATIONS)

    @property
    def cores(self) -> int:
        return len(self.in_modes)

    @property
    def max_ranks(self) -> tuple[int, ...]:
        """Bond ranks ``(1, r_1, ..., r_{d-1}, 1)`` capped by what the reshapes can carry."""
        d, n, m = self.cores, self.in_modes, self.out_modes
        inner = []
        for k in range(1, d):
            left = math.prod(n[:k]) * math.prod(m[:k])
            right = math.prod(n[k:]) * math.prod(m[k:])
            inner.append(min(self.max_rank, left, right))
        return (1, *inner, 1)


@dataclass(frozen=True)
class TrainConfig:
    """Rank-adaptive, low-precision training (and the dense FP32 baseline it is compared with)."""
    seed: int = 0
    epochs: int = 10
    batch_size: int = 128
    micro_batch: int = 1
    host_parallel: bool = True
    optimizer: str = "normalized_sgd"
    lr: float = 0.02
    momentum: float = 0.0
    lr_decay: float = 1.0
    grad_clip: float = 1.0
    rank_prior: str = "half_cauchy"
    eta: float = 1.0
    kl_weight: float = 5e-5
    kl_warmup_start: int = 1
    kl_warmup_epochs: int = 5
    rank_threshold: float = 1e-6
    low_precision: bool = True
    weight_bits: int = 8
    weight_frac_bits: int = 6
    activation_bits: int = 8
    grad_bits: int = 16
    dense_epochs: int = 10
    dense_lr: float = 1e-3
    quick_epochs: int = 2
    quick_train_images: int = 10000

    def __post_init__(self):
        _int("train.seed", self.seed, 0)
        _int("train.epochs", self.epochs, 1)
        _int("train.batch_size", self.batch_size, 1)
        _int("train.micro_batch", self.micro_batch, 1)
        _check(self.batch_size % self.micro_batch == 0,
               f"train.batch_size {self.batch_size} must be a multiple of "
               f"train.micro_batch {self.micro_batch}")
        _check(isinstance(self.host_parallel, bool),
               f"train.host_parallel must be true or false, not {self.host_parallel!r}")
        _choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _number("train.lr", self.lr, 0.0, lo_open=True)
        _number("train.momentum", self.momentum, 0.0, 0.999)
        _number("train.lr_decay", self.lr_decay, 0.0, 1.0, lo_open=True)
        _number("train.grad_clip", self.grad_clip, 0.0, lo_open=True)
        _choice("train.rank_prior", self.rank_prior, RANK_PRIORS)
        _number("train.eta", self.eta, 0.0, lo_open=True)
        _number("train.kl_weight", self.kl_weight, 0.0)
        _int("train.kl_warmup_start", self.kl_warmup_start, 0)
        _int("train.kl_warmup_epochs", self.kl_warmup_epochs, 1)
        _number("train.rank_threshold", self.rank_threshold, 0.0, lo_open=True)
        _check(isinstance(self.low_precision, bool),
               f"train.low_precision must be true or false, not {self.low_precision!r}")
        _choice("train.weight_bits", self.weight_bits, TRAIN_WEIGHT_BITS)
        _int("train.weight_frac_bits", self.weight_frac_bits, 0, self.weight_bits - 1)
        _int("train.activation_bits", self.activation_bits, 2, 16)
        _int("train.grad_bits", self.grad_bits, 8, 32)
        _int("train.dense_epochs", self.dense_epochs, 1)
        _number("train.dense_lr", self.dense_lr, 0.0, lo_open=True)
        _int("train.quick_epochs", self.quick_epochs, 1)
        _int("train.quick_train_images", self.quick_train_images, 1)


@dataclass(frozen=True)
class QuantConfig:
    """Ultra-low-bit quantization of the trained cores and activations."""
    weight_bits: int | str = 2
    activation_bits: int = 4
    method: str = "ul2q"
    epochs: int = 3

    def __post_init__(self):
        _choice("quant.weight_bits", self.weight_bits, QUANT_WEIGHT_BITS)
        _int("quant.activation_bits", self.activation_bits, 2, 8)
        _choice("quant.method", self.method, QUANT_METHODS)
        _int("quant.epochs", self.epochs, 0)


@dataclass(frozen=True)
class HardwareConfig:
    """The accelerator: the processing-element array and the clock it is built for."""
    pe_rows: int = 16
    pe_cols: int = 20
    requant_lanes: int = 40
    activation_lanes: int = 32  # the most rows a tile reads: activation lane registers
    clock_mhz: float = 150.0
    pe_multipliers: str = "lut"  # "lut": Booth terms in logic; "dsp": multiplier blocks
    requant_multipliers: str = "lut"  # the requantizers' products: "lut" or "dsp", as above
    # Each layer keeps the contraction order it was trained in (models.tt.training_order) if
    # the network's cycles stay within this fraction of the fewest (0: always the fewest).
    order_slack: float = 0.01
    # Hardware-aware rank selection: training prunes ranks until the accelerator's cycle model
    # meets this budget (0: no budget). Give cycles or microseconds at clock_mhz, not both.
    latency_budget_cycles: int = 0
    latency_budget_us: float = 0.0

    def __post_init__(self):
        _int("hardware.pe_rows", self.pe_rows, 1, 64)
        _int("hardware.pe_cols", self.pe_cols, 1, 64)
        _int("hardware.requant_lanes", self.requant_lanes, 1, 1024)
        _int("hardware.activation_lanes", self.activation_lanes, 1, 1024)
        _number("hardware.clock_mhz", self.clock_mhz, 1.0, 1000.0)
        _check(self.pe_multipliers in ("lut", "dsp"),
               f"hardware.pe_multipliers must be 'lut' or 'dsp', not {self.pe_multipliers!r}")
        _check(self.requant_multipliers in ("lut", "dsp"),
               f"hardware.requant_multipliers must be 'lut' or 'dsp', not "
               f"{self.requant_multipliers!r}")
        _number("hardware.order_slack", self.order_slack, 0.0, 1.0)
        _int("hardware.latency_budget_cycles", self.latency_budget_cycles, 0)
        _number("hardware.latency_budget_us", self.latency_budget_us, 0.0)
        _check(not (self.latency_budget_cycles and self.latency_budget_us),
               f"give hardware.latency_budget_cycles ({self.latency_budget_cycles}) or "
               f"hardware.latency_budget_us ({self.latency_budget_us}), not both")

    @property
    def budget_cycles(self) -> int | None:
        """The latency budget in cycles, or None without one."""
        if self.latency_budget_us:
            return math.floor(self.latency_budget_us * self.clock_mhz)
        return self.latency_budget_cycles or None


SECTIONS = {"data": DataConfig, "train": TrainConfig, "quant": QuantConfig,
            "hardware": HardwareConfig}


def _build(cls, where: str, table: Any):
    _check(isinstance(table, dict), f"[{where}] must be a table, not {table!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]}; valid keys: {', '.join(names)}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.name not in table]
    if required:
        raise ConfigError(f"{where} is missing the key {required[0]!r}")
    try:
        return cls(**table)
    except TypeError as error:  # pragma: no cover - all keys are checked above
        raise ConfigError(f"{where}: {error}") from None


@dataclass(frozen=True)
class Config:
    """The whole edge3u configuration: data, network, training, quantization and hardware."""
    layers: tuple[LayerConfig, ...]
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)

    def __post_init__(self):
        _check(len(self.layers) >= 1, "network.layers must hold at least one layer")
        names = [layer.name for layer in self.layers]
        _check(len(set(names)) == len(names), f"network.layers names must be unique, not {names}")
        _check(self.layers[0].in_features == self.data.features,
               f"network.layers[{names[0]!r}].in_features is {self.layers[0].in_features}, but "
               f"{self.data.dataset} images have {self.data.features} pixels")
        _check(self.layers[-1].out_features == self.data.classes,
               f"network.layers[{names[-1]!r}].out_features is {self.layers[-1].out_features}, "
               f"but {self.data.dataset} has {self.data.classes} classes")
        _check(self.layers[-1].activation == "none",
               f"the last layer {names[-1]!r} produces logits: its activation must be 'none', "
               f"not {self.layers[-1].activation!r}")
        for a, b in zip(self.layers, self.layers[1:]):
            _check(a.out_features == b.in_features,
                   f"network.layers[{b.name!r}].in_features is {b.in_features}, but the layer "
                   f"before it, {a.name!r}, has out_features {a.out_features}")
            _check(mode_groups(a.out_modes, b.in_modes) is not None,
                   f"network.layers[{b.name!r}].in_modes {list(b.in_modes)} must group the "
                   f"out_modes {list(a.out_modes)} of {a.name!r} into consecutive products "
                   f"(the accelerator hands one layer's output to the next without a copy)")

    @classmethod
    def from_dict(cls, table: dict) -> "Config":
        _check(isinstance(table, dict), f"a configuration must be a table, not {table!r}")
        valid = ["network", *SECTIONS]
        unknown = sorted(set(table) - set(valid))
        if unknown:
            raise ConfigError(f"unknown section [{unknown[0]}]; valid sections: {', '.join(valid)}")
        network = table.get("network")
        _check(isinstance(network, dict) and set(network) == {"layers"},
               f"[network] must hold exactly the key 'layers' (an array of tables), not {network!r}")
        layers = network["layers"]
        _check(isinstance(layers, list) and layers, "network.layers must be a non-empty array of tables")
        built = tuple(_build(LayerConfig, f"network.layers[{i}]", layer)
                      for i, layer in enumerate(layers))
        sections = {name: _build(kind, name, table.get(name, {})) for name, kind in SECTIONS.items()}
        return cls(layers=built, **sections)

    def to_dict(self) -> dict:
        out = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        out["network"] = {"layers": [
            {**dataclasses.asdict(layer), "in_modes": list(layer.in_modes),
             "out_modes": list(layer.out_modes)} for layer in self.layers]}
        return out

    def replace(self, **sections) -> "Config":
        """A copy with whole sections or single fields replaced: ``replace(train={"epochs": 1})``."""
        table = self.to_dict()
        for name, values in sections.items():
            _check(name in SECTIONS, f"replace() takes sections {', '.join(SECTIONS)}, not {name!r}")
            table[name] = {**table[name], **values}
        return Config.from_dict(table)

    def layer(self, name: str) -> LayerConfig:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ConfigError(f"no layer named {name!r}; layers: {[l.name for l in self.layers]}")


def mode_groups(out_modes, in_modes) -> list[range] | None:
    """How ``in_modes`` group ``out_modes``: per input mode the range of consecutive output
    modes whose product it is (trailing size-1 output modes join the last group), or None when
    they do not group. One layer hands its output to the next this way, without a copy."""
    groups, i = [], 0
    for want in in_modes:
        start, size = i, 1
        while size < want and i < len(out_modes):
            size *= out_modes[i]
            i += 1
        if size != want:
            return None
        groups.append(range(start, i))
    if groups and all(m == 1 for m in out_modes[i:]):
        groups[-1] = range(groups[-1].start, len(out_modes))
    return groups if groups and groups[-1].stop == len(out_modes) else None


def default_config_path() -> Path:
    return Path(str(resources.files("edge3u.configs") / "fashion_mnist.toml"))


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a ``.toml`` (or a run's ``config.json``) configuration."""
    path = Path(path) if path is not None else default_config_path()
    if not path.is_file():
        raise ConfigError(f"configuration file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        table = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {error}") from None
    try:
        return Config.from_dict(table)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
