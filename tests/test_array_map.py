"""``rramlab map`` and protocols/array_map.py: the twin, a chip after a transfer, the virtual and the
pyvisa-sim bench, and over-limit reads refused before any instrument command."""

from pathlib import Path

import numpy as np
import pytest

from rramlab.app.cli import main
from rramlab.drivers.interface import RequestError, SafetyError
from rramlab.protocols import array_map
from rramlab.protocols.store import RunStore
from rramlab.protocols.weights import save_weights
from rramlab.sim.virtual_array import VirtualArray
from tests.test_stop_paths import bench_state, visa_writes

ROOT = Path(__file__).resolve().parents[1]
SIM_BENCH = ROOT / "drivers" / "benches" / "sim.toml"
VIRTUAL_BENCH = ROOT / "drivers" / "benches" / "virtual.toml"
nS = 1e-9


def test_the_map_reads_each_cell_once_and_ends_with_the_whole_region():
    with VirtualArray(seed=3, engine="fast") as chip:
        chip.pulse_cell(1, 2, 3.6, 2e-6)
        p = array_map.plan(array_map.MapSettings(), chip, region=((0, 3), (1, 4)))
        records = list(array_map.run(chip, p))
        alone = chip.read_cell(1, 2, 1.0)
    reads, snapshot = records[:-1], records[-1]
    assert [(r.wordline, r.bitline) for r in reads] == [(w, b) for w in range(3) for b in range(1, 4)]
    assert isinstance(snapshot, array_map.MapSnapshot)
    assert snapshot.wordlines == (0, 1, 2) and snapshot.bitlines == (1, 2, 3)
    g = np.array(snapshot.conductance_s)
    assert g[1, 1] == pytest.approx(alone, rel=1e-6) and g[1, 1] > 10 * nS
    assert np.all(np.delete(g.ravel(), 4) < 5 * nS)  # the rest stay in HRS: a map pulses nothing


def test_level_counts_bin_around_the_papers_levels():
    counts = array_map.level_counts([0.0, 1.6 * nS, 9.9 * nS, 21 * nS, 84.9 * nS, 90 * nS, -0.1 * nS])
    assert counts["HRS"] == 3 and counts["10 nS"] == 1 and counts["20 nS"] == 1
    assert counts["80 nS"] == 1 and counts["above 85 nS"] == 1 and sum(counts.values()) == 7


@pytest.mark.parametrize("region, message", [("0:4", "W0:W1,B0:B1"), ("4:2,0:3", "start < end"),
                                             ("0:25,0:3", "not within 0:24")])
def test_a_bad_region_is_refused_naming_the_form(region, message):
    with pytest.raises(RequestError, match=message):
        array_map.plan(array_map.MapSettings(), VirtualArray(seed=0), array_map.parse_region(region))


def test_a_map_of_a_chip_after_a_transfer_equals_the_transfers_final_reads(tmp_path, capsys):
    weights, chip, store = tmp_path / "w.npz", tmp_path / "chip.npz", tmp_path / "s.sqlite"
    save_weights(weights, [[3, -2], [-5, 1], [7, 0]])
    assert main(["transfer", str(weights), "--save-chip", str(chip), "--store", str(store), "--no-progress"]) == 0
    csv, png = tmp_path / "m.csv", tmp_path / "m.png"
    assert main(["map", "--chip", str(chip), "--region", "0:3,0:4", "--store", str(store), "--csv", str(csv),
                 "--png", str(png), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3 x 4 cells" in out and "HRS: 7" in out and png.stat().st_size > 10_000
    with RunStore(store) as s:
        finals = [r.data for r in s.records(1, "CellRead") if r.data["stage"] == "final"]
        last = max(r["round"] for r in finals)
        final = {(r["wordline"], r["bitline"]): r["conductance_s"] for r in finals if r["round"] == last}
        mapped = {(r.data["wordline"], r.data["bitline"]): r.data["conductance_s"] for r in s.records(2, "MapRead")}
        (snap,) = s.records(2, "MapSnapshot")
        assert s.run(2).protocol == "map" and s.run(2).status == "finished"
    assert set(final) == set(mapped) and len(final) == 12
    for cell, g in final.items():
        assert mapped[cell] == pytest.approx(g, rel=1e-9, abs=1e-15), cell
    assert np.array(snap.data["conductance_s"])[1, 0] == pytest.approx(mapped[1, 0])
    rows = [ln for ln in csv.read_text().splitlines() if not ln.startswith("#")]
    assert rows[0] == ",".join(array_map.CSV_HEADER) and len(rows) == 13


@pytest.mark.parametrize("bench", [VIRTUAL_BENCH, SIM_BENCH], ids=["virtual", "pyvisa-sim"])
def test_the_map_runs_on_a_bench_and_leaves_it_safe(tmp_path, capsys, bench):
    log, store = tmp_path / "visa.log", tmp_path / "s.sqlite"
    assert main(["map", "--bench", str(bench), "--region", "0:2,0:3", "--visa-log", str(log),
                 "--store", str(store), "--no-progress"]) == 0, capsys.readouterr().err
    assert "2 x 3 cells" in capsys.readouterr().out
    writes = visa_writes(log)
    state = bench_state(writes)
    assert state.safe, str(state)
    assert not any(cmd.startswith(("PV", "SPV")) for _, cmd in writes)  # a map pulses nothing
    with RunStore(store) as s:
        (info,) = s.runs()
        assert info.backend == "probe-station" and len(s.records(info.run_id, "MapRead")) == 6


@pytest.mark.parametrize("bench", [VIRTUAL_BENCH, SIM_BENCH], ids=["virtual", "pyvisa-sim"])
def test_an_over_limit_read_voltage_is_refused_with_no_instrument_command(tmp_path, capsys, bench):
    log = tmp_path / "visa.log"
    assert main(["map", "--bench", str(bench), "--read-v", "2", "--visa-log", str(log),
                 "--store", str(tmp_path / "s.sqlite")]) == 1
    assert "read limit" in capsys.readouterr().err
    assert not log.exists() or not visa_writes(log)


def test_the_twin_refuses_an_over_limit_read_before_reading():
    chip = VirtualArray(seed=0)
    with pytest.raises(SafetyError, match="read limit"):
        array_map.plan(array_map.MapSettings(read_v=1.6), chip)


def test_sigterm_mid_map_leaves_the_bench_safe_and_keeps_every_read(tmp_path):
    from tests.test_stop_paths import start  # runs tests/stop_runner.py, which sends the signal from inside

    log, csv, store = tmp_path / "visa.log", tmp_path / "map.csv", tmp_path / "s.sqlite"
    # SIGTERM just before the 20th XE: a wordline is read in 8 groups of three bitlines (one XE each),
    # so two whole wordlines were read and recorded, the third was cut short and is not
    proc = start(["map", "--bench", str(SIM_BENCH), "--visa-log", str(log), "--csv", str(csv), "--store", str(store),
                  "--no-progress"], tmp_path, runner=True, env_extra={"STOP_PLAN": "XE#20:TERM"})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert bench_state(visa_writes(log)).safe
    assert "interrupted by SIGTERM after" in err and "every crosspoint open" in err and "Traceback" not in err
    rows = [ln for ln in csv.read_text().splitlines() if not ln.startswith("#")][1:]
    with RunStore(store) as s:
        (info,) = s.runs()
        stored = s.records(info.run_id, "MapRead")
        assert info.status == "aborted" and not s.records(info.run_id, "MapSnapshot")
    assert len(rows) == len(stored) == 48
