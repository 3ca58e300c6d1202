"""``rramlab map``: read every cell of the array (or a region) at the read voltage.

    rramlab map --png map.png --csv map.csv                  # the 24 x 24 twin
    rramlab map --chip chip.npz --region 0:4,0:4             # a chip saved with --save-chip
    rramlab map --bench lab.toml --read-v 0.5 --csv map.csv  # a probe station

Nothing is pulsed (``protocols/array_map.py``). Prints the counts per level (HRS, 10..80 nS, above);
``--png`` draws the conductance as a log-scale heat map over the array's lines; every read and the
whole-region snapshot go to the run store.
"""

from __future__ import annotations

import sys

from rramlab.protocols import array_map


def register(subparsers) -> None:
    from rramlab.app.cli import COMMANDS, _add_backend_options, add_force_flag
    from rramlab.app.settings_flags import add_settings_flags
    from rramlab.protocols.store import add_store_flag

    p = subparsers.add_parser(
        "map", help=COMMANDS["map"][1],
        description="Read every cell of the array, or a region, at the read voltage (a wordline's bitlines "
                    "together, every other line at 0 V); nothing is pulsed. The read voltage is checked against "
                    "the safe operating area before the first command.")
    add_settings_flags(p, array_map.MapSettings, "map settings")
    p.add_argument("--region", metavar="W0:W1,B0:B1", default=None,
                   help="only these wordlines and bitlines (half-open, from 0: 0:4,0:4 is the 4 x 4 corner); "
                        "default the whole array")
    p.add_argument("--csv", metavar="FILE", help="write wordline,bitline,read_v,current_a,conductance_s, one row per "
                                                 "cell, after '#' lines saying what produced it")
    p.add_argument("--png", metavar="FILE", help="draw the map: conductance on a log colour scale over the array's "
                                                 "wordlines and bitlines")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_force_flag(p)
    add_store_flag(p)
    from rramlab.app.resume import add_resume_flag

    add_resume_flag(p, "map")
    _add_backend_options(p)
    p.set_defaults(handler=cmd_map)


