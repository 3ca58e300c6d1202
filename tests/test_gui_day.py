"""A day at the station in the window (pytest-qt, offscreen Qt): run metadata kept with every run and
remembered between windows, one exporter for the window and ``rramlab runs export``, and the queue."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rramlab.app.cli import main  # noqa: E402
from rramlab.app.gui.main_window import MainWindow  # noqa: E402
from rramlab.protocols.store import RunStore, default_store_path  # noqa: E402

# a short ISPP: 6 set pulses 3.0 -> 3.5 V, 5 reset pulses -1.0 -> -1.4 V
SHORT = {"set_start_v": 3.0, "set_stop_v": 3.5, "set_step_v": 0.1, "reset_start_v": -1.0,
         "reset_stop_v": -1.4, "reset_step_v": 0.1, "cycles": 1}


def open_window(qtbot):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    return w


def close_window(qtbot, w):
    if w.running:
        w.abort_run()
        qtbot.waitUntil(lambda: not w.running, timeout=20000)
    w.close()


@pytest.fixture
def window(qtbot):
    w = open_window(qtbot)
    yield w
    close_window(qtbot, w)


def set_form(window, protocol, values):
    for name, value in values.items():
        window.panel(protocol).form.set_value(name, value)


def run_and_wait(qtbot, window, protocol, timeout=30000):
    run = window.run_protocol(protocol)
    assert run is not None, window.last_error
    qtbot.waitUntil(lambda: not window.running, timeout=timeout)
    return run


# ----- run metadata -----

def test_metadata_fields_are_kept_with_a_run_and_remembered_by_the_next_window(qtbot, window):
    window.metadata_form.set_fields(chip_id="W3-D12", sample="lot 7", operator="kim", temperature="25C",
                                    notes="after anneal", tags="day1, ispp")
    window.backend.select_twin(array=True)
    set_form(window, "ISPP", SHORT)
    run = run_and_wait(qtbot, window, "ISPP")
    with RunStore(default_store_path()) as store:
        m = store.run(run.run_id).metadata
    assert (m.chip_id, m.sample, m.operator, m.notes, m.tags) == ("W3-D12", "lot 7", "kim", "after anneal",
                                                                 ("day1", "ispp"))
    assert m.temperature_k == pytest.approx(298.15)
    close_window(qtbot, window)
    again = open_window(qtbot)
    try:
        assert again.metadata_form.texts() == {"chip_id": "W3-D12", "sample": "lot 7", "operator": "kim",
                                               "temperature": "25C", "notes": "after anneal", "tags": "day1, ispp"}
        again.metadata_form.set_fields(temperature="")  # empty: not recorded
        set_form(again, "ISPP", SHORT)
        second = run_and_wait(qtbot, again, "ISPP")
        with RunStore(default_store_path()) as store:
            m = store.run(second.run_id).metadata
        assert m.chip_id == "W3-D12" and m.temperature_k is None
    finally:
        close_window(qtbot, again)


def test_a_temperature_that_is_not_one_refuses_the_run_before_anything_is_built(qtbot, window):
    window.metadata_form.set_fields(temperature="hot")
    assert window.metadata_form.error.isVisibleTo(window) and "temperature 'hot'" in window.metadata_form.error.text()
    assert window.run_protocol("ISPP") is None
    assert "give kelvin or Celsius" in window.last_error[1] and not window.instruments
    assert window.history.runs() == []


# ----- one exporter -----

def test_csv_npz_and_netcdf_from_the_window_equal_those_of_runs_export(qtbot, window, tmp_path, capsys):
    from rramlab.app.export import dataset_records, open_run

    window.metadata_form.set_fields(chip_id="W3-D12", operator="kim")
    window.backend.select_twin(array=True)
    set_form(window, "ISPP", SHORT)
    run = run_and_wait(qtbot, window, "ISPP")
    window.export_run_csv(run, tmp_path / "gui.csv")
    window.export_run_npz(run, tmp_path / "gui.npz")
    window.export_run_netcdf(run, tmp_path / "gui.nc")
    assert main(["runs", "export", str(run.run_id), "--csv", str(tmp_path / "cli.csv"),
                 "--npz", str(tmp_path / "cli.npz")]) == 0
    # CSV: byte-equal but for the provenance line naming the command that wrote the file
    gui, cli = (tmp_path / "gui.csv").read_bytes().splitlines(), (tmp_path / "cli.csv").read_bytes().splitlines()
    differ = [(a, b) for a, b in zip(gui, cli) if a != b]
    assert len(gui) == len(cli) == 11 + 16 and len(differ) == 1 and differ[0][0].startswith(b"# command: rramlab gui")
    assert b'# chip_id: "W3-D12"' in gui
    # NPZ: the same arrays, value-equal; the provenance equal but for its command
    with np.load(tmp_path / "gui.npz") as g, np.load(tmp_path / "cli.npz") as c:
        assert sorted(g.files) == sorted(c.files) and "IsppRecord.read_a" in g.files
        for key in g.files:
            if key != "provenance":
                assert np.array_equal(g[key], c[key]), key
        pg, pc = json.loads(str(g["provenance"])), json.loads(str(c["provenance"]))
        assert pg.pop("command").startswith("rramlab gui") and pc.pop("command").startswith("rramlab runs export")
        assert pg == pc and pg["operator"] == "kim"
    # NetCDF: every record of the store, and its metadata
    ds = open_run(tmp_path / "gui.nc")
    with RunStore(default_store_path()) as store:
        stored = [(r.seq, r.type, r.data) for r in store.records(run.run_id)]
    assert dataset_records(ds) == stored and len(stored) == 11
    assert ds.attrs["chip_id"] == "W3-D12" and ds.attrs["protocol"] == "ispp"


# ----- the queue -----

def add_ispp_step(window, cell, **settings):
    window.show_panel("ISPP")
    window.panel("ISPP").set_cell(*cell)
    set_form(window, "ISPP", {**SHORT, **settings})
    return window.queue_panel.add_current()


def test_the_queue_runs_three_steps_pauses_resumes_aborts_the_last_and_survives_a_restart(qtbot, window,
                                                                                           monkeypatch):
    from rramlab.app.gui.queue_panel import IDLE, PAUSED

    queue = window.queue_panel
    window.backend.select_twin(array=True)
    twin = window.connect_backend()
    events = []
    pulse, reset = twin._pulse, twin._reset_outputs
    monkeypatch.setattr(twin, "_pulse", lambda *a, **k: (events.append("pulse"), pulse(*a, **k))[1])
    monkeypatch.setattr(twin, "_reset_outputs", lambda: (events.append("reset"), reset())[1])
    add_ispp_step(window, (3, 7))
    add_ispp_step(window, (4, 9), set_stop_v=3.3)
    add_ispp_step(window, (5, 2), cycles=500)  # long enough to abort part-way
    assert queue.list.count() == 3 and queue.list.item(2).text() == "3. ISPP 5,2 · twin · pending"
    queue.run_queue()
    queue.pause()  # step 1 pauses at its next checkpoint, outputs safe
    control = window.run_thread.worker.control
    qtbot.waitUntil(lambda: control.paused, timeout=30000)
    assert queue.state == PAUSED and window.running and queue.steps[0].status == "running"
    assert window.pause_button.text() == "Resume"  # the window's own Pause follows the queue's
    held = len(window.current_run.records)
    assert events[-1] == "reset" and held < 11
    qtbot.wait(400)
    assert len(window.current_run.records) == held and events[-1] == "reset"  # nothing sent while paused
    qtbot.waitUntil(lambda: "paused at a checkpoint: outputs at 0 V" in queue.status.text(), timeout=5000)
    queue.resume()
    assert window.pause_button.text() == "Pause"
    qtbot.waitUntil(lambda: queue.steps[2].status == "running" and window.current_run is not None
                    and window.current_run.run_id == queue.steps[2].run_id
                    and len(window.current_run.records) >= 5, timeout=30000)
    queue.abort()
    qtbot.waitUntil(lambda: queue.state == IDLE and not window.running, timeout=30000)
    assert [s.status for s in queue.steps] == ["finished", "finished", "aborted"]
    ids = [s.run_id for s in queue.steps]
    with RunStore(default_store_path()) as store:
        runs = [store.run(i) for i in ids]
        step1 = store.records(ids[0])
        step2 = store.records(ids[1])
        step3 = store.records(ids[2])
    assert [r.status for r in runs] == ["finished", "finished", "aborted"] and len(set(ids)) == 3
    assert [r.settings["gui_inputs"]["cell"] for r in runs] == [[3, 7], [4, 9], [5, 2]]
    assert [r.data["step"] for r in step1] == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4]  # the paused step whole
    assert max(r.data["pulse_v"] for r in step2) == pytest.approx(3.3)  # each step its own settings
    assert 5 <= len(step3) < 500 * 11 and runs[2].settings["cycles"] == 500
    saved = [s.to_dict() for s in queue.steps]
    close_window(qtbot, window)
    again = open_window(qtbot)
    try:
        assert [s.to_dict() for s in again.queue_panel.steps] == saved
        assert again.queue_panel.list.count() == 3 and "aborted" in again.queue_panel.list.item(2).text()
    finally:
        close_window(qtbot, again)


def test_queue_steps_move_and_go_and_a_bad_step_is_refused_before_anything_runs(qtbot, window, tmp_path):
    from rramlab.app.gui import window_state

    queue = window.queue_panel
    window.backend.select_twin(array=True)
    for cell in [(0, 0), (1, 1), (2, 2)]:
        add_ispp_step(window, cell)
    queue.move(2, -1)
    queue.move(0, 1)
    assert [s.inputs["cell"] for s in queue.steps] == [[2, 2], [0, 0], [1, 1]]
    from PySide6 import QtCore

    assert queue.list.model().moveRow(QtCore.QModelIndex(), 2, QtCore.QModelIndex(), 0)  # what a drag does
    assert [s.inputs["cell"] for s in queue.steps] == [[1, 1], [2, 2], [0, 0]]
    qtbot.waitUntil(lambda: [queue.list.item(i).text()[:10] for i in range(3)] == ["1. ISPP 1,", "2. ISPP 2,",
                                                                                 "3. ISPP 0,"], timeout=5000)
    queue.remove(0)
    assert [s.inputs["cell"] for s in queue.steps] == [[2, 2], [0, 0]]
    # a queue file edited by hand: step 2 asks for 9 V, beyond the twin's set window
    steps = window_state.load_queue(queue.path)
    steps[1]["settings"]["IsppSettings"]["set_stop_v"] = 9.0
    window_state.save_queue(steps, queue.path)
    close_window(qtbot, window)
    again = open_window(qtbot)
    try:
        again.queue_panel.buttons["run"].click()
        assert again.last_error is not None and "queue step 2 (ISPP)" in again.last_error[1]
        assert "9" in again.last_error[1] and again.queue_panel.state == "idle"
        assert not again.instruments and not again.running and again.history.runs() == []
        assert [s.status for s in again.queue_panel.steps] == ["pending", "pending"]
        # saved elsewhere and loaded back: the same steps
        again.queue_panel.save(tmp_path / "day.toml")
        again.queue_panel.remove(0)
        again.queue_panel.load(tmp_path / "day.toml")
        assert [s.to_dict() for s in again.queue_panel.steps] == steps_as_loaded(tmp_path / "day.toml")
        assert len(again.queue_panel.steps) == 2
    finally:
        close_window(qtbot, again)


def steps_as_loaded(path):
    from rramlab.app.gui import window_state
    from rramlab.app.gui.queue_panel import QueueStep

    return [QueueStep.from_dict(d).to_dict() for d in window_state.load_queue(path)]


def test_a_queue_saved_as_a_recipe_is_a_recipe_and_loads_back_as_the_same_steps(qtbot, window, tmp_path):
    from rramlab.protocols.recipe import load_recipe

    queue = window.queue_panel
    window.backend.select_twin(array=True)
    add_ispp_step(window, (3, 7), set_stop_v=3.3)
    window.show_panel("Map")
    window.panel("Map").extra.region.setText("0:4,2:6")
    queue.add_current()
    window.show_panel("ISPVA")
    window.panel("ISPVA").set_cell(2, 5)
    window.panel("ISPVA").form.set_value("max_pulses", 30)
    queue.add_current()
    path = queue.save_recipe(tmp_path / "day.toml")
    recipe = load_recipe(path)  # what rramlab run reads
    assert [s.protocol for s in recipe.steps] == ["ispp", "map", "ispva"]
    assert recipe.steps[0].cells == ((3, 7),) and recipe.steps[0].settings.set_stop_v == 3.3
    assert recipe.steps[1].region == ((0, 4), (2, 6))
    assert recipe.steps[2].cells == ((2, 5),) and recipe.steps[2].settings.max_pulses == 30
    assert recipe.steps[2].targets_s == pytest.approx((queue.steps[2].inputs["target_s"],))
    before = [s.to_dict() for s in queue.steps]
    loaded = queue.load_recipe(path)
    assert len(queue.steps) == 6 and [s.to_dict() for s in loaded] == before
    # a panel that is not a recipe protocol is named, and no file is written
    window.show_panel("Array read")
    queue.add_current()
    with pytest.raises(ValueError, match="queue step 7 \\(Array read\\) is not a recipe protocol"):
        queue.save_recipe(tmp_path / "other.toml")
    assert not (tmp_path / "other.toml").exists()


def test_a_queue_on_the_virtual_bench_paused_while_it_connects_waits_before_its_next_step(qtbot, window):
    from rramlab.app.gui.queue_panel import IDLE, PAUSED

    queue = window.queue_panel
    window.metadata_form.set_fields(chip_id="W3-D12", operator="kim")
    window.backend.select_virtual_bench()
    add_ispp_step(window, (3, 7), set_stop_v=3.2, reset_stop_v=-1.1)
    add_ispp_step(window, (4, 9), set_stop_v=3.2, reset_stop_v=-1.1)
    assert [s.title(i + 1) for i, s in enumerate(queue.steps)][1] == "2. ISPP 4,9 · virtual bench · pending"
    queue.run_queue()
    assert window.connecting and not window.running  # the bench connects on its thread first
    queue.pause()  # no step running yet to pause at a checkpoint: the next step waits instead
    qtbot.waitUntil(lambda: queue.state == PAUSED and not window.running and queue.steps[0].status == "finished",
                    timeout=60000)
    assert queue.steps[1].status == "pending" and "paused between steps" in queue.status.text()
    queue.resume()
    qtbot.waitUntil(lambda: queue.state == IDLE and not window.running, timeout=60000)
    assert [s.status for s in queue.steps] == ["finished", "finished"]
    with RunStore(default_store_path()) as store:
        runs = [store.run(s.run_id) for s in queue.steps]
    assert [r.backend for r in runs] == ["probe-station"] * 2
    assert [(r.metadata.chip_id, r.metadata.operator) for r in runs] == [("W3-D12", "kim")] * 2  # every step
    assert [r.settings["gui_inputs"]["cell"] for r in runs] == [[3, 7], [4, 9]]
    assert all(r.settings["pulse_width_s"] >= 500e-6 for r in runs)  # the bench's limits, as the form showed


def test_a_recipe_with_a_wait_is_not_loaded_into_the_queue_and_the_line_is_named(tmp_path):
    from rramlab.app.gui.backends import TwinChoice
    from rramlab.app.gui.queue_recipe import steps_from_recipe

    path = tmp_path / "day.toml"
    path.write_text('[[step]]\nprotocol = "ispp"\ncell = [1, 2]\ncycles = 2\n\n[[step]]\nwait = "10min"\n')
    with pytest.raises(ValueError, match=r"step 2 \(line 6\) wait: a wait is not a queue step yet"):
        steps_from_recipe(path, TwinChoice(array=True))
    path.write_text('[[step]]\nprotocol = "ispva"\ncells = [[0, 0], [0, 1]]\ntargets_ns = [20, 50]\n')
    steps, notes = steps_from_recipe(path, TwinChoice(array=True))
    assert [(s.panel, s.inputs["cell"], s.inputs["target_s"]) for s in steps] == [("ISPVA", [0, 0], 20e-9),
                                                                                 ("ISPVA", [0, 1], 50e-9)]
    assert notes == [] and steps[0].backend["choice"] == "TwinChoice"


def test_closing_the_window_during_a_queue_stops_its_step_safely_and_starts_no_other(qtbot, window):
    queue = window.queue_panel
    window.backend.select_twin(array=True)
    add_ispp_step(window, (3, 7), cycles=500)
    add_ispp_step(window, (4, 9))
    queue.run_queue()
    qtbot.waitUntil(lambda: window.current_run is not None and len(window.current_run.records) >= 5, timeout=30000)
    window.close()  # the step stops at its next checkpoint, outputs to 0 V, then the window closes
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30000)
    qtbot.wait(200)
    assert queue.state == "idle" and not window.running and not window.instruments
    assert [s.status for s in queue.steps] == ["aborted", "pending"] and queue.steps[1].run_id is None
    again = open_window(qtbot)
    try:
        assert [s.status for s in again.queue_panel.steps] == ["aborted", "pending"] and not again.running
        assert again.queue_panel.state == "idle"
    finally:
        close_window(qtbot, again)


def test_rramlab_gui_takes_the_run_metadata_flags_into_its_fields(tmp_path):
    import subprocess
    import sys

    from rramlab.app.gui import window_state

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", RRAMLAB_STORE=str(tmp_path / "runs.sqlite"))
    proc = subprocess.run([sys.executable, "-m", "rramlab", "gui", "--quit-after", "1", "--chip-id", "W3-D12",
                           "--operator", "kim", "--temperature", "25C", "--tag", "day1", "--tag", "ispp"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert window_state.load_metadata(tmp_path) == {"chip_id": "W3-D12", "sample": "", "operator": "kim",
                                                    "temperature": "25C", "notes": "", "tags": "day1, ispp"}
    bad = subprocess.run([sys.executable, "-m", "rramlab", "gui", "--quit-after", "1", "--temperature", "hot"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "give kelvin or Celsius" in bad.stderr + bad.stdout
    assert window_state.load_metadata(tmp_path)["temperature"] == "25C"  # refused before the window opened
