"""Weight transfer: weight files, the differential mapping, both schemes on the twin, the final
re-read catching disturbed cells, resume, a SIGKILL during a transfer, and the pyvisa-sim bench."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rramlab.app.cli import main
from rramlab.drivers.interface import ArrayGeometry, RequestChecker, RequestError, SafetyError
from rramlab.protocols import transfer
from rramlab.protocols.ispva import IspvaPulse, IspvaResult, IspvaSettings
from rramlab.protocols.store import RunStore
from rramlab.protocols.transfer import CellRead, Disturbed, RowPulse, TransferSettings
from rramlab.protocols.weights import (WeightFileError, differential_targets, load_weight_file, load_weights,
                                      pair_bitlines, save_weights, weight_map)
from rramlab.sim.virtual_array import VirtualArray

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "weights_24x10.npz"
SIM_BENCH = ROOT / "drivers" / "benches" / "sim.toml"
nS = 1e-9
SMALL = np.array([[3, -2, 5], [1, 4, -6], [2, -3, 7], [-1, 8, 0]])


# ----- weight files and the mapping -----

def test_the_example_weight_file_loads():
    levels = load_weights(EXAMPLE)
    assert levels.shape == (24, 10) and levels.dtype.kind == "i"
    assert np.abs(levels).max() <= 8 and np.abs(levels).min() >= 1


@pytest.mark.parametrize("arrays, message", [
    ({"weights": np.zeros((24, 10))}, "has no 'levels' array (it has ['weights'])"),
    ({"levels": np.zeros((24, 10, 2))}, "has shape (24, 10, 2); it must be 2-D"),
    ({"levels": np.zeros((25, 10))}, "needs 25 wordlines and 20 bitlines"),
    ({"levels": np.zeros((24, 13))}, "needs 24 wordlines and 26 bitlines"),
    ({"levels": np.full((24, 10), 9)}, "has level 9 at row 0, column 0 (240 out of range)"),
    ({"levels": np.where(np.eye(24, 10) > 0, np.nan, 1.0)}, "has nan at row 0, column 0"),
    ({"levels": np.full((24, 10), 2.5)}, "has 2.5 at row 0, column 0: levels are whole numbers"),
    ({"levels": np.array([["a"] * 10] * 24)}, "holds <U1 values"),
])
def test_bad_weight_files_are_refused_naming_what_is_wrong(tmp_path, arrays, message):
    path = tmp_path / "w.npz"
    np.savez(path, **arrays)
    with pytest.raises(WeightFileError) as exc:
        load_weights(path, (24, 24))
    assert message in str(exc.value) and str(path) in str(exc.value)


def test_a_missing_or_unreadable_weight_file_is_refused(tmp_path):
    with pytest.raises(WeightFileError, match="does not exist"):
        load_weights(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_text("junk")
    with pytest.raises(WeightFileError, match="not a readable .npz weight file"):
        load_weights(tmp_path / "junk.npz")


def test_blocked_and_interleaved_mappings():
    levels = np.array([[3, -2], [0, 8]])
    blocked = differential_targets(levels, "blocked") / nS
    assert np.allclose(blocked, [[30, 0, 0, 20], [0, 80, 0, 0]])
    inter = differential_targets(levels, "interleaved") / nS
    assert np.allclose(inter, [[30, 0, 0, 20], [0, 0, 80, 0]])
    assert pair_bitlines(9, 10, "blocked") == (9, 19) and pair_bitlines(9, 10, "interleaved") == (18, 19)
    for mapping in ("blocked", "interleaved"):
        assert np.allclose(weight_map(differential_targets(levels, mapping), 2, mapping), levels * 10 * nS)


def test_save_weights_round_trips(tmp_path):
    save_weights(tmp_path / "w.npz", SMALL, "small")
    assert (load_weights(tmp_path / "w.npz") == SMALL).all()
    wf = load_weight_file(save_weights(tmp_path / "w20.npz", SMALL // 2, level_spacing_s=20e-9))
    assert (wf.levels == SMALL // 2).all() and wf.level_spacing_s == 20e-9


@pytest.mark.parametrize("spacing, levels, message", [
    (20e-9, SMALL, "'conductance_step_s' 20 nS with levels up to 8 gives targets up to 160 nS"),
    (5e-9, SMALL, "'conductance_step_s' 5 nS"),
    (np.array([1e-8, 2e-8]), SMALL, "must be one number"),
])
def test_a_level_spacing_beyond_the_devices_states_is_refused(tmp_path, spacing, levels, message):
    path = tmp_path / "w.npz"
    np.savez(path, levels=levels, conductance_step_s=spacing)
    with pytest.raises(WeightFileError) as exc:
        load_weight_file(path)
    assert message in str(exc.value) and str(path) in str(exc.value)


@pytest.mark.parametrize("bits", [3, 2])
def test_the_weight_files_rramlab_train_writes_are_what_rramlab_transfer_programs(tmp_path, capsys, bits):
    """One format: train's NET.qt.weights.npz goes straight into transfer, and the targets the transfer
    programs are the network's own conductance targets (2 bits: 20 nS per level)."""
    net = tmp_path / "net.npz"
    assert main(["train", "--out", str(net), "--epochs", "1", "--finetune-epochs", "0", "--bits", str(bits)]) == 0
    js = tmp_path / "t.json"
    assert main(["transfer", str(tmp_path / "net.qtpr.weights.npz"), "--scheme", "fast", "--no-progress",
                 "--json", str(js)]) == 0
    capsys.readouterr()
    rep = json.loads(js.read_text())
    with np.load(tmp_path / "net.qtpr.weights.npz") as d:
        assert float(d["conductance_step_s"]) == pytest.approx(80e-9 / 2 ** bits)
        assert np.allclose(rep["target_conductance_map_s"], d["targets_s"], atol=1e-15)
        assert rep["programmed_cells"] == int(np.count_nonzero(d["levels"]))
    assert rep["within_2ns"] == 1.0 and rep["left_out_of_tolerance"] == 0


