"""The GUI's Qt-free parts (backends, history, errors, the array read job, progress text, spin-box
ranges) and ``rramlab gui`` as a process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rramlab.app.gui import jobs
from rramlab.app.gui.backends import BenchChoice, TwinChoice
from rramlab.app.gui.errors import explain
from rramlab.app.gui.history import ABORTED, SessionHistory
from rramlab.app.gui.run_export import export_run
from rramlab.drivers.interface import (ArrayGeometry, InstrumentError, RequestChecker, SafeOperatingArea,
                                      SafetyError)
from rramlab.drivers.probe_station import BenchError

SIM_BENCH = Path(__file__).resolve().parents[1] / "drivers" / "benches" / "sim.toml"


def test_progress_text_estimates_the_time_left_from_the_pace_so_far():
    from rramlab.app.gui.main_window import progress_text

    assert progress_text(10, 40, 5.0, "pulse") == "10 / 40 pulses · 0:05 elapsed · 0:15 left"
    assert progress_text(0, 40, 0.2, "pulse") == "0 / 40 pulses · 0:00 elapsed"
    assert progress_text(40, 40, 3725.0, "wordline") == "40 / 40 wordlines · 1:02:05 elapsed"


@pytest.mark.parametrize("lo, hi, scale, decimals, exclusive, expected", [
    (0.0, 4.3, 1.0, 4, False, (0.0, 4.3)),
    (-2.5, 0.0, 1.0, 4, False, (-2.5, 0.0)),
    (0.0, 1.0, 1.0, 4, True, (0.0001, 1.0)),
    (5e-4, 0.1, 1e-6, 3, False, (500.0, 100000.0)),
    (1e-9, 1.0, 1e-6, 3, False, (0.001, 1e6)),
    (0.12345, 0.98765, 1.0, 2, False, (0.13, 0.98)),  # inside the bounds, on the box's grid
])
def test_spin_box_ranges_stay_inside_the_bounds(lo, hi, scale, decimals, exclusive, expected):
    from rramlab.app.gui.settings_form import display_range

    got = display_range(lo, hi, scale, decimals, exclusive)
    assert got == pytest.approx(expected)
    assert got[0] * scale >= lo - 1e-12 * abs(lo) and got[1] * scale <= hi + 1e-12 * abs(hi)


def test_twin_and_bench_choices_know_their_limits_before_connecting(tmp_path):
    lone, array = TwinChoice().checker(), TwinChoice(array=True).checker()
    assert lone.geometry.shape == (1, 1) and array.geometry.shape == (24, 24)
    assert array.limits == SafeOperatingArea()
    bench = BenchChoice(str(SIM_BENCH)).checker()
    assert bench.limits.min_pulse_width == pytest.approx(5e-4) and bench.limits.max_line_voltage == 2.2
    with pytest.raises(BenchError):
        BenchChoice(str(tmp_path / "missing.toml")).checker()
    twin = TwinChoice(array=True, wire_resistance=5.0, seed=3, engine="fast").open()
    assert twin.describe()["wire_resistance"] == 5.0 and twin.seed == 3 and twin.engine == "fast"
    assert twin.cell_switches is None  # no spread asked: every cell the nominal device
    spread = TwinChoice(array=True, threshold_sigma_v=0.02, on_resistance_sigma=0.05, seed=3).open()
    assert spread.variability.threshold_sigma_v == 0.02 and spread.variability.on_resistance_sigma == 0.05
    assert spread.cell_switches is not None
    assert "spread VT 20 mV / RON 5 %" in TwinChoice(threshold_sigma_v=0.02, on_resistance_sigma=0.05).label()


def test_a_twin_from_a_chip_file_continues_that_chip(tmp_path):
    chip = TwinChoice(array=True).open()
    chip.pulse_cell(2, 5, 4.2, 2e-6)
    chip.save_chip(tmp_path / "chip.npz")
    again = TwinChoice(chip_file=str(tmp_path / "chip.npz")).open()
    assert again.read_cell(2, 5) == pytest.approx(chip.read_cell(2, 5)) and again.read_cell(2, 5) > 10e-9


def test_the_array_read_job_refuses_a_read_beyond_the_limit_and_reads_row_by_row():
    checker = RequestChecker(ArrayGeometry(3, 4), SafeOperatingArea())
    with pytest.raises(SafetyError, match="read limit"):
        jobs.plan(jobs.ArrayReadSettings(read_v=2.0), None, checker)
    plan = jobs.plan(jobs.ArrayReadSettings(read_v=0.5), None, checker)
    assert plan.total == 3 and plan.bitlines == (0, 1, 2, 3)
    from rramlab.sim.virtual_array import VirtualArray

    twin = VirtualArray(geometry=ArrayGeometry(3, 4), engine="fast")
    stops = iter([False, True])
    records = list(jobs.run(twin, plan, lambda: next(stops)))
    assert len(records) == 1 and records[0].wordline == 0 and len(records[0].read_a) == 4
    (cell, g), *_ = records[0].conductances()
    assert cell == (0, 0) and g == pytest.approx(records[0].read_a[0] / 0.5)


def test_errors_say_what_happened_and_what_to_do():
    title, text = explain(BenchError("[analyzer] resource must be a string"))
    assert title == "Bad bench file" and "docs/bench.md" in text
    title, text = explain(SafetyError("cell (0,0) would see +4.5 V"))
    assert "Nothing was sent" in text and "+4.5 V" in text
    title, text = explain(InstrumentError("timeout"))
    assert title == "Instrument error" and "rramlab bench check" in text
    import pyvisa

    title, _ = explain(pyvisa.errors.VisaIOError(-1073807339))
    assert title == "Instrument error"
    title, text = explain(FileNotFoundError("chip.npz"))
    assert title == "File not found"
    title, text = explain(ZeroDivisionError("division by zero"))
    assert title == "Unexpected error" and "ZeroDivisionError" in text


def test_session_history_keeps_runs_and_exports_them(tmp_path):
    from rramlab.protocols.ispp import IsppRecord

    h = SessionHistory()
    a = h.new_run("ISPP", {"cycles": 1}, {"backend": "twin"}, total=3, extra={"cell": [0, 0]})
    b = h.new_run("ISPP", {"cycles": 2}, {"backend": "twin"}, total=6)
    assert (a.run_id, b.run_id) == (1, 2) and h.runs() == [a, b] and h.get(2) is b
    a.records.extend([IsppRecord(1, "set", 0, 3.0, 1.6e-9, 0, 0), IsppRecord(1, "set", 1, 3.1, 1.1e-8, 0, 0)])
    a.status = ABORTED
    h.update(a)
    assert "2 records, aborted" in h.get(1).title()
    with pytest.raises(KeyError, match="no run #9"):
        h.get(9)
    assert export_run(h, a, tmp_path / "a.csv", "csv") == 2  # through a temporary run store, by app/export.py
    text = (tmp_path / "a.csv").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines[0] == "seq,type,cycle,phase,step,pulse_v,read_a,wordline,bitline"
    assert lines[2] == "1,IsppRecord,1,set,1,3.1,1.1e-08,0,0"  # seq counts from 0
    assert '# status: "aborted"' in text and '# protocol: "ISPP"' in text


def _gui_env():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return env


def test_rramlab_gui_starts_offscreen_stays_up_and_exits_0_when_closed(tmp_path):
    store = tmp_path / "chosen" / "runs.sqlite"
    proc = subprocess.run([sys.executable, "-m", "rramlab", "gui", "--quit-after", "2", "--store", str(store)],
                          env=_gui_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr
    assert store.read_bytes()[:16] == b"SQLite format 3\x00"  # the window opened the store it was given


def test_rramlab_gui_without_a_display_says_so_in_one_line_and_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "-m", "rramlab", "gui", "--store", str(tmp_path / "r.sqlite")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0]
    assert "QT_QPA_PLATFORM=offscreen" in lines[0] and "xvfb-run" in lines[0] and "ssh -X" in lines[0]
    assert "xcb" not in proc.stderr
    from rramlab.app.cmd_gui import no_display_reason

    assert no_display_reason({"DISPLAY": ":0"}, "linux") is None
    assert no_display_reason({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert no_display_reason({}, "darwin") is None and no_display_reason({}, "linux") is not None


def test_rramlab_gui_help_lists_the_window():
    proc = subprocess.run([sys.executable, "-m", "rramlab", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "gui" in proc.stdout


def test_ctrl_c_in_the_terminal_closes_the_window_and_exits_130():
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "rramlab", "gui", "--quit-after", "60"], env=_gui_env(),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # not ignored
    try:
        for line in proc.stderr:
            if "window open" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 130, rest  # 128 + SIGINT, as the command line
        assert "Traceback" not in rest and "KeyboardInterrupt" not in rest and "SIGINT: closing the window" in rest
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_stored_record_is_rebuilt_as_the_dataclass_it_was():
    import json

    import numpy as np

    from rramlab.app.gui.history import rebuild_record
    from rramlab.protocols.inference import ImageRecord
    from rramlab.protocols.store import record_to_json

    rec = ImageRecord(3, 1, 7, np.arange(6.0).reshape(3, 2) * 1e-9, np.ones((3, 4)) * 1e-9, np.eye(3, dtype=bool))
    kind, data = record_to_json(rec)
    back = rebuild_record(kind, json.loads(data))
    assert isinstance(back, ImageRecord) and back.prediction == 7
    assert np.array_equal(back.class_currents, rec.class_currents) and back.totals.shape == (2,)
    other = rebuild_record("SomethingNew", {"wordline": 2, "x": [1, 2]})
    assert other.wordline == 2 and other.x == [1, 2]


def test_ispva_cells_follow_the_chosen_cell_and_refuse_to_run_off_the_array():
    from rramlab.app.gui.specs import ispva_cells
    from rramlab.drivers.interface import RequestError

    cells, targets = ispva_cells({"mode": "levels", "devices_per_level": 2, "cell": (0, 22)}, ArrayGeometry())
    assert cells[:4] == [(0, 22), (0, 23), (1, 0), (1, 1)] and len(cells) == 16
    assert targets[:3] == [10e-9, 10e-9, 20e-9]
    lone, _ = ispva_cells({"mode": "levels", "devices_per_level": 3, "cell": (0, 0)}, ArrayGeometry(1, 1))
    assert lone == [(0, 0)] * 24
    with pytest.raises(RequestError, match="run past the end of the array"):
        ispva_cells({"mode": "levels", "devices_per_level": 2, "cell": (23, 20)}, ArrayGeometry())


def test_the_history_says_which_backend_a_run_ran_on():
    from rramlab.app.gui.history import backend_kind

    assert backend_kind({"backend": "twin", "seed": 0}) == "twin"
    assert backend_kind({"backend": "probe-station", "visa_library": "@rramlab-twin"}) == "virtual bench"
    assert backend_kind({"backend": "probe-station", "visa_library": "@sim:default"}) == \
        "simulated bench (pyvisa-sim)"
    assert backend_kind({"backend": "probe-station", "visa_library": "", "bench": "lab 2"}) == "real bench lab 2"
