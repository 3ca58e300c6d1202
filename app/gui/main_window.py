"""The main window: backend at the top, a panel per protocol, live plots, run history.

Thin on purpose: it picks a backend, plans a protocol (nothing reaches an instrument before the
plan is valid), runs it on a worker thread and shows its records. Instruments are kept per backend
choice, so switching backend and back continues with the same (virtual) chip, and the run history
and each backend's conductance map survive every switch.
"""

from __future__ import annotations

import functools
import gc
import logging
import time

import numpy as np
import pyqtgraph.exporters  # noqa: F401 - registers ImageExporter
from PySide6 import QtCore, QtGui, QtWidgets

from rramlab.app.gui.backend_panel import BackendPanel
from rramlab.app.gui.backends import BenchChoice, TwinChoice, status_text
from rramlab.app.gui.errors import explain
from rramlab.app.gui.history import ABORTED, DONE, RUNNING, Run, RunHistory, StoreHistory, open_history
from rramlab.app.gui.history_panel import HistoryPanel
from rramlab.app.gui.metadata_form import MetadataForm
from rramlab.app.gui.panels import ProtocolPanel, ProtocolSpec, protocols
from rramlab.app.gui.plots import ConductanceMap, PlotSet
from rramlab.app.gui.queue_panel import QueuePanel
from rramlab.app.gui.worker import Connector, RunThread, RunWorker

log = logging.getLogger(__name__)

REDRAW_MS = 100
#: the largest share of the time the window spends drawing plots during a run (5 %)
REDRAW_DUTY = 0.05


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_text(done: int, total: int, elapsed_s: float, unit: str) -> str:
    """'12 / 62 pulses · 0:03 elapsed · 0:12 left' (remaining from the mean time per record so far)."""
    text = f"{done} / {total} {unit}s · {_fmt_duration(elapsed_s)} elapsed"
    if done and total > done:
        text += f" · {_fmt_duration(elapsed_s / done * (total - done))} left"
    return text


