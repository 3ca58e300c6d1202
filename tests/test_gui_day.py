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
