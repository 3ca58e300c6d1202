"""One ngspice, driven through PySpice's shared-library mode, with memory kept flat.

PySpice's shared mode never removes old circuits or plots: about 12 MB leak per 24 x 24 circuit
load (twin-notes.md). Every run here starts with ``remcirc`` (when a circuit is loaded) and ends with
``destroy all``, so thousands of runs in one process keep memory flat. ngspice's shared library is
a process-wide singleton, so every caller goes through one lock.

Runs are interruptible: ngspice solves in its own background thread (``bg_run``) while the calling
thread polls it every POLL_S seconds, so a Ctrl-C (SIGINT, delivered to Python's main thread) halts
ngspice (``bg_halt``) and raises KeyboardInterrupt within about a tenth of a second instead of
waiting for the run to end. A foreground ``run`` would hold the main thread inside the C library,
where Python cannot handle the signal until ngspice returns.
"""

from __future__ import annotations

import ctypes.util
import logging
import threading
import time

import numpy as np

from rramlab.drivers.interface import InstrumentError

_lock = threading.Lock()
#: seconds between two looks at the background run (also the worst-case delay of a Ctrl-C)
POLL_S = 0.005
_ngspice = None
_has_circuit = False

# Debian's libngspice0 ships only the versioned soname; PySpice asks for 'libngspice.so'.
_LIBRARY_CANDIDATES = ("libngspice.so.0", "libngspice.so")


class SpiceError(InstrumentError):
    """ngspice could not load or solve a circuit; carries ngspice's own messages."""


def _shared_class():
    """PySpice's NgSpiceShared with a working background-thread callback.

    ngspice calls it with True when its background thread has exited (False when it starts); PySpice
    1.5 stores the flag as "is running" and returns None where C wants an int, which prints an
    "Exception ignored from cffi callback" on every run. This one returns 0 and sets an event.
    """
    from PySpice.Spice.NgSpice.Shared import NgSpiceShared, ffi

    class _NgSpice(NgSpiceShared):
        @staticmethod
        def _background_thread_running(exited, ngspice_id, user_data):
            self = ffi.from_handle(user_data)
            done = getattr(self, "bg_done", None)
            if exited and done is not None:
                done.set()
            return 0

    return _NgSpice


def _instance():
    global _ngspice
    if _ngspice is None:
        logging.getLogger("PySpice").setLevel(logging.CRITICAL)  # "Unsupported Ngspice version 39" is harmless
        try:
            shared = _shared_class()
        except ImportError as exc:  # pragma: no cover - install problem
            raise SpiceError("PySpice is not installed: run ./install.sh (pip install PySpice==1.5)") from exc
        errors = []
        for name in _LIBRARY_CANDIDATES:
            shared.LIBRARY_PATH = name
            try:
                _ngspice = shared.new_instance()
                break
            except OSError as exc:
                errors.append(str(exc))
        if _ngspice is None:
            found = ctypes.util.find_library("ngspice")
            raise SpiceError(
                "cannot load the ngspice shared library (tried "
                + ", ".join(_LIBRARY_CANDIDATES)
                + f"; find_library says {found!r}). Install it: apt-get install -y libngspice0"
            )
        _ngspice.bg_done = threading.Event()
    return _ngspice


def simulate(netlist: str, vectors: list[str]) -> dict[str, np.ndarray]:
    """Load ``netlist`` (which must contain its analysis card and ``.end``), run it and return the
    requested vectors (lower-case ngspice names, e.g. ``"v(n1)"``, ``"vsense0#branch"``, ``"time"``)
    as float arrays. Raises SpiceError with ngspice's messages if loading or solving fails."""
    global _has_circuit
    with _lock:
        ng = _instance()
        try:
            if _has_circuit:
                ng.exec_command("remcirc")
                _has_circuit = False
            ng.load_circuit(netlist)
            _has_circuit = True
            _run_interruptibly(ng)
            plot = ng.plot(None, ng.last_plot)
            out = {}
            for name in vectors:
                key = name.lower()
                if key.startswith("v(") and key.endswith(")"):
                    key = key[2:-1]
                if key not in plot:
                    raise SpiceError(f"ngspice produced no vector {name!r}; it has {sorted(plot)[:10]} ...")
                out[name] = np.array(np.real(plot[key]._data), dtype=float)
            return out
        except (SpiceError, KeyboardInterrupt):
            raise
        except Exception as exc:
            messages = (ng.stdout + "\n" + ng.stderr).strip()[-2000:]
            raise SpiceError(f"ngspice failed: {exc!r}\n{messages}") from exc
        finally:
            try:
                ng.exec_command("destroy all")
            except Exception:
                pass


def _run_interruptibly(ng) -> None:
    """Run the loaded circuit in ngspice's background thread and wait for it to exit; on
    KeyboardInterrupt (or any exception) halt the background run before re-raising, so the library
    is left idle for the next call."""
    done = ng.bg_done
    done.clear()
    ng.exec_command("bg_run")
    try:
        while not done.wait(POLL_S):
            pass
    except BaseException:
        # straight to the library: PySpice's exec_command reads ngspice's "simulation interrupted"
        # notice as a failure of the command
        ng._ngspice_shared.ngSpice_Command(b"bg_halt")
        deadline = time.monotonic() + 5.0
        running = ng._ngspice_shared.ngSpice_running
        while running() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        raise
