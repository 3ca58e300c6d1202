"""Live plots of the lab protocols: I-V, endurance, retention, disturb and the array map.

Records arrive in SI units (``protocols/iv.py`` ... ``array_map.py``); the plots show them in the
lab's units (nA, nS). A log axis is fed the value in its lab unit (|I| in nA, G in nS), so its
decades read 1, 10, 100 nA; linear axes take SI values through ``lab_axis`` as the other plots do.
Like every ``PlotSet``: ``add_records`` only stores, ``redraw`` (on the window's timer) draws.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from rramlab.app.gui.plots import (CLASS_COLOURS, LEVEL_COLOURS, RESET_PEN, SET_PEN, PlotSet, _plot, exact_range,
                                   side_legend)

NA, NS = 1e9, 1e9

#: the sweep's legs (protocols/iv.py IvPoint.leg): name and colour
IV_LEGS = {0: ("0 V to set peak", SET_PEN), 1: ("set peak back to 0 V", pg.mkColor("#e59866")),
           2: ("0 V to reset peak", RESET_PEN), 3: ("reset peak back to 0 V", pg.mkColor("#85c1e9"))}


def decade_ticks(axis, low: float, high: float, size, std_ticks):
    """A log axis's ticks (in log10 units) for ``AxisItem.logTickValues``: the decades as the labelled
    level, 2..9 of each decade as the unlabelled one (pyqtgraph puts them all in one labelled level
    when the range is short, and their labels run into each other); 2 and 5 are labelled too when
    fewer than two decades are in view."""
    first, last = int(math.floor(low)), int(math.ceil(high))
    majors = [float(v) for v in range(first, last + 1) if low <= v <= high]
    minors = [v + math.log10(k) for v in range(first, last) for k in range(2, 10) if low < v + math.log10(k) < high]
    if len(majors) < 2:
        labelled = [m for m in minors if round(10 ** (m - math.floor(m))) in (2, 5)]
        majors = sorted(majors + labelled)
        minors = [m for m in minors if m not in labelled]
    return [(1.0, majors), (None, minors)]


def log_axes(widget: pg.PlotWidget, x: bool, y: bool) -> None:
    """Log scale on the chosen axes, labelled at the decades (``decade_ticks``)."""
    import types

    widget.setLogMode(x=x, y=y)
    for side, on in (("bottom", x), ("left", y)):
        if on:
            axis = widget.getAxis(side)
            axis.logTickValues = types.MethodType(decade_ticks, axis)  # this axis only, not every log axis
            axis.setStyle(maxTextLevel=0)


def _log_plot(title: str, bottom: str, left: str, log_x: bool, log_y: bool) -> pg.PlotWidget:
    w = pg.PlotWidget(title=title)
    w.setLabel("bottom", bottom)
    w.setLabel("left", left)
    log_axes(w, log_x, log_y)
    w.showGrid(x=True, y=True, alpha=0.3)
    return w


class IvPlots(PlotSet):
    """|I| (nA, log) against V, one colour per leg of the staircase: the paper's Fig. 3."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.curve_plot = _log_plot("I-V sweep: |I| against V (log)", "voltage across the cell (V)", "|I| (nA)",
                                    log_x=False, log_y=True)
        self.curve_plot.setRange(xRange=(-2.0, 4.5), yRange=(-2, 3), padding=0)  # log10 nA: 0.01 to 1000 nA
        legend = side_legend(self.curve_plot, "reset peak back to 0 V")
        self.curves = {}
        for leg, (name, colour) in IV_LEGS.items():
            self.curves[leg] = self.curve_plot.plot([], [], pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=3,
                                                    symbolBrush=colour, symbolPen=None)
            legend.addItem(self.curves[leg], name)
        layout.addWidget(self.curve_plot)
        self.clear()

    def clear(self) -> None:
        self.points: list = []
        self._dirty = True
        self.redraw()

    def add_records(self, records) -> None:
        for r in records:
            if hasattr(r, "leg") and hasattr(r, "current_a"):
                self.points.append(r)
                self._dirty = True

    def shown_points(self) -> int:
        """Points drawn (a point of 0 A has no place on the log axis)."""
        return sum(len(c.getData()[0]) if c.getData()[0] is not None else 0 for c in self.curves.values())

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        for leg, curve in self.curves.items():
            pts = [p for p in self.points if p.leg == leg and p.current_a != 0]
            curve.setData([p.voltage_v for p in pts], [abs(p.current_a) * NA for p in pts])
        if self.points:
            self.curve_plot.enableAutoRange()

    def plot_items(self):
        return {"I-V curve": self.curve_plot.getPlotItem()}


