"""The desktop GUI (PySide6 + pyqtgraph): ``rramlab gui``.

Modules: ``main_window`` (the window), ``backend_panel`` / ``backends`` (twin, virtual bench or
bench file), ``panels`` (a generic protocol panel; one ``ProtocolSpec`` per protocol), ``specs``
(the ISPVA, transfer, inference and power panels), ``settings_form`` (forms from settings
declarations), ``worker`` (runs on a QThread), ``plots`` (pyqtgraph), ``history`` /
``history_panel`` (the run store's runs; ``run_export``: CSV/NPZ/NetCDF by ``app/export.py``, and
PNG), ``metadata_form`` (chip id, sample, operator ... kept with every run), ``queue_panel`` (the
queue of steps; ``queue_recipe``: as a recipe), ``window_state`` (what the window remembers, in the
data folder). Only this package imports Qt.
"""

from __future__ import annotations

import logging
import signal
import sys


def run_gui(quit_after: float | None = None, argv: list[str] | None = None, store=None, *, bench=None,
            visa_log=None, start: str | None = None, cell: tuple[int, int] | None = None,
            settings: list[str] | None = None, metadata: dict[str, str] | None = None) -> int:
    """Open the main window and run the Qt event loop; returns the exit code: 0 when closed,
    128 + the signal number when SIGINT (130), SIGTERM (143) or SIGHUP (129) closed it.

    ``quit_after``: close the window after this many seconds (a run in progress is stopped safely
    first): for smoke tests and scripts. ``store``: the run store file (one that cannot be opened is
    said in the window; runs are then kept in memory). ``bench``: a bench file to select at start (a
    virtual bench file selects the virtual bench). ``visa_log``: append every VISA message of the
    session to this file. ``start``: run this panel's protocol as soon as the window is open, with
    ``cell`` (wordline, bitline) and ``settings`` ("NAME=VALUE", SI units) set in its form first.
    ``metadata``: run metadata fields to fill in (``chip_id``, ``sample``, ``operator``,
    ``temperature``, ``notes``, ``tags``, as text), over those remembered from the last window.
    Ctrl-C, SIGTERM or SIGHUP stop a run at its next checkpoint, make the outputs safe, store the
    run as aborted and close the window (``signal_stop``).
    """
    from PySide6 import QtCore, QtWidgets

    from rramlab.app.gui.main_window import MainWindow
    from rramlab.app.gui.signal_stop import SignalStop

    console = logging.StreamHandler()
    console.setLevel(logging.INFO)  # not the VISA traffic (DEBUG) that --visa-log turns on
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[console])
    log = logging.getLogger("rramlab.app.gui")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(argv or sys.argv[:1])
    app.setApplicationName("rramlab")
    history, store_error = None, None
    if store is not None:
        from rramlab.app.gui.history import open_history

        history, store_error = open_history(store)
        if store_error is not None:
            log.error("run store %s: %s; runs are kept in memory only", store, store_error)
    window = MainWindow(history=history, store_error=store_error)
    if metadata:
        window.metadata_form.set_fields(**metadata)
    stop = SignalStop(window, parent=window)
    if bench is not None:
        _select_bench(window, bench)
    started = _prepare_start(window, start, cell, settings) if start is not None else None

    previous_hook = sys.excepthook

    def excepthook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            # a Ctrl-C that reached a slot before (or past) the stop handlers: stop as they do
            stop.request(getattr(exc, "signum", signal.SIGINT))
            return
        # a slot's unexpected error: logged with its traceback, shown to the user as a message
        log.error("unexpected error", exc_info=(exc_type, exc, tb))
        if issubclass(exc_type, Exception):
            window.show_error(exc)

    visa_handler = None
    if visa_log is not None:
        from rramlab.drivers.visa_io import visa_log_handler

        visa_handler = visa_log_handler(str(visa_log))
    sys.excepthook = excepthook
    stop.install()
    if quit_after is not None:
        QtCore.QTimer.singleShot(int(quit_after * 1000), window.close)
    window.show()
    QtCore.QTimer.singleShot(0, lambda: log.info("window open (close it, or Ctrl-C here, to quit)"))
    if started is not None:
        QtCore.QTimer.singleShot(0, lambda: _start_run(window, started))
    try:
        code = app.exec()
    finally:
        sys.excepthook = previous_hook
        stop.uninstall()
        if visa_handler is not None:
            from rramlab.drivers.visa_io import remove_visa_log_handler

            remove_visa_log_handler(visa_handler)
    if stop.exit_code is not None:
        return stop.exit_code
    return int(code)


def _select_bench(window, path) -> None:
    """Select a bench file as the backend: the virtual bench for a virtual bench file, else the
    probe station (a bad file is shown in the backend's status line, as when chosen by hand)."""
    from rramlab.app import virtual_bench
    from rramlab.drivers.probe_station import load_bench

    try:
        virtual = virtual_bench.is_virtual(load_bench(path))
    except Exception:  # noqa: BLE001 - the window says what is wrong with the file
        virtual = False
    if virtual:
        window.backend.select_virtual_bench(str(path))
    else:
        window.backend.select_bench(str(path))


def _prepare_start(window, name: str, cell, settings) -> str:
    """Check ``--start``, ``--cell`` and ``--set`` against the window's panels and fill the panel's
    form; returns the panel's name. Raises ValueError naming the bad value and the choices."""
    names = {n.casefold(): n for n in window.panels}
    panel_name = names.get(name.casefold())
    if panel_name is None:
        raise ValueError(f"--start {name!r} is not a panel of the window: choose one of "
                         + ", ".join(repr(n) for n in window.panels))
    panel = window.panels[panel_name]
    window.show_panel(panel_name)
    if cell is not None:
        if not panel.spec.uses_cell:
            raise ValueError(f"--cell: the {panel_name} panel takes no cell")
        g = window.backend.choice().checker().geometry
        g.check_cell(*cell)
        panel.set_cell(*cell)
    for item in settings or ():
        key, sep, text = item.partition("=")
        key = key.strip()
        form = next((f for f in panel.forms if key in f.declared), None)
        if not sep or form is None:
            known = [n for f in panel.forms for n in f.declared]
            raise ValueError(f"--set {item!r}: give NAME=VALUE with NAME one of the {panel_name} settings: "
                             + ", ".join(known))
        kind = form.declared[key].type
        try:
            value = kind(text.strip()) if kind in (int, float) else text.strip()
        except ValueError:
            what = "a whole number" if kind is int else "a number, in SI units"
            raise ValueError(f"--set {item!r}: {key} takes {what}") from None
        form.set_value(key, value)
    return panel_name


def _start_run(window, name: str) -> None:
    if window.run_protocol(name) is None and not window.connecting:
        logging.getLogger("rramlab.app.gui").error("--start %s: the run did not start (%s)", name,
                                                   window.last_error[1].splitlines()[0] if window.last_error
                                                   else "see the window")
