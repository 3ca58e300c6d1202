"""``rramlab twin fit``: fit the twin to a chip's stored runs (sim/fit.py).

    rramlab twin fit RUN [RUN ...] --out chip-W3.npz --report fit/

Every input is checked before anything is written: each run must exist, be of a protocol the fit
reads (ISPP), come from one chip id, and give every cell enough records. The chip file is the
twin's own (``--chip`` of every command loads it) with the fit kept in it (``fit_meta``: the
fitted cells with their uncertainties, the distributions, the runs it came from).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    from rramlab.app.cli import COMMANDS, add_force_flag
    from rramlab.protocols.store import add_store_flag

    p = subparsers.add_parser("twin", help=COMMANDS["twin"][1])
    sub = p.add_subparsers(dest="twin_command", metavar="ACTION")
    c = sub.add_parser("fit", help="fit the compact model to stored ISPP runs: a chip file and a report",
                       description="Fit the twin's compact model, cell by cell, to stored ISPP runs of one chip; "
                                   "the cells not measured get the fitted chip's distributions.")
    c.add_argument("runs", type=int, nargs="+", metavar="RUN", help="run ids (`rramlab runs list`)")
    c.add_argument("--out", required=True, metavar="FILE", help="the chip file to write (.npz; load it with --chip)")
    c.add_argument("--report", metavar="DIR", help="write fit.txt, fit.json and PNGs of every cell here")
    c.add_argument("--workers", type=int, default=1, metavar="N", help="processes to fit the cells with (default 1)")
    c.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the draws for the cells not measured (default 0)")
    add_force_flag(c)
    add_store_flag(c, "to read the runs from", metadata=False)
    c = sub.add_parser("compare", help="replay a stored run's plan on a (fitted) twin: measured vs predicted",
                       description="Replay a stored ISPP or ISPVA run (the same settings, cells, targets and order) "
                                   "on the twin of --chip, and pair every record with the measured one.")
    c.add_argument("run", type=int, metavar="RUN", help="the run id (`rramlab runs list`)")
    c.add_argument("--chip", required=True, metavar="FILE", help="the twin's chip file (from `rramlab twin fit`)")
    c.add_argument("--report", metavar="DIR", help="write compare.txt, compare.json and the residual map PNG here")
    add_store_flag(c, "to read the run from", metadata=False)
    p.set_defaults(handler=cmd_twin)


def cmd_twin(args) -> int:
    from rramlab.drivers.interface import RramlabError

    if args.twin_command == "compare":
        result = compare_twin(args.run, args.chip, report=args.report, store=args.store)
        print(result.summary())
        return 0
    if args.twin_command != "fit":
        raise RramlabError("say what to do: `rramlab twin fit RUN ... --out FILE` or `rramlab twin compare RUN "
                           "--chip FILE`")
    result = fit_twin(args.runs, args.out, report=args.report, store=args.store, workers=args.workers,
                      seed=args.seed, force=args.force)
    print(result.summary())
    return 0


class FitResult:
    """What ``fit_twin`` made: ``fit`` (sim.fit.ChipFit), the chip file's path, the report folder."""

    def __init__(self, chip_fit, chip_path, report_dir):
        self.fit, self.chip_path, self.report_dir = chip_fit, chip_path, report_dir

    def summary(self) -> str:
        """The lines ``rramlab twin fit`` prints (nA, mV)."""
        import numpy as np

        cells = self.fit.cells
        rms = np.array([c.rms_a for c in cells]) * 1e9
        on_sd = np.nanmax([np.nanmax(c.turn_on_sigma) for c in cells]) * 1e3
        lines = [f"fitted {len(cells)} cells of runs {', '.join(str(r['run_id']) for r in self.fit.runs)}: "
                 f"fit error {np.median(rms):.3f} nA rms (median), {rms.max():.3f} nA (worst cell "
                 f"{cells[int(rms.argmax())].wordline},{cells[int(rms.argmax())].bitline}); turn-on thresholds "
                 f"within +-{on_sd:.1f} mV (1 sigma, worst)",
                 f"free (prior kept): {', '.join(sorted(set(n.split(' (')[0] for c in cells for n in c.free)))}",
                 f"chip file {self.chip_path} ({self.fit.geometry[0]} x {self.fit.geometry[1]}: the "
                 f"{len(cells)} fitted cells, every other cell drawn from the fitted distributions)"]
        if self.report_dir is not None:
            lines.append(f"report {self.report_dir}/fit.txt, fit.json and {len(cells) + 1} PNGs")
        return "\n".join(lines)


