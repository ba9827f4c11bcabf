"""``edge3u flow`` on the digits config: every step runs once, the report carries the figures,
the RTL agrees with the golden model, and a second flow keeps every unchanged step."""

import json

import pytest

from edge3u.cli import main
from edge3u.flow import REPORT_KEYS, STEPS, fingerprints
from tests_paths import DIGITS_CONFIG


def test_flow_runs_every_step_once_and_reports(capsys, tmp_path):
    run = tmp_path / "flow"
    args = ["flow", "--config", str(DIGITS_CONFIG), "--run", str(run), "--quick",
            "--images", "20", "--json", "--quiet"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(REPORT_KEYS) <= set(report)
    assert report["mismatches"] == 0 and report["simulated_images"] == 20
    assert report["rtl_cycles"] == report["model_cycles"] >= report["bound_cycles"]
    assert report["luts"] > 0 and report["fmax_mhz"] is None  # no --place
    for name in ("report.md", "report.json", "plots/stage_cycles.png", "plots/training.png"):
        assert (run / name).is_file()
    state = json.loads((run / "flow.json").read_text())
    assert set(state["steps"]) == set(STEPS)
    assert main(args[:-1]) == 0  # again, with progress: every step is kept
    err = capsys.readouterr().err
    assert err.count("unchanged, kept") == len(STEPS) and "running" not in err
    assert main(args[:7] + ["21"]) == 0  # more images: simulate only
    err = capsys.readouterr().err
    assert err.count("unchanged, kept") == len(STEPS) - 1 and "[6/7] simulate  running" in err
    assert json.loads((run / "report.json").read_text())["simulated_images"] == 21


def test_fingerprints_follow_what_each_step_reads(digits_config):
    base = fingerprints(digits_config, quick=True, images=10, target="ecp5", place=True)
    quant = fingerprints(digits_config.replace(quant={"epochs": 2}), quick=True, images=10,
                         target="ecp5", place=True)
    assert [base[s] == quant[s] for s in STEPS] == [True, True] + [False] * 5
    hw = fingerprints(digits_config.replace(hardware={"pe_cols": 8}), quick=True, images=10,
                      target="ecp5", place=True)
    assert [base[s] == hw[s] for s in STEPS] == [True, True] + [False] * 5  # the orders
    budget = fingerprints(digits_config.replace(hardware={"latency_budget_cycles": 250}),
                          quick=True, images=10, target="ecp5", place=True)
    assert [base[s] == budget[s] for s in STEPS] == [True] + [False] * 6
    images = fingerprints(digits_config, quick=True, images=11, target="ecp5", place=True)
    assert [base[s] == images[s] for s in STEPS] == [True] * 5 + [False, True]


def test_a_flow_never_overwrites_another_training(capsys, tmp_path):
    run = tmp_path / "quick"
    assert main(["train", "--config", str(DIGITS_CONFIG), "--run", str(run), "--quick",
                 "--quiet"]) == 0
    code = main(["flow", "--config", str(DIGITS_CONFIG), "--run", str(run), "--quiet"])
    assert code == 2
    assert "never overwritten: choose a new --run" in capsys.readouterr().err


def test_changed_hardware_code_changes_the_steps_that_use_it(digits_config, monkeypatch):
    import edge3u.flow as flow

    base = fingerprints(digits_config, quick=True, images=10, target="ecp5", place=True)
    real = flow._sources
    monkeypatch.setattr(flow, "_sources",  # as if a new edge3u had changed the RTL
                        lambda *m: real(*m) + ("new" if m == ("edge3u.rtl",) else ""))
    rtl = fingerprints(digits_config, quick=True, images=10, target="ecp5", place=True)
    assert [base[s] == rtl[s] for s in STEPS] == [True] * 4 + [False] * 3


def test_a_source_digest_follows_the_files(tmp_path, monkeypatch):
    import edge3u.flow as flow

    package = tmp_path / "pkg_digest_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = flow._sources("pkg_digest_probe")
    (package / "a.py").write_text("x = 2\n")
    assert flow._sources("pkg_digest_probe") != first


def test_lint_warnings_stop_the_flow_before_the_simulation(tmp_path, digits_config):
    from edge3u.flow import _steps
    from edge3u.runs import RunError

    rtl = tmp_path / "rtl"
    rtl.mkdir()
    (rtl / "edge3u_top.v").write_text(  # a two-bit value into one bit: WIDTHTRUNC
        "module edge3u_top(input [1:0] a, output b);\n  assign b = a;\nendmodule\n")
    steps = _steps(tmp_path, digits_config, quick=True, images=1, target="ecp5", place=False,
                   progress=False, data_path=None)
    with pytest.raises(RunError, match=r"the Verilog has \d+ lint warnings; see .*lint\.log"):
        steps["simulate"]()
    assert "WIDTHTRUNC" in (rtl / "lint.log").read_text()
