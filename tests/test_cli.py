"""The rramlab command, run as a user runs it."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from rramlab.app.cli import main

ROOT = Path(__file__).resolve().parents[1]
SIM_BENCH = str(ROOT / "drivers" / "benches" / "sim.toml")
RRAMLAB = str(Path(sys.executable).with_name("rramlab"))


def read_rows(path):
    """The rows of a record file, skipping its '#' provenance lines (as pandas' comment='#' does)."""
    with open(path, newline="") as fh:
        return list(csv.reader(line for line in fh if not line.startswith("#")))


def provenance(path) -> dict:
    """The '# key: value' lines at the top of a record file."""
    out = {}
    for line in open(path):
        if not line.startswith("#"):
            break
        key, _, value = line[2:].rstrip("\n").partition(": ")
        out[key] = value
    return out


def test_ispp_writes_the_csv_and_a_summary(tmp_path, capsys):
    out = tmp_path / "ispp.csv"
    assert main(["ispp", "--cycles", "2", "--csv", str(out), "--no-progress"]) == 0
    rows = read_rows(out)
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
    rows = read_rows(out)[1:]
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
    (["ispp", "--bench", SIM_BENCH, "--width", "2e-3"], "--bench needs --cell WL,BL"),
    (["ispp", "--bench", "", "--cell", "3,7"], "--bench is empty: give the path of a bench TOML file"),
    (["ispp", "--bench", "  ", "--cell", "3,7"], "--bench is empty"),
    (["ispp", "--bench", SIM_BENCH, "--cell", "3,7", "--width", "2e-3", "--seed", "5"],
     "--seed applies to the twin only; drop it when you use --bench"),
    (["ispp", "--read-v", "-0.2"], "--read-v (read_v) = -0.2 V is beyond the read limit of the safe operating area: "
                                   "allowed 0 to 1.5 V"),
    (["ispp", "--read-v", "-1.5"], "allowed 0 to 1.5 V"),
    (["ispp", "--read-v", "1.6"], "allowed 0 to 1.5 V"),
    (["ispp", "--cell", "3,7", "--chip", "c.npz", "--seed", "4"], "--chip loads a saved chip, which keeps its own seed, device and wires"),
    (["ispp", "--cycles", "1000000000"], "--cycles (cycles) = 1e+09 is out of range: allowed 1 to 100000"),
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
    rows = read_rows(out)
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


def test_an_error_mid_run_keeps_every_row_it_took_and_says_where_the_outputs_are(tmp_path, monkeypatch, capsys):
    # (Interrupts are delivered as real signals to a real process in tests/test_stop_paths.py.)
    from rramlab.drivers.interface import InstrumentError
    from rramlab.sim.virtual_array import VirtualArray

    real_read, reads = VirtualArray._read, []

    def read_then_fail(self, cells, v_read):
        if len(reads) == 7:
            raise InstrumentError("the SMU stopped answering")
        reads.append(1)
        return real_read(self, cells, v_read)

    monkeypatch.setattr(VirtualArray, "_read", read_then_fail)
    out = tmp_path / "cut.csv"
    assert main(["ispp", "--csv", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "error: the SMU stopped answering" in err and "stopped after 7 of 186 pulses; outputs are at 0 V" in err
    assert "7 rows kept" in err and "Traceback" not in err
    assert len(read_rows(out)) == 1 + 7


# ----- checks before the first command -----

class Pulses:
    """Counts pulses that reach the twin (patched onto VirtualArray._pulse)."""

    def __init__(self, monkeypatch):
        from rramlab.sim.virtual_array import VirtualArray

        self.count, real = 0, VirtualArray._pulse

        def counted(inst, *a):
            self.count += 1
            return real(inst, *a)

        monkeypatch.setattr(VirtualArray, "_pulse", counted)


@pytest.fixture
def pulses(monkeypatch):
    return Pulses(monkeypatch)


def readonly_file(tmp_path):
    f = tmp_path / "locked.csv"
    f.write_text("precious\n")
    f.chmod(0o444)
    return f


@pytest.mark.parametrize("flag", ["--csv", "--save-chip"])
@pytest.mark.parametrize("make_path, message", [
    (lambda t: t / "missing" / "x.out", "the folder {t}/missing does not exist: create it"),
    (lambda t: t, "{t} is a folder: give a file name inside it"),
    (readonly_file, "{t}/locked.csv is read-only: choose another file"),
    (lambda t: t / "same.out", None),  # given to --csv and --save-chip at once
])
def test_a_bad_output_path_is_refused_before_any_pulse(tmp_path, capsys, pulses, flag, make_path, message):
    path = make_path(tmp_path)
    argv = ["ispp", "--cell", "3,7", "--cycles", "1", "--no-progress", flag, str(path), "--force"]
    if message is None:
        argv += ["--save-chip" if flag == "--csv" else "--csv", str(path)]
        message = "are the same file"
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message.format(t=tmp_path) in err and "Traceback" not in err and err.count("\n") == 1
    assert pulses.count == 0


def test_a_bad_visa_log_path_is_refused_before_connecting(tmp_path, capsys):
    log = tmp_path / "nowhere" / "visa.log"
    assert main(["ispp", "--bench", SIM_BENCH, "--cell", "3,7", "--width", "2e-3", "--visa-log", str(log)]) == 1
    assert "--visa-log" in capsys.readouterr().err and not log.parent.exists()


@pytest.mark.parametrize("flag", ["--csv", "--save-chip"])
def test_an_existing_file_is_overwritten_only_with_force(tmp_path, capsys, pulses, flag):
    target = tmp_path / "taken.out"
    target.write_text("yesterday's measurement\n")
    argv = ["ispp", "--cell", "3,7", "--cycles", "1", "--set-start", "4.2", "--reset-stop", "-1.0", "--no-progress",
            flag, str(target)]
    assert main(argv) == 1
    assert f"{flag} {target} already exists: give another name, or add --force" in capsys.readouterr().err
    assert target.read_text() == "yesterday's measurement\n" and pulses.count == 0
    assert main(argv + ["--force"]) == 0
    assert target.read_bytes() != b"yesterday's measurement\n" and pulses.count == 2


def test_the_visa_log_is_appended_not_overwritten(tmp_path):
    log = tmp_path / "visa.log"
    log.write_text("earlier session\n")
    argv = ["ispp", "--bench", SIM_BENCH, "--cell", "3,7", "--width", "2e-3", "--cycles", "1", "--set-start", "4.2",
            "--reset-stop", "-1.0", "--no-progress", "--visa-log", str(log)]
    assert main(argv) == 0
    text = log.read_text()
    assert text.startswith("earlier session\n") and "*IDN?" in text


def test_a_full_disk_is_one_line_and_no_pulse(capsys, pulses):
    assert main(["ispp", "--cycles", "1", "--csv", "/dev/full", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err == "rramlab ispp: error: cannot write --csv /dev/full: the disk is full: free some space or write to " \
                  "another disk\n"
    assert pulses.count == 0


def test_an_os_error_at_open_is_one_line(tmp_path, capsys, monkeypatch, pulses):
    import builtins
    import errno

    real_open = builtins.open

    def denied(path, *a, **k):
        if str(path).endswith("denied.csv"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", denied)
    assert main(["ispp", "--cycles", "1", "--csv", str(tmp_path / "denied.csv"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "cannot open --csv" in err and "permission denied: choose a file and folder you may write to" in err
    assert "Traceback" not in err and pulses.count == 0


# ----- provenance -----

def test_every_csv_says_what_produced_it_and_pandas_and_numpy_still_read_it(tmp_path):
    import json

    import numpy as np

    out = tmp_path / "twin.csv"
    assert main(["ispp", "--cell", "3,7", "--cycles", "1", "--seed", "7", "--csv", str(out), "--no-progress"]) == 0
    head = provenance(out)
    assert list(head)[:5] == ["rramlab 0.1.0", "command", "started", "backend", "settings"]
    assert head["command"].startswith("rramlab ispp --cell 3,7")
    backend = json.loads(head["backend"])
    assert backend["backend"] == "twin" and backend["seed"] == 7 and backend["wire_resistance"] == 2.0
    assert json.loads(head["settings"])["set_stop_v"] == 4.2
    assert open(out).readlines()[len(head)] == "cycle,phase,pulse_v,read_a\n"

    data = np.genfromtxt((l for l in open(out) if not l.startswith("#")), delimiter=",", names=True, dtype=None,
                         encoding=None)
    assert data.dtype.names == ("cycle", "phase", "pulse_v", "read_a") and len(data) == 62


def test_an_iv_csv_reads_with_numpy_loadtxt(tmp_path):
    import numpy as np

    out = tmp_path / "iv.csv"
    assert main(["iv", "--step", "0.1", "--csv", str(out)]) == 0
    head = provenance(out)
    v, i = np.loadtxt(out, delimiter=",", skiprows=len(head) + 1, unpack=True)
    assert v[0] == 0 and v.max() == pytest.approx(4.2) and v.min() == pytest.approx(-1.6) and len(v) == len(i)


def test_a_bench_csv_names_the_bench_file_and_both_instruments(tmp_path):
    import json

    out = tmp_path / "bench.csv"
    assert main(["ispp", "--bench", SIM_BENCH, "--cell", "3,7", "--width", "2e-3", "--cycles", "1",
                 "--set-start", "4.2", "--reset-stop", "-1.0", "--csv", str(out), "--no-progress"]) == 0
    backend = json.loads(provenance(out)["backend"])
    assert backend["backend"] == "probe-station" and backend["bench_file"] == SIM_BENCH
    assert "4156C" in backend["analyzer"]["idn"] and "E5250A" in backend["matrix"]["idn"]


# ----- iv goes through the safe operating area -----

@pytest.mark.parametrize("argv, message", [
    (["iv", "--set-peak", "10"], "--set-peak (set_peak_v) = 10 V is beyond the set limit of the safe operating area: "
                                 "allowed 0 to 4.3 V"),
    (["iv", "--reset-peak", "-3"], "--reset-peak (reset_peak_v) = -3 V is beyond the reset limit"),
    (["iv", "--step", "1e-7"], "--step (step_v) = 1e-07 V is out of range: allowed 0.001 to 0.5 V"),
    (["iv", "--step", "0"], "--step (step_v) = 0 V is out of range"),
    (["iv", "--set-peak", "0"], "--set-peak must be positive"),
    (["iv", "--reset-peak", "0.5"], "--reset-peak (reset_peak_v) = 0.5 V is beyond the reset limit"),
])
def test_iv_refuses_a_sweep_outside_the_safe_operating_area(tmp_path, capsys, monkeypatch, argv, message):
    import rramlab.sim.sweep as sweep

    monkeypatch.setattr(sweep, "simulate", lambda *a, **k: pytest.fail("ngspice was started"))
    out = tmp_path / "iv.csv"
    assert main(argv + ["--csv", str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


def test_iv_flags_and_help_come_from_the_declaration(capsys):
    with pytest.raises(SystemExit):
        main(["iv", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--set-peak V" in text and "0 to 4.3 V" in text and "-2.5 to 0 V" in text and "0.001 to 0.5 V" in text


def test_the_sweep_itself_refuses_what_the_device_cannot_take():
    from rramlab.drivers.interface import SafetyError
    from rramlab.sim.sweep import MAX_SWEEP_POINTS, dc_sweep, sweep_voltages

    with pytest.raises(SafetyError, match="above the set limit"):
        sweep_voltages(10.0, -1.6, 0.025)
    with pytest.raises(SafetyError, match="below the reset limit"):
        dc_sweep([0.0, -3.0, 0.0])
    with pytest.raises(ValueError, match=f"more than {MAX_SWEEP_POINTS}"):
        sweep_voltages(4.2, -1.6, 1e-7)


# ----- no traceback for OS errors -----

def test_a_reader_that_goes_away_ends_the_run_quietly(tmp_path):
    # Like `rramlab ispp | head -1` when head has exited: our stdout is a pipe nobody reads.
    proc = subprocess.Popen([RRAMLAB, "ispp", "--cycles", "1", "--no-progress", "--csv", str(tmp_path / "a.csv")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert err == ""  # quiet, as Unix tools are: no traceback, no "Exception ignored"
    assert len(read_rows(tmp_path / "a.csv")) == 1 + 62  # the run itself finished


def test_piped_into_head(tmp_path):
    result = subprocess.run(["bash", "-o", "pipefail", "-c",
                             f"'{RRAMLAB}' ispp --cycles 1 --no-progress | head -1"],
                            capture_output=True, text=True, timeout=120)
    # the run id and its store are on the first line (the conftest's store, a fresh one: run 1)
    assert result.stdout == (f"ISPP on the twin, lone device: 62 pulses, read at 1 V; run 1 in "
                             f"{tmp_path / 'runs.sqlite'}\n")
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr
    assert result.returncode in (0, 1)  # 1 only when head left before our last line


def test_os_errors_read_as_what_to_do():
    import errno

    from rramlab.app.outputs import describe_os_error

    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device", "/data/a.csv")) == \
        "/data/a.csv: the disk is full: free some space or write to another disk"
    assert "permission denied" in describe_os_error(PermissionError(errno.EACCES, "Permission denied"))
    assert describe_os_error(OSError(errno.EBADMSG, "Bad message")) == "Bad message"


def test_provenance_lines_stay_comments_whatever_the_command_holds():
    import datetime as dt

    from rramlab.app.outputs import provenance_lines

    lines = provenance_lines("0.1.0", ["rramlab", "ispp", "--csv", "a\nb.csv"], dt.datetime(2026, 1, 1),
                             {"backend": "twin", "note": "two\nlines"}, {"read_v": 1.0})
    assert all(line.startswith("# ") and "\n" not in line for line in lines)
    assert lines[0] == "# rramlab 0.1.0" and lines[2] == "# started: 2026-01-01T00:00:00"
