"""The accelerator on Verilator, through the cocotb batch bench, against the golden model.

Random configurations (seeded; the seed is in every case's label, so a failure replays with
``random_case(seed)``): PE arrays of 1-4 x 2-9 PEs, weight bits 1-4 and ternary, activation
bits 2-8, 1-3 layers of 2-4 cores, non-square modes, random codes, with random gaps on the
input and back-pressure on the output, the requantizers' multiplies in logic (even seeds) or
in multiplier blocks (odd seeds). 30 in the default suite; ``-m slow`` runs seeds 0-199.
"""

import numpy as np
import pytest

from edge3u.models import schedule
from edge3u.models.random_network import random_case, random_network
from edge3u.sim.verify import Case, verify

GROUP = 10


def random_cases(seeds, images=3):
    cases = []
    for seed in seeds:
        layers, rows, cols, lanes, wb, ab = random_case(seed)
        net = random_network(layers, weight_bits=wb, activation_bits=ab, seed=seed)
        requant = ("lut", "dsp")[seed % 2]
        sched = schedule.build_schedule([layer[:3] for layer in layers],
                                        [layer[3] for layer in layers], rows * cols, lanes,
                                        requant)
        pixels = int(np.prod(layers[0][0]))
        rng = np.random.default_rng(seed)
        cases.append(Case(f"random_case({seed}): {rows}x{cols} PEs, weights {wb}, "
                          f"activations {ab} bits, requantizer multiplies {requant}", net,
                          sched, rows, cols,
                          rng.integers(0, 256, (images, pixels), dtype=np.uint8),
                          gap_256=int(rng.integers(0, 200)), stall_256=int(rng.integers(0, 200)),
                          seed=seed + 1, depth=2))
    return cases


def check_group(group, root):
    seeds = range(group * GROUP, (group + 1) * GROUP)
    print(f"random_case seeds {seeds.start} .. {seeds.stop - 1}")
    report = verify(random_cases(seeds), optimize=False, root=root)
    assert report["mismatches"] == 0 and report["images"] == 3 * GROUP


@pytest.mark.parametrize("group", range(3))
def test_random_configurations(group, sim_root):
    check_group(group, sim_root)


@pytest.mark.slow
@pytest.mark.parametrize("group", range(20))  # seeds 0 .. 199
def test_random_configurations_sweep(group, sim_root):
    check_group(group, sim_root)


def shaped_case(label, shapes, rows, cols, lanes, *, images, gap, stall, seed=0, **bits):
    orders = schedule.choose_orders(shapes, rows * cols, lanes)
    net = random_network([(*s, o) for s, o in zip(shapes, orders)], seed=seed, **bits)
    sched = schedule.build_schedule(shapes, orders, rows * cols, lanes)
    rng = np.random.default_rng(seed)
    pixels = int(np.prod(shapes[0][0]))
    return Case(label, net, sched, rows, cols,
                rng.integers(0, 256, (images, pixels), dtype=np.uint8),
                gap_256=gap, stall_256=stall, seed=seed + 5, depth=4)


def test_a_stage_a_layer_and_a_network_under_handshake_stress(sim_root):
    """One TT stage (a one-core layer), one TT layer (three cores) and a two-layer network,
    each with heavy input gaps and output back-pressure, then with none: same results."""
    cases = []
    for gap, stall in ((0, 0), (190, 220)):
        cases += [
            shaped_case(f"one stage, gap {gap} stall {stall}", [((12,), (5,), (1, 1))],
                        2, 3, 8, images=4, gap=gap, stall=stall),
            shaped_case(f"one layer, gap {gap} stall {stall}",
                        [((3, 4, 2), (2, 3, 2), (1, 3, 2, 1))], 3, 4, 12, images=4, gap=gap,
                        stall=stall, seed=1),
            shaped_case(f"network, gap {gap} stall {stall}",
                        [((4, 4, 4), (2, 4, 4), (1, 4, 4, 1)), ((8, 4), (2, 5), (1, 4, 1))],
                        4, 4, 40, images=4, gap=gap, stall=stall, seed=2),
        ]
    report = verify(cases, optimize=False, root=sim_root)
    assert report["mismatches"] == 0 and report["images"] == 24