def fit_twin(runs, out, report=None, store=None, workers: int = 1, seed: int = 0, force: bool = False,
             prior=None) -> FitResult:
    """Fit the twin to stored ISPP runs of one chip and write its chip file (``--chip`` loads it).

    runs: run ids in ``store`` (a path, an open RunStore, or None: the default store); out: the
    chip file (.npz) to write, refused if it exists unless ``force``; report: a folder for fit.txt,
    fit.json and PNGs (None: none); workers: processes for the cells; seed: the draws of the cells
    not measured; prior: the DeviceParameters the cells vary about (None: the runs' device preset).
    Every check (runs, protocol, chip id, records per cell, the output path) is made before
    anything is written; each failure is one FitError line. Returns a FitResult.

    Example::

        from rramlab import fit_twin
        result = fit_twin([12, 13], "chip-W3.npz", report="fit/")
        print(result.summary())
    """
    from rramlab.sim import fit
    from rramlab.sim.device import device_preset

    out = Path(out)
    if out.exists() and not force:
        raise fit.FitError(f"{out} exists: give another --out, or --force to overwrite it")
    if out.parent and not out.parent.exists():
        raise fit.FitError(f"the folder of {out} does not exist: create it or give another --out")
    if report is not None and Path(report).exists() and not Path(report).is_dir():
        raise fit.FitError(f"--report {report} is a file: give a folder")
    sequences, provenance, geometry, device = load_runs(list(runs), store)
    prior = prior or device_preset(device)
    W, B = geometry
    for s in sequences:
        if not (0 <= s.wordline < W and 0 <= s.bitline < B):
            raise fit.FitError(f"cell {s.wordline},{s.bitline} lies outside the runs' {W} x {B} array")
    cells = fit.fit_cells(sequences, prior, workers=workers)
    chip_fit = fit.ChipFit(prior, cells, fit.chip_distribution(cells), provenance, (W, B))
    chip = fit.fitted_chip(chip_fit, seed=seed)
    chip.save_chip(out)
    report_dir = write_report(chip_fit, report) if report is not None else None
    return FitResult(chip_fit, out, report_dir)


def load_runs(run_ids, store=None):
    """The fit's input from the run store: (sequences, run provenance, geometry, prior name).
    Raises FitError naming the first run or cell that cannot be used, before anything is written."""
    from rramlab.protocols.store import RunStore, StoreError
    from rramlab.sim import fit

    own = not isinstance(store, RunStore)
    st = RunStore(store) if own else store
    try:
        sequences: dict = {}
        provenance, chip_ids, geometry, device = [], set(), None, None
        for run_id in run_ids:
            try:
                info = st.run(run_id)
            except StoreError:
                raise
            except Exception:
                raise fit.FitError(f"run {run_id} is not in the store {st.path}: see `rramlab runs list`") from None
            if info.protocol not in fit.FIT_PROTOCOLS:
                raise fit.FitError(f"run {run_id} is a {info.protocol} run; the fit reads {', '.join(fit.FIT_PROTOCOLS)} "
                                   "runs: measure the cells with `rramlab ispp`")
            chip_ids.add(info.metadata.chip_id)
            if len(chip_ids) > 1:
                names = ", ".join(sorted(str(c) for c in chip_ids))
                raise fit.FitError(f"run {run_id} is of chip {info.metadata.chip_id!r}, another run of {names}: "
                                   "fit the runs of one chip (`rramlab runs list --chip ID`)")
            desc = info.backend_describe or {}
            geometry = geometry or tuple(desc.get("geometry") or (24, 24))
            device = device or desc.get("device")
            rows = [r.data for r in st.records(run_id)]
            for seq in fit.sequences_from_ispp(rows, info.settings, run_id):
                key = (seq.wordline, seq.bitline)
                sequences[key] = seq if key not in sequences else _joined(sequences[key], seq)
            provenance.append({"run_id": run_id, "protocol": info.protocol, "chip_id": info.metadata.chip_id,
                               "store": str(st.path), "started_at": info.started_at, "backend": info.backend,
                               "status": info.status, "software_version": info.software_version,
                               "records": len(rows)})
        if not sequences:
            raise fit.FitError(f"run{'s' if len(run_ids) > 1 else ''} {', '.join(map(str, run_ids))} hold no "
                               "ISPP record: measure the cells with `rramlab ispp`")
        for seq in sequences.values():
            if len(seq.read_a) < fit.MIN_RECORDS_PER_CELL:
                raise fit.FitError(f"cell {seq.wordline},{seq.bitline} has {len(seq.read_a)} records in runs "
                                   f"{', '.join(map(str, run_ids))}; the fit needs at least {fit.MIN_RECORDS_PER_CELL} "
                                   "(a whole ISPP set and reset ramp): measure it with `rramlab ispp --cycles 1` or more")
        return list(sequences.values()), provenance, geometry, device if device in ("measured", "table1") else "measured"
    finally:
        if own:
            st.close()


