import copy

import numpy as np

from edge3u.models import schedule
from edge3u.models.random_network import random_network
from edge3u.sim.locate import first_departure

SHAPES = [((4, 3, 2), (2, 3, 2), (1, 3, 2, 1)), ((6, 2), (2, 5), (1, 2, 1))]


def setup():
    orders = schedule.choose_orders(SHAPES, 12, 12)
    net = random_network([(*s, o) for s, o in zip(SHAPES, orders)], seed=4)
    sched = schedule.build_schedule(SHAPES, orders, 12, 12)
    pixels = np.random.default_rng(0).integers(0, 256, 24)
    return net, sched, pixels


def test_agreement_reports_nothing():
    net, sched, pixels = setup()
    assert first_departure(net, sched, 3, 4, pixels) is None


def test_a_corrupted_core_is_named_by_layer_stage_and_element():
    net, sched, pixels = setup()
    broken = copy.deepcopy(net)
    second = broken.layers[0].order[1]  # the core of layer 0's second stage
    broken.layers[0].cores[second].neg_()
    where = first_departure(net, sched, 3, 4, pixels, hardware=broken)
    assert where.startswith(f"layer 'layer0' stage 1 (core {second}): element ")
    assert "RTL code" in where and "golden" in where
