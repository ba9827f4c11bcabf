import pytest
import torch

from edge3u.models.golden import int_forward, int_predict
from edge3u.train.qat import QuantTTNetwork, to_int_network
from edge3u.train.quantize_run import accuracies, qat
from edge3u.train.run import model_state
from edge3u.train.trainer import Trainer


@pytest.fixture(scope="module")
def trained(digits_config, digits):
    trainer = Trainer(digits_config, digits)
    for epoch in range(3):
        trainer.train_epoch(epoch)
    return model_state(trainer)


@pytest.mark.parametrize("method, bits", [("ul2q", 2), ("uniform", 4), ("lsq", "ternary")])
def test_integer_network_agrees_with_fake_quant(trained, digits, method, bits):
    net = qat(trained, digits, method=method, weight_bits=bits, activation_bits=4, epochs=1,
              batch_size=32, seed=0)
    figures = accuracies(net, digits)
    assert figures["int_vs_fake_agreement"] >= 0.997  # at most one of the 360 test images
    assert figures["int_accuracy"] > 0.5


def test_qat_recovers_what_two_bit_cores_lose(trained, digits):
    # calibrated but not fine-tuned, 2-bit cores lose about a third of the float accuracy;
    # the default QAT schedule (Adam, cosine decay) wins it back
    float_acc = trained["test_accuracy"]
    figures = {epochs: accuracies(qat(trained, digits, method="ul2q", weight_bits=2,
                                      activation_bits=4, epochs=epochs, batch_size=32, seed=0),
                                  digits)["int_accuracy"] for epochs in (0, 6)}
    assert figures[0] < float_acc - 0.2
    assert figures[6] > float_acc - 0.03


def _fake_quant_factors(net):
    """Each requantizer's real factor in the fake-quant model, ``scale_in * core / scale_out``."""
    scale, factors = 1 / 256, []
    for layer in net.layers:
        cores = [q.scale_for(c) for q, c in zip(layer.weight_quant, layer.cores)]
        for quant, k in zip(layer.stage_quant, layer.order[:-1]):
            factors.append(scale * cores[k] / quant.scale)
            scale = quant.scale
        if layer.relu:
            factors.append(scale * cores[layer.order[-1]] * layer.gamma / layer.out_quant.scale)
            scale = layer.out_quant.scale
    return factors


def test_scales_snap_to_the_integer_requantization(trained, digits):
    net = qat(trained, digits, method="ul2q", weight_bits=2, activation_bits=4, epochs=1,
              batch_size=32, seed=0)
    int_net = to_int_network(net)
    hardware = [rq.scale for layer in int_net.layers
                for rq in [*layer.stage_requant, layer.out_requant] if rq is not None]
    factors = _fake_quant_factors(net)
    assert len(factors) == len(hardware) == 4
    for factor, exact in zip(factors, hardware):
        assert factor == pytest.approx(exact, rel=1e-6)  # a bare 15-bit rounding is ~1e-5 off
    net.layers[0].stage_quant[0].set_scale(net.layers[0].stage_quant[0].scale * (1 + 3e-5))
    assert _fake_quant_factors(net)[0] != pytest.approx(hardware[0], rel=1e-6)
    with pytest.raises(ValueError, match="positive finite number, not -1.0"):
        net.layers[0].stage_quant[0].set_scale(-1.0)


def test_integer_stages_are_the_fake_quant_codes(trained, digits):
    net = qat(trained, digits, method="ul2q", weight_bits=3, activation_bits=6, epochs=0,
              batch_size=32, seed=0)
    x = torch.tensor(digits.x_test[:50])
    int_net = to_int_network(net)
    _, trace = int_forward(x, int_net, return_stages=True)
    layer = net.layers[0]
    seen = []
    quantizers = iter(layer.stage_quant)

    def spy(h):
        out = next(quantizers)(h.t()).t()
        seen.append(out.t() / layer.stage_quant[len(seen)].scale)
        return out

    from edge3u.models import tt
    cores = [q(c) for q, c in zip(layer.weight_quant, layer.cores)]
    with torch.no_grad():
        tt.tt_matvec(x.float() / 256, cores, layer.order, between=spy)
    for fake, integer in zip(seen, trace["fc1"]["stages"]):
        codes = torch.round(fake).to(torch.int64)
        assert float((codes == integer).float().mean()) > 0.995


def test_quantizers_are_where_the_hardware_quantizes(trained):
    net = QuantTTNetwork(trained, method="lsq", weight_bits=2, activation_bits=4)
    fc1, fc2 = net.layers
    assert len(fc1.stage_quant) == len(fc1.cores) - 1 and fc1.relu and fc1.out_quant.code_min == 0
    assert not fc2.relu and fc2.out_quant is None
    assert fc1.stage_quant[0].code_min == -8 and fc1.stage_quant[0].code_max == 7


def test_int_predictions_are_argmax_of_int_logits(trained, digits):
    net = qat(trained, digits, method="ul2q", weight_bits=2, activation_bits=4, epochs=0,
              batch_size=32, seed=0)
    x = torch.tensor(digits.x_test[:20])
    int_net = to_int_network(net)
    assert torch.equal(int_predict(x, int_net), int_forward(x, int_net).argmax(1))
