"""PNG plots of a training run: loss and accuracy curves, rank evolution."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from edge3u.runs import atomic_write  # noqa: E402

__all__ = ["plot_training", "plot_ranks"]


def _save(fig, path: Path) -> Path:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"),
                 binary=True)
    plt.close(fig)
    return path


def plot_training(history: list[dict], path: str | Path, dense_accuracy: float | None = None
                  ) -> Path:
    """Training loss and test accuracy per epoch (with the dense baseline's accuracy, if known)."""
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o")
    loss_ax.set(xlabel="epoch", ylabel="training loss (cross-entropy)", title="Loss")
    acc_ax.plot(epochs, [100 * h["test_accuracy"] for h in history], marker="o", label="TT")
    if dense_accuracy is not None:
        acc_ax.axhline(100 * dense_accuracy, color="grey", linestyle="--", label="dense FP32")
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="Accuracy")
    acc_ax.legend()
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    return _save(fig, Path(path))


def plot_ranks(history: list[dict], path: str | Path) -> Path:
    """Every inner bond's rank per epoch, one line per layer and bond."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name in history[0]["ranks"]:
        bonds = len(history[0]["ranks"][name]) - 2
        for b in range(1, bonds + 1):
            ax.plot(epochs, [h["ranks"][name][b] for h in history], marker="o",
                    label=f"{name} r{b}")
    ax.set(xlabel="epoch", ylabel="rank", title="Rank evolution")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    return _save(fig, Path(path))
