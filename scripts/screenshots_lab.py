"""Screenshots of the lab protocols' panels in the real rramlab window under Xvfb, for the README.

    .venv/bin/python scripts/screenshots_lab.py        # writes docs/screenshots/lab_*.png

Like ``scripts/screenshots.py`` (whose Xvfb start it uses): the pictures are grabbed from the X
server, the runs go to a run store in a temporary folder. All on the 24 x 24 twin (fast engine,
seed 4), the ideal device except where the twin's wear and drift (sim/aging.py) are switched on:

* lab_iv.png: the I-V sweep of cell 3,7 (0 -> 4.2 -> 0 -> -1.6 -> 0 V, 25 mV steps), |I| on a log axis;
* lab_map.png: the whole array read after ISPVA put the eight levels on four cells each, log colour scale;
* lab_endurance.png: cell 5,5 cycled with the twin's wear (1,000 cycles to failure) until its window
  closes, both states read at log-spaced cycles;
* lab_retention.png: nine cells at 20, 50 and 80 nS read 40 times over ten simulated years, with the
  twin's drift;
* lab_disturb.png: 2,000 reads of cell 10,10, then 1,000 half-bias pulses with its neighbours read;
* lab_cell_history.png: the history of cell 10,0 (a click on it in a map): ISPVA's pulses, the
  retention's reads and two maps, on one log time axis.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE = (1400, 880)


def _screenshots_module():
    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "scripts" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    out = ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    xvfb = _screenshots_module().start_xvfb()
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    scratch = tempfile.TemporaryDirectory()
    os.environ["RRAMLAB_STORE"] = str(Path(scratch.name) / "runs.sqlite")
    try:
        return take(out)
    finally:
        scratch.cleanup()
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)


def take(out: Path) -> int:
    from PySide6 import QtCore, QtWidgets

    from rramlab.app.gui.main_window import MainWindow

    app = QtWidgets.QApplication(sys.argv[:1])
    window = MainWindow()
    window.move(0, 0)
    window.resize(*SIZE)
    window.show()

    def pump(seconds: float = 0.3):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)

    def grab(widget, name: str):
        pump(0.5)
        g = widget.frameGeometry()
        picture = widget.screen().grabWindow(0, g.x(), g.y(), g.width(), g.height())
        picture.save(str(out / name))
        print(f"wrote {out / name} ({picture.width()} x {picture.height()})")

    def run(name: str, timeout_s: float = 300):
        window.show_panel(name)
        started = window.run_protocol(name)
        if started is None:
            raise SystemExit(f"{name} did not start: {window.last_error}")
        window.wait_for_run(timeout_s)
        window.show_panel(name)
        return started

    pump(1.0)
    window.backend.select_twin(array=True, engine="fast", seed=4)

    iv = window.panel("I-V")
    iv.set_cell(3, 7)
    run("I-V")
    grab(window, "lab_iv.png")

    ispva = window.panel("ISPVA")
    ispva.set_cell(0, 0)
    ispva.extra.mode.setCurrentIndex(1)
    ispva.extra.devices.setValue(4)
    run("ISPVA")
    run("Map")
    grab(window, "lab_map.png")

    endurance = window.panel("Endurance")
    endurance.set_cell(5, 5)
    endurance.form.set_value("cycles", 2000)
    endurance.extra.aging.setChecked(True)  # the twin's wear: the window narrows and closes
    endurance.extra.cycles_to_failure.setValue(1000)
    run("Endurance")
    grab(window, "lab_endurance.png")

    retention = window.panel("Retention")
    retention.extra.cells.setText("10:13,0:3")
    retention.form.set_value("duration_s", 10 * 365.25 * 86400)
    retention.extra.aging.setChecked(True)  # the twin's drift: the states relax in log time
    run("Retention")
    grab(window, "lab_retention.png")

    disturb = window.panel("Disturb")
    disturb.set_cell(10, 10)
    for name, value in (("reads", 2000), ("neighbours", 1), ("pulses", 1000)):
        disturb.form.set_value(name, value)
    run("Disturb")
    grab(window, "lab_disturb.png")

    run("Map")  # the whole array again, after all of it
    dialog = window.open_cell_history(10, 0)
    dialog.move(200, 120)
    grab(dialog, "lab_cell_history.png")
    dialog.close()
    window.close()
    pump(0.3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
