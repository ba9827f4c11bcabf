"""``edge3u flow``: data to verified hardware in one command.

Steps, each the subcommand of the same name on one run directory: dense baseline → train
(rank-adaptive, low precision, within the latency budget if the config has one) → quantize
(QAT) → export (ROM images) → elaborate (Verilog, cycle model) → simulate (lint, test images on
Verilator against the golden model) → synth (yosys, and for ECP5 nextpnr's post-route Fmax).

Every step has a fingerprint of what it depends on (its part of the config, the options and the
fingerprint of the step before); a step whose fingerprint is unchanged since it last finished is
not redone. ``RUN/flow.json`` keeps the fingerprints; ``report.md``, ``report.json`` and the
plots go into the run directory.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edge3u.config import Config, load_config
from edge3u.runs import CONFIG, RunError, read_json, write_json

__all__ = ["STEPS", "flow_run", "fingerprints", "REPORT_KEYS"]

STEPS = ("dense", "train", "quantize", "export", "elaborate", "simulate", "synth")
STATE = "flow.json"
REPORT_KEYS = ("accuracy", "dense_acc", "memory_reduction", "ranks", "weight_bits", "rtl_cycles",
               "bound_cycles", "mismatches", "fmax_mhz", "latency_us", "luts")
FLOW_VERSION = 1


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _sources(*modules: str) -> str:
    """A digest of the source files of ``modules`` (a package: all its ``.py`` files), so a
    step whose code changed (a new edge3u) is redone."""
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        path = Path(spec.origin)
        files = sorted(path.parent.glob("*.py")) if path.name == "__init__.py" else [path]
        for file in files:
            digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()[:16]


def fingerprints(config: Config, *, quick: bool, images: int, target: str,
                 place: bool) -> dict[str, str]:
    """What each step depends on, hashed: a changed config section, option or the code of the
    hardware (cycle model, RTL, simulation, synthesis scripts) changes the fingerprint of its
    step and of every step after it."""
    c = config.to_dict()
    cycle_model = _sources("edge3u.models.schedule")
    network = {"network": c["network"], "data": c["data"]}
    hw = c["hardware"]
    array = {k: hw[k] for k in ("pe_rows", "pe_cols", "requant_lanes")}
    # training reads the array only to meet a latency budget; quantization fixes the stage
    # orders, which the array decides
    budget = (array | {k: hw[k] for k in ("latency_budget_cycles", "latency_budget_us",
                                          "clock_mhz")}
              if config.hardware.budget_cycles else None)
    out = {"dense": _digest(FLOW_VERSION, network, c["train"], quick)}
    out["train"] = _digest(FLOW_VERSION, network, c["train"], budget, quick,
                           cycle_model if budget else None)
    out["quantize"] = _digest(out["train"], c["quant"], array, quick, cycle_model,
                              _sources("edge3u.models.golden"))
    out["export"] = _digest(out["quantize"])
    out["elaborate"] = _digest(out["export"], c["hardware"], _sources("edge3u.rtl"))
    out["simulate"] = _digest(out["elaborate"], images, _sources("edge3u.sim"))
    out["synth"] = _digest(out["elaborate"], target, place, _sources("edge3u.synth"))
    return out


def _steps(run: Path, config: Config, *, quick: bool, images: int, target: str, place: bool,
           progress: bool, data_path: str | None):
    """The step functions, each returning its figures."""
    from edge3u.data import load_dataset

    def dense():
        from edge3u.train.dense import train_dense

        data = load_dataset(config.data.dataset, data_path or config.data.path or None)
        t = config.train
        if quick:
            data = data.subset(t.quick_train_images)
        result = train_dense(config, data, epochs=t.quick_epochs if quick else t.dense_epochs)
        write_json(run / "dense.json", result)
        return {"dense_acc": result["accuracy"], "seconds": result["seconds"]}

    def train():
        from edge3u.train.run import train_run

        if (run / "model.pt").exists():  # trained before: adopt it if it is this training
            metrics = read_json(run / "metrics.json")
            if load_config(run / CONFIG) == config and metrics.get("quick") == quick:
                return metrics
            raise RunError(f"{run} holds a training run made with another config or options "
                           f"than this flow's; it is never overwritten: choose a new --run")
        resume = (run / "checkpoint.pt").exists()  # a flow killed while training
        if resume and load_config(run / CONFIG) != config:
            raise RunError(f"{run} holds an unfinished training run of another config; "
                           f"choose a new --run")
        return train_run(None if resume else config, run, quick=quick, resume=resume,
                         data_path=data_path, progress=progress)

    def quantize():
        from edge3u.train.quantize_run import quantize_run

        return quantize_run(run, quick=quick, data_path=data_path, progress=progress)

    def export():
        from edge3u.train.export import export_run

        return {"rom_bits": export_run(run)["rom_bits"]}

    def elaborate():
        from edge3u.rtl.elaborate import elaborate_run

        return elaborate_run(run, check_lint=False)  # the lint runs with the simulation

    def simulate(cores=None):
        from edge3u.rtl.elaborate import RTL_DIR, TOP, lint
        from edge3u.sim.simulate_run import simulate_run

        # Verilator's lint of the Verilog, on the simulation's core while yosys has the other
        warnings = lint(run / RTL_DIR / f"{TOP}.v")
        if warnings:
            (run / RTL_DIR / "lint.log").write_text("\n".join(warnings) + "\n")
            raise RunError(f"the Verilog has {len(warnings)} lint warnings; see "
                           f"{run / RTL_DIR / 'lint.log'}")
        figures = simulate_run(run, images=images, data_path=data_path, cores=cores)
        figures["lint_warnings"] = 0
        if figures["mismatches"]:
            raise RunError(f"the RTL differs from the golden model on {figures['mismatches']} "
                           f"of {figures['images']} images; see {run / 'sim'}")
        return figures

    def synth():
        from edge3u.synth import synth_run

        return synth_run(run, target, quiet=not progress, place=place)

    return {"dense": dense, "train": train, "quantize": quantize, "export": export,
            "elaborate": elaborate, "simulate": simulate, "synth": synth}


def flow_run(config: Config | None, run: str | Path, *, quick: bool = False,
             images: int | None = None, target: str = "ecp5", place: bool = False,
             data_path: str | None = None, progress: bool = True,
             skip: tuple[str, ...] = ()) -> dict:
    """Run every step that is not up to date (but those in ``skip``); returns the report
    (also ``report.json``)."""
    from edge3u.synth import TARGETS

    run = Path(run)
    if target not in TARGETS:
        raise RunError(f"--target must be one of {', '.join(TARGETS)}, not {target!r}")
    if config is None:
        config = load_config(run / CONFIG) if (run / CONFIG).exists() else load_config()
    images = images if images is not None else (200 if quick else 1000)
    if images < 1:
        raise RunError(f"--images must be at least 1, not {images}")
    from edge3u.train.budget import check_budget

    check_budget(config)
    prints = fingerprints(config, quick=quick, images=images, target=target, place=place)
    state = read_json(run / STATE) if (run / STATE).exists() else {"steps": {}}
    steps = _steps(run, config, quick=quick, images=images, target=target, place=place,
                   progress=progress, data_path=data_path)
    run.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    pending = []
    for k, name in enumerate(STEPS, 1):
        if name in skip:
            continue
        done = state["steps"].get(name)
        head = f"[{k}/{len(STEPS)}] {name:<9}"
        if done and done["fingerprint"] == prints[name]:
            _say(progress, f"{head} unchanged, kept ({done['seconds']:.0f} s when it ran)")
        else:
            pending.append((head, name))
    background = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        for head, name in pending:
            if name == "simulate" and any(n == "synth" for _, n in pending):
                # Synthesis reads only the Verilog: it runs beside the simulation. yosys is
                # one process and the longer of the two, so the simulation's build and its
                # simulators leave it a core of its own.
                synth_head = next(h for h, n in pending if n == "synth")
                _say(progress, f"{synth_head} running beside the simulation ...")
                background = pool.submit(_timed, steps["synth"])
                step = functools.partial(steps[name], cores=max(1, (os.cpu_count() or 1) - 1))
            else:
                step = steps[name]
            if name == "synth" and background is not None:
                seconds, figures = background.result()
            else:
                _say(progress, f"{head} running ... ({time.monotonic() - started:.0f} s into "
                               f"the flow)")
                seconds, figures = _timed(step)
            state["steps"][name] = {"fingerprint": prints[name], "seconds": seconds,
                                    "figures": _plain(figures)}
            write_json(run / STATE, state)  # after every step: a killed flow resumes here
            _say(progress, f"{head} done in {seconds:.0f} s")
    report = build_report(run, state)
    report["flow_seconds"] = time.monotonic() - started
    write_json(run / "report.json", report)
    from edge3u.report import write_report

    write_report(run, report, state)
    return report


def _timed(step) -> tuple[float, dict]:
    started = time.monotonic()
    figures = step()
    return time.monotonic() - started, figures


def _plain(figures: dict) -> dict:
    return json.loads(json.dumps(figures, default=str))


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def build_report(run: Path, state: dict) -> dict:
    """The figures of the whole flow, from the steps' own outputs."""
    s = {name: step["figures"] for name, step in state["steps"].items()}
    quant, elab = s["quantize"], s["elaborate"]
    syn = s.get("synth", {"target": None, "luts": None, "ffs": None, "brams": None,
                          "dsps": None})
    sim = s.get("simulate", {"rtl_cycles": None, "mismatches": None, "images": 0,
                             "rtl_accuracy": None})
    fmax = syn.get("fmax_mhz")
    return {
        "accuracy": quant["int_accuracy"], "dense_acc": s.get("dense", {}).get("dense_acc"),
        "float_tt_acc": quant["float_tt_accuracy"],
        "fake_quant_acc": quant["fake_quant_accuracy"],
        "memory_reduction": s["train"]["memory_reduction"], "ranks": s["train"]["ranks"],
        "weight_bits": quant["weight_bits"], "activation_bits": quant["activation_bits"],
        "rtl_cycles": sim["rtl_cycles"], "model_cycles": elab["model_cycles"],
        "bound_cycles": elab["bound_cycles"], "mismatches": sim["mismatches"],
        "simulated_images": sim["images"], "rtl_accuracy": sim["rtl_accuracy"],
        "target": syn["target"], "fmax_mhz": fmax, "clock_mhz": elab["clock_mhz"],
        "latency_us": elab["model_cycles"] / fmax if fmax else None,
        "luts": syn["luts"], "ffs": syn["ffs"], "brams": syn["brams"], "dsps": syn["dsps"],
        "timing_met": syn.get("timing_met"),
        "budget_cycles": load_config(run / CONFIG).hardware.budget_cycles,
    }
