"""Aged chips in chip files (``--save-chip`` / ``--chip``): a chip saved with wear and drift reloads
with the same aging parameters and state (each cell's cycles, cycles to failure, programming times,
the simulated clock), reads the same and goes on aging from there; a damaged aging state is refused
in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rramlab.app.cli import main
from rramlab.protocols.store import RunStore
from rramlab.sim.aging import Aging
from rramlab.sim.virtual_array import ChipFileError, VirtualArray

nA = 1e-9


def _aged_chip():
    chip = VirtualArray(seed=2, engine="fast", aging=Aging(wear_cycles_to_failure=400.0, temperature_k=340.0))
    for _ in range(30):  # wear on one cell
        chip.pulse_cell(3, 7, 4.2, 2e-6)
        chip.pulse_cell(3, 7, -1.6, 2e-6)
    chip.pulse_cell(3, 7, 4.2, 2e-6)
    chip.advance_time(50.0)
    chip.pulse_cell(0, 0, 3.6, 2e-6)  # programmed later: drifts from a later time
    chip.advance_time(1e5)
    return chip


def test_an_aged_chip_reloads_with_its_aging_parameters_and_state_and_ages_on(tmp_path):
    chip = _aged_chip()
    again = VirtualArray.load_chip(chip.save_chip(tmp_path / "aged.npz"), engine="fast")
    assert again.aging is not None and again.aging.aging == chip.aging.aging
    for name in ("cycles", "cycles_to_failure", "last_polarity", "programmed_at_s"):
        assert np.array_equal(getattr(again.aging, name), getattr(chip.aging, name)), name
    assert again.aging.cycles[3, 7] == 30 and again.aging.clock_s == chip.aging.clock_s == again.clock_s
    cells = [(3, 7), (0, 0), (5, 5)]
    assert again.read(cells, 1.0) == pytest.approx(chip.read(cells, 1.0), rel=1e-12)
    fresh = VirtualArray(seed=2, engine="fast")
    fresh.pulse_cell(3, 7, 4.2, 2e-6)
    assert again.read_cell(3, 7, 1.0) < 0.8 * fresh.read_cell(3, 7, 1.0)  # worn and drifted: visibly aged
    # the two go on aging alike: more cycles and more time
    for c in (chip, again):
        c.pulse_cell(3, 7, -1.6, 2e-6)
        c.pulse_cell(3, 7, 4.2, 2e-6)
        c.advance_time(3e7)
    assert again.read(cells, 1.0) == pytest.approx(chip.read(cells, 1.0), rel=1e-12)
    assert again.aging.cycles[3, 7] == 31


def test_a_chip_without_aging_reloads_without_it(tmp_path):
    chip = VirtualArray(seed=2, engine="fast")
    chip.advance_time(10.0)
    again = VirtualArray.load_chip(chip.save_chip(tmp_path / "plain.npz"))
    assert again.aging is None and again.clock_s == 10.0


def test_the_cli_continues_an_aged_chip_from_its_file(tmp_path, capsys):
    chip, db = tmp_path / "aged.npz", str(tmp_path / "s.db")
    common = ["--read-every", "50", "--stop-when-closed", "0", "--store", db, "--no-progress"]
    assert main(["endurance", "--cycles", "200", "--aging", "--cycles-to-failure", "300", "--save-chip", str(chip),
                 *common]) == 0
    # without --aging: the chip's own aging goes on, from 200 completed cycles
    assert main(["endurance", "--chip", str(chip), "--cycles", "50", *common]) == 0
    out = capsys.readouterr().out
    assert "(with wear and drift)" in out.split("run 2")[0].splitlines()[-1]
    with RunStore(db) as store:
        first = store.records(2, "EnduranceRecord")[0].data
    saved = VirtualArray.load_chip(chip)
    ctf = float(saved.aging.cycles_to_failure[0, 0])
    fresh_lrs, hrs = 7.999967931909015e-08, first["hrs_a"]
    # its LRS read follows 200 + 49 completed cycles (the wear model's closed form)
    model = hrs + (fresh_lrs - hrs) * float(saved.aging.aging.wear_factor(249, ctf))
    assert first["cycle"] == 50
    assert first["lrs_a"] == pytest.approx(model, rel=0.05) and first["lrs_a"] < 0.5 * fresh_lrs
    # a different --cycles-to-failure cannot re-draw the chip's cells
    assert main(["endurance", "--chip", str(chip), "--cycles", "5", "--aging", "--cycles-to-failure", "500",
                 *common]) == 1
    assert "--cycles-to-failure 500 differs from the 300 the --chip's cells were drawn with" in capsys.readouterr().err


def test_a_damaged_aging_state_is_refused_in_one_line(tmp_path):
    path = _aged_chip().save_chip(tmp_path / "aged.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["aging_cycles"] = arrays["aging_cycles"][:3]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ChipFileError, match="aging_cycles has shape"):
        VirtualArray.load_chip(bad)
    meta = json.loads(str(arrays.pop("meta")))
    meta["aging"]["parameters"]["temperature_k"] = -3
    arrays["aging_cycles"] = np.zeros((24, 24), dtype=np.int64)
    np.savez(bad, meta=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(ChipFileError, match="temperature_k must be a positive number"):
        VirtualArray.load_chip(bad)
