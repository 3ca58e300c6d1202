"""How many VISA transactions one read, one pulse and one 20-bitline vmm time step cost on the
probe station, next to the fewest the instruments need.

Runs on the shipped pyvisa-sim bench (drivers/benches/sim.toml: a 4156C with four HRSMUs and an
E5250A with four E5252A cards), so it needs no hardware:

    .venv/bin/python benchmarks/visa_transactions.py

A transaction is one write, or one query (write + read). On GPIB each costs roughly 1-5 ms of bus
and parser time on these instruments, on top of the measurement itself.

"Fewest" counts the commands the instruments cannot do without, with the same safety rules:
  read      4156C: wordline to V_read, TI? on the bitline SMU, wordline back to 0 V (3);
            switching to a new cell: open the old crosspoints, *OPC?, close the new ones, *OPC? (4),
            because an output that changes input must be open before it is closed again.
  pulse     DC bias on, PV, XE, bias off (4); the first pulse also MM 3, RI (fixed range), PT (3).
  vmm step  source on and off (2); per round of bitlines: the switching (4) and the measurement
            (XE + RMD? for three SMUs, one TI? per SMU for one or two); MM 1 when its channel list changes.
What rramlab adds on top: an error-queue query after every operation on the 4156C and after every
switching of the E5250A (a refused command must not go unnoticed), reading the pulse's measured
current (RMD?, to catch a compliance trip during the pulse), and on first use the output switches
(CN) of newly used SMUs, the 0 V on the read compliance (DV) and the measurement range (RI) of each
measuring SMU (a measuring SMU must not read on whatever compliance a pulse left it on).
"""

from __future__ import annotations

import math

import numpy as np


from rramlab.drivers.probe_station import BENCH_DIR, connect_bench, load_bench


def count(station, action) -> tuple[int, int]:
    a, m = station.analyzer.io, station.matrix.io
    a.reset_count()
    m.reset_count()
    action()
    return a.transactions, m.transactions


def vmm_fewest(n_bitlines: int, n_measure: int, switchings: int, mm_changes: int) -> int:
    rounds = [min(n_measure, n_bitlines - i) for i in range(0, n_bitlines, n_measure)]
    measure = sum(n if n <= 2 else 2 for n in rounds)
    return 2 + 4 * switchings + measure + mm_changes


def main() -> int:
    config = load_bench(BENCH_DIR / "sim.toml")
    station = connect_bench(config)
    rows = []
    try:
        rng = np.random.default_rng(1)
        n_measure = sum(c.is_smu for c in config.channels) - 1
        rounds = math.ceil(20 / n_measure)

        station.read_cell(0, 0)
        rows.append(("read, new cell", *count(station, lambda: station.read_cell(3, 7)), 3 + 4))
        rows.append(("read, same cell", *count(station, lambda: station.read_cell(3, 7)), 3))
        rows.append(("pulse, first (sets MM, RI, PT)", *count(station, lambda: station.pulse_cell(3, 7, 3.0, 2e-3)),
                     4 + 3))
        rows.append(("pulse, next ISPP step", *count(station, lambda: station.pulse_cell(3, 7, 3.025, 2e-3)), 4))

        def spikes():
            x = (rng.random(24) < 0.5).astype(float)
            x[0] = 1.0
            return x

        bitlines = list(range(20))
        rows.append((f"vmm step, 20 bitlines, first ({rounds} rounds)",
                     *count(station, lambda: station.vmm(spikes(), bitlines)),
                     vmm_fewest(20, n_measure, rounds, 1)))
        # the next step starts with the group of bitlines still connected and MM 1 is still in force
        rows.append((f"vmm step, 20 bitlines, next ({rounds} rounds)",
                     *count(station, lambda: station.vmm(spikes(), bitlines)),
                     vmm_fewest(20, n_measure, rounds, 0)))
    finally:
        station.close()

    print(f"VISA transactions on {config.name} ({n_measure + 1} SMUs: 1 source + {n_measure} measuring)")
    print(f"{'operation':<44s} {'4156C':>6s} {'E5250A':>7s} {'total':>6s} {'fewest':>7s}")
    for name, a, m, fewest in rows:
        print(f"{name:<44s} {a:6d} {m:7d} {a + m:6d} {fewest:7d}")
    print("extra over fewest: one error-queue query per operation (4156C) and per switching (E5250A);")
    print("RMD? after each pulse to see a compliance trip; on first use CN for new outputs, DV (0 V on the")
    print("read compliance) and RI per measuring SMU. See the docstring for how 'fewest' is counted.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
