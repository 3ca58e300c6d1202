"""The queue beside the protocol panels: steps that run one after another through the window's worker.

*Add to queue* takes the visible panel's settings, cell and inputs and the selected backend as a
step. Steps can be moved up and down and removed; *Run queue* checks every step that has not
finished first (each one planned against its backend's limits and geometry: a bad step is named and
nothing is sent), then runs them in order with ``MainWindow.run_protocol(panel, request=...)``, the
path the Run button takes, so each step is one run in the run store with the window's run metadata.

*Pause* pauses the step running at its next checkpoint (between pulses and reads: the worker's
``RunControl``, ``protocols/control.py``): outputs at 0 V, every crosspoint open, nothing sent until
*Resume*, which carries on with the next pulse (the records equal those of an unpaused run). Between
steps (a bench still connecting, say) the next step waits instead. *Abort* stops the step running
before its next pulse (paused or not), as the window's Abort does, and ends the queue; the aborted and
later steps stay queued, and *Run queue* runs them again.

The queue is kept in ``gui_queue.toml`` in the data folder (``window_state``) after every change,
so it survives closing the window; *Save…* / *Load…* write and read the same format elsewhere.
*Save as recipe…* writes the steps as a recipe (``protocols/recipe.py``: ``rramlab run FILE``) and
*Load recipe…* adds a recipe's steps to the queue (``queue_recipe``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from rramlab.app.gui import window_state
from rramlab.app.gui.backends import BenchChoice, TwinChoice, VirtualBenchChoice
from rramlab.app.gui.history import ABORTED, DONE, FAILED, RUNNING

log = logging.getLogger(__name__)

PENDING = "pending"
IDLE, QUEUE_RUNNING, PAUSED = "idle", "running", "paused"
_CHOICES = {c.__name__: c for c in (TwinChoice, VirtualBenchChoice, BenchChoice)}


def _plain(value):
    """Tuples as lists, numpy scalars as Python numbers: what a TOML file holds."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def choice_dict(choice) -> dict:
    """A backend choice as a table: ``choice`` (its class) and its fields (None left out)."""
    return {"choice": type(choice).__name__, **{k: v for k, v in dataclasses.asdict(choice).items() if v is not None}}


def choice_from_dict(data: dict):
    data = dict(data)
    name = data.pop("choice", None)
    cls = _CHOICES.get(name)
    if cls is None:
        raise ValueError(f"backend choice {name!r} is unknown: use one of {', '.join(_CHOICES)}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"backend {name}: {', '.join(unknown)} not known: use {', '.join(sorted(known))}")
    return cls(**data)


def same_choice(a, b) -> bool:
    """Equal backend choices, floats equal to 1e-9 (a spin box's round trip of 0.05 is not bit-exact)."""
    if type(a) is not type(b):
        return False
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-15):
                return False
        elif x != y:
            return False
    return True


@dataclass
class QueueStep:
    """One step: a panel's settings (by settings class), its inputs (cell, files ...; plain values)
    and its backend choice; ``status`` pending, running, finished, aborted or failed, with its run."""

    panel: str
    backend: dict
    settings: dict
    inputs: dict = field(default_factory=dict)
    protocol: str = ""
    status: str = PENDING
    run_id: int | None = None
    message: str = ""

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict, number: int = 0) -> "QueueStep":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or not all(k in data for k in ("panel", "backend", "settings")):
            raise ValueError(f"step {number}: needs panel, backend and settings"
                             + (f"; {', '.join(unknown)} not known" if unknown else ""))
        step = cls(**data)
        if step.status == RUNNING:  # the window closed (or crashed) during it
            step.status, step.message = ABORTED, "the window closed during this step"
        return step

    def choice(self):
        return choice_from_dict(self.backend)

    def title(self, number: int) -> str:
        """'2. ISPP 4,9 · twin · finished #12': short enough for the queue's column (the backend in full
        is ``backend_label``)."""
        cell, region = self.inputs.get("cell"), self.inputs.get("region")
        where = f" {cell[0]},{cell[1]}" if cell else (f" {region}" if region else "")
        kind = getattr(_CHOICES.get(self.backend.get("choice")), "kind", "?")
        run = f" #{self.run_id}" if self.run_id is not None else ""
        return f"{number}. {self.panel}{where} · {kind} · {self.status}{run}"

    def backend_label(self) -> str:
        try:
            return self.choice().label()
        except (ValueError, TypeError):
            return f"an unknown backend {self.backend}"