def _joined(a, b):
    """Two runs of one cell, one after the other (cycle numbers kept apart)."""
    import numpy as np
    from dataclasses import replace

    return replace(a, pulse_v=np.concatenate([a.pulse_v, b.pulse_v]), read_a=np.concatenate([a.read_a, b.read_a]),
                   phase=a.phase + b.phase, cycle=np.concatenate([a.cycle, b.cycle + a.cycle.max()]),
                   runs=a.runs + b.runs)


def write_report(chip_fit, directory) -> Path:
    """fit.txt (per cell: fit error in nA rms, each parameter with its uncertainty and what is free),
    fit.json (the same, SI units), cell_WL_BL.png (measured vs fitted reads) and distributions.png."""
    import numpy as np

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"twin fit of {len(chip_fit.cells)} cells from runs "
             f"{', '.join(str(r['run_id']) for r in chip_fit.runs)} (chip {chip_fit.runs[0]['chip_id'] or '-'})", ""]
    for c in chip_fit.cells:
        lines.append(f"cell {c.wordline},{c.bitline}: fit error {c.rms_a * 1e9:.3f} nA rms over {c.records} reads")
        for k in range(len(c.turn_on_v)):
            ron = f"{c.on_resistance[k] / 1e6:9.4f} +- {c.on_resistance_sigma[k] / 1e6:.4f} Mohm"
            lines.append(f"  switch {k}: turn-on {c.turn_on_v[k]:.4f} +- {c.turn_on_sigma[k] * 1e3:.1f} mV "
                         f"({c.turn_on_kind[k]}), turn-off {c.turn_off_v[k]:.4f} +- "
                         f"{c.turn_off_sigma[k] * 1e3:.1f} mV ({c.turn_off_kind[k]}), RON {ron}")
        lines.append(f"  Ri R0 {c.insulator_r0:.4g} +- {c.insulator_r0_sigma:.2g} ohm, "
                     f"Rs R0 {c.switching_r0:.4g} +- {c.switching_r0_sigma:.2g} ohm")
        lines.append(f"  free (prior kept): {', '.join(c.free)}")
    d = chip_fit.distribution
    lines += ["", f"chip distributions over {d.cells} cells (used for the cells not measured):"]
    for k in range(len(d.turn_on_mean)):
        lines.append(f"  switch {k}: turn-on {d.turn_on_mean[k]:.4f} V sd {d.turn_on_sd[k] * 1e3:.1f} mV, turn-off "
                     f"{d.turn_off_mean[k]:.4f} V sd {d.turn_off_sd[k] * 1e3:.1f} mV, RON "
                     f"{np.exp(d.ln_on_resistance_mean[k]) / 1e6:.4f} Mohm sd {100 * d.ln_on_resistance_sd[k]:.1f} %")
    (out / "fit.txt").write_text("\n".join(lines) + "\n")
    (out / "fit.json").write_text(json.dumps(chip_fit.meta(), indent=1))
    _plots(chip_fit, out)
    return out


