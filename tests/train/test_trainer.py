import torch

from edge3u.train.trainer import Trainer, kl_weight_at


def test_learns_digits(digits_config, digits):
    trainer = Trainer(digits_config, digits)
    for epoch in range(4):
        record = trainer.train_epoch(epoch)
    assert record.test_accuracy > 0.85
    assert [r.epoch for r in trainer.history] == [1, 2, 3, 4]


def test_cores_stay_in_eight_bit_fixed_point(digits_config, digits):
    trainer = Trainer(digits_config, digits.subset(200))
    trainer.train_epoch(0)
    for core in trainer.model.core_parameters():
        codes = core.detach() * 64
        assert torch.equal(codes, torch.round(codes))
        assert codes.min() >= -128 and codes.max() <= 127


def test_resume_reaches_the_same_result(digits_config, digits):
    data = digits.subset(400)
    straight = Trainer(digits_config, data)
    straight.train_epoch(0)
    straight.train_epoch(1)
    first = Trainer(digits_config, data)
    first.train_epoch(0)
    state = first.state_dict()
    resumed = Trainer(digits_config, data)
    resumed.load_state_dict(state)
    resumed.train_epoch(1)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert straight.history[-1].test_accuracy == resumed.history[-1].test_accuracy


def test_strong_prior_prunes_ranks_for_real(digits_config, digits):
    config = digits_config.replace(train={"kl_weight": 0.05, "kl_warmup_start": 0,
                                          "kl_warmup_epochs": 1, "rank_threshold": 1e-3})
    trainer = Trainer(config, digits)
    start = trainer.parameter_count()
    for epoch in range(3):
        trainer.train_epoch(epoch)
    ranks = trainer.history[-1].ranks
    assert sum(ranks["fc1"]) + sum(ranks["fc2"]) < 2 + 4 + 4 + 2 + 4 + 2  # started at max ranks
    assert trainer.parameter_count() < start
    for layer, (name, r) in zip(trainer.model.layers, ranks.items()):
        assert tuple(c.shape[0] for c in layer.cores) + (1,) == tuple(r)


def test_micro_batches_one_by_one_give_the_host_parallel_gradient(digits_config, digits):
    sums = []
    for parallel in (True, False):
        config = digits_config.replace(train={"host_parallel": parallel, "batch_size": 8})
        trainer = Trainer(config, digits.subset(8))
        x, y = trainer.x_train[:8], trainer.y_train[:8]
        width = 8 if parallel else 1
        for start in range(0, 8, width):
            loss = torch.nn.functional.cross_entropy(
                trainer.model(x[start:start + width]), y[start:start + width], reduction="sum") / 8
            loss.backward()
            trainer.optimizer.accumulate()
        sums.append([a.clone() for a in trainer.optimizer.accumulators.values()])
    for a, b in zip(*sums):
        assert torch.allclose(a, b, rtol=1e-3, atol=2e-4 * float(a.abs().max()))


def test_kl_weight_ramps_linearly(digits_config):
    t = digits_config.train  # start 1, warm-up 2 epochs
    assert kl_weight_at(digits_config, 0.5) == 0
    assert kl_weight_at(digits_config, 2.0) == t.kl_weight / 2
    assert kl_weight_at(digits_config, 10) == t.kl_weight


def test_memory_is_charged_for_a_micro_batch(digits_config, digits):
    one = Trainer(digits_config, digits.subset(8)).memory()
    four = Trainer(digits_config.replace(train={"micro_batch": 4}), digits.subset(8)).memory()
    assert four.activations == 4 * one.activations
    assert one.params < one.grads  # 8-bit weights, 16-bit gradient accumulators


def test_four_bit_cores_train_on_their_grid(digits_config, digits):
    config = digits_config.replace(train={"weight_bits": 4, "weight_frac_bits": 2})
    trainer = Trainer(config, digits.subset(300))
    record = trainer.train_epoch(0)
    for core in trainer.model.core_parameters():
        codes = core.detach() * 4
        assert torch.equal(codes, torch.round(codes)) and codes.abs().max() <= 8
    assert trainer.memory().params < Trainer(digits_config, digits.subset(300)).memory().params
    assert record.test_accuracy > 0.1
