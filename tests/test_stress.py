"""Endurance, retention and disturb (protocols/endurance.py, retention.py, disturb.py) and the twin's
aging (sim/aging.py): aging off reads today's twin exactly, aging on matches its closed form, the
CLI end to end on the twin and on the virtual bench (VISA log ends at 0 V, matrix open), and an
over-limit plan is refused before any instrument command."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rramlab.app.cli import main
from rramlab.protocols import endurance
from rramlab.sim.aging import Aging, AgingState
from rramlab.sim.nodal import device_current_exact
from rramlab.sim.virtual_array import VirtualArray
from tests.test_stop_paths import bench_state, visa_writes

ROOT = Path(__file__).resolve().parents[1]
VIRTUAL_BENCH = str(ROOT / "drivers" / "benches" / "virtual.toml")


def _hrs_current(chip, v=1.0) -> float:
    g_off = float(chip._off_conductance().sum())
    return float(device_current_exact(v, g_off, chip.device)[0])


# ----- endurance -----

def test_read_cycles_are_log_spaced_or_every_k_and_always_end_on_the_last_cycle():
    log = list(endurance.read_cycles(1000, "log", 10))
    assert log[:10] == [1, 2, 3, 4, 5, 6, 8, 10, 13, 16]
    assert log[-1] == 1000 and len(log) == len(set(log)) and log == sorted(log)
    assert list(endurance.read_cycles(25, "10")) == [10, 20, 25]
    assert list(endurance.read_cycles(20, "10")) == [10, 20]
    with pytest.raises(Exception, match="--read-every"):
        list(endurance.read_cycles(10, "often"))


def test_endurance_without_aging_reads_exactly_todays_twin():
    s = endurance.EnduranceSettings(cycles=12, read_every="3")
    for aging in (None, Aging.off()):
        chip = VirtualArray.lone_device(engine="fast", aging=aging)
        records = list(endurance.run(chip, endurance.plan(s, (0, 0), chip)))
        ref = VirtualArray.lone_device(engine="fast")
        expected = []
        for cycle in range(1, 13):
            ref.pulse_cell(0, 0, 4.2, 2e-6)
            lrs = ref.read_cell(0, 0, 1.0)
            ref.pulse_cell(0, 0, -1.6, 2e-6)
            hrs = ref.read_cell(0, 0, 1.0)
            if cycle % 3 == 0:
                expected.append((cycle, lrs, hrs))
        assert [(r.cycle, r.lrs_a, r.hrs_a) for r in records] == expected


def test_endurance_with_wear_matches_the_closed_form_and_ends_when_the_window_closes():
    aging = Aging(wear_cycles_to_failure=400.0, wear_spread=0.0, drift=False)
    chip = VirtualArray.lone_device(engine="fast", aging=aging)
    s = endurance.EnduranceSettings(cycles=1000, min_window_ratio=10.0)
    summariser = endurance.EnduranceSummariser(s.min_window_ratio)
    fresh_lrs, hrs = 7.999967931909015e-08, _hrs_current(chip)
    records = []
    for r in endurance.run(chip, endurance.plan(s, (0, 0), chip)):
        summariser.add(r)
        records.append(r)
    for r in records:
        # the LRS read of cycle n follows n - 1 completed cycles (a cycle counts at its reset)
        model = hrs + (fresh_lrs - hrs) * float(aging.wear_factor(r.cycle - 1, 400.0))
        assert r.lrs_a == pytest.approx(model, rel=0.05)
    # closed form: ratio < 10 when 1 - sqrt(n / 400) < (10 * hrs - hrs) / (lrs - hrs)
    x = (10 * hrs - hrs) / (fresh_lrs - hrs)
    n_closed = 400.0 * (1 - x) ** 2
    assert records[-1].window_ratio < 10.0 and summariser.closed_at == records[-1].cycle
    assert records[-1].cycle < 1000  # the run ended there
    # the log-spaced reads bracket the closed form's cycle (a read's LRS follows cycle - 1 completed cycles)
    assert records[-2].cycle - 1 < n_closed <= records[-1].cycle - 1
    assert all(r.window_ratio >= 10.0 for r in records[:-1])


def test_cycles_to_failure_spread_per_cell_is_drawn_from_the_seed_and_leaves_the_chip_alone():
    a = AgingState(Aging(), (24, 24), seed=3)
    b = AgingState(Aging(), (24, 24), seed=3)
    assert np.array_equal(a.cycles_to_failure, b.cycles_to_failure)
    spread = np.std(np.log(a.cycles_to_failure))
    assert 0.4 < spread < 0.6
    plain, aged = VirtualArray(seed=3), VirtualArray(seed=3, aging=Aging())
    assert plain.rng.bit_generator.state == aged.rng.bit_generator.state


def test_endurance_cli_on_the_twin_writes_every_read_and_a_summary(tmp_path, capsys):
    csv = tmp_path / "end.csv"
    code = main(["endurance", "--cycles", "30", "--read-every", "log", "--csv", str(csv), "--store",
                 str(tmp_path / "s.db"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "window   50.16x" in out and "window stayed above 2x for all 30 cycles" in out
    rows = [l for l in csv.read_text().splitlines() if not l.startswith("#")]
    assert rows[0] == "cycle,lrs_a,hrs_a,window_ratio" and rows[-1].startswith("30,")
    assert len(rows) - 1 == len(list(endurance.read_cycles(30)))


def test_endurance_cli_on_the_virtual_bench_ends_at_0_v_with_the_matrix_open(tmp_path, capsys):
    log = tmp_path / "visa.log"
    code = main(["endurance", "--bench", VIRTUAL_BENCH, "--cell", "3,7", "--cycles", "5", "--width", "2e-3",
                 "--visa-log", str(log), "--store", str(tmp_path / "s.db"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "estimated bench time of the whole run" in captured.err
    writes = visa_writes(log)
    assert sum(1 for _, c in writes if c.startswith("PV")) >= 10
    state = bench_state(writes)
    assert state.safe, str(state)


def test_an_over_limit_endurance_plan_sends_no_instrument_command(tmp_path, capsys):
    log = tmp_path / "visa.log"
    code = main(["endurance", "--bench", VIRTUAL_BENCH, "--cell", "3,7", "--cycles", "5", "--width", "2e-3",
                 "--set", "6", "--visa-log", str(log), "--store", str(tmp_path / "s.db"), "--no-progress"])
    assert code == 1
    assert "--set" in capsys.readouterr().err
    assert not log.exists() or visa_writes(log) == []
