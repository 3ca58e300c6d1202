"""ISPP of one cell: a rising set ramp, then a falling reset ramp, a read after every pulse.

    python examples/ispp_one_cell.py                                   # the 24 x 24 twin, cell 0,0
    python examples/ispp_one_cell.py --bench drivers/benches/sim.toml  # a probe station (2 ms pulses)
    python examples/ispp_one_cell.py --cycles 1 --out results/         # smaller, elsewhere

Writes ``ispp.csv`` (one row per pulse) in ``--out`` and records the run in the same run store as
``rramlab ispp`` (``--store FILE``, else $RRAMLAB_STORE, else the user's data folder), so
``rramlab runs list`` shows it. Ctrl-C stops it: the instrument's context manager returns the
outputs to 0 V and ``record_run`` marks the run ``aborted`` with every record taken kept.
"""

import argparse
import sys
from pathlib import Path

from rramlab import VirtualArray, open_bench, record_run, records_frame
from rramlab.protocols import ispp


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", metavar="FILE", help="bench TOML file; without it the twin runs")
    p.add_argument("--visa-log", metavar="FILE", help="with --bench: log every VISA message")
    p.add_argument("--cell", default="0,0", help="WL,BL (default 0,0)")
    p.add_argument("--cycles", type=int, default=3, help="set/reset cycles (default 3; 1 for a quick run)")
    p.add_argument("--width", type=float, default=None,
                   help="pulse width (s); default 2 us on the twin, 2 ms on a bench (the 4156C's range)")
    p.add_argument("--seed", type=int, default=1, help="twin: the chip's seed")
    p.add_argument("--store", metavar="FILE", help="run store (default: the one the command line uses)")
    p.add_argument("--out", type=Path, default=Path("."), help="folder for ispp.csv")
    args = p.parse_args(argv)

    wordline, bitline = (int(x) for x in args.cell.split(","))
    width = args.width if args.width is not None else (2e-3 if args.bench else 2e-6)
    settings = ispp.IsppSettings(cycles=args.cycles, pulse_width_s=width)

    # One flag picks the backend; everything after this line is the same for both.
    chip = open_bench(args.bench, visa_log=args.visa_log) if args.bench else VirtualArray(seed=args.seed)
    records = []
    with chip, record_run(args.store, "ispp", settings, chip) as rec:
        # plan() checks every pulse against the chip's safe operating area before the first one
        plan = ispp.plan(settings, (wordline, bitline), chip)
        print(f"run {rec.run_id}: {plan.total_pulses} pulses on cell {wordline},{bitline} of the {chip.backend_name}",
              flush=True)
        for record in ispp.run(chip, plan):
            rec.add(record)          # one transaction per record: a killed script keeps what it took
            records.append(record)

    args.out.mkdir(parents=True, exist_ok=True)
    table = records_frame(records)   # one row per pulse: type, cycle, phase, step, pulse_v, read_a, ...
    table.to_csv(args.out / "ispp.csv", index=False)
    for s in ispp.summarise_ispp(records):
        print(f"cycle {s.cycle}: read {s.min_read_a * 1e9:.1f} .. {s.max_read_a * 1e9:.1f} nA, "
              f"{s.set_levels} levels in the set ramp, {s.reset_drop_3 * 100:.0f} % gone after 3 reset pulses")
    print(f"{len(records)} records in {args.out / 'ispp.csv'} and in run {rec.run_id} of {rec.store.path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # the instrument and the run store have already been put right by their context managers
        print("interrupted: the run is marked aborted in the store, with every record it took", file=sys.stderr)
        sys.exit(130)
