"""A parameter form built from a protocol's settings declaration (``rramlab.protocols.settings``).

One row per declared setting: a spin box (whole numbers), a scaled spin box with the unit as
suffix (volts, microseconds, nS, nA: SI in code, the lab's units on screen) or a list of choices.
Each box's minimum and maximum are the setting's bounds under the selected backend's safe operating
area, so an out-of-range value cannot be typed; the label beside it and the tooltip say the range
and where the limit comes from. ``set_value`` refuses an out-of-range value with the same error
(SafetyError / RequestError, same wording) the command line gives.
"""

from __future__ import annotations

import dataclasses
import math

from PySide6 import QtCore, QtGui, QtWidgets

from rramlab.drivers.interface import SafeOperatingArea
from rramlab.protocols.settings import DeclaredSetting, check_settings, declared

#: unit -> (shown unit, SI per shown unit, decimals): what a spin box displays for an SI value
DISPLAY_UNITS = {
    "V": ("V", 1.0, 4),
    "s": ("µs", 1e-6, 3),
    "S": ("nS", 1e-9, 3),
    "A": ("nA", 1e-9, 3),
    "ohm": ("Ω", 1.0, 3),
}
_UNBOUNDED = 1e12
#: how long a row says why a typed value was not taken (ms)
REFUSAL_SHOWN_MS = 10000
_WINDOW_NAMES = {"set": "set", "reset": "reset", "read": "read", "width": "pulse-width"}


def display_unit(unit: str) -> tuple[str, float, int]:
    """(suffix, scale, decimals) for a declared SI unit; unknown units are shown as they are."""
    return DISPLAY_UNITS.get(unit, (unit, 1.0, 4))


def _clean(x: float) -> float:
    """Drop the float noise of scaling (2.9999999999999997e-07 -> 3e-07)."""
    return float(f"{x:.12g}")


def display_range(lo: float | None, hi: float | None, scale: float, decimals: int,
                  exclusive_minimum: bool = False) -> tuple[float, float]:
    """A spin box's (minimum, maximum) in display units for SI bounds (lo, hi): inside the bounds
    on the box's grid of 10**-decimals, so a value the box can show is one the bounds allow.
    4.3 V stays 4.3 (not 4.2999 from float division); an exclusive minimum moves up one tick."""
    tick = 10.0 ** -decimals
    dlo, dhi = -_UNBOUNDED, _UNBOUNDED
    if lo is not None:
        n = math.ceil(lo / scale / tick - 1e-6)
        if exclusive_minimum and n * tick <= lo / scale + tick * 1e-6:
            n += 1
        dlo = round(n * tick, decimals)
    if hi is not None:
        dhi = round(math.floor(hi / scale / tick + 1e-6) * tick, decimals)
    return dlo, dhi


def field_unit(d: DeclaredSetting) -> tuple[str, float, int]:
    """(suffix, scale, decimals) of one declared setting: its unit's display unit, except a time that
    may run to more than a second (retention's duration, up to years) is shown in seconds, not µs,
    and a current that may exceed a milliampere (the I-V's compliance) in mA, not nA."""
    if d.spec.unit == "s" and d.spec.maximum is not None and d.spec.maximum > 1.0:
        return "s", 1.0, 3
    if d.spec.unit == "A" and d.spec.maximum is not None and d.spec.maximum > 1e-3:
        return "mA", 1e-3, 4  # a compliance of 1 mA, not 1000000 nA
    return display_unit(d.spec.unit)


def _is_text(d: DeclaredSetting) -> bool:
    """A free text setting (endurance's ``read_every``: 'log' or a number): a line edit."""
    return d.type is str and d.spec.choices is None


def _is_switch(d: DeclaredSetting) -> bool:
    """A yes/no setting: a bool, or a whole number declared 0 to 1 (``verify``): a check box."""
    return d.type is bool or (d.type is int and d.spec.choices is None and d.spec.minimum == 0
                              and d.spec.maximum == 1)


