"""SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the window as safely as the command line stops a run.

A signal handler must not do the work itself: Python runs it in the main thread between two
bytecodes, which in the window means inside whatever slot happens to be running, and an exception
raised there only reaches the exception hook while the worker keeps pulsing. So the handler only
notes the signal; a timer (``POLL_MS``) gives the interpreter a turn while Qt's event loop waits in
C and acts on the note from the event loop: the run is asked to stop at its next checkpoint (the
worker then runs the instrument's safe-state sequence on its own thread and the run is stored as
aborted, naming the signal), the window closes once the run has ended and every instrument is
closed, and ``run_gui`` returns 128 + the first signal's number (130, 143, 129).

Every later signal is only logged: the safe-state sequence runs in the worker thread, which no
Python signal handler can interrupt, and the window does not close before it is done. A signal
that is ignored when the window opens (SIGHUP under ``nohup``, SIGINT of a background job) stays
ignored.
"""

from __future__ import annotations

import collections
import logging
import signal

from PySide6 import QtCore, QtWidgets

from rramlab.drivers.interface import STOP_SIGNALS

log = logging.getLogger("rramlab.app.gui")

#: how often the event loop lets Python look for a noted signal, ms
POLL_MS = 50


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class SignalStop(QtCore.QObject):
    """Installs the stop handlers for ``window`` (a ``MainWindow``); ``exit_code`` is 128 + the
    first stop signal's number once one arrived, else None."""

    def __init__(self, window, signals=STOP_SIGNALS, parent=None):
        super().__init__(parent)
        self.window = window
        self.signals = tuple(signals)
        self.received: list[int] = []          # every stop signal acted on, in order
        self._noted: collections.deque[int] = collections.deque()  # filled by the handler only
        self._previous: dict[int, object] = {}
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

    # ----- handlers -----
    def install(self) -> None:
        """Replace the handlers of the stop signals that are not ignored; start the poll."""
        for sig in self.signals:
            old = signal.getsignal(sig)
            if old is signal.SIG_IGN:
                # nohup (SIGHUP) or a background job (SIGINT): the user asked for this signal not to stop us
                log.info("%s is ignored (as when the window was started): it will not stop the window",
                         signal_name(sig))
                continue
            self._previous[sig] = old
            signal.signal(sig, self._note)
        self.timer.start()

    def uninstall(self) -> None:
        """Put the previous handlers back (only when no stop signal arrived: once one did, the
        process is on its way out and a later signal must not change its exit code)."""
        self.timer.stop()
        if self.received:
            return
        for sig, old in self._previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._previous.clear()

    @property
    def installed(self) -> tuple[int, ...]:
        return tuple(self._previous)

    def _note(self, signum, frame) -> None:
        self._noted.append(signum)  # nothing else here: see the module docstring

    # ----- acting on a signal, from the event loop -----
    def request(self, signum: int) -> None:
        """Act on a stop signal as if it had just arrived (also for a KeyboardInterrupt that
        reached the exception hook)."""
        self._noted.append(signum)
        QtCore.QTimer.singleShot(0, self.poll)

    def poll(self) -> None:
        while self._noted:
            self._act(self._noted.popleft())
        if self.received and not self.window.isVisible() and not self.window.running:
            # the window is closed and its run has ended: leave the event loop even if some other
            # top-level window (a dialog without a parent) would keep it running
            QtWidgets.QApplication.exit(self.exit_code)

    def _act(self, signum: int) -> None:
        name = signal_name(signum)
        self.received.append(signum)
        if len(self.received) > 1:
            if self.window.running:
                log.warning("%s while the run is stopping: ignored, the safe-state sequence runs to its end "
                            "and the window closes after it", name)
            else:
                log.warning("%s while the window is closing: ignored", name)
            return
        if self.window.running:
            log.warning("%s: stopping the run at its next checkpoint; the outputs go to 0 V and the matrix "
                        "opens, then the window closes", name)
        else:
            log.warning("%s: closing the window", name)
        self.window.stop_for_signal(name)

    @property
    def exit_code(self) -> int | None:
        return 128 + self.received[0] if self.received else None
