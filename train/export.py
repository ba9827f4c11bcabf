"""``edge3u export``: the quantized run's integer network as ROM images in ``RUN/rom/``."""

from __future__ import annotations

from pathlib import Path

from edge3u.config import load_config
from edge3u.models.rom import write_rom
from edge3u.runs import CONFIG, atomic_write
from edge3u.train.qat import to_int_network
from edge3u.train.quantize_run import load_quant_state

__all__ = ["export_run", "ROM_DIR"]

ROM_DIR = "rom"


def export_run(run: str | Path) -> dict:
    """Write ``RUN/rom/`` from ``RUN/quant.pt``; returns the manifest."""
    run = Path(run)
    net, figures = load_quant_state(run)
    config = load_config(run / CONFIG)
    return write_rom(to_int_network(net), run / ROM_DIR, config,
                     weight_bits=figures["weight_bits"],
                     activation_bits=figures["activation_bits"],
                     write=lambda path, text: atomic_write(path, lambda f: f.write(text)))