def _plots(chip_fit, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    for c in chip_fit.cells:
        if c.measured_a is None:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.2))
        x = np.arange(len(c.measured_a))
        ax.plot(x, c.measured_a * 1e9, "o", ms=3, label="measured")
        ax.plot(x, c.fitted_a * 1e9, "-", label=f"fitted ({c.rms_a * 1e9:.2f} nA rms)")
        ax.set_xlabel("pulse")
        ax.set_ylabel("read current (nA)")
        ax.set_title(f"cell {c.wordline},{c.bitline}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"cell_{c.wordline}_{c.bitline}.png", dpi=80)
        plt.close(fig)
    on = np.array([c.turn_on_v for c in chip_fit.cells])
    ron = np.array([c.on_resistance for c in chip_fit.cells])
    d = chip_fit.distribution
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for k in range(on.shape[1]):
        axes[0].hist(on[:, k], bins=8, alpha=0.6)
        xs = np.linspace(d.turn_on_mean[k] - 3 * d.turn_on_sd[k] - 1e-3, d.turn_on_mean[k] + 3 * d.turn_on_sd[k] + 1e-3, 50)
        sd = max(d.turn_on_sd[k], 1e-4)
        axes[0].plot(xs, len(on) * (xs[1] - xs[0]) * 4 * np.exp(-0.5 * ((xs - d.turn_on_mean[k]) / sd) ** 2)
                     / (sd * np.sqrt(2 * np.pi)), "k-", lw=0.8)
        axes[1].hist(np.log10(ron[:, k]), bins=8, alpha=0.6)
    axes[0].set_xlabel("fitted turn-on threshold (V); lines: the chip's distribution")
    axes[1].set_xlabel("log10 fitted RON (ohm)")
    fig.tight_layout()
    fig.savefig(out / "distributions.png", dpi=80)
    plt.close(fig)


# ----- twin compare -------------------------------------------------------------------------------

#: protocols ``compare_twin`` can replay
COMPARE_PROTOCOLS = ("ispp", "ispva")


class CompareResult:
    """Measured and predicted records of one run, paired. ``pairs``: one dict per record (cell,
    kind, measured and predicted read current in A or conductance in S); ``cells``: per cell the
    rms residual (A for ispp reads; S for ispva conductances) and, for ispva, pulses measured and
    predicted."""

    def __init__(self, run_id, protocol, pairs, cells, chip_path, report_dir):
        self.run_id, self.protocol, self.pairs, self.cells = run_id, protocol, pairs, cells
        self.chip_path, self.report_dir = chip_path, report_dir

    def summary(self) -> str:
        """The lines ``rramlab twin compare`` prints (nA, nS)."""
        import numpy as np

        rms = np.array([c["rms"] for c in self.cells])
        unit, factor = ("nA", 1e9) if self.protocol == "ispp" else ("nS", 1e9)
        lines = [f"run {self.run_id} ({self.protocol}, {len(self.cells)} cells, {len(self.pairs)} records) replayed on "
                 f"{self.chip_path}: residual {np.sqrt(np.mean(rms ** 2)) * factor:.3f} {unit} rms, worst cell "
                 f"{rms.max() * factor:.3f} {unit}"]
        if self.protocol == "ispva":
            m = np.array([c["pulses_measured"] for c in self.cells], float)
            p = np.array([c["pulses_predicted"] for c in self.cells], float)
            g = np.array([c["final_measured_s"] - c["final_predicted_s"] for c in self.cells])
            lines.append(f"pulses per cell: measured {m.mean():.2f}, predicted {p.mean():.2f} "
                         f"({100 * (p.mean() / m.mean() - 1):+.1f} %); final conductance measured - predicted "
                         f"{np.sqrt(np.mean(g ** 2)) * 1e9:.2f} nS rms")
        if self.report_dir is not None:
            lines.append(f"report {self.report_dir}/compare.txt, compare.json, residual_map.png")
        return "\n".join(lines)


def compare_twin(run, chip, report=None, store=None) -> CompareResult:
    """Replay stored run ``run`` (ISPP or ISPVA: its settings, cells, targets, in its order) on the
    twin loaded from chip file ``chip`` (a path, or a VirtualArray), pair each record with the
    measured one and return a CompareResult; ``report``: a folder for compare.txt, compare.json and
    residual_map.png. A cell the fit never saw is predicted from the chip's distributions only (its
    own parameters are unknown): compare such cells statistically (means over cells), not one by one.

    Example::

        from rramlab import compare_twin
        print(compare_twin(14, "chip-W3.npz", report="cmp/").summary())
    """
    import dataclasses

    import numpy as np

    from rramlab.protocols import ispp, ispva
    from rramlab.protocols.store import RunStore
    from rramlab.sim import fit
    from rramlab.sim.virtual_array import VirtualArray

    own = not isinstance(store, RunStore)
    st = RunStore(store) if own else store
    try:
        info = st.run(run)
        if info.protocol not in COMPARE_PROTOCOLS:
            raise fit.FitError(f"run {run} is a {info.protocol} run; twin compare replays "
                               f"{' and '.join(COMPARE_PROTOCOLS)} runs")
        rows = [r.data | {"type": r.type} for r in st.records(run)]
    finally:
        if own:
            st.close()
    def settings_of(cls):
        # a run's settings row may carry more than the protocol's fields (the window adds its inputs)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in info.settings.items() if k in names})

    twin = chip if isinstance(chip, VirtualArray) else VirtualArray.load_chip(chip, engine="fast")
    pairs, cells = [], []
    with twin:
        if info.protocol == "ispp":
            settings = settings_of(ispp.IsppSettings)
            order = list(dict.fromkeys((r["wordline"], r["bitline"]) for r in rows))
            for cell in order:
                measured = [r for r in rows if (r["wordline"], r["bitline"]) == cell]
                predicted = list(ispp.run(twin, ispp.plan(settings, cell, twin)))[:len(measured)]
                res = []
                for m, p in zip(measured, predicted):
                    pairs.append({"wordline": cell[0], "bitline": cell[1], "cycle": m["cycle"], "phase": m["phase"],
                                  "pulse_v": m["pulse_v"], "measured_a": m["read_a"], "predicted_a": p.read_a})
                    res.append(p.read_a - m["read_a"])
                cells.append({"wordline": cell[0], "bitline": cell[1], "rms": float(np.sqrt(np.mean(np.square(res))))})
        else:
            settings = settings_of(ispva.IspvaSettings)
            results = [r for r in rows if r["type"] == "IspvaResult"]
            plan = ispva.plan(settings, [(r["wordline"], r["bitline"]) for r in results],
                              [r["target_s"] for r in results], twin)
            predicted = [r for r in ispva.run(twin, plan) if isinstance(r, ispva.IspvaResult)]
            for m, p in zip(results, predicted):
                pairs.append({"wordline": m["wordline"], "bitline": m["bitline"], "target_s": m["target_s"],
                              "measured_s": m["conductance_s"], "predicted_s": p.conductance_s,
                              "pulses_measured": m["pulses"], "pulses_predicted": p.pulses})
                cells.append({"wordline": m["wordline"], "bitline": m["bitline"],
                              "rms": abs(p.conductance_s - m["conductance_s"]), "pulses_measured": m["pulses"],
                              "pulses_predicted": p.pulses, "final_measured_s": m["conductance_s"],
                              "final_predicted_s": p.conductance_s})
    result = CompareResult(run, info.protocol, pairs, cells, chip if not isinstance(chip, VirtualArray) else "twin",
                           None)
    if report is not None:
        out = Path(report)
        out.mkdir(parents=True, exist_ok=True)
        result.report_dir = out
        (out / "compare.json").write_text(json.dumps({"run": run, "protocol": info.protocol, "pairs": pairs,
                                                      "cells": cells}, indent=1))
        (out / "compare.txt").write_text(result.summary() + "\n" + "\n".join(
            f"cell {c['wordline']},{c['bitline']}: residual {c['rms'] * 1e9:.3f} "
            f"{'nA' if info.protocol == 'ispp' else 'nS'}" for c in cells) + "\n")
        _residual_map(cells, twin.geometry.shape, out / "residual_map.png", info.protocol)
    return result


def _residual_map(cells, shape, path, protocol) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.full(shape, np.nan)
    for c in cells:
        grid[c["wordline"], c["bitline"]] = c["rms"] * 1e9
    fig, ax = plt.subplots(figsize=(5, 4.2))
    im = ax.imshow(grid, cmap="viridis", origin="upper")
    fig.colorbar(im, ax=ax, label=f"residual ({'nA rms' if protocol == 'ispp' else 'nS'})")
    ax.set_xlabel("bitline")
    ax.set_ylabel("wordline")
    ax.set_title("measured - twin, per cell")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