class EndurancePlots(PlotSet):
    """LRS and HRS read currents against cycles (log x), and their ratio, the window."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.states = _log_plot("LRS and HRS read current against cycles", "cycle", "read current (nA)",
                                log_x=True, log_y=True)
        self.states.setRange(xRange=(0, 3), yRange=(0, 2), padding=0)
        legend = side_legend(self.states, "HRS (after reset)")
        self.lrs = self.states.plot([], [], pen=pg.mkPen(SET_PEN, width=2), symbol="o", symbolSize=4,
                                    symbolBrush=SET_PEN, symbolPen=None)
        self.hrs = self.states.plot([], [], pen=pg.mkPen(RESET_PEN, width=2), symbol="t", symbolSize=5,
                                    symbolBrush=RESET_PEN, symbolPen=None)
        legend.addItem(self.lrs, "LRS (after set)")
        legend.addItem(self.hrs, "HRS (after reset)")
        self.window = _log_plot("window: LRS / HRS read current", "cycle", "LRS / HRS", log_x=True, log_y=True)
        self.window.setRange(xRange=(0, 3), yRange=(0, 2), padding=0)
        self.ratio = self.window.plot([], [], pen=pg.mkPen("#555", width=2), symbol="o", symbolSize=4,
                                      symbolBrush="#555", symbolPen=None)
        self.closed_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#b03a2e", width=1, style=QtCore.Qt.PenStyle.DashLine))
        self.window.addItem(self.closed_line)
        self.closed_line.setVisible(False)
        layout.addWidget(self.states, 3)
        layout.addWidget(self.window, 2)
        self.clear()

    def set_context(self, settings: dict, inputs: dict) -> None:
        ratio = settings.get("min_window_ratio")
        if isinstance(ratio, (int, float)) and ratio > 0:
            self.closed_line.setPos(math.log10(ratio))  # a log axis is placed in log10 units
            self.closed_line.setVisible(True)

    def clear(self) -> None:
        self.records: list = []
        self._dirty = True
        self.redraw()

    def add_records(self, records) -> None:
        for r in records:
            if hasattr(r, "lrs_a") and hasattr(r, "cycle"):
                self.records.append(r)
                self._dirty = True

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        rs = [r for r in self.records if r.lrs_a > 0 and r.hrs_a > 0]
        cycles = np.array([r.cycle for r in rs], dtype=float)
        self.lrs.setData(cycles, np.array([r.lrs_a * NA for r in rs], dtype=float))
        self.hrs.setData(cycles, np.array([r.hrs_a * NA for r in rs], dtype=float))
        self.ratio.setData(cycles, np.array([r.window_ratio for r in rs], dtype=float))
        if rs:
            self.states.enableAutoRange()
            self.window.enableAutoRange()

    def plot_items(self):
        return {"LRS and HRS against cycles": self.states.getPlotItem(), "window against cycles":
                self.window.getPlotItem()}


class RetentionPlots(PlotSet):
    """Each cell's conductance (nS) against the time since programming (log), coloured by its target
    level (dashed: the targets)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.view = _plot("conductance against time after programming", "time after programming (s)",
                          "conductance", left_units="S")
        log_axes(self.view, x=True, y=False)
        self.view.setRange(xRange=(0, 4), yRange=(0, 90e-9), padding=0)
        self.legend = side_legend(self.view, "80 nS (9 cells)")
        layout.addWidget(self.view)
        self.curves: dict = {}
        self.target_lines: dict = {}
        self.clear()

    def clear(self) -> None:
        for curve in self.curves.values():
            self.view.removeItem(curve)
        for line in self.target_lines.values():
            self.view.removeItem(line)
        self.curves, self.target_lines = {}, {}
        self.legend.clear()
        self.series: dict[tuple[int, int], tuple[float, list, list]] = {}  # cell -> (target, times, G)
        self._dirty = True
        self.redraw()

    def add_records(self, records) -> None:
        for r in records:
            if type(r).__name__ != "RetentionRecord" and not (hasattr(r, "time_s") and hasattr(r, "target_s")):
                continue
            target, times, gs = self.series.setdefault((r.wordline, r.bitline), (r.target_s, [], []))
            times.append(r.time_s)
            gs.append(r.conductance_s)
            self._dirty = True

    def points(self) -> int:
        """Reads drawn, over every cell."""
        return sum(len(c.getData()[0]) for c in self.curves.values() if c.getData()[0] is not None)

    def _colour(self, target: float):
        k = int(round(target / 10e-9))
        return LEVEL_COLOURS[k - 1] if 1 <= k <= 8 else CLASS_COLOURS[-1]

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        new_level = False
        for cell, (target, times, gs) in self.series.items():
            curve = self.curves.get(cell)
            colour = self._colour(target)
            if curve is None:
                curve = self.curves[cell] = self.view.plot([], [], pen=pg.mkPen(colour, width=1.5), symbol="o",
                                                           symbolSize=3, symbolBrush=colour, symbolPen=None)
            keep = [k for k, t in enumerate(times) if t > 0]
            curve.setData(np.array(times)[keep], np.array(gs)[keep])
            if target not in self.target_lines:
                line = self.target_lines[target] = pg.InfiniteLine(target, angle=0, pen=pg.mkPen(
                    colour, width=1, style=QtCore.Qt.PenStyle.DashLine))
                self.view.addItem(line)
                new_level = True
        if new_level or (self.series and not self.legend.items):
            self.legend.clear()
            by_level: dict[float, list] = {}
            for cell, (target, _, _) in self.series.items():
                by_level.setdefault(target, []).append(cell)
            for target in sorted(by_level):
                cells = by_level[target]
                self.legend.addItem(self.curves[cells[0]], f"{target * NS:.0f} nS ({len(cells)} "
                                                           f"cell{'s' * (len(cells) != 1)})")
        if self.series:
            self.view.enableAutoRange()

    def plot_items(self):
        return {"conductance against time": self.view.getPlotItem()}


