"""ISPVA: the verify loop's rules, its refusals before any pulse, the paper's single-device experiment
on the twin, and what verify buys on a device whose pulses land imperfectly."""

import json

import numpy as np
import pytest

from rramlab.app.cli import main
from rramlab.drivers.interface import ArrayGeometry, CrossbarInstrument, RequestError, SafetyError
from rramlab.protocols import ispva
from rramlab.protocols.ispva import IspvaPulse, IspvaResult, IspvaSettings
from rramlab.sim.virtual_array import VirtualArray

nS = 1e-9


class NoisyCell(CrossbarInstrument):
    """A fake one-cell instrument whose set pulses land imperfectly: a set at V moves the conductance
    to the level V aims at (10 nS per 0.1 V above 3.2625 V) plus a Gaussian step error of
    ``sigma_s``; it never lowers it. A reset returns it to 1.6 nS. Counts every pulse."""

    backend_name = "fake"

    def __init__(self, seed=0, sigma_s=3 * nS):
        super().__init__(ArrayGeometry(1, 1))
        self.rng = np.random.default_rng(seed)
        self.sigma_s = sigma_s
        self.g = 1.6 * nS
        self.pulses = []

    def _pulse(self, wl, bl, width, shape):
        v = float(wl[0] - bl[0])
        self.pulses.append(v)
        if v < 0:
            self.g = 1.6 * nS
        elif v > 3.2625:
            level = min(8, int((v - 3.2625) / 0.1) + 1) * 10 * nS
            self.g = max(self.g, level) + self.rng.normal(0, self.sigma_s)

    def _read(self, cells, v):
        return [self.g * v for _ in cells]

    def _vmm(self, wl, bls):
        return np.zeros((len(wl), len(bls)))

    def _reset_outputs(self):
        pass


def _result(records):
    (r,) = [x for x in records if isinstance(x, IspvaResult)]
    return r


def test_first_amplitude_follows_the_target_level():
    s = IspvaSettings()
    assert [ispva.first_set_v(s, k * 10 * nS) for k in (1, 4, 8)] == [3.3, 3.6, 4.0]
    assert ispva.first_set_v(IspvaSettings(set_max_v=3.5), 80 * nS) == 3.5


def test_next_amplitude_steps_by_the_measured_error():
    s = IspvaSettings()
    assert ispva.next_set_v(s, 3.5, -10 * nS) == pytest.approx(3.6)     # one level low: one level up
    assert ispva.next_set_v(s, 3.5, -0.5 * nS) == pytest.approx(3.525)  # a little low: the smallest step
    assert ispva.next_set_v(s, 3.5, +20 * nS) == pytest.approx(3.3)     # overshoot: down by the overshoot
    assert ispva.next_set_v(s, 4.15, -30 * nS) == 4.2                   # never above set_max_v
    assert ispva.next_set_v(s, 3.3, +30 * nS) == pytest.approx(3.2)     # never below one level under the start


def test_within_fraction():
    assert ispva.within_fraction([0, 1.9 * nS, -2 * nS, 2.1 * nS], 2 * nS) == 0.75
    assert np.isnan(ispva.within_fraction([], 2 * nS))


@pytest.mark.parametrize("settings, targets, message", [
    (IspvaSettings(tolerance_s=0.0), [30 * nS], "--tolerance (tolerance_s) = 0 S is out of range"),
    (IspvaSettings(tolerance_s=-1e-9), [30 * nS], "--tolerance (tolerance_s) = -1e-09 S"),
    (IspvaSettings(max_pulses=0), [30 * nS], "--max-pulses (max_pulses) = 0 is out of range: allowed 1 to 10000"),
    (IspvaSettings(), [5 * nS], "target conductance of cell 0,0 5 nS is outside 10..80 nS"),
    (IspvaSettings(), [90 * nS], "90 nS is outside 10..80 nS"),
    (IspvaSettings(), [float("nan")], "outside 10..80 nS"),
    (IspvaSettings(set_max_v=4.5), [30 * nS], "--set-max (set_max_v) = 4.5 V is beyond the set limit"),
    (IspvaSettings(read_v=2.0), [30 * nS], "--read-v (read_v) = 2 V is beyond the read limit"),
    (IspvaSettings(reset_v=-3.0), [30 * nS], "--reset (reset_v) = -3 V is beyond the reset limit"),
    (IspvaSettings(set_start_v=4.1, set_max_v=4.0), [30 * nS], "--set-start 4.1 V is above --set-max 4 V"),
])
def test_bad_settings_and_targets_are_refused_before_any_pulse(settings, targets, message):
    cell = NoisyCell()
    with pytest.raises((RequestError, SafetyError)) as exc:
        ispva.plan(settings, [(0, 0)], targets, cell)
    assert message in str(exc.value)
    assert cell.pulses == []


