"""The rramlab command, run as a user runs it."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from rramlab.app.cli import main


def test_ispp_writes_the_csv_and_a_summary(tmp_path, capsys):
    out = tmp_path / "ispp.csv"
    assert main(["ispp", "--cycles", "2", "--csv", str(out), "--no-progress"]) == 0
    rows = list(csv.reader(open(out)))
    assert rows[0] == ["cycle", "phase", "pulse_v", "read_a"]
    assert len(rows) == 1 + 2 * 62
    assert rows[1][:3] == ["1", "set", "3"] and rows[50][:3] == ["1", "reset", "-1"]
    assert rows[-1][:3] == ["2", "reset", "-1.6"]
    reads = [float(r[3]) for r in rows[1:]]
    assert max(reads) > 75e-9 and min(reads) < 5e-9
    text = capsys.readouterr().out
    assert "cycle 1: read 1.6 nA .. 80.0 nA, 9 distinct levels in the set ramp" in text
    assert "first 3 reset pulses remove 75 %" in text


def test_ispp_settings_are_flags(tmp_path):
    out = tmp_path / "short.csv"
    assert main(["ispp", "--cycles", "1", "--set-start", "3.5", "--set-stop", "3.6", "--set-step", "0.05",
                 "--reset-start", "-1.2", "--reset-stop", "-1.3", "--reset-step", "0.1",
                 "--width", "1e-6", "--csv", str(out), "--no-progress"]) == 0
    rows = list(csv.reader(open(out)))[1:]
    assert [r[2] for r in rows] == ["3.5", "3.55", "3.6", "-1.2", "-1.3"]


@pytest.mark.parametrize("argv, message", [
    (["ispp", "--set-stop", "4.5"], "--set-stop (set_stop_v) = 4.5 V is beyond the set limit of the safe operating area: allowed 0 to 4.3 V"),
    (["ispp", "--reset-stop", "-3.0"], "--reset-stop (reset_stop_v) = -3 V is beyond the reset limit of the safe operating area: allowed -2.5 to 0 V"),
    (["ispp", "--reset-stop", "-3e0"], "--reset-stop (reset_stop_v) = -3 V is beyond the reset limit"),
    (["ispp", "--read-v", "2.0"], "read limit"),
    (["ispp", "--cycles", "0"], "--cycles (cycles) = 0 is out of range: allowed 1 to 100000"),
    (["ispp", "--cell", "24,0"], "wordline 24 is outside the array"),
    (["ispp", "--width", "0"], "--width (pulse_width_s) = 0 s is beyond the pulse width limit"),
    (["ispp", "--visa-log", "x.log"], "--visa-log needs --bench"),
    (["ispp", "--wire-resistance", "5"], "--wire-resistance applies to the array"),
    (["ispp", "--bench", str(Path(__file__).resolve().parents[1] / "drivers" / "benches" / "sim.toml"), "--width", "2e-3"], "--bench needs --cell WL,BL"),
])
def test_bad_input_is_a_clear_error_and_no_csv_is_started(tmp_path, capsys, argv, message):
    out = tmp_path / "never.csv"
    assert main(argv + ["--csv", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_bad_cell_syntax_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["ispp", "--cell", "3"])
    assert exc.value.code == 2
    assert "--cell takes WL,BL" in capsys.readouterr().err


def test_iv_sweep_writes_the_curve(tmp_path, capsys):
    out = tmp_path / "iv.csv"
    assert main(["iv", "--csv", str(out)]) == 0
    rows = list(csv.reader(open(out)))
    assert rows[0] == ["voltage_v", "current_a"] and len(rows) > 400
    assert "before the set" in capsys.readouterr().out


def test_the_console_script_runs(tmp_path):
    exe = str(Path(sys.executable).with_name("rramlab"))
    result = subprocess.run([exe, "ispp", "--cycles", "1", "--csv", str(tmp_path / "a.csv")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ISPP on the twin, lone device: 62 pulses" in result.stdout


def test_chip_state_is_saved_and_resumed(tmp_path, capsys):
    chip = tmp_path / "chip.npz"
    assert main(["ispp", "--cycles", "1", "--cell", "2,3", "--set-start", "3.9", "--set-stop", "4.2",
                 "--reset-start", "-1.0", "--reset-stop", "-1.0", "--save-chip", str(chip), "--no-progress"]) == 0
    from rramlab.sim.virtual_array import VirtualArray

    loaded = VirtualArray.load_chip(chip)
    assert loaded.switch_states[2, 3].sum() == 4  # the -1.0 V reset pulse left the 4 slow switches on


@pytest.mark.parametrize("interruption, code", [(KeyboardInterrupt, 130), (RuntimeError, None)])
def test_an_interrupted_run_keeps_every_row_it_took(tmp_path, monkeypatch, capsys, interruption, code):
    from rramlab.sim.virtual_array import VirtualArray

    reads = []
    resets = []
    real_read = VirtualArray._read

    def read_then_fail(self, cells, v_read):
        if len(reads) == 7:
            raise interruption("stopped at the 8th read")
        reads.append(1)
        return real_read(self, cells, v_read)

    monkeypatch.setattr(VirtualArray, "_read", read_then_fail)
    monkeypatch.setattr(VirtualArray, "_reset_outputs", lambda self: resets.append(1))
    out = tmp_path / "cut.csv"
    if code is None:
        with pytest.raises(interruption):
            main(["ispp", "--csv", str(out), "--no-progress"])
    else:
        assert main(["ispp", "--csv", str(out), "--no-progress"]) == code
        assert "interrupted after 7 of 186 pulses" in capsys.readouterr().err
    rows = list(csv.reader(open(out)))
    assert len(rows) == 1 + 7                # the header and the 7 pulses read before the stop
    assert resets, "outputs were not returned to 0 V"
