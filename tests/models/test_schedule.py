import itertools

import pytest
import torch

from edge3u.models import schedule, tt

DEFAULT = [((4, 7, 4, 7), (4, 4, 8, 4), (1, 5, 5, 5, 1)), ((16, 32), (2, 5), (1, 5, 1))]


def test_every_output_is_written_exactly_once_and_the_bound_holds():
    orders = schedule.choose_orders(DEFAULT, 320, 40)
    sched = schedule.build_schedule(DEFAULT, orders, 320, 40)
    for sm in sched.stages:
        written = sum(w for _, w in sm.tile_io()) * sm.granule
        assert written == sm.rows * sm.n_cols
        assert sm.pes <= 320 and sm.granule <= 40
        assert sm.cycles() >= sm.bound(320)
    assert sched.macs == sum(tt.tt_macs(*shape, order) for shape, order in zip(DEFAULT, orders))
    assert sched.cycles() <= 1500  # the default network's latency target


def test_the_chosen_orders_are_the_fastest():
    shapes = [((2, 3, 4), (3, 2, 2), (1, 2, 3, 1)), ((6, 2), (2, 5), (1, 3, 1))]
    best = min(schedule.build_schedule(shapes, o, 12, 12).cycles()
               for o in itertools.product(tt.valid_orders(3), tt.valid_orders(2)))
    chosen = schedule.choose_orders(shapes, 12, 12)
    assert schedule.build_schedule(shapes, chosen, 12, 12).cycles() == best


def test_a_granule_larger_than_the_array_is_refused_with_the_sizes():
    with pytest.raises(schedule.ScheduleError, match="granules of at least 10 outputs, more than "
                                                     "the 4 PEs"):
        schedule.build_schedule([((6, 2), (2, 5), (1, 3, 1))], [(0, 1)], 4, 40)


def test_layers_must_hand_over_without_a_copy():
    shapes = [((4, 6), (3, 4), (1, 2, 1)), ((4, 3), (2, 5), (1, 2, 1))]
    with pytest.raises(schedule.ScheduleError, match=r"in_modes \(4, 3\) must group the previous "
                                                     r"layer's out_modes \(3, 4\)"):
        schedule.build_schedule(shapes, [(0, 1), (0, 1)], 16, 16)


def test_window_rule_on_a_hand_computed_stage():
    # one layer, one core: 12 inputs -> 5 outputs; the logits are one granule of 5
    sched = schedule.build_schedule([((12,), (5,), (1, 1))], [(0,)], 8, 8)
    (sm,) = sched.stages
    assert (sm.rows, sm.n_inner, sm.n_cols, sm.granule, sm.q) == (1, 12, 5, 5, 1)
    # read 1 row (+ its latency), one window of 12, then MAC latency, one granule, drain
    assert sm.cycles() == 1 + schedule.ROW_LATENCY + 12 + schedule.MAC_LATENCY + 1 + \
        schedule.DRAIN_LATENCY
    assert sched.cycles() == sm.cycles() + 3  # argmax tree over 5 logits: 3 levels
    assert sched.bound() == 8  # ceil(60 MACs / 8 PEs)


@pytest.mark.parametrize("classes,cycles", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (10, 4),
                                            (16, 4), (17, 5)])
def test_argmax_takes_one_cycle_per_tree_level(classes, cycles):
    assert schedule.argmax_cycles(classes) == cycles


def test_multiplier_blocks_take_three_drain_cycles_off_every_stage():
    shapes = [((4, 4, 4), (2, 4, 4), (1, 4, 4, 1)), ((8, 4), (2, 5), (1, 4, 1))]
    orders = schedule.choose_orders(shapes, 16, 40)
    lut = schedule.build_schedule(shapes, orders, 16, 40)
    dsp = schedule.build_schedule(shapes, orders, 16, 40, "dsp")
    assert (lut.requant, dsp.requant) == ("lut", "dsp")
    # the logic version's 15 partial products take 4 adder levels, the block one register
    assert schedule.drain_latency("lut") == schedule.DRAIN_LATENCY == 11
    assert schedule.drain_latency("dsp") == 8
    assert [s.cycles() - d.cycles() for s, d in zip(lut.stages, dsp.stages)] == [3] * 5
    assert lut.cycles() - dsp.cycles() == 15 and lut.bound() == dsp.bound()


def test_an_unknown_requantizer_multiplier_is_refused_by_name():
    with pytest.raises(ValueError, match=r"one of lut, dsp, not 'dsp48'"):
        schedule.build_schedule([((12,), (5,), (1, 1))], [(0,)], 8, 8, "dsp48")


@pytest.mark.parametrize("slack, orders, cycles", [(0.05, ((3, 2, 1, 0), (0, 1)), 1296),
                                                   (0.01, ((3, 2, 1, 0), (1, 0)), 1238)])
def test_layers_keep_their_training_order_within_the_slack(slack, orders, cycles):
    from edge3u.config import HardwareConfig

    # the default network at rank 5: fc1 trains right to left, fc2 from its first core
    shapes = [((4, 7, 4, 7), (4, 4, 8, 4), (1, 5, 5, 5, 1)), ((16, 32), (2, 5), (1, 5, 1))]
    assert [tt.training_order(*s) for s in shapes] == [(3, 2, 1, 0), (0, 1)]
    hw = HardwareConfig(requant_multipliers="dsp", order_slack=slack)
    assert schedule.choose_orders(shapes, 320, 40) == ((3, 2, 1, 0), (1, 0))
    # fc2's training order costs 58 cycles more (4.7 %) with tiles of at most 32 rows
    assert schedule.build_schedule(shapes, [(3, 2, 1, 0), (0, 1)], 320, 40, "dsp",
                                   activation_lanes=32).cycles() == 1238 + 58
    layers = [(name, [torch.zeros(r[k], n[k], m[k], r[k + 1]) for k in range(len(n))])
              for name, (n, m, r) in zip(("fc1", "fc2"), shapes)]
    assert tuple(schedule.hardware_orders(layers, hw).values()) == orders
    assert schedule.network_cycles(shapes, hw) == cycles


def test_tiles_read_at_most_the_activation_lanes():
    shapes = [((4, 7, 4, 7), (4, 4, 8, 4), (1, 5, 5, 5, 1)), ((16, 32), (2, 5), (1, 5, 1))]
    orders = [(3, 2, 1, 0), (1, 0)]
    free = schedule.build_schedule(shapes, orders, 320, 40, "dsp")
    capped = schedule.build_schedule(shapes, orders, 320, 40, "dsp", activation_lanes=16)
    # fc1's last stage: 4 tiles of 4 granules of 32 from 32 rows each, or 8 tiles of 4
    # granules of 16 from 16 rows, 22 cycles more
    assert (free.stages[3].lanes, free.stages[3].granule, len(free.stages[3].tiles())) == \
        (32, 32, 4)
    assert (capped.stages[3].lanes, capped.stages[3].granule,
            len(capped.stages[3].tiles())) == (16, 16, 8)
    assert capped.stages[3].cycles() - free.stages[3].cycles() == 22
    assert max(s.lanes for s in capped.stages) == 16 and capped.cycles() == 1260
    with pytest.raises(schedule.ScheduleError, match="than the 2 activation lanes"):
        schedule.build_schedule(shapes, orders, 320, 40, "dsp", activation_lanes=2)
