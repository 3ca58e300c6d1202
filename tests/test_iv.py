"""``rramlab iv`` and protocols/iv.py on the twin: the paper's Fig. 3 features on the default device,
the lone device and an array cell agreeing within the wires' effect, and over-limit sweeps refused
before the sweep starts."""

from pathlib import Path

import numpy as np
import pytest

from rramlab.app.cli import main
from rramlab.drivers.interface import SafetyError
from rramlab.protocols import iv
from rramlab.protocols.store import RunStore
from rramlab.sim.array import ArrayParameters
from rramlab.sim.virtual_array import VirtualArray
from tests.test_stop_paths import bench_state, visa_writes

ROOT = Path(__file__).resolve().parents[1]
SIM_BENCH = ROOT / "drivers" / "benches" / "sim.toml"
VIRTUAL_BENCH = ROOT / "drivers" / "benches" / "virtual.toml"

nA = 1e-9


def sweep(instrument, cell=(0, 0), **settings):
    s = iv.IvSettings(**settings)
    return list(iv.run(instrument, iv.plan(s, instrument, cell)))


def test_the_default_device_sets_gradually_from_about_3_v_and_reads_inside_the_ispp_window():
    points = sweep(VirtualArray.lone_device(seed=0), step_v=0.02)
    summary = iv.summarise(points)
    assert 3.0 <= summary["set_onset_v"] <= 3.5
    up = [p for p in points if p.leg == 0 and p.voltage_v > 0]
    v = np.array([p.voltage_v for p in up])
    i = np.array([p.current_a for p in up])
    slope = np.diff(np.log(i)) / np.diff(np.log(v))
    # no abrupt set: the switches turn on one after another, in many steps between 3 V and the peak
    switching = v[2:][np.diff(slope) > 1.0]
    assert len(switching) >= 5 and switching.min() >= 3.0
    assert np.all(np.diff(i) > 0)  # the current only rises on the way up
    # the 1 V read: HRS before, within ISPP's 1.6..80 nA window after the set
    assert 1.0 * nA < summary["read_before_a"] < 2.5 * nA
    assert 10 * nA < summary["read_after_a"] <= 81 * nA
    # the reset branch brings the cell back: the last point's state reads near HRS again
    assert summary["reset_onset_v"] < -0.5
    back = [p for p in points if p.leg == 3]
    assert abs(back[0].current_a) < 10 * nA


def test_a_lone_device_and_an_array_cell_agree_within_the_wires_effect():
    lone = np.array([p.current_a for p in sweep(VirtualArray.lone_device(seed=0), step_v=0.05)])
    cell = np.array([p.current_a for p in sweep(VirtualArray(seed=0), (3, 7), step_v=0.05)])
    ideal = np.array([p.current_a for p in sweep(VirtualArray(seed=0, array=ArrayParameters(
        wire_resistance=0.0, contact_resistance=0.0)), (3, 7), step_v=0.05)])
    big = np.abs(lone) > 1 * nA
    assert np.allclose(ideal, lone, rtol=1e-6, atol=1e-15)  # no wires: the same device
    rel = np.abs(cell[big] - lone[big]) / np.abs(lone[big])
    # the wires take a few ohms' drop from the cell: less current, by well under 1 %
    assert 0 < rel.max() < 0.01 and np.all(np.abs(cell[big]) <= np.abs(lone[big]) * (1 + 1e-9))


def test_an_over_limit_sweep_is_refused_before_the_sweep_starts():
    chip = VirtualArray(seed=0)
    calls = []
    chip.sweep_cell = lambda *a: calls.append(a)
    with pytest.raises(SafetyError, match="set limit"):
        iv.plan(iv.IvSettings(set_peak_v=4.5), chip, (3, 7))
    with pytest.raises(SafetyError, match="reset limit"):
        iv.plan(iv.IvSettings(reset_peak_v=-3.0), chip, (3, 7))
    assert not calls
    with pytest.raises(SafetyError):  # the twin's own sweep checks too, whoever calls it
        VirtualArray(seed=0).sweep_cell(3, 7, [0.0, 4.6])


