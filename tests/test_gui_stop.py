"""The window stops as safely as the command line: real signals to a real ``rramlab gui`` process.

``rramlab gui --bench drivers/benches/virtual.toml --start ISPP`` runs an ISPP on the virtual bench
(the 4156C's and E5250A's own commands, logged with ``--visa-log``) as soon as the window is open
(offscreen). A signal sent from outside in the middle of the run must stop the worker at its next
checkpoint, leave the bench at 0 V with the outputs off and the matrix open (read back from the VISA
log with tests/test_stop_paths.py's replay), store the run as aborted with its records and the
signal's name, close the window and exit 128 + the signal number, without a traceback. Also: a
barrage of signals during the safe-state sequence cannot cut it short, an ignored SIGHUP (nohup)
stays ignored, and a run store that cannot be opened is said in the window.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_stop_paths import RRAMLAB, bench_state, visa_writes

ROOT = Path(__file__).resolve().parents[1]
VIRTUAL_BENCH = str(ROOT / "drivers" / "benches" / "virtual.toml")

# A run of the safe-state sequence slowed down (every VISA transaction inside ProbeStation._safe_state
# waits SLOW_S first), and a marker file touched when one begins, so that signals sent from outside
# after the marker land while the sequence runs. Nothing else is changed; the rest is `rramlab gui`.
SLOW_RUNNER = """
import os, sys, time
from pathlib import Path
from rramlab.drivers.probe_station import ProbeStation
from rramlab.drivers.visa_io import Transport
SLOW_S, MARKER = float(os.environ["SLOW_S"]), Path(os.environ["SAFE_STATE_MARKER"])
depth = [0]
real_safe_state = ProbeStation._safe_state
def safe_state(self, *args, **kwargs):
    depth[0] += 1
    MARKER.touch()
    try:
        return real_safe_state(self, *args, **kwargs)
    finally:
        depth[0] -= 1
ProbeStation._safe_state = safe_state
def slowed(method):
    def wrapped(self, *args, **kwargs):
        if depth[0]:
            time.sleep(SLOW_S)
        return method(self, *args, **kwargs)
    return wrapped
Transport.write, Transport.query = slowed(Transport.write), slowed(Transport.query)
from rramlab.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def gui_argv(tmp_path, cycles: int = 20) -> list[str]:
    return ["gui", "--bench", VIRTUAL_BENCH, "--visa-log", str(tmp_path / "visa.log"),
            "--store", str(tmp_path / "runs.sqlite"), "--start", "ISPP", "--cell", "3,7",
            "--set", f"cycles={cycles}"]


def start_gui(tmp_path, argv, runner: str | None = None, env_extra=None, ignore_sighup=False):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", **(env_extra or {}))
    cmd = [sys.executable, "-c", runner, *argv] if runner else [RRAMLAB, *argv]

    def nohup():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup leaves it for the program it starts

    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tmp_path, preexec_fn=nohup if ignore_sighup else None)


def writes_in(path) -> int:
    try:
        return len(visa_writes(path))
    except FileNotFoundError:
        return 0


def wait_until(predicate, proc, what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"rramlab gui ended (exit {proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}: {proc.communicate()[1][-3000:]}")


def stored_runs(tmp_path):
    from rramlab.protocols.store import RunStore

    with RunStore(tmp_path / "runs.sqlite") as store:
        return store.runs()


def visa_times(path, prefix: str) -> list[_dt.datetime]:
    """Times of the commands starting with ``prefix`` in a VISA log."""
    out = []
    for line in Path(path).read_text().splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2] == "write" and parts[3].strip("'\"").startswith(prefix):
            out.append(_dt.datetime.fromisoformat(parts[0]))
    return out


def logged_at(stderr: str, text: str) -> _dt.datetime:
    """When the window logged the line containing ``text`` (its log's asctime, ms, local time)."""
    for line in stderr.splitlines():
        if text in line:
            return _dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    raise AssertionError(f"{text!r} not logged: {stderr[-3000:]}")


def assert_bench_safe_and_run_aborted(tmp_path, err: str, name: str):
    log = tmp_path / "visa.log"
    state = bench_state(visa_writes(log))
    assert state.safe, state
    assert "Traceback" not in err and "unexpected error" not in err, err[-3000:]
    (run,) = stored_runs(tmp_path)
    assert run.protocol == "ispp" and run.status == "aborted", run
    assert run.records > 0 and f"aborted by {name} after {run.records} of " in run.error, run
    assert "outputs at 0 V" in run.error
    # no more pulses than the one under way once the window acted on the signal: the logged time is
    # truncated to the millisecond, so a pulse 1 ms later certainly came after it
    acted = logged_at(err, f"{name}: stopping the run at its next checkpoint")
    later = [t for t in visa_times(log, "PV") if t >= acted + _dt.timedelta(milliseconds=1)]
    assert len(later) <= 1, (acted, later)
    return run


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_stops_the_gui_run_safely_stores_it_aborted_and_exits_128_plus_the_signal(tmp_path, sig, code):
    log = tmp_path / "visa.log"
    proc = start_gui(tmp_path, gui_argv(tmp_path))
    try:
        wait_until(lambda: writes_in(log) > 300, proc, "300 VISA writes")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err[-3000:]
    name = signal.Signals(sig).name
    run = assert_bench_safe_and_run_aborted(tmp_path, err, name)
    pulses = len(visa_times(log, "PV"))
    assert run.records == pulses, (run.records, pulses)  # every pulse's record is stored, nothing more
    assert pulses < 20 * 62  # stopped, not finished


