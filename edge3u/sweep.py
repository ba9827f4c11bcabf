"""``edge3u sweep``: a design-space sweep over PE arrays, bit-widths and latency budgets.

Every point of the grid is one flow (``edge3u/flow.py``) in its own folder under the sweep
directory: quick training (within the point's budget), quick QAT, export, elaborate with the
cycle model, and yosys' resource report for the target (no place and route, no simulation).
Points run in parallel processes; a finished point keeps its ``point.json`` and is not run
again, and a point that was killed resumes where its flow stopped. The Pareto front of accuracy
(higher), latency (lower) and LUTs (lower) is tabulated in ``sweep.md`` and plotted in
``pareto.png``.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from edge3u.config import Config, ConfigError
from edge3u.runs import RunError, atomic_write, write_json

__all__ = ["AXES", "parse_grid", "grid_points", "pareto", "sweep_run"]

AXES = {
    "pe": "PE array ROWSxCOLS (hardware.pe_rows, pe_cols)",
    "weight_bits": "core bits: 1-4 or ternary (quant.weight_bits)",
    "act_bits": "activation bits (quant.activation_bits)",
    "budget": "latency budget in cycles, 0 for none (hardware.latency_budget_cycles)",
}


def _value(axis: str, text: str):
    try:
        if axis == "pe":
            rows, cols = text.lower().split("x")
            return (int(rows), int(cols))
        if axis == "weight_bits" and text == "ternary":
            return text
        return int(text)
    except ValueError:
        form = "ROWSxCOLS" if axis == "pe" else "an integer"
        raise ConfigError(f"--grid {axis}: {text!r} is not {form}") from None


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["pe=4x4,8x4", "budget=0,250"]`` → ``{"pe": [(4, 4), (8, 4)], "budget": [0, 250]}``."""
    grid = {}
    for item in items:
        axis, _, values = item.partition("=")
        if axis not in AXES:
            raise ConfigError(f"--grid axis {axis!r} is unknown; axes: " +
                              "; ".join(f"{a}: {d}" for a, d in AXES.items()))
        if not values:
            raise ConfigError(f"--grid {axis} has no values: write {axis}=V1,V2,...")
        grid[axis] = [_value(axis, v.strip()) for v in values.split(",")]
    if not grid:
        raise ConfigError("--grid needs at least one axis, e.g. --grid pe=4x4,8x4 budget=0,250")
    return grid


_SHORT = {"weight_bits": "w", "act_bits": "a", "budget": "b"}


def _label(point: dict) -> str:
    """The point's folder name, e.g. ``pe4x4-w2-b250``."""
    return "-".join(f"pe{v[0]}x{v[1]}" if axis == "pe" else f"{_SHORT[axis]}{v}"
                    for axis, v in point.items())


def _config(base: Config, point: dict) -> Config:
    hardware, quant = {}, {}
    for axis, value in point.items():
        if axis == "pe":
            hardware |= {"pe_rows": value[0], "pe_cols": value[1]}
        elif axis == "budget":
            hardware |= {"latency_budget_cycles": value, "latency_budget_us": 0.0}
        elif axis == "weight_bits":
            quant["weight_bits"] = value
        else:
            quant["activation_bits"] = value
    return base.replace(hardware=hardware, quant=quant)


def grid_points(base: Config, grid: dict[str, list]) -> list[tuple[str, dict, Config]]:
    """Every combination as ``(label, point, config)``, each config validated (and its budget
    checked against the array) before anything runs."""
    from edge3u.train.budget import check_budget

    points = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        label = _label(point)
        try:
            config = _config(base, point)
            check_budget(config)
        except ConfigError as error:
            raise ConfigError(f"grid point {label}: {error}") from None
        points.append((label, point, config))
    return points


def _run_point(folder: str, config_dict: dict, point: dict, target: str,
               data_path: str | None) -> dict:
    import torch

    from edge3u.flow import flow_run

    torch.set_num_threads(1)  # the points share the cores
    config = Config.from_dict(config_dict)
    report = flow_run(config, folder, quick=True, target=target, place=False,
                      data_path=data_path, progress=False, skip=("dense", "simulate"))
    cycles = report["model_cycles"]
    figures = {"point": point, "accuracy": report["accuracy"], "cycles": cycles,
               "latency_us": cycles / config.hardware.clock_mhz, "luts": report["luts"],
               "ffs": report["ffs"], "dsps": report["dsps"], "brams": report["brams"],
               "ranks": report["ranks"], "bound_cycles": report["bound_cycles"],
               "clock_mhz": config.hardware.clock_mhz}
    write_json(Path(folder) / "point.json", figures)
    return figures