def test_a_set_pulse_within_the_chip_limits_but_beyond_the_instrument_is_refused():
    cell = NoisyCell()
    cell.limits = type(cell.limits)(max_set_voltage=4.0)
    with pytest.raises(SafetyError, match="4.2 V is beyond the set limit"):
        ispva.plan(IspvaSettings(), [(0, 0)], [30 * nS], cell)


def test_ispva_on_the_array_twin_reaches_every_level_and_the_final_read_counts():
    va = VirtualArray(engine="fast", seed=3)
    cells = [(2, b) for b in range(8)]
    targets = [10 * nS * (k + 1) for k in range(8)]
    records = list(ispva.run(va, ispva.plan(IspvaSettings(), cells, targets, va)))
    results = [r for r in records if isinstance(r, IspvaResult)]
    assert [(r.wordline, r.bitline) for r in results] == cells
    for r, t in zip(results, targets):
        assert r.converged and abs(r.conductance_s - t) <= 2 * nS and r.target_s == t
        assert r.conductance_s == pytest.approx(va.read_cell(r.wordline, r.bitline) / 1.0)
        pulses = [p for p in records if isinstance(p, IspvaPulse) and p.bitline == r.bitline]
        assert len(pulses) == r.pulses >= 1 and pulses[0].kind == "set"


def test_a_cell_above_its_target_is_reset_then_set_again():
    va = VirtualArray(engine="fast", seed=0)
    va.pulse_cell(0, 0, 4.0, 2e-6)  # 80 nS
    records = list(ispva.run(va, ispva.plan(IspvaSettings(), [(0, 0)], [30 * nS], va)))
    kinds = [r.kind for r in records if isinstance(r, IspvaPulse)]
    assert kinds[0] == "reset" and kinds[1] == "set"
    assert _result(records).converged


def test_the_budget_ends_a_cell_that_cannot_converge():
    cell = NoisyCell(sigma_s=30 * nS)
    records = list(ispva.run(cell, ispva.plan(IspvaSettings(max_pulses=3), [(0, 0)], [40 * nS], cell)))
    r = _result(records)
    assert r.pulses == len(cell.pulses) <= 3


def test_should_stop_ends_the_run_between_pulses():
    cell = NoisyCell(sigma_s=30 * nS)
    stop = lambda: len(cell.pulses) >= 2  # noqa: E731
    records = list(ispva.run(cell, ispva.plan(IspvaSettings(), [(0, 0)], [40 * nS], cell), stop))
    assert len(cell.pulses) == 2 and not any(isinstance(r, IspvaResult) for r in records)


def _experiment(verify: int, n: int = 120):
    results = []
    for i in range(n):
        cell = NoisyCell(seed=i)
        target = 10 * nS * (1 + i % 8)
        s = IspvaSettings(verify=verify)
        results.append(_result(ispva.run(cell, ispva.plan(s, [(0, 0)], [target], cell))))
    err = np.array([r.error_s for r in results])
    return ispva.within_fraction(err, 2 * nS), float(np.sqrt(np.mean(err ** 2))), \
        float(np.mean([r.pulses for r in results]))


def test_verify_is_what_brings_imperfect_cells_into_tolerance():
    with_verify, rmse_verify, pulses_verify = _experiment(verify=1)
    open_loop, rmse_open, pulses_open = _experiment(verify=0)
    assert pulses_open == 1 and pulses_verify > 1.5
    assert with_verify >= 0.95 and open_loop <= 0.6
    assert rmse_open > 2 * rmse_verify