def guarded(method):
    """A slot that shows any error as a message in the window instead of a terminal traceback."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            log.debug("error in %s", method.__name__, exc_info=True)
            self.show_error(exc)
            return None

    return wrapper


class MainWindow(QtWidgets.QMainWindow):
    """``run_protocol(name)``, ``abort_run()``, ``connect_backend()`` are what the buttons do; tests
    and scripts call them the same way. ``history``: where runs go (default: this session, in
    memory); ``specs``: the protocol panels (default: ``panels.protocols()``)."""

    run_finished = QtCore.Signal(object)  # the Run
    backend_connected = QtCore.Signal(object)  # the instrument

    def __init__(self, history: RunHistory | None = None, specs: list[ProtocolSpec] | None = None,
                 store_error: BaseException | None = None):
        super().__init__()
        from rramlab import __version__

        self.setWindowTitle(f"rramlab {__version__}")
        if history is None:
            history, store_error = open_history()
        self.history = history
        self.instruments: dict = {}            # backend choice -> open instrument
        self.maps: dict = {}                   # backend choice -> conductance array (S)
        self.last_error: tuple[str, str] | None = None
        self.run_thread: RunThread | None = None
        self._connector: Connector | None = None
        self.current_run: Run | None = None
        self._current_spec: ProtocolSpec | None = None
        self._current_plan = None
        self._current_choice = None
        self._started = 0.0
        self._done = 0
        self._count = None
        self._bench_start = None
        self._close_pending = False
        self._stop_reason: str | None = None   # the signal that is closing the window, e.g. "SIGTERM"
        self._then: str | None = None  # a panel to run when the current run has finished
        self._next_redraw = 0.0
        self._message_box: QtWidgets.QMessageBox | None = None

        self.backend = BackendPanel()
        self.backend.changed.connect(self.on_backend_changed)
        self.backend.connect_requested.connect(self.connect_backend)
        self.backend.save_chip_requested.connect(self._save_chip_dialog)

        self.specs = specs if specs is not None else protocols()
        self.panels: dict[str, ProtocolPanel] = {}
        self.protocol_tabs = QtWidgets.QTabWidget()
        for spec in self.specs:
            panel = ProtocolPanel(spec)
            self.panels[spec.name] = panel
            scroll = QtWidgets.QScrollArea()
            scroll.setWidget(panel)
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
            self.protocol_tabs.addTab(scroll, spec.name)

        self.run_button = QtWidgets.QPushButton("Run")
        self.run_button.setObjectName("run_button")
        self.run_button.clicked.connect(lambda: self.run_protocol())
        self.abort_button = QtWidgets.QPushButton("Abort")
        self.abort_button.setObjectName("abort_button")
        self.abort_button.setEnabled(False)
        self.abort_button.clicked.connect(self.abort_run)
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.pause_button.setObjectName("pause_button")
        self.pause_button.setToolTip("pause at the next checkpoint: outputs to 0 V, matrix open, nothing sent "
                                     "until Resume (which routes again and carries on with the next pulse)")
        self.pause_button.setEnabled(False)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress_label = QtWidgets.QLabel("idle")
        self.progress_label.setObjectName("progress_label")
        controls = QtWidgets.QGridLayout()
        controls.addWidget(self.run_button, 0, 0)
        controls.addWidget(self.pause_button, 0, 1)
        controls.addWidget(self.abort_button, 0, 2)
        controls.addWidget(self.progress, 1, 0, 1, 3)
        controls.addWidget(self.progress_label, 2, 0, 1, 3)

        left = QtWidgets.QWidget()
        left_layout = QtWidgets.QVBoxLayout(left)
        self.metadata_form = MetadataForm()  # chip id, sample, operator ...: kept with every run
        left_layout.addWidget(self.metadata_form)
        left_layout.addWidget(self.protocol_tabs, 1)
        left_layout.addLayout(controls)

        self.plots = {spec.name: spec.make_plots() for spec in self.specs if spec.make_plots is not None}
        self.plot_tabs = QtWidgets.QTabWidget()
        for name, plots in self.plots.items():
            self.plot_tabs.addTab(plots, name)
        self.map = ConductanceMap()
        map_page = QtWidgets.QWidget()
        map_layout = QtWidgets.QVBoxLayout(map_page)
        refresh = QtWidgets.QPushButton("Refresh: read the whole array")
        refresh.setObjectName("refresh_map")
        refresh.clicked.connect(lambda: self.run_protocol("Array read"))
        map_layout.addWidget(refresh)
        map_layout.addWidget(self.map, 1)
        self.refresh_map_button = refresh
        self.plot_tabs.addTab(map_page, "Conductance map")
        self.plot_tabs.currentChanged.connect(lambda *_: self._redraw_shown())

        self.queue_panel = QueuePanel(self)  # beside the panels: their settings as steps, run one after another
        splitter = QtWidgets.QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(self.queue_panel)
        splitter.addWidget(self.plot_tabs)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 3)
        splitter.setSizes([450, 280, 670])  # wide enough for the forms' labels and the panels' tabs

        central = QtWidgets.QWidget()
        central_layout = QtWidgets.QVBoxLayout(central)
        central_layout.addWidget(self.backend)
        central_layout.addWidget(splitter, 1)
        self.setCentralWidget(central)

        self.history_panel = HistoryPanel(self.history)
        self.history_panel.show_requested.connect(self.show_run)
        self.history_panel.export_csv_requested.connect(self._export_csv_dialog)
        self.history_panel.export_png_requested.connect(self._export_png_dialog)
        self.history_panel.export_npz_requested.connect(self._export_npz_dialog)
        self.history_panel.export_netcdf_requested.connect(self._export_netcdf_dialog)
        self.history_panel.store_requested.connect(self._choose_store_dialog)
        self.history_panel.fit_twin_requested.connect(self._fit_twin_dialog)
        self.history_panel.compare_twin_requested.connect(self._compare_twin_dialog)
        self.store_warning = QtWidgets.QLabel()
        self.store_warning.setObjectName("store_warning")
        self.store_warning.setWordWrap(True)
        self.store_warning.setStyleSheet("color: #b03a2e")
        self.store_warning.setVisible(False)
        history_page = QtWidgets.QWidget()
        history_layout = QtWidgets.QVBoxLayout(history_page)
        history_layout.setContentsMargins(0, 0, 0, 0)
        history_layout.addWidget(self.store_warning)
        history_layout.addWidget(self.history_panel, 1)
        dock = QtWidgets.QDockWidget(self._history_title())
        self.history_dock = dock
        dock.setObjectName("history_dock")
        dock.setWidget(history_page)
        dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        self.resizeDocks([dock], [130], QtCore.Qt.Orientation.Vertical)

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self._tick)
        self.resize(1400, 880)  # the default size: everything fits without a horizontal scroll bar
        for panel in self.panels.values():
            if panel.extra is not None:
                panel.extra.attach(panel, self)
        self.on_backend_changed()
        from rramlab.app.gui import cell_history

        cell_history.attach(self)  # a click on a map's cell opens its history
        if store_error is not None:
            self.show_store_error(store_error)

    # ----- backend -----
    @property
    def running(self) -> bool:
        return self.run_thread is not None

    def on_backend_changed(self) -> None:
        """Re-bound every form for the selected backend and show its conductance map."""
        choice = self.backend.choice()
        if isinstance(choice, BenchChoice) and not choice.path:
            self._set_backend_status("choose a bench file, then Connect", ok=False)
            self.run_button.setEnabled(False)
            return
        try:
            checker = choice.checker()
        except Exception as exc:  # noqa: BLE001 - a bad file is a message, not a traceback
            title, text = explain(exc)
            self._set_backend_status(f"{title}: {str(exc)}", ok=False)
            self.run_button.setEnabled(False)
            return
        notes = []
        for panel in self.panels.values():
            for name, before, after in panel.set_backend(checker, choice.limits_source()):
                notes.append(f"{panel.spec.name} {name}: {before:g} -> {after:g}")
        if choice not in self.maps:
            self.maps[choice] = np.full(checker.geometry.shape, np.nan)
        self.map.reset_shape(*checker.geometry.shape, values=self.maps[choice])
        self.map.conductance = self.maps[choice]  # the map's cells are this backend's, updated in place
        self.run_button.setEnabled(not (self.running or self.connecting))
        inst = self.instruments.get(choice)
        if inst is not None:
            self._set_backend_status(f"connected: {status_text(inst)}", ok=True)
        elif isinstance(choice, TwinChoice):
            self._set_backend_status(f"{choice.label()}: built when a run starts", ok=True)
        else:
            self._set_backend_status(f"bench file valid ({choice.label()}): press Connect, or Run connects", ok=True)
        if notes:
            self.statusBar().showMessage("moved into the new backend's limits: " + "; ".join(notes), 15000)

    def _set_backend_status(self, text: str, ok: bool) -> None:
        self.backend.status.setText(text)
        self.backend.status.setStyleSheet("" if ok else "color: #b03a2e")

    @property
    def connecting(self) -> bool:
        return self._connector is not None

    def instrument(self):
        """The open instrument of the selected backend, or None (not connected yet)."""
        return self.instruments.get(self.backend.choice())

    @guarded
    def connect_backend(self, then=None):
        """Connect (or build) the selected backend. The twin is built at once and returned; a bench
        file is validated here, then connected and identified on a thread (returns None; the status
        line and ``backend_connected`` tell when it is there). ``then()`` runs once connected."""
        if self.running or self.connecting:
            raise RuntimeError("a run or a connection is in progress: wait for it (or abort the run) first")
        choice = self.backend.choice()
        inst = self.instruments.get(choice)
        if inst is None and isinstance(choice, TwinChoice):
            inst = self.instruments[choice] = choice.open()
        if inst is not None:
            self._set_backend_status(f"connected: {status_text(inst)}", ok=True)
            if then is not None:
                then()
            return inst
        if not choice.path:
            raise FileNotFoundError("no bench file chosen: choose one with … first")
        try:
            choice.checker()  # the whole file, before any VISA resource is opened
        except Exception:
            self._set_backend_status("not connected: the bench file has an error (see the message)", ok=False)
            raise
        for other in [c for c in self.instruments if isinstance(c, BenchChoice)]:
            self._close_instrument(other)  # one bench at a time: its VISA resources are held open
        self._connector = Connector(choice, self)
        self._connector.done.connect(lambda inst, error: self._on_connected(choice, inst, error, then))
        self._set_backend_status(f"connecting to {choice.label()} …", ok=True)
        self._set_busy(True)
        self._connector.start()
        return None

    def _on_connected(self, choice, inst, error, then) -> None:
        self._connector.deleteLater()
        self._connector = None
        self._set_busy(False)
        if inst is not None:
            self.instruments[choice] = inst
            self._set_backend_status(f"connected: {status_text(inst)}", ok=True)
            self.backend_connected.emit(inst)
        else:
            self._set_backend_status(f"not connected: {error}", ok=False)
            self.show_error(error)
        if self._close_pending:
            self.close()
        elif inst is not None and then is not None:
            then()

    def _close_instrument(self, choice) -> None:
        inst = self.instruments.pop(choice, None)
        if inst is not None:
            try:
                inst.close()
            except Exception as exc:  # noqa: BLE001
                self.show_error(exc)

    # ----- runs -----
    def panel(self, name: str) -> ProtocolPanel:
        return self.panels[name]

    @guarded
    def run_protocol(self, name: str | None = None, then: str | None = None, request: tuple | None = None):
        """Plan the named protocol (default: the visible tab) with its form's settings, then run it
        on the worker thread. Returns the Run, or None when nothing started (the reason is shown).
        ``then``: a panel to run once this run has finished (e.g. the inference a transfer was for).
        ``request``: (settings, inputs) to run instead of the form's (a queue step's). The run
        metadata fields are kept with the run."""
        self._then = None
        if self.running or self.connecting:
            raise RuntimeError("a run or a connection is in progress: wait for it (or abort the run) first")
        panel = self.panels[name] if name else self.protocol_tabs.currentWidget().widget()
        spec = panel.spec
        settings, inputs = request if request is not None else (panel.settings(), panel.inputs())
        metadata = self.metadata_form.metadata()  # a bad temperature refused before anything is connected
        choice = self.backend.choice()
        spec.plan(settings, inputs, choice.checker())  # refuse a bad plan before connecting
        instrument = self.instruments.get(choice)
        if instrument is None and isinstance(choice, TwinChoice):
            instrument = self.connect_backend()  # built at once
            if instrument is None:
                return None  # the error is shown
        elif instrument is None:
            # a bench connects on a thread; the run starts from there once it answers
            self.connect_backend(then=lambda: self.run_protocol(spec.name, then=then, request=(settings, inputs)))
            if self.connecting:
                self.statusBar().showMessage(f"{spec.name} starts when {choice.label()} is connected")
            return None
        plan = spec.plan(settings, inputs, instrument)  # and against the instrument itself
        precheck_on_worker = False
        if spec.precheck is not None:
            from rramlab.protocols.network_check import NetworkNotHeld

            if isinstance(choice, TwinChoice):
                try:
                    spec.precheck(instrument, plan)  # e.g. does the array hold the network? one read, no pulse
                except NetworkNotHeld as exc:
                    self.refuse_network(panel, exc)
                    return None
            else:
                # on a bench the check reads hundreds of cells through the matrix (seconds of relay
                # waits): it runs on the worker thread before the first record, so the window stays live
                # and Stop works; a refusal ends the run with no record and the same message box
                precheck_on_worker = True
        total = spec.total(plan)
        extra = {k: list(v) if isinstance(v, tuple) else v for k, v in inputs.items() if not k.startswith("_")}
        stored = spec.settings_for_store(settings, inputs)
        resume = inputs.get("resume_run")
        if resume is not None:
            if not isinstance(self.history, StoreHistory):
                raise RuntimeError("resuming needs the run store: choose a store file in the run history")
            run = self.history.new_run(spec.stored_as, stored, instrument.describe(), total, extra, resume=resume)
        else:
            run = self.history.new_run(spec.stored_as, stored, instrument.describe(), total, extra, metadata=metadata)
        self.current_run, self._current_spec, self._current_plan = run, spec, plan
        self._current_choice = choice
        self._count = spec.progress(plan) if spec.progress is not None else None
        self._done = 0
        plots = self.plots.get(spec.name)
        if plots is not None:
            plots.clear()
            plots.set_context(run.settings, run.extra)
            self.plot_tabs.setCurrentWidget(plots)
        else:
            self.plot_tabs.setCurrentIndex(self.plot_tabs.count() - 1)
        self._on_records(list(run.records))  # a resumed run's records so far
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(0)
        self._started = time.monotonic()
        self._bench_start = self._bench_clock(instrument)
        if precheck_on_worker:
            def start(inst, should_stop):
                spec.precheck(inst, plan)
                return spec.run(inst, plan, should_stop)
        else:
            def start(inst, should_stop):
                return spec.run(inst, plan, should_stop)
        worker = RunWorker(instrument, start, run, self.history.sink(run))
        worker.records.connect(self._on_records)
        self.run_thread = RunThread(worker, self)
        self.run_thread.done.connect(self._on_run_done)
        self._set_running(True)
        self.history_panel.refresh()
        self.statusBar().showMessage(f"{spec.name} running on {choice.label()}")
        # No cyclic garbage collection while the worker emits: a collection on this thread deletes
        # Qt objects (taking Qt's signal-slot mutexes with the interpreter held) while the worker,
        # inside a signal emit, holds such a mutex and waits for the interpreter: a deadlock. What
        # is garbage now is collected first; collection resumes when the run has ended.
        gc.collect()
        gc.disable()
        self.run_thread.start()
        self.timer.start()
        self._then = then
        return run

    def refuse_network(self, panel: ProtocolPanel, exc: Exception) -> None:
        """The array does not hold the panel's network: say so, and offer the transfer (on the twin,
        'Transfer now' writes it by the fast transfer and then runs the panel)."""
        title = f"{panel.spec.name} not started"
        text = str(exc)
        self.last_error = (title, text)
        self.statusBar().showMessage(f"{title}: the array does not hold this network; transfer it first", 30000)
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, title, text,
                                    QtWidgets.QMessageBox.StandardButton.Cancel, self)
        box.setObjectName("network_not_held_box")
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        if isinstance(self.backend.choice(), TwinChoice):
            now = box.addButton("Transfer now", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
            now.setObjectName("transfer_now")
            now.setToolTip("transfer this variant's weights (fast scheme), then run " + panel.spec.name)
            now.clicked.connect(lambda: panel.extra.transfer_now(then=panel.spec.name))
        show = box.addButton("Open the Transfer panel", QtWidgets.QMessageBox.ButtonRole.ActionRole)
        show.setObjectName("open_transfer")
        show.clicked.connect(lambda: self._guarded_call(panel.extra.open_transfer))
        box.open()
        self._message_box = box

    @guarded
    def _guarded_call(self, fn):
        return fn()

    def abort_run(self) -> None:
        """Stop the run before its next pulse; the worker then sets the outputs to 0 V."""
        if self.run_thread is not None:
            self.run_thread.worker.request_stop()
            self.abort_button.setEnabled(False)
            self.statusBar().showMessage("aborting: the run stops before its next pulse, then outputs go to 0 V")

    def toggle_pause(self) -> None:
        """Pause the run at its next checkpoint (outputs at 0 V, matrix open), or resume a paused one."""
        thread = self.run_thread
        if thread is None:
            return
        worker = thread.worker
        if worker.control.state == "running":
            worker.request_pause()
            self.pause_button.setText("Resume")
            self.statusBar().showMessage("pausing: at the next checkpoint outputs go to 0 V and the matrix opens")
        else:
            worker.request_resume()
            self.pause_button.setText("Pause")
            self.statusBar().showMessage("resumed: routing again, next pulse")

    @property
    def paused(self) -> bool:
        """True while the current run waits at a checkpoint with the instrument safe."""
        return self.run_thread is not None and self.run_thread.worker.paused

    def stop_soon_for_signal(self, name: str) -> None:
        """Called from a Python signal handler, so attribute assignments only: the run stops at its
        next checkpoint without waiting for the event loop, and is stored as aborted by ``name``.
        ``stop_for_signal`` follows from the event loop."""
        thread = self.run_thread
        if thread is not None and not thread.worker.stop_requested:
            self._stop_reason = name
            thread.worker.stop_from_signal_handler()

    def stop_for_signal(self, name: str) -> None:
        """A stop signal (SIGINT, SIGTERM, SIGHUP; see ``signal_stop``): close the window as its
        close button does (a run stops at its next checkpoint and goes to the safe state first),
        the run stored as aborted by ``name``. A modal dialog in the way is dismissed."""
        if self.run_thread is None or not self.run_thread.worker.stop_requested:
            self._stop_reason = self._stop_reason or name  # not when Abort was pressed before
        self.statusBar().showMessage(f"{name}: stopping the run safely, then closing …")
        for widget in QtWidgets.QApplication.topLevelWidgets():
            if isinstance(widget, QtWidgets.QDialog) and widget.isVisible():
                widget.reject()  # a file dialog's own event loop would keep the window open
        self.close()

    def _set_busy(self, busy: bool) -> None:
        """While a bench connects: no run, no backend change."""
        self.run_button.setEnabled(not busy)
        self.refresh_map_button.setEnabled(not busy)
        self.backend.setEnabled(not busy)

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.refresh_map_button.setEnabled(not running)
        self.abort_button.setEnabled(running)
        self.pause_button.setEnabled(running)
        self.pause_button.setText("Pause")
        self.backend.setEnabled(not running)
        for panel in self.panels.values():
            panel.setEnabled(not running)

    def _on_records(self, records: list) -> None:
        """A batch of records from the worker: counted, handed to the plots (drawn on the timer)."""
        if not records:
            return
        spec, plan = self._current_spec, self._current_plan
        for record in records:
            self._done = self._count(record) if self._count is not None else self._done + 1
            self.map.set_cells(spec.cell_updates(record, plan))
        plots = self.plots.get(spec.name)
        if plots is not None:
            plots.add_records(records)

    def _redraw_shown(self) -> None:
        """Draw the plot tab in view now (the others when they are shown: ``currentChanged``)."""
        page = self.plot_tabs.currentWidget()
        if page is None:
            return
        shown = self.map if page is self.map.parentWidget() else page
        if isinstance(shown, PlotSet):
            shown.redraw()
            shown.repaint()  # painted here, so its cost is measured with the redraw

    def _tick(self) -> None:
        now = time.monotonic()
        if not self.running or now >= self._next_redraw:
            # plots refresh at a bounded rate: at most every REDRAW_MS, and slower when drawing is
            # slow, so that drawing takes at most REDRAW_DUTY of the time (the run's thread shares
            # the interpreter with this one: a redraw is time the run does not get)
            self._redraw_shown()
            cost = time.monotonic() - now
            self._next_redraw = now + max(REDRAW_MS / 1000, cost / REDRAW_DUTY)
        run = self.current_run
        if self.running and run is not None:
            done = min(self._done, run.total)
            self.progress.setValue(done)
            text = progress_text(done, run.total, time.monotonic() - self._started, self._current_spec.unit)
            bench = self._bench_text()
            control = self.run_thread.worker.control if self.run_thread is not None else None
            if control is not None and control.paused:
                text = (f"paused {_fmt_duration(control.paused_for_s())} (outputs at 0 V, matrix open) · "
                        + text)
            self.progress_label.setText(text + (f" · {bench}" if bench else ""))
            self.history_panel.update_run(run)

    def _on_run_done(self, status: str, error) -> None:
        gc.enable()  # the worker has ended (see run_protocol)
        run, spec = self.current_run, self._current_spec
        self._tick()
        for plots in [*self.plots.values(), self.map]:  # every plot the run fed, drawn once at its end
            plots.redraw()
        elapsed = time.monotonic() - self._started
        self.timer.stop()
        run.status = status
        done = min(self._done, run.total)
        bench = self._bench_text()
        if status == DONE:
            run.message = f"{done} {spec.unit}s in {_fmt_duration(elapsed)}"
        elif status == ABORTED:
            by = f" by {self._stop_reason}" if self._stop_reason else ""
            run.message = f"aborted{by} after {done} of {run.total} {spec.unit}s; outputs at 0 V; records kept"
        else:
            run.message = f"stopped by an error after {done} of {run.total} {spec.unit}s; records kept"
            if error is not None:
                run.message += f": {error}"
        if bench:
            run.message += f" ({bench})"
        lines = self._summarise(run, spec, elapsed)
        try:
            self.history.update(run)
        except Exception as exc:  # noqa: BLE001 - the run is over either way; say the store failed
            self.show_error(exc)
        self.progress_label.setText(run.message + (f"\n{lines[0].strip()}" if lines else ""))
        self.statusBar().showMessage(f"{spec.name}: {run.message}")
        self.run_thread.deleteLater()
        self.run_thread = None
        self._set_running(False)
        self.history_panel.refresh()
        self.history_panel.select(run.run_id)
        for panel in self.panels.values():
            if panel.extra is not None:
                panel.extra.refresh()
        self._show_backend_status()
        if error is not None:
            from rramlab.protocols.network_check import NetworkNotHeld

            if isinstance(error, NetworkNotHeld):  # the bench's check, on the worker: refused before a pulse
                self.refuse_network(self.panels[spec.name], error)
            else:
                self.show_error(error)
        self.run_finished.emit(run)
        then, self._then = self._then, None
        if self._close_pending:
            self.close()
        elif then is not None and status == DONE:
            QtCore.QTimer.singleShot(0, self, lambda: self.run_protocol(then))

    def _summarise(self, run: Run, spec: ProtocolSpec, elapsed: float) -> list[str]:
        """The numbers the run ended with, as the command line prints them: shown in its panel and
        kept with the run in the store. Returns the lines (none if there was nothing to sum up)."""
        from rramlab.app.summaries import summarise_run

        if not run.records:
            return []
        try:
            summary, lines = summarise_run(spec.stored_as, self._current_plan, run.records, elapsed,
                                           run.backend.get("backend", "?"))
        except Exception:  # noqa: BLE001 - a summary that cannot be made must not hide the run's end
            log.exception("no summary for run #%s", run.run_id)
            return []
        if not lines:
            return []
        try:
            self.history.set_summary(run, summary)
        except Exception as exc:  # noqa: BLE001
            self.show_error(exc)
        self.panels[spec.name].show_summary(f"run #{run.run_id}: {run.message}", lines)
        return lines

    def wait_for_run(self, timeout_s: float = 60.0) -> Run | None:
        """Process events until the current run has finished (for scripts and tests)."""
        deadline = time.monotonic() + timeout_s
        while self.running and time.monotonic() < deadline:
            QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if self.running:
            raise TimeoutError(f"the run did not finish within {timeout_s} s")
        return self.history.runs()[-1] if self.history.runs() else None

    def open_cell_history(self, wordline: int, bitline: int, chip: str | None = None):
        """The history of a cell across the runs of the store (``cell_history.CellHistoryDialog``), as
        a click on a map's cell opens it; ``chip``: whose runs (default: the newest run's chip id)."""
        from rramlab.app.gui.cell_history import open_cell_history

        return open_cell_history(self, wordline, bitline, chip)

    # ----- bench clock (virtual bench) -----
    @staticmethod
    def _bench_clock(instrument):
        bench = getattr(instrument, "virtual_bench", None)
        return bench.clock.now if bench is not None else None

    def _bench_text(self) -> str:
        """'a real bench: 3 min 2 s' for the run on a virtual bench, from its bench clock."""
        from rramlab.sim.instruments import format_duration

        run_thread_inst = self.instruments.get(self._current_choice) if self._current_choice is not None else None
        now = self._bench_clock(run_thread_inst)
        if now is None or self._bench_start is None:
            return ""
        return f"a real bench: {format_duration(now - self._bench_start)}"

    def _show_backend_status(self) -> None:
        inst = self.instrument()
        if inst is not None:
            self._set_backend_status(f"connected: {status_text(inst)}", ok=True)

    # ----- panels -----
    def show_panel(self, name: str) -> None:
        """Bring a protocol's panel (and its plots) to the front."""
        panel = self.panels[name]
        for i in range(self.protocol_tabs.count()):
            if self.protocol_tabs.widget(i).widget() is panel:
                self.protocol_tabs.setCurrentIndex(i)
        plots = self.plots.get(name)
        if plots is not None:
            self.plot_tabs.setCurrentWidget(plots)

    def spec_for(self, protocol: str) -> ProtocolSpec | None:
        """The panel of a stored run's protocol (its store name, or its panel name)."""
        for spec in self.specs:
            if protocol in (spec.stored_as, spec.name):
                return spec
        return None

    # ----- history -----
    def _history_title(self) -> str:
        return f"Run history: {self.history.location()}"

    def use_store(self, path) -> None:
        """Keep runs in (and list runs from) the run store at ``path`` from now on."""
        if self.running:
            raise RuntimeError("a run is in progress: choose the store when it has ended")
        history = StoreHistory(path)
        old = self.history
        self.history = history
        self.history_panel.history = history
        self.history_panel.refresh()
        self.history_dock.setWindowTitle(self._history_title())
        for panel in self.panels.values():
            if panel.extra is not None:
                panel.extra.refresh()
        if isinstance(old, StoreHistory):
            old.close()
        self.store_warning.setVisible(False)
        self.statusBar().showMessage(f"run store: {history.location()}")

    @guarded
    def _choose_store_dialog(self):
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Run store", str(self.history.location()), "run stores (*.sqlite);;all files (*)",
            options=QtWidgets.QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self.use_store(path)

    def open_run(self, run_id: int) -> Run:
        """Open a run of the store (this session's or a past one) and show its plots."""
        run = self.history.get(run_id)
        self.show_run(run)
        return run

    def show_run(self, run: Run) -> None:
        """Show a past run's records in its protocol's plots (not while a run is drawing)."""
        if self.running or run.status == RUNNING:
            return
        spec = self.spec_for(run.protocol)
        plots = self.plots.get(spec.name) if spec is not None else None
        if plots is not None:
            plots.clear()
            plots.set_context(run.settings, run.extra)
            plots.show_records(run.records)
            self.plot_tabs.setCurrentWidget(plots)

    def export_run(self, run: Run, path, fmt: str) -> int:
        """Write the run to ``path`` as ``fmt`` (csv, npz or netcdf) with the exporter of ``rramlab
        runs export`` (``app/export.py``, through ``run_export``); returns the records written."""
        from rramlab.app.gui.run_export import export_run

        count = export_run(self.history, run, path, fmt)
        self.statusBar().showMessage(f"run #{run.run_id}: {count} records written to {path}")
        return count

    def export_run_csv(self, run: Run, path) -> int:
        return self.export_run(run, path, "csv")

    def export_run_npz(self, run: Run, path) -> int:
        return self.export_run(run, path, "npz")

    def export_run_netcdf(self, run: Run, path) -> int:
        return self.export_run(run, path, "netcdf")

    def _export_dialog(self, run: Run, fmt: str, title: str, suffix: str, pattern: str) -> None:
        name = f"run{run.run_id}_{run.protocol.lower().replace(' ', '_')}.{suffix}"
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, title, name, pattern)
        if path:
            self.export_run(run, path, fmt)

    def fit_twin(self, run: Run, path, report=None):
        """``rramlab twin fit RUN --out path``: the twin fitted to ``run`` (of the window's run store)."""
        from rramlab.app.cmd_twin import fit_twin

        result = fit_twin([run.run_id], path, report=report, store=getattr(self.history, "path", None), force=True)
        self.statusBar().showMessage(result.summary().splitlines()[0])
        return result

    def compare_twin(self, run: Run, chip_path, report=None):
        """``rramlab twin compare RUN --chip chip_path``: ``run`` replayed on a fitted twin."""
        from rramlab.app.cmd_twin import compare_twin

        result = compare_twin(run.run_id, chip_path, report=report, store=getattr(self.history, "path", None))
        self.statusBar().showMessage(result.summary().splitlines()[0])
        return result

    @guarded
    def _fit_twin_dialog(self, run: Run):
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Fit a twin: chip file", f"chip-run{run.run_id}.npz",
                                                        "rramlab chip (*.npz)")
        if path:
            self.fit_twin(run, path)

    @guarded
    def _compare_twin_dialog(self, run: Run):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Compare with the twin: chip file", "",
                                                        "rramlab chip (*.npz)")
        if path:
            self.compare_twin(run, path)

    @guarded
    def _export_npz_dialog(self, run: Run):
        self._export_dialog(run, "npz", "Export run as NPZ", "npz", "NumPy archive (*.npz)")

    @guarded
    def _export_netcdf_dialog(self, run: Run):
        self._export_dialog(run, "netcdf", "Export run as NetCDF", "nc", "NetCDF (*.nc)")

    def export_plot_png(self, run: Run, path, plot_name: str | None = None) -> None:
        """Draw the run in its plots and write one of them (default: the first) to a PNG file."""
        from pyqtgraph.exporters import ImageExporter

        spec = self.spec_for(run.protocol)
        plots = self.plots.get(spec.name) if spec is not None else None
        if plots is None:
            items = self.map.plot_items()
        else:
            self.show_run(run)
            items = plots.plot_items()
        item = items[plot_name] if plot_name else next(iter(items.values()))
        ImageExporter(item).export(str(path))
        self.statusBar().showMessage(f"plot written to {path}")

    @guarded
    def _export_csv_dialog(self, run: Run):
        self._export_dialog(run, "csv", "Export run as CSV", "csv", "CSV (*.csv)")

    @guarded
    def _export_png_dialog(self, run: Run):
        spec = self.spec_for(run.protocol)
        plots = self.plots.get(spec.name) if spec is not None else None
        names = list((plots or self.map).plot_items())
        name = names[0]
        if len(names) > 1:
            name, ok = QtWidgets.QInputDialog.getItem(self, "Export plot", "plot", names, 0, False)
            if not ok:
                return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export plot as PNG", f"run{run.run_id}.png",
                                                        "PNG (*.png)")
        if path:
            self.export_plot_png(run, path, name)

    def _twin_to_save(self):
        choice = self.backend.choice()
        inst = self.instruments.get(choice)
        if not isinstance(choice, TwinChoice) or inst is None:
            raise FileNotFoundError("no twin chip to save yet: run something on the twin first")
        return inst

    def save_chip(self, path) -> None:
        """Save the selected twin's chip (switch states, variability, random state) to ``path``;
        choose it later as the chip file to continue from there."""
        self._twin_to_save().save_chip(path)
        self.statusBar().showMessage(f"chip saved to {path}")

    @guarded
    def _save_chip_dialog(self):
        self._twin_to_save()
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save chip", "chip.npz", "chip files (*.npz)")
        if path:
            self.save_chip(path)

    # ----- errors -----
    def show_store_error(self, exc: BaseException) -> None:
        """The run store could not be opened: runs are kept in this session's memory only. Said
        above the run history for as long as that lasts, and once as a message."""
        self.store_warning.setText(
            f"Runs are NOT being stored: {exc}. They are kept in this window's memory only and are lost "
            "when it closes. Choose a run store file with Store…, or start again with "
            "rramlab gui --store FILE.")
        self.store_warning.setVisible(True)
        self.history_dock.setWindowTitle(self._history_title() + " (the run store could not be opened)")
        self.show_error(exc)

    def show_error(self, exc: BaseException) -> None:
        """What happened and what to do: a message box (not blocking the window) and the status bar."""
        title, text = explain(exc)
        self.last_error = (title, text)
        self.statusBar().showMessage(f"{title}: {text.splitlines()[0]}", 30000)
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, title, text,
                                    QtWidgets.QMessageBox.StandardButton.Ok, self)
        box.setObjectName("error_box")
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self._message_box = box

    # ----- closing -----
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        """A run in progress is stopped first (between pulses, outputs to 0 V); then every
        instrument is closed (0 V, matrix open, VISA released)."""
        if self.connecting:
            self._close_pending = True
            self.statusBar().showMessage("waiting for the bench connection to finish before closing …")
            event.ignore()
            return
        if self.running:
            self._close_pending = True
            self.abort_run()
            self.statusBar().showMessage("stopping the run safely before closing …")
            event.ignore()
            return
        self.queue_panel.halt()  # no next step after the window has closed; the queue stays in its file
        for choice in list(self.instruments):
            self._close_instrument(choice)
        if isinstance(self.history, StoreHistory):
            self.history.close()
        event.accept()
