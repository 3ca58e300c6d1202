"""Every way a run can stop leaves the bench safe: real signals to a real ``rramlab`` process.

The bench is the pyvisa-sim probe station (drivers/benches/sim.toml), so the whole hardware code
path runs; the final state of the instruments is read back from the VISA log (``--visa-log``), and
the CSV is checked row by row. Signals arrive from outside (``Popen.send_signal``) in the middle of
a run, and from inside the safe-state sequence itself (tests/stop_runner.py sends them before
chosen transactions of the sequence), where a Ctrl-C used to cut the sequence short.
"""

from __future__ import annotations

import ast
import csv
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIM_BENCH = str(ROOT / "drivers" / "benches" / "sim.toml")
RRAMLAB = str(Path(sys.executable).with_name("rramlab"))
RUNNER = str(Path(__file__).with_name("stop_runner.py"))
BENCH_RUN = ["ispp", "--bench", SIM_BENCH, "--cell", "3,7", "--width", "2e-3", "--cycles", "1000", "--no-progress"]


# ----- reading the instruments' final state from the VISA log -----

_LINE = re.compile(r"\b(?P<instrument>4156C|E5250A)\b.*?\b(?P<direction>write|read|sent|received)\b\s+(?P<text>.*)$")


def visa_writes(path) -> list[tuple[str, str]]:
    """(instrument, command) of every command sent, in order, from a ``--visa-log`` file.

    Tolerant of the log's layout: a line names the instrument (4156C, E5250A), the direction and then
    the text, quoted (repr) or bare."""
    out = []
    for line in Path(path).read_text().splitlines():
        m = _LINE.search(line)
        if m is None or m.group("direction") not in ("write", "sent"):
            continue
        text = m.group("text").strip()
        if text[:1] in "'\"":
            text = ast.literal_eval(text)
        out.append((m.group("instrument"), text.strip()))
    return out


@dataclass
class BenchState:
    """What the instruments were last told: DC level and pending pulse per channel, output switches
    closed, whether the matrix was last opened completely."""

    dc: dict[int, float] = field(default_factory=dict)
    pulse_pending: set[int] = field(default_factory=set)
    outputs_on: set[int] = field(default_factory=set)
    matrix_open: bool = True
    last: list[str] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return (all(v == 0 for v in self.dc.values()) and not self.pulse_pending and not self.outputs_on
                and self.matrix_open)

    def __str__(self):
        return (f"DC {self.dc}, pulse set up on {sorted(self.pulse_pending)}, outputs on {sorted(self.outputs_on)}, "
                f"matrix {'open' if self.matrix_open else 'ROUTED'}; last commands {self.last}")


def _channels(args: str) -> set[int]:
    return {int(c) for c in args.split(",") if c.strip()}


def bench_state(writes) -> BenchState:
    """Replay the commands: the state the bench was left in."""
    s = BenchState()
    for instrument, cmd in writes:
        head, _, args = cmd.partition(" ")
        if instrument == "4156C":
            if head == "*RST":
                s.dc.clear(); s.pulse_pending.clear(); s.outputs_on.clear()
            elif head == "DV":
                ch, _, v = args.split(",")[:3]
                s.dc[int(ch)] = float(v)
                s.pulse_pending.discard(int(ch))
            elif head == "PV":
                s.pulse_pending.add(int(args.split(",")[0]))
            elif head == "CN":
                s.outputs_on |= _channels(args)
            elif head == "CL":
                s.outputs_on = s.outputs_on - _channels(args) if args.strip() else set()
        elif instrument == "E5250A":
            if head in ("*RST",) or head.startswith(":ROUT:OPEN:CARD"):
                s.matrix_open = True
            elif head.startswith(":ROUT:CLOS") and "?" not in head:  # a query (the read-back) changes nothing
                s.matrix_open = False
    s.last = [c for _, c in writes[-8:]]
    return s


def test_the_log_reader_sees_an_unsafe_end():
    # the helper itself must be able to fail: a log that ends mid-pulse is not safe
    writes = [("4156C", "CN 1,2"), ("4156C", "DV 2,11,-1.5,0.001"), ("E5250A", ":ROUT:CLOS (@00104,00232)"),
              ("4156C", "PV 1,11,0,1.5,0.001")]
    assert not bench_state(writes).safe
    writes += [("4156C", "DV 1,11,0,0.0001"), ("4156C", "DV 2,11,0,0.0001"), ("4156C", "CL")]
    assert not bench_state(writes).safe  # the matrix is still routed
    assert bench_state(writes + [("E5250A", ":ROUT:OPEN:CARD ALL")]).safe
    log_line = "2026-11-28T15:15:55.466704  4156C     write  'DV 2,11,-1.5,0.001'"
    assert bench_state(visa_writes_from_text(log_line)).dc == {2: -1.5}


def visa_writes_from_text(text: str):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as fh:
        fh.write(text + "\n")
    try:
        return visa_writes(fh.name)
    finally:
        os.unlink(fh.name)


# ----- running rramlab and stopping it -----

def csv_rows(path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(line for line in fh if not line.startswith("#")))


def assert_rows_intact(path, kept: int | None = None):
    rows = csv_rows(path)
    assert rows[0] == ["cycle", "phase", "pulse_v", "read_a"]
    body = rows[1:]
    assert body, "no row was kept"
    for r in body:  # every row complete: nothing half-written
        assert len(r) == 4 and r[1] in ("set", "reset") and int(r[0]) >= 1
        float(r[2]), float(r[3])
    if kept is not None:
        assert len(body) == kept
    return body


