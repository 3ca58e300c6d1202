"""Runs a protocol on a QThread so the window never waits on an instrument.

The worker appends every record to the run (so nothing is lost if the window is busy or closing)
and emits ``record`` for the plots. Abort sets a flag the protocol polls between pulses
(``should_stop``); however the run ends (done, aborted, an error) the worker then calls the
instrument's ``reset_outputs()``: 0 V on every source, every crosspoint open. Pause and resume go
through the same checkpoints (``protocols/control.py``, as on the command line): paused, the
instrument is safe and the worker's thread waits at the checkpoint until resume or abort.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterator

from PySide6 import QtCore

from rramlab.app.gui.history import ABORTED, DONE, FAILED, RecordSink, Run
from rramlab.drivers.interface import CrossbarInstrument
from rramlab.protocols.control import RunControl

log = logging.getLogger(__name__)


class RunWorker(QtCore.QObject):
    """``start(instrument, should_stop)`` returns the record iterator (e.g. ``lambda i, s:
    ispp.run(i, plan, s)``). Signals: ``records(list)`` with the records taken since the last one
    (at most every ``batch_s``, and the rest before the end), ``finished(status, error)`` once,
    with status done/aborted/failed and the exception (or None)."""

    records = QtCore.Signal(object)
    finished = QtCore.Signal(str, object)
    #: records are handed to the window in batches at most this often (s): one queued signal per
    #: record costs the run's thread time (a transfer yields about 2,500)
    batch_s = 0.1

    def __init__(self, instrument: CrossbarInstrument, start: Callable[..., Iterator], run: Run,
                 sink: RecordSink | None = None):
        super().__init__()
        self.instrument, self._start, self.run = instrument, start, run
        self.sink = sink if sink is not None else RecordSink(run)
        self._stop = threading.Event()
        self._signalled = False
        #: the run's checkpoints: pause / resume from the window, stop when stop is requested
        self.control = RunControl(instrument, should_stop=lambda: self.stop_requested, poll_s=0.02)

    def request_stop(self) -> None:
        """Ask the run to end before its next pulse (thread-safe)."""
        self._stop.set()

    def stop_from_signal_handler(self) -> None:
        """``request_stop`` for a Python signal handler: one attribute set, no lock (the handler may
        have interrupted the main thread inside ``request_stop`` itself)."""
        self._signalled = True

    @property
    def stop_requested(self) -> bool:
        """True once Abort (or a stop signal) asked the run to end."""
        return self._stop.is_set() or self._signalled

    def request_pause(self) -> None:
        """Pause at the next checkpoint: outputs to 0 V, matrix open, nothing sent until resume (thread-safe)."""
        self.control.pause()

    def request_resume(self) -> None:
        """Carry on with the next pulse (thread-safe)."""
        self.control.resume()

    @property
    def paused(self) -> bool:
        """True while the run waits at a checkpoint with the instrument safe."""
        return self.control.paused

    @QtCore.Slot()
    def work(self) -> None:
        status, error = DONE, None
        batch: list = []
        sent = time.monotonic()
        try:
            for rec in self._start(self.instrument, self.control):
                self.sink.add(rec)  # kept (in the run store) before anything else looks at it
                batch.append(rec)
                if time.monotonic() - sent >= self.batch_s:
                    self.records.emit(batch)
                    batch, sent = [], time.monotonic()
            if self.stop_requested:
                status = ABORTED
        except BaseException as exc:  # noqa: BLE001 - every failure reaches the window as a message
            log.exception("run #%s stopped by an error", self.run.run_id)
            status, error = FAILED, exc
        finally:
            try:
                self.instrument.reset_outputs()
            except BaseException as exc:  # noqa: BLE001
                log.exception("reset_outputs after run #%s failed", self.run.run_id)
                if error is None:
                    status, error = FAILED, exc
            try:
                self.sink.close()
            except BaseException:  # noqa: BLE001
                log.exception("closing the record sink of run #%s failed", self.run.run_id)
        if batch:
            self.records.emit(batch)  # queued before finished: the window sees every record first
        self.finished.emit(status, error)


class RunThread(QtCore.QObject):
    """A RunWorker on its own QThread; ``done(status, error)`` after the thread has ended."""

    done = QtCore.Signal(str, object)

    def __init__(self, worker: RunWorker, parent=None):
        super().__init__(parent)
        self.worker = worker
        self.thread = QtCore.QThread()
        self.thread.setObjectName(f"run-{worker.run.run_id}")
        worker.moveToThread(self.thread)
        self.thread.started.connect(worker.work)
        worker.finished.connect(self._on_finished)

    def start(self) -> None:
        self.thread.start()

    def _on_finished(self, status, error) -> None:
        self.thread.quit()
        self.thread.wait()
        self.done.emit(status, error)

    def is_running(self) -> bool:
        return self.thread.isRunning()


class Connector(QtCore.QObject):
    """Opens a backend choice (a bench: validate, connect, identify) on its own QThread, so a bench
    that takes its VISA timeout to answer does not freeze the window. ``done(instrument, error)``
    after the thread has ended: the instrument or None, and the exception or None."""

    done = QtCore.Signal(object, object)
    _opened = QtCore.Signal(object, object)

    def __init__(self, choice, parent=None):
        super().__init__(parent)
        self.choice = choice
        self.thread = QtCore.QThread()
        self.thread.setObjectName("connect")
        self._worker = _OpenWorker(choice, self._opened)
        self._worker.moveToThread(self.thread)
        self.thread.started.connect(self._worker.work)
        self._opened.connect(self._on_opened)

    def start(self) -> None:
        self.thread.start()

    def _on_opened(self, instrument, error) -> None:
        self.thread.quit()
        self.thread.wait()
        self.done.emit(instrument, error)


class _OpenWorker(QtCore.QObject):
    def __init__(self, choice, signal):
        super().__init__()
        self.choice, self.signal = choice, signal

    @QtCore.Slot()
    def work(self) -> None:
        try:
            instrument = self.choice.open()
        except BaseException as exc:  # noqa: BLE001 - shown in the window
            log.info("connecting to %s failed: %s", self.choice.label(), exc)
            self.signal.emit(None, exc)
            return
        self.signal.emit(instrument, None)
