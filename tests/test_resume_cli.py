"""``--resume RUN`` after a real SIGKILL (app/resume.py): a command killed mid-run on the virtual
bench or the twin resumes from its last stored record; no stored record is lost or repeated and the
resumed records continue the plan's sequence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rramlab.app.cli import main
from rramlab.protocols.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
VIRTUAL = str(ROOT / "drivers" / "benches" / "virtual.toml")
RRAMLAB = [sys.executable, "-m", "rramlab"]


def _count(store) -> int:
    try:
        with RunStore(store) as s:
            runs = s.runs()
            return runs[0].records if runs else 0
    except Exception:  # noqa: BLE001 - the store may not exist yet
        return 0


def killed_mid_run(argv, store, after: int, tmp_path, timeout=120.0):
    """Start ``rramlab argv --store store``, SIGKILL it once ``after`` records are stored; (run id,
    the stored records as (type, data))."""
    proc = subprocess.Popen([*RRAMLAB, *argv, "--store", str(store), "--no-progress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    end = time.monotonic() + timeout
    while _count(store) < after:
        if proc.poll() is not None:
            pytest.fail(f"rramlab ended (exit {proc.returncode}) before {after} records: {proc.stderr.read()}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("timed out")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with RunStore(store) as s:
        run = s.runs()[0]
        assert run.shown_status == "unfinished"
        return run.run_id, [(r.type, r.data) for r in s.records(run.run_id)]


def resumed(argv, store, run_id, capsys):
    quiet = [] if argv[0] == "iv" else ["--no-progress"]  # iv has no progress bar
    assert main([*argv, "--store", str(store), "--resume", str(run_id), *quiet]) == 0, capsys.readouterr().err
    with RunStore(store) as s:
        info = s.run(run_id)
        records = s.records(run_id)
    assert info.status == "finished"
    assert [r.seq for r in records] == list(range(len(records)))  # no gap, no repeat
    return [(r.type, r.data) for r in records]


def test_ispp_killed_on_the_virtual_bench_resumes_with_the_next_pulse(tmp_path, capsys):
    argv = ["ispp", "--bench", VIRTUAL, "--cell", "3,7", "--width", "2e-3", "--cycles", "2", "--seed", "5"]
    store = tmp_path / "runs.sqlite"
    run_id, before = killed_mid_run(argv, store, 20, tmp_path)
    # the resume takes the stored settings and cell: only the backend flags are given again
    after = resumed(["ispp", "--bench", VIRTUAL, "--seed", "5"], store, run_id, capsys)
    assert after[:len(before)] == before
    pulses = [(d["cycle"], d["phase"], d["step"]) for _, d in after]
    assert len(pulses) == len(set(pulses)) == 2 * 62  # every pulse of both cycles, once
    assert pulses == sorted(pulses, key=lambda p: (p[0], p[1] == "reset", p[2]))
    assert all((d["wordline"], d["bitline"]) == (3, 7) for _, d in after)
    assert "resuming run" in capsys.readouterr().err


def test_endurance_killed_on_the_virtual_bench_resumes_and_the_cycle_count_goes_on(tmp_path, capsys):
    argv = ["endurance", "--bench", VIRTUAL, "--cell", "2,5", "--width", "2e-3", "--cycles", "150",
            "--read-every", "1", "--seed", "2"]
    store = tmp_path / "runs.sqlite"
    run_id, before = killed_mid_run(argv, store, 15, tmp_path)
    after = resumed(["endurance", "--bench", VIRTUAL, "--seed", "2"], store, run_id, capsys)
    assert after[:len(before)] == before
    cycles = [d["cycle"] for _, d in after]
    assert cycles == list(range(1, 151))  # the resumed reads continue the count: none lost, none twice
    assert "resuming run" in capsys.readouterr().err


def test_disturb_killed_on_the_twin_resumes_in_its_phase(tmp_path, capsys):
    argv = ["disturb", "--cell", "3,7", "--reads", "20000", "--neighbours", "--pulses", "300", "--seed", "4"]
    store = tmp_path / "runs.sqlite"
    run_id, before = killed_mid_run(argv, store, 12, tmp_path)
    after = resumed(["disturb", "--seed", "4"], store, run_id, capsys)
    assert after[:len(before)] == before
    keys = [(d["phase"], d["count"], d["wordline"], d["bitline"]) for _, d in after]
    assert len(keys) == len(set(keys))
    reads = [c for p, c, _, _ in keys if p == "read"]
    assert reads == sorted(reads) and reads[0] == 0 and reads[-1] == 20000
    half = [c for p, c, _, _ in keys if p == "half-select"]
    assert half and half[0] == 0 and half[-1] == 300 and half == sorted(half)


def test_resume_refuses_settings_flags_and_another_commands_run_before_any_backend(tmp_path, capsys):
    store = tmp_path / "runs.sqlite"
    assert main(["ispp", "--cycles", "1", "--store", str(store), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["endurance", "--resume", "1", "--store", str(store)]) == 1
    assert capsys.readouterr().err.strip() == ("rramlab endurance: error: run 1 was recorded by ispp, not endurance: "
                                               "resume it with `rramlab ispp --resume 1`")
    assert main(["ispp", "--resume", "1", "--cycles", "3", "--store", str(store)]) == 1
    assert "drop --cycles" in capsys.readouterr().err
    assert main(["ispp", "--resume", "1", "--csv", str(tmp_path / "x.csv"), "--store", str(store)]) == 1
    assert "rramlab runs export 1 --csv" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_map_killed_on_the_virtual_bench_resumes_cell_by_cell_and_its_snapshot_is_whole(tmp_path, capsys):
    argv = ["map", "--bench", VIRTUAL, "--region", "0:12,0:10", "--seed", "6"]
    store = tmp_path / "runs.sqlite"
    run_id, before = killed_mid_run(argv, store, 25, tmp_path)
    after = resumed(["map", "--bench", VIRTUAL, "--seed", "6"], store, run_id, capsys)
    assert after[:len(before)] == before
    reads = [(d["wordline"], d["bitline"]) for t, d in after if t == "MapRead"]
    assert reads == [(w, b) for w in range(12) for b in range(10)]  # every cell once, in order
    (snapshot,) = [d for t, d in after if t == "MapSnapshot"]
    flat = [g for row in snapshot["conductance_s"] for g in row]
    assert flat == [d["conductance_s"] for t, d in after if t == "MapRead"]  # stored and new reads together
    assert after[-1][0] == "MapSnapshot"


def test_iv_resume_sweeps_an_unstarted_run_and_refuses_a_sweep_stored_part_way(tmp_path, capsys):
    store = tmp_path / "runs.sqlite"
    assert main(["iv", "--cell", "1,2", "--store", str(store)]) == 0
    with RunStore(store) as s:
        whole = s.records(1)
        # a run killed after its first 7 points were stored (the sweep is taken at once)
        rid = s.start_run("iv", {**s.run(1).settings}, "twin", {})
        for r in whole[:7]:
            s.conn.execute("INSERT INTO records (run_id, seq, type, data, at) VALUES (?, ?, ?, ?, ?)",
                           (rid, r.seq, r.type, __import__("json").dumps(r.data), r.at))
        s.conn.commit()
        empty = s.start_run("iv", {**s.run(1).settings}, "twin", {})
    capsys.readouterr()
    assert main(["iv", "--resume", str(rid), "--store", str(store)]) == 1
    assert "a staircase cannot be continued part-way; start a new iv run" in capsys.readouterr().err
    assert _count_of(store, rid) == 7
    after = resumed(["iv"], store, empty, capsys)
    assert [(d["point"], d["voltage_v"]) for _, d in after] == [(r.data["point"], r.data["voltage_v"]) for r in whole]
    assert all((d["wordline"], d["bitline"]) == (1, 2) for _, d in after)


def _count_of(store, run_id) -> int:
    with RunStore(store) as s:
        return s.run(run_id).records


def test_retention_killed_on_the_twin_resumes_programming_or_reads_without_a_gap(tmp_path, capsys):
    argv = ["retention", "--cells", "0:2,0:3", "--levels", "20,50,80", "--duration", "2h", "--reads", "log:300",
            "--seed", "8"]
    store = tmp_path / "runs.sqlite"
    run_id, before = killed_mid_run(argv, store, 40, tmp_path)
    after = resumed(["retention", "--seed", "8"], store, run_id, capsys)
    assert after[:len(before)] == before
    results = [(d["wordline"], d["bitline"]) for t, d in after if t == "IspvaResult"]
    assert results == [(w, b) for w in range(2) for b in range(3)]  # every cell programmed once
    times = [d["time_s"] for t, d in after if t == "RetentionRecord"]
    keys = [(d["time_s"], d["wordline"], d["bitline"]) for t, d in after if t == "RetentionRecord"]
    assert len(keys) == len(set(keys)) and times == sorted(times)
    assert len(set(times)) >= 299 and max(times) == pytest.approx(7200.0)


def test_ispva_killed_mid_device_resumes_and_equals_an_uninterrupted_run(tmp_path, capsys):
    argv = ["ispva", "--devices", "3", "--engine", "fast", "--programming-error", "device", "--seed", "11"]
    store = tmp_path / "runs.sqlite"
    run_id, before = killed_mid_run(argv, store, 30, tmp_path)
    after = resumed(["ispva"], store, run_id, capsys)
    assert after[:len(before)] == before
    plain = tmp_path / "plain.sqlite"
    assert main([*argv, "--store", str(plain), "--no-progress"]) == 0
    with RunStore(plain) as s:
        whole = [(r.type, r.data) for r in s.records(1)]
    assert after == whole  # the twin's fresh devices: the resumed run is the uninterrupted one
    assert sum(t == "IspvaResult" for t, _ in after) == 24