def step_from_panel(panel, choice) -> QueueStep:
    """The panel's settings, cell and inputs (as plain values) and ``choice`` as a step."""
    panel.settings()  # every form's values make settings (raises, naming the value, otherwise)
    inputs = panel.inputs()  # raises, naming the input, for a missing file
    if inputs.get("resume_run") is not None:
        raise ValueError("continuing a stopped transfer is not queued: press Run for it, or queue the transfer "
                         "with its weights file")
    # the forms' fields only (retention's program is its own form, not a field of the first)
    return QueueStep(panel=panel.spec.name, backend=choice_dict(choice),
                     settings={form.settings_class.__name__: _plain(form.values()) for form in panel.forms},
                     inputs={k: _plain(v) for k, v in inputs.items() if not k.startswith("_") and v is not None},
                     protocol=panel.spec.stored_as)


def step_request(step: QueueStep, panel) -> tuple:
    """(settings, inputs) of a step for ``run_protocol``: the settings classes of its panel built
    from the step's values (a class the step leaves out takes its defaults), the weights of a
    transfer read from its file, a map's region parsed (the inputs a panel derives, ``_`` names)."""
    built = []
    for form in panel.forms:
        cls = form.settings_class
        values = step.settings.get(cls.__name__, {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a setting of {step.panel} ({cls.__name__}): use "
                             + ", ".join(sorted(known)))
        built.append(cls(**{k: _tuples(v) for k, v in values.items()}))
    extra = set(step.settings) - {form.settings_class.__name__ for form in panel.forms}
    if extra:
        raise ValueError(f"{', '.join(sorted(extra))}: not settings of the {step.panel} panel")
    inputs = {k: _tuples(v) for k, v in step.inputs.items()}
    if inputs.get("region"):  # the map panel's region, parsed as its input does
        from rramlab.protocols.array_map import parse_region

        inputs["_region"] = parse_region(inputs["region"])
    if inputs.get("weights_file"):
        from rramlab.protocols.weights import load_weights

        inputs.setdefault("resume_run", None)
        inputs["_levels"] = load_weights(inputs["weights_file"])
    return (built[0] if len(built) == 1 else tuple(built)), inputs


def select_choice(backend_panel, choice):
    """Select ``choice`` in the backend panel as a user would; returns the panel's choice (equal
    to ``choice`` up to its spin boxes' rounding). RuntimeError if the panel cannot show it."""
    if same_choice(backend_panel.choice(), choice):
        return backend_panel.choice()
    if isinstance(choice, TwinChoice):
        backend_panel.select_twin(array=choice.array, wire_resistance=2.0 if choice.wire_resistance is None
                                  else choice.wire_resistance, seed=choice.seed, engine=choice.engine,
                                  chip_file=choice.chip_file or "", threshold_sigma_v=choice.threshold_sigma_v,
                                  on_resistance_sigma=choice.on_resistance_sigma)
    elif isinstance(choice, VirtualBenchChoice):
        backend_panel.select_virtual_bench(choice.path, seed=choice.seed, engine=choice.engine,
                                           wire_resistance=2.0 if choice.wire_resistance is None
                                           else choice.wire_resistance, chip_file=choice.chip_file or "")
    else:
        backend_panel.select_bench(choice.path)
    now = backend_panel.choice()
    if not same_choice(now, choice):
        raise RuntimeError(f"the backend panel cannot select {choice.label()} (it shows {now.label()}): "
                           "choose the backend by hand and add the step again")
    return now


class QueuePanel(QtWidgets.QGroupBox):
    """The queue of a MainWindow. ``add_current()``, ``move(i, delta)``, ``remove(i)``,
    ``run_queue()``, ``pause()``, ``resume()``, ``abort()`` are what its buttons do; ``state`` is
    idle, running or paused. ``path``: the file it is kept in (default: the data folder's)."""

    changed = QtCore.Signal()

    def __init__(self, window, path: Path | None = None, parent=None):
        super().__init__("Queue", parent)
        self.setObjectName("queue")
        self.window_ = window
        self.path = Path(path) if path is not None else window_state.state_dir() / window_state.QUEUE_FILE
        self.steps: list[QueueStep] = []
        self.state = IDLE
        self.pause_requested = False           # pause between steps (no step running to pause)
        self.current: QueueStep | None = None
        self.control = None                    # the RunControl of the step paused inside, if any
        self._pause_timer = QtCore.QTimer(self)
        self._pause_timer.setInterval(500)
        self._pause_timer.timeout.connect(self._show_pause)

        layout = QtWidgets.QVBoxLayout(self)
        self.list = QtWidgets.QListWidget()
        self.list.setObjectName("queue_list")
        self.list.setDragDropMode(QtWidgets.QAbstractItemView.DragDropMode.InternalMove)
        self.list.model().rowsMoved.connect(self._on_dragged)
        self.list.currentRowChanged.connect(lambda *_: self._enable())
        layout.addWidget(self.list, 1)
        self.status = QtWidgets.QLabel("empty: Add to queue takes the visible panel's settings and backend")
        self.status.setObjectName("queue_status")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        grid = QtWidgets.QGridLayout()
        self.buttons: dict[str, QtWidgets.QPushButton] = {}
        specs = [("add", "Add to queue", self.add_current, "the visible panel's settings, cell and inputs, and the "
                  "selected backend, as the last step"),
                 ("up", "Up", lambda: self.move(self.list.currentRow(), -1), "run the selected step earlier"),
                 ("down", "Down", lambda: self.move(self.list.currentRow(), 1), "run the selected step later"),
                 ("remove", "Remove", lambda: self.remove(self.list.currentRow()), "take the selected step out"),
                 ("run", "Run queue", self.run_queue, "check every unfinished step, then run them in order"),
                 ("pause", "Pause", self.pause, "stop between steps: the step running finishes, the next waits"),
                 ("resume", "Resume", self.resume, "go on with the next step"),
                 ("abort", "Abort", self.abort, "stop the step running before its next pulse (outputs to 0 V) and "
                  "end the queue; the steps not finished stay queued"),
                 ("save", "Save…", self._save_dialog, "write the queue to a file (the format the window keeps)"),
                 ("load", "Load…", self._load_dialog, "replace the queue by one saved before"),
                 ("save_recipe", "Save as recipe…", self._save_recipe_dialog, "the steps as a recipe file for "
                  "rramlab run FILE (without their backends: rramlab run takes --bench)"),
                 ("load_recipe", "Load recipe…", self._load_recipe_dialog, "add a recipe's steps (loops "
                  "expanded) to the queue, on the selected backend")]
        for i, (key, text, slot, tip) in enumerate(specs):
            button = QtWidgets.QPushButton(text)
            button.setObjectName(f"queue_{key}")
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, slot=slot: self._guarded(slot))
            self.buttons[key] = button
            grid.addWidget(button, i // 2, i % 2)
        layout.addLayout(grid)
        window.run_finished.connect(self.on_run_finished)
        try:
            self.steps = [QueueStep.from_dict(d, i + 1) for i, d in enumerate(window_state.load_queue(self.path))]
        except (ValueError, TypeError) as exc:
            log.warning("queue not restored: %s", exc)
            self.status.setText(f"the saved queue could not be read ({exc}); it starts empty")
        self._refresh()

    # ----- editing -----
    def add_current(self) -> QueueStep:
        """Add the visible panel's settings and the selected backend as the last step."""
        w = self.window_
        panel = w.protocol_tabs.currentWidget().widget()
        step = step_from_panel(panel, w.backend.choice())
        self.steps.append(step)
        self._changed(f"step {len(self.steps)} added: {panel.spec.name}")
        return step

    def add_step(self, step: QueueStep) -> None:
        self.steps.append(step)
        self._changed(f"step {len(self.steps)} added: {step.panel}")

    def move(self, index: int, delta: int) -> None:
        """Move step ``index`` (0-based) by ``delta`` places (the running step stays where it is)."""
        to = index + delta
        if not (0 <= index < len(self.steps)) or not (0 <= to < len(self.steps)):
            return
        self.steps[index], self.steps[to] = self.steps[to], self.steps[index]
        self._changed(f"step {index + 1} moved to {to + 1}")
        self.list.setCurrentRow(to)

    def remove(self, index: int) -> None:
        if not (0 <= index < len(self.steps)):
            return
        if self.steps[index] is self.current:
            raise RuntimeError("this step is running: abort it first, or wait for it")
        step = self.steps.pop(index)
        self._changed(f"step {index + 1} removed: {step.panel}")

    def _on_dragged(self, *_):
        order = [self.list.item(i).data(QtCore.Qt.ItemDataRole.UserRole) for i in range(self.list.count())]
        self.steps = [self.steps[i] for i in order]
        for i in range(self.list.count()):
            self.list.item(i).setData(QtCore.Qt.ItemDataRole.UserRole, i)
        # the list is rebuilt after the drop has finished, not inside the list's own move
        QtCore.QTimer.singleShot(0, self, lambda: self._changed("steps reordered"))

    # ----- running -----
    def check(self) -> list[int]:
        """Plan every unfinished step against its backend (nothing is connected or sent); returns
        their indices. ValueError naming the step and the problem for the first bad one."""
        w = self.window_
        w.metadata_form.metadata()  # the run metadata too, before the first step
        todo = [i for i, s in enumerate(self.steps) if s.status != DONE]
        for i in todo:
            step = self.steps[i]
            try:
                panel = w.panels.get(step.panel)
                if panel is None:
                    raise ValueError(f"no panel {step.panel!r} in this window: use one of {', '.join(w.panels)}")
                settings, inputs = step_request(step, panel)
                panel.spec.plan(settings, inputs, step.choice().checker())
            except Exception as exc:  # noqa: BLE001 - every problem of a step is said with its number
                raise ValueError(f"queue step {i + 1} ({step.panel}): {exc}") from exc
        return todo

    def run_queue(self) -> None:
        """Check every unfinished step, then run them in order (finished steps are skipped)."""
        w = self.window_
        if self.state != IDLE:
            raise RuntimeError("the queue is running or paused: Resume or Abort it first")
        if w.running or w.connecting:
            raise RuntimeError("a run or a connection is in progress: wait for it (or abort it) first")
        todo = self.check()
        if not todo:
            raise ValueError("nothing to run: every step has finished; add steps (or load a queue) first")
        for i in todo:
            self.steps[i].status, self.steps[i].run_id, self.steps[i].message = PENDING, None, ""
        self.state, self.pause_requested = QUEUE_RUNNING, False
        self._changed(f"running {len(todo)} steps")
        self._next()

    def _next(self) -> None:
        w = self.window_
        if self.state != QUEUE_RUNNING or w._close_pending:
            return
        if self.pause_requested:
            self.state, self.pause_requested = PAUSED, False
            done = sum(s.status == DONE for s in self.steps)
            self._changed(f"paused between steps ({done} of {len(self.steps)} finished): Resume goes on")
            return
        step = next((s for s in self.steps if s.status == PENDING), None)
        if step is None:
            self.state = IDLE
            self._changed(f"queue done: {sum(s.status == DONE for s in self.steps)} steps finished")
            return
        number = self.steps.index(step) + 1
        try:
            select_choice(w.backend, step.choice())
            panel = w.panels[step.panel]
            w.show_panel(step.panel)
            request = step_request(step, panel)
        except Exception as exc:  # noqa: BLE001
            self._fail(step, number, str(exc))
            w.show_error(exc)
            return
        self.current, step.status = step, RUNNING
        run = w.run_protocol(step.panel, request=request)
        if run is None and not w.connecting:
            reason = w.last_error[1].splitlines()[0] if w.last_error else "it did not start"
            self.current = None
            self._fail(step, number, reason)
            return
        if run is not None:
            step.run_id = run.run_id
        self._changed(f"step {number} of {len(self.steps)} running: {step.panel}")

    def _fail(self, step: QueueStep, number: int, reason: str) -> None:
        step.status, step.message = FAILED, reason
        self.state = IDLE
        self._changed(f"queue stopped: step {number} did not start: {reason}")

    def on_run_finished(self, run) -> None:
        """A run of the window ended: the queue's step if it was one; then the next step."""
        step = self.current
        if step is None:
            return  # a run started with the Run button
        self.current = None
        paused_in_step, self.control = self.control is not None, None
        self._pause_timer.stop()
        step.status, step.run_id, step.message = run.status, run.run_id, run.message
        number = self.steps.index(step) + 1 if step in self.steps else 0
        if run.status != DONE or self.state == IDLE or self.window_._close_pending:
            self.state, self.pause_requested = IDLE, False
            self._changed(f"queue stopped: step {number} {run.status}; the steps not finished stay queued")
            return
        if self.state == PAUSED and paused_in_step:  # it ended before reaching a checkpoint: wait here
            self._changed(f"step {number} finished (run #{run.run_id}); paused between steps: Resume goes on")
            return
        self._changed(f"step {number} finished (run #{run.run_id})")
        QtCore.QTimer.singleShot(0, self, self._next)

    def pause(self) -> None:
        """Pause the step running at its next checkpoint (outputs at 0 V, matrix open); with no step
        running (a bench connecting), the next step waits."""
        if self.state != QUEUE_RUNNING:
            raise RuntimeError("the queue is not running: nothing to pause")
        thread = self.window_.run_thread
        if self.current is not None and thread is not None:
            from rramlab.protocols.control import RUNNING as CONTROL_RUNNING

            self.control = thread.worker.control
            if self.control.state == CONTROL_RUNNING:  # not already paused with the window's Pause
                self.window_.toggle_pause()  # the window's Pause button and line follow
            self.state = PAUSED
            self._pause_timer.start()
            self._changed(f"pausing step {self.steps.index(self.current) + 1} at its next checkpoint …")
            return
        self.pause_requested = True
        self._changed("pausing: the next step waits for Resume")

    def resume(self) -> None:
        """Carry on: the paused step with its next pulse, or the next step (or take back a Pause
        not yet reached)."""
        if self.state == QUEUE_RUNNING and self.pause_requested:
            self.pause_requested = False
            self._changed("pause taken back: the queue goes on")
            return
        if self.state != PAUSED:
            raise RuntimeError("the queue is not paused: nothing to resume")
        if self.control is not None:
            from rramlab.protocols.control import RUNNING as CONTROL_RUNNING

            if self.control.state != CONTROL_RUNNING and self.window_.run_thread is not None:
                self.window_.toggle_pause()  # resumes, and the window's button says Pause again
            self.control = None
            self._pause_timer.stop()
            self.state = QUEUE_RUNNING
            self._changed(f"step {self.steps.index(self.current) + 1} resumed" if self.current in self.steps
                          else "resumed")
            return
        if self.window_.running or self.window_.connecting:
            raise RuntimeError("a run is in progress: resume the queue when it has ended")
        self.check()  # the steps may have been edited while paused
        self.state = QUEUE_RUNNING
        self._next()

    def _show_pause(self) -> None:
        """The paused step's line: safe state and how long it has waited (the worker's RunControl)."""
        from rramlab.protocols.control import PAUSED as AT_CHECKPOINT
        from rramlab.protocols.control import RUNNING as CONTROL_RUNNING

        control, step = self.control, self.current
        if control is None or step is None or step not in self.steps:
            return
        number = self.steps.index(step) + 1
        if control.state == CONTROL_RUNNING:  # resumed with the window's Resume button
            self.control, self.state = None, QUEUE_RUNNING
            self._pause_timer.stop()
            self._changed(f"step {number} resumed")
        elif control.state == AT_CHECKPOINT:
            seconds = int(control.paused_for_s())
            self.status.setText(f"step {number} paused at a checkpoint: outputs at 0 V, matrix open · "
                                f"{seconds // 60}:{seconds % 60:02d} · Resume goes on with its next pulse")
        else:
            self.status.setText(f"pausing step {number} at its next checkpoint …")

    def abort(self) -> None:
        """Stop the step running before its next pulse (outputs to 0 V) and end the queue."""
        if self.state == IDLE:
            raise RuntimeError("the queue is not running: nothing to abort")
        self.state, self.pause_requested = IDLE, False
        self._pause_timer.stop()
        if self.current is not None and self.window_.running:
            self.window_.abort_run()
            self._changed("aborting: the step running stops before its next pulse, then outputs go to 0 V")
        else:
            self._changed("queue aborted between steps; the steps not finished stay queued")

    def halt(self) -> None:
        """The window is closing with no step running: the queue stops where it is (saved as it is,
        the steps not finished pending, for the next window)."""
        if self.state != IDLE:
            self.state, self.pause_requested, self.control = IDLE, False, None
            self._pause_timer.stop()
            self._changed("queue stopped: the window closed; the steps not finished stay queued")

    # ----- files -----
    def save(self, path: Path | None = None) -> Path:
        return window_state.save_queue([s.to_dict() for s in self.steps], path or self.path)

    def load(self, path) -> None:
        """Replace the queue by the one in ``path`` (not while it runs)."""
        if self.state != IDLE:
            raise RuntimeError("the queue is running or paused: abort it before loading another")
        steps = [QueueStep.from_dict(d, i + 1) for i, d in enumerate(window_state.load_queue(Path(path)))]
        self.steps = steps
        self._changed(f"{len(steps)} steps loaded from {path}")

    def save_recipe(self, path) -> Path:
        """Write the queue as a recipe (``queue_recipe``), checked as ``rramlab run`` reads it."""
        from rramlab.app.gui.queue_recipe import save_recipe

        out = save_recipe(self.steps, path)
        self.status.setText(f"{len(self.steps)} steps saved as the recipe {out}: rramlab run {out}")
        return out

    def load_recipe(self, path) -> list[QueueStep]:
        """Add the steps of the recipe at ``path`` to the queue, on the selected backend."""
        from rramlab.app.gui.queue_recipe import steps_from_recipe

        steps, notes = steps_from_recipe(path, self.window_.backend.choice())
        self.steps.extend(steps)
        self._changed(f"{len(steps)} steps added from the recipe {path}" + ("; " + "; ".join(notes) if notes else ""))
        return steps

    def _save_recipe_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save queue as recipe", "day.toml",
                                                        "recipes (*.toml)")
        if path:
            self.save_recipe(path)

    def _load_recipe_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Load recipe", "", "recipes (*.toml)")
        if path:
            self.load_recipe(path)

    def _save_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save queue", "queue.toml", "queue files (*.toml)")
        if path:
            self.save(Path(path))
            self.status.setText(f"queue saved to {path}")

    def _load_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Load queue", "", "queue files (*.toml)")
        if path:
            self.load(path)

    # ----- view -----
    def _guarded(self, slot) -> None:
        try:
            slot()
        except Exception as exc:  # noqa: BLE001 - a message in the window, not a traceback
            log.debug("queue: %s", exc, exc_info=True)
            self.window_.show_error(exc)

    def _changed(self, text: str) -> None:
        self.status.setText(text)
        try:
            self.save()
        except OSError as exc:  # the queue still runs; it is not kept for the next window
            log.warning("queue not saved to %s: %s", self.path, exc)
            self.status.setText(f"{text} (not saved: {exc})")
        self._refresh()
        self.changed.emit()

    def _refresh(self) -> None:
        row = self.list.currentRow()
        self.list.blockSignals(True)
        self.list.clear()
        for i, step in enumerate(self.steps):
            text = step.title(i + 1)
            if step is self.current and self.state == PAUSED:
                text = text.replace(f" · {RUNNING}", " · paused")
            item = QtWidgets.QListWidgetItem(text)
            item.setData(QtCore.Qt.ItemDataRole.UserRole, i)
            tip = [f"on {step.backend_label()}", *[f"{k}: {v}" for k, v in step.settings.items()],
                   f"inputs: {step.inputs}", *([step.message] if step.message else [])]
            item.setToolTip("\n".join(tip))
            self.list.addItem(item)
        self.list.setCurrentRow(min(row, len(self.steps) - 1))
        self.list.blockSignals(False)
        self._enable()

    def _enable(self) -> None:
        idle, row = self.state == IDLE, self.list.currentRow()
        has = 0 <= row < len(self.steps)
        self.buttons["up"].setEnabled(has and row > 0)
        self.buttons["down"].setEnabled(has and row < len(self.steps) - 1)
        self.buttons["remove"].setEnabled(has and self.steps[row] is not self.current)
        self.buttons["run"].setEnabled(idle and bool(self.steps))
        self.buttons["pause"].setEnabled(self.state == QUEUE_RUNNING and not self.pause_requested)
        self.buttons["resume"].setEnabled(self.state == PAUSED or self.pause_requested)
        self.buttons["abort"].setEnabled(not idle)
        self.buttons["load"].setEnabled(idle)
        self.buttons["save_recipe"].setEnabled(bool(self.steps))
        self.list.setDragEnabled(idle)
