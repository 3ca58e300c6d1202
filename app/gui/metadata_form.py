"""The run metadata fields of the window: chip id, sample, operator, temperature, notes, tags.

Kept with every run the window starts (``RunMetadata`` in ``protocols/store.py``, the fields the
command line's --chip-id, --sample, --operator, --temperature, --notes and --tag set), and
remembered between sessions (``window_state``: written as they are typed).
"""

from __future__ import annotations

import logging

from PySide6 import QtCore, QtWidgets

from rramlab.app.gui import window_state
from rramlab.protocols.store import RunMetadata, parse_temperature

log = logging.getLogger(__name__)

_LABELS = {"chip_id": "Chip id", "sample": "Sample", "operator": "Operator", "temperature": "Temperature",
           "notes": "Notes", "tags": "Tags"}
_HINTS = {"chip_id": "e.g. W3-D12", "sample": "e.g. HT-RRAM lot 7", "operator": "who is at the station",
          "temperature": "300, 300K or 25C (empty: not recorded)", "notes": "free text kept with the run",
          "tags": "words to find runs by, comma separated"}


class MetadataForm(QtWidgets.QGroupBox):
    """``metadata()`` -> the RunMetadata of the fields (ValueError, one line, for a temperature that
    is not one); ``set_fields(**text)`` for scripts and tests. ``folder``: where the fields are
    remembered (default: the data folder, ``window_state.state_dir()``)."""

    changed = QtCore.Signal()

    def __init__(self, folder=None, parent=None):
        super().__init__("Run metadata (kept with every run)", parent)
        self.setObjectName("run_metadata")
        self.folder = folder
        self.fields: dict[str, QtWidgets.QLineEdit] = {}
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        for i, name in enumerate(window_state.METADATA_FIELDS):
            edit = QtWidgets.QLineEdit()
            edit.setObjectName(f"metadata_{name}")
            edit.setPlaceholderText(_HINTS[name])
            edit.setToolTip(f"{_LABELS[name]}: {_HINTS[name]}; recorded with every run the window starts "
                            f"(as the command line's --{name.replace('_', '-') if name != 'tags' else 'tag'})")
            self.fields[name] = edit
            row, col = divmod(i, 2)
            grid.addWidget(QtWidgets.QLabel(_LABELS[name]), row, 2 * col)
            grid.addWidget(edit, row, 2 * col + 1)
        self.error = QtWidgets.QLabel()
        self.error.setObjectName("metadata_error")
        self.error.setStyleSheet("color: #b03a2e")
        self.error.setWordWrap(True)
        self.error.hide()
        grid.addWidget(self.error, 3, 0, 1, 4)
        self._loading = True
        for name, text in window_state.load_metadata(self.folder).items():
            self.fields[name].setText(text)
        self._loading = False
        for edit in self.fields.values():
            edit.textChanged.connect(self._on_edit)
        self._check()

    def texts(self) -> dict[str, str]:
        return {name: edit.text().strip() for name, edit in self.fields.items()}

    def set_fields(self, **texts) -> None:
        """Type into the fields (by name: chip_id, sample, operator, temperature, notes, tags)."""
        for name, text in texts.items():
            if name not in self.fields:
                raise KeyError(f"no metadata field {name!r}: use one of {', '.join(self.fields)}")
            self.fields[name].setText(str(text))

    def metadata(self) -> RunMetadata:
        """The fields as the run store keeps them (empty fields: not recorded)."""
        t = self.texts()
        temperature = None
        if t["temperature"]:
            try:
                temperature = parse_temperature(t["temperature"])
            except ValueError as exc:
                raise ValueError(f"run metadata: {str(exc).replace('--temperature', 'temperature')}") from None
        tags = tuple(w.strip() for w in t["tags"].split(",") if w.strip())
        return RunMetadata(chip_id=t["chip_id"] or None, sample=t["sample"] or None, operator=t["operator"] or None,
                           temperature_k=temperature, notes=t["notes"] or None, tags=tags)

    def _check(self) -> bool:
        try:
            self.metadata()
        except ValueError as exc:
            self.error.setText(str(exc))
            self.error.show()
            return False
        self.error.hide()
        return True

    def _on_edit(self, *_):
        if self._loading:
            return
        self._check()
        try:
            window_state.save_metadata(self.texts(), self.folder)
        except OSError as exc:  # the fields still work for this session
            log.warning("run metadata not remembered: %s", exc)
        self.changed.emit()