def draw_map(path: str, snapshot: array_map.MapSnapshot, geometry_shape: tuple[int, int], title: str) -> None:
    """A log-scale heat map (nS) of ``snapshot`` on the whole array's lines 0..W-1 x 0..B-1; cells
    outside the region are blank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    W, B = geometry_shape
    grid = np.full((W, B), np.nan)
    for i, w in enumerate(snapshot.wordlines):
        for j, b in enumerate(snapshot.bitlines):
            grid[w, b] = snapshot.conductance_s[i][j] * 1e9
    # an HRS read can be at or below 0 nS (read noise): drawn at the scale's floor, 0.1 nS
    shown = np.where(np.isnan(grid), np.nan, np.clip(grid, 0.1, None))
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    im = ax.imshow(shown, norm=LogNorm(vmin=0.1, vmax=max(100.0, float(np.nanmax(shown)))), cmap="viridis",
                   origin="upper", interpolation="nearest", extent=(-0.5, B - 0.5, W - 0.5, -0.5))
    ax.set_xticks(range(0, B, 2 if B > 12 else 1))
    ax.set_yticks(range(0, W, 2 if W > 12 else 1))
    ax.set_xlabel("bitline")
    ax.set_ylabel("wordline")
    ax.set_title(title)
    broken = array_map.broken_cells(snapshot.wordlines, snapshot.bitlines, snapshot.conductance_s)
    if broken:  # a red cross on each: a broken cell's bright square alone looks like a well-set one
        ax.scatter([b for _, b in broken], [w for w, _ in broken], marker="x", s=60, c="red",
                   label=f"broken (> {array_map.BROKEN_ABOVE_S * 1e6:g} uS)")
        ax.legend(loc="upper right", fontsize="small")
    fig.colorbar(im, ax=ax, label=f"conductance at {snapshot.read_v:g} V (nS)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_map(args) -> int:
    from rramlab.app.cli import (EXIT_ERROR, EXIT_OK, Stopped, check_backend_flags, interrupt_exit_code,
                                 open_backend_for_run, safe_state_text, say)
    from rramlab.app.outputs import (OutputError, OutputPath, RecordFile, check_output_paths, describe_os_error,
                                     keep_record, now, plural, provenance_lines)
    from rramlab.app.settings_flags import settings_from_args
    from rramlab.drivers.interface import RramlabError
    from rramlab.protocols.settings import settings_dict
    from rramlab.app.pause import pausable
    from rramlab.protocols.store import RunStore, record_run, resume_plan

    from rramlab import __version__

    if args.resume is not None:
        from rramlab.app.resume import resumed_settings

        with RunStore(args.store) as kept:
            settings, stored = resumed_settings(args, kept, "map", array_map.MapSettings)
        args.region = stored.get("region")
    else:
        settings = settings_from_args(array_map.MapSettings, args)
    region = array_map.parse_region(args.region) if args.region is not None else None
    check_backend_flags(args, True)
    check_output_paths([OutputPath("--csv", args.csv), OutputPath("--png", args.png),
                        OutputPath("--save-chip", args.save_chip),
                        OutputPath("--visa-log", args.visa_log, append=True)], force=args.force)
    checker = None
    if args.bench:
        from rramlab.drivers.probe_station import load_bench

        checker = load_bench(args.bench).checker()  # the bench file's limits: a bad plan never connects
    first_plan = array_map.plan(settings, checker, region)  # before any backend is opened
    store = RunStore(args.store)
    if args.resume is not None:
        try:
            resume_plan(array_map, first_plan, store, args.resume)  # a run of another plan is refused here
        except BaseException:
            store.close()
            raise
    started = now()
    instrument, stopped = open_backend_for_run(args, True, store)
    if instrument is None:
        return stopped

    reads: list[array_map.MapRead] = []
    snapshot = None
    run_id = None
    record_file = None
    total = 0
    run_settings = {**settings_dict(settings), "region": args.region}
    try:
        with instrument, record_run(store, "map", run_settings, instrument, resume=args.resume) as stored:
            run_id = stored.run_id
            map_plan = array_map.plan(settings, instrument, region)  # and the backend's own limits
            total = len(map_plan.cells)
            if args.resume is not None:
                map_plan, earlier = resume_plan(array_map, map_plan, store, args.resume)
                say(f"map: resuming run {run_id} after its {earlier} stored reads")
            if args.csv:
                record_file = RecordFile(args.csv, "--csv")
                record_file.start(provenance_lines(__version__, ["rramlab", *args.argv], started,
                                                   instrument.describe(), run_settings, {"protocol": "map"}),
                                  array_map.CSV_HEADER)
            from tqdm import tqdm

            with tqdm(total=total, initial=len(map_plan.earlier_s), desc="map", unit="cell",
                      disable=args.no_progress, file=sys.stderr, leave=False) as bar:
                for record in pausable(array_map.run, instrument, map_plan, "map", run_id):
                    if isinstance(record, array_map.MapRead):
                        reads.append(record)
                        keep_record(stored, record, record_file, [record.csv_row()])
                        bar.update(1)
                    else:
                        snapshot = record
                        keep_record(stored, record)
            if args.save_chip:
                try:
                    instrument.save_chip(args.save_chip)
                except OSError as exc:
                    raise OutputError(f"cannot write --save-chip {args.save_chip}: {describe_os_error(exc)}") from None
            shape = instrument.geometry.shape
            backend = instrument.backend_name
    except KeyboardInterrupt as exc:
        kept = f"; {record_file.rows} rows kept in {args.csv}" if record_file else ""
        by = f" by {exc}" if isinstance(exc, Stopped) else ""
        say(f"\ninterrupted{by} after {len(reads)} of {total} cells; {safe_state_text(instrument, args)}{kept}")
        return interrupt_exit_code(exc)
    except (RramlabError, OSError, ValueError) as exc:
        message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        say(f"rramlab map: error: {message}\n  stopped after {len(reads)} of {total} cells; "
            f"{safe_state_text(instrument, args)}")
        return EXIT_ERROR
    finally:
        store.close()
        if record_file:
            record_file.close()

    every = [g for row in snapshot.conductance_s for g in row]  # a resumed map: the stored reads too
    counts = array_map.level_counts(every)
    rows, cols = len(snapshot.wordlines), len(snapshot.bitlines)
    print(f"map of the {backend}: {rows} x {cols} cells (wordlines {snapshot.wordlines[0]}..{snapshot.wordlines[-1]}, "
          f"bitlines {snapshot.bitlines[0]}..{snapshot.bitlines[-1]}) read at {settings.read_v:g} V; "
          f"run {run_id} in {store.path}")
    print("  " + ", ".join(f"{name}: {n}" for name, n in counts.items() if n))
    g = sorted(every)
    print(f"  conductance {g[0] * 1e9:.1f} .. {g[-1] * 1e9:.1f} nS, median {g[len(g) // 2] * 1e9:.1f} nS")
    broken = array_map.broken_cells(snapshot.wordlines, snapshot.bitlines, snapshot.conductance_s)
    if broken:
        print(f"  {plural(len(broken), 'broken cell')} (above {array_map.BROKEN_ABOVE_S * 1e6:g} uS, a hard "
              f"breakdown's path): " + ", ".join(f"{w},{b}" for w, b in broken))
    from rramlab.app.cmd_stress import keep_summary

    keep_summary(args, run_id, {"cells": len(every), "levels": counts, "min_s": g[0], "max_s": g[-1],
                                "median_s": g[len(g) // 2], "broken_cells": [list(c) for c in broken]})
    if args.png:
        try:
            draw_map(args.png, snapshot, shape, f"rramlab map ({backend}, run {run_id})")
        except OSError as exc:
            raise OutputError(f"cannot write --png {args.png}: {describe_os_error(exc)}") from None
        print(f"  heat map written to {args.png}")
    if args.csv:
        print(f"  {plural(record_file.rows, 'row')} written to {args.csv}")
    return EXIT_OK