class _SaysWhy:
    """Mixin for a spin box: typing a number beyond its range (which Qt silently refuses) calls
    ``refused(number)``, so the form can say which limit it is, instead of keeping the old value
    without a word."""

    refused = None  # callable(number) set by the form

    def _typed_number(self, text: str):
        t = text.strip()
        if self.suffix() and t.endswith(self.suffix().strip()):
            t = t[:-len(self.suffix().strip())]
        try:
            return float(t.strip().replace(self.locale().decimalPoint(), "."))
        except ValueError:
            return None

    def validate(self, text, pos):
        result = super().validate(text, pos)
        state = result[0] if isinstance(result, tuple) else result
        if state != QtGui.QValidator.State.Acceptable and self.refused is not None:
            x = self._typed_number(text)
            # beyond a bound on its own side of 0, no further digit can bring it back: say so now;
            # a number short of a bound may still be on its way (0 -> 0.5) and is judged in fixup
            if x is not None and (x > self.maximum() >= 0 or x < self.minimum() <= 0):
                self.refused(x)
        return result

    def fixup(self, text):
        x = self._typed_number(text)
        if self.refused is not None and x is not None and not self.minimum() <= x <= self.maximum():
            self.refused(x)
        return super().fixup(text)


class _SpinBox(_SaysWhy, QtWidgets.QSpinBox):
    pass


class _DoubleSpinBox(_SaysWhy, QtWidgets.QDoubleSpinBox):
    pass