def wait_for(predicate, proc, timeout=60.0, what="the run to get going"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"rramlab ended (exit {proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def lines_in(path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def start(argv, tmp_path, runner=False, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    cmd = [sys.executable, RUNNER, *argv] if runner else [RRAMLAB, *argv]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


def kept_rows(stderr: str) -> int:
    m = re.search(r"(\d+) rows kept in", stderr)
    assert m, stderr
    return int(m.group(1))


@pytest.mark.parametrize("sig, code, name", [("INT", 130, None), ("TERM", 143, "SIGTERM"), ("HUP", 129, "SIGHUP")])
def test_a_signal_mid_run_leaves_the_bench_at_0_v_and_keeps_the_rows(tmp_path, sig, code, name):
    log, out = tmp_path / "visa.log", tmp_path / "ispp.csv"
    # the signal arrives just before the 40th pulse is sent: 39 pulses were measured
    proc = start(BENCH_RUN + ["--visa-log", str(log), "--csv", str(out)], tmp_path, runner=True,
                 env_extra={"STOP_PLAN": f"PV#40:{sig}"})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    state = bench_state(visa_writes(log))
    assert state.safe, state
    assert sum(1 for _, c in visa_writes(log) if c.startswith("PV")) == 39
    assert "outputs are at 0 V, output switches off, every crosspoint open" in err
    assert (f"interrupted by {name} after 39 of 62000 pulses" if name else "interrupted after 39 of 62000 pulses") in err
    assert "Traceback" not in err
    assert_rows_intact(out, 39)


def test_three_ctrl_cs_and_a_sigterm_inside_the_safe_state_sequence_cannot_cut_it_short(tmp_path):
    log, out = tmp_path / "visa.log", tmp_path / "ispp.csv"
    # A Ctrl-C before the 40th pulse starts the stop; then, in every safe-state sequence that runs,
    # Ctrl-C before its 2nd, 3rd and 4th transaction and SIGTERM before its 5th.
    proc = start(BENCH_RUN + ["--visa-log", str(log), "--csv", str(out)], tmp_path, runner=True,
                 env_extra={"STOP_PLAN": "PV#40:INT,reset#2:INT,reset#3:INT,reset#4:INT,reset#5:TERM"})
    _, err = proc.communicate(timeout=60)
    state = bench_state(visa_writes(log))
    assert state.safe, state
    assert proc.returncode == 130, err
    assert "outputs are at 0 V" in err and "Traceback" not in err
    assert_rows_intact(out, 39)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_from_outside_at_any_moment_leaves_the_bench_safe(tmp_path, sig):
    # The real console script, signalled from outside wherever it happens to be. Only what must hold
    # wherever the signal lands is asserted: every safe-state command was sent, the rows are whole,
    # no traceback, and "0 V" is claimed only by a run whose safe-state sequence completed.
    log, out = tmp_path / "visa.log", tmp_path / "ispp.csv"
    proc = start(BENCH_RUN + ["--visa-log", str(log), "--csv", str(out)], tmp_path)
    wait_for(lambda: lines_in(log) > 400, proc)  # well into the pulses
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    state = bench_state(visa_writes(log))
    assert state.safe, state
    assert "Traceback" not in err
    assert_rows_intact(out, kept_rows(err))
    if "outputs are at 0 V" in err:
        assert proc.returncode == 128 + sig, err
    else:
        # A signal landing between a query and its reply leaves that reply in the instrument; the
        # safe-state sequence's error check then reads it and cannot confirm the state (a driver
        # issue: the transport should be cleared after an interrupted query). The CLI must then say so.
        assert "the bench state is UNKNOWN: run 'rramlab bench safe" in err, err


def test_a_run_whose_safe_state_sequence_failed_does_not_claim_0_v(tmp_path):
    # the matrix stops answering during the safe state: the CLI must not say the outputs are at 0 V
    log, out = tmp_path / "visa.log", tmp_path / "ispp.csv"
    code = (
        "import sys\n"
        "from rramlab.drivers.keysight_e5250a import KeysightE5250A\n"
        "from rramlab.drivers.interface import InstrumentError\n"
        "real, calls = KeysightE5250A.open_all, []\n"
        "def dies_after_initialisation(self):\n"
        "    calls.append(1)\n"
        "    if len(calls) > 1: raise InstrumentError('E5250A: no answer to :ROUT:OPEN:CARD')\n"
        "    real(self)\n"
        "KeysightE5250A.open_all = dies_after_initialisation\n"
        "from rramlab.app.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, *BENCH_RUN, "--visa-log", str(log), "--csv", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    wait_for(lambda: lines_in(log) > 400, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (1, 143), err
    assert "outputs are at 0 V" not in err
    assert f"the bench state is UNKNOWN: run 'rramlab bench safe {SIM_BENCH}'" in err
    assert "Traceback" not in err


def test_sigterm_to_a_twin_run_keeps_the_rows(tmp_path):
    out = tmp_path / "twin.csv"
    proc = start(["ispp", "--cell", "3,7", "--cycles", "1000", "--no-progress", "--csv", str(out)], tmp_path)
    wait_for(lambda: lines_in(out) > 20, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM after" in err and "outputs are at 0 V" in err and "Traceback" not in err
    assert_rows_intact(out, kept_rows(err))
