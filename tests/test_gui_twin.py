"""The run history's twin actions (pytest-qt, offscreen): "Fit a twin…" and "Compare with the twin…"
on a stored ISPP run, as ``rramlab twin fit`` and ``rramlab twin compare`` do."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from rramlab.app.gui.history import DONE  # noqa: E402
from rramlab.app.gui.main_window import MainWindow  # noqa: E402
from rramlab.sim.virtual_array import VirtualArray  # noqa: E402


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow()
    qtbot.addWidget(w)
    w.use_store(tmp_path / "runs.sqlite")
    w.show()
    yield w
    if w.running:
        w.abort_run()
        qtbot.waitUntil(lambda: not w.running, timeout=20000)


def test_fit_a_twin_and_compare_with_it_from_the_run_history(qtbot, window, tmp_path, monkeypatch):
    window.panel("ISPP").form.set_value("cycles", 1)
    run = window.run_protocol("ISPP")
    qtbot.waitUntil(lambda: not window.running, timeout=60000)
    assert run.status == DONE and len(run.records) == 62
    panel = window.history_panel
    assert panel.fit_button.isEnabled() and panel.compare_button.isEnabled()
    chip_path = tmp_path / "chip.npz"
    # the file dialogs answer with the chip file, as a user picking it would
    from PySide6 import QtWidgets

    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: (str(chip_path), ""))
    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName", lambda *a, **k: (str(chip_path), ""))
    panel.select(run.run_id)
    panel.fit_button.click()
    assert "fitted 1 cells" in window.statusBar().currentMessage()
    meta = VirtualArray.load_chip(chip_path).fit_meta
    assert meta["runs"][0]["run_id"] == run.run_id and meta["cells"][0]["rms_a"] < 0.5e-9
    panel.compare_button.click()
    message = window.statusBar().currentMessage()
    assert f"run {run.run_id} (ispp, 1 cells, 62 records)" in message and "residual" in message
    assert float(message.split("residual ")[1].split(" nA")[0]) < 0.5
