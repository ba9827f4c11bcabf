"""Host side of the Verilator verification: build harnesses for networks, hand the bench its
images and networks, and collect the report."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge3u.models.golden import IntNetwork
from edge3u.models.schedule import Schedule
from edge3u.rtl.program import build_program
from edge3u.sim.harness import Harness, MultiHarness
from edge3u.sim.runner import SimError, build, run_bench

__all__ = ["Case", "verify"]

BENCH = "edge3u.sim.benches.batch"


@dataclass
class Case:
    """One network on one array, with the images to run and the handshake stress."""
    label: str
    network: IntNetwork
    schedule: Schedule
    rows: int
    cols: int
    images: np.ndarray            # (count, pixels) uint8
    labels: np.ndarray | None = None
    gap_256: int = 0
    stall_256: int = 0
    seed: int = 1
    depth: int = 8
    multiplier: str = "lut"  # how the PEs multiply; the requantizers' is the schedule's


def verify(cases: list[Case], *, name: str = "edge3u_bench", waves: bool = False,
           optimize: bool = True, root: Path | None = None, shards: int = 1,
           build_jobs: int | None = None) -> dict:
    """Build one design holding every case, run the bench; returns the bench report plus
    ``build_seconds`` and ``run_seconds``. Raises ``SimError`` on any mismatch.

    ``shards > 1`` (one case only) splits the images into that many contiguous parts simulated
    side by side in separate simulator processes on the same build, one per core.
    ``build_jobs`` caps the compiler processes of the build."""
    if shards > 1 and len(cases) != 1:
        raise ValueError(f"shards={shards} needs exactly one case, not {len(cases)}")
    harnesses, entries = [], []
    for case in cases:
        program = build_program(case.network, case.schedule)
        harnesses.append(Harness(program, case.rows, case.cols, depth=case.depth,
                                 gap_256=case.gap_256, stall_256=case.stall_256,
                                 seed=case.seed, multiplier=case.multiplier))
        entries.append((case, program))
    design = harnesses[0] if len(harnesses) == 1 else MultiHarness(harnesses)
    started = time.perf_counter()
    build_dir = build(design, name, waves=waves, optimize=optimize, root=root, jobs=build_jobs)
    built = time.perf_counter()
    shards = max(1, min(shards, len(cases[0].images)))
    bounds = np.linspace(0, len(cases[0].images), shards + 1).astype(int) if shards > 1 else None
    jobs = []
    for s in range(shards):
        data_dir = build_dir / ("run" if shards == 1 else f"run{s}")
        data_dir.mkdir(exist_ok=True)
        spec = {"harnesses": []}
        for i, (case, program) in enumerate(entries):
            lo, hi = (0, len(case.images)) if bounds is None else (bounds[s], bounds[s + 1])
            net_path, img_path = data_dir / f"network{i}.pt", data_dir / f"images{i}.npy"
            torch.save(case.network, net_path)
            np.save(img_path, case.images[lo:hi].astype(np.uint8))
            entry = {"prefix": "" if len(entries) == 1 else f"h{i}_", "label": case.label,
                     "network": str(net_path), "images": str(img_path), "offset": int(lo),
                     "depth": case.depth, "classes": program.classes,
                     "acc_bits": program.acc_bits, "input_bits": program.input_bits,
                     "cycles": case.schedule.cycles()}
            if case.labels is not None:
                lab_path = data_dir / f"labels{i}.npy"
                np.save(lab_path, case.labels[lo:hi].astype(np.int64))
                entry["labels"] = str(lab_path)
            spec["harnesses"].append(entry)
        jobs.append((data_dir, spec))
    with ThreadPoolExecutor(max_workers=shards) as pool:
        futures = [pool.submit(run_bench, build_dir, name, BENCH, spec, waves=waves,
                               test_dir=data_dir) for data_dir, spec in jobs]
        errors = [f.exception() for f in futures]
    for (data_dir, _), error in zip(jobs, errors):
        if error is not None:
            if isinstance(error, SimError):
                raise SimError(f"{error}{_locate(cases, data_dir)}") from None
            raise error
    reports = [f.result() for f in futures]
    report = {key: sum(r[key] for r in reports)
              for key in ("images", "mismatches", "rtl_correct", "golden_correct")}
    report["rtl_cycles"] = sorted({c for r in reports for c in r["rtl_cycles"]})
    report["first_mismatch"] = None
    report["seconds"] = time.perf_counter() - built  # wall time of the simulation, all shards
    report["build_seconds"] = built - started
    report["run_seconds"] = report["seconds"]
    report["build_dir"] = str(build_dir)
    report["shards"] = shards
    return report


def _locate(cases: list[Case], data_dir: Path) -> str:
    """Where the first mismatching image first departs, replayed in the Amaranth simulator."""
    import json

    from edge3u.sim.locate import first_departure

    report = json.loads((data_dir / "report.json").read_text()) if (
        data_dir / "report.json").exists() else {}
    first = report.get("first_mismatch")
    if not first:
        return ""
    case = next(c for c in cases if c.label == first["harness"])  # image index is global
    where = first_departure(case.network, case.schedule, case.rows, case.cols,
                            case.images[first["image"]])
    return ("\n  first departure: " + where if where else
            "\n  the Amaranth simulation agrees with the golden model: the difference is in the "
            "Verilog or the Verilator build")