class SettingsForm(QtWidgets.QWidget):
    """Form for one settings dataclass. ``settings()`` builds the instance; ``set_limits`` re-bounds
    every field for another backend (values outside the new bounds are clamped and reported)."""

    changed = QtCore.Signal()
    refused = QtCore.Signal(str)  # a typed value beyond a field's range: what was refused and why

    def __init__(self, settings_class, limits: SafeOperatingArea | None = None, limits_source: str = "",
                 owner: str = "", parent=None):
        super().__init__(parent)
        self.settings_class = settings_class
        self.owner = owner or settings_class.__name__
        self.declared: dict[str, DeclaredSetting] = {d.name: d for d in declared(settings_class)}
        self.fields: dict[str, QtWidgets.QWidget] = {}
        self.refusal = ""  # the last refused typed value, said (see _refused)
        self.bound_labels: dict[str, QtWidgets.QLabel] = {}
        layout = QtWidgets.QFormLayout(self)
        layout.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for name, d in self.declared.items():
            widget = self._make_field(d)
            widget.setObjectName(f"setting_{name}")
            bound = QtWidgets.QLabel()
            bound.setObjectName(f"bounds_{name}")
            bound.setStyleSheet("color: gray")
            bound.setWordWrap(True)  # wraps at the pane's width instead of widening it
            bound.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
            row = QtWidgets.QHBoxLayout()
            row.addWidget(widget, 2)
            row.addWidget(bound, 3)
            if isinstance(widget, _SaysWhy):
                widget.refused = lambda x, name=name: self._refused(name, x)
            label = QtWidgets.QLabel(self._label(d))
            label.setWordWrap(True)
            label.setToolTip(d.spec.help)
            layout.addRow(label, row)
            self.fields[name] = widget
            self.bound_labels[name] = bound
        self.limits = limits or SafeOperatingArea()
        self.limits_source = limits_source
        self.set_limits(self.limits, limits_source)
        for name, d in self.declared.items():
            self._write(name, d.default)

    # ----- building -----
    @staticmethod
    def _label(d: DeclaredSetting) -> str:
        text = d.name.removesuffix("_v").removesuffix("_s").replace("_", " ")
        return text[:1].upper() + text[1:]

    def _make_field(self, d: DeclaredSetting) -> QtWidgets.QWidget:
        if _is_switch(d):
            box = QtWidgets.QCheckBox()
            box.toggled.connect(self.changed)
            return box
        if d.spec.choices is not None:
            box = QtWidgets.QComboBox()
            for c in d.spec.choices:
                box.addItem(str(c), c)
            box.currentIndexChanged.connect(self.changed)
            return box
        if _is_text(d):
            box = QtWidgets.QLineEdit()
            box.editingFinished.connect(self.changed)
            return box
        if d.type is int:
            box = _SpinBox()
            box.valueChanged.connect(self.changed)
            return box
        suffix, _, decimals = field_unit(d)
        box = _DoubleSpinBox()
        box.setDecimals(decimals)
        box.setSuffix(f" {suffix}" if suffix else "")
        box.setSingleStep(10 ** -(decimals - 2) if decimals >= 2 else 1)
        box.setKeyboardTracking(False)
        box.valueChanged.connect(self.changed)
        return box

    # ----- bounds -----
    def bounds(self, name: str) -> tuple[float | None, float | None]:
        """(low, high) of a setting in SI units under the form's current limits."""
        return self.declared[name].bounds(self.limits)

    def reason(self, name: str) -> str:
        """The allowed range and where it comes from, as the label and tooltip say it."""
        d = self.declared[name]
        text = d.describe_bounds(self.limits)
        if not text:
            return ""
        if d.spec.soa is not None:
            source = f"{_WINDOW_NAMES[d.spec.soa]} window of {self.limits_source or 'the safe operating area'}"
        else:
            source = f"{self.owner}'s own range"
        return f"{text} ({source})"

    def _refused(self, name: str, typed: float) -> None:
        """A number beyond the field's range was typed: say which limit, in the row and its tooltip."""
        box = self.fields[name]
        unit = box.suffix().strip() if isinstance(box, QtWidgets.QDoubleSpinBox) else ""
        side = "above the maximum" if typed > box.maximum() else "below the minimum"
        limit = box.maximum() if typed > box.maximum() else box.minimum()
        text = f"{typed:g} {unit} not taken: {side} {limit:g} {unit}; allowed {self.reason(name)}".replace("  ", " ")
        label = self.bound_labels[name]
        label.setText(text)
        label.setStyleSheet("color: #b03a2e")
        QtWidgets.QToolTip.showText(box.mapToGlobal(box.rect().bottomLeft()), text, box)
        self.refusal = text
        self.refused.emit(text)
        # the row says it for a while (Qt has already put back what fits), then shows the range again
        QtCore.QTimer.singleShot(REFUSAL_SHOWN_MS, label, lambda: label.text() == text and self._show_bounds(name))

    def _show_bounds(self, name: str) -> None:
        label = self.bound_labels[name]
        label.setStyleSheet("color: gray")
        label.setText("" if _is_switch(self.declared[name]) else self.reason(name))

    def set_limits(self, limits: SafeOperatingArea, source: str = "") -> list[tuple[str, object, object]]:
        """Re-bound every field for ``limits``; returns [(name, old SI value, new SI value)] for the
        values that had to be clamped into the new range."""
        old = {name: self.value(name) for name in self.fields} if hasattr(self, "limits") else {}
        self.limits, self.limits_source = limits, source
        for name, d in self.declared.items():
            box = self.fields[name]
            reason = self.reason(name)
            self._show_bounds(name)
            box.setToolTip(f"{d.spec.help}\nAllowed: {reason}" if reason else d.spec.help)
            if d.spec.choices is not None or _is_switch(d) or _is_text(d):
                continue
            lo, hi = d.bounds(limits)
            if d.type is int:
                box.setRange(int(lo) if lo is not None else -(2 ** 31), int(hi) if hi is not None else 2 ** 31 - 1)
                continue
            _, scale, decimals = field_unit(d)
            box.setRange(*display_range(lo, hi, scale, decimals, d.spec.exclusive_minimum))
        clamped = []
        for name, before in old.items():
            after = self.value(name)
            if after != before:
                clamped.append((name, before, after))
        return clamped

    # ----- values -----
    def value(self, name: str):
        """The field's value in SI units (a choice as declared)."""
        d, box = self.declared[name], self.fields[name]
        if _is_switch(d):
            return d.type(box.isChecked())
        if d.spec.choices is not None:
            return box.currentData()
        if _is_text(d):
            return box.text().strip()
        if d.type is int:
            return int(box.value())
        return _clean(box.value() * field_unit(d)[1])

    def _write(self, name: str, value) -> None:
        d, box = self.declared[name], self.fields[name]
        if _is_switch(d):
            box.setChecked(bool(value))
        elif d.spec.choices is not None:
            box.setCurrentIndex(box.findData(value))
        elif _is_text(d):
            box.setText(str(value))
        elif d.type is int:
            box.setValue(int(value))
        else:
            box.setValue(value / field_unit(d)[1])

    def set_value(self, name: str, value) -> None:
        """Set one field (SI units). A value outside the setting's bounds under the form's limits is
        refused with SafetyError (a safe-operating-area window) or RequestError, naming the value and
        the allowed range, and the field keeps its value."""
        if name not in self.declared:
            raise KeyError(f"{self.settings_class.__name__} has no setting {name!r}: "
                           f"use one of {', '.join(self.declared)}")
        candidate = dataclasses.replace(self.settings(), **{name: value})
        check_settings(candidate, self.limits)
        self._write(name, value)
        if self.value(name) != value and not isinstance(value, str):
            # within bounds but finer than the box shows: say so rather than round silently
            shown = self.value(name)
            self._write(name, shown)
            raise ValueError(f"{name} = {value!r} is finer than the form's resolution; it holds {shown!r}")

    def values(self) -> dict:
        return {name: self.value(name) for name in self.fields}

    def settings(self):
        """An instance of the settings class with the form's values."""
        return self.settings_class(**self.values())

    def set_settings(self, settings) -> None:
        for name in self.fields:
            self.set_value(name, getattr(settings, name))