def test_row_pulse_voltages_hold_written_cells_at_v_and_the_rest_below_it():
    g = ArrayGeometry(4, 6)
    wl, bl = transfer.row_pulse_voltages(g, 1, [0, 3], 4.0, 0.5)
    cell_v = wl[:, None] - bl[None, :]
    assert cell_v[1, 0] == cell_v[1, 3] == 4.0
    assert cell_v[1, 1] == 2.0 and cell_v[0, 0] == 2.0 and cell_v[0, 1] == 0.0


# ----- both schemes on the twin -----

@pytest.mark.parametrize("scheme", ["half-bias", "fast"])
def test_a_full_transfer_by_each_scheme_meets_the_paper(tmp_path, scheme):
    js = tmp_path / "t.json"
    assert main(["transfer", str(EXAMPLE), "--scheme", scheme, "--json", str(js), "--no-progress"]) == 0
    rep = json.load(open(js))
    assert rep["cells"] == 480 and rep["programmed_cells"] == 240 and rep["finished"]
    assert rep["within_2ns"] >= 0.94 and rep["within_4ns"] == 1.0 and rep["rmse_s"] <= 1.5 * nS
    assert rep["mae_s"] <= rep["rmse_s"] and rep["left_out_of_tolerance"] == 0 and rep["hrs_ok"] == 1.0
    assert rep["pulses_per_cell"] > 0 and rep["wall_s"] > 0 and rep["disturbed_cells"] == 0
    target = np.array(rep["target_weight_map_s"])
    achieved = np.array(rep["achieved_weight_map_s"])
    assert target.shape == achieved.shape == (24, 10)
    assert np.allclose(target, load_weights(EXAMPLE) * 10 * nS)
    assert np.max(np.abs(achieved - target)) < 6 * nS  # within +-4 nS and an HRS partner of about 1.6 nS
    assert [lv["target_s"] for lv in rep["levels"]] == pytest.approx([k * 10 * nS for k in range(1, 9)])
    assert sum(lv["cells"] for lv in rep["levels"]) == 240
    with RunStore(rep["store"]) as store:
        info = store.run(rep["run_id"])
        assert info.status == "finished" and info.settings["transfer"]["scheme"] == scheme
        assert info.settings["levels"] == load_weights(EXAMPLE).tolist()
    if scheme == "fast":
        assert rep["row_pulses"] >= 24


