"""Live pyqtgraph plots. Records arrive in SI units and are plotted as they are; each axis shows
them in one fixed lab unit (nA, nS, nW: ``lab_axis``), the one its title uses, from the empty plot
on, so an axis never switches prefix as data arrives. Image plots span exactly their cells (-0.5 to
n - 0.5, no padding); legends stand in a column of their own beside the plot, in value order.

A plot set is a widget with ``clear()``, ``add_records(records)``, ``redraw()`` and
``plot_items()`` (name -> PlotItem, for PNG export). Adding only stores; the window calls
``redraw()`` on a timer, so a fast run does not redraw once per pulse.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

pg.setConfigOptions(antialias=True, imageAxisOrder="row-major", background="w", foreground="k")

SET_PEN, RESET_PEN = pg.mkColor("#c0392b"), pg.mkColor("#2471a3")


#: SI unit -> (lab unit, scale): what an axis shows an SI value in
LAB_UNITS = {"A": ("nA", 1e9), "S": ("nS", 1e9), "W": ("nW", 1e9)}


def lab_axis(widget: pg.PlotWidget, side: str, label: str, si_unit: str) -> None:
    """Label an axis fed SI values with its lab unit (nA, nS, nW), fixed: ticks scaled, no SI prefix."""
    unit, scale = LAB_UNITS[si_unit]
    axis = widget.getAxis(side)
    axis.enableAutoSIPrefix(False)
    axis.setScale(scale)
    widget.setLabel(side, f"{label} ({unit})")


def side_legend(widget: pg.PlotWidget, widest: str) -> pg.LegendItem:
    """A legend in its own column right of the plot (it never covers the data), wide enough for its
    ``widest`` entry (a narrow plot would otherwise squeeze the column to its swatches)."""
    from PySide6 import QtGui

    item = widget.getPlotItem()
    legend = pg.LegendItem(verSpacing=-4)
    legend.setSizePolicy(QtWidgets.QSizePolicy.Policy.Fixed, QtWidgets.QSizePolicy.Policy.Fixed)
    item.layout.addItem(legend, 2, 3)
    item.layout.setAlignment(legend, QtCore.Qt.AlignmentFlag.AlignTop)
    item.layout.setColumnFixedWidth(3, QtGui.QFontMetrics(widget.font()).horizontalAdvance(widest) + 45)
    # the title spans the legend's column too: alone above the view box it would widen the plot
    # beyond a narrow widget and push the legend out of sight
    item.layout.removeItem(item.titleLabel)
    item.layout.addItem(item.titleLabel, 0, 1, 1, 3)
    return legend


def empty_range(widget: pg.PlotWidget, x: tuple[float, float], y: tuple[float, float]) -> None:
    """What an empty plot shows (SI values, e.g. 0 to 100 nA as (0, 1e-7)): numbers of the size its
    data will have, in its unit; autoscaling takes over when data arrives."""
    widget.setRange(xRange=x, yRange=y, padding=0)
    widget.getViewBox().enableAutoRange()


class PlotSet(QtWidgets.QWidget):
    """Base of every protocol's plots."""

    def clear(self) -> None: ...

    def add_records(self, records) -> None: ...

    def redraw(self) -> None: ...

    def plot_items(self) -> dict[str, pg.PlotItem]:
        return {}

    def set_context(self, settings: dict, inputs: dict) -> None:
        """What a run was asked (its stored settings and the panel's inputs), before its records
        arrive: e.g. a transfer's weight levels and mapping. Default: nothing needed."""

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
        lab_axis(self.by_pulse, "left", "read current", "A")
        self.by_pulse.showGrid(x=True, y=True, alpha=0.3)
        empty_range(self.by_pulse, (0, 60), (0, 100e-9))
        self.pulse_curve = self.by_pulse.plot([], [], pen=pg.mkPen("#555", width=1), symbol="o", symbolSize=4,
                                              symbolBrush="#555", symbolPen=None)
        self.by_voltage = pg.PlotWidget(title="read current against pulse voltage")
        self.by_voltage.setLabel("bottom", "pulse voltage (V)")
        lab_axis(self.by_voltage, "left", "read current", "A")
        self.by_voltage.showGrid(x=True, y=True, alpha=0.3)
        empty_range(self.by_voltage, (-2.0, 4.5), (0, 100e-9))
        legend = side_legend(self.by_voltage, "reset ramp")
        self.set_scatter = self.by_voltage.plot([], [], pen=None, symbol="o", symbolSize=5, symbolBrush=SET_PEN,
                                                symbolPen=None, name="set ramp")
        self.reset_scatter = self.by_voltage.plot([], [], pen=None, symbol="t", symbolSize=6,
                                                  symbolBrush=RESET_PEN, symbolPen=None, name="reset ramp")
        legend.addItem(self.set_scatter, "set ramp")
        legend.addItem(self.reset_scatter, "reset ramp")
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
        exact_range(self.view, wordlines, bitlines)
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


