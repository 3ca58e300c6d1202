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
    for cycles, every in ((25, "10"), (20, "10"), (1000, "log"), (7, "1")):
        p = endurance.EndurancePlan(endurance.EnduranceSettings(cycles=cycles, read_every=every), 0, 0)
        assert p.reads() == len(list(endurance.read_cycles(cycles, every)))


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


# ----- retention -----

from rramlab.protocols import retention  # noqa: E402


def _retention_records(chip, settings, cells, targets):
    return [r for r in retention.run(chip, retention.plan(settings, cells, targets, chip))
            if isinstance(r, retention.RetentionRecord)]


def test_retention_parses_durations_and_read_schedules():
    assert retention.parse_duration("2h") == 7200 and retention.parse_duration("30min") == 1800
    assert retention.parse_duration("10y") == pytest.approx(10 * 365.25 * 86400)
    assert retention.parse_reads("log:40") == ("log", 40) and retention.parse_reads("lin:3") == ("lin", 3)
    with pytest.raises(Exception, match="--duration"):
        retention.parse_duration("soon")
    with pytest.raises(Exception, match="--reads"):
        retention.parse_reads("geo:4")
    t = retention.schedule(retention.RetentionSettings(duration_s=1000.0, reads=4))
    assert t == pytest.approx([1, 10, 100, 1000])


def test_retention_without_aging_reads_exactly_todays_twin():
    s = retention.RetentionSettings(duration_s=3.15e8, reads=6)
    cells, targets = [(0, 0), (0, 1)], [20e-9, 80e-9]
    runs = []
    for aging in (None, Aging.off()):
        chip = VirtualArray(engine="fast", aging=aging)
        records = _retention_records(chip, s, cells, targets)
        # today's twin: a programmed cell reads the same at any time, as a read right after programming
        for cell in cells:
            g = [r.conductance_s for r in records if (r.wordline, r.bitline) == cell]
            assert len(set(g)) == 1 and g[0] == chip.read_cell(*cell, 1.0) / 1.0
        runs.append([(r.time_s, r.wordline, r.bitline, r.conductance_s) for r in records])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("temperature_k", [300.0, 350.0])
def test_retention_drift_matches_the_closed_form(temperature_k):
    aging = Aging(wear=False, temperature_k=temperature_k)
    s = retention.RetentionSettings(duration_s=1e8, reads=9)
    aged_chip, ideal_chip = VirtualArray.lone_device(aging=aging), VirtualArray.lone_device()
    aged = _retention_records(aged_chip, s, [(0, 0)], [60e-9])
    ideal = _retention_records(ideal_chip, s, [(0, 0)], [60e-9])
    g_hrs = _hrs_current(aged_chip)
    elapsed0 = aged_chip.aging.clock_s - aged_chip.aging.programmed_at_s[0, 0] - s.duration_s  # 0: programmed at t0
    for a, i in zip(aged, ideal):
        model = g_hrs + (i.conductance_s - g_hrs) * float(aging.drift_factor(a.time_s + elapsed0))
        assert a.conductance_s == pytest.approx(model, rel=0.05)
    # the fitted drift per decade is nu(T) x the programmed window, nu(T) Arrhenius-activated
    (level,) = retention.summarise(aged, s.tolerance_s)
    nu = 0.02 * math.exp(-(0.3 / 8.617333262e-5) * (1 / temperature_k - 1 / 300.0))
    late = [r for r in aged if r.time_s >= 100]
    x = np.log10([r.time_s for r in late])
    slope = np.polyfit(x, [r.conductance_s for r in late], 1)[0]
    assert slope == pytest.approx(-nu * (ideal[0].conductance_s - g_hrs), rel=0.05)
    assert level.drift_per_decade_s < 0 and level.left_at_s is not None


