"""Ctrl-C and SIGTERM part-way through each of the five lab protocols (iv, map, endurance,
retention, disturb) on the pyvisa-sim bench: real signals to a real ``rramlab`` process leave the
bench at 0 V with every crosspoint open (replayed from the VISA log), and every record measured
before the stop is kept, in the run store and in ``--csv`` alike, the run marked aborted.

tests/stop_runner.py sends the signal from inside just before a chosen VISA command, so the number
of records that must be kept is known exactly; retention's stop arrives from outside while the run
waits between two reads with the outputs at 0 V, as a user's would. Also: each protocol refuses an
over-limit plan on the pyvisa-sim bench with no instrument command sent.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from rramlab.app.cli import main
from rramlab.protocols import endurance
from rramlab.protocols.store import RunStore
from tests.test_stop_paths import bench_state, csv_rows, start, visa_writes

ROOT = Path(__file__).resolve().parents[1]
SIM_BENCH = str(ROOT / "drivers" / "benches" / "sim.toml")
SIGNALS = [("INT", 130, "interrupted after"), ("TERM", 143, "interrupted by SIGTERM after")]

# disturb: one TI? per read (count 0 first); the signal before the 21st leaves counts 0..19 read
_DISTURB_KEPT = 1 + sum(1 for c in endurance.read_cycles(1000) if c <= 19)

#: protocol -> (argv after the protocol's name, STOP_PLAN, record class in the store, records kept)
CASES = {
    # 4 legs of 20 mV steps; one TI? per step: SIGTERM before the 40th keeps the 39 points measured
    "iv": (["--cell", "3,7", "--step", "0.05"], "TI?#40", "IvPoint", 39),
    # a wordline is read in 8 groups of three bitlines (one XE each): two whole wordlines before the 20th
    "map": ([], "XE#20", "MapRead", 48),
    # every cycle read (2 TI?, 2 PV a cycle; pyvisa-sim answers one canned current, so the window is
    # "closed" at once: --stop-when-closed 0): the signal before the 21st PV keeps cycles 1..10
    "endurance": (["--cell", "3,7", "--cycles", "1000", "--read-every", "1", "--width", "2e-3",
                   "--stop-when-closed", "0"], "PV#21",
                  "EnduranceRecord", 10),
    "disturb": (["--cell", "3,7", "--reads", "1000", "--width", "2e-3"], "TI?#21", "DisturbRecord", _DISTURB_KEPT),
}


def _check_stopped_run(proc, log, csv, store, record, kept, code, said):
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == code, err
    state = bench_state(visa_writes(log))
    assert state.safe, str(state)
    assert said in err and "every crosspoint open" in err and "Traceback" not in err
    rows = csv_rows(csv)[1:]
    assert all(len(r) == len(csv_rows(csv)[0]) for r in rows)  # no half-written row
    with RunStore(store) as s:
        (info,) = s.runs()
        stored = s.records(info.run_id, record)
        assert info.status == "aborted"
    assert len(rows) == len(stored)
    if kept is not None:
        assert len(stored) == kept, err
    return rows, stored, err


@pytest.mark.parametrize("sig, code, said", SIGNALS, ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("name", list(CASES))
def test_a_signal_mid_protocol_leaves_the_bench_safe_and_keeps_every_record(tmp_path, name, sig, code, said):
    argv, where, record, kept = CASES[name]
    log, csv, store = tmp_path / "visa.log", tmp_path / "out.csv", tmp_path / "s.sqlite"
    quiet = [] if name == "iv" else ["--no-progress"]  # iv draws no progress bar
    proc = start([name, *argv, "--bench", SIM_BENCH, "--visa-log", str(log), "--csv", str(csv), "--store", str(store),
                  *quiet], tmp_path, runner=True, env_extra={"STOP_PLAN": f"{where}:{sig}"})
    rows, stored, err = _check_stopped_run(proc, log, csv, store, record, kept, code, said)
    if name == "iv":  # the kept points are the sweep's first 39 steps, in order
        assert [float(r[0]) for r in rows] == pytest.approx([0.05 * k for k in range(39)])
    if name == "endurance":
        assert [int(r[0]) for r in rows] == list(range(1, 11))


@pytest.mark.parametrize("sig, code, said", SIGNALS, ids=["ctrl-c", "sigterm"])
def test_a_signal_during_a_retention_wait_leaves_the_bench_safe_and_keeps_every_read(tmp_path, sig, code, said):
    log, csv, store = tmp_path / "visa.log", tmp_path / "out.csv", tmp_path / "s.sqlite"
    proc = start(["retention", "--bench", SIM_BENCH, "--cells", "3:4,6:8", "--levels", "50", "--width", "2e-3",
                  "--duration", "1h", "--reads", "log:10", "--visa-log", str(log), "--csv", str(csv),
                  "--store", str(store), "--no-progress"], tmp_path)
    end = time.monotonic() + 60
    # the first read (at 1 s) of both cells is in the CSV: the run now waits for the second (at 2.5 s)
    while time.monotonic() < end and not (csv.exists() and len(csv_rows(csv)) >= 3):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(getattr(signal, "SIG" + sig))
    rows, stored, err = _check_stopped_run(proc, log, csv, store, "RetentionRecord", 2, code, said)
    assert sorted((int(r[1]), int(r[2])) for r in rows) == [(3, 6), (3, 7)]


@pytest.mark.parametrize("argv, message", [
    (["endurance", "--cell", "3,7", "--set", "4.5"], "--set"),
    (["retention", "--cells", "3,7", "--read-v", "2"], "read"),
    (["disturb", "--cell", "3,7", "--neighbours", "--pulse-v", "7"], "beyond the line limit"),
    (["iv", "--cell", "3,7", "--to", "4.5"], "beyond the set limit"),
    (["map", "--read-v", "2"], "read limit"),
], ids=lambda a: a[0] if isinstance(a, list) else None)
def test_an_over_limit_plan_on_the_pyvisa_sim_bench_sends_no_instrument_command(tmp_path, capsys, argv, message):
    log = tmp_path / "visa.log"
    width = ["--width", "2e-3"] if argv[0] in ("endurance", "retention", "disturb") else []
    quiet = [] if argv[0] == "iv" else ["--no-progress"]
    assert main([*argv, *width, "--bench", SIM_BENCH, "--visa-log", str(log), "--store", str(tmp_path / "s.db"),
                 *quiet]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not log.exists() or visa_writes(log) == []


@pytest.mark.parametrize("sig, code, said", [("INT", 130, "interrupted after"), ("TERM", 143, "interrupted by SIGTERM")],
                         ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("name, argv, record", [
    ("endurance", ["--cell", "3,7", "--cycles", "100000", "--read-every", "1"], "EnduranceRecord"),
    ("disturb", ["--cell", "3,7", "--reads", "1000000"], "DisturbRecord"),
], ids=["endurance", "disturb"])
def test_a_signal_mid_run_on_the_twin_keeps_every_record(tmp_path, name, argv, record, sig, code, said):
    # the twin's long runs, signalled from outside once records stream in
    csv, store = tmp_path / "out.csv", tmp_path / "s.sqlite"
    proc = start([name, *argv, "--csv", str(csv), "--store", str(store), "--no-progress"], tmp_path)
    end = time.monotonic() + 60
    while time.monotonic() < end and not (csv.exists() and len(csv_rows(csv)) > 12):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(getattr(signal, "SIG" + sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert said in err and "outputs are at 0 V" in err and "Traceback" not in err
    rows = csv_rows(csv)[1:]
    with RunStore(store) as s:
        (info,) = s.runs()
        assert info.status == "aborted" and len(s.records(info.run_id, record)) == len(rows) >= 12