def test_a_barrage_of_signals_during_the_safe_state_sequence_cannot_cut_it_short(tmp_path):
    log, marker = tmp_path / "visa.log", tmp_path / "safe_state_started"
    proc = start_gui(tmp_path, gui_argv(tmp_path), runner=SLOW_RUNNER,
                     env_extra={"SLOW_S": "0.05", "SAFE_STATE_MARKER": str(marker)})
    barrage = [signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    try:
        wait_until(lambda: writes_in(log) > 300, proc, "300 VISA writes")
        proc.send_signal(signal.SIGTERM)
        # the run stops at its next checkpoint and its safe-state sequence begins (slowed to ~0.5 s)
        wait_until(marker.exists, proc, "the safe-state sequence")
        for sig in barrage:
            proc.send_signal(sig)
            time.sleep(0.02)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-3000:]  # the first signal's code, whatever came after
    assert_bench_safe_and_run_aborted(tmp_path, err, "SIGTERM")
    during = re.findall(r"(SIG\w+) while the run is stopping: ignored", err)
    assert len(during) >= 1, err[-3000:]  # at least 2 signals delivered: the first and one during the sequence
    # every safe-state step of the run's own sequence was sent after those signals were handled
    last_stop = logged_at(err, f"{during[-1]} while the run is stopping")
    assert [t for t in visa_times(log, ":ROUT:OPEN:CARD ALL") if t > last_stop], "the matrix was not opened after"


def test_under_nohup_a_sighup_does_not_stop_the_gui_run(tmp_path):
    log = tmp_path / "visa.log"
    proc = start_gui(tmp_path, gui_argv(tmp_path, cycles=100), ignore_sighup=True)
    try:
        wait_until(lambda: writes_in(log) > 300, proc, "300 VISA writes")
        proc.send_signal(signal.SIGHUP)
        at_hup = writes_in(log)
        wait_until(lambda: writes_in(log) > at_hup + 300, proc, "300 more VISA writes after the SIGHUP")
        assert proc.poll() is None  # still running its run
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-3000:]
    assert "SIGHUP is ignored (as when the window was started)" in err
    assert "SIGHUP:" not in err
    assert_bench_safe_and_run_aborted(tmp_path, err, "SIGTERM")


def test_rramlab_gui_with_a_garbage_store_says_so_in_the_window(qapp, tmp_path):
    from PySide6 import QtCore

    from rramlab.app.cli import main
    from rramlab.app.gui.main_window import MainWindow

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a run store\n" * 100)
    seen = {}

    def look():
        try:
            window = next(w for w in qapp.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible())
            label = window.store_warning
            seen.update(visible=label.isVisible(), text=label.text(), title=window.history_dock.windowTitle(),
                        error=window.last_error)
        finally:
            for w in qapp.topLevelWidgets():
                w.close()

    QtCore.QTimer.singleShot(300, look)
    assert main(["gui", "--store", str(garbage)]) == 0
    assert seen["visible"], seen
    text = seen["text"]
    assert str(garbage) in text and "not a rramlab run store" in text, text
    assert "memory only" in text and "Store…" in text and "--store FILE" in text, text
    assert "memory" in seen["title"] and "could not be opened" in seen["title"]
    assert seen["error"] is not None and str(garbage) in seen["error"][1]
    assert garbage.read_bytes() == b"this is not a run store\n" * 100  # left as it was


@pytest.mark.parametrize("argv, message", [
    (["--start", "Nope"], "--start 'Nope' is not a panel of the window: choose one of 'ISPP'"),
    (["--start", "ISPP", "--set", "cycles=many"], "--set 'cycles=many': cycles takes a whole number"),
    (["--start", "ISPP", "--set", "cycle=3"], "give NAME=VALUE with NAME one of the ISPP settings: set_start_v"),
    (["--start", "ISPP", "--set", "pulse_width_s=1e-6", "--bench", VIRTUAL_BENCH], "beyond the pulse width limit"),
    (["--start", "Array read", "--cell", "1,1"], "the Array read panel takes no cell"),
    (["--cell", "1,1"], "--cell and --set fill the form of the panel --start runs"),
])
def test_a_bad_start_option_is_one_line_and_nothing_runs(qapp, tmp_path, capsys, argv, message):
    from rramlab.app.cli import main

    log = tmp_path / "visa.log"
    assert main(["gui", "--store", str(tmp_path / "runs.sqlite"), "--visa-log", str(log), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert writes_in(log) == 0 and stored_runs(tmp_path) == []
