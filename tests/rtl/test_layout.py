"""The memory layout and its transaction-level model against the golden model: every reshape
between stages is an address computation, so every stage's buffer must hold exactly the golden
model's stage output at the mapped positions."""

import numpy as np
import pytest
import torch

from edge3u.models import golden, schedule
from edge3u.models.random_network import random_design, random_network
from edge3u.rtl.layout import LOGITS, buffer_plan, build_layout, execute, golden_index


def case(seed):
    net, sched, rows, cols = random_design(seed)
    return net, sched


@pytest.mark.parametrize("seed", range(40))
def test_every_stage_buffer_equals_the_golden_stage_output(seed):
    net, sched = case(seed)
    layout = build_layout(net, sched)
    pixels = torch.randint(0, 256, (1, len(layout.input_addr)),
                           generator=torch.Generator().manual_seed(seed))
    logits, trace = golden.int_forward(pixels, net, return_stages=True)
    want = []
    for layer in net.layers:
        stages = trace[layer.name]["stages"]
        want += stages[:-1] + [trace[layer.name]["output"]]
    seen = []
    got = execute(layout, pixels[0].numpy(), trace=seen)
    assert got.tolist() == logits[0].tolist()
    for j, buffer in enumerate(seen):
        expected = want[j][0]
        assert len(buffer) == expected.numel(), f"stage {j} wrote {len(buffer)} of {expected.numel()}"
        final = sched.stages[j].final  # the trace holds the logits by class
        for (row, lane), value in buffer.items():
            index = lane if final else golden_index(sched, j, row, lane)
            assert value == int(expected[index]), (j, row, lane)


def test_input_table_is_a_permutation_of_the_pixels():
    net, sched = case(3)
    layout = build_layout(net, sched)
    cells = set(zip(layout.input_addr.tolist(), layout.input_lane.tolist()))
    assert len(cells) == len(layout.input_addr)
    assert set(np.sort(layout.logit_class)) == set(range(sched.classes))


def test_a_stage_of_few_wide_rows_reads_a_buffer_of_its_own():
    # the default network at rank 5: fc2's last stage reads 5 rows of 80 lanes, the other
    # stages 112 or 128 rows of 20 or 35
    shapes = [((4, 7, 4, 7), (4, 4, 8, 4), (1, 5, 5, 5, 1)), ((16, 32), (2, 5), (1, 5, 1))]
    sched = schedule.build_schedule(shapes, [(3, 2, 1, 0), (1, 0)], 320, 40, "dsp",
                                    activation_lanes=32)
    assert [(sm.rows, sm.n_inner) for sm in sched.stages] == [
        (112, 7), (112, 20), (128, 35), (128, 20), (16, 32), (5, 80)]
    # A: 128 rows of 20, B: 128 of 35, C: 5 of 80 (7,440 elements, where A and B alone
    # would hold 128 rows of 80 and 128 of 35: 14,720)
    assert buffer_plan(sched.stages) == ((0, 1), (1, 2), (2, 1), (1, 2), (2, 3), (3, LOGITS))
    net = random_network([(*s, o) for s, o in zip(shapes, [(3, 2, 1, 0), (1, 0)])])
    layout = build_layout(net, sched)
    assert (layout.buffer_rows, layout.buffer_lanes) == ((112, 128, 128, 5), (7, 20, 35, 80))


@pytest.mark.parametrize("seed", range(40))
def test_no_stage_writes_the_buffer_it_reads(seed):
    plan = buffer_plan(case(seed)[1].stages)
    assert plan[0][0] == 0 and plan[-1][1] == LOGITS
    assert all(src != dst for src, dst in plan)
    assert all(plan[j][1] == plan[j + 1][0] for j in range(len(plan) - 1))
