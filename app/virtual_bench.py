"""The virtual bench on the command line: a bench file whose ``[bench] visa_library`` is
``"@rramlab-twin"`` is opened with the virtual instruments of ``rramlab.sim.instruments`` in front of
a twin chip, so every protocol runs through ProbeStation, the drivers and the VISA messages down to
the simulated array, and the run reports the time a real bench would have taken.

The chip comes from the twin's flags (``--seed``, ``--wire-resistance``, ``--engine``, ``--chip``,
``--save-chip``); the bench file's wiring is also the virtual probe card's.
"""

from __future__ import annotations

import sys
from typing import TextIO

from rramlab.drivers.interface import RramlabError

#: benches opened by this process; the CLI prints their clocks when the command ends
OPENED: list = []


def is_virtual(config) -> bool:
    from rramlab.sim.instruments import VISA_LIBRARY

    return getattr(config, "visa_library", "").strip() == VISA_LIBRARY


def build_chip(args, geometry):
    """The twin chip behind the virtual bench, from the twin's command-line flags."""
    from rramlab.sim.array import ArrayParameters
    from rramlab.sim.virtual_array import VirtualArray

    if getattr(args, "chip", None):
        chip = VirtualArray.load_chip(args.chip, engine=getattr(args, "engine", None))
        if chip.geometry.shape != geometry.shape:
            raise RramlabError(f"the chip file {args.chip} is a {chip.geometry.shape[0]} x {chip.geometry.shape[1]} "
                               f"array but the bench's [array] is {geometry.shape[0]} x {geometry.shape[1]}")
        return chip
    from rramlab.app.cli import twin_kwargs

    kwargs = twin_kwargs(args)
    if getattr(args, "wire_resistance", None) is not None:
        kwargs["array"] = ArrayParameters(wire_resistance=args.wire_resistance)
    from rramlab.drivers.interface import ArrayGeometry

    return VirtualArray(geometry=ArrayGeometry(*geometry.shape), **kwargs)


def open_virtual_bench(config, args, visa_log=None):
    """connect_bench on the virtual instruments; the station carries ``virtual_bench`` and a
    ``save_chip`` (so ``--save-chip`` keeps the chip as on the twin)."""
    from rramlab.drivers.probe_station import connect_bench
    from rramlab.sim.instruments import BenchWiring, VirtualBench

    chip = build_chip(args, config.geometry)
    bench = VirtualBench(chip, BenchWiring.from_config(config))
    station = connect_bench(config, visa_log=visa_log, resource_manager=bench.resource_manager())
    station.virtual_bench = bench
    station.save_chip = chip.save_chip
    OPENED.append(bench)
    return station


def report_clocks(out: TextIO | None = None) -> None:
    """Print (and forget) the bench clock of every virtual bench this process opened."""
    out = out or sys.stdout
    while OPENED:
        bench = OPENED.pop(0)
        print(f"virtual bench: {bench.clock.summary()}", file=out)


def check_virtual_bench(path, args, out: TextIO, visa_log=None) -> int:
    """``rramlab bench check`` for a virtual bench: the same steps and messages as for a real one
    (validate, connect, identify, confirm the matrix is open, print the pin map)."""
    from rramlab.drivers.probe_station import format_pin_map, load_bench

    try:
        config = load_bench(path)
    except RramlabError as exc:
        print(f"bench check FAILED: {exc}", file=out)
        return 2
    print(f"bench file {config.path}: valid ({config.name or 'unnamed bench'}), virtual instruments on the twin",
          file=out)
    try:
        station = open_virtual_bench(config, args, visa_log=visa_log)
    except RramlabError as exc:
        print(f"bench check FAILED: {exc}", file=out)
        return 1
    status = 0
    try:
        print(f"analyzer {config.analyzer_resource}: {station.identities['analyzer']}", file=out)
        print(f"matrix   {config.matrix_resource}: {station.identities['matrix']}", file=out)
        for line in station.stale_error_lines():
            print(line, file=out)
        closed = station.matrix.query_closed()
        if closed:
            print(f"bench check FAILED: the matrix still reports {sorted(closed)} closed", file=out)
            status = 1
        else:
            print(format_pin_map(config), file=out)
    except RramlabError as exc:
        print(f"bench check FAILED: {exc}", file=out)
        status = 1
    finally:
        station.close()
    if status == 0:
        print("bench check OK", file=out)
    return status


def open_bench(path, visa_log=None, *, seed=None, engine=None, wire_resistance=None, chip=None, device=None,
               programming_error=None):
    """Open the probe station a bench file names (validated before any VISA resource is opened):
    real instruments through VISA, or, for ``visa_library = "@rramlab-twin"`` (e.g.
    ``drivers/benches/virtual.toml``), the virtual 4156C and E5250A on a twin chip built from the
    keyword arguments (the same meaning as the command line's twin flags; ignored for real benches,
    where giving one is an error). Returns a ProbeStation; use it as a context manager.

    Example::

        with open_bench("drivers/benches/virtual.toml", seed=3) as station:
            station.read_cell(3, 7)          # A, through the drivers' VISA messages
    """
    import argparse

    from rramlab.drivers.probe_station import connect_bench, load_bench

    config = load_bench(path)
    twin = dict(seed=seed, engine=engine, wire_resistance=wire_resistance, chip=chip, device=device,
                programming_error=programming_error)
    if is_virtual(config):
        return open_virtual_bench(config, argparse.Namespace(**twin), visa_log=visa_log)
    given = [k for k, v in twin.items() if v is not None]
    if given:
        raise RramlabError(f"{', '.join(given)} describe a twin chip; the bench file {path} names real instruments")
    return connect_bench(config, visa_log=visa_log)