def test_retention_cli_on_the_twin_runs_in_simulated_time(tmp_path, capsys):
    csv = tmp_path / "ret.csv"
    code = main(["retention", "--cells", "0:1,0:2", "--levels", "20,80", "--duration", "10y", "--reads", "log:5",
                 "--csv", str(csv), "--store", str(tmp_path / "s.db"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "simulated time: 10 y of retention" in out
    assert "20.0 nS (1 cells)" in out and "stayed within +-2 nS" in out
    rows = [l for l in csv.read_text().splitlines() if not l.startswith("#")]
    assert rows[0] == ",".join(retention.CSV_HEADER) and len(rows) == 1 + 2 * 5


def test_retention_cli_on_the_virtual_bench_waits_and_ends_safe(tmp_path, capsys):
    log = tmp_path / "visa.log"
    code = main(["retention", "--bench", VIRTUAL_BENCH, "--cells", "3,7", "--levels", "50", "--width", "2e-3", "--duration", "0.6s",
                 "--reads", "lin:2", "--visa-log", str(log), "--store", str(tmp_path / "s.db"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "0.6 s of wall time" in captured.out
    state = bench_state(visa_writes(log))
    assert state.safe, str(state)


def test_an_over_limit_retention_plan_sends_no_instrument_command(tmp_path, capsys):
    log = tmp_path / "visa.log"
    code = main(["retention", "--bench", VIRTUAL_BENCH, "--cells", "3,7", "--width", "2e-3", "--read-v", "3.5", "--visa-log", str(log),
                 "--store", str(tmp_path / "s.db"), "--no-progress"])
    assert code == 1 and "read" in capsys.readouterr().err
    assert not log.exists() or visa_writes(log) == []


def test_ctrl_c_during_a_bench_wait_leaves_the_bench_safe_and_keeps_the_reads(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    log, out = tmp_path / "visa.log", tmp_path / "ret.csv"
    rramlab = str(Path(sys.executable).with_name("rramlab"))
    proc = subprocess.Popen([rramlab, "retention", "--bench", VIRTUAL_BENCH, "--cells", "3,7", "--levels", "50",
                             "--width", "2e-3", "--duration", "1h", "--reads", "log:10", "--visa-log", str(log), "--csv", str(out),
                             "--store", str(tmp_path / "s.db"), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    end = time.monotonic() + 60
    while time.monotonic() < end and not (out.exists() and "3,7" in out.read_text().split("time_s")[-1]):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    time.sleep(0.5)  # inside the wait before the second read (at 2.5 s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "1 rows kept" in err
    state = bench_state(visa_writes(log))
    assert state.safe, str(state)


# ----- disturb -----

from rramlab.protocols import disturb  # noqa: E402


def test_disturb_on_the_default_twin_moves_nothing_and_records_log_spaced_counts():
    chip = VirtualArray(engine="fast")
    s = disturb.DisturbSettings(reads=120, neighbours=1, pulses=30)
    p = disturb.plan(s, (3, 7), chip)
    assert p.neighbours == ((3, 6), (3, 8), (2, 7), (4, 7))
    records = list(disturb.run(chip, p))
    reads = [r for r in records if r.phase == "read"]
    assert [r.count for r in reads] == [0, *endurance.read_cycles(120)]
    assert len({r.read_a for r in reads}) == 1  # 1 V reads are far below every threshold
    summary = disturb.DisturbSummariser(s.read_v)
    for r in records:
        summary.add(r)
    for phase, cell, role, g0, steps in summary.changes():
        if role == "neighbour":  # 2.1 V half-selects flip nothing; only the wires' IR drop moves the read
            assert all(abs(dg) < 0.01e-9 for _, dg in steps), (cell, steps)
    assert chip.disturb_count == 0


def test_half_select_disturb_measured_is_the_twins_own_disturb_model():
    from dataclasses import replace as dc_replace

    from rramlab.sim.device import DEVICE_PRESETS, Switch

    base = DEVICE_PRESETS["measured"]
    # turn-on thresholds 1.3 V lower: 1.96 and 2.06 V sit below a 4.2 V pulse's 2.1 V half-select
    low = tuple(Switch.from_thresholds(s.turn_on_v - 1.3, s.turn_off_v, s.on_resistance) for s in base.switches)
    chip = VirtualArray(engine="fast", device=dc_replace(base, switches=low))
    s = disturb.DisturbSettings(reads=5, neighbours=1, pulses=20)
    records = list(disturb.run(chip, disturb.plan(s, (3, 7), chip)))
    summary = disturb.DisturbSummariser(s.read_v)
    for r in records:
        summary.add(r)
    half = [c for c in summary.changes() if c[0] == "half-select" and c[2] == "neighbour"]
    assert len(half) == 4
    for _, cell, _, g0, steps in half:
        first = dict(steps)[0]
        assert first > 5e-9  # the first pulse flipped the neighbour's low switches ...
        assert abs(dict(steps)[1]) < 0.05e-9  # ... and the next 19 add nothing: the thresholds were passed
    # every cell of the two lines is half-selected: 23 + 23 cells, each flipped by the first pulse
    assert chip.disturb_count == 46


def test_disturb_cli_on_the_twin_and_on_the_virtual_bench(tmp_path, capsys):
    csv = tmp_path / "dist.csv"
    code = main(["disturb", "--cell", "3,7", "--reads", "50", "--neighbours", "--pulses", "10", "--csv", str(csv),
                 "--store", str(tmp_path / "s.db"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "the twin counted 0 disturb events" in out
    assert out.count("half-select neighbour") == 4
    rows = [l for l in csv.read_text().splitlines() if not l.startswith("#")]
    assert rows[0] == ",".join(disturb.CSV_HEADER)
    log = tmp_path / "visa.log"
    code = main(["disturb", "--bench", VIRTUAL_BENCH, "--cell", "3,7", "--reads", "5", "--neighbours", "--pulses",
                 "3", "--width", "2e-3", "--visa-log", str(log), "--store", str(tmp_path / "s.db"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    state = bench_state(visa_writes(log))
    assert state.safe, str(state)


def test_an_over_limit_disturb_plan_sends_no_instrument_command(tmp_path, capsys):
    log = tmp_path / "visa.log"
    code = main(["disturb", "--bench", VIRTUAL_BENCH, "--cell", "3,7", "--neighbours", "--pulse-v", "7",
                 "--width", "2e-3", "--visa-log", str(log), "--store", str(tmp_path / "s.db"), "--no-progress"])
    assert code == 1 and "beyond the line limit" in capsys.readouterr().err
    assert not log.exists() or visa_writes(log) == []


SIM_BENCH = str(ROOT / "drivers" / "benches" / "sim.toml")


@pytest.mark.parametrize("argv", [
    ["endurance", "--cell", "3,7", "--cycles", "3", "--stop-when-closed", "0"],
    ["retention", "--cells", "3,7", "--levels", "50", "--duration", "0.2s", "--reads", "lin:2"],
    ["disturb", "--cell", "3,7", "--reads", "3", "--neighbours", "--pulses", "2"],
], ids=lambda a: a[0])
def test_each_stress_command_runs_on_the_pyvisa_sim_bench_and_ends_safe(tmp_path, capsys, argv):
    log = tmp_path / "visa.log"
    code = main([*argv, "--bench", SIM_BENCH, "--width", "2e-3", "--visa-log", str(log),
                 "--store", str(tmp_path / "s.db"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"{argv[0]} on the probe-station" in captured.out
    writes = visa_writes(log)
    assert any(c.startswith("PV") for _, c in writes)
    state = bench_state(writes)
    assert state.safe, str(state)


def test_each_stress_command_keeps_its_summary_in_the_run_store(tmp_path, capsys):
    from rramlab.protocols.store import RunStore

    db = str(tmp_path / "s.db")
    assert main(["endurance", "--cycles", "12", "--store", db, "--no-progress"]) == 0
    assert main(["retention", "--levels", "30", "--duration", "1d", "--reads", "log:3", "--aging", "--store", db,
                 "--no-progress"]) == 0
    assert main(["disturb", "--reads", "12", "--store", db, "--no-progress"]) == 0
    capsys.readouterr()
    with RunStore(db) as store:
        end, ret, dist = (store.run(i).summary for i in (1, 2, 3))
    assert end["cycles"] == 12 and end["closed_at_cycle"] is None
    assert end["decades"][0]["window_ratio"] == pytest.approx(50.16, abs=0.01)
    assert ret["simulated_time"] is True and ret["levels"][0]["drift_per_decade_s"] < 0
    assert dist["disturb_events"] == 0 and dist["series"][0]["change_per_decade_s"]["1e1"] == 0.0


@pytest.mark.parametrize("argv, message", [
    (["--cycles-to-failure", "300"], "--cycles-to-failure sets a part of --aging"),
    (["--aging", "--cycles-to-failure", "-3"], "--cycles-to-failure: Aging.wear_cycles_to_failure must be a positive"),
    (["--aging", "--bench", VIRTUAL_BENCH, "--cell", "3,7", "--width", "2e-3"], "--aging applies to the twin only"),
])
def test_aging_flags_are_refused_before_anything_runs(tmp_path, capsys, argv, message):
    assert main(["endurance", "--cycles", "3", *argv, "--store", str(tmp_path / "s.db"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert message in err and "stopped after" not in err  # refused before the backend was opened
