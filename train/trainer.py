"""Rank-adaptive, low-precision training of the TT network, epoch by epoch, resumable.

One :class:`Trainer` owns the model, the rank scales and the optimizer. Each epoch is a pure
function of the state at its start, the seed and the epoch number (data order and rounding noise
are seeded from both), so a run resumed from its last checkpoint ends exactly where an
uninterrupted run ends.

A step: for every micro-batch, forward, loss, backward, add the gradient into the low-precision
accumulators (``train.host_parallel`` evaluates a step's micro-batches side by side in one pass:
they are independent given the weights and every activation is quantized per sample, so only the
accumulator's intermediate roundings differ from the one-by-one loop; the memory accounting
still charges one micro-batch, which is what the device holds); then clipping, the update, the
KL term of the rank prior as a proximal shrink (weight ramped linearly from zero) and stochastic
rounding; then the closed-form (EM) update of the rank scales. At the end of
an epoch the bonds whose scales have collapsed are pruned from the cores.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from edge3u.config import Config
from edge3u.data import Dataset
from edge3u.train import rank_prior
from edge3u.train.budget import fit_budget
from edge3u.train.lowprec import FixedPoint
from edge3u.train.memory import TrainingMemory, activation_bytes_per_sample
from edge3u.train.network import TTNetwork
from edge3u.train.optimizer import LowPrecisionSGD

__all__ = ["EpochRecord", "Trainer", "BIAS_FORMAT", "evaluate", "kl_weight_at"]

BIAS_FORMAT = FixedPoint(8, 4)
EVAL_BATCH = 1000


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    test_accuracy: float
    kl_weight: float
    neg_log_prior: float
    ranks: dict[str, list[int]]
    parameters: int
    seconds: float


def kl_weight_at(config: Config, epoch_progress: float) -> float:
    """The KL weight after ``epoch_progress`` epochs: 0, then a linear ramp to ``kl_weight``."""
    t = config.train
    ramp = (epoch_progress - t.kl_warmup_start) / t.kl_warmup_epochs
    return t.kl_weight * min(1.0, max(0.0, ramp))


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy (a fraction) of ``model`` on pixel codes ``x`` with labels ``y``."""
    correct = 0
    for start in range(0, len(y), EVAL_BATCH):
        logits = model(x[start:start + EVAL_BATCH])
        correct += int((logits.argmax(dim=1) == y[start:start + EVAL_BATCH]).sum())
    return correct / max(1, len(y))


