"""Run directories: what each step writes, written atomically, and clear errors for what's missing.

Every command works on one run directory (``--run DIR``): ``train`` creates it, later steps read
what earlier ones wrote there. Files are written to a temporary name in the same folder and
renamed into place, so an interrupted command never leaves a half-written checkpoint or report.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["RunError", "atomic_write", "write_json", "read_json", "save_torch", "load_step_output",
           "CONFIG", "CHECKPOINT", "MODEL", "METRICS"]

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
METRICS = "metrics.json"


class RunError(RuntimeError):
    """A run directory lacks what a command needs, or would lose something; says what to do."""


def atomic_write(path: str | Path, write: Callable[[Any], None], *, binary: bool = False) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    return atomic_write(path, lambda f: f.write(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def save_torch(path: str | Path, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f), binary=True)


def load_step_output(run: str | Path, name: str, version: int, command: str) -> dict:
    """``torch.load`` of ``RUN/name`` written by ``command``, checking its ``format`` version."""
    import torch

    path = Path(run) / name
    if not path.exists():
        raise RunError(f"{path} does not exist: run `{command} --run {run}` first")
    state = torch.load(path, weights_only=False)
    if state.get("format") != version:
        raise RunError(f"{path} has format {state.get('format')!r}; this edge3u reads format "
                       f"{version}: run `{command}` again")
    return state