def pareto(points: list[dict]) -> list[bool]:
    """Whether each point is on the front: no other point is at least as accurate, as fast and
    as small, and better in one of them."""
    def dominates(q, p):
        no_worse = (q["accuracy"] >= p["accuracy"] and q["latency_us"] <= p["latency_us"]
                    and q["luts"] <= p["luts"])
        better = (q["accuracy"] > p["accuracy"] or q["latency_us"] < p["latency_us"]
                  or q["luts"] < p["luts"])
        return no_worse and better
    return [not any(dominates(q, p) for q in points if q is not p) for p in points]


def _plot(rows: list[dict], front: list[bool], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    scatter = ax.scatter([r["latency_us"] for r in rows], [100 * r["accuracy"] for r in rows],
                         c=[r["luts"] for r in rows], cmap="viridis", s=60,
                         edgecolors=["red" if f else "none" for f in front], linewidths=1.5)
    for r in rows:
        ax.annotate(r["label"], (r["latency_us"], 100 * r["accuracy"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    fig.colorbar(scatter, label="LUTs")
    ax.set(xlabel="latency (µs at the configured clock)", ylabel="integer model accuracy (%)",
           title="Design space: red outline = Pareto front (accuracy, latency, LUTs)")
    ax.grid(alpha=0.3)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"),
                 binary=True)
    plt.close(fig)


def _table(rows: list[dict], front: list[bool]) -> list[str]:
    lines = ["| point | accuracy | cycles | latency µs | LUTs | FFs | DSPs | ranks | Pareto |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r, f in zip(rows, front):
        lines.append(f"| {r['label']} | {100 * r['accuracy']:.2f} % | {r['cycles']:,} | "
                     f"{r['latency_us']:.2f} | {r['luts']:,} | {r['ffs']:,} | {r['dsps']} | "
                     f"`{json.dumps(r['ranks'])}` | {'yes' if f else ''} |")
    return lines


def sweep_run(base: Config, grid: dict[str, list], out: str | Path, *, jobs: int = 2,
              target: str = "ecp5", data_path: str | None = None,
              progress: bool = True) -> dict:
    """Run every point not already done (``jobs`` at a time); returns the table's rows and the
    front (also ``sweep.json``, ``sweep.md`` and ``pareto.png`` in ``out``)."""
    from edge3u.synth import TARGETS

    if target not in TARGETS:
        raise RunError(f"--target must be one of {', '.join(TARGETS)}, not {target!r}")
    if jobs < 1:
        raise RunError(f"--jobs must be at least 1, not {jobs}")
    out = Path(out)
    points = grid_points(base, grid)
    out.mkdir(parents=True, exist_ok=True)
    results, todo = {}, []
    for label, point, config in points:
        done = out / "points" / label / "point.json"
        if done.exists():
            results[label] = json.loads(done.read_text())
        else:
            todo.append((label, point, config))
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if progress else (
        lambda text: None)
    say(f"sweep: {len(points)} points, {len(results)} done before, {len(todo)} to run, "
        f"{jobs} at a time")
    started = time.monotonic()
    if todo:
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
            futures = {pool.submit(_run_point, str(out / "points" / label), config.to_dict(),
                                   point, target, data_path): label
                       for label, point, config in todo}
            for future in as_completed(futures):
                label = futures[future]
                results[label] = future.result()
                r = results[label]
                say(f"  {label}: {100 * r['accuracy']:.2f} %, {r['cycles']:,} cycles, "
                    f"{r['luts']:,} LUTs ({time.monotonic() - started:.0f} s)")
    rows = [dict(results[label], label=label) for label, _, _ in points]
    front = pareto(rows)
    _plot(rows, front, out / "pareto.png")
    lines = [f"# edge3u sweep: `{out}`", "", f"Grid: `{json.dumps(grid)}`, target {target}, "
             "quick training per point.", "", *_table(rows, front), "",
             "![Pareto front](pareto.png)", ""]
    atomic_write(out / "sweep.md", lambda f: f.write("\n".join(lines)))
    summary = {"points": rows, "pareto": [r["label"] for r, f in zip(rows, front) if f],
               "seconds": time.monotonic() - started}
    write_json(out / "sweep.json", summary)
    return summary

