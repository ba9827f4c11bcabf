import torch
import torch.nn.functional as F

from edge3u.train.lowprec import bfp_quantize
from edge3u.train.memory import (TrainingMemory, activation_bytes_per_sample,
                                 saved_activation_bits, stored_bits)


def test_stored_bits_charges_full_width_unless_quantized():
    assert stored_bits(torch.randn(10), 8) == 32
    assert stored_bits(bfp_quantize(torch.randn(10), 8), 8) == 8
    assert stored_bits(torch.arange(256.0) / 256, 8) == 8  # unsigned 8-bit pixels
    assert stored_bits(torch.tensor([-255 / 256]), 8) == 32  # 8 bits of magnitude + sign
    assert stored_bits(torch.tensor([1, 2], dtype=torch.int16), 8) == 16


def test_dense_mlp_activations_match_the_hand_count():
    # Linear(20, 7) -> ReLU -> Linear(7, 3) -> cross-entropy, FP32. Autograd keeps per sample:
    # the input (20), the ReLU output (7, also fc2's input) and log-softmax's output (3) in
    # FP32, and the int64 label (8 bytes).
    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(20, 7), torch.nn.Linear(7, 3)
    x, y = torch.randn(4, 20), torch.tensor([0, 2, 1, 1])

    def run(batch):
        return F.cross_entropy(fc2(torch.relu(fc1(x[:batch]))), y[:batch], reduction="sum")

    assert activation_bytes_per_sample(run, 8) == 4 * (20 + 7 + 3) + 8


def test_quantized_activations_are_charged_their_bits():
    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(20, 7), torch.nn.Linear(7, 3)
    x, y = torch.randint(0, 256, (4, 20)).float() / 256, torch.tensor([0, 2, 1, 1])

    def run(batch):
        h = torch.relu(bfp_quantize(fc1(x[:batch]), 8, dim=0))
        return F.cross_entropy(fc2(h), y[:batch], reduction="sum")

    # input and hidden at 8 bits, log-softmax output still FP32, the label int64
    assert activation_bytes_per_sample(run, 8) == 20 + 7 + 4 * 3 + 8
    two, three = (saved_activation_bits(lambda b=b: run(b), 8) for b in (2, 3))
    assert three[8] - two[8] == 27 and three[32] - two[32] == 3


def test_total():
    m = TrainingMemory(params=1, grads=2, optimizer=3, activations=4, other=5)
    assert m.total == 15 and m.as_dict()["total"] == 15
