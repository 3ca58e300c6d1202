"""Pause, resume and stop a running protocol at its checkpoints, once for every protocol.

Every protocol's ``run(instrument, plan, should_stop)`` polls ``should_stop()`` between pulses and
reads (its checkpoints). A RunControl is such a ``should_stop``: the command line, the GUI's worker
and ``run_protocol`` pass one, and nothing in the protocols knows about pausing.

* ``pause()``: at the next checkpoint the instrument is made safe (``reset_outputs``: every source at
  0 V, outputs off, every crosspoint open and, on a bench, the matrix read back), then the run waits
  there, sending nothing to the instrument, until ``resume()`` or ``stop()``. ``on_paused(seconds)``
  is called when the pause starts and about every ``report_every_s`` of it (the elapsed time shown).
* ``resume()``: the checkpoint returns and the protocol carries on with its next pulse; that pulse
  routes the matrix again (the station closes the crosspoints of every operation it needs).
* ``stop()``: the checkpoint returns True and the run ends at this safe point (paused or not).

``pause``, ``resume`` and ``stop`` only set attributes: they may be called from another thread (the
GUI) or from a signal handler (the command line's Ctrl-Z), where a lock could deadlock.

Example (a pause of 30 s after the third pulse; the records equal those of an unpaused run)::

    control = RunControl(instrument)
    for i, record in enumerate(ispp.run(instrument, plan, control)):
        if i == 2:
            control.pause()
            threading.Timer(30.0, control.resume).start()
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["RunControl", "RUNNING", "PAUSING", "PAUSED"]

#: a RunControl's state: running
RUNNING = "running"
#: a RunControl's state: a pause was asked and the run has not yet reached a checkpoint
PAUSING = "pausing"
#: a RunControl's state: waiting at a checkpoint with the instrument safe (0 V, matrix open)
PAUSED = "paused"


class RunControl:
    """The ``should_stop`` of a run that can also be paused and resumed (see the module).

    ``instrument``: what is made safe when a pause starts (set later with ``bind``). ``should_stop``:
    another stop condition polled as well (e.g. a GUI worker's flag). ``on_paused(seconds)``: called
    with the seconds paused so far when the pause starts and then about every ``report_every_s``;
    ``on_resumed(seconds)`` once with the pause's length. ``poll_s``: how often a paused run looks for
    resume or stop (s). Times are wall-clock seconds (``time.monotonic``)."""

    def __init__(self, instrument=None, should_stop: Callable[[], bool] | None = None,
                 on_paused: Callable[[float], object] | None = None,
                 on_resumed: Callable[[float], object] | None = None,
                 poll_s: float = 0.05, report_every_s: float = 1.0):
        self.instrument = instrument
        self.other_stop = should_stop
        self.on_paused, self.on_resumed = on_paused, on_resumed
        self.poll_s, self.report_every_s = float(poll_s), float(report_every_s)
        self._pause_asked = False
        self._stop_asked = False
        self.state = RUNNING
        #: seconds spent paused in this run, every pause together
        self.paused_s = 0.0
        #: pauses that reached a checkpoint (each made the instrument safe)
        self.pauses = 0
        self._paused_at: float | None = None

    def bind(self, instrument) -> "RunControl":
        """Make ``instrument`` the one made safe on a pause; returns self."""
        self.instrument = instrument
        return self

    # ----- asked from outside (another thread, a signal handler) -----
    def pause(self) -> None:
        """Pause at the next checkpoint (outputs at 0 V, matrix open, nothing sent until resume)."""
        if not self._stop_asked:
            self._pause_asked = True
            if self.state == RUNNING:
                self.state = PAUSING

    def resume(self) -> None:
        """Carry on with the next pulse (a pause not yet reached is cancelled)."""
        self._pause_asked = False
        if self.state == PAUSING:
            self.state = RUNNING

    def toggle(self) -> None:
        """Pause a running run, resume a paused (or pausing) one: what Ctrl-Z does."""
        if self._pause_asked:
            self.resume()
        else:
            self.pause()

    def stop(self) -> None:
        """End the run at its next checkpoint, or now if it is paused (it is already safe)."""
        self._stop_asked = True
        self._pause_asked = False

    @property
    def paused(self) -> bool:
        """True while the run waits at a checkpoint with the instrument safe."""
        return self.state == PAUSED

    @property
    def stop_requested(self) -> bool:
        """True once ``stop()`` was called or the other ``should_stop`` says stop."""
        return self._stop_asked or (self.other_stop is not None and bool(self.other_stop()))

    def paused_for_s(self) -> float:
        """Seconds the current pause has lasted (0 when not paused)."""
        return 0.0 if self._paused_at is None else time.monotonic() - self._paused_at

    # ----- the checkpoint (the protocol's thread) -----
    def __call__(self) -> bool:
        """The checkpoint: True to stop; while paused, waits here with the instrument safe."""
        if self.stop_requested:
            return True
        if self._pause_asked:
            self._wait_paused()
        return self.stop_requested

    def _wait_paused(self) -> None:
        reset = getattr(self.instrument, "reset_outputs", None)
        if callable(reset):
            reset()  # the safe state first: a failure here ends the run as any safe-state failure does
        self.state = PAUSED
        self.pauses += 1
        self._paused_at = start = time.monotonic()
        next_report = start
        try:
            while self._pause_asked and not self.stop_requested:
                now = time.monotonic()
                if self.on_paused is not None and now >= next_report:
                    self.on_paused(now - start)
                    next_report = now + self.report_every_s
                time.sleep(self.poll_s)
        finally:
            length = time.monotonic() - start
            self.paused_s += length
            self._paused_at = None
            self._pause_asked = False
            self.state = RUNNING
        if self.on_resumed is not None and not self.stop_requested:
            self.on_resumed(length)
