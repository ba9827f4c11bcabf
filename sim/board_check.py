"""The board top on Verilator, spoken to over its UART pins by ``sim/benches/uart.py``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from edge3u.models.golden import IntNetwork
from edge3u.models.schedule import Schedule
from edge3u.rtl.board import BoardTop
from edge3u.rtl.program import build_program
from edge3u.sim.runner import build, run_bench

__all__ = ["check_board"]

BENCH = "edge3u.sim.benches.uart"
NAME = "edge3u_board"


def check_board(network: IntNetwork, sched: Schedule, rows: int, cols: int, images: np.ndarray,
                *, divisor: int = 8, root: Path | None = None) -> dict:
    """Build the board top for ``network`` (no PLL) and run ``images`` through its UART;
    raises ``SimError`` on any difference from the golden model."""
    top = BoardTop(build_program(network, sched), rows, cols, divisor=divisor)
    build_dir = build(top, NAME, optimize=False, root=root)
    data_dir = build_dir / "run"
    data_dir.mkdir(exist_ok=True)
    torch.save(network, data_dir / "network.pt")
    np.save(data_dir / "images.npy", images.astype(np.uint8))
    spec = {"network": str(data_dir / "network.pt"), "images": str(data_dir / "images.npy"),
            "divisor": divisor, "cycles": sched.cycles(), "identity": asdict(top.identity)}
    return run_bench(build_dir, NAME, BENCH, spec, test_dir=data_dir)
