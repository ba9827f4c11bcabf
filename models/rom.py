"""Weight ROM images: an :class:`IntNetwork` as ``$readmemh`` files plus a manifest, and back.

A ROM directory holds, per layer ``L``:

* ``L_coreK.hex`` — core ``K``'s codes in the core's natural layout ``(r_{k-1}, n_k, m_k, r_k)``,
  row-major, one word per line. Mid-rise formats (1–4 bits) store the level index
  ``i = (c + 2**b - 1) / 2`` in ``b`` bits; ternary stores ``c`` as 2-bit two's complement.
* ``L_bias.hex`` — the bias, two's complement in the last stage's accumulator width.
* ``L_requant.hex`` — one word per requantizer (the stages in stage order, then the layer
  output if any): ``multiplier << 8 | shift`` (15 + 8 bits); the clamp bounds are in the
  manifest.

and ``manifest.json``: format version, the config, shapes, bit-widths, stage order and GEMM shapes,
accumulator widths, multipliers and shifts, and a sha256 per file. :func:`load_rom` checks all of
it (version, checksums, word counts, code ranges, shapes against the config) and refuses an image
that does not match, naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from edge3u.config import Config
from edge3u.models.golden import IntLayer, IntNetwork, Requant

__all__ = ["RomError", "write_rom", "load_rom", "MANIFEST", "ROM_FORMAT", "ROM_VERSION",
           "encode_codes", "decode_codes", "hex_lines"]

MANIFEST = "manifest.json"
ROM_FORMAT = "edge3u-rom"
ROM_VERSION = 1


class RomError(ValueError):
    """A ROM image is corrupted, incomplete or does not match the configuration."""


def _storage_bits(weight_bits) -> int:
    return 2 if weight_bits == "ternary" else int(weight_bits)


def encode_codes(codes: torch.Tensor, weight_bits) -> torch.Tensor:
    """Core codes to ROM words (see the module docstring)."""
    if weight_bits == "ternary":
        return codes & 0b11
    return (codes + (1 << weight_bits) - 1) >> 1


def decode_codes(words: torch.Tensor, weight_bits) -> torch.Tensor:
    """ROM words back to core codes."""
    if weight_bits == "ternary":
        return torch.where(words >= 2, words - 4, words)
    return 2 * words - ((1 << weight_bits) - 1)


def hex_lines(values, bits: int) -> str:
    """``$readmemh`` text: one word per line, two's complement in ``bits`` (a tensor is
    flattened)."""
    digits = max(1, math.ceil(bits / 4))
    mask = (1 << bits) - 1
    if isinstance(values, torch.Tensor):
        values = values.flatten().tolist()
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in values)


def _read_hex(path: Path, words: int, bits: int) -> torch.Tensor:
    try:
        values = [int(line, 16) for line in path.read_text().split()]
    except ValueError as error:
        raise RomError(f"{path.name}: not a hex word per line ({error})") from None
    if len(values) != words:
        raise RomError(f"{path.name}: holds {len(values)} words, the manifest says {words}")
    if values and max(values) >= 1 << bits:
        raise RomError(f"{path.name}: word 0x{max(values):x} does not fit {bits} bits")
    return torch.tensor(values, dtype=torch.int64)


def _signed(values: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.where(values >= 1 << (bits - 1), values - (1 << bits), values)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _requant_dict(rq: Requant | None):
    return None if rq is None else {"multiplier": rq.multiplier, "shift": rq.shift,
                                    "lo": rq.lo, "hi": rq.hi}


def write_rom(net: IntNetwork, directory: str | Path, config: Config, *, weight_bits,
              activation_bits: int, write=None) -> dict:
    """Write ``net`` into ``directory``; returns the manifest (also written, last).

    ``write(path, text)`` writes one file (default: plain write); pass an atomic writer.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write = write or (lambda path, text: Path(path).write_text(text))
    storage = _storage_bits(weight_bits)
    layers, rom_bits = [], 0

    def emit(name: str, text: str, words: int, bits: int) -> dict:
        nonlocal rom_bits
        path = directory / name
        write(path, text)
        rom_bits += words * bits
        return {"file": name, "words": words, "bits": bits, "sha256": _sha256(path)}

    for layer in net.layers:
        acc_bits = layer.accumulator_bits()
        cores = []
        for k, core in enumerate(layer.cores):
            entry = emit(f"{layer.name}_core{k}.hex",
                         hex_lines(encode_codes(core, weight_bits), storage), core.numel(),
                         storage)
            cores.append({**entry, "shape": list(core.shape)})
        bias = emit(f"{layer.name}_bias.hex", hex_lines(layer.bias, acc_bits[-1]),
                    layer.bias.numel(), acc_bits[-1])
        requants = [*layer.stage_requant] + ([layer.out_requant] if layer.out_requant else [])
        words = torch.tensor([rq.multiplier << 8 | rq.shift for rq in requants], dtype=torch.int64)
        requant = emit(f"{layer.name}_requant.hex", hex_lines(words, 23), len(requants), 23)
        stages = [{"core": k, "rows": s.rows, "inner": s.inner, "cols": s.cols,
                   "contracted": s.contracted, "acc_bits": bits,
                   "requant": _requant_dict(layer.stage_requant[i])
                   if i < len(layer.stage_requant) else None}
                  for i, (k, s, bits) in enumerate(zip(layer.order, layer.stages(), acc_bits))]
        layers.append({"name": layer.name, "in_modes": list(layer.in_modes),
                       "out_modes": list(layer.out_modes), "ranks": list(layer.ranks),
                       "order": list(layer.order), "in_max": layer.in_max, "cores": cores,
                       "bias": bias, "requant": requant, "stages": stages,
                       "out_requant": _requant_dict(layer.out_requant),
                       "relu": layer.out_requant is not None})
    manifest = {"format": ROM_FORMAT, "version": ROM_VERSION, "config": config.to_dict(),
                "input_bits": net.input_bits, "weight_bits": weight_bits,
                "weight_storage_bits": storage, "activation_bits": activation_bits,
                "layers": layers, "rom_bits": rom_bits}
    write(directory / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _requant(entry, where: str) -> Requant:
    try:
        return Requant(**entry)
    except (TypeError, ValueError) as error:
        raise RomError(f"{where}: bad requantizer {entry!r}: {error}") from None


def load_rom(directory: str | Path, config: Config | None = None) -> tuple[IntNetwork, dict]:
    """Read and validate a ROM directory; returns the network and the manifest.

    With ``config`` the layers must match it (names, mode factorisations, ranks within the
    maximum ranks). Raises :class:`RomError` on any mismatch.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise RomError(f"{path} does not exist: run `edge3u export` to write the ROM images")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RomError(f"{path}: not valid JSON ({error})") from None
    if manifest.get("format") != ROM_FORMAT or manifest.get("version") != ROM_VERSION:
        raise RomError(f"{path}: format {manifest.get('format')!r} version "
                       f"{manifest.get('version')!r}; this edge3u reads {ROM_FORMAT!r} version "
                       f"{ROM_VERSION}")
    weight_bits = manifest["weight_bits"]
    if weight_bits not in (1, 2, 3, 4, "ternary"):
        raise RomError(f"{path}: weight_bits {weight_bits!r} is not 1, 2, 3, 4 or 'ternary'")
    if config is not None:
        names = [layer["name"] for layer in manifest["layers"]]
        if names != [layer.name for layer in config.layers]:
            raise RomError(f"{path}: layers {names} do not match the config's "
                           f"{[layer.name for layer in config.layers]}")
    layers = []
    for i, entry in enumerate(manifest["layers"]):
        name = entry["name"]

        def read(item: dict) -> torch.Tensor:
            file = directory / item["file"]
            if not file.is_file():
                raise RomError(f"{file} is missing")
            if _sha256(file) != item["sha256"]:
                raise RomError(f"{file.name}: sha256 does not match the manifest (corrupted or "
                               f"edited)")
            return _read_hex(file, item["words"], item["bits"])

        cores = []
        for k, item in enumerate(entry["cores"]):
            if item["bits"] != _storage_bits(weight_bits):
                raise RomError(f"{item['file']}: {item['bits']}-bit words, but {weight_bits!r} "
                               f"cores need {_storage_bits(weight_bits)}")
            words = read(item)
            if weight_bits == "ternary" and bool((words == 2).any()):
                raise RomError(f"{item['file']}: word 2 is not a ternary code")
            cores.append(decode_codes(words, weight_bits).reshape(item["shape"]))
        if config is not None:
            layer_config = config.layers[i]
            modes = (tuple(c.shape[1] for c in cores), tuple(c.shape[2] for c in cores))
            if modes != (layer_config.in_modes, layer_config.out_modes):
                raise RomError(f"{name}: cores have modes {modes}, the config says "
                               f"{(layer_config.in_modes, layer_config.out_modes)}")
            ranks = [c.shape[0] for c in cores[1:]]
            if any(r > m for r, m in zip(ranks, layer_config.max_ranks[1:-1])):
                raise RomError(f"{name}: ranks {ranks} exceed the config's maximum "
                               f"{list(layer_config.max_ranks[1:-1])}")
        bias = _signed(read(entry["bias"]), entry["bias"]["bits"])
        requant_words = read(entry["requant"])
        stage_requant = [_requant(s["requant"], f"{name} stage {j}")
                         for j, s in enumerate(entry["stages"][:-1])]
        out_requant = (_requant(entry["out_requant"], f"{name} output")
                       if entry["out_requant"] else None)
        expected = [rq.multiplier << 8 | rq.shift
                    for rq in stage_requant + ([out_requant] if out_requant else [])]
        if requant_words.tolist() != expected:
            raise RomError(f"{entry['requant']['file']}: requantizers differ from the manifest")
        try:
            layer = IntLayer(name, cores, tuple(entry["order"]), stage_requant, bias,
                             out_requant, entry["in_max"])
        except ValueError as error:
            raise RomError(f"{name}: {error}") from None
        if layer.accumulator_bits() != [s["acc_bits"] for s in entry["stages"]]:
            raise RomError(f"{name}: accumulator widths {layer.accumulator_bits()} differ from "
                           f"the manifest's {[s['acc_bits'] for s in entry['stages']]}")
        layers.append(layer)
    return IntNetwork(layers, manifest["input_bits"]), manifest
