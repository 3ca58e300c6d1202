"""The desktop GUI (PySide6 + pyqtgraph): ``rramlab gui``.

Modules: ``main_window`` (the window), ``backend_panel`` / ``backends`` (twin, virtual bench or
bench file), ``panels`` (a generic protocol panel; one ``ProtocolSpec`` per protocol), ``specs``
(the ISPVA, transfer, inference and power panels), ``settings_form`` (forms from settings
declarations), ``worker`` (runs on a QThread), ``plots`` (pyqtgraph), ``history`` /
``history_panel`` (the run store's runs, CSV/NPZ/PNG export). Only this package imports Qt.
"""

from __future__ import annotations

import logging
import signal
import sys


def run_gui(quit_after: float | None = None, argv: list[str] | None = None, store=None) -> int:
    """Open the main window and run the Qt event loop; returns the exit code (0 when closed).

    ``quit_after``: close the window after this many seconds (a run in progress is stopped safely
    first): for smoke tests and scripts. Ctrl-C in the terminal closes the window the same way.
    """
    from PySide6 import QtCore, QtWidgets

    from rramlab.app.gui.main_window import MainWindow

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(argv or sys.argv[:1])
    app.setApplicationName("rramlab")
    history = None
    if store is not None:
        from rramlab.app.gui.history import open_history

        history, error = open_history(store)
        if error is not None:
            logging.getLogger("rramlab.app.gui").error("run store %s: %s; runs are kept in memory only", store, error)
    window = MainWindow(history=history)

    previous_hook = sys.excepthook

    def excepthook(exc_type, exc, tb):
        # a slot's unexpected error: logged with its traceback, shown to the user as a message
        logging.getLogger("rramlab.app.gui").error("unexpected error", exc_info=(exc_type, exc, tb))
        if issubclass(exc_type, Exception):
            window.show_error(exc)

    sys.excepthook = excepthook
    # closed from inside the event loop: a close before app.exec() would leave the loop running
    previous_sigint = signal.signal(signal.SIGINT, lambda *_: QtCore.QTimer.singleShot(0, window.close))
    # Python handles signals only between bytecodes: a timer gives the interpreter a turn.
    wake = QtCore.QTimer()
    wake.start(200)
    wake.timeout.connect(lambda: None)
    if quit_after is not None:
        QtCore.QTimer.singleShot(int(quit_after * 1000), window.close)
    window.show()
    QtCore.QTimer.singleShot(0, lambda: logging.getLogger("rramlab.app.gui").info(
        "window open (close it, or Ctrl-C here, to quit)"))
    try:
        code = app.exec()
    finally:
        sys.excepthook = previous_hook
        signal.signal(signal.SIGINT, previous_sigint)
        wake.stop()
    return int(code)
