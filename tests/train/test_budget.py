"""Hardware-aware rank selection: training under a latency budget ends with ranks whose cycles,
by the same cycle model the RTL is tested against, meet it; impossible budgets are refused."""

import pytest

from edge3u.config import ConfigError
from edge3u.models.schedule import network_cycles
from edge3u.train.budget import check_budget, cycles_of, fit_budget
from edge3u.train.trainer import Trainer


def test_training_under_a_budget_meets_it(digits_config, digits):
    budget = 210  # rank 4 everywhere takes 361 cycles on the 4 x 4 array, rank 1 takes 197
    config = digits_config.replace(hardware={"latency_budget_cycles": budget})
    trainer = Trainer(config, digits.subset(600))
    free = cycles_of(trainer.model.layers, config.hardware)
    assert free > budget
    for epoch in range(2):
        record = trainer.train_epoch(epoch)
    shapes = [(layer.in_modes, layer.out_modes, tuple(layer.ranks))
              for layer in trainer.model.layers]
    assert network_cycles(shapes, config.hardware) <= budget
    assert record.test_accuracy > 0.5  # still a classifier after the cuts


def test_cuts_stop_as_soon_as_the_budget_holds(digits_config, digits):
    trainer = Trainer(digits_config, digits.subset(100))
    hw = digits_config.hardware
    start = cycles_of(trainer.model.layers, hw)
    cuts = fit_budget(trainer.model, trainer.scales, hw, start - 1)
    assert cuts and cuts[-1].cycles_after <= start - 1
    assert all(c.cycles_before > start - 1 for c in cuts)  # no cut once the budget held
    assert fit_budget(trainer.model, trainer.scales, hw, start) == []


def test_an_impossible_budget_is_refused_up_front(digits_config):
    config = digits_config.replace(hardware={"latency_budget_cycles": 100})
    with pytest.raises(ConfigError, match="budget of 100 cycles cannot be met: with every rank "
                                          "at 1 the network takes 197 cycles"):
        check_budget(config)
    assert check_budget(digits_config) is None


def test_budget_in_microseconds_uses_the_clock(digits_config):
    config = digits_config.replace(hardware={"latency_budget_us": 1.5, "clock_mhz": 100.0})
    assert config.hardware.budget_cycles == 150
    with pytest.raises(ConfigError, match="not both"):
        digits_config.replace(hardware={"latency_budget_us": 1.5, "latency_budget_cycles": 9})
