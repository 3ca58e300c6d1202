"""``rramlab`` with real signals delivered *inside* the bench's safe-state sequences (for
tests/test_stop_paths.py; not a test module).

    python tests/stop_runner.py ispp --bench drivers/benches/sim.toml --cell 3,7 ...

runs the real command line (``rramlab.app.cli.main``) in this process and sends itself real signals
(``os.kill``) at the points named in ``STOP_PLAN`` (env), a comma-separated list of ``WHERE#N:SIG``:

* ``PV#40:TERM``: SIGTERM just before the 40th command starting with ``PV`` is sent (mid-run, at a
  known pulse, so the test knows exactly which rows must be kept);
* ``reset#2:INT``: SIGINT just before the 2nd transaction (write or query) of every safe-state
  sequence the probe station runs, counted from 1 within each sequence.

The signal arrives exactly as a user's Ctrl-C or ``kill`` would. Nothing in rramlab is replaced:
only the counting and the signals are added around the driver's own methods.
"""

import os
import signal
import sys

from rramlab.app.cli import main
from rramlab.drivers.probe_station import ProbeStation
from rramlab.drivers.visa_io import Transport

_IN_RESET: dict[int, int] = {}        # transaction number within a safe-state sequence -> signal
_AT_COMMAND: dict[tuple[str, int], int] = {}  # (command prefix, occurrence) -> signal
for _item in filter(None, os.environ.get("STOP_PLAN", "").split(",")):
    _where, _sig = _item.split(":")
    _what, _n = _where.split("#")
    _signum = getattr(signal, "SIG" + _sig)
    if _what == "reset":
        _IN_RESET[int(_n)] = _signum
    else:
        _AT_COMMAND[(_what, int(_n))] = _signum
_state = {"depth": 0, "n": 0}
_seen: dict[str, int] = {}


def _sequence(method):
    def wrapped(self, *args, **kwargs):
        _state["depth"] += 1
        if _state["depth"] == 1:
            _state["n"] = 0
        try:
            return method(self, *args, **kwargs)
        finally:
            _state["depth"] -= 1
    return wrapped


def _counted(method):
    def wrapped(self, command, *args, **kwargs):
        sig = None
        if _state["depth"]:
            _state["n"] += 1
            sig = _IN_RESET.get(_state["n"])
        for prefix, _ in _AT_COMMAND:
            if command.startswith(prefix):
                _seen[prefix] = _seen.get(prefix, 0) + 1
                sig = _AT_COMMAND.get((prefix, _seen[prefix]), sig)
        if sig is not None:
            os.kill(os.getpid(), sig)
        return method(self, command, *args, **kwargs)
    return wrapped


for _name in ("_safe_state", "_reset_outputs"):
    if hasattr(ProbeStation, _name):
        setattr(ProbeStation, _name, _sequence(getattr(ProbeStation, _name)))
for _name in ("write", "query"):
    setattr(Transport, _name, _counted(getattr(Transport, _name)))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
