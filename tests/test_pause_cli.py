"""Pausing a command-line run (app/pause.py) with real signals: Ctrl-Z (SIGTSTP) pauses a run on the
virtual bench at its next checkpoint, the VISA log shows the safe state and then nothing while it
waits, ``rramlab runs resume RUN`` (SIGCONT) continues it with the next pulse, and the records equal
those of an unpaused run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rramlab.app.cli import main
from rramlab.protocols.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
RUNNER = str(ROOT / "tests" / "stop_runner.py")
VIRTUAL = str(ROOT / "drivers" / "benches" / "virtual.toml")
ISPP = ["ispp", "--bench", VIRTUAL, "--cell", "3,7", "--width", "2e-3", "--cycles", "1", "--set-stop", "3.3",
        "--reset-stop", "-1.2", "--seed", "5", "--no-progress"]


def _wait(predicate, proc, what, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"rramlab ended (exit {proc.returncode}) before {what}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def _records(store, run_id=None):
    with RunStore(store) as s:
        run = s.runs()[0] if run_id is None else s.run(run_id)
        return run, [(r.type, r.data) for r in s.records(run.run_id)]


def test_ctrl_z_pauses_safe_and_runs_resume_continues_to_the_records_of_an_unpaused_run(tmp_path, capsys):
    log, err, store = tmp_path / "visa.log", tmp_path / "err.txt", tmp_path / "runs.sqlite"
    # SIGTSTP (what Ctrl-Z sends) arrives just before the 5th pulse's PV command: the run pauses after it
    env = dict(os.environ, STOP_PLAN="PV#5:TSTP")
    with open(err, "w") as fh:
        proc = subprocess.Popen([sys.executable, RUNNER, *ISPP, "--visa-log", str(log), "--store", str(store)],
                                stdout=subprocess.PIPE, stderr=fh, text=True, env=env, cwd=tmp_path)
    _wait(lambda: "ISPP paused" in err.read_text(), proc, "the pause")
    run, before = _records(store)
    assert len(before) == 5 and run.status == "running"
    lines = log.read_text().splitlines()
    time.sleep(1.0)
    assert log.read_text().splitlines() == lines  # nothing sent while paused
    safe = [line.split(None, 3)[3].strip("'") for line in lines[-14:] if " write " in line]
    assert ":ROUT:OPEN:CARD ALL" in safe and "CL" in safe and "DV 2,11,0,0.0001" in safe
    assert lines[-1].endswith("'(@)'") or any("'(@)'" in line for line in lines[-4:])  # matrix read back open
    assert _records(store)[1] == before
    assert "outputs at 0 V, output switches off, every crosspoint open" in err.read_text()

    assert main(["runs", "resume", str(run.run_id), "--store", str(store)]) == 0
    assert "asked to resume" in capsys.readouterr().out
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.read_text()
    assert "ISPP resumed after a pause" in err.read_text()
    after = log.read_text().splitlines()[len(lines):]
    assert ":ROUT:CLOS (@" in after[0]  # re-routed first, then the next pulse
    run, paused = _records(store, run.run_id)
    assert run.status == "finished"

    plain_store = tmp_path / "plain.sqlite"
    assert main([*ISPP, "--store", str(plain_store)]) == 0
    assert [d for _, d in paused] == [d for _, d in _records(plain_store)[1]]
    assert len(paused) > 5


def test_runs_pause_of_a_run_that_is_not_running_is_one_line_and_sends_nothing(tmp_path, capsys):
    store = tmp_path / "runs.sqlite"
    assert main(["ispp", "--cycles", "1", "--store", str(store), "--no-progress"]) == 0
    capsys.readouterr()
    run_id = _records(store)[0].run_id
    assert main(["runs", "pause", str(run_id), "--store", str(store)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rramlab runs: error: run {run_id} is finished, not running: only a running run can be "
                   "paused (see `rramlab runs list`)"]
