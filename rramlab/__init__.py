"""rramlab: program and read HT-RRAM crossbar arrays on a 4156C + E5250A probe station, or on its
PySpice/ngspice twin.

The few names a script needs are exported here (see ``__all__`` and ``docs/api.md``)::

    from rramlab import VirtualArray, open_bench, RunStore, record_run
    from rramlab.protocols import ispp, ispva, transfer

    with VirtualArray(seed=1, engine="fast") as chip:    # or: with open_bench("bench.toml") as chip:
        plan = ispva.plan(ispva.IspvaSettings(), [(0, 0), (0, 1)], [20e-9, 50e-9], chip)
        for record in ispva.run(chip, plan):
            print(record)

The exports are loaded on first use (module ``__getattr__``): the twin pulls in PySpice and the
probe station pyvisa, which would make a bare ``import rramlab`` (and ``rramlab --version``) take
about a second instead of a few tens of milliseconds.

The repository keeps the design's folders at its top (``app/``, ``drivers/``, ``sim/``,
``protocols/``); installed, they are the subpackages ``rramlab.app``, ``rramlab.drivers``,
``rramlab.sim`` and ``rramlab.protocols``, so ``rramlab`` is the only top-level import name the
distribution adds.
"""

import os as _os
import sys as _sys
from importlib import import_module

#: the one line a Ctrl-C during the ``rramlab`` command's start-up prints, before any backend exists
_STARTUP_INTERRUPTED = "rramlab: interrupted while starting (Ctrl-C); nothing was sent to any instrument"
_previous_excepthook = None


def _startup_excepthook(kind, value, tb):
    # A Ctrl-C that lands while the command starts (its imports) is one line, not a traceback.
    _remove_startup_hook()
    if issubclass(kind, KeyboardInterrupt):
        try:
            _sys.stderr.write("\n" + _STARTUP_INTERRUPTED + "\n")
            _sys.stderr.flush()
        except (OSError, ValueError):
            pass
        return
    _sys.excepthook(kind, value, tb)


def _install_startup_hook() -> None:
    """Until ``_remove_startup_hook`` (the end of ``rramlab.app.cli``'s import), an uncaught Ctrl-C
    prints ``_STARTUP_INTERRUPTED`` instead of a traceback."""
    global _previous_excepthook
    if _sys.excepthook is not _startup_excepthook:
        _previous_excepthook, _sys.excepthook = _sys.excepthook, _startup_excepthook


def _remove_startup_hook() -> None:
    if _sys.excepthook is _startup_excepthook:
        _sys.excepthook = _previous_excepthook


# The ``rramlab`` console script imports this package first, then rramlab.app.cli: the hook goes in
# as early as rramlab's own code runs. Nothing changes for a script or notebook importing rramlab.
if _os.path.basename(getattr(_sys.modules.get("__main__"), "__file__", None) or "") in ("rramlab", "rramlab.exe",
                                                                                         "rramlab-script.py"):
    _install_startup_hook()

#: the one place the version is written (pyproject.toml reads it from here): looking it up with
#: importlib.metadata goes through the editable install's finder, 0.3 s of every `rramlab --help`
__version__ = "0.1.0"

#: public name -> the module that defines it (one place, read by ``__getattr__``, ``__dir__`` and
#: ``tools/gen_api_docs.py``)
_EXPORTS = {
    # the seam: what every backend implements and every protocol talks to
    "CrossbarInstrument": "rramlab.drivers.interface",
    "RequestChecker": "rramlab.drivers.interface",
    "ArrayGeometry": "rramlab.drivers.interface",
    "SafeOperatingArea": "rramlab.drivers.interface",
    # errors: RramlabError is the base of everything rramlab raises on purpose
    "RramlabError": "rramlab.drivers.interface",
    "SafetyError": "rramlab.drivers.interface",
    "GeometryError": "rramlab.drivers.interface",
    "RequestError": "rramlab.drivers.interface",
    "InstrumentError": "rramlab.drivers.interface",
    # the two backends
    "VirtualArray": "rramlab.sim.virtual_array",
    "Variability": "rramlab.sim.virtual_array",
    "ArrayParameters": "rramlab.sim.array",
    "open_bench": "rramlab.app.virtual_bench",   # real or virtual instruments, by the bench file
    "BenchError": "rramlab.drivers.probe_station",
    # the run store, shared with the command line
    "RunStore": "rramlab.protocols.store",
    "record_run": "rramlab.protocols.store",
    "run_protocol": "rramlab.protocols.store",
    "ProtocolRun": "rramlab.protocols.store",
    "StoreError": "rramlab.protocols.store",
    "RunMetadata": "rramlab.protocols.store",
    "cell_history": "rramlab.protocols.store",
    # pause, resume and stop a run at its protocol's checkpoints
    "RunControl": "rramlab.protocols.control",
    # records to tables
    "record_dicts": "rramlab.protocols.records",
    "records_frame": "rramlab.protocols.records",
    # a stored run as a file (the exporter of rramlab runs export and the window)
    "export_run": "rramlab.app.export",
    "open_run": "rramlab.app.export",
    "dataset_records": "rramlab.app.export",
    # weight files
    "load_weights": "rramlab.protocols.weights",
    "save_weights": "rramlab.protocols.weights",
    "WeightFileError": "rramlab.protocols.weights",
    # experiment recipes (rramlab run): planned and checked whole, run as one store session
    "load_recipe": "rramlab.protocols.recipe",
    "plan_recipe": "rramlab.protocols.recipe",
    "run_recipe": "rramlab.protocols.recipe",
    "RecipeError": "rramlab.protocols.recipe",
    # Monte-Carlo sweeps of the twin on Dask
    "sweep": "rramlab.app.sweep",
    "SweepError": "rramlab.app.sweep",
    # the twin fitted to a chip's own runs
    "fit_twin": "rramlab.app.cmd_twin",
    "compare_twin": "rramlab.app.cmd_twin",
    "FitError": "rramlab.sim.fit",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rramlab' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
