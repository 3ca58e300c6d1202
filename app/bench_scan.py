"""``rramlab bench scan``: which instruments the VISA library sees, what each one says it is, and
the bench-file lines for the 4156C and the E5250A among them.

    rramlab bench scan                       # the system VISA (NI-VISA, Keysight IO Libraries)
    rramlab bench scan --backend @py         # pyvisa-py (with linux-gpib for GPIB)
    rramlab bench scan --backend @sim:default  # rramlab's simulated 4156C + E5250A (pyvisa-sim)

It only lists resources and asks each ``*IDN?``, a query every SCPI and IEEE 488.2 instrument
answers without changing its state; nothing else is sent. See docs/bench.md, "Connecting the
instruments".
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

#: the instruments a bench file names: model field of ``*IDN?`` -> (bench-file table, what it is)
BENCH_MODELS = {"4156C": ("analyzer", "Keysight/Agilent/HP 4156C parameter analyzer"),
                "E5250A": ("matrix", "Keysight/Agilent/HP E5250A switching matrix")}


@dataclass(frozen=True)
class Found:
    """One VISA resource: its name, its ``*IDN?`` answer (None: no answer) and why not."""

    resource: str
    idn: str | None
    problem: str = ""

    @property
    def model(self) -> str | None:
        """The bench model (a key of BENCH_MODELS) its ``*IDN?`` model field names, if any."""
        if not self.idn:
            return None
        fields = [f.strip().upper() for f in self.idn.split(",")]
        if len(fields) < 2:
            return None
        return next((m for m in BENCH_MODELS if m in fields[1]), None)


def visa_library(backend: str) -> str:
    """What pyvisa.ResourceManager receives for ``--backend`` (as a bench file's ``visa_library``;
    ``@sim`` alone is pyvisa-sim's own example devices)."""
    backend = backend.strip()
    if backend.startswith("@sim:"):
        from rramlab.drivers.probe_station import _visa_library

        return _visa_library(backend, Path.cwd())
    return backend


def scan(backend: str = "", timeout_s: float = 2.0, resource_manager=None) -> tuple[str, list[Found]]:
    """(the VISA library pyvisa loaded, every INSTR resource it lists with its ``*IDN?`` answer)."""
    from rramlab.drivers.interface import InstrumentError

    if resource_manager is None:
        import pyvisa

        try:
            resource_manager = pyvisa.ResourceManager(visa_library(backend)) if backend else pyvisa.ResourceManager()
        except Exception as exc:  # noqa: BLE001 - every load failure is one clear line
            raise InstrumentError(
                f"cannot load the VISA library {backend or '(system default)'!r}: {str(exc).rstrip('.')}. Install NI-VISA or Keysight "
                "IO Libraries, or pyvisa-py (pip install 'rramlab[bench]') and use --backend @py; "
                "see docs/bench.md, 'Connecting the instruments'") from exc
    rm = resource_manager
    found = []
    for name in rm.list_resources():
        try:
            res = rm.open_resource(name, read_termination="\n", write_termination="\n",
                                   timeout=int(timeout_s * 1000))
        except Exception as exc:  # noqa: BLE001 - a resource we cannot open is reported, not fatal
            found.append(Found(str(name), None, f"cannot open: {exc}"))
            continue
        try:
            found.append(Found(str(name), res.query("*IDN?").strip()))
        except Exception as exc:  # noqa: BLE001
            text = "no answer to *IDN? within " + f"{timeout_s:g} s" if "TMO" in str(exc) else str(exc)
            found.append(Found(str(name), None, text))
        finally:
            try:
                res.close()
            except Exception:  # noqa: BLE001
                pass
    return str(rm.visalib), found


def bench_lines(backend: str, found: list[Found]) -> list[str]:
    """The bench-file lines for the first 4156C and E5250A found (the tables they go in)."""
    lines = ["[bench]", f'visa_library = "{backend}"']
    for model, (table, _) in BENCH_MODELS.items():
        hit = next((f for f in found if f.model == model), None)
        if hit is not None:
            lines += [f"[{table}]", f'resource = "{hit.resource}"']
    return lines


def cmd_scan(args) -> int:
    from rramlab.app.cli import EXIT_ERROR, EXIT_OK

    library, found = scan(args.backend, args.timeout)
    print(f"VISA library: {library}" + ("" if args.backend else " (the system's; `pyvisa-info` says which)"))
    if not found:
        print("  no instruments listed: check that they are on and cabled, that the GPIB (or USB/LAN) driver is "
              "installed, and which VISA library is in use (docs/bench.md, 'Connecting the instruments')")
        return EXIT_ERROR
    width = max(len(f.resource) for f in found)
    for f in found:
        what = f"   <- {BENCH_MODELS[f.model][1]}" if f.model else ""
        print(f"  {f.resource:{width}s}  {f.idn if f.idn is not None else '(' + f.problem + ')'}{what}")
    models = {f.model for f in found if f.model}
    missing = [m for m in BENCH_MODELS if m not in models]
    if len(missing) == len(BENCH_MODELS):
        print("no 4156C or E5250A among them: check the instruments' GPIB addresses and that they are on")
        return EXIT_OK
    print("for your bench file (copy drivers/benches/gpib_template.toml, then `rramlab bench check FILE`):")
    for line in bench_lines(args.backend, found):
        print(f"  {line}")
    for m in missing:
        print(f"  # no {m} found: its [{BENCH_MODELS[m][0]}] resource is still to find")
    sys.stdout.flush()
    return EXIT_OK
