"""Live pyqtgraph plots. Records arrive in SI units; the axes show them with SI prefixes (nA) and
the conductance map in nS.

A plot set is a widget with ``clear()``, ``add_records(records)``, ``redraw()`` and
``plot_items()`` (name -> PlotItem, for PNG export). Adding only stores; the window calls
``redraw()`` on a timer, so a fast run does not redraw once per pulse.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

pg.setConfigOptions(antialias=True, imageAxisOrder="row-major", background="w", foreground="k")

SET_PEN, RESET_PEN = pg.mkColor("#c0392b"), pg.mkColor("#2471a3")


class PlotSet(QtWidgets.QWidget):
    """Base of every protocol's plots."""

    def clear(self) -> None: ...

    def add_records(self, records) -> None: ...

    def redraw(self) -> None: ...

    def plot_items(self) -> dict[str, pg.PlotItem]:
        return {}

    def show_records(self, records) -> None:
        self.clear()
        self.add_records(records)
        self.redraw()


class IsppPlots(PlotSet):
    """Read current against pulse number, and against pulse voltage (set and reset ramps in colour)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.by_pulse = pg.PlotWidget(title="read current after each pulse")
        self.by_pulse.setLabel("bottom", "pulse number")
        self.by_pulse.setLabel("left", "read current", units="A")
        self.by_pulse.showGrid(x=True, y=True, alpha=0.3)
        self.pulse_curve = self.by_pulse.plot([], [], pen=pg.mkPen("#555", width=1), symbol="o", symbolSize=4,
                                              symbolBrush="#555", symbolPen=None)
        self.by_voltage = pg.PlotWidget(title="read current against pulse voltage")
        self.by_voltage.setLabel("bottom", "pulse voltage", units="V")
        self.by_voltage.setLabel("left", "read current", units="A")
        self.by_voltage.showGrid(x=True, y=True, alpha=0.3)
        self.by_voltage.addLegend(offset=(10, 10))
        self.set_scatter = self.by_voltage.plot([], [], pen=None, symbol="o", symbolSize=5, symbolBrush=SET_PEN,
                                                symbolPen=None, name="set ramp")
        self.reset_scatter = self.by_voltage.plot([], [], pen=None, symbol="t", symbolSize=6,
                                                  symbolBrush=RESET_PEN, symbolPen=None, name="reset ramp")
        layout.addWidget(self.by_pulse)
        layout.addWidget(self.by_voltage)
        self.clear()

    def clear(self) -> None:
        self._pulse_v: list[float] = []
        self._read_a: list[float] = []
        self._is_set: list[bool] = []
        self.redraw()

    def add_records(self, records) -> None:
        for r in records:
            self._pulse_v.append(r.pulse_v)
            self._read_a.append(r.read_a)
            self._is_set.append(r.phase == "set")

    def redraw(self) -> None:
        read = np.asarray(self._read_a, dtype=float)
        volts = np.asarray(self._pulse_v, dtype=float)
        is_set = np.asarray(self._is_set, dtype=bool)
        self.pulse_curve.setData(np.arange(1, read.size + 1), read)
        self.set_scatter.setData(volts[is_set], read[is_set])
        self.reset_scatter.setData(volts[~is_set], read[~is_set])

    def plot_items(self):
        return {"read current vs pulse number": self.by_pulse.getPlotItem(),
                "read current vs pulse voltage": self.by_voltage.getPlotItem()}


class ConductanceMap(PlotSet):
    """The chip's conductance (I / V_read) per cell, wordlines down and bitlines across, in nS.
    Cells not read yet are blank."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.view = pg.PlotWidget(title="conductance map (nS)")
        self.view.setLabel("bottom", "bitline")
        self.view.setLabel("left", "wordline")
        self.view.invertY(True)
        self.view.setAspectLocked(True)
        self.image = pg.ImageItem()
        self.view.addItem(self.image)
        self.bar = pg.ColorBarItem(values=(0, 100), colorMap=pg.colormap.get("viridis"), label="G (nS)",
                                   interactive=False)
        self.bar.setImageItem(self.image, insert_in=self.view.getPlotItem())
        layout.addWidget(self.view)
        self.conductance = np.full((1, 1), np.nan)
        self._dirty = True

    def reset_shape(self, wordlines: int, bitlines: int, values: np.ndarray | None = None) -> None:
        """Show an array of this shape: ``values`` (S, NaN = not read) or blank."""
        self.conductance = np.full((wordlines, bitlines), np.nan) if values is None else np.array(values, float)
        self._dirty = True
        self.redraw()

    def clear(self) -> None:
        self.conductance[:] = np.nan
        self._dirty = True
        self.redraw()

    def set_cells(self, updates) -> None:
        """updates: [((wordline, bitline), siemens), ...]."""
        for (w, b), g in updates:
            if 0 <= w < self.conductance.shape[0] and 0 <= b < self.conductance.shape[1]:
                self.conductance[w, b] = g
                self._dirty = True

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        shown = self.conductance * 1e9
        self.image.setImage(shown, autoLevels=False)
        self.image.setRect(-0.5, -0.5, shown.shape[1], shown.shape[0])
        finite = shown[np.isfinite(shown)]
        if finite.size:
            # from 0 nS, so a chip in HRS (all cells near 1.6 nS) looks uniform, not a false gradient
            self.bar.setLevels((0.0, max(float(finite.max()), 1.0)))

    def plot_items(self):
        return {"conductance map": self.view.getPlotItem()}