@pytest.mark.parametrize("scheme", ["half-bias", "fast"])
def test_the_papers_error_procedure_adds_the_error_once_after_the_transfer(monkeypatch, scheme):
    """programming="paper-once": no cell is settled on the way; after the last re-read every
    programmed cell gets its error once, and the read after it counts with nothing re-programmed."""
    calls = []
    original = VirtualArray._programming_done
    monkeypatch.setattr(VirtualArray, "_programming_done", lambda self, cells: (calls.append(list(cells)),
                                                                              original(self, cells)))
    levels = load_weights(EXAMPLE)
    with VirtualArray(seed=4, engine="fast") as va:
        p, records, _ = transfer.write_levels(va, levels, TransferSettings(scheme=scheme),
                                              IspvaSettings(programming="paper-once"))
    rep = transfer.summarise(p, records, 0.0)
    programmed = [c for c in p.cells if p.target(c) != 0.0]
    assert len(calls) == 1 and sorted(calls[0]) == sorted(programmed)      # once, every programmed cell
    finals = [r for r in records if isinstance(r, CellRead) and r.stage == "final"]
    last = max(r.round for r in finals)
    assert records.index(next(r for r in records if isinstance(r, CellRead) and r.round == last)) > \
        max(i for i, r in enumerate(records) if not isinstance(r, CellRead))   # nothing pulsed after it
    assert 0.88 <= rep["within_2ns"] <= 0.99 and 0.85 * nS <= rep["rmse_s"] <= 1.3 * nS   # the 1.06 nS Gaussian
    assert rep["left_out_of_tolerance"] == round((1 - rep["within_tolerance"]) * 240)


def test_the_fast_scheme_writes_a_row_per_level_with_inhibited_bitlines():
    va = VirtualArray(engine="fast", seed=2)
    p = transfer.plan(TransferSettings(scheme="fast"), IspvaSettings(), SMALL, va)
    records = list(transfer.run(va, p))
    rows = [r for r in records if isinstance(r, RowPulse)]
    # one pulse per (wordline, distinct level): row 0 has 30, 20, 50 nS; row 3 has 10 and 80 nS
    assert [(r.wordline, round(r.target_s / nS)) for r in rows if r.wordline in (0, 3)] == \
        [(0, 20), (0, 30), (0, 50), (3, 10), (3, 80)]
    for r in rows:
        assert r.inhibit_v == pytest.approx(r.pulse_v / 2)
        assert all(p.target(((r.wordline, b))) == r.target_s for b in r.bitlines)
    rep = transfer.summarise(p, records, 1.0)
    assert rep["within_2ns"] >= 0.9 and rep["left_out_of_tolerance"] == 0


