import json

import pytest

from edge3u.cli import main
from tests_paths import DIGITS_CONFIG


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["train", "--config", str(DIGITS_CONFIG), "--run", str(run), "--quick",
                 "--quiet"]) == 0
    return run


def test_train_writes_the_run(trained):
    for name in ("config.json", "checkpoint.pt", "model.pt", "metrics.json",
                 "plots/training.png", "plots/ranks.png"):
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["quick"] and metrics["epochs_done"] == 2
    assert metrics["memory_reduction"] > 1
    assert (trained / "plots/training.png").read_bytes()[:4] == b"\x89PNG"


def test_json_is_the_last_line(capsys, trained):
    code, out, _ = run_cli(capsys, "train", "--run", str(trained), "--resume", "--json", "--quiet")
    assert code == 0
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["epochs_done"] == 2  # nothing left to do: no epoch is trained again
    assert figures["dense_train_bytes"] / figures["tt_train_bytes"] == pytest.approx(
        figures["memory_reduction"])


def test_existing_run_is_never_overwritten(capsys, trained):
    before = (trained / "checkpoint.pt").read_bytes()
    code, _, err = run_cli(capsys, "train", "--config", str(DIGITS_CONFIG), "--run", str(trained))
    assert code == 2 and "already holds a training run" in err and "--resume" in err
    assert (trained / "checkpoint.pt").read_bytes() == before


def test_resume_needs_a_checkpoint(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--run", str(tmp_path / "new"), "--resume")
    assert code == 2 and "no checkpoint to resume" in err


def test_bad_config_is_named_before_any_work(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(DIGITS_CONFIG.read_text().replace("max_rank = 4", "max_rank = 0", 1))
    code, _, err = run_cli(capsys, "train", "--config", str(bad), "--run", str(tmp_path / "r"))
    assert code == 2 and "max_rank must be an integer from 1 to 256, not 0" in err
    assert not (tmp_path / "r").exists()


def test_missing_fashion_mnist_is_a_clear_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--run", str(tmp_path / "r"), "--data",
                           str(tmp_path))
    assert code == 2 and "apt-get install dataset-fashion-mnist" in err


def test_quantize_and_export_follow_train(capsys, trained, monkeypatch):
    code, out, _ = run_cli(capsys, "quantize", "--run", str(trained), "--epochs", "1",
                           "--json", "--quiet")
    assert code == 0
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["int_vs_fake_agreement"] >= 0.97 and figures["weight_bits"] == 2
    code, out, _ = run_cli(capsys, "export", "--run", str(trained), "--json")
    assert code == 0 and (trained / "rom" / "manifest.json").is_file()
    assert json.loads(out.strip().splitlines()[-1])["rom_bits"] > 0
    code, out, _ = run_cli(capsys, "elaborate", "--run", str(trained), "--json")
    assert code == 0
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["lint_warnings"] == 0 and figures["model_cycles"] >= figures["bound_cycles"]
    assert {"edge3u_top.v", "weights.hex", "write_table.hex", "summary.json"} <= {
        p.name for p in (trained / "rtl").iterdir()}
    monkeypatch.chdir(trained.parent)  # a relative run folder: the simulator runs elsewhere
    code, out, _ = run_cli(capsys, "simulate", "--run", trained.name, "--images", "40", "--json")
    assert code == 0
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["images"] == 40 and figures["mismatches"] == 0
    assert figures["rtl_accuracy"] == figures["golden_accuracy"]
    code, _, err = run_cli(capsys, "simulate", "--run", str(trained), "--images", "0")
    assert code == 2 and "--images must be in 1 .. " in err


def test_elaborate_needs_the_rom_images(capsys, trained, tmp_path):
    (tmp_path / "config.json").write_text((trained / "config.json").read_text())
    code, _, err = run_cli(capsys, "elaborate", "--run", str(tmp_path))
    assert code == 2 and "run `edge3u export`" in err


def test_steps_out_of_order_name_the_missing_step(capsys, tmp_path):
    code, _, err = run_cli(capsys, "quantize", "--run", str(tmp_path))
    assert code == 2 and "run `edge3u train --run" in err
    (tmp_path / "config.json").write_text(DIGITS_CONFIG.read_text() and "{}")
    code, _, err = run_cli(capsys, "export", "--run", str(tmp_path))
    assert code == 2 and "run `edge3u quantize --run" in err


def test_bad_quantize_option_is_named(capsys, trained):
    code, _, err = run_cli(capsys, "quantize", "--run", str(trained), "--weight-bits", "5")
    assert code == 2 and "quant.weight_bits must be one of 1, 2, 3, 4, 'ternary', not 5" in err


def test_synth_needs_the_elaborated_verilog(capsys, tmp_path):
    code, _, err = run_cli(capsys, "synth", "--run", str(tmp_path), "--target", "ecp5")
    assert code == 2 and "run `edge3u elaborate --run" in err


def test_build_refuses_what_it_cannot_build(capsys, trained):
    code, _, err = run_cli(capsys, "build", "--run", str(trained), "--board", "ulx3s",
                           "--baud", "50000000")
    assert code == 2 and "--baud 50000000 cannot be made from a 150 MHz clock" in err
    code, _, err = run_cli(capsys, "build", "--run", str(trained), "--board", "icebreaker")
    assert code == 2 and "run `edge3u synth --target ice40`" in err
    assert not (trained / "board").exists()


def test_board_names_a_port_it_cannot_open(capsys, trained):
    code, _, err = run_cli(capsys, "board", "--run", str(trained), "--port", "/dev/edge3u-none",
                           "--images", "2")
    assert code == 2 and "cannot open serial port '/dev/edge3u-none'" in err


def test_build_makes_a_ulx3s_bitstream(capsys, trained):
    if not (trained / "rom").exists():
        assert run_cli(capsys, "quantize", "--run", str(trained), "--epochs", "1",
                       "--quiet")[0] == 0
        assert run_cli(capsys, "export", "--run", str(trained))[0] == 0
    code, out, err = run_cli(capsys, "build", "--run", str(trained), "--board", "ulx3s",
                             "--clock", "50", "--quiet", "--json")
    figures = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and figures["timing_met"] and figures["fmax_mhz"] >= 50
    assert figures["pll"] == [1, 2, 12] and figures["uart_divisor"] == 434  # 25 -> 50 MHz
    bitstream = trained / "board" / "ulx3s" / "edge3u_board_ulx3s.bit"
    assert bitstream.stat().st_size > 100_000 and figures["bitstream"] == str(bitstream)
