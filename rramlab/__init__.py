"""rramlab: program and read HT-RRAM crossbar arrays on a 4156C + E5250A probe station, or on its
PySpice/ngspice twin.

The repository keeps the design's folders at its top (``app/``, ``drivers/``, ``sim/``,
``protocols/``); installed, they are the subpackages ``rramlab.app``, ``rramlab.drivers``,
``rramlab.sim`` and ``rramlab.protocols``, so ``rramlab`` is the only top-level import name the
distribution adds.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("rramlab")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
