"""``edge3u train``: rank-adaptive low-precision training into a run directory, resumable.

Writes into ``RUN/``: ``config.json`` (the validated config), ``checkpoint.pt`` after every epoch,
``metrics.json`` (history, memory, figures), ``plots/training.png`` and ``plots/ranks.png``, and at
the end ``model.pt`` (the pruned cores, biases, scales and contraction orders that ``quantize``
and ``export`` read). Every file is written atomically.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from edge3u.config import Config, load_config
from edge3u.data import load_dataset
from edge3u.runs import (CHECKPOINT, CONFIG, METRICS, MODEL, RunError, load_step_output,
                         read_json, save_torch, write_json)
from edge3u.train.budget import check_budget
from edge3u.train.dense import dense_memory
from edge3u.train.plots import plot_ranks, plot_training
from edge3u.train.trainer import Trainer

__all__ = ["train_run", "load_model_state"]

MODEL_FORMAT = 1


def _prepare(config: Config | None, run: Path, resume: bool, quick: bool) -> tuple[Config, bool]:
    checkpoint = run / CHECKPOINT
    if resume:
        if not checkpoint.exists():
            raise RunError(f"{run} has no checkpoint to resume ({checkpoint} is missing); start "
                           f"the run with `edge3u train --run {run}`")
        saved = load_config(run / CONFIG)
        state = read_json(run / METRICS) if (run / METRICS).exists() else {}
        if config is not None and config != saved:
            raise RunError(f"--config differs from the configuration {run} was started with "
                           f"({run / CONFIG}); resume without --config, or train into a new --run")
        return saved, bool(state.get("quick", quick))
    if checkpoint.exists() or (run / MODEL).exists():
        raise RunError(f"{run} already holds a training run; continue it with "
                       f"`edge3u train --run {run} --resume`, or choose a new --run")
    return config or load_config(), quick


def train_run(config: Config | None, run: str | Path, *, quick: bool = False,
              resume: bool = False, data_path: str | None = None, progress: bool = True) -> dict:
    """Train (or resume) the run in ``run``; returns the summary also written to metrics.json."""
    run = Path(run)
    config, quick = _prepare(config, run, resume, quick)
    check_budget(config)  # before any data is read or any epoch runs
    data = load_dataset(config.data.dataset, data_path or config.data.path or None)
    t = config.train
    epochs = t.quick_epochs if quick else t.epochs
    if quick:
        data = data.subset(t.quick_train_images)
    trainer = Trainer(config, data)
    if resume:
        trainer.load_state_dict(torch.load(run / CHECKPOINT, weights_only=False))
    else:
        run.mkdir(parents=True, exist_ok=True)
        write_json(run / CONFIG, config.to_dict())
    dense = dense_memory(config, sample=trainer.x_train_sample())
    started = time.perf_counter()
    for epoch in range(len(trainer.history), epochs):
        with tqdm(total=None, desc=f"train epoch {epoch + 1}/{epochs}", file=sys.stderr,
                  disable=not progress, leave=False, mininterval=1.0, unit="step") as bar:
            def show(step, steps, loss):
                bar.total = steps
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                bar.update(1)

            record = trainer.train_epoch(epoch, progress=show)
        if progress:
            print(f"epoch {record.epoch}/{epochs}: loss {record.train_loss:.4f}, "
                  f"test accuracy {100 * record.test_accuracy:.2f} %, ranks {record.ranks}, "
                  f"{record.seconds:.1f} s", file=sys.stderr)
        save_torch(run / CHECKPOINT, trainer.state_dict())
        summary = _summary(trainer, dense, quick, epochs, time.perf_counter() - started)
        write_json(run / METRICS, summary)
        plot_training(summary["history"], run / "plots" / "training.png")
        plot_ranks(summary["history"], run / "plots" / "ranks.png")
    summary = _summary(trainer, dense, quick, epochs, time.perf_counter() - started)
    save_torch(run / MODEL, model_state(trainer))
    write_json(run / METRICS, summary)
    return summary


def _summary(trainer: Trainer, dense, quick: bool, epochs: int, seconds: float) -> dict:
    history = [vars(r) for r in trainer.history]
    peak = trainer.peak_memory
    return {
        "quick": quick,
        "epochs": epochs,
        "epochs_done": len(history),
        "test_accuracy": history[-1]["test_accuracy"] if history else None,
        "ranks": trainer.ranks(),
        "parameters": trainer.parameter_count(),
        "memory": peak.as_dict(),
        "final_memory": trainer.memory().as_dict(),
        "dense_memory": dense.as_dict(),
        "memory_reduction": dense.total / peak.total,
        "history": history,
        "seconds": seconds,
    }


def model_state(trainer: Trainer) -> dict:
    """What later steps need from training: per layer the cores, bias, scale, order and ranks."""
    return {
        "format": MODEL_FORMAT,
        "config": trainer.config.to_dict(),
        "test_accuracy": trainer.history[-1].test_accuracy if trainer.history else None,
        "layers": [{"name": name, "cores": [c.detach().clone() for c in layer.cores],
                    "bias": layer.bias.detach().clone(), "scale": layer.scale,
                    "order": list(layer.order), "ranks": list(layer.ranks)}
                   for name, layer in zip(trainer.model.names, trainer.model.layers)],
    }


def load_model_state(run: str | Path) -> dict:
    """Read ``RUN/model.pt``, checking its format."""
    return load_step_output(run, MODEL, MODEL_FORMAT, "edge3u train")
