"""``edge3u quantize``: quantization-aware fine-tuning of a trained run.

Reads ``RUN/model.pt``, builds the fake-quantized network (:mod:`edge3u.train.qat`) for the
config's (or the given) method and bit-widths, calibrates the activation quantizers on one pass,
fine-tunes for ``quant.epochs`` with Adam (learning rate ``QAT_LR`` decayed to zero
along a cosine over all steps), and records the float TT, fake-quant and integer
accuracies and their agreement. Writes ``RUN/quant.pt`` (what ``export`` reads) and
``RUN/quant.json``, atomically.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from edge3u.config import Config, ConfigError, load_config
from edge3u.data import Dataset, load_dataset
from edge3u.models.golden import int_predict
from edge3u.runs import CONFIG, RunError, load_step_output, save_torch, write_json
from edge3u.models.schedule import hardware_orders
from edge3u.train.qat import QuantTTNetwork, snap_scales, to_int_network
from edge3u.train.quantizers import keep_scales_positive
from edge3u.train.run import load_model_state

__all__ = ["quantize_run", "qat", "load_quant_state", "QUANT", "QUANT_METRICS"]

QUANT = "quant.pt"
QUANT_METRICS = "quant.json"
QUANT_FORMAT = 1
QAT_LR = 1e-2
CALIBRATION_IMAGES = 2000


def qat(model_state: dict, data: Dataset, *, method: str, weight_bits, activation_bits: int,
        epochs: int, batch_size: int, seed: int, progress: bool = False,
        orders: dict | None = None) -> QuantTTNetwork:
    """Fine-tune the fake-quantized network; returns it in eval mode, its scales frozen and
    snapped to the integer requantization (:func:`~edge3u.train.qat.snap_scales`)."""
    torch.manual_seed(seed)
    net = QuantTTNetwork(model_state, orders=orders, method=method, weight_bits=weight_bits,
                         activation_bits=activation_bits)
    x, y = torch.tensor(data.x_train), torch.tensor(data.y_train)
    net.train()
    with torch.no_grad():  # calibrate observers / initialise LSQ steps on real activations
        net(x[:CALIBRATION_IMAGES])
    optimizer = torch.optim.Adam(net.parameters(), lr=QAT_LR)
    steps = range(0, len(y), batch_size)
    total, step = epochs * len(steps), 0
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + epoch))
        for start in tqdm(steps, desc=f"QAT epoch {epoch + 1}/{epochs}", file=sys.stderr,
                          disable=not progress, leave=False, mininterval=1.0):
            for group in optimizer.param_groups:  # cosine decay over all steps, to zero
                group["lr"] = QAT_LR * 0.5 * (1 + math.cos(math.pi * step / total))
            step += 1
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            keep_scales_positive(net)
    net.eval()
    snap_scales(net)
    return net


def accuracies(net: QuantTTNetwork, data: Dataset) -> dict:
    """Fake-quant and integer test accuracy, and how often the two agree on the class."""
    x, y = torch.tensor(data.x_test), torch.tensor(data.y_test)
    with torch.no_grad():
        fake = torch.cat([net(x[i:i + 1000]).argmax(1) for i in range(0, len(y), 1000)])
    integer = int_predict(x, to_int_network(net))
    return {"fake_quant_accuracy": float((fake == y).float().mean()),
            "int_accuracy": float((integer == y).float().mean()),
            "int_vs_fake_agreement": float((fake == integer).float().mean())}


def _options(config: Config, method, weight_bits, activation_bits, epochs) -> dict:
    q = config.quant
    table = {"method": method or q.method, "weight_bits": weight_bits or q.weight_bits,
             "activation_bits": activation_bits or q.activation_bits,
             "epochs": q.epochs if epochs is None else epochs}
    try:  # validated by the same rules as the config file
        config.replace(quant=table)
    except ConfigError as error:
        raise ConfigError(f"quantize option: {error}") from None
    return table


def quantize_run(run: str | Path, *, method: str | None = None, weight_bits=None,
                 activation_bits: int | None = None, epochs: int | None = None,
                 quick: bool = False, data_path: str | None = None,
                 progress: bool = True) -> dict:
    """QAT of the run in ``run``; returns the figures also written to ``RUN/quant.json``."""
    run = Path(run)
    if not (run / CONFIG).exists():
        raise RunError(f"{run / CONFIG} does not exist: run `edge3u train --run {run}` first")
    config = load_config(run / CONFIG)
    options = _options(config, method, weight_bits, activation_bits, epochs)
    state = load_model_state(run)
    data = load_dataset(config.data.dataset, data_path or config.data.path or None)
    if quick:
        data = data.subset(config.train.quick_train_images // 4)
        options["epochs"] = min(options["epochs"], 1)
    started = time.perf_counter()
    orders = hardware_orders([(layer["name"], layer["cores"]) for layer in state["layers"]],
                             config.hardware)
    net = qat(state, data, epochs=options["epochs"], batch_size=config.train.batch_size,
              seed=config.train.seed, progress=progress, orders=orders, **{k: options[k] for k in (
                  "method", "weight_bits", "activation_bits")})
    figures = {**options, "quick": quick, "float_tt_accuracy": state["test_accuracy"],
               **accuracies(net, data), "orders": {k: list(v) for k, v in net.orders().items()},
               "seconds": time.perf_counter() - started}
    save_torch(run / QUANT, {"format": QUANT_FORMAT, "options": options,
                             "model_state": state, "qat_state": net.state_dict(),
                             "orders": net.orders(), "figures": figures})
    write_json(run / QUANT_METRICS, figures)
    return figures


def load_quant_state(run: str | Path) -> tuple[QuantTTNetwork, dict]:
    """The fine-tuned fake-quant network of ``RUN/quant.pt`` (eval mode) and its figures."""
    saved = load_step_output(run, QUANT, QUANT_FORMAT, "edge3u quantize")
    o = saved["options"]
    net = QuantTTNetwork(saved["model_state"], method=o["method"], weight_bits=o["weight_bits"],
                         activation_bits=o["activation_bits"], orders=saved["orders"])
    net.load_state_dict(saved["qat_state"])
    net.eval()
    return net, saved["figures"]