class Trainer:
    """Trains ``TTNetwork(config)`` on ``data``.

    Parameters
    ----------
    config : Config
    data : Dataset
    """

    def __init__(self, config: Config, data: Dataset):
        self.config, self.data = config, data
        t = config.train
        torch.manual_seed(t.seed)
        init = torch.Generator().manual_seed(t.seed)
        bits = t.activation_bits if t.low_precision else None
        self.model = TTNetwork(config, activation_bits=bits, generator=init)
        self.core_format = FixedPoint(t.weight_bits, t.weight_frac_bits)
        grad_bits = t.grad_bits if t.low_precision else 32
        self.optimizer = LowPrecisionSGD(self._groups(), lr=t.lr, grad_bits=grad_bits,
                                         momentum=t.momentum, grad_clip=t.grad_clip,
                                         normalize=t.optimizer == "normalized_sgd")
        self.scales = [rank_prior.em_scales(list(layer.cores), t.rank_prior, t.eta)
                       for layer in self.model.layers]
        self.history: list[EpochRecord] = []
        self.x_train, self.y_train = torch.tensor(data.x_train), torch.tensor(data.y_train)
        self.x_test, self.y_test = torch.tensor(data.x_test), torch.tensor(data.y_test)
        self.peak_memory = self.memory()

    # ------------------------------------------------------------------ parameters and memory

    def _groups(self):
        fmt = self.core_format if self.config.train.low_precision else FixedPoint(32, 24)
        bias = BIAS_FORMAT if self.config.train.low_precision else FixedPoint(32, 24)
        return [(self.model.core_parameters(), fmt), (self.model.bias_parameters(), bias)]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def memory(self) -> TrainingMemory:
        """Training memory of the current ranks with the configured micro-batch (bytes)."""
        t = self.config.train
        cores = sum(p.numel() for p in self.model.core_parameters())
        biases = sum(p.numel() for p in self.model.bias_parameters())
        weight_bits = t.weight_bits if t.low_precision else 32
        bias_bits = BIAS_FORMAT.bits if t.low_precision else 32
        params = math.ceil((cores * weight_bits + biases * bias_bits) / 8)
        grads, optimizer = self.optimizer.state_bytes()
        x, y = self.x_train_sample()
        act_bits = t.activation_bits if t.low_precision else 32

        def step(batch: int) -> torch.Tensor:
            return F.cross_entropy(self.model(x[:batch]), y[:batch], reduction="sum")

        per_sample = activation_bytes_per_sample(step, act_bits)
        scales = 4 * sum(s.numel() for layer in self.scales for s in layer[1:])
        return TrainingMemory(params=params, grads=grads, optimizer=optimizer,
                              activations=math.ceil(per_sample * t.micro_batch), other=scales)

    def x_train_sample(self):
        return self.x_train[:4], self.y_train[:4]

    # ------------------------------------------------------------------ training

    def ranks(self) -> dict[str, list[int]]:
        return {name: list(r) for name, r in self.model.ranks().items()}

    def _prior_shrink(self, weight: float) -> dict[int, torch.Tensor]:
        """The KL term's pull on every core, ``weight / lam``, for the optimizer's proximal step."""
        shrink = {}
        for layer, scales in zip(self.model.layers, self.scales):
            for core, precision in zip(layer.cores, rank_prior.core_precisions(
                    list(layer.cores), scales)):
                if precision is not None:
                    shrink[id(core)] = weight * precision
        return shrink

    @torch.no_grad()
    def neg_log_prior(self) -> float:
        """``-log p(cores | lam)`` summed over layers (the KL term before its weight)."""
        return float(sum(rank_prior.neg_log_prior(list(layer.cores), s)
                         for layer, s in zip(self.model.layers, self.scales)))

    def _update_scales(self) -> None:
        t = self.config.train
        self.scales = [rank_prior.em_scales(list(layer.cores), t.rank_prior, t.eta)
                       for layer in self.model.layers]

    def prune(self) -> bool:
        """Drop the rank slices whose scales fell below the threshold, then, with a latency
        budget in the config, the slices :func:`fit_budget` picks until the accelerator meets
        it; True if any was dropped."""
        thr = self.config.train.rank_threshold
        changed = False
        for layer, scales in zip(self.model.layers, self.scales):
            keep = rank_prior.keep_indices(scales, thr)
            if any(len(k) < r for k, r in zip(keep, layer.ranks[1:-1])):
                layer.prune(keep)
                changed = True
        budget = self.config.hardware.budget_cycles
        if budget:  # hardware-aware: then cut ranks until the cycle model meets the budget
            if changed:
                self._update_scales()  # the cuts are chosen by the scales of the pruned cores
            cuts = fit_budget(self.model, self.scales, self.config.hardware, budget)
            changed = changed or bool(cuts)
        if changed:
            self.optimizer.replace_parameters(self._groups())
            self._update_scales()
        return changed

    def train_epoch(self, epoch: int, progress: Callable[[int, int, float], None] | None = None
                    ) -> EpochRecord:
        t = self.config.train
        started = time.perf_counter()
        seed = t.seed * 1_000_003 + epoch
        order = torch.randperm(len(self.y_train), generator=torch.Generator().manual_seed(seed))
        noise = torch.Generator().manual_seed(seed + 500_000)
        self.optimizer.lr = t.lr * t.lr_decay ** epoch
        steps = math.ceil(len(order) / t.batch_size)
        total_loss, weight = 0.0, 0.0
        self.model.train()
        for step in range(steps):
            batch = order[step * t.batch_size:(step + 1) * t.batch_size]
            width = len(batch) if t.host_parallel else t.micro_batch
            for start in range(0, len(batch), width):
                chunk = batch[start:start + width]
                logits = self.model(self.x_train[chunk])
                loss = F.cross_entropy(logits, self.y_train[chunk], reduction="sum") / len(batch)
                loss.backward()
                self.optimizer.accumulate()
                total_loss += float(loss.detach()) * len(batch)
            weight = kl_weight_at(self.config, epoch + step / steps)
            self.optimizer.step(noise, self._prior_shrink(weight) if weight > 0 else None)
            self._update_scales()
            if progress is not None:
                progress(step + 1, steps, total_loss / min(len(order), (step + 1) * t.batch_size))
        self.prune()
        self.model.eval()
        accuracy = evaluate(self.model, self.x_test, self.y_test)
        memory = self.memory()
        if memory.total > self.peak_memory.total:
            self.peak_memory = memory
        record = EpochRecord(epoch=epoch + 1, train_loss=total_loss / len(order),
                             test_accuracy=accuracy, kl_weight=weight,
                             neg_log_prior=self.neg_log_prior(), ranks=self.ranks(),
                             parameters=self.parameter_count(),
                             seconds=time.perf_counter() - started)
        self.history.append(record)
        return record

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        return {
            "epoch": len(self.history),
            "config": self.config.to_dict(),
            "layers": [{"cores": [c.detach().clone() for c in layer.cores],
                        "bias": None if layer.bias is None else layer.bias.detach().clone(),
                        "scale": layer.scale}
                       for layer in self.model.layers],
            "optimizer": self.optimizer.state_dict(),
            "history": [asdict(r) for r in self.history],
            "peak_memory": asdict(self.peak_memory),
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for layer, saved in zip(self.model.layers, state["layers"]):
                for k, core in enumerate(saved["cores"]):
                    layer.cores[k] = torch.nn.Parameter(core.clone())
                if saved["bias"] is not None:
                    layer.bias.copy_(saved["bias"])
                layer.scale = saved["scale"]
                layer.order = layer.choose_order()
        self.optimizer.replace_parameters(self._groups())
        self.optimizer.load_state_dict(state["optimizer"])
        self._update_scales()
        self.history = [EpochRecord(**r) for r in state["history"]]
        self.peak_memory = TrainingMemory(**state["peak_memory"])
