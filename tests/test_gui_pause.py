"""The window's Pause / Resume button (pytest-qt, offscreen): paused, the instrument is safe and
nothing reaches it; Resume carries on with the next pulse; Abort ends a paused run."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import time  # noqa: E402

import pytest  # noqa: E402
from PySide6 import QtCore  # noqa: E402

from rramlab.app.gui.history import ABORTED  # noqa: E402
from rramlab.app.gui.main_window import MainWindow  # noqa: E402

from test_gui import Spy  # noqa: E402


@pytest.fixture
def window(qtbot):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.running:
        w.abort_run()
        qtbot.waitUntil(lambda: not w.running, timeout=20000)


def test_pause_makes_the_twin_safe_sends_nothing_resume_continues_abort_ends(qtbot, window, monkeypatch):
    window.backend.select_twin(array=True)
    twin = window.connect_backend()
    spy = Spy(twin, monkeypatch)
    window.panel("ISPP").set_cell(3, 7)
    window.panel("ISPP").form.set_value("cycles", 500)
    assert not window.pause_button.isEnabled()
    run = window.run_protocol("ISPP")
    qtbot.waitUntil(lambda: len(run.records) >= 10, timeout=20000)
    qtbot.mouseClick(window.pause_button, QtCore.Qt.MouseButton.LeftButton)
    assert window.pause_button.text() == "Resume"
    qtbot.waitUntil(lambda: window.paused, timeout=20000)
    assert twin.outputs_safe and spy.events[-1] == "reset"
    events, taken = len(spy.events), len(run.records)
    qtbot.wait(600)
    assert len(spy.events) == events  # nothing reached the instrument while paused
    assert len(run.records) == taken and window.running
    assert window.progress_label.text().startswith("paused")
    qtbot.mouseClick(window.pause_button, QtCore.Qt.MouseButton.LeftButton)
    assert window.pause_button.text() == "Pause"
    qtbot.waitUntil(lambda: len(run.records) >= taken + 5, timeout=20000)
    assert spy.events[events] == "pulse"  # resume: the next pulse
    # pause again, then abort while paused: the run ends at once, already safe
    window.toggle_pause()
    qtbot.waitUntil(lambda: window.paused, timeout=20000)
    start = time.monotonic()
    qtbot.mouseClick(window.abort_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.running, timeout=20000)
    assert run.status == ABORTED and window.last_error is None
    assert spy.events[-1] == "reset" and twin.outputs_safe
    assert spy.events.count("pulse") == len(run.records) < run.total
    assert not window.pause_button.isEnabled() and window.pause_button.text() == "Pause"
    assert time.monotonic() - start < 10