# ----- helpers -----

LEVEL_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
CLASS_COLOURS = LEVEL_COLOURS + ["#7f7f7f", "#bcbd22"]


def _plot(title: str, bottom: str, left: str, bottom_units=None, left_units=None) -> pg.PlotWidget:
    """A plot with a grid; an axis given an SI unit (A, S, W) shows it in its lab unit (``lab_axis``)."""
    w = pg.PlotWidget(title=title)
    for side, label, unit in (("bottom", bottom, bottom_units), ("left", left, left_units)):
        if unit in LAB_UNITS:
            lab_axis(w, side, label, unit)
        else:
            w.setLabel(side, label, units=unit)
    w.showGrid(x=True, y=True, alpha=0.3)
    return w


def exact_range(widget: pg.PlotWidget, rows: int, columns: int) -> None:
    """Show exactly the cells of a (rows, columns) image: -0.5 to n - 0.5 on both axes, no padding
    (no aspect lock either: it would pad one axis to the widget's shape)."""
    widget.setAspectLocked(False)
    widget.setRange(xRange=(-0.5, columns - 0.5), yRange=(-0.5, rows - 0.5), padding=0)


class ImagePlot:
    """A pyqtgraph image in a plot with a colour bar: rows down, columns across, NaN blank."""

    def __init__(self, title: str, bottom: str, left: str, colormap: str, label: str,
                 levels: tuple[float, float] = (0.0, 1.0), shape: tuple[int, int] = (24, 24)):
        self.widget = pg.PlotWidget(title=title)
        self.widget.setLabel("bottom", bottom)
        self.widget.setLabel("left", left)
        self.widget.invertY(True)
        self.image = pg.ImageItem()
        self.widget.addItem(self.image)
        self.bar = pg.ColorBarItem(values=levels, colorMap=pg.colormap.get(colormap), label=label,
                                   interactive=False)
        self.bar.setImageItem(self.image, insert_in=self.widget.getPlotItem())
        self._shape = tuple(shape)
        exact_range(self.widget, *shape)  # the cells it will show, before any data

    def show(self, values: np.ndarray, levels: tuple[float, float] | None = None) -> None:
        values = np.asarray(values, dtype=float)
        self.image.setImage(values, autoLevels=False)
        self.image.setRect(-0.5, -0.5, values.shape[1], values.shape[0])
        if values.shape != self._shape:  # the view fits the array, not the autorange's guess
            self._shape = values.shape
            exact_range(self.widget, *values.shape)
        if levels is not None:
            self.bar.setLevels(levels)


