"""The lab protocols' panels in the real window (pytest-qt, offscreen): I-V, map, endurance,
retention and disturb run to the end on the twin and draw every point they measured; a stop
mid-run on the virtual bench leaves it safe and keeps the records; bad settings are refused with
one line before any instrument command; a click on a map cell opens that cell's history."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PySide6 import QtCore  # noqa: E402

from rramlab.app.gui.cell_history import cell_view_position  # noqa: E402
from rramlab.app.gui.history import ABORTED, DONE  # noqa: E402
from rramlab.app.gui.main_window import MainWindow  # noqa: E402
from rramlab.protocols.store import RunStore, default_store_path  # noqa: E402


@pytest.fixture
def window(qtbot):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.running:
        w.abort_run()
        qtbot.waitUntil(lambda: not w.running, timeout=20000)


def run_and_wait(qtbot, window, name, timeout=60000):
    run = window.run_protocol(name)
    if run is None and window.connecting:  # a bench connects first, then the run starts
        qtbot.waitUntil(lambda: window.running or not window.connecting, timeout=20000)
        run = window.current_run
    assert run is not None, window.last_error
    qtbot.waitUntil(lambda: not window.running and not window.connecting, timeout=timeout)
    return run


def stored(run_id):
    with RunStore(default_store_path()) as store:
        return store.run(run_id), store.records(run_id)


def test_iv_sweeps_a_cell_and_draws_abs_current_on_a_log_axis(qtbot, window):
    from rramlab.protocols import iv

    window.backend.select_twin(array=True, engine="fast")
    panel = window.panel("I-V")
    panel.set_cell(3, 7)
    panel.form.set_value("step_v", 0.1)
    run = run_and_wait(qtbot, window, "I-V")
    assert run.status == DONE and window.last_error is None, run.message
    volts, legs = iv.sweep_voltages(panel.form.settings())
    assert [r.voltage_v for r in run.records] == pytest.approx(volts.tolist())
    assert {(r.wordline, r.bitline) for r in run.records} == {(3, 7)}
    plots = window.plots["I-V"]
    nonzero = [r for r in run.records if r.current_a != 0]
    assert plots.shown_points() == len(nonzero) > 50  # the 0 V steps (0 A) have no place on a log axis
    assert plots.curve_plot.getPlotItem().getAxis("left").logMode
    x, y = plots.curves[0].xData, plots.curves[0].yData  # the way up, in nA (getData is log10 of it)
    up = [r for r in nonzero if r.leg == 0]
    assert np.allclose(y, [abs(r.current_a) * 1e9 for r in up]) and np.allclose(x, [r.voltage_v for r in up])
    # the reset branch is negative current, drawn as |I|
    assert all(r.current_a < 0 for r in run.records if r.leg == 2 and r.voltage_v < 0)
    info, records = stored(run.run_id)
    assert info.protocol == "iv" and info.status == "finished" and len(records) == len(run.records)
    assert info.settings["step_v"] == 0.1
    # it ends with rramlab iv's numbers, from iv.summarise, shown and kept with the run
    summary = iv.summarise(run.records, 1.0)
    assert info.summary["set_onset_v"] == pytest.approx(summary["set_onset_v"]) and info.summary["points"] == len(volts)
    assert f"set onset {summary['set_onset_v']:.2f} V" in panel.summary.text()
    assert 2.5 < summary["set_onset_v"] < 4.2  # no abrupt set at low voltage: the paper's gradual rise


def test_map_of_a_region_fills_a_log_heat_map_over_the_arrays_lines(qtbot, window):
    window.backend.select_twin(array=True, engine="fast")
    panel = window.panel("Map")
    panel.extra.region.setText("2:5,1:6")
    run = run_and_wait(qtbot, window, "Map")
    assert run.status == DONE, run.message
    reads = [r for r in run.records if type(r).__name__ == "MapRead"]
    assert len(reads) == 15 and type(run.records[-1]).__name__ == "MapSnapshot"
    plots = window.plots["Map"]
    assert plots.g.shape == (24, 24) and plots.cells_read() == 15  # the array's lines, the region filled
    assert np.isfinite(plots.g[2:5, 1:6]).all() and np.isnan(plots.g[:2]).all() and np.isnan(plots.g[:, 6:]).all()
    shown = plots.image.image
    assert shown.shape == (24, 24)
    assert shown[3, 2] == pytest.approx(np.log10(plots.g[3, 2] * 1e9))  # log10 of G in nS
    assert "15 cells read" in plots.counts.text() and "HRS 15" in plots.counts.text()  # a fresh chip is in HRS
    info, records = stored(run.run_id)
    assert info.protocol == "map" and info.settings["region"] == "2:5,1:6" and len(records) == 16
    # the window's conductance map takes the reads too
    assert window.map.conductance[4, 5] == pytest.approx(reads[-1].conductance_s)


def test_the_map_panel_crosses_a_broken_cell_out_in_red_and_names_it(qtbot, window):
    from rramlab.protocols.array_map import MapRead

    plots = window.plots["Map"]
    plots.clear()
    plots.add_records([MapRead(3, 7, 1.0, 1e-4, 1e-4), MapRead(3, 8, 1.0, 2e-9, 2e-9),
                       MapRead(4, 7, 1.0, 4e-8, 4e-8)])
    plots.redraw()
    x, y = plots.broken.getData()
    assert list(x) == [7.0] and list(y) == [3.0]  # bitline on x, wordline on y, like the heat map
    assert "broken (above 1 uS, red cross): 3,7" in plots.counts.text()
    plots.clear()
    assert len(plots.broken.getData()[0]) == 0 and "broken" not in plots.counts.text()


def test_endurance_draws_the_window_against_log_cycles(qtbot, window):
    from rramlab.protocols.endurance import read_cycles

    window.backend.select_twin(array=False)
    panel = window.panel("Endurance")
    panel.form.set_value("cycles", 30)
    panel.form.set_value("read_every", "log")
    panel.form.set_value("reads_per_decade", 5)
    run = run_and_wait(qtbot, window, "Endurance")
    assert run.status == DONE, run.message
    expected = list(read_cycles(30, "log", 5))
    assert [r.cycle for r in run.records] == expected
    plots = window.plots["Endurance"]
    assert len(plots.lrs.getData()[0]) == len(plots.ratio.getData()[0]) == len(expected)
    assert plots.states.getPlotItem().getAxis("bottom").logMode
    assert np.allclose(plots.ratio.yData, [r.lrs_a / r.hrs_a for r in run.records])
    assert all(r.lrs_a > 2 * r.hrs_a for r in run.records)  # the ideal twin's window stays open
    assert window.progress.value() == 30  # progress counts cycles, not reads
    assert "window stayed above 2x for all 30 cycles" in panel.summary.text()
    info, records = stored(run.run_id)
    assert info.protocol == "endurance" and info.summary["closed_at_cycle"] is None and info.summary["cycles"] == 30
    assert len(records) == len(expected)


def test_retention_draws_each_cells_conductance_against_log_time(qtbot, window):
    window.backend.select_twin(array=True, engine="fast")
    panel = window.panel("Retention")
    panel.extra.cells.setText("0:1,0:2")
    panel.extra.levels.setText("20,50")
    panel.form.set_value("duration_s", 1000.0)
    panel.form.set_value("reads", 6)
    run = run_and_wait(qtbot, window, "Retention")
    assert run.status == DONE, run.message
    reads = [r for r in run.records if type(r).__name__ == "RetentionRecord"]
    assert len(reads) == 12 and sorted({r.target_s for r in reads}) == pytest.approx([20e-9, 50e-9])
    times = sorted({r.time_s for r in reads})
    assert times[0] == pytest.approx(1.0) and times[-1] == pytest.approx(1000.0)  # simulated time, log-spaced
    plots = window.plots["Retention"]
    assert plots.points() == 12 and plots.view.getPlotItem().getAxis("bottom").logMode
    assert sorted(label.text for _, label in plots.legend.items) == ["20 nS (1 cell)", "50 nS (1 cell)"]
    for r in reads:  # ISPVA put them there, and the ideal twin keeps them
        assert abs(r.conductance_s - r.target_s) < 4e-9
    info, _ = stored(run.run_id)
    assert info.protocol == "retention" and info.settings["duration_s"] == 1000.0
    assert info.settings["program"]["tolerance_s"] == panel.forms[1].settings().tolerance_s
    assert info.settings["gui_inputs"]["cells"] == [[0, 0], [0, 1]]
    assert [lv["cells"] for lv in info.summary["levels"]] == [1, 1] and info.summary["simulated_time"] is True
    assert "drift" in panel.summary.text() and "simulated time" in panel.summary.text()


def test_disturb_with_neighbours_draws_the_change_against_reads_and_pulses(qtbot, window):
    from rramlab.protocols.endurance import read_cycles

    window.backend.select_twin(array=True, engine="fast")
    panel = window.panel("Disturb")
    panel.set_cell(3, 7)
    for name, value in (("reads", 40), ("neighbours", 1), ("pulses", 20), ("reads_per_decade", 4)):
        panel.form.set_value(name, value)
    run = run_and_wait(qtbot, window, "Disturb")
    assert run.status == DONE, run.message
    plots = window.plots["Disturb"]
    assert plots.points("read") == len(list(read_cycles(40, "log", 4)))
    assert plots.points("half-select") == 5 * len(list(read_cycles(20, "log", 4)))  # the cell and 4 neighbours
    assert {k[1] for k in plots.curves if k[0] == "half-select"} == {(3, 7), (3, 6), (3, 8), (2, 7), (4, 7)}
    assert plots.pulses.isVisible()
    assert window.progress.value() == 60
    info, records = stored(run.run_id)
    assert info.protocol == "disturb" and len(records) == len(run.records) == 1 + plots.points("read") + 5 + \
        plots.points("half-select")  # count 0 of each phase: the reads before any stress
    assert len(info.summary["series"]) == 6 and "change per decade of half-bias pulses" in panel.summary.text()


def test_a_stop_mid_endurance_on_the_virtual_bench_leaves_it_safe_and_keeps_the_records(qtbot, window):
    window.backend.select_virtual_bench(seed=1)
    panel = window.panel("Endurance")
    panel.set_cell(3, 7)
    panel.form.set_value("cycles", 100000)
    panel.form.set_value("read_every", "1")
    run = window.run_protocol("Endurance")
    if run is None:
        assert window.connecting, window.last_error
        qtbot.waitUntil(lambda: window.running and window.current_run is not None, timeout=20000)
        run = window.current_run
    qtbot.waitUntil(lambda: len(run.records) >= 3, timeout=30000)
    qtbot.mouseClick(window.abort_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.running, timeout=20000)
    bench = window.instrument().virtual_bench
    assert bench.is_safe() and bench.clock.counts["pulse"] >= 6  # 0 V, matrix open, after pulsing
    assert run.status == ABORTED and "records kept" in run.message
    info, records = stored(run.run_id)
    assert info.status == "aborted" and len(records) == len(run.records) >= 3
    assert [r.data["cycle"] for r in records] == list(range(1, len(records) + 1))
    assert len(window.plots["Endurance"].records) == len(run.records)


BAD_SETTINGS = [  # (panel, make it bad, words of the refusal's first line, put it right again)
    ("Map", lambda p: p.extra.region.setText("0:30,0:4"), "region wordlines 0:30 is not within 0:24",
     lambda p: p.extra.region.setText("")),
    ("Map", lambda p: p.extra.region.setText("rows 1-4"), "--region takes W0:W1,B0:B1",
     lambda p: p.extra.region.setText("")),
    ("Endurance", lambda p: p.form.set_value("read_every", "often"), "--read-every 'often'",
     lambda p: p.form.set_value("read_every", "log")),
    ("Retention", lambda p: p.extra.levels.setText("20,fifty"), "--levels '20,fifty'",
     lambda p: p.extra.levels.setText("20,50,80")),
    ("Retention", lambda p: p.extra.cells.setText("0:1,30:31"), "bitline 30 is outside the array",
     lambda p: p.extra.cells.setText("")),
    ("Disturb", lambda p: p.form.set_value("neighbours", 1) or p.form.set_value("pulse_v", 9.0),
     "driven to +4.5 V, beyond the line limit",
     lambda p: p.form.set_value("pulse_v", 4.2) or p.form.set_value("neighbours", 0)),
    ("I-V", lambda p: p.form.set_value("set_peak_v", 0.0), "--set-peak must be positive",
     lambda p: p.form.set_value("set_peak_v", 4.2)),
]


def test_bad_settings_are_refused_with_one_line_before_any_instrument_command(qtbot, window):
    window.backend.select_virtual_bench(seed=1)
    window.connect_backend()
    qtbot.waitUntil(lambda: not window.connecting, timeout=20000)
    bench = window.instrument().virtual_bench
    for panel_name, setup, words, undo in BAD_SETTINGS:
        panel = window.panel(panel_name)
        setup(panel)
        before = dict(bench.clock.counts)
        runs = len(window.history.runs())
        window.last_error = None
        assert window.run_protocol(panel_name) is None, panel_name
        assert not window.running and len(window.history.runs()) == runs
        title, text = window.last_error
        first = text.splitlines()[0]
        assert words in first, (panel_name, text)  # the problem and the fix in its first line
        assert dict(bench.clock.counts) == before, panel_name  # not one VISA transaction, pulse or reading
        assert bench.is_safe()
        undo(panel)
    # the control: the map with a good region does reach the bench
    window.panel("Map").extra.region.setText("0:2,0:2")
    before = dict(bench.clock.counts)
    run = run_and_wait(qtbot, window, "Map")
    assert run.status == DONE and len(run.records) == 5 and bench.clock.counts["measurement"] > before["measurement"]


def click_cell(qtbot, plot_widget, wordline, bitline):
    plot_widget.window().show()
    qtbot.waitExposed(plot_widget)
    pos = cell_view_position(plot_widget, wordline, bitline)
    qtbot.mouseClick(plot_widget.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)


def test_clicking_a_map_cell_opens_its_history_with_that_cells_records(qtbot, window):
    window.backend.select_twin(array=True, engine="fast")
    ispva = window.panel("ISPVA")
    ispva.set_cell(2, 3)
    ispva_run = run_and_wait(qtbot, window, "ISPVA")
    window.panel("Map").extra.region.setText("0:4,0:5")
    map_run = run_and_wait(qtbot, window, "Map")
    assert ispva_run.status == map_run.status == DONE
    mine = [r for run in (ispva_run, map_run) for r in run.records
            if getattr(r, "wordline", None) == 2 and getattr(r, "bitline", None) == 3]
    assert len(mine) > 2

    window.plot_tabs.setCurrentWidget(window.plots["Map"])
    click_cell(qtbot, window.plots["Map"].view, 2, 3)
    dialog = window.cell_history_dialog
    assert dialog is not None and dialog.isVisible() and (dialog.wordline, dialog.bitline) == (2, 3)
    assert len(dialog.history) == len(mine) == dialog.table.rowCount()
    assert {h.run_id for h in dialog.history} == {ispva_run.run_id, map_run.run_id}
    assert all((h.data["wordline"], h.data["bitline"]) == (2, 3) for h in dialog.history)
    assert dialog.points() == sum(np.isfinite(getattr(r, "conductance_s", np.nan)) for r in mine)
    assert dialog.plot.getPlotItem().getAxis("bottom").logMode
    last = dialog.history[-1]
    assert last.type == "MapRead" and dialog.table.item(len(mine) - 1, 5).text() == f"{last.conductance_s * 1e9:.2f}"
    dialog.close()

    # the window's conductance map and the transfer's chip map open the same history
    window.plot_tabs.setCurrentIndex(window.plot_tabs.count() - 1)
    click_cell(qtbot, window.map.view, 2, 3)
    assert window.cell_history_dialog is not dialog and len(window.cell_history_dialog.history) == len(mine)
    window.cell_history_dialog.close()
    window.plot_tabs.setCurrentWidget(window.plots["Transfer"])
    click_cell(qtbot, window.plots["Transfer"].chip.widget, 1, 4)
    other = window.cell_history_dialog
    assert (other.wordline, other.bitline) == (1, 4)
    assert [h.type for h in other.history] == ["MapRead"]  # the map read it; ISPVA did not touch it
    other.close()
    window.plot_tabs.setCurrentWidget(window.plots["Map"])
    window.cell_history_dialog = None
    window.plots["Map"].view.setRange(xRange=(-0.5, 39.5), yRange=(-0.5, 39.5), padding=0)  # zoomed out
    click_cell(qtbot, window.plots["Map"].view, 30, 3)  # in the view, beyond the array's 24 wordlines: no cell
    assert window.cell_history_dialog is None and window.last_error is None


def test_retention_on_the_virtual_bench_waits_at_0v_and_a_stop_in_the_wait_keeps_the_programming(qtbot, window):
    window.backend.select_virtual_bench(seed=2)
    panel = window.panel("Retention")
    panel.extra.cells.setText("3,7")
    panel.extra.levels.setText("30")
    for name, value in (("duration_s", 600.0), ("reads", 2), ("first_read_s", 300.0)):
        panel.form.set_value(name, value)
    run = window.run_protocol("Retention")
    if run is None:
        assert window.connecting, window.last_error
        qtbot.waitUntil(lambda: window.running and window.current_run is not None, timeout=20000)
        run = window.current_run
    qtbot.waitUntil(lambda: any(type(r).__name__ == "IspvaResult" for r in run.records), timeout=60000)
    qtbot.wait(500)  # into the 300 s wait before the first read
    bench = window.instrument().virtual_bench
    assert window.running and bench.is_safe()  # resting: every output at 0 V, the matrix open
    window.abort_run()
    qtbot.waitUntil(lambda: not window.running, timeout=10000)  # the wait is cut short, not sat out
    assert run.status == ABORTED and bench.is_safe()
    assert [type(r).__name__ for r in run.records][-1] == "IspvaResult"  # programmed, not read yet
    info, records = stored(run.run_id)
    assert info.status == "aborted" and [r.type for r in records] == [type(r).__name__ for r in run.records]
    assert abs(records[-1].data["conductance_s"] - 30e-9) < 4e-9


def test_a_cells_history_is_of_the_chip_in_the_metadata_fields(qtbot, window):
    window.backend.select_twin(array=True, engine="fast")
    window.panel("Map").extra.region.setText("0:2,0:2")
    unnamed = run_and_wait(qtbot, window, "Map")
    window.metadata_form.set_fields(chip_id="W3-D12")
    named = run_and_wait(qtbot, window, "Map")
    assert unnamed.status == named.status == DONE
    dialog = window.open_cell_history(1, 1)
    assert dialog.chip_id() == "W3-D12" and [h.run_id for h in dialog.history] == [named.run_id]
    assert "on chip W3-D12: 1 record in 1 run" in dialog.caption.text()
    dialog.chip.setText("")
    dialog.refresh()  # the runs recorded without a chip id
    assert [h.run_id for h in dialog.history] == [unnamed.run_id] and dialog.points() == 1
    dialog.chip.setText("W9-D9")
    dialog.refresh()
    assert dialog.history == [] and dialog.table.rowCount() == 0 and "no records of cell 1,1" in dialog.caption.text()


def test_the_lab_forms_take_text_long_times_in_seconds_and_the_compliance_in_ma(qtbot, window):
    from PySide6 import QtWidgets

    form = window.panel("Endurance").form
    assert isinstance(form.fields["read_every"], QtWidgets.QLineEdit) and form.value("read_every") == "log"
    form.set_value("read_every", "100")
    assert form.settings().read_every == "100"
    retention = window.panel("Retention").form
    assert retention.fields["duration_s"].suffix() == " s" and retention.fields["duration_s"].value() == 7200.0
    retention.set_value("duration_s", 10 * 365.25 * 86400)  # ten years fits the box, in seconds
    assert retention.settings().duration_s == 10 * 365.25 * 86400
    iv_form = window.panel("I-V").form
    assert iv_form.fields["compliance_a"].suffix() == " mA" and iv_form.fields["compliance_a"].value() == 1.0
    iv_form.set_value("compliance_a", 2e-4)
    assert iv_form.settings().compliance_a == 2e-4
    assert window.panel("ISPP").form.fields["pulse_width_s"].suffix() == " µs"  # a pulse width stays in µs


def test_endurance_with_the_twins_wear_ends_when_the_window_closes(qtbot, window):
    window.backend.select_twin(array=False, seed=3)
    panel = window.panel("Endurance")
    panel.form.set_value("cycles", 400)
    panel.form.set_value("read_every", "1")
    panel.extra.aging.setChecked(True)
    panel.extra.cycles_to_failure.setValue(30)
    run = run_and_wait(qtbot, window, "Endurance")
    assert run.status == DONE, run.message
    cycles = [r.cycle for r in run.records]
    assert cycles == list(range(1, len(cycles) + 1)) and len(cycles) < 400  # stopped at the closed window
    assert run.records[-1].window_ratio < 2.0 <= run.records[-2].window_ratio
    ratios = [r.window_ratio for r in run.records]
    assert ratios[0] > 20 and all(a >= b - 1e-9 for a, b in zip(ratios, ratios[1:]))  # it narrows, never widens
    assert window.instrument().aging is not None and window.instrument().aging.aging.wear_cycles_to_failure == 30
    assert f"window closed below 2x at cycle {cycles[-1]}" in panel.summary.text()
    info, _ = stored(run.run_id)
    assert info.summary["closed_at_cycle"] == cycles[-1] and info.settings["gui_inputs"]["aging"] is True


def test_the_twins_wear_and_drift_are_refused_on_a_bench_before_any_command(qtbot, window):
    window.backend.select_virtual_bench(seed=1)
    window.connect_backend()
    qtbot.waitUntil(lambda: not window.connecting, timeout=20000)
    bench = window.instrument().virtual_bench
    before = dict(bench.clock.counts)
    panel = window.panel("Disturb")
    panel.extra.aging.setChecked(True)
    assert window.run_protocol("Disturb") is None
    assert "wear and drift apply to the twin only" in window.last_error[1].splitlines()[0]
    assert dict(bench.clock.counts) == before and bench.is_safe()


def test_retention_with_the_twins_drift_relaxes_towards_hrs_in_log_time(qtbot, window):
    from rramlab.sim.aging import Aging

    window.backend.select_twin(array=False)
    panel = window.panel("Retention")
    panel.extra.levels.setText("80")
    panel.extra.aging.setChecked(True)
    panel.form.set_value("duration_s", 1e6)
    panel.form.set_value("reads", 7)
    run = run_and_wait(qtbot, window, "Retention")
    assert run.status == DONE, run.message
    reads = [r for r in run.records if type(r).__name__ == "RetentionRecord"]
    g = np.array([r.conductance_s for r in reads])
    assert len(reads) == 7 and np.all(np.diff(g) < 0)  # every read lower than the one before
    # the model's closed form: G = G_hrs + A (1 - nu log10(1 + t / tau)), a straight line in log10(1 + t / tau)
    aging = Aging()
    x = np.log10(1 + np.array([r.time_s for r in reads]) / aging.drift_tau_s)
    slope, intercept = np.polyfit(x, g, 1)
    assert np.abs(g - (intercept + slope * x)).max() < 1e-12  # within 0.001 nS of the line
    programmed = -slope / aging.drift_rate  # A: the programmed part of G
    assert 1.4e-9 < intercept - programmed < 1.8e-9  # what it relaxes towards: the twin's HRS, about 1.6 nS
    assert window.plots["Retention"].points() == 7
    assert "drift -" in panel.summary.text()


def test_lab_panels_queue_as_steps_and_run_one_after_another(qtbot, window):
    window.backend.select_twin(array=True, engine="fast")
    queue = window.queue_panel
    window.show_panel("Map")
    window.panel("Map").extra.region.setText("0:2,0:3")
    queue.add_current()
    window.show_panel("Retention")
    window.panel("Retention").extra.cells.setText("0:1,0:2")
    window.panel("Retention").form.set_value("reads", 4)
    queue.add_current()
    assert queue.check() == [0, 1]
    done = []
    window.run_finished.connect(done.append)
    queue.run_queue()
    qtbot.waitUntil(lambda: len(done) == 2 and not window.running, timeout=60000)
    assert [r.protocol for r in done] == ["map", "retention"] and all(r.status == DONE for r in done)
    assert len(done[0].records) == 7 and sum(type(r).__name__ == "RetentionRecord" for r in done[1].records) == 8
    assert stored(done[1].run_id)[0].settings["gui_inputs"]["cells"] == [[0, 0], [0, 1]]
