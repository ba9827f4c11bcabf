"""The dense FP32 baseline: trained by the same data pipeline, measured by the same accounting.

The baseline is trained the way a dense network is normally trained: FP32, whole batches of
``train.batch_size``, Adam (the strongest of the usual recipes for this MLP) with the same
per-epoch learning-rate decay as the TT network, which keeps its last epochs from jumping around. Its memory is
parameters, gradients and Adam's two moments in FP32 plus the activations autograd saves for a
batch, measured exactly as for the TT network.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch
import torch.nn.functional as F

from edge3u.config import Config
from edge3u.data import Dataset
from edge3u.train.memory import TrainingMemory, activation_bytes_per_sample
from edge3u.train.network import DenseNetwork
from edge3u.train.trainer import evaluate

__all__ = ["dense_memory", "train_dense"]


def dense_memory(config: Config, model: DenseNetwork | None = None,
                 sample: tuple[torch.Tensor, torch.Tensor] | None = None) -> TrainingMemory:
    """Bytes of FP32 Adam training of the dense network at ``train.batch_size``."""
    model = model or DenseNetwork(config)
    if sample is None:
        x = torch.zeros(4, config.data.features, dtype=torch.uint8)
        y = torch.zeros(4, dtype=torch.int64)
    else:
        x, y = sample
    weights = sum(p.numel() for p in model.parameters())

    def step(batch: int) -> torch.Tensor:
        return F.cross_entropy(model(x[:batch]), y[:batch], reduction="sum")

    per_sample = activation_bytes_per_sample(step, 32)
    return TrainingMemory(params=4 * weights, grads=4 * weights, optimizer=8 * weights,
                          activations=math.ceil(per_sample * config.train.batch_size))


def train_dense(config: Config, data: Dataset, *, epochs: int,
                progress: Callable[[int, float], None] | None = None) -> dict:
    """Train the dense baseline; returns accuracy per epoch, the final accuracy and its memory."""
    t = config.train
    torch.manual_seed(t.seed)
    model = DenseNetwork(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.dense_lr)
    x_train, y_train = torch.tensor(data.x_train), torch.tensor(data.y_train)
    x_test, y_test = torch.tensor(data.x_test), torch.tensor(data.y_test)
    accuracies = []
    started = time.perf_counter()
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = t.dense_lr * t.lr_decay ** epoch
        seed = t.seed * 1_000_003 + epoch
        order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(seed))
        model.train()
        for start in range(0, len(order), t.batch_size):
            idx = order[start:start + t.batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        accuracies.append(evaluate(model, x_test, y_test))
        if progress is not None:
            progress(epoch + 1, accuracies[-1])
    memory = dense_memory(config, model, (x_train[:4], y_train[:4]))
    return {"accuracy": accuracies[-1], "accuracies": accuracies,
            "parameters": sum(p.numel() for p in model.parameters()),
            "memory": memory.as_dict(), "seconds": time.perf_counter() - started}
