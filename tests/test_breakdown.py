"""Hard breakdown in the twin (sim/device.py BREAKDOWN_V; the paper: at 4.4 V on average, permanently
altering the cell): the safe operating area keeps every normal caller below every cell's breakdown
voltage; a pulse that goes around it (the twin's own ``_pulse``, below the seam's checks) breaks the
cell for good, and the broken cell shows in its read current, the map and an I-V sweep, alike on
the fast engine and on ngspice; the off switch keeps the cell intact; chip files keep it broken."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rramlab.drivers.interface import DEVICE_CEILING, ArrayGeometry, SafetyError, half_bias_voltages
from rramlab.protocols import array_map, iv
from rramlab.sim.device import BREAKDOWN_V, DEVICE_PRESETS, draw_breakdown_voltages
from rramlab.sim.virtual_array import VirtualArray

nA, uA = 1e-9, 1e-6


def _around_the_seam(chip, wordline, bitline, volts, width=2e-6):
    """A half-bias pulse of ``volts`` sent to the twin's engines directly, past the seam's checks."""
    wl, bl = half_bias_voltages(chip.geometry, wordline, bitline, volts)
    chip._pulse(wl, bl, width, "rect")


def test_every_cells_breakdown_lies_above_the_safe_operating_area_and_averages_4_4_v():
    for name, device in DEVICE_PRESETS.items():
        assert device.breakdown_v == BREAKDOWN_V == 4.4, name
    ceiling = max(DEVICE_CEILING.max_set_voltage, -DEVICE_CEILING.min_reset_voltage, DEVICE_CEILING.max_line_voltage)
    drawn = np.concatenate([draw_breakdown_voltages(DEVICE_PRESETS["measured"], (24, 24), seed).ravel()
                            for seed in range(5)])
    assert drawn.min() > ceiling  # no cell of any chip breaks inside the safe operating area
    assert drawn.mean() == pytest.approx(4.4, abs=0.01) and 0.015 < drawn.std() < 0.04
    a, b = VirtualArray(seed=3), VirtualArray(seed=3)
    assert np.array_equal(a.cell_breakdown_v, b.cell_breakdown_v)
    # drawn beside the chip's generator: the chip's switches and errors are those it always had
    off = VirtualArray(seed=3, device=replace(DEVICE_PRESETS["measured"], breakdown_v=None))
    assert off.cell_breakdown_v is None and off.rng.bit_generator.state == a.rng.bit_generator.state


def test_the_seam_keeps_every_normal_caller_below_breakdown():
    chip = VirtualArray(seed=0, engine="fast")
    with pytest.raises(SafetyError):
        chip.pulse_cell(3, 7, 4.4, 2e-6)
    with pytest.raises(SafetyError):
        chip.sweep_cell(3, 7, [0.0, 4.4])
    chip.pulse_cell(3, 7, DEVICE_CEILING.max_set_voltage, 2e-6)  # the highest set the seam allows
    list(iv.run(chip, iv.plan(iv.IvSettings(set_peak_v=4.3, reset_peak_v=-2.5, step_v=0.05), chip, (3, 8))))
    assert chip.broken_cells == [] and not chip.breakdown_conductance.any()


def test_a_pulse_around_the_seam_breaks_the_cell_for_good_and_read_map_and_iv_show_it():
    chip = VirtualArray(seed=0, engine="fast")
    before = chip.read_cell(3, 7, 1.0)
    _around_the_seam(chip, 3, 7, 4.7)
    assert chip.broken_cells == [(3, 7)]  # the half-selected cells saw 2.35 V: intact
    broken = chip.read_cell(3, 7, 1.0)
    # the 10 kohm path: about 100 uA at 1 V, three orders above the top level (80 nA)
    assert 90 * uA < broken < 101 * uA and before < 2 * nA
    chip.pulse_cell(3, 7, -1.6, 2e-6)  # a reset cannot undo it
    chip.pulse_cell(3, 7, -2.5, 2e-6)
    assert chip.read_cell(3, 7, 1.0) > 90 * uA
    records = list(array_map.run(chip, array_map.plan(array_map.MapSettings(), chip, region=((2, 5), (6, 9)))))
    reads = {(r.wordline, r.bitline): r.conductance_s for r in records[:-1]}
    assert reads[(3, 7)] > 90 * uA and all(g < 100 * nA for cell, g in reads.items() if cell != (3, 7))
    # the I-V of a broken cell is the ohmic path's: 10 uA already at 0.1 V, linear through 0 V
    points = list(iv.run(chip, iv.plan(iv.IvSettings(step_v=0.1), chip, (3, 7))))
    at = {round(p.voltage_v, 3): p.current_a for p in points if p.leg == 0}
    assert at[0.1] == pytest.approx(1e-5, rel=0.05) and at[1.0] == pytest.approx(10 * at[0.1], rel=0.05)


def test_fast_and_ngspice_break_the_same_cell_and_read_it_broken_alike():
    small = dict(geometry=ArrayGeometry(4, 4), seed=1)
    fast, spice = VirtualArray(engine="fast", **small), VirtualArray(engine="spice", **small)
    for chip in (fast, spice):
        _around_the_seam(chip, 1, 2, 4.7)
    assert fast.broken_cells == spice.broken_cells == [(1, 2)]
    assert np.array_equal(fast.switch_states, spice.switch_states)
    cells = [(w, b) for w in range(4) for b in range(4)]
    reads = {}
    for chip in (fast, spice):
        for engine in ("fast", "spice"):
            chip.engine = engine
            reads[(chip is fast, engine)] = np.array(chip.read(cells, 1.0))
    ref = reads[(True, "fast")]
    for key, r in reads.items():
        assert np.allclose(r, ref, rtol=1e-3, atol=1e-13), key
    assert ref[cells.index((1, 2))] > 90 * uA and np.delete(ref, cells.index((1, 2))).max() < 100 * nA


def test_the_off_switch_keeps_a_cell_intact_past_breakdown():
    device = replace(DEVICE_PRESETS["measured"], breakdown_v=None)
    chip, plain = VirtualArray(seed=0, engine="fast", device=device), VirtualArray(seed=0, engine="fast")
    _around_the_seam(chip, 3, 7, 4.7)
    _around_the_seam(plain, 3, 7, 4.7)
    assert chip.broken_cells == [] and plain.broken_cells == [(3, 7)]
    assert chip.read_cell(3, 7, 1.0) < 100 * nA  # every switch on, the top of the window: not broken


def test_a_chip_file_keeps_a_broken_cell_broken(tmp_path):
    chip = VirtualArray(seed=0, engine="fast")
    _around_the_seam(chip, 3, 7, 4.7)
    path = chip.save_chip(tmp_path / "broken.npz")
    again = VirtualArray.load_chip(path)
    assert again.broken_cells == [(3, 7)]
    assert np.array_equal(again.cell_breakdown_v, chip.cell_breakdown_v)
    assert again.read_cell(3, 7, 1.0) == pytest.approx(chip.read_cell(3, 7, 1.0), rel=1e-9)


@pytest.mark.parametrize("bad, message", [({"breakdown_v": -1.0}, "breakdown_v must be a positive voltage or None"),
                                          ({"breakdown_floor_v": 5.0}, "must not exceed breakdown_v"),
                                          ({"breakdown_resistance": 0.0}, "breakdown_resistance must be positive")])
def test_bad_breakdown_parameters_are_refused_naming_them(bad, message):
    with pytest.raises(ValueError, match=message):
        replace(DEVICE_PRESETS["measured"], **bad)


def test_a_broken_cell_neither_wears_nor_drifts():
    from rramlab.sim.aging import Aging

    aged, plain = (VirtualArray(seed=0, engine="fast", aging=Aging()), VirtualArray(seed=0, engine="fast"))
    for chip in (aged, plain):
        _around_the_seam(chip, 3, 7, 4.7)
        chip.pulse_cell(3, 8, 4.2, 2e-6)
        chip.advance_time(3e8)
    assert aged.read_cell(3, 7, 1.0) == pytest.approx(plain.read_cell(3, 7, 1.0), rel=1e-12)
    assert aged.read_cell(3, 8, 1.0) < 0.9 * plain.read_cell(3, 8, 1.0)  # its intact neighbour drifted


def test_broken_cells_are_those_above_1_us_in_wordline_order():
    g = [[2e-9, 1.2e-6], [80e-9, float("nan")], [1e-4, 0.9e-6]]
    assert array_map.broken_cells([4, 5, 6], [10, 11], g) == [(4, 11), (6, 10)]
    assert array_map.broken_cells([0], [0], [[array_map.BROKEN_ABOVE_S]]) == []  # at the threshold: intact


def test_rramlab_map_names_a_broken_cell_in_its_summary_its_store_and_its_png(tmp_path, capsys):
    from rramlab.app.cli import main
    from rramlab.protocols.store import RunStore

    chip = VirtualArray(seed=0, engine="fast")
    _around_the_seam(chip, 3, 7, 4.7)
    path = chip.save_chip(tmp_path / "broken.npz")
    png, store = tmp_path / "map.png", tmp_path / "runs.sqlite"
    assert main(["map", "--chip", str(path), "--region", "2:5,6:9", "--png", str(png), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "1 broken cell (above 1 uS, a hard breakdown's path): 3,7" in out
    assert png.stat().st_size > 10_000
    with RunStore(store) as runs:
        info = runs.runs()[-1]
        assert info.summary["broken_cells"] == [[3, 7]]
    # an intact chip says nothing of broken cells
    assert main(["map", "--region", "2:5,6:9", "--seed", "0", "--store", str(store)]) == 0
    assert "broken" not in capsys.readouterr().out
