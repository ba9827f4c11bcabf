"""``edge3u simulate``: test images through the run's RTL on Verilator, checked against the
golden model image by image."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edge3u.config import load_config
from edge3u.data import load_dataset
from edge3u.models.rom import load_rom
from edge3u.rtl.elaborate import fit
from edge3u.runs import CONFIG, RunError, write_json
from edge3u.sim.verify import Case, verify

__all__ = ["simulate_run", "SIM_DIR"]

SIM_DIR = "sim"
BATCH = 250  # images per batch written into the harness's image buffer


def simulate_run(run: str | Path, *, images: int, waves: bool = False,
                 data_path: str | None = None, gap_256: int = 0, stall_256: int = 0,
                 cores: int | None = None) -> dict:
    """Run the first ``images`` test images; returns the figures (also ``RUN/sim/sim.json``).
    ``cores`` caps the processes the build and the simulation use (default: every core)."""
    if cores is not None and (not isinstance(cores, int) or cores < 1):
        raise RunError(f"cores must be a positive integer, not {cores!r}")
    run = Path(run)
    if not (run / CONFIG).exists():
        raise RunError(f"{run / CONFIG} does not exist: run `edge3u train --run {run}` first")
    config = load_config(run / CONFIG)
    from edge3u.train.export import ROM_DIR

    net, _ = load_rom(run / ROM_DIR, config)
    sched = fit(net, config)
    data = load_dataset(config.data.dataset, data_path or config.data.path or None)
    if not 1 <= images <= len(data.y_test):
        raise RunError(f"--images must be in 1 .. {len(data.y_test)} (the test set), not {images}")
    hw = config.hardware
    case = Case("test set", net, sched, hw.pe_rows, hw.pe_cols, data.x_test[:images],
                labels=data.y_test[:images], gap_256=gap_256, stall_256=stall_256,
                depth=min(BATCH, images), multiplier=hw.pe_multipliers)
    out = run / SIM_DIR
    out.mkdir(parents=True, exist_ok=True)
    cores = cores or os.cpu_count() or 1
    shards = 1 if waves else min(cores, max(1, images // BATCH))
    report = verify([case], name="edge3u_sim", waves=waves, optimize=True, root=out / "build",
                    shards=shards, build_jobs=cores)
    figures = {
        "images": report["images"], "mismatches": report["mismatches"],
        "rtl_accuracy": report["rtl_correct"] / report["images"],
        "golden_accuracy": report["golden_correct"] / report["images"],
        "cycles_per_image": sched.cycles(),
        "rtl_cycles": (report["rtl_cycles"][0] if len(report["rtl_cycles"]) == 1
                       else report["rtl_cycles"]),
        "images_per_s": report["images"] / report["seconds"],
        "simulation_seconds": report["seconds"], "build_seconds": report["build_seconds"],
        "simulator_processes": report["shards"],
    }
    if waves:
        traces = sorted(Path(report["build_dir"], "run").glob("*.fst"))  # one shard with waves
        if traces:
            shutil.copy(traces[-1], out / "waves.fst")
            figures["waves"] = str(out / "waves.fst")
    write_json(out / "sim.json", figures)
    return figures
