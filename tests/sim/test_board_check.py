"""The board top on Verilator, driven bit by bit on its UART pins by the cocotb bench: every
answer equals the golden model, the identify reply names the design and the cycle counter
equals the cycle model."""

import numpy as np
import pytest

from edge3u.models.random_network import random_design
from edge3u.sim.board_check import check_board


@pytest.mark.parametrize("seed", [2, 7])
def test_uart_answers_equal_the_golden_model(seed, sim_root):
    net, sched, rows, cols = random_design(seed)
    pixels = int(np.prod(net.layers[0].in_modes))
    images = np.random.default_rng(seed).integers(0, 256, (4, pixels))
    report = check_board(net, sched, rows, cols, images, divisor=5, root=sim_root)
    assert report == {"images": 4, "problems": []}
