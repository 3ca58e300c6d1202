"""One ngspice, driven through PySpice's shared-library mode, with memory kept flat.

PySpice's shared mode never removes old circuits or plots: about 12 MB leak per 24 x 24 circuit
load (twin-notes.md). Every run here starts with ``remcirc`` (when a circuit is loaded) and ends with
``destroy all``, so thousands of runs in one process keep memory flat. ngspice's shared library is
a process-wide singleton, so every caller goes through one lock.
"""

from __future__ import annotations

import ctypes.util
import logging
import threading

import numpy as np

from rramlab.drivers.interface import InstrumentError

_lock = threading.Lock()
_ngspice = None
_has_circuit = False

# Debian's libngspice0 ships only the versioned soname; PySpice asks for 'libngspice.so'.
_LIBRARY_CANDIDATES = ("libngspice.so.0", "libngspice.so")


class SpiceError(InstrumentError):
    """ngspice could not load or solve a circuit; carries ngspice's own messages."""


def _instance():
    global _ngspice
    if _ngspice is None:
        logging.getLogger("PySpice").setLevel(logging.CRITICAL)  # "Unsupported Ngspice version 39" is harmless
        try:
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared
        except ImportError as exc:  # pragma: no cover - install problem
            raise SpiceError("PySpice is not installed: run ./install.sh (pip install PySpice==1.5)") from exc
        errors = []
        for name in _LIBRARY_CANDIDATES:
            NgSpiceShared.LIBRARY_PATH = name
            try:
                _ngspice = NgSpiceShared.new_instance()
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
            ng.run()
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
        except SpiceError:
            raise
        except Exception as exc:
            messages = (ng.stdout + "\n" + ng.stderr).strip()[-2000:]
            raise SpiceError(f"ngspice failed: {exc!r}\n{messages}") from exc
        finally:
            try:
                ng.exec_command("destroy all")
            except Exception:
                pass
