"""Wall time of one weight transfer in the GUI against the same transfer on the command line.

Run by hand:  QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_vs_cli.py [--scheme half-bias]
              [--repeat 3] [--weights examples/weights_24x10.npz]

Both run in this process on the 24 x 24 twin (fast engine, seed 0) and record every record in a run
store of their own: the CLI as ``rramlab transfer WEIGHTS --scheme S --no-progress``, the GUI as a
press of Run in its Transfer panel (offscreen window, live plots, the worker thread), timed from
Run to the end of the run. Runs alternate (CLI, GUI, CLI, GUI...) so a busy machine weighs on both
alike; the medians and their ratio are printed. Goal: the GUI within 1.3 x the CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]


def cli_transfer(weights: Path, scheme: str, store: Path) -> float:
    from rramlab.app.cli import main

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["transfer", str(weights), "--scheme", scheme, "--no-progress", "--store", str(store)])
    if code != 0:
        raise SystemExit(f"rramlab transfer failed with exit code {code}")
    return time.perf_counter() - start


def gui_transfer(weights: Path, scheme: str, store: Path) -> tuple[float, str]:
    from PySide6 import QtCore, QtWidgets

    from rramlab.app.gui.history import DONE, StoreHistory
    from rramlab.app.gui.main_window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    window = MainWindow(history=StoreHistory(store))
    window.show()
    window.backend.select_twin(array=True, engine="fast")
    panel = window.panel("Transfer")
    panel.extra.set_weights(weights)
    panel.form.set_value("scheme", scheme)
    app.processEvents()
    loop = QtCore.QEventLoop()  # the window's own event loop, idle between events as under app.exec()
    window.run_finished.connect(lambda run: loop.quit())
    start = time.perf_counter()
    run = window.run_protocol("Transfer")
    if run is None:
        raise SystemExit(f"the GUI did not start the transfer: {window.last_error}")
    if window.running:
        loop.exec()
    wall = time.perf_counter() - start
    if run.status != DONE:
        raise SystemExit(f"the GUI transfer ended {run.status}: {run.message}")
    message = run.message
    window.close()
    window.deleteLater()
    app.processEvents()
    return wall, message


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=ROOT / "examples" / "weights_24x10.npz")
    ap.add_argument("--scheme", choices=("half-bias", "fast"), default="half-bias")
    ap.add_argument("--repeat", type=int, default=3, help="pairs of runs (default 3; a ratio needs medians of at least 3)")
    args = ap.parse_args()
    if args.repeat < 3:
        ap.error(f"--repeat {args.repeat}: a ratio is a median of at least 3 pairs; give --repeat 3 or more")
    cli, gui = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            cli.append(cli_transfer(args.weights, args.scheme, Path(tmp) / f"cli{i}.sqlite"))
            wall, message = gui_transfer(args.weights, args.scheme, Path(tmp) / f"gui{i}.sqlite")
            gui.append(wall)
            print(f"  pair {i + 1}: CLI {cli[-1]:.2f} s, GUI {gui[-1]:.2f} s   (GUI: {message.splitlines()[0]})")
    c, g = statistics.median(cli), statistics.median(gui)
    print(f"transfer of {args.weights.name} ({args.scheme}, 24 x 24 twin, fast engine), {os.cpu_count()} cores: "
          f"CLI {c:.2f} s, GUI {g:.2f} s, GUI / CLI = {g / c:.2f} (goal <= 1.30)")


if __name__ == "__main__":
    main()
