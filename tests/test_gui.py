"""The desktop window, driven as a user drives it (pytest-qt, offscreen Qt): the twin, ISPP,
Abort, refused settings, the pyvisa-sim bench, errors as messages, the run history."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import csv  # noqa: E402
import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PySide6 import QtCore  # noqa: E402

from rramlab.app.gui.history import ABORTED, DONE, FAILED  # noqa: E402
from rramlab.app.gui.main_window import MainWindow  # noqa: E402
from rramlab.drivers.interface import InstrumentError, SafetyError  # noqa: E402

SIM_BENCH = Path(__file__).resolve().parents[1] / "drivers" / "benches" / "sim.toml"

# a short ISPP: 6 set pulses 3.0 -> 3.5 V, 5 reset pulses -1.0 -> -1.4 V
SHORT = {"set_start_v": 3.0, "set_stop_v": 3.5, "set_step_v": 0.1, "reset_start_v": -1.0,
         "reset_stop_v": -1.4, "reset_step_v": 0.1, "cycles": 1}


@pytest.fixture
def window(qtbot):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.running:
        w.abort_run()
        qtbot.waitUntil(lambda: not w.running, timeout=20000)


def set_form(window, protocol, values):
    form = window.panel(protocol).form
    for name, value in values.items():
        form.set_value(name, value)


def run_and_wait(qtbot, window, protocol, timeout=30000):
    run = window.run_protocol(protocol)
    assert run is not None, window.last_error
    qtbot.waitUntil(lambda: not window.running, timeout=timeout)
    return run


class Spy:
    """Logs the backend calls of an instrument in order: 'pulse', 'read', 'reset'."""

    def __init__(self, instrument, monkeypatch, fail_on_read=None):
        self.events = []
        self.reads = 0
        pulse, read, reset = instrument._pulse, instrument._read, instrument._reset_outputs

        def _pulse(*a, **k):
            self.events.append("pulse")
            return pulse(*a, **k)

        def _read(*a, **k):
            self.reads += 1
            if fail_on_read is not None and self.reads == fail_on_read:
                raise InstrumentError("SMU 2 reported error 104 (simulated)")
            self.events.append("read")
            return read(*a, **k)

        def _reset():
            self.events.append("reset")
            return reset()

        monkeypatch.setattr(instrument, "_pulse", _pulse)
        monkeypatch.setattr(instrument, "_read", _read)
        monkeypatch.setattr(instrument, "_reset_outputs", _reset)


def test_ispp_on_the_twin_fills_both_plots_and_the_map(qtbot, window):
    window.backend.select_twin(array=False)
    set_form(window, "ISPP", SHORT)
    run = run_and_wait(qtbot, window, "ISPP")
    assert run.status == DONE and window.last_error is None
    assert len(run.records) == run.total == 11
    plots = window.plots["ISPP"]
    x, y = plots.pulse_curve.getData()
    assert list(x) == list(range(1, 12))
    assert np.allclose(y, [r.read_a for r in run.records])
    sx, sy = plots.set_scatter.getData()
    rx, _ = plots.reset_scatter.getData()
    assert np.allclose(sx, [3.0, 3.1, 3.2, 3.3, 3.4, 3.5]) and np.allclose(rx, [-1.0, -1.1, -1.2, -1.3, -1.4])
    assert max(y) > 5e-9 > min(y)  # the set ramp switched the twin up from HRS
    assert "11 pulses" in window.progress_label.text()
    assert window.map.conductance.shape == (1, 1)
    assert window.map.conductance[0, 0] == pytest.approx(run.records[-1].read_a / 1.0)
    assert run in window.history.runs() and window.history_panel.list.count() == 1


def test_abort_stops_between_pulses_resets_outputs_and_keeps_the_records(qtbot, window, monkeypatch):
    window.backend.select_twin(array=True)
    twin = window.connect_backend()
    spy = Spy(twin, monkeypatch)
    window.panel("ISPP").set_cell(3, 7)
    window.panel("ISPP").form.set_value("cycles", 500)
    run = window.run_protocol("ISPP")
    qtbot.waitUntil(lambda: len(run.records) >= 20, timeout=20000)
    assert window.abort_button.isEnabled() and not window.run_button.isEnabled()
    qtbot.mouseClick(window.abort_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.running, timeout=20000)
    assert run.status == ABORTED and window.last_error is None
    assert 20 <= len(run.records) < run.total
    # every pulse was read and recorded, then the outputs were reset; nothing after
    assert spy.events.count("pulse") == len(run.records)
    assert spy.events[-1] == "reset" and "pulse" not in spy.events[spy.events.index("reset"):]
    assert window.history.get(run.run_id).status == ABORTED
    assert "aborted" in window.history_panel.list.item(0).text()
    assert len(window.plots["ISPP"].pulse_curve.getData()[0]) == len(run.records)
    assert window.run_button.isEnabled() and window.backend.isEnabled()


def test_an_over_limit_voltage_cannot_be_entered(qtbot, window):
    form = window.panel("ISPP").form
    box = form.fields["set_stop_v"]
    assert box.maximum() == pytest.approx(4.3) and form.fields["reset_stop_v"].minimum() == pytest.approx(-2.5)
    box.setValue(4.5)
    assert form.value("set_stop_v") == pytest.approx(4.3)
    box.selectAll()
    qtbot.keyClicks(box, "4.9")
    qtbot.keyClick(box, QtCore.Qt.Key.Key_Return)
    assert form.value("set_stop_v") <= 4.3
    # typed beyond the limit: the row says why instead of silently keeping the old value
    said = form.bound_labels["set_stop_v"].text()
    assert "4.9 V not taken: above the maximum 4.3 V" in said and "set window" in said
    assert form.refusal == said
    form.set_value("set_stop_v", 4.2)
    with pytest.raises(SafetyError, match=r"set_stop_v\) = 4.5 V is beyond the set limit.*allowed 0 to 4.3 V"):
        form.set_value("set_stop_v", 4.5)
    assert form.value("set_stop_v") == pytest.approx(4.2)
    with pytest.raises(SafetyError, match="read limit"):
        form.set_value("read_v", 2.0)
    assert "0 to 4.3 V" in form.bound_labels["set_stop_v"].text()
    assert "set window" in form.bound_labels["set_stop_v"].text()
    assert "0 to 4.3 V" in box.toolTip()
    assert form.settings() == dataclasses.replace(form.settings_class(), set_stop_v=4.2)


def test_verify_is_a_check_box_and_gives_the_ints_the_settings_declare(qtbot, window):
    from PySide6 import QtWidgets

    form = window.panel("ISPVA").form
    box = form.fields["verify"]
    assert isinstance(box, QtWidgets.QCheckBox) and box.isChecked() and form.value("verify") == 1
    box.setChecked(False)
    assert form.value("verify") == 0 and form.settings().verify == 0
    form.set_value("verify", 1)
    assert box.isChecked() and form.bound_labels["verify"].text() == ""


def test_the_bench_narrows_the_forms_and_says_why(qtbot, window):
    form = window.panel("ISPP").form
    window.backend.select_bench(str(SIM_BENCH))
    width = form.fields["pulse_width_s"]
    assert width.minimum() == pytest.approx(500.0) and width.maximum() == pytest.approx(100_000.0)  # µs
    assert form.value("pulse_width_s") == pytest.approx(5e-4)  # the twin's 2 us was moved into range
    assert "sim.toml" in form.bound_labels["pulse_width_s"].text()
    assert "moved into the new backend's limits" in window.statusBar().currentMessage()
    with pytest.raises(SafetyError, match="pulse width"):
        form.set_value("pulse_width_s", 2e-6)


def test_a_read_of_the_array_on_the_pyvisa_sim_bench(qtbot, window):
    window.backend.select_bench(str(SIM_BENCH))
    with qtbot.waitSignal(window.backend_connected, timeout=20000):
        assert window.connect_backend() is None  # a bench connects on a thread
    station = window.instrument()
    assert station is not None and station.backend_name == "probe-station"
    assert "4156C" in window.backend.status.text() and "E5250A" in window.backend.status.text()
    run = run_and_wait(qtbot, window, "Array read")
    assert run.status == DONE and window.last_error is None
    assert len(run.records) == 24 and run.backend["analyzer"]["idn"].startswith("HEWLETT-PACKARD,4156C")
    # the simulated 4156C answers a spot read with 40 nA and a row read (several SMUs at once) with
    # 10, 20, 30 nA on its bitline SMUs: at 1 V every cell of the map holds one of those, none is empty
    g = np.round(np.asarray(window.map.conductance) * 1e9, 6)
    assert g.shape == (24, 24) and set(np.unique(g)) <= {10.0, 20.0, 30.0, 40.0}
    assert " on simulated bench (pyvisa-sim): 24 records" in run.title()


def test_run_on_a_bench_not_yet_connected_connects_then_runs(qtbot, window):
    window.backend.select_bench(str(SIM_BENCH))
    window.panel("ISPP").set_cell(3, 7)
    set_form(window, "ISPP", {**SHORT, "pulse_width_s": 2e-3})
    assert window.run_protocol("ISPP") is None and window.connecting
    qtbot.waitUntil(lambda: len(window.history.runs()) == 1 and not window.running, timeout=30000)
    run = window.history.runs()[0]
    assert run.status == DONE and len(run.records) == 11 and window.last_error is None
    assert all(r.read_a == pytest.approx(4e-8) for r in run.records)  # the simulated 4156C's 40 nA


def test_a_bench_that_does_not_answer_is_a_message(qtbot, window, tmp_path):
    text = SIM_BENCH.read_text().replace('resource = "GPIB0::17::INSTR"', 'resource = "GPIB0::5::INSTR"')
    bench = tmp_path / "absent.toml"
    bench.write_text(text)
    window.backend.select_bench(str(bench))
    assert window.connect_backend() is None
    qtbot.waitUntil(lambda: not window.connecting, timeout=30000)
    assert window.instrument() is None
    title, message = window.last_error
    assert title == "Instrument error" and "GPIB0::5::INSTR" in message and "rramlab bench check" in message
    assert "not connected" in window.backend.status.text() and window.backend.isEnabled()


def test_a_bad_bench_file_is_a_message_not_a_traceback(qtbot, window, tmp_path):
    bad = tmp_path / "bench.toml"
    bad.write_text("[analyzer]\nresource = 17\n")
    window.backend.select_bench(str(bad))
    assert not window.run_button.isEnabled()
    assert "bench" in window.backend.status.text().lower()
    assert window.connect_backend() is None
    title, text = window.last_error
    assert title == "Bad bench file" and "docs/bench.md" in text
    assert window.findChild(QtCore.QObject, "error_box") is not None


def test_an_instrument_error_mid_run_is_shown_and_the_records_are_kept(qtbot, window, monkeypatch):
    window.backend.select_twin(array=False)
    twin = window.connect_backend()
    spy = Spy(twin, monkeypatch, fail_on_read=5)
    set_form(window, "ISPP", SHORT)
    run = run_and_wait(qtbot, window, "ISPP")
    assert run.status == FAILED and len(run.records) == 4
    assert spy.events[-1] == "reset"
    title, text = window.last_error
    assert title == "Instrument error" and "error 104" in text and "0 V" in text


def test_switching_backend_keeps_the_runs_the_map_and_the_chip(qtbot, window):
    window.backend.select_twin(array=True)
    window.panel("ISPP").set_cell(3, 7)
    set_form(window, "ISPP", SHORT)
    first = run_and_wait(qtbot, window, "ISPP")
    chip = window.instruments[window.backend.choice()]
    g = window.map.conductance[3, 7]
    assert np.isfinite(g)
    window.backend.select_bench(str(SIM_BENCH))
    window.backend.select_twin(array=False)
    assert window.map.conductance.shape == (1, 1)
    window.backend.select_twin(array=True)
    assert window.instruments[window.backend.choice()] is chip
    assert window.map.conductance[3, 7] == g
    assert window.history.runs() == [first] and len(first.records) == 11


def test_the_twin_panel_builds_the_chip_it_shows(qtbot, window):
    window.backend.select_twin(array=True, wire_resistance=5.0, seed=7, threshold_sigma_v=0.02,
                               on_resistance_sigma=0.05, engine="fast")
    twin = window.connect_backend()
    assert (twin.geometry.shape, twin.array.wire_resistance, twin.seed, twin.engine) == ((24, 24), 5.0, 7, "fast")
    assert twin.variability.threshold_sigma_v == pytest.approx(0.02)
    assert twin.variability.on_resistance_sigma == pytest.approx(0.05)
    assert window.backend.status.text() == "connected: twin, 24 x 24"


def test_closing_the_window_during_a_run_stops_it_safely_first(qtbot, window, monkeypatch):
    window.backend.select_twin(array=True)
    twin = window.connect_backend()
    spy = Spy(twin, monkeypatch)
    window.panel("ISPP").form.set_value("cycles", 500)
    run = window.run_protocol("ISPP")
    qtbot.waitUntil(lambda: len(run.records) >= 5, timeout=20000)
    window.close()
    assert window.isVisible()  # not yet: the run is stopping
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=20000)
    assert run.status == ABORTED and len(run.records) >= 5
    assert spy.events[-1] == "reset" and not window.instruments


def test_history_exports_csv_npz_and_png(qtbot, window, tmp_path):
    set_form(window, "ISPP", SHORT)
    run = run_and_wait(qtbot, window, "ISPP")
    out = tmp_path / "run.csv"
    window.export_run_csv(run, out)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# rramlab") and '# protocol: "ispp"' in lines and '# status: "finished"' in lines
    rows = list(csv.reader([line for line in lines if not line.startswith("#")]))
    assert rows[0] == ["seq", "type", "cycle", "phase", "step", "pulse_v", "read_a", "wordline", "bitline"]
    assert len(rows) == 12 and float(rows[-1][6]) == run.records[-1].read_a
    window.export_run_npz(run, tmp_path / "run.npz")
    with np.load(tmp_path / "run.npz") as data:
        assert np.array_equal(data["IsppRecord.read_a"], [r.read_a for r in run.records])
        assert list(data["IsppRecord.phase"][:6]) == ["set"] * 6
        assert '"protocol": "ispp"' in str(data["provenance"]) and '"status": "finished"' in str(data["provenance"])
    png = tmp_path / "plot.png"
    window.export_plot_png(run, png, "read current vs pulse voltage")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000


def test_a_past_run_is_shown_again_from_the_history(qtbot, window):
    set_form(window, "ISPP", SHORT)
    first = run_and_wait(qtbot, window, "ISPP")
    window.panel("ISPP").form.set_value("set_stop_v", 3.2)
    second = run_and_wait(qtbot, window, "ISPP")
    assert len(window.plots["ISPP"].pulse_curve.getData()[0]) == len(second.records) == 8
    window.history_panel.select(first.run_id)
    assert len(window.plots["ISPP"].pulse_curve.getData()[0]) == len(first.records) == 11


def test_a_plan_the_ramp_cannot_make_is_refused_before_anything_runs(qtbot, window):
    set_form(window, "ISPP", {**SHORT, "set_stop_v": 3.55})
    assert window.run_protocol("ISPP") is None and not window.running
    title, text = window.last_error
    assert title == "Request refused" and "whole number of 0.1 V steps" in text
    assert window.history.runs() == []


def test_a_protocol_with_its_own_inputs_plugs_in_as_one_spec(qtbot):
    """The extension point later panels (transfer, inference) use: a settings declaration, extra
    inputs, plan and run; the window builds the form, passes the inputs, runs and records it."""
    from PySide6 import QtWidgets

    from rramlab.app.gui.panels import ExtraInputs, ProtocolSpec, protocols
    from rramlab.protocols.settings import setting

    @dataclasses.dataclass(frozen=True)
    class RowReadSettings:
        read_v: float = setting(0.5, "read voltage", "V", soa="read")

    class RowInput(ExtraInputs):
        def __init__(self):
            super().__init__()
            self.row = QtWidgets.QSpinBox(self)

        def values(self):
            return {"wordline": self.row.value()}

        def set_backend(self, checker):
            self.row.setRange(0, checker.geometry.wordlines - 1)

    def plan(settings, inputs, checker):
        checker.check_read_voltage(settings.read_v)
        return (inputs["wordline"], settings.read_v, checker.geometry.bitlines)

    def run(instrument, p, should_stop=None):
        w, v, n = p
        for b in range(n):
            yield (w, b, instrument.read_cell(w, b, v))

    spec = ProtocolSpec(name="Row read", settings_class=RowReadSettings, plan=plan, run=run,
                        total=lambda p: p[2], unit="cell", uses_cell=False, description="one row",
                        cell_updates=lambda r, p: [((r[0], r[1]), r[2] / p[1])], make_inputs=RowInput)
    window = MainWindow(specs=protocols() + [spec])
    qtbot.addWidget(window)
    window.backend.select_twin(array=True)
    panel = window.panel("Row read")
    assert panel.extra.row.maximum() == 23 and panel.form.fields["read_v"].maximum() == pytest.approx(1.5)
    panel.extra.row.setValue(5)
    run = run_and_wait(qtbot, window, "Row read")
    assert run.status == DONE and run.extra == {"wordline": 5} and len(run.records) == 24
    assert np.isfinite(window.map.conductance[5]).all() and np.isnan(window.map.conductance[4]).all()


def test_a_saved_chip_is_continued_from_its_file(qtbot, window, tmp_path):
    window.backend.select_twin(array=True)
    window.panel("ISPP").set_cell(4, 9)
    set_form(window, "ISPP", {**SHORT, "set_stop_v": 4.2, "reset_stop_v": -1.0})  # ends set, one mild reset
    run = run_and_wait(qtbot, window, "ISPP")
    last = run.records[-1].read_a
    assert last > 10e-9
    window.save_chip(tmp_path / "chip.npz")
    window.backend.select_twin(array=True, chip_file=str(tmp_path / "chip.npz"))
    window.panel("Array read").form.set_value("read_v", 1.0)
    read = run_and_wait(qtbot, window, "Array read")
    assert read.backend["backend"] == "twin" and window.last_error is None
    assert read.records[4].read_a[9] == pytest.approx(last, rel=1e-6)
    assert read.records[0].read_a[0] < 2e-9  # every other cell still in HRS


# ----- the window at its default size -----

def test_image_plots_span_exactly_their_cells_legends_are_sorted_and_axes_keep_one_unit(qtbot, window):
    from rramlab.app.gui.plots import InferencePlots, IspvaPlots, PowerPlots, TransferPlots
    from rramlab.protocols.ispva import IspvaResult
    from rramlab.protocols.transfer import CellRead

    transfer = window.plots["Transfer"]
    assert isinstance(transfer, TransferPlots)
    levels = np.zeros((24, 10), int)
    transfer.clear()
    transfer.set_context({"levels": levels.tolist(), "transfer": {"mapping": "blocked"}}, {})
    transfer.add_records([CellRead("start", 0, 23, 23, 0.0, 1.6e-9)])
    transfer.redraw()
    assert transfer.chip.widget.getViewBox().viewRange() == [[-0.5, 23.5], [-0.5, 23.5]]
    assert transfer.target.widget.getViewBox().viewRange() == [[-0.5, 9.5], [-0.5, 23.5]]
    inference = window.plots["Inference"]
    assert isinstance(inference, InferencePlots)
    assert inference.matrix.widget.getViewBox().viewRange() == [[-0.5, 9.5], [-0.5, 9.5]]
    window.backend.select_twin(array=True)
    assert window.map.view.getViewBox().viewRange() == [[-0.5, 23.5], [-0.5, 23.5]]
    # the cumulative plot's legend in value order, whichever level finished first
    ispva = window.plots["ISPVA"]
    assert isinstance(ispva, IspvaPlots)
    ispva.add_records([IspvaResult(0, k, t * 1e-9, True, 3, t * 1e-9, 0.0) for k, t in enumerate((20, 30, 60, 70, 80, 10))])
    ispva.redraw()
    assert ispva.cdf.legend_names() == ["10 nS", "20 nS", "30 nS", "60 nS", "70 nS", "80 nS"]
    assert ispva.cdf.legend not in ispva.cdf.widget.getPlotItem().vb.allChildren()  # beside the data, not on it
    # the power plots in nW from the empty plot on, title and axis alike
    power = window.plots["Power"]
    assert isinstance(power, PowerPlots) and not power.records
    for plot in (power.per_class, power.over_time):
        axis = plot.getAxis("left")
        assert "(nW)" in axis.labelText and axis.labelUnits == "" and not axis.autoSIPrefix
        assert "(nW)" in plot.getPlotItem().titleLabel.text
    assert "(nA)" in inference.steps.getAxis("left").labelText


def test_at_1400_by_880_the_settings_need_no_horizontal_scroll_and_texts_wrap(qtbot, window):
    from PySide6 import QtWidgets

    assert (window.width(), window.height()) == (1400, 880)
    qtbot.wait(50)
    for i in range(window.protocol_tabs.count()):
        window.protocol_tabs.setCurrentIndex(i)
        scroll = window.protocol_tabs.widget(i)
        qtbot.wait(20)
        panel = scroll.widget()
        assert scroll.horizontalScrollBar().maximum() == 0, window.protocol_tabs.tabText(i)
        assert panel.width() <= scroll.viewport().width()
        for label in panel.findChildren(QtWidgets.QLabel):
            if label.isVisible() and len(label.text()) > 40:
                assert label.wordWrap(), label.text()