def test_the_paper_experiment_on_the_twin(tmp_path, capsys):
    js, cs = tmp_path / "ispva.json", tmp_path / "ispva.csv"
    assert main(["ispva", "--devices", "50", "--json", str(js), "--csv", str(cs), "--no-progress"]) == 0
    out = capsys.readouterr().out
    summary = json.load(open(js))
    assert summary["devices"] == 400 and len(summary["levels"]) == 8
    assert summary["within_2ns"] >= 0.99 and summary["within_4ns"] == 1.0   # verified after the error
    assert summary["settings"]["programming"] == "verified"
    assert [lv["target_s"] for lv in summary["levels"]] == pytest.approx([k * 10 * nS for k in range(1, 9)])
    assert all(lv["mean_pulses"] >= 1 and 0 <= lv["within_2ns"] <= lv["within_4ns"] for lv in summary["levels"])
    assert summary["wall_s"] > 0
    lines = open(cs).read().splitlines()
    comments = [x for x in lines if x.startswith("#")]
    assert lines[:len(comments)] == comments and any(x.startswith("# command: rramlab ispva") for x in comments)
    assert any(x.startswith("# backend: ") for x in comments) and any('"devices_per_level": 50' in x for x in comments)
    assert summary["provenance"]["command"].startswith("rramlab ispva --devices 50")
    assert summary["provenance"]["settings"]["devices_per_level"] == 50
    rows = lines[len(comments):]
    assert rows[0] == "device,target_s,converged,pulses,conductance_s,error_s" and len(rows) == 401
    final = np.array([float(r.split(",")[4]) for r in rows[1:]])
    target = np.array([float(r.split(",")[1]) for r in rows[1:]])
    assert np.mean(np.abs(final - target) <= 2 * nS) == pytest.approx(summary["within_2ns"])
    assert "all: " in out and "% within +-2 nS" in out


def test_the_papers_error_procedure_gives_the_papers_94_percent(tmp_path, capsys):
    """--programming paper-once: the 1.06 nS error added once after each device's ISPVA, not verified,
    so the fraction within +-2 nS is the Gaussian's (94 %), not verify's 100 %."""
    js = tmp_path / "once.json"
    assert main(["ispva", "--devices", "50", "--programming", "paper-once", "--json", str(js), "--no-progress"]) == 0
    summary = json.load(open(js))
    assert summary["devices"] == 400 and summary["settings"]["programming"] == "paper-once"
    assert 0.90 <= summary["within_2ns"] <= 0.97 and summary["within_4ns"] >= 0.99
    assert summary["mean_pulses"] < 1.05   # the twin's levels are exact: one pulse, no re-verify


def test_ispva_cli_refuses_bad_settings_before_any_device(capsys):
    assert main(["ispva", "--devices", "1", "--tolerance", "0", "--no-progress"]) == 1
    assert "--tolerance (tolerance_s) = 0 S is out of range" in capsys.readouterr().err
    assert main(["ispva", "--devices", "1", "--max-pulses", "0", "--no-progress"]) == 1
    assert "--max-pulses (max_pulses) = 0" in capsys.readouterr().err