@pytest.mark.parametrize("scheme", ["half-bias", "fast"])
def test_a_cell_whose_levels_straddle_its_target_ends_at_the_closer_level_and_is_not_retried(scheme):
    # weight 8 -> 80 nS on devices with 4 % more Ri: their top level sits below 78 nS (Ri caps it and
    # no switch, fully or partly on, can raise it), so the target is out of reach
    from dataclasses import replace

    from rramlab.sim.device import device_preset

    base = device_preset("measured")
    va = VirtualArray(engine="fast", seed=0, device=replace(base, insulator_r0=base.insulator_r0 * 1.04))
    p = transfer.plan(TransferSettings(scheme=scheme), IspvaSettings(), np.array([[8, 0]]), va)
    records = list(transfer.run(va, p))
    cell = p.cells[0]
    results = [r for r in records if isinstance(r, IspvaResult) and (r.wordline, r.bitline) == cell]
    assert len(results) == 1 and results[0].out_of_reach and not results[0].converged
    assert not [r for r in records if isinstance(r, Disturbed)]
    rep = transfer.summarise(p, records, 1.0)
    assert rep["left_out_of_tolerance"] == rep["out_of_reach_cells"] == 1
    assert 76 * nS < transfer.final_conductances(records, p.cells)[cell] < 78 * nS
    assert transfer.pulses_by_cell(records)[cell] <= 10


@pytest.mark.parametrize("scheme", ["half-bias", "fast"])
def test_a_target_between_two_levels_is_reached_by_a_partly_switched_cell(scheme):
    # 12 nS per weight level: weight 3 -> 36 nS, between the exact device's 30 and 40 nS levels
    va = VirtualArray(engine="fast", seed=0)
    p = transfer.plan(TransferSettings(scheme=scheme), IspvaSettings(), np.array([[3, 0]]), va, level_spacing_s=12 * nS)
    records = list(transfer.run(va, p))
    cell = p.cells[0]
    assert not [r for r in records if isinstance(r, Disturbed)]
    rep = transfer.summarise(p, records, 1.0)
    assert rep["left_out_of_tolerance"] == rep["out_of_reach_cells"] == 0
    assert transfer.final_conductances(records, p.cells)[cell] == pytest.approx(36 * nS, abs=2 * nS)
    assert transfer.pulses_by_cell(records)[cell] <= 12


# ----- disturb -----

class DisturbingArray(VirtualArray):
    """Knocks cell (0, 0) back to HRS at the first pulse that selects wordline 1, as if a neighbour's
    pulse had disturbed it after it was accepted."""

    disturbed = False

    def _pulse(self, wordline_v, bitline_v, width, shape):
        super()._pulse(wordline_v, bitline_v, width, shape)
        if not self.disturbed and int(np.argmax(wordline_v)) == 1 and wordline_v[1] > 0:
            self.switch_states[0, 0, :] = False
            self.conductance_offset[0, 0] = 0.0
            self.disturbed = True


@pytest.mark.parametrize("scheme", ["half-bias", "fast"])
def test_the_final_re_read_catches_and_re_programs_a_disturbed_cell(scheme):
    va = DisturbingArray(engine="fast", seed=4)
    p = transfer.plan(TransferSettings(scheme=scheme), IspvaSettings(), SMALL, va)
    records = list(transfer.run(va, p))
    assert va.disturbed
    first_accept = [r for r in records if isinstance(r, IspvaResult) and (r.wordline, r.bitline) == (0, 0)][0] \
        if scheme == "half-bias" else \
        [r for r in records if isinstance(r, CellRead) and r.stage == "settled" and (r.wordline, r.bitline) == (0, 0)][0]
    assert abs(first_accept.conductance_s - 30 * nS) <= 2 * nS
    (d,) = [r for r in records if isinstance(r, Disturbed)]
    assert (d.wordline, d.bitline, d.round, d.accepted) == (0, 0, 1, True) and d.conductance_s < 5 * nS
    reprogram = records.index(d)
    assert any(isinstance(r, IspvaPulse) and (r.wordline, r.bitline) == (0, 0) for r in records[reprogram:])
    rep = transfer.summarise(p, records, 1.0)
    assert rep["disturbed_cells"] == 1 and rep["left_out_of_tolerance"] == 0
    assert abs(va.read_cell(0, 0) - 30 * nS) <= 2 * nS


# ----- resume -----

