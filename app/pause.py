"""Pausing a command-line run: Ctrl-Z, or ``rramlab runs pause RUN`` from another terminal.

While a protocol runs (``cli_control``):

* Ctrl-Z (SIGTSTP) pauses at the protocol's next checkpoint instead of suspending the process: the
  instrument is made safe (every source at 0 V, outputs off, every crosspoint open) and the run
  waits, printing how long it has been paused and the run's elapsed bench time. Ctrl-Z again resumes.
* ``rramlab runs pause RUN`` sends the run's process SIGUSR1 (pause) and ``rramlab runs resume RUN``
  SIGCONT (resume; also what ``kill -CONT PID`` or the shell's ``fg`` send). The pid and host are
  those the run store keeps with the run.
* Ctrl-C, SIGTERM and SIGHUP stop a paused run as a running one: it is already safe.

Resuming routes the matrix again and carries on with the next pulse; the records are those an
unpaused run takes. The handlers are those of the main thread only, put back when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time

from rramlab.drivers.interface import RramlabError
from rramlab.protocols.control import RunControl

#: the signal ``rramlab runs pause RUN`` sends (SIGTSTP toggles, so another terminal could not know
#: what it would do)
PAUSE_SIGNAL = signal.SIGUSR1
#: the signal ``rramlab runs resume RUN`` sends
RESUME_SIGNAL = signal.SIGCONT


def _clock_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


def bench_elapsed_s(instrument, started: float) -> float:
    """The run's elapsed bench time (s): a virtual bench's own clock (the time a real bench would
    have taken), else the wall clock since ``started`` (``time.monotonic``)."""
    bench = getattr(instrument, "virtual_bench", None)
    clock = getattr(bench, "clock", None)
    if clock is not None and hasattr(clock, "now"):
        return float(clock.now)
    return time.monotonic() - started


@contextlib.contextmanager
def cli_control(instrument, what: str, run_id=None, out=None):
    """A RunControl for a command-line run of ``what`` on ``instrument``, with Ctrl-Z, SIGUSR1 and
    SIGCONT handled as pause / resume while the block runs (main thread only). ``run_id``: the run
    (or a callable giving it) named in the message, so the user knows what to resume."""
    out = out or sys.stderr
    started = time.monotonic()
    tty = bool(getattr(out, "isatty", lambda: False)())
    last_line = [0.0]

    def write(text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            out.write(text)
            out.flush()

    def on_paused(seconds: float) -> None:
        bench = _clock_text(bench_elapsed_s(instrument, started))
        if seconds == 0.0 or last_line[0] == 0.0:
            rid = run_id() if callable(run_id) else run_id
            state = ("outputs at 0 V, output switches off, every crosspoint open" if instrument.outputs_safe
                     else "the safe state did NOT complete")
            resume = f"; rramlab runs resume {rid}" if rid is not None else ""
            write(f"\n{what} paused: {state}; nothing is sent until resumed (Ctrl-Z again, kill -CONT "
                  f"{os.getpid()}{resume}); Ctrl-C stops. Bench time so far {bench}\n")
            last_line[0] = time.monotonic()
        if tty:
            write(f"\r  paused {_clock_text(seconds)} (bench time {bench})   ")
        elif time.monotonic() - last_line[0] >= 60.0:
            write(f"  paused {_clock_text(seconds)} (bench time {bench})\n")
            last_line[0] = time.monotonic()

    def on_resumed(seconds: float) -> None:
        last_line[0] = 0.0
        write(f"\n{what} resumed after a pause of {_clock_text(seconds)}: routing again, next pulse\n")

    control = RunControl(instrument, on_paused=on_paused, on_resumed=on_resumed, poll_s=0.05, report_every_s=1.0)
    if threading.current_thread() is not threading.main_thread():
        yield control
        return
    handlers = {signal.SIGTSTP: lambda s, f: control.toggle(), PAUSE_SIGNAL: lambda s, f: control.pause(),
                RESUME_SIGNAL: lambda s, f: control.resume()}
    previous = {}
    try:
        for sig, handler in handlers.items():
            previous[sig] = signal.signal(sig, handler)
        yield control
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def signal_run(store, run_id: int, action: str) -> str:
    """``rramlab runs pause|resume RUN``: send the run's process the pause or resume signal; the
    line to print. RramlabError (one line) when the run is not running here."""
    info = store.run(run_id)
    if info.status != "running" or info.shown_status != "running":
        raise RramlabError(f"run {run_id} is {info.shown_status}, not running: only a running run can be "
                           f"{action}d (see `rramlab runs list`)")
    if info.host and info.host != socket.gethostname():
        raise RramlabError(f"run {run_id} runs on {info.host}, not on this computer: run "
                           f"`rramlab runs {action} {run_id}` there")
    sig = PAUSE_SIGNAL if action == "pause" else RESUME_SIGNAL
    try:
        os.kill(int(info.pid), sig)
    except ProcessLookupError:
        raise RramlabError(f"run {run_id}'s process {info.pid} is gone: the run is unfinished; continue it "
                           f"with `rramlab {info.protocol} --resume {run_id}`") from None
    except PermissionError:
        raise RramlabError(f"run {run_id}'s process {info.pid} belongs to another user: {action} it as that "
                           "user") from None
    if action == "pause":
        return (f"run {run_id} ({info.protocol}, pid {info.pid}) asked to pause at its next checkpoint: outputs "
                f"to 0 V, matrix open; `rramlab runs resume {run_id}` continues it")
    return f"run {run_id} ({info.protocol}, pid {info.pid}) asked to resume with its next pulse"


def pausable(run, instrument, plan, what: str, run_id=None, out=None):
    """The records of ``run(instrument, plan, should_stop)`` (a protocol's ``run``) with Ctrl-Z,
    ``rramlab runs pause`` and ``rramlab runs resume`` acting at its checkpoints (``cli_control``):
    what every recording command iterates over."""
    with cli_control(instrument, what, run_id, out) as control:
        yield from run(instrument, plan, control)
