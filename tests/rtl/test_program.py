"""Buffer words: two rows per word, every tile's rows starting a word, each element in a
place of its own inside the buffer."""

import pytest

from edge3u.models import schedule
from edge3u.models.random_network import random_design, random_network
from edge3u.rtl.layout import buffer_of_stage
from edge3u.rtl.program import build_program, word_slot

# the default network at rank 5 on the default array
SHAPES = [((4, 7, 4, 7), (4, 4, 8, 4), (1, 5, 5, 5, 1)), ((16, 32), (2, 5), (1, 5, 1))]
ORDERS = [(3, 2, 1, 0), (1, 0)]


def test_tiles_of_odd_row_counts_are_padded_to_whole_words():
    sched = schedule.build_schedule(SHAPES, ORDERS, 320, 40, "dsp", activation_lanes=32)
    sm = sched.stages[1]  # fc1's second stage: tiles of 7 rows
    assert (sm.lanes, len(sm.tiles())) == (7, 16)
    assert [word_slot(sm, row) for row in range(9)] == [
        (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (4, 0), (4, 1)]
    program = build_program(random_network([(*s, o) for s, o in zip(SHAPES, ORDERS)]), sched)
    assert [t.first_word for t in program.tiles if t.stage == 1][:3] == [0, 4, 8]
    # buffer A holds stage 1's 16 tiles of 4 words and stage 3's 128 rows in 64 words
    assert program.buffer_words == (56, 64, 64)


@pytest.mark.parametrize("seed", range(6))
def test_every_element_has_its_own_place_in_its_buffer(seed):
    net, sched, rows, cols = random_design(seed)
    program = build_program(net, sched)
    for j, sm in enumerate(sched.stages):
        src = buffer_of_stage(j)[0]
        places = {program.word_of(j, row, lane) for row in range(sm.rows)
                  for lane in range(sm.n_inner)}
        assert len(places) == sm.rows * sm.n_inner
        assert max(w for w, _ in places) < program.buffer_words[src]
        assert max(at for _, at in places) < 2 * program.buffer_lanes[src]
        # what the reader takes: a tile's i-th row is row i % 2 of word first_word + i // 2
        tiles = [t for t in program.tiles if t.stage == j]
        for (rg, _, _), t in zip(sm.tiles(), tiles):
            for i in range(t.reads):
                assert word_slot(sm, rg * sm.x_lo + i) == (t.first_word + i // 2, i % 2)
