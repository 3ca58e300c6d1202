"""The write-verify and network panels in the real window (pytest-qt, offscreen): a transfer aborted
on the virtual bench and resumed, inference filling the confusion matrix, ISPVA filling the
cumulative plot, power, and the run history read back from the run store."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PySide6 import QtCore  # noqa: E402

from rramlab.app.gui.history import ABORTED, DONE  # noqa: E402
from rramlab.app.gui.main_window import MainWindow  # noqa: E402
from rramlab.app.gui.plots import latest_by_cell  # noqa: E402
from rramlab.protocols.store import RunStore, default_store_path  # noqa: E402
from rramlab.protocols.weights import save_weights  # noqa: E402


@pytest.fixture(scope="module")
def network_file(tmp_path_factory):
    """A small network trained once for the module: 1,000 training images, 3 epochs (~0.2 s)."""
    from rramlab.app.gui.specs import mnist_data
    from rramlab.protocols.network import NetworkSettings, build_variants, save_network

    data = mnist_data()
    net = build_variants(data.train.subset(range(0, len(data.train), 4)), data.test,
                         NetworkSettings(epochs=3, finetune_epochs=1))
    return save_network(tmp_path_factory.mktemp("net") / "net.npz", net)


@pytest.fixture
def window(qtbot):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.running:
        w.abort_run()
        qtbot.waitUntil(lambda: not w.running, timeout=20000)


def run_and_wait(qtbot, window, protocol, timeout=30000):
    run = window.run_protocol(protocol)
    assert run is not None, window.last_error
    qtbot.waitUntil(lambda: not window.running and not window.connecting, timeout=timeout)
    return run


def stored(run_id):
    with RunStore(default_store_path()) as store:
        return store.run(run_id), store.records(run_id)


def start_transfer(qtbot, window, weights, pulses=10):
    """Start a transfer of ``weights`` from the panel and abort it after ``pulses`` verify pulses."""
    panel = window.panel("Transfer")
    panel.extra.weights.setText(str(weights))
    run = window.run_protocol("Transfer")
    if run is None:  # a bench connects first, then the transfer starts
        assert window.connecting, window.last_error
        qtbot.waitUntil(lambda: window.running and window.current_run is not None, timeout=20000)
        run = window.current_run
    qtbot.waitUntil(lambda: sum(type(r).__name__ == "IspvaPulse" for r in run.records) >= pulses, timeout=30000)
    qtbot.mouseClick(window.abort_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.running, timeout=20000)
    return run


def test_a_transfer_aborted_on_the_virtual_bench_leaves_it_safe_with_its_records_in_the_store(qtbot, window,
                                                                                              tmp_path):
    levels = np.random.default_rng(3).integers(-8, 9, (6, 10))
    window.backend.select_virtual_bench(seed=1)
    run = start_transfer(qtbot, window, save_weights(tmp_path / "w.npz", levels))
    bench = window.instrument().virtual_bench
    assert bench.is_safe()  # every output of the virtual 4156C at 0 V, every E5250A crosspoint open
    assert bench.clock.counts["pulse"] > 0  # it did pulse before
    assert run.status == ABORTED and window.last_error is None and "a real bench" in run.message
    assert "virtual bench, estimated bench time" in window.backend.status.text()
    assert " on virtual bench: " in run.title()
    info, records = stored(run.run_id)
    assert info.protocol == "transfer" and info.status == "aborted"
    assert len(records) == len(run.records) > 120 and records[0].type == "CellRead"
    assert info.settings["levels"] == levels.tolist() and info.settings["transfer"]["scheme"] == "half-bias"
    # the map on screen holds the latest read of every cell, cell by cell
    plots = window.plots["Transfer"]
    latest = latest_by_cell(run.records)
    assert len(latest) == 120
    assert all(plots.g[cell] == g for cell, g in latest.items())
    assert np.isnan(plots.g[6:, :]).all() and np.isnan(plots.g[:, 20:]).all()


def test_a_stopped_transfer_continues_from_the_store(qtbot, window, tmp_path):
    levels = np.random.default_rng(5).integers(-8, 9, (6, 10))
    window.backend.select_twin(array=True, engine="fast", seed=2)
    run = start_transfer(qtbot, window, save_weights(tmp_path / "w.npz", levels))
    assert run.status == ABORTED
    panel = window.panel("Transfer")
    combo = panel.extra.resume
    index = combo.findData(run.run_id)
    assert index > 0  # the stopped run is offered; its weights and settings come back
    panel.form.set_value("scheme", "fast")
    combo.setCurrentIndex(index)
    assert panel.form.value("scheme") == "half-bias" and not panel.extra.weights.isEnabled()
    resumed = run_and_wait(qtbot, window, "Transfer", timeout=60000)
    assert resumed.run_id == run.run_id and resumed.status == DONE, window.last_error
    info, records = stored(run.run_id)
    assert info.status == "finished" and len(records) == len(resumed.records) > len(run.records) > 120
    assert [r.seq for r in records] == list(range(len(records)))
    achieved = window.plots["Transfer"].achieved_levels()
    assert np.abs(achieved - levels).max() < 0.5  # every pair within half a level of its weight
    assert combo.findData(run.run_id) < 0  # finished: no longer offered
    # it ends with the numbers rramlab transfer prints, computed by the same function, kept in the store
    from rramlab.app.summaries import transfer_lines
    from rramlab.protocols import transfer

    rep = transfer.summarise(window._current_plan, resumed.records, 0.0)
    text = panel.summary.text()
    assert not panel.summary.isHidden() and f"RMSE {rep['rmse_s'] * 1e9:.2f} nS" in text
    assert transfer_lines(rep, "twin")[1] in text and "out of reach" in text and "per programmed cell" in text
    assert info.summary["rmse_s"] == pytest.approx(rep["rmse_s"]) and info.summary["programmed_cells"] == int(np.count_nonzero(levels))
    assert info.summary["within_2ns"] == pytest.approx(rep["within_2ns"]) and "pulses_per_cell" in info.summary
    assert f"RMSE {rep['rmse_s'] * 1e9:.2f} nS" in window.progress_label.text()


def hold_network(qtbot, window, panel, network_file):
    """Write the network of ``panel`` (Inference or Power) into the twin by its transfer (fast)."""
    inputs = window.panel(panel).extra
    inputs.network.setText(str(network_file))
    run = inputs.transfer_now()
    assert run is not None and run.protocol == "transfer", window.last_error
    qtbot.waitUntil(lambda: not window.running, timeout=60000)
    assert run.status == DONE, run.message
    return run


def test_inference_on_a_fresh_twin_is_refused_and_transfer_now_writes_the_network_then_infers(qtbot, window,
                                                                                             network_file):
    from PySide6 import QtWidgets

    from rramlab.protocols.reproduce import DEFAULT_TRANSFER

    window.backend.select_twin(array=True, engine="fast")
    inputs = window.panel("Inference").extra
    inputs.network.setText(str(network_file))
    inputs.images.setValue(10)
    before = len(window.history.runs())
    assert window.run_protocol("Inference") is None  # nothing started: the fresh twin is all HRS
    assert not window.running and len(window.history.runs()) == before
    title, text = window.last_error
    assert title == "Inference not started" and "does not hold" in text and "0 of" in text
    box = window.findChild(QtWidgets.QMessageBox, "network_not_held_box")
    assert box is not None and box.isVisible()
    now = box.findChild(QtWidgets.QPushButton, "transfer_now")
    done = []
    window.run_finished.connect(done.append)
    qtbot.mouseClick(now, QtCore.Qt.MouseButton.LeftButton)
    assert window.running and window.current_run.protocol == "transfer"
    # the transfer panel opened from a network takes the command line's scheme for it
    assert window.panel("Transfer").form.value("scheme") == DEFAULT_TRANSFER.scheme == "fast"
    qtbot.waitUntil(lambda: len(done) == 2, timeout=90000)
    transfer_run, infer_run = done
    assert transfer_run.status == DONE and infer_run.protocol == "infer" and infer_run.status == DONE
    assert len(infer_run.records) == 10
    right = sum(r.prediction == r.label for r in infer_run.records)
    assert right >= 5  # the network's own accuracy, not every image predicted 0
    text = window.panel("Inference").summary.text()
    assert f"array accuracy {right / 10:.1%}".replace("%", " %") in text and "confusion matrix" in text
    assert stored(infer_run.run_id)[0].summary["correct"] == right
    info, _ = stored(transfer_run.run_id)
    assert len(info.settings["target_fingerprint"]) == 12


def test_on_a_bench_the_network_check_reads_on_the_worker_thread_and_refuses_with_the_same_box(qtbot, window,
                                                                                                network_file,
                                                                                                monkeypatch):
    """On a bench the held-network check reads 480 cells through the matrix (seconds of relay waits): it
    must not freeze the window, so it runs on the run's thread; a fresh virtual bench is refused before any
    pulse, with no record, the bench left safe and the same message box as on the twin."""
    import threading

    from PySide6 import QtWidgets

    from rramlab.protocols import network_check

    threads = []
    real = network_check.require_held

    def spy(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(network_check, "require_held", spy)
    window.backend.select_virtual_bench()
    inputs = window.panel("Inference").extra
    inputs.network.setText(str(network_file))
    inputs.images.setValue(5)
    run = window.run_protocol("Inference")
    if run is None:  # the bench connects on a thread first, then the run starts
        qtbot.waitUntil(lambda: window.current_run is not None and window.current_run.protocol == "infer",
                        timeout=20000)
        run = window.current_run
    qtbot.waitUntil(lambda: not window.running and not window.connecting, timeout=30000)
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert run.records == [] and run.status != DONE
    bench = window.instrument().virtual_bench
    assert bench.is_safe() and bench.clock.counts["pulse"] == 0
    title, text = window.last_error
    assert title == "Inference not started" and "does not hold" in text
    box = window.findChild(QtWidgets.QMessageBox, "network_not_held_box")
    assert box is not None and box.isVisible()
    assert box.findChild(QtWidgets.QPushButton, "open_transfer") is not None


def test_power_after_another_networks_transfer_is_refused(qtbot, window, network_file, tmp_path):
    window.backend.select_twin(array=True, engine="fast")
    levels = np.random.default_rng(5).integers(-8, 9, (24, 10))
    window.panel("Transfer").extra.set_weights(save_weights(tmp_path / "random.npz", levels))
    window.panel("Transfer").form.set_value("scheme", "fast")
    run_and_wait(qtbot, window, "Transfer", timeout=60000)
    inputs = window.panel("Power").extra
    inputs.network.setText(str(network_file))
    assert window.run_protocol("Power") is None
    assert window.last_error[0] == "Power not started" and "does not hold" in window.last_error[1]


def test_inference_fills_the_confusion_matrix_and_shows_one_image(qtbot, window, network_file):
    from rramlab.app.gui.specs import test_image

    window.backend.select_twin(array=True, engine="fast")
    hold_network(qtbot, window, "Inference", network_file)
    inputs = window.panel("Inference").extra
    inputs.images.setValue(12)
    run = run_and_wait(qtbot, window, "Inference")
    assert run.status == DONE and len(run.records) == 12 and window.last_error is None
    plots = window.plots["Inference"]
    m = plots.confusion_matrix()
    assert m.sum() == 12 and m.sum(axis=1).tolist() == [2, 2] + [1] * 8  # balanced: 0, 1, ... 9, 0, 1
    for r in run.records:
        assert m[r.label, r.prediction] >= 1
    shown = plots.matrix.image.image
    assert np.array_equal(shown, m)
    # one test image: its digit, its per-step currents and scores
    inputs.single.setChecked(True)
    inputs.index.setValue(7)
    one = run_and_wait(qtbot, window, "Inference")
    r = one.records[0]
    assert len(one.records) == 1 and r.image == 7 and plots.confusion_matrix().sum() == 1
    x, y = plots.step_curves[r.prediction].getData()
    assert list(x) == list(range(1, 26)) and np.allclose(y, r.class_currents[:, r.prediction])
    assert np.allclose(plots.bars.opts["height"], r.class_currents.sum(axis=0))
    assert np.allclose(plots.digit.image.image, test_image(7).reshape(28, 28))
    assert f"test image 7: label {r.label}, prediction {r.prediction}" in plots.caption.text()


def test_ispva_levels_fill_the_cumulative_plot(qtbot, window):
    window.backend.select_twin(array=False)
    inputs = window.panel("ISPVA").extra
    inputs.mode.setCurrentIndex(1)
    inputs.devices.setValue(2)
    run = run_and_wait(qtbot, window, "ISPVA")
    results = [r for r in run.records if hasattr(r, "converged")]
    assert run.status == DONE and len(results) == 16 == run.total
    cdf = window.plots["ISPVA"].cdf
    assert sorted(round(k * 1e9) for k in cdf.curves) == [10, 20, 30, 40, 50, 60, 70, 80]
    x, y = cdf.curves[round(30e-9, 12)].getData()
    assert np.allclose(x, sorted(r.conductance_s for r in results if abs(r.target_s - 30e-9) < 1e-15))
    assert list(y) == [0.5, 1.0]
    assert window.progress_label.text().startswith("16 cells in")
    from rramlab.app.summaries import ispva_summary

    expected = ispva_summary(results, 0.0)
    text = window.panel("ISPVA").summary.text()
    assert f"RMSE {expected['rmse_s'] * 1e9:.2f} nS, MAE {expected['mae_s'] * 1e9:.2f} nS" in text
    assert f"{expected['within_2ns'] * 100:.1f} % within +-2 nS" in text and "pulses per cell" in text
    assert window.progress_label.text().splitlines()[1].startswith("all: ")  # the headline under the count
    info, _ = stored(run.run_id)
    assert info.summary["devices"] == 16 and info.summary["mean_pulses"] == pytest.approx(expected["mean_pulses"])
    assert len(info.summary["levels"]) == 8 and info.summary["out_of_reach"] == expected["out_of_reach"]


def test_power_per_class_is_the_mean_of_its_images(qtbot, window, network_file):
    window.backend.select_twin(array=True, engine="fast")
    hold_network(qtbot, window, "Power", network_file)
    inputs = window.panel("Power").extra
    inputs.images.setValue(20)
    run = run_and_wait(qtbot, window, "Power")
    assert run.status == DONE and len(run.records) == 20
    plots = window.plots["Power"]
    for c in range(10):
        mine = [r.average_w for r in run.records if r.label == c]
        assert plots.bars.opts["height"][c] == pytest.approx(np.mean(mine))
    x, y = plots.mean_curve.getData()
    assert len(x) == 25 and np.allclose(y, np.mean([r.array_power_w for r in run.records], axis=0))
    assert all(r.average_w > 0 for r in run.records)
    mean = np.mean([r.average_w for r in run.records])
    assert f"average P_avg,array: {mean * 1e9:.1f} nW" in window.panel("Power").summary.text()
    info, _ = stored(run.run_id)
    assert info.summary["average_w"] == pytest.approx(mean) and "array accuracy" in window.panel("Power").summary.text()


def test_the_history_lists_runs_of_the_store_and_reopens_them(qtbot, tmp_path):
    """A run the command line recorded (another process, earlier) is listed and opened again."""
    from rramlab.protocols import ispva
    from rramlab.protocols.store import record_run
    from rramlab.sim.virtual_array import VirtualArray

    device = VirtualArray.lone_device(seed=4, engine="fast")
    p = ispva.plan(ispva.IspvaSettings(), [(0, 0)] * 4, [20e-9, 20e-9, 60e-9, 60e-9], device)
    with record_run(default_store_path(), "ispva", {"devices_per_level": 2}, device) as rec:
        records = list(ispva.run(device, p))
        for r in records:
            rec.add(r)
    window = MainWindow()
    qtbot.addWidget(window)
    listed = window.history_panel.list
    assert listed.count() == 1 and f"#{rec.run_id} ispva" in listed.item(0).text()
    assert "finished" in listed.item(0).text() and f"{len(records)} records" in listed.item(0).text()
    listed.setCurrentRow(0)  # picking it shows its plots again
    cdf = window.plots["ISPVA"].cdf
    assert sorted(round(k * 1e9) for k in cdf.curves) == [20, 60]
    finals = sorted(r.conductance_s for r in records if hasattr(r, "converged") and r.target_s == 60e-9)
    assert np.allclose(cdf.curves[round(60e-9, 12)].getData()[0], finals)
    run = window.history.get(rec.run_id)
    assert [type(r).__name__ for r in run.records] == [type(r).__name__ for r in records]
    assert run.records == records  # rebuilt as the records they were
    window.export_run_csv(run, tmp_path / "past.csv")
    rows = [line for line in (tmp_path / "past.csv").read_text().splitlines() if not line.startswith("#")]
    assert len(rows) == len(records) + 1 and rows[0].startswith("seq,type,wordline,bitline,target_s")
    assert rows[-1].startswith(f"{len(records) - 1},IspvaResult,0,0,6e-08")
    window.export_run_npz(run, tmp_path / "past.npz")
    with np.load(tmp_path / "past.npz") as data:
        assert np.allclose(data["IspvaResult.conductance_s"], [r.conductance_s for r in records
                                                                if hasattr(r, "converged")])
    png = tmp_path / "cdf.png"
    window.export_plot_png(run, png, "tuned conductance per level")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # another store file: the list follows it
    window.use_store(tmp_path / "other.sqlite")
    assert listed.count() == 0 and "other.sqlite" in window.history_dock.windowTitle()


def test_a_bad_weights_or_network_file_is_a_message_and_nothing_runs(qtbot, window, tmp_path):
    window.backend.select_twin(array=True, engine="fast")
    bad = tmp_path / "levels.npz"
    np.savez(bad, weights=np.zeros((2, 2)))
    window.panel("Transfer").extra.weights.setText(str(bad))
    assert window.run_protocol("Transfer") is None and not window.running
    title, text = window.last_error
    assert title == "Request refused" and "has no 'levels' array" in text and "Nothing was sent" in text
    window.panel("Inference").extra.network.setText(str(tmp_path / "missing.npz"))
    assert window.run_protocol("Inference") is None
    title, text = window.last_error
    assert title == "File not found" and "rramlab train --out" in text
    assert window.history.runs() == [] and window.instrument() is None  # refused before the twin was built