def test_ispva_cli_runs_the_device_mode_twin_and_records_it(tmp_path, capsys):
    """--programming-error device: the error comes from the device (VT and RON redrawn per switching
    event), nothing is added at programming_done; the run says so in its JSON and in the store."""
    from rramlab.protocols.store import RunStore

    out, store = tmp_path / "d.json", tmp_path / "s.sqlite"
    assert main(["ispva", "--devices", "3", "--programming-error", "device", "--json", str(out),
                 "--store", str(store), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["programming_error"] == "device"
    assert 0.0 <= report["within_2ns"] <= 1.0 and report["mean_pulses"] >= 1.0
    with RunStore(store) as s:
        (info,) = s.runs()
        assert s.run(info.id).backend_describe["programming_error"] == "device"
def test_bracket_amplitude_follows_the_cells_own_response():
    s = IspvaSettings()
    # 11.2 nS at 3.4 V and 32.4 nS at 3.5 V: 20 nS lies 42 % of the way, 3.45 V on the 25 mV grid
    assert ispva.bracket_set_v(s, 3.4, 11.2 * nS, 3.5, 32.4 * nS, 20 * nS) == pytest.approx(3.45)
    # at least one step inside either end
    assert ispva.bracket_set_v(s, 3.4, 10 * nS, 3.5, 50 * nS, 10.5 * nS) == pytest.approx(3.425)
    assert ispva.bracket_set_v(s, 3.4, 10 * nS, 3.5, 50 * nS, 49.5 * nS) == pytest.approx(3.475)
    # neighbouring amplitudes: no pulse lands between the two levels
    assert ispva.bracket_set_v(s, 3.4, 11 * nS, 3.425, 22 * nS, 20 * nS) is None


def _device_with_ri(scale: float):
    """The measured preset with its insulator prefactor R0 (Ri) scaled by ``scale``."""
    from dataclasses import replace

    from rramlab.sim.device import device_preset

    base = device_preset("measured")
    return replace(base, insulator_r0=base.insulator_r0 * scale)


def _levels_of(device):
    """The read conductance (S) of a fresh lone twin device after set pulses at 3.3, 3.4, ... 4.0 V."""
    d = VirtualArray.lone_device(engine="fast", device=device)
    out = []
    for k in range(8):
        d.pulse_cell(0, 0, 3.3 + 0.1 * k, 2e-6)
        out.append(d.read_cell(0, 0))
    return out


@pytest.mark.parametrize("target_ns, ri_scale", [
    (80, 1.04),   # Ri sets the top level: 4 % more Ri puts it below 78 nS, and no switch raises that cap
])
def test_a_target_between_two_levels_ends_at_the_closer_level_not_after_a_reset(target_ns, ri_scale):
    device = _device_with_ri(ri_scale)
    levels = _levels_of(device)
    target = target_ns * nS
    closest = min(levels, key=lambda g: abs(g - target))
    assert abs(closest - target) > 2 * nS  # the target is out of reach on this device
    va = VirtualArray.lone_device(engine="fast", device=device)
    records = list(ispva.run(va, ispva.plan(IspvaSettings(), [(0, 0)], [target], va)))
    r = _result(records)
    pulses = [p for p in records if isinstance(p, IspvaPulse)]
    assert not r.converged and r.out_of_reach
    assert r.conductance_s == pytest.approx(closest, abs=0.05 * nS)
    assert r.conductance_s == pytest.approx(va.read_cell(0, 0))
    assert pulses[-1].kind == "set" and r.pulses == len(pulses) <= 10   # well inside the 40-pulse budget


@pytest.mark.parametrize("target_ns", [33, 36, 55])
def test_a_target_between_two_levels_is_reached_by_a_partly_switched_area(target_ns):
    """Between two of the exact device's levels: a set pulse just above the next switch's threshold
    turns it only partly on (sim/device.py partial_on_fraction), and the halved bracket finds it."""
    va = VirtualArray.lone_device(engine="fast")
    records = list(ispva.run(va, ispva.plan(IspvaSettings(), [(0, 0)], [target_ns * nS], va)))
    r = _result(records)
    assert r.converged and not r.out_of_reach and abs(r.error_s) <= 2 * nS
    assert 0 < va.switch_fraction[0, 0][va.switch_states[0, 0]].min() < 1   # one switch is partly on
    assert r.pulses <= 20


def test_ispva_on_a_varied_chip_ends_every_cell_in_or_next_to_the_window():
    """Typical device-to-device spread (what --seed draws): the first amplitude from the nominal
    table often misses and targets lie between two levels of their cell; partly switched areas
    reach them. Every cell ends within tolerance (none out of reach: the issue allows 1 %), few pulses."""
    from rramlab.sim.virtual_array import Variability

    va = VirtualArray(engine="fast", seed=1, variability=Variability.typical())
    cells = [(w, b) for w in (1, 2) for b in range(16)]
    targets = [10 * nS * (1 + (w * 16 + b) % 8) for w, b in cells]
    results = [r for r in ispva.run(va, ispva.plan(IspvaSettings(), cells, targets, va))
               if isinstance(r, IspvaResult)]
    assert len(results) == len(cells)
    assert all(r.converged or r.out_of_reach for r in results)
    assert sum(r.out_of_reach for r in results) == 0
    assert sum(r.pulses > 1 for r in results) >= 3          # the nominal table misses some (4 of 32 here)
    assert ispva.within_fraction([r.error_s for r in results], 2 * nS) == 1.0
    assert np.mean([r.pulses for r in results]) <= 8


def test_device_mode_ispva_on_varied_devices_meets_the_papers_94_percent():
    """The paper's single-device experiment on varied devices (typical spread, what --seed draws) in
    "device" mode (cycle-to-cycle redraw per switching event), with verify: at least the paper's
    94 % within +-2 nS and at most 1 % of targets out of reach (here 10 devices per level; the
    README gives the 400-device numbers)."""
    from rramlab.sim.virtual_array import Variability

    results = []
    for i in range(80):
        target = ispva.PAPER_LEVELS_S[i % 8]
        with VirtualArray.lone_device(seed=i, engine="fast", programming_error="device",
                                      variability=Variability.typical()) as device:
            results.append(_result(ispva.run(device, ispva.plan(IspvaSettings(), [(0, 0)], [target], device))))
    assert ispva.within_fraction([r.error_s for r in results], 2 * nS) >= 0.94
    assert np.mean([r.out_of_reach for r in results]) <= 0.0125  # at most 1 of 80
    assert np.mean([r.pulses for r in results]) > 1.5             # verify did the work


def _device_mode_experiment(verify: int, per_level: int = 3):
    """The single-device experiment on twin devices in "device" mode with a wide cycle-to-cycle
    spread (30 mV on VT, 30 % on RON per switching event), so a single pulse often misses."""
    from rramlab.sim.virtual_array import CycleToCycle

    results = []
    for i in range(8 * per_level):
        target = ispva.PAPER_LEVELS_S[i // per_level]
        with VirtualArray.lone_device(seed=i, engine="fast", programming_error="device",
                                      cycle_to_cycle=CycleToCycle(0.03, 0.30)) as device:
            s = IspvaSettings(verify=verify)
            results.append(_result(ispva.run(device, ispva.plan(s, [(0, 0)], [target], device))))
    err = np.array([r.error_s for r in results])
    return ispva.within_fraction(err, 2 * nS), float(np.sqrt(np.mean(err ** 2))), \
        float(np.mean([r.pulses for r in results]))


def test_in_device_mode_the_verify_loop_brings_cells_into_tolerance():
    with_verify, rmse_verify, pulses_verify = _device_mode_experiment(verify=1)
    open_loop, rmse_open, pulses_open = _device_mode_experiment(verify=0)
    assert pulses_open == 1 and pulses_verify > 1.5
    assert with_verify >= 0.95 and open_loop <= 0.85
    assert rmse_open > 1.5 * rmse_verify


def test_two_switches_within_one_amplitude_step_are_told_apart_by_a_finer_step():
    """A device whose first two switches turn on at 3.335 and 3.345 V, inside one 25 mV step: the
    10 nS level lies between two amplitudes of the grid, and a halved step finds it."""
    from dataclasses import replace

    from rramlab.sim.device import Switch, device_preset

    base = device_preset("measured")
    moved = [Switch.from_thresholds(on, sw.turn_off_v, sw.on_resistance)
             for on, sw in zip((3.335, 3.345), base.switches[:2])]
    device = replace(base, switches=(*moved, *base.switches[2:]))
    va = VirtualArray.lone_device(engine="fast", device=device)
    records = list(ispva.run(va, ispva.plan(IspvaSettings(), [(0, 0)], [10 * nS], va)))
    r = _result(records)
    amplitudes = [p.pulse_v for p in records if isinstance(p, IspvaPulse) and p.kind == "set"]
    assert r.converged and not r.out_of_reach
    assert any(round(v / 0.025, 6) != round(v / 0.025) for v in amplitudes)  # off the 25 mV grid


def test_ispva_cli_with_seed_draws_varied_devices(tmp_path, capsys):
    """--seed N: device i is drawn with typical device-to-device spread from seed N + i (without it,
    the paper's exact device); the JSON says so and the devices differ."""
    out = tmp_path / "v.json"
    assert main(["ispva", "--devices", "2", "--seed", "3", "--engine", "fast", "--json", str(out),
                 "--store", str(tmp_path / "s.sqlite"), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["varied"] is True and report["settings"]["seed"] == 3
    assert report["provenance"]["backend"]["variability"]["threshold_sigma_v"] > 0
    assert "fresh varied (seed 3) twin devices" in capsys.readouterr().out
    assert report["within_2ns"] >= 0.9