def test_an_interrupted_transfer_resumes_without_pulsing_cells_already_in_tolerance(tmp_path, monkeypatch, capsys):
    store_path, chip = tmp_path / "s.sqlite", tmp_path / "chip.npz"
    real_run = transfer.run

    def run_then_ctrl_c(instrument, plan_, should_stop=None):
        done = 0
        for r in real_run(instrument, plan_, should_stop):
            yield r
            if isinstance(r, IspvaResult) and r.converged:
                done += 1
                if done == 60:
                    raise KeyboardInterrupt

    monkeypatch.setattr(transfer, "run", run_then_ctrl_c)
    argv = ["--store", str(store_path), "--no-progress"]
    assert main(["transfer", str(EXAMPLE), "--save-chip", str(chip), *argv]) == 130
    assert "continue with --resume 1" in capsys.readouterr().err
    with RunStore(store_path) as store:
        assert store.run(1).status == "aborted"
        before = store.run(1).records
    monkeypatch.setattr(transfer, "run", real_run)

    js = tmp_path / "t.json"
    assert main(["transfer", "--resume", "1", "--chip", str(chip), "--save-chip", str(chip),
                 "--json", str(js), *argv]) == 0
    rep = json.load(open(js))
    assert rep["run_id"] == 1 and rep["within_2ns"] >= 0.94 and rep["left_out_of_tolerance"] == 0
    with RunStore(store_path) as store:
        assert store.run(1).status == "finished" and len(store.runs()) == 1
        resumed = [r for r in store.records(1) if r.seq >= before]
    start = [r.data for r in resumed if r.type == "CellRead" and r.data["stage"] == "start"]
    assert len(start) == 480
    in_tolerance = {(r["wordline"], r["bitline"]) for r in start
                    if r["target_s"] > 0 and abs(r["conductance_s"] - r["target_s"]) <= 2 * nS}
    assert len(in_tolerance) >= 60
    pulsed = {(r.data["wordline"], r.data["bitline"]) for r in resumed if r.type == "IspvaPulse"}
    first_final = next(i for i, r in enumerate(resumed) if r.type == "CellRead" and r.data["stage"] == "final")
    pulsed_before_final = {(r.data["wordline"], r.data["bitline"]) for r in resumed[:first_final]
                           if r.type == "IspvaPulse"}
    assert not in_tolerance & pulsed_before_final
    assert len(pulsed) >= 240 - len(in_tolerance) - 5  # the rest did get programmed


def test_a_fast_transfer_stopped_part_way_restarts_without_touching_accepted_cells():
    va = VirtualArray(engine="fast", seed=6)
    p = transfer.plan(TransferSettings(scheme="fast"), IspvaSettings(), SMALL, va)
    first = []
    for r in transfer.run(va, p, should_stop=lambda: sum(isinstance(x, RowPulse) for x in first) >= 6):
        first.append(r)
    assert not any(isinstance(r, CellRead) and r.stage == "final" for r in first)
    second = list(transfer.run(va, p))
    accepted = {(r.wordline, r.bitline) for r in second if isinstance(r, CellRead) and r.stage == "start"
                and r.target_s > 0 and abs(r.conductance_s - r.target_s) <= 2 * nS}
    assert len(accepted) >= 4
    written = {(r.wordline, b) for r in second if isinstance(r, RowPulse) for b in r.bitlines}
    pulsed = {(r.wordline, r.bitline) for r in second if isinstance(r, IspvaPulse)}
    assert not accepted & (written | pulsed)
    assert written  # the rest was programmed
    assert transfer.summarise(p, second, 1.0)["left_out_of_tolerance"] == 0