def cumulative(values) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values, cumulative fraction 1/n .. 1): the empirical distribution function."""
    v = np.sort(np.asarray(values, dtype=float))
    return v, np.arange(1, v.size + 1) / max(v.size, 1)


def latest_by_cell(records) -> dict:
    """The last conductance (S) read of every cell, from any record with wordline, bitline and
    conductance_s (transfer and ISPVA records)."""
    out = {}
    for r in records:
        g = getattr(r, "conductance_s", None)
        if g is not None and hasattr(r, "wordline") and hasattr(r, "bitline"):
            out[(r.wordline, r.bitline)] = g
    return out


class LevelCdf:
    """Cumulative distribution of tuned conductances, one curve per target level (nS)."""

    def __init__(self, title: str):
        self.widget = _plot(title, "conductance", "fraction of cells at or below", bottom_units="S")
        self.legend = side_legend(self.widget, "80 nS")
        empty_range(self.widget, (0, 90e-9), (0, 1.02))
        self.curves: dict[float, pg.PlotDataItem] = {}

    def show(self, by_level: dict[float, list[float]]) -> None:
        changed = False
        for level in sorted(by_level):
            curve = self.curves.get(level)
            if curve is None:
                colour = LEVEL_COLOURS[int(round(level / 10e-9)) - 1 if 1 <= round(level / 10e-9) <= 8 else 0]
                curve = self.curves[level] = self.widget.plot(
                    [], [], pen=pg.mkPen(colour, width=2), stepMode=None, symbol="o", symbolSize=3,
                    symbolBrush=colour, symbolPen=None)
                changed = True
            x, y = cumulative(by_level[level])
            curve.setData(x, y)
        for level in [lv for lv in self.curves if lv not in by_level]:
            self.widget.removeItem(self.curves.pop(level))
            changed = True
        if changed:  # the legend lists the levels in value order, whichever came first
            self.legend.clear()
            for level in sorted(self.curves):
                self.legend.addItem(self.curves[level], f"{level * 1e9:.0f} nS")
            self.legend.updateGeometry()

    def legend_names(self) -> list[str]:
        """The legend's entries, top to bottom."""
        return [label.text for _, label in self.legend.items]


