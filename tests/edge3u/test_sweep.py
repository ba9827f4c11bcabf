"""``edge3u sweep``: grid parsing and validation up front, the Pareto front against a hand
check, and a real two-point sweep on digits that resumes without redoing finished points."""

import json

import pytest

from edge3u.cli import main
from edge3u.config import ConfigError
from edge3u.sweep import grid_points, parse_grid, pareto
from tests_paths import DIGITS_CONFIG


def test_grid_is_parsed_and_every_point_checked_before_running(digits_config):
    grid = parse_grid(["pe=4x4,4x8", "weight_bits=2,ternary", "budget=0,200"])
    assert grid == {"pe": [(4, 4), (4, 8)], "weight_bits": [2, "ternary"], "budget": [0, 200]}
    points = grid_points(digits_config, grid)
    assert [label for label, _, _ in points][:2] == ["pe4x4-w2-b0", "pe4x4-w2-b200"]
    assert points[-1][2].hardware.pe_cols == 8 and points[-1][2].quant.weight_bits == "ternary"
    with pytest.raises(ConfigError, match="axis 'pes' is unknown"):
        parse_grid(["pes=4x4"])
    with pytest.raises(ConfigError, match="pe: '4by4' is not ROWSxCOLS"):
        parse_grid(["pe=4by4"])
    with pytest.raises(ConfigError, match="point pe4x4-b100: the latency budget of 100 cycles "
                                          "cannot be met"):
        grid_points(digits_config, parse_grid(["pe=4x4", "budget=100"]))
    with pytest.raises(ConfigError, match="point w5: quant.weight_bits must be one of"):
        grid_points(digits_config, parse_grid(["weight_bits=5"]))


def test_pareto_front_by_hand():
    rows = [{"accuracy": 0.9, "latency_us": 5, "luts": 100},   # best accuracy: front
            {"accuracy": 0.8, "latency_us": 2, "luts": 100},   # fastest: front
            {"accuracy": 0.8, "latency_us": 3, "luts": 100},   # dominated by the one above
            {"accuracy": 0.7, "latency_us": 6, "luts": 50},    # smallest: front
            {"accuracy": 0.7, "latency_us": 6, "luts": 60}]    # dominated by the one above
    assert pareto(rows) == [True, True, False, True, False]


def test_sweep_runs_points_and_resumes(capsys, tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--config", str(DIGITS_CONFIG), "--run", str(out), "--grid", "pe=4x4",
            "budget=0,200", "--json", "--quiet"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {r["label"]: r for r in summary["points"]}
    assert set(rows) == {"pe4x4-b0", "pe4x4-b200"}
    assert rows["pe4x4-b200"]["cycles"] <= 200 < rows["pe4x4-b0"]["cycles"]
    assert all(r["luts"] > 0 for r in rows.values()) and summary["pareto"]
    assert (out / "pareto.png").is_file() and (out / "sweep.md").is_file()
    (out / "points" / "pe4x4-b200" / "point.json").unlink()  # as if killed before it finished
    assert main(args[:-1]) == 0
    assert "1 done before, 1 to run" in capsys.readouterr().err
