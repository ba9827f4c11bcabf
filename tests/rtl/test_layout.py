"""The memory layout and its transaction-level model against the golden model: every reshape
between stages is an address computation, so every stage's buffer must hold exactly the golden
model's stage output at the mapped positions."""

import numpy as np
import pytest
import torch

from edge3u.models import golden
from edge3u.models.random_network import random_design
from edge3u.rtl.layout import build_layout, execute, golden_index


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