class IspvaPlots(PlotSet):
    """Cumulative distribution of the tuned (final) conductances per level, and the conductance
    after every pulse of the run, coloured by the cell's target level (dashed: the levels)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.cdf = LevelCdf("tuned conductance per level (cumulative)")
        self.pulses = _plot("conductance after each pulse", "pulse (whole run)", "conductance", left_units="S")
        empty_range(self.pulses, (0, 50), (0, 90e-9))
        self.scatter = pg.ScatterPlotItem(size=4, pen=None)
        self.pulses.addItem(self.scatter)
        for k in range(1, 9):
            self.pulses.addItem(pg.InfiniteLine(k * 10e-9, angle=0, pen=pg.mkPen(
                LEVEL_COLOURS[k - 1], width=1, style=QtCore.Qt.PenStyle.DashLine)))
        layout.addWidget(self.cdf.widget, 3)
        layout.addWidget(self.pulses, 2)
        self.clear()

    def clear(self) -> None:
        self.by_level: dict[float, list[float]] = {}
        self._g: list[float] = []
        self._level: list[int] = []
        self._dirty = True
        self.redraw()

    def add_records(self, records) -> None:
        for r in records:
            if hasattr(r, "converged"):  # IspvaResult
                self.by_level.setdefault(round(r.target_s, 12), []).append(r.conductance_s)
            elif hasattr(r, "pulse_v") and hasattr(r, "conductance_s"):  # IspvaPulse
                self._g.append(r.conductance_s)
                self._level.append(min(max(int(round(r.target_s / 10e-9)), 1), 8))
            else:
                continue
            self._dirty = True

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.cdf.show(self.by_level)
        brushes = [pg.mkBrush(LEVEL_COLOURS[k - 1]) for k in self._level]
        self.scatter.setData(x=np.arange(1, len(self._g) + 1), y=np.asarray(self._g, dtype=float), brush=brushes)

    def plot_items(self):
        return {"tuned conductance per level": self.cdf.widget.getPlotItem(),
                "conductance after each pulse": self.pulses.getPlotItem()}


class TransferPlots(PlotSet):
    """The chip's conductance map, updated cell by cell as the transfer reads and programs; the
    target and achieved weight maps (G+ - G- of each pair, in levels of 10 nS); the cumulative
    distribution of the programmed cells' conductances per level."""

    def __init__(self, parent=None):
        super().__init__(parent)
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.chip = ImagePlot("chip conductance (nS), cell by cell", "bitline", "wordline", "viridis", "G (nS)",
                              (0, 80))
        self.target = ImagePlot("target weights (levels)", "weight column", "wordline", "CET-D1", "level", (-8, 8),
                                (24, 10))
        self.achieved = ImagePlot("achieved weights: (G+ - G-) / 10 nS", "weight column", "wordline", "CET-D1",
                                  "level", (-8, 8), (24, 10))
        self.cdf = LevelCdf("programmed cells per level, as verified (cumulative)")
        grid.addWidget(self.chip.widget, 0, 0)
        grid.addWidget(self.cdf.widget, 0, 1)
        grid.addWidget(self.target.widget, 1, 0)
        grid.addWidget(self.achieved.widget, 1, 1)
        self.shape = (24, 24)
        self.levels = None
        self.mapping = "blocked"
        self.clear()

    def set_context(self, settings: dict, inputs: dict) -> None:
        from rramlab.protocols.weights import check_levels

        levels = settings.get("levels")
        self.levels = check_levels(np.asarray(levels)) if levels is not None else None
        self.mapping = settings.get("transfer", {}).get("mapping", "blocked")

    def clear(self) -> None:
        self.g = np.full(self.shape, np.nan)
        self.tuned: dict[tuple[int, int], tuple[float, float]] = {}  # cell -> (target, verified G) (S)
        self._dirty = True
        self.redraw()

    def add_records(self, records) -> None:
        for r in records:
            g = getattr(r, "conductance_s", None)
            if g is None or not hasattr(r, "wordline") or not hasattr(r, "bitline"):
                continue
            w, b = r.wordline, r.bitline
            if w >= self.g.shape[0] or b >= self.g.shape[1]:
                grown = np.full((max(w + 1, self.g.shape[0]), max(b + 1, self.g.shape[1])), np.nan)
                grown[:self.g.shape[0], :self.g.shape[1]] = self.g
                self.g = grown
            self.g[w, b] = g
            if r.target_s > 0 and (hasattr(r, "converged") or getattr(r, "stage", "") in ("settled", "final")):
                self.tuned[(w, b)] = (r.target_s, g)  # a verified end of programming, not a first read
            self._dirty = True

    def achieved_levels(self) -> np.ndarray | None:
        """(rows, columns) G+ - G- in levels of 10 nS from the latest reads (NaN: a cell not read)."""
        from rramlab.protocols.weights import LEVEL_SPACING_S, weight_map

        if self.levels is None:
            return None
        rows, cols = self.levels.shape
        region = self.g[:rows, :2 * cols]
        if region.shape != (rows, 2 * cols):
            return None
        return weight_map(region, cols, self.mapping) / LEVEL_SPACING_S

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.chip.show(self.g * 1e9, (0.0, 80.0))
        if self.levels is not None:
            self.target.show(self.levels, (-8, 8))
            self.achieved.show(self.achieved_levels(), (-8, 8))
        by_level: dict[float, list[float]] = {}
        for t, g in self.tuned.values():
            by_level.setdefault(round(t, 12), []).append(g)
        self.cdf.show(by_level)

    def plot_items(self):
        return {"chip conductance map": self.chip.widget.getPlotItem(),
                "target weights": self.target.widget.getPlotItem(),
                "achieved weights": self.achieved.widget.getPlotItem(),
                "programmed cells per level": self.cdf.widget.getPlotItem()}


