"""The flow's report: ``RUN/report.md`` with its figures and plots, and the per-stage cycles plot
(the training and rank plots are written by ``train``)."""

from __future__ import annotations

import json
from pathlib import Path

from edge3u.flow import STEPS
from edge3u.runs import atomic_write

__all__ = ["plot_stage_cycles", "write_report"]


def plot_stage_cycles(summary: dict, path: Path) -> Path:
    """Cycles and the MAC bound of every stage of the accelerator (``RUN/rtl/summary.json``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = summary["stages"]
    names = [f"{s['layer']}.{s['stage']}" for s in stages]
    x = range(len(stages))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar([i - 0.2 for i in x], [s["cycles"] for s in stages], width=0.4, label="cycles")
    ax.bar([i + 0.2 for i in x], [s["bound_cycles"] for s in stages], width=0.4,
           label="bound: MACs / PEs")
    ax.set_xticks(list(x), names)
    ax.set(xlabel="stage (layer.stage)", ylabel="cycles",
           title=f"{summary['model_cycles']:,} cycles per inference on "
                 f"{summary['pe_rows']} x {summary['pe_cols']} PEs")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"),
                 binary=True)
    plt.close(fig)
    return path


def _pct(x):
    return "–" if x is None else f"{100 * x:.2f} %"


def write_report(run: Path, report: dict, state: dict) -> Path:
    """``RUN/report.md``: what each step produced and how long it took."""
    summary = json.loads((run / "rtl" / "summary.json").read_text())
    plots = run / "plots"
    plots.mkdir(exist_ok=True)
    plot_stage_cycles(summary, plots / "stage_cycles.png")
    r = report
    fmax = "not placed and routed" if r["fmax_mhz"] is None else (
        f"{r['fmax_mhz']:.1f} MHz post-route ({'meets' if r['timing_met'] else 'misses'} "
        f"{r['clock_mhz']:g} MHz)")
    latency = "–" if r["latency_us"] is None else f"{r['latency_us']:.2f} µs at Fmax"
    budget = "none" if not r["budget_cycles"] else f"{r['budget_cycles']:,} cycles"
    lines = [
        f"# edge3u flow report: `{run}`", "",
        "| figure | value |", "| --- | --- |",
        f"| integer (hardware) model accuracy | {_pct(r['accuracy'])} |",
        f"| float TT / fake-quant accuracy | {_pct(r['float_tt_acc'])} / "
        f"{_pct(r['fake_quant_acc'])} |",
        f"| dense FP32 baseline accuracy | {_pct(r['dense_acc'])} |",
        f"| training memory reduction vs dense FP32 | {r['memory_reduction']:.1f} × |",
        f"| ranks | `{json.dumps(r['ranks'])}` |",
        f"| weight / activation bits | {r['weight_bits']} / {r['activation_bits']} |",
        f"| latency budget | {budget} |",
        f"| cycles per inference: RTL / model / bound | {r['rtl_cycles']} / "
        f"{r['model_cycles']:,} / {r['bound_cycles']:,} |",
        (f"| RTL vs golden model | {r['mismatches']} mismatches in {r['simulated_images']:,} "
         f"images (RTL accuracy {_pct(r['rtl_accuracy'])}) |" if r["simulated_images"] else
         "| RTL vs golden model | not simulated |"),
        (f"| {r['target']}: LUTs / FFs / BRAMs / DSPs | {r['luts']:,} / {r['ffs']:,} / "
         f"{r['brams']:g} / {r['dsps']} |" if r["luts"] is not None else
         "| synthesis | not run |"),
        f"| Fmax | {fmax} |",
        f"| latency | {latency} |", "",
        "## Steps", "", "| step | seconds |", "| --- | --- |",
        *[f"| {name} | {state['steps'][name]['seconds']:.0f} |" for name in STEPS
          if name in state["steps"]], "",
        "## Plots", "",
        "![training](plots/training.png)", "", "![ranks](plots/ranks.png)", "",
        "![stage cycles](plots/stage_cycles.png)", ""]
    path = run / "report.md"
    atomic_write(path, lambda f: f.write("\n".join(lines)))
    return path
