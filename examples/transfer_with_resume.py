"""Weight transfer into the differential array, resumable after Ctrl-C.

    python examples/transfer_with_resume.py --chip chip.npz           # random 24 x 10 weights; Ctrl-C part-way
    python examples/transfer_with_resume.py --chip chip.npz --resume 7   # continue run 7 on the same chip
    python examples/transfer_with_resume.py --weights examples/weights_24x10.npz --scheme fast
    python examples/transfer_with_resume.py --bench drivers/benches/sim.toml --rows 2 --cols 1

Signed levels -8..8 (10 nS each) become a differential pair of bitlines per weight column,
programmed cell by cell with verify (half-bias, the hardware scheme) or row-parallel (``--scheme
fast``, twin only). The run, its weights and its settings go to the same run store as ``rramlab
transfer``, so either can resume the other's run: every cell is read first and a cell already within
tolerance gets no pulse. The twin keeps its state between processes only in a chip file
(``--chip FILE``: loaded if it exists, saved at the end and on Ctrl-C).

Writes ``transfer.json`` (the report: RMSE, fractions within +-2 / +-4 nS, pulses, maps) in ``--out``.
"""

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from rramlab import RunStore, VirtualArray, load_weights, open_bench, record_run
from rramlab.protocols import transfer
from rramlab.protocols.ispva import IspvaSettings
from rramlab.protocols.store import json_ready


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", metavar="FILE", help="bench TOML file; without it the twin runs")
    p.add_argument("--visa-log", metavar="FILE", help="with --bench: log every VISA message")
    p.add_argument("--weights", metavar="FILE", help="weight file (.npz with 'levels'); default: random levels")
    p.add_argument("--rows", type=int, default=24, help="random weights: rows (wordlines), default 24")
    p.add_argument("--cols", type=int, default=10, help="random weights: columns (two bitlines each), default 10")
    p.add_argument("--scheme", choices=transfer.SCHEMES, default="half-bias")
    p.add_argument("--width", type=float, default=None, help="pulse width (s); default 2 us twin, 2 ms bench")
    p.add_argument("--max-pulses", type=int, default=40, help="ISPVA pulse budget per cell (default 40)")
    p.add_argument("--final-rounds", type=int, default=3, help="whole-region re-reads at the end (default 3)")
    p.add_argument("--resume", type=int, metavar="RUN", help="continue this stored transfer run")
    p.add_argument("--chip", type=Path, help="twin: chip state file, loaded if present, saved at the end and on Ctrl-C")
    p.add_argument("--seed", type=int, default=1, help="seed of the random weights and of a new twin chip")
    p.add_argument("--store", metavar="FILE", help="run store (default: the one the command line uses)")
    p.add_argument("--out", type=Path, default=Path("."), help="folder for transfer.json")
    args = p.parse_args(argv)

    store = RunStore(args.store)      # the command line's store unless --store says otherwise
    if args.resume is not None:
        # the stored run holds everything needed to continue it: weights and both settings
        stored = store.run(args.resume).settings
        levels = np.asarray(stored["levels"])
        tsettings = transfer.TransferSettings(**stored["transfer"])
        isettings = IspvaSettings(**stored["ispva"])
    else:
        if args.weights:
            levels = load_weights(args.weights)
        else:
            rng = np.random.default_rng(args.seed)
            levels = rng.integers(1, 9, size=(args.rows, args.cols)) * rng.choice([-1, 1], size=(args.rows, args.cols))
        width = args.width if args.width is not None else (2e-3 if args.bench else 2e-6)
        tsettings = transfer.TransferSettings(scheme=args.scheme, final_rounds=args.final_rounds)
        isettings = IspvaSettings(pulse_width_s=width, max_pulses=args.max_pulses)
    # the same layout as `rramlab transfer`, so `rramlab transfer --resume N` continues this run too
    run_settings = {"transfer": asdict(tsettings), "ispva": asdict(isettings), "levels": np.asarray(levels).tolist(),
                    "weights_file": args.weights}

    if args.bench:
        chip = open_bench(args.bench, visa_log=args.visa_log)
    elif args.chip is not None and args.chip.exists():
        chip = VirtualArray.load_chip(args.chip, engine="fast")
    else:
        # the fast engine: the auto engine would hand every row-parallel pulse to ngspice
        chip = VirtualArray(seed=args.seed, engine="fast")
    records, start = [], time.perf_counter()
    try:
        with chip, record_run(store, "transfer", run_settings, chip, resume=args.resume) as rec:
            plan = transfer.plan(tsettings, isettings, levels, chip)
            print(f"run {rec.run_id}: {len(plan.cells)} cells, {tsettings.scheme} scheme, on the {chip.backend_name}",
                  flush=True)
            for record in transfer.run(chip, plan):
                rec.add(record)
                records.append(record)
    finally:
        # keep the twin's state whatever happened, so --resume finds the cells where they are
        if args.chip is not None and hasattr(chip, "save_chip"):
            chip.save_chip(args.chip)
        store.close()

    report = transfer.summarise(plan, records, time.perf_counter() - start)
    report["run_id"] = rec.run_id
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transfer.json").write_text(json.dumps(json_ready(report), indent=1))
    pulsed = {(r.wordline, r.bitline) for r in records if isinstance(r, transfer.IspvaPulse)}
    print(f"RMSE {report['rmse_s'] * 1e9:.2f} nS, {report['within_2ns'] * 100:.1f} % within +-2 nS, "
          f"{report['pulses']} pulses on {len(pulsed)} cells, {report['left_out_of_tolerance']} left out of tolerance")
    print(f"wrote {args.out / 'transfer.json'} (run {rec.run_id})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: the run is marked aborted in the store, with every record it took; "
              "continue it with --resume RUN (and the same --chip)", file=sys.stderr)
        sys.exit(130)