def confusion(labels, predictions, classes: int = 10) -> np.ndarray:
    """(classes, classes) counts, row = true label, column = prediction."""
    m = np.zeros((classes, classes), dtype=int)
    np.add.at(m, (np.asarray(labels, dtype=int), np.asarray(predictions, dtype=int)), 1)
    return m


class InferencePlots(PlotSet):
    """One image (picked with the spin box, default the latest): its digit, its output currents
    I+ - I- per class at each time step, and its class scores (summed over the steps); and the
    confusion matrix of every image so far."""

    def __init__(self, image_source=None, parent=None):
        super().__init__(parent)
        self.image_source = image_source  # index -> (784,) pixels of that test image, or None
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("show image"))
        self.pick = QtWidgets.QSpinBox()
        self.pick.setObjectName("inference_pick")
        self.pick.setSpecialValueText("latest")
        self.pick.setRange(0, 0)
        self.pick.valueChanged.connect(self._picked)
        row.addWidget(self.pick)
        self.caption = QtWidgets.QLabel()
        row.addWidget(self.caption, 1)
        grid.addLayout(row, 0, 0, 1, 2)
        self.digit = ImagePlot("test image", "", "", "CET-L1", "pixel", (0, 1), (28, 28))
        self.digit.bar.setVisible(False)
        for axis in ("left", "bottom"):
            self.digit.widget.getPlotItem().hideAxis(axis)
        self.steps = _plot("output currents per step", "time step", "I+ - I-", left_units="A")
        empty_range(self.steps, (1, 25), (-200e-9, 200e-9))
        legend = side_legend(self.steps, "class 9")
        self.step_curves = [self.steps.plot([], [], pen=pg.mkPen(CLASS_COLOURS[c], width=1.5)) for c in range(10)]
        for c, curve in enumerate(self.step_curves):
            legend.addItem(curve, f"class {c}")
        self.scores = _plot("class scores (summed over the steps)", "class", "I+ - I-", left_units="A")
        empty_range(self.scores, (-0.5, 9.5), (-2e-6, 2e-6))
        self.bars = pg.BarGraphItem(x=np.arange(10), height=np.zeros(10), width=0.7, brush="#2471a3")
        self.scores.addItem(self.bars)
        self.matrix = ImagePlot("confusion matrix", "prediction", "true digit", "viridis", "images", (0, 1), (10, 10))
        self.matrix_text = []
        for t in range(10):
            for p in range(10):
                item = pg.TextItem("", color="w", anchor=(0.5, 0.5))
                item.setPos(p, t)
                self.matrix.widget.addItem(item)
                self.matrix_text.append(item)
        grid.addWidget(self.digit.widget, 1, 0)
        grid.addWidget(self.scores, 1, 1)
        grid.addWidget(self.steps, 2, 0)
        grid.addWidget(self.matrix.widget, 2, 1)
        self.clear()

    def clear(self) -> None:
        self.records: list = []
        self._dirty = True
        self.redraw()

    def add_records(self, records) -> None:
        self.records.extend(records)
        self._dirty = True

    def _picked(self, *_):
        self._dirty = True
        self.redraw()

    def confusion_matrix(self) -> np.ndarray:
        return confusion([r.label for r in self.records], [r.prediction for r in self.records])

    def shown(self):
        """The record the image plots show (None before the first)."""
        if not self.records:
            return None
        k = self.pick.value()
        return self.records[-1] if k == 0 else self.records[min(k, len(self.records)) - 1]

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.pick.blockSignals(True)
        self.pick.setRange(0, len(self.records))
        self.pick.blockSignals(False)
        m = self.confusion_matrix()
        self.matrix.show(m, (0, max(1, int(m.max()))))
        for k, item in enumerate(self.matrix_text):
            n = int(m.flat[k])
            item.setText(str(n) if n else "")
        r = self.shown()
        if r is None:
            self.caption.setText("no image yet")
            for c in self.step_curves:
                c.setData([], [])
            self.bars.setOpts(height=np.zeros(10))
            self.digit.show(np.zeros((28, 28)))
            return
        currents = np.asarray(r.class_currents, dtype=float)
        for c, curve in enumerate(self.step_curves):
            curve.setData(np.arange(1, currents.shape[0] + 1), currents[:, c])
        totals = currents.sum(axis=0)
        brushes = ["#c0392b" if c == r.prediction else "#2471a3" for c in range(10)]
        self.bars.setOpts(height=totals, brushes=brushes)
        right = sum(x.prediction == x.label for x in self.records)
        self.caption.setText(f"test image {r.image}: label {r.label}, prediction {r.prediction} "
                             f"({'right' if r.prediction == r.label else 'wrong'}); {right} of "
                             f"{len(self.records)} right ({right / len(self.records):.0%})")
        pixels = self.image_source(r.image) if self.image_source is not None else None
        self.digit.show(np.zeros((28, 28)) if pixels is None else np.asarray(pixels, float).reshape(28, 28))

    def plot_items(self):
        return {"confusion matrix": self.matrix.widget.getPlotItem(),
                "output currents per step": self.steps.getPlotItem(),
                "class scores": self.scores.getPlotItem(),
                "test image": self.digit.widget.getPlotItem()}


