"""Fitting the compact model to a chip's measurements (sim/fit.py): the fit recovers a hidden chip.

The hidden chip is the twin drawn with a seed (device-to-device variability); the fit sees only the
ISPP records (pulse voltages and read currents), never the chip's parameters.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rramlab.protocols import ispp
from rramlab.sim import fit
from rramlab.sim.device import device_preset
from rramlab.sim.virtual_array import Variability, VirtualArray

SETTINGS = ispp.IsppSettings(cycles=1)
STEP = SETTINGS.set_step_v
#: 24 cells spread over the 24 x 24 chip, one per wordline
CELLS = [(k, (7 * k) % 24) for k in range(24)]


def _measure(chip, cells, settings=SETTINGS):
    rows = []
    for cell in cells:
        rows += [dataclasses.asdict(r) for r in ispp.run(chip, ispp.plan(settings, cell, chip))]
    return rows


@pytest.fixture(scope="module")
def hidden():
    """The hidden chip (seed 7, typical spreads) and the ISPP records of 24 of its cells."""
    chip = VirtualArray(seed=7, variability=Variability.typical(), engine="fast")
    return chip, _measure(chip, CELLS)


def _truth(chip, fitted):
    """The hidden cell's (turn_on, turn_off, on_resistance) in turn-on order, as the fit orders them."""
    t = chip.cell_switches[fitted.wordline, fitted.bitline]
    order = np.argsort(t[:, 0])
    return t[order, 0], t[order, 1], t[order, 2]


def _fitted_ron(f):
    """Mask of the on-resistances the fit says it constrained (not left at the prior)."""
    weak = {int(name.split()[1]) for name in f.free if name.startswith("on_resistance ")}
    return np.array([k not in weak for k in range(len(f.on_resistance))])


def _check_recovery(chip, fits, steps, ron_tolerance, rms_a):
    assert len(fits) == len(CELLS)
    for f in fits:
        on, _, ron = _truth(chip, f)
        assert np.all(np.abs(f.turn_on_v - on) <= steps * STEP), (f.wordline, f.bitline, f.turn_on_v - on)
        seen = _fitted_ron(f)
        # only the top switch (50 kohm in series with Ri's 12 Mohm) may be unseen by 1 V reads
        assert seen[:-1].all(), (f.wordline, f.bitline, f.free)
        assert np.all(np.abs(f.on_resistance[seen] / ron[seen] - 1) <= ron_tolerance), \
            (f.wordline, f.bitline, f.on_resistance / ron - 1)
        assert f.rms_a < rms_a, (f.wordline, f.bitline, f.rms_a)


def test_fit_recovers_the_hidden_chips_thresholds_and_on_resistances(hidden):
    chip, rows = hidden
    fits = fit.fit_cells(fit.sequences_from_ispp(rows, dataclasses.asdict(SETTINGS)))
    _check_recovery(chip, fits, steps=1, ron_tolerance=0.10, rms_a=0.5e-9)
    # Ri's prefactor (1 % spread) comes back from the top levels
    for f in fits:
        assert abs(f.insulator_r0 / chip.cell_insulator_r0[f.wordline, f.bitline] - 1) < 0.005


def test_the_default_device_fits_back_to_its_preset():
    preset = device_preset("measured")
    with VirtualArray.lone_device(seed=0, programming_error_sigma=0.0) as chip:
        rows = _measure(chip, [(0, 0)], ispp.IsppSettings(cycles=2))
    (f,) = fit.fit_cells(fit.sequences_from_ispp(rows, dataclasses.asdict(ispp.IsppSettings(cycles=2))))
    assert np.all(np.abs(f.turn_on_v - preset.turn_on_thresholds()) <= STEP)
    ron = np.array([s.on_resistance for s in preset.switches])
    seen = _fitted_ron(f)
    assert np.all(np.abs(f.on_resistance[seen] / ron[seen] - 1) <= 0.05)
    assert np.all(np.abs(f.turn_off_v - preset.turn_off_thresholds()) <= SETTINGS.reset_step_v)
    assert f.rms_a < 0.1e-9
    # what a 1 V read cannot see keeps the prior and says so
    assert "insulator_k" in f.free and "contact_r" in f.free


def test_too_few_records_are_refused_in_one_line():
    seq = fit.CellSequence(0, 0, np.full(5, 3.0), np.full(5, 1.6e-9), 1.0, ("set",) * 5, np.ones(5, int),
                           0.025, 0.05)
    with pytest.raises(fit.FitError) as info:
        fit.fit_cell(seq)
    text = str(info.value)
    assert "\n" not in text and "5 records" in text and "rramlab ispp" in text