def test_rramlab_iv_on_an_array_cell_writes_csv_png_and_the_run_store(tmp_path, capsys):
    csv, png, store = tmp_path / "iv.csv", tmp_path / "iv.png", tmp_path / "s.sqlite"
    assert main(["iv", "--cell", "3,7", "--double", "--to", "4.2", "--back-to", "-1.6", "--step", "0.05",
                 "--csv", str(csv), "--png", str(png), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "cell 3,7 of the twin array" in out and "before the set" in out and "set onset 3." in out
    rows = [ln for ln in csv.read_text().splitlines() if not ln.startswith("#")]
    assert rows[0] == "voltage_v,current_a" and len(rows) == 1 + 2 * 84 + 2 * 32 + 1
    assert png.stat().st_size > 10_000
    with RunStore(store) as s:
        (info,) = s.runs()
        assert info.protocol == "iv" and info.status == "finished"
        assert len(s.records(info.run_id, "IvPoint")) == len(rows) - 1


@pytest.mark.parametrize("argv, message", [
    (["--to", "4.5"], "--set-peak (set_peak_v) = 4.5 V is beyond the set limit"),
    (["--back-to", "-2.6"], "--reset-peak (reset_peak_v) = -2.6 V is beyond the reset limit"),
])
def test_rramlab_iv_refuses_with_one_line_and_no_run(tmp_path, capsys, argv, message):
    store = tmp_path / "s.sqlite"
    assert main(["iv", *argv, "--store", str(store)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not store.exists() or not RunStore(store).runs()


@pytest.mark.parametrize("bench", [VIRTUAL_BENCH, SIM_BENCH], ids=["virtual", "pyvisa-sim"])
def test_rramlab_iv_runs_on_a_bench_in_half_bias_and_leaves_it_safe(tmp_path, capsys, bench):
    log, store, csv = tmp_path / "visa.log", tmp_path / "s.sqlite", tmp_path / "iv.csv"
    assert main(["iv", "--cell", "3,7", "--bench", str(bench), "--step", "0.1", "--visa-log", str(log),
                 "--store", str(store), "--csv", str(csv)]) == 0, capsys.readouterr().err
    assert "cell 3,7 of the probe-station array" in capsys.readouterr().out
    writes = visa_writes(log)
    assert bench_state(writes).safe, str(bench_state(writes))
    dv = [cmd for _, cmd in writes if cmd.startswith("DV ")]
    levels = {float(cmd.split(",")[2]) for cmd in dv}
    assert max(levels) == pytest.approx(2.1) and min(levels) == pytest.approx(-2.1)  # +-V/2: half-bias
    with RunStore(store) as s:
        (info,) = s.runs()
        assert info.status == "finished" and len(s.records(info.run_id, "IvPoint")) == 1 + 2 * 42 + 2 * 16


def test_the_virtual_bench_sweep_follows_the_twins_cell_plus_its_half_selected_bitline():
    import argparse

    from rramlab.app import virtual_bench
    from rramlab.drivers.probe_station import load_bench

    args = argparse.Namespace(seed=None, engine=None, wire_resistance=None, chip=None, save_chip=None,
                              device=None, programming_error=None)
    with virtual_bench.open_virtual_bench(load_bench(VIRTUAL_BENCH), args) as station:
        bench = [p.current_a for p in sweep(station, (3, 7), step_v=0.1)]
    twin = [p.current_a for p in sweep(VirtualArray(seed=0), (3, 7), step_v=0.1)]
    bench, twin = np.array(bench), np.array(twin)
    # the bitline current is the cell's plus 23 half-selected HRS cells at V/2: never less, and at
    # the set peak (20 uA through the cell) within 5 %
    assert np.all(np.abs(bench) >= np.abs(twin) - 1e-12) and np.all(np.sign(bench) == np.sign(twin))
    peak = int(np.argmax(twin))
    assert bench[peak] == pytest.approx(twin[peak], rel=0.05)


@pytest.mark.parametrize("bench", [VIRTUAL_BENCH, SIM_BENCH], ids=["virtual", "pyvisa-sim"])
def test_an_over_limit_sweep_on_a_bench_sends_no_command(tmp_path, capsys, bench):
    log = tmp_path / "visa.log"
    assert main(["iv", "--cell", "3,7", "--bench", str(bench), "--to", "4.5", "--visa-log", str(log),
                 "--store", str(tmp_path / "s.sqlite")]) == 1
    assert "beyond the set limit" in capsys.readouterr().err
    assert not log.exists() or not visa_writes(log)


def test_the_virtual_4156c_runs_its_staircase_sweep_from_the_twin():
    """The driver's staircase_sweep (MM 2, WV, WT, WM, XE, RMD? 0) on the virtual bench, read-range
    voltages on one routed cell: the 1 V step reads what a spot read does, the double sweep comes
    back the same way, and a compliance that trips aborts the sweep (abort 2)."""
    import argparse

    from rramlab.app import virtual_bench
    from rramlab.drivers.probe_station import load_bench

    args = argparse.Namespace(seed=None, engine=None, wire_resistance=None, chip=None, save_chip=None,
                              device=None, programming_error=None)
    with virtual_bench.open_virtual_bench(load_bench(VIRTUAL_BENCH), args) as station:
        cfg, a = station.config, station.analyzer
        wl_ch, bl_ch = cfg.wordline_channel, cfg.bitline_channel
        with station._guard():
            routing = station._grounded()
            routing[station._wired("wordline", 3)] = cfg.input_of(wl_ch)
            routing[station._wired("bitline", 7)] = cfg.input_of(bl_ch)
            station._route(routing)
            station._ensure_on([wl_ch, bl_ch])
            a.force_voltage(bl_ch, 0.0, 1e-4)
            steps = a.staircase_sweep(wl_ch, 0.0, 1.0, 11, 1e-4, double=True, measure=[bl_ch])
            cur = np.array([-s[bl_ch].checked() for s in steps])
            a.force_voltage(bl_ch, 0.0, 1e-10)
            tripped = a.staircase_sweep(bl_ch, 0.0, -1.0, 11, 1e-10, measure=[bl_ch])
            a.force_voltage(bl_ch, 0.0, 1e-4)
            a.force_voltage(wl_ch, 0.0, 1e-4)
        read = station.read_cell(3, 7, 1.0)
    assert len(cur) == 22 and np.allclose(cur, cur[::-1], rtol=1e-9, atol=1e-15)
    assert cur[10] == pytest.approx(read, rel=1e-6) and np.all(np.diff(cur[:11]) > 0)
    assert 1 <= len(tripped) < 11 and tripped[-1][bl_ch].compliance


def test_the_lone_device_staircase_is_the_compact_models_ngspice_sweep():
    """The twin's DC staircase (fast engine, switches settled per step) against the ngspice
    transient of the compact model through the same points (sim/sweep.py, 1 ms per point). DC does
    not depend on Cs and Ci; the transient stands for DC only once they have settled, so the
    reference takes Table 1's 0.1 fF (with the default stack's pF its pA currents near 0 V lag)."""
    from dataclasses import replace

    from rramlab.sim.sweep import dc_sweep

    chip = VirtualArray.lone_device(seed=0)
    p = iv.plan(iv.IvSettings(step_v=0.05), chip)
    fast = np.array([q.current_a for q in iv.run(chip, p)])
    spice = dc_sweep(np.array(p.voltages), device=replace(chip.device, switching_c=0.1e-15, insulator_c=0.1e-15))
    # within ngspice's transient tolerance (3e-4 at 0.05 V, where 0.6 nA flows; 7e-6 above 1 V)
    assert np.allclose(fast, spice, rtol=1e-3, atol=1e-12)


def test_sigterm_mid_sweep_leaves_the_bench_safe(tmp_path):
    from tests.test_stop_paths import start  # runs tests/stop_runner.py, which sends the signal from inside

    log, store = tmp_path / "visa.log", tmp_path / "s.sqlite"
    proc = start(["iv", "--cell", "3,7", "--bench", str(SIM_BENCH), "--visa-log", str(log), "--store", str(store)],
                 tmp_path, runner=True, env_extra={"STOP_PLAN": "TI?#40:TERM"})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    writes = visa_writes(log)
    assert bench_state(writes).safe, str(bench_state(writes))
    assert sum(cmd.startswith("TI?") for _, cmd in writes) == 39
    assert "interrupted by SIGTERM after 39 points" in err and "every crosspoint open" in err and "Traceback" not in err
    with RunStore(store) as s:
        assert s.runs()[0].status == "aborted"
        assert len(s.records(s.runs()[0].run_id, "IvPoint")) == 39  # every point measured before the stop


@pytest.mark.parametrize("backend", ["twin", "virtual"])
def test_a_stop_flag_ends_the_sweep_between_steps_and_keeps_the_points(backend):
    import argparse
    import contextlib

    from rramlab.app import virtual_bench
    from rramlab.drivers.probe_station import load_bench

    args = argparse.Namespace(seed=None, engine=None, wire_resistance=None, chip=None, save_chip=None,
                              device=None, programming_error=None)
    opened = (virtual_bench.open_virtual_bench(load_bench(VIRTUAL_BENCH), args) if backend == "virtual"
              else contextlib.nullcontext(VirtualArray(seed=0)))
    with opened as instrument:
        p = iv.plan(iv.IvSettings(step_v=0.1), instrument, (3, 7))
        polls = []
        points = list(iv.run(instrument, p, should_stop=lambda: polls.append(1) or len(polls) > 25))
        full = list(iv.run(instrument, iv.plan(iv.IvSettings(step_v=0.1), instrument, (3, 8))))
    # polled before the sweep and after each step: the 26th poll, after the 25th step, stops it,
    # that step's point kept
    assert len(points) == 25 and [q.point for q in points] == list(range(25))
    assert [q.voltage_v for q in points] == list(p.voltages[:25]) and len(full) == len(p.voltages)
    if backend == "virtual":
        assert instrument.outputs_safe


def test_a_pause_mid_sweep_leaves_the_segment_safe_and_resumes_at_the_next_step():
    import argparse
    import threading

    from rramlab.app import virtual_bench
    from rramlab.drivers.probe_station import load_bench
    from rramlab.protocols.control import RunControl

    args = argparse.Namespace(seed=None, engine=None, wire_resistance=None, chip=None, save_chip=None,
                              device=None, programming_error=None)
    settings = iv.IvSettings(step_v=0.1)
    with virtual_bench.open_virtual_bench(load_bench(VIRTUAL_BENCH), args) as station:
        plain = [q.current_a for q in iv.run(station, iv.plan(settings, station, (3, 7)))]
    polls, safe_during_pause = [], []
    with virtual_bench.open_virtual_bench(load_bench(VIRTUAL_BENCH), args) as station:
        def ask_a_pause_at_the_10th_step():
            polls.append(1)
            if len(polls) == 10:
                control.pause()
                threading.Timer(0.3, lambda: (safe_during_pause.append(station.outputs_safe), control.resume())).start()
            return False

        control = RunControl(station, should_stop=ask_a_pause_at_the_10th_step, poll_s=0.01)
        paused = [q for q in iv.run(station, iv.plan(settings, station, (3, 7)), control)]
    assert control.pauses == 1 and safe_during_pause == [True]  # the pause waited with the bench at 0 V
    assert [q.point for q in paused] == list(range(len(plain)))
    # the sweep went on from the next step, routed again: the same curve as without the pause
    assert np.allclose([q.current_a for q in paused], plain, rtol=1e-9, atol=1e-15)