class PowerPlots(PlotSet):
    """Array power over the time steps (the latest image, and the mean over the images so far) and
    the mean P_avg,array per class (nW)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.over_time = _plot("array power over time (nW)", "time step", "power", left_units="W")
        empty_range(self.over_time, (1, 25), (0, 2e-6))
        legend = side_legend(self.over_time, "mean over images")
        self.latest_curve = self.over_time.plot([], [], pen=pg.mkPen("#999", width=1))
        self.mean_curve = self.over_time.plot([], [], pen=pg.mkPen("#c0392b", width=2.5))
        legend.addItem(self.latest_curve, "latest image")
        legend.addItem(self.mean_curve, "mean over images")
        self.per_class = _plot("average power per class, eqn 3 (nW)", "class", "P_avg,array", left_units="W")
        empty_range(self.per_class, (-0.5, 9.5), (0, 2e-6))
        self.bars = pg.BarGraphItem(x=np.arange(10), height=np.zeros(10), width=0.7, brush="#2471a3")
        self.per_class.addItem(self.bars)
        layout.addWidget(self.over_time)
        layout.addWidget(self.per_class)
        self.clear()

    def clear(self) -> None:
        self.records: list = []
        self._dirty = True
        self.redraw()

    def add_records(self, records) -> None:
        self.records.extend(records)
        self._dirty = True

    def class_means(self) -> np.ndarray:
        """Mean P_avg,array (W) per class over the records so far; NaN for a class with none."""
        out = np.full(10, np.nan)
        for c in range(10):
            vals = [r.average_w for r in self.records if r.label == c]
            if vals:
                out[c] = float(np.mean(vals))
        return out

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        if not self.records:
            self.latest_curve.setData([], [])
            self.mean_curve.setData([], [])
            self.bars.setOpts(height=np.zeros(10))
            self.per_class.setTitle("average power per class, eqn 3 (nW)")
            return
        traces = np.array([r.array_power_w for r in self.records], dtype=float)
        steps = np.arange(1, traces.shape[1] + 1)
        self.latest_curve.setData(steps, traces[-1])
        self.mean_curve.setData(steps, traces.mean(axis=0))
        self.bars.setOpts(height=np.nan_to_num(self.class_means()))
        mean = float(np.mean([r.average_w for r in self.records]))
        self.per_class.setTitle(f"average power per class, eqn 3 (nW); all {len(self.records)} images: "
                                f"{mean * 1e9:.1f} nW")

    def plot_items(self):
        return {"power per class": self.per_class.getPlotItem(), "power over time": self.over_time.getPlotItem()}