def test_resume_refuses_other_weights_and_other_protocols(tmp_path, capsys):
    store_path = tmp_path / "s.sqlite"
    assert main(["ispp", "--cycles", "1", "--no-progress", "--store", str(store_path)]) == 0
    assert main(["transfer", "--resume", "1", "--store", str(store_path), "--no-progress"]) == 1
    assert "run 1 is a ispp run, not a transfer" in capsys.readouterr().err
    assert main(["transfer", "--resume", "5", "--store", str(store_path), "--no-progress"]) == 1
    assert "run 5 is not in the store" in capsys.readouterr().err
    small = tmp_path / "small.npz"
    save_weights(small, SMALL)
    assert main(["transfer", str(small), "--store", str(store_path), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["transfer", str(EXAMPLE), "--resume", "2", "--store", str(store_path), "--no-progress"]) == 1
    assert "differs from the weights of run 2" in capsys.readouterr().err
    assert main(["transfer", str(small), "--resume", "2", "--store", str(store_path), "--no-progress"]) == 0


# ----- a killed process -----

def test_a_transfer_killed_with_sigkill_keeps_every_committed_record(tmp_path, capsys):
    store_path = tmp_path / "s.sqlite"
    env = {**os.environ, "RRAMLAB_STORE": str(store_path)}
    proc = subprocess.Popen([sys.executable, "-m", "rramlab.app.cli", "transfer", str(EXAMPLE), "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if store_path.exists():
                try:  # read-only, so the poll never writes to the store the transfer is creating
                    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
                    seen = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
                    conn.close()
                except sqlite3.Error:  # the tables are not there yet
                    seen = 0
            if seen >= 300:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the transfer ended before it could be killed: {proc.stderr.read()!r}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with RunStore(store_path) as store:
        (info,) = store.runs()
        assert info.status == "running" and info.shown_status == "unfinished" and info.ended_at is None
        records = store.records(info.id)
        assert len(records) >= seen
        assert [r.seq for r in records] == list(range(len(records)))
        assert records[0].type == "CellRead" and records[0].data["stage"] == "start"
    capsys.readouterr()
    assert main(["runs", "list", "--store", str(store_path)]) == 0
    assert "transfer  unfinished" in capsys.readouterr().out


# ----- bad input and the probe station -----

@pytest.mark.parametrize("extra, message", [
    (["--tolerance", "0"], "--tolerance (tolerance_s) = 0 S is out of range"),
    (["--max-pulses", "0"], "--max-pulses (max_pulses) = 0 is out of range"),
    (["--set-max", "4.4"], "--set-max (set_max_v) = 4.4 V is beyond the set limit"),
    (["--scheme", "fast", "--row-width", "2"], "--row-width (row_width_s) = 2 s is beyond the pulse width limit"),
])
def test_bad_settings_are_refused_before_any_pulse(tmp_path, capsys, monkeypatch, extra, message):
    pulses = []
    monkeypatch.setattr(VirtualArray, "_pulse", lambda self, *a: pulses.append(a))
    store_path = tmp_path / "s.sqlite"
    assert main(["transfer", str(EXAMPLE), "--store", str(store_path), "--no-progress", *extra]) == 1
    assert message in capsys.readouterr().err and not pulses
    with RunStore(store_path) as store:
        assert store.runs() == []


def test_bad_weight_files_and_store_paths_are_refused_before_any_pulse(tmp_path, capsys, monkeypatch):
    pulses = []
    monkeypatch.setattr(VirtualArray, "_pulse", lambda self, *a: pulses.append(a))
    bad = tmp_path / "nan.npz"
    np.savez(bad, levels=np.full((24, 10), np.nan))
    assert main(["transfer", str(bad), "--no-progress"]) == 1
    assert "has nan at row 0, column 0 (240 non-finite values)" in capsys.readouterr().err
    assert main(["transfer", str(EXAMPLE), "--store", str(tmp_path), "--no-progress"]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert main(["transfer", "--no-progress"]) == 1
    assert "give a weight file" in capsys.readouterr().err
    assert not pulses


def test_the_fast_scheme_is_refused_where_the_instrument_cannot_make_its_row_pulse():
    narrow = RequestChecker(limits=type(RequestChecker().limits)(max_line_voltage=2.2))
    with pytest.raises((RequestError, SafetyError), match="beyond the line limit of 2.2 V. Use --scheme half-bias"):
        transfer.plan(TransferSettings(scheme="fast"), IspvaSettings(), SMALL, narrow)


def test_a_2x2_transfer_runs_end_to_end_on_the_pyvisa_sim_bench(tmp_path, capsys):
    w = tmp_path / "w2x1.npz"
    save_weights(w, [[3], [-5]])
    log, store_path, js = tmp_path / "visa.log", tmp_path / "s.sqlite", tmp_path / "t.json"
    rc = main(["transfer", str(w), "--bench", str(SIM_BENCH), "--width", "2e-3", "--max-pulses", "2",
               "--final-rounds", "1", "--visa-log", str(log), "--store", str(store_path), "--json", str(js),
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rep = json.load(open(js))
    assert rep["cells"] == 4 and rep["programmed_cells"] == 2 and rep["backend"] == "probe-station"
    with RunStore(store_path) as store:
        (info,) = store.runs()
        assert info.status == "finished" and info.backend == "probe-station"
        pulses = [r.data for r in store.records(info.id, "IspvaPulse")]
    assert pulses and all(-2.5 <= p["pulse_v"] <= 4.3 for p in pulses)
    writes = [ln for ln in log.read_text().splitlines() if "  write  " in ln]
    # every pulse is one XE in pulsed spot mode (MM 3); the whole-region reads measure several
    # bitlines at once, an XE in spot mode (MM 1)
    mode, pulsed = None, 0
    for ln in writes:
        if "'MM " in ln:
            mode = ln.split("'MM ")[1].split(",")[0]
        pulsed += "'XE'" in ln and mode == "3"
    assert pulsed == len(pulses)
    # the run ends with every crosspoint open and the error queue read: the bench is left safe
    assert writes[-1].endswith("':SYST:ERR?'") and any("':ROUT:OPEN:CARD ALL'" in ln for ln in writes[-6:])


def test_the_twins_pulse_width_is_refused_on_the_bench_before_any_pulse(tmp_path, capsys):
    w = tmp_path / "w2x1.npz"
    save_weights(w, [[3], [-5]])
    log = tmp_path / "visa.log"
    rc = main(["transfer", str(w), "--bench", str(SIM_BENCH), "--visa-log", str(log), "--no-progress"])
    assert rc == 1
    assert "allowed 0.0005 to 0.1 s" in capsys.readouterr().err
    assert not log.exists()  # planned against the bench file: nothing was connected, not one VISA write


@pytest.mark.parametrize("edit, message", [
    (("max_set_voltage = 4.3", "max_set_voltage = 3.5"), "3.5"),                 # the bench's own limit
    (("max_line_voltage = 2.2", "max_line_voltage = 1.5"), "1.5"),              # its line limit: V/2 > 1.5 V
])
def test_transfer_plans_against_the_bench_file_before_connecting(tmp_path, capsys, monkeypatch, edit, message):
    """What only the bench file forbids (its set limit, its line limit) is refused with zero VISA
    writes: the station is never built."""
    import rramlab.drivers.probe_station as ps

    text = (SIM_BENCH.parent / "virtual.toml").read_text()
    assert edit[0] in text
    bench = tmp_path / "bench.toml"
    bench.write_text(text.replace(*edit))
    connects = []
    monkeypatch.setattr(ps, "connect_bench", lambda *a, **k: connects.append(1) or pytest.fail("connected"))
    w = tmp_path / "w.npz"
    save_weights(w, [[8, 3], [-5, 1]])
    log = tmp_path / "visa.log"
    rc = main(["transfer", str(w), "--bench", str(bench), "--scheme", "half-bias", "--width", "20e-3",
               "--visa-log", str(log), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and message in err, err
    assert connects == [] and not log.exists()
    assert main(["transfer", str(w), "--scheme", "half-bias", "--width", "20e-3", "--no-progress"]) == 0  # the twin takes it