class DisturbPlots(PlotSet):
    """Conductance change G - G(0) (nS) against reads (read disturb) and against half-bias pulses
    (the cell and its half-selected neighbours), log count axes."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.reads = _plot("read disturb: change against reads", "reads", "change G - G(0)", left_units="S")
        self.pulses = _plot("half-select disturb: change against half-bias pulses on the cell", "half-bias pulses",
                            "change G - G(0)", left_units="S")
        self.legends = {}
        for view, phase in ((self.reads, "read"), (self.pulses, "half-select")):
            log_axes(view, x=True, y=False)
            view.setRange(xRange=(0, 4), yRange=(-1e-9, 1e-9), padding=0)
            self.legends[phase] = side_legend(view, "neighbour 10,10")
            layout.addWidget(view)
        self.curves: dict = {}
        self.clear()

    def set_context(self, settings: dict, inputs: dict) -> None:
        self.read_v = settings.get("read_v", 1.0) or 1.0
        self.pulses.setVisible(bool(settings.get("neighbours", 0)))

    def clear(self) -> None:
        for (phase, _), curve in self.curves.items():
            (self.reads if phase == "read" else self.pulses).removeItem(curve)
        for legend in self.legends.values():
            legend.clear()
        self.curves = {}
        self.series: dict[tuple[str, tuple[int, int]], dict] = {}
        if not hasattr(self, "read_v"):
            self.read_v = 1.0
        self._dirty = True
        self.redraw()

    def add_records(self, records) -> None:
        for r in records:
            if not hasattr(r, "phase") or not hasattr(r, "role"):
                continue
            g = r.read_a / self.read_v
            s = self.series.setdefault((r.phase, (r.wordline, r.bitline)), {"role": r.role, "g0": g, "n": [], "dg": []})
            if r.count == 0:
                s["g0"] = g
            else:
                s["n"].append(r.count)
                s["dg"].append(g - s["g0"])
            self._dirty = True

    def points(self, phase: str) -> int:
        """Counts drawn of a phase ("read" or "half-select"), over its cells."""
        return sum(len(c.xData) for (p, _), c in self.curves.items() if p == phase and c.xData is not None)

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        for k, (key, s) in enumerate(self.series.items()):
            phase, (w, b) = key
            curve = self.curves.get(key)
            if curve is None:
                view = self.reads if phase == "read" else self.pulses
                colour = SET_PEN if s["role"] == "cell" else CLASS_COLOURS[(k + 2) % len(CLASS_COLOURS)]
                width = 2 if s["role"] == "cell" else 1
                curve = self.curves[key] = view.plot([], [], pen=pg.mkPen(colour, width=width),
                                                     symbol="o", symbolSize=3, symbolBrush=colour, symbolPen=None)
                self.legends[phase].addItem(curve, f"{s['role']} {w},{b}")
            curve.setData(np.array(s["n"], dtype=float), np.array(s["dg"], dtype=float))
        if self.series:
            self.reads.enableAutoRange()
            self.pulses.enableAutoRange()

    def plot_items(self):
        return {"change against reads": self.reads.getPlotItem(),
                "change against half-bias pulses": self.pulses.getPlotItem()}


class ArrayMapPlots(PlotSet):
    """The array's conductance map on a log colour scale (log10 of G in nS; HRS near 1.6 nS and the
    80 nS level both readable), axes the array's lines 0..23, cells outside the region blank; the
    counts per level under it. Clicking a cell opens its history (``cell_clicked``)."""

    cell_clicked = QtCore.Signal(int, int)  # wordline, bitline

    def __init__(self, parent=None):
        super().__init__(parent)
        from rramlab.app.gui.cell_history import emit_cell_clicks

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.view = pg.PlotWidget(title="array map: log10 of G (nS); click a cell for its history")
        self.view.setLabel("bottom", "bitline")
        self.view.setLabel("left", "wordline")
        self.view.invertY(True)
        self.image = pg.ImageItem()
        self.view.addItem(self.image)
        self.bar = pg.ColorBarItem(values=(0, 2), colorMap=pg.colormap.get("viridis"), label="log10 G (nS)",
                                   interactive=False)
        self.bar.setImageItem(self.image, insert_in=self.view.getPlotItem())
        # broken cells get a red cross: on the log scale a breakdown path's bright square alone looks
        # like a well-set cell at the top of the colour bar
        self.broken = pg.ScatterPlotItem(symbol="x", size=12, pen=pg.mkPen("r", width=2), brush=pg.mkBrush("r"))
        self.view.addItem(self.broken)
        self.counts = QtWidgets.QLabel()
        self.counts.setObjectName("map_counts")
        self.counts.setWordWrap(True)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.counts)
        emit_cell_clicks(self.view, self.cell_clicked.emit, lambda: self.shape)
        self.shape = (24, 24)
        self.clear()

    def set_context(self, settings: dict, inputs: dict) -> None:
        shape = inputs.get("array_shape")
        if shape:
            self.shape = (int(shape[0]), int(shape[1]))

    def clear(self) -> None:
        self.g = np.full(self.shape, np.nan)
        exact_range(self.view, *self.shape)
        self._dirty = True
        self.redraw()

    def add_records(self, records) -> None:
        for r in records:
            if type(r).__name__ == "MapSnapshot" or not hasattr(r, "conductance_s") or not hasattr(r, "wordline"):
                continue
            if not (0 <= r.wordline < self.g.shape[0] and 0 <= r.bitline < self.g.shape[1]):
                continue
            self.g[r.wordline, r.bitline] = r.conductance_s
            self._dirty = True

    def cells_read(self) -> int:
        return int(np.isfinite(self.g).sum())

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        from rramlab.protocols.array_map import BROKEN_ABOVE_S, level_counts

        with np.errstate(divide="ignore", invalid="ignore"):
            shown = np.log10(np.where(self.g > 0, self.g * NS, np.nan))  # 0 S or below: blank, no log
        self.image.setImage(shown, autoLevels=False)
        self.image.setRect(-0.5, -0.5, shown.shape[1], shown.shape[0])
        finite = shown[np.isfinite(shown)]
        if finite.size:
            lo, hi = float(np.floor(finite.min() * 2) / 2), float(np.ceil(finite.max() * 2) / 2)
            self.bar.setLevels((lo, max(hi, lo + 0.5)))
            counts = level_counts(self.g[np.isfinite(self.g)].ravel().tolist())
            text = f"{finite.size} cells read: " + ", ".join(f"{name} {n}" for name, n in counts.items() if n)
            with np.errstate(invalid="ignore"):
                broken = np.argwhere(self.g > BROKEN_ABOVE_S)
            self.broken.setData(x=broken[:, 1].astype(float), y=broken[:, 0].astype(float))
            if len(broken):
                text += (f"; broken (above {BROKEN_ABOVE_S * 1e6:g} uS, red cross): "
                         + ", ".join(f"{w},{b}" for w, b in broken.tolist()))
            self.counts.setText(text)
        else:
            self.broken.setData(x=[], y=[])
            self.counts.setText("no cell read yet")

    def plot_items(self):
        return {"array map": self.view.getPlotItem()}


__all__ = ["IvPlots", "EndurancePlots", "RetentionPlots", "DisturbPlots", "ArrayMapPlots"]
