"""Experiment recipes (``rramlab run``, ``protocols/recipe.py``): the format, the one planning pass
that refuses a bad step by its line with nothing sent, sessions in the run store, and resume after
a stop and after SIGKILL (a real ``rramlab run`` process)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rramlab.app.cli import main
from rramlab.protocols import recipe as rc
from rramlab.protocols.store import RunMetadata, RunStore
from rramlab.sim.virtual_array import VirtualArray

ROOT = Path(__file__).resolve().parents[1]
VIRTUAL_BENCH = ROOT / "drivers" / "benches" / "virtual.toml"
RRAMLAB = str(Path(sys.executable).with_name("rramlab"))

GOOD = """\
name = "test day"

[[step]]
protocol = "map"
region = "0:2,0:2"

[[step]]
protocol = "ispva"
cells = [[0, 0], [0, 1]]
for = {targets_ns = [20, 50]}
repeat = 2
pulse_width_s = 2e-3

[[step]]
wait = "10min"
"""


def write(tmp_path, text, name="day.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loops_expand_into_numbered_steps_with_the_protocols_own_settings(tmp_path):
    recipe = rc.load_recipe(write(tmp_path, GOOD))
    kinds = [(s.index, s.number, s.line, s.protocol) for s in recipe.steps]
    assert kinds == [(0, 1, 3, "map"), (1, 2, 7, "ispva"), (2, 2, 7, "ispva"), (3, 2, 7, "ispva"),
                     (4, 2, 7, "ispva"), (5, 3, 14, "wait")]
    ispva_steps = recipe.steps[1:5]
    assert [s.targets_s for s in ispva_steps] == [(20e-9, 20e-9), (50e-9, 50e-9)] * 2
    assert [dict(s.loop)["repeat"] for s in ispva_steps] == [1, 1, 2, 2]
    assert all(s.settings.pulse_width_s == 2e-3 and s.settings.max_pulses == 40 for s in ispva_steps)
    assert recipe.steps[0].region == ((0, 2), (0, 2)) and recipe.steps[5].wait_s == 600.0
    planned = rc.plan_recipe(recipe)
    assert planned.summary().startswith("6 steps, about 10 min")
    # the estimate is the sum of the steps', the wait counted in full
    assert planned.estimate_s == pytest.approx(sum(p.estimate_s for p in planned.steps))
    assert planned.steps[5].estimate_s == 600.0 and planned.steps[0].estimate_s > 0


BAD_STEPS = [
    ("over-limit", '[[step]]\nprotocol = "map"\nregion = "0:1,0:2"\n\n[[step]]\nprotocol = "ispp"\ncell = [3, 7]\n'
                   'pulse_width_s = 2e-3\nset_stop_v = 6.0\n', 9, "set_stop_v"),
    ("unknown-protocol", '[[step]]\nprotocol = "map"\nregion = "0:1,0:2"\n\n[[step]]\nprotocol = "ispvaa"\n', 6,
     "unknown protocol"),
    ("negative-wait", '[[step]]\nprotocol = "map"\nregion = "0:1,0:2"\n\n[[step]]\nwait = -1\n', 6, "wait = -1"),
    ("twenty-year-wait", '[[step]]\nprotocol = "map"\nregion = "0:1,0:2"\n\n[[step]]\nname = "soak"\nwait = "20y"\n', 7,
     "more than a wait step's 31"),
    ("missing-weights", '[[step]]\nprotocol = "map"\nregion = "0:1,0:2"\n\n[[step]]\nprotocol = "transfer"\n'
                        'weights = "nope.npz"\nscheme = "half-bias"\n', 7, "does not exist"),
    ("unknown-setting", '[[step]]\nprotocol = "ispp"\ncell = [0, 0]\nset_stop = 3.0\n', 4, "unknown key set_stop"),
    ("wrong-type", '[[step]]\nprotocol = "endurance"\ncell = [0, 0]\ncycles = "many"\n', 4, "cycles"),
    ("unwired-line-inside-a-region", '[[step]]\nprotocol = "map"\nregion = "0:8,0:2"\n', 3, "wordline 5"),
    ("unwired-line", '[[step]]\nprotocol = "map"\nregion = "0:1,0:2"\n\n[[step]]\nprotocol = "disturb"\n'
                     'cell = [5, 3]\npulse_width_s = 2e-3\n', 7, "wordline 5"),
]


def _unwired_bench(tmp_path) -> Path:
    text = VIRTUAL_BENCH.read_text().replace("wordlines = [1, 2, 3, 4, 5, 6,", "wordlines = [1, 2, 3, 4, 5, 0,")
    assert "5, 0," in text
    return write(tmp_path, text, "bench.toml")


@pytest.mark.parametrize("name,text,line,words", BAD_STEPS, ids=[b[0] for b in BAD_STEPS])
def test_a_bad_step_refuses_the_whole_recipe_on_the_virtual_bench_with_its_line_and_no_command(
        tmp_path, capsys, name, text, line, words):
    path = write(tmp_path, text)
    log, store = tmp_path / "visa.log", tmp_path / "runs.sqlite"
    bench = _unwired_bench(tmp_path)
    code = main(["run", str(path), "--bench", str(bench), "--visa-log", str(log), "--store", str(store)])
    err = capsys.readouterr().err
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"{path} line {line}" in lines[0] and words in lines[0], lines[0]
    # nothing was connected: no VISA command (the log is not even created) and no run in any store
    assert not log.exists() or log.read_text().strip() == ""
    assert not store.exists()


@pytest.mark.parametrize("name,text,line,words", [b for b in BAD_STEPS if not b[0].startswith("unwired")],
                         ids=[b[0] for b in BAD_STEPS if not b[0].startswith("unwired")])
def test_a_bad_step_refuses_the_whole_recipe_on_the_twin(tmp_path, capsys, name, text, line, words):
    path = write(tmp_path, text)
    store = tmp_path / "runs.sqlite"
    assert main(["run", str(path), "--store", str(store)]) == 1
    err = capsys.readouterr().err
    assert f"{path} line {line}" in err and words in err and len(err.strip().splitlines()) == 1, err
    assert not store.exists()


def test_an_existing_csv_is_refused_before_anything_runs_unless_force(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.csv").write_text("old\n")
    path = write(tmp_path, '[[step]]\nprotocol = "map"\nregion = "0:1,0:2"\ncsv = "m.csv"\n')
    assert main(["run", str(path), "--store", "runs.sqlite"]) == 1
    assert "line 4" in capsys.readouterr().err and (tmp_path / "m.csv").read_text() == "old\n"
    assert main(["run", str(path), "--store", "runs.sqlite", "--force"]) == 0
    rows = [r for r in (tmp_path / "m.csv").read_text().splitlines() if not r.startswith("#")]
    assert [r.split(",")[1] for r in rows[1:]] == ["MapRead", "MapRead", "MapSnapshot"]  # the two cells, the map


def test_two_steps_writing_one_csv_are_refused(tmp_path):
    path = write(tmp_path, '[[step]]\nprotocol = "map"\nrepeat = 2\ncsv = "m.csv"\n')
    with pytest.raises(rc.RecipeError, match=r"line 4.*also written by"):
        rc.plan_recipe(rc.load_recipe(path))
    path = write(tmp_path, '[[step]]\nprotocol = "map"\nrepeat = 2\ncsv = "m_{repeat}.csv"\n')
    assert [s.step.csv.name for s in rc.plan_recipe(rc.load_recipe(path)).steps] == ["m_1.csv", "m_2.csv"]


def test_the_recipe_is_one_session_each_step_a_run_with_its_index_and_metadata(tmp_path, capsys):
    path, store = write(tmp_path, GOOD), tmp_path / "runs.sqlite"
    assert main(["run", str(path), "--store", str(store), "--chip-id", "W3-D12", "--operator", "kim",
                 "--engine", "fast"]) == 0
    out = capsys.readouterr()
    assert "6 steps, about 10 min" in out.out and "session 1 finished" in out.out
    with RunStore(store) as s:
        runs = s.session_runs(1)
        assert [(r.step_index, r.protocol, r.status) for r in runs] == [
            (0, "map", "finished"), (1, "ispva", "finished"), (2, "ispva", "finished"),
            (3, "ispva", "finished"), (4, "ispva", "finished")]
        assert all(r.metadata.chip_id == "W3-D12" and r.metadata.operator == "kim" for r in runs)
        assert all(r.session_id == 1 for r in runs)
        assert s.finished_steps(1) == {0, 1, 2, 3, 4, 5}  # the wait too
        info = s.session(1)
        assert info.status == "finished" and info.steps == 6 and "[[step]]" in info.recipe_text
        # the runs' settings are the protocol's own (what `runs show` prints)
        assert runs[1].settings["pulse_width_s"] == 2e-3
    capsys.readouterr()
    assert main(["runs", "list", "--session", "1", "--json", "--store", str(store)]) == 0
    listed = json.loads(capsys.readouterr().out)["runs"]
    assert sorted((r["step_index"], r["session_id"]) for r in listed) == [(i, 1) for i in range(5)]
    assert main(["runs", "list", "--session", "2", "--store", str(store)]) == 0
    assert "no runs" in capsys.readouterr().out


def _session_state(store) -> dict:
    """step index -> [(run id, status, record seqs)] read straight from the database."""
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
    try:
        out: dict = {}
        for run_id, step, status in conn.execute("SELECT id, step_index, status FROM runs ORDER BY id"):
            seqs = [r[0] for r in conn.execute("SELECT seq FROM records WHERE run_id=? ORDER BY seq", (run_id,))]
            data = [r[0] for r in conn.execute("SELECT data FROM records WHERE run_id=? ORDER BY seq", (run_id,))]
            out.setdefault(step, []).append((run_id, status, seqs, data))
        return out
    finally:
        conn.close()


KILL_RECIPE = """\
[[step]]
protocol = "map"
region = "0:2,0:2"

[[step]]
protocol = "ispva"
cells = [[0, 0], [0, 1]]
targets_ns = [20, 50]

[[step]]
protocol = "endurance"
cell = [1, 1]
cycles = 60
read_every = "1"

[[step]]
protocol = "map"
region = "0:2,0:2"
"""


def test_sigkill_mid_step_then_resume_runs_no_finished_step_again_and_keeps_every_record(tmp_path):
    path, store = write(tmp_path, KILL_RECIPE), tmp_path / "runs.sqlite"
    argv = [RRAMLAB, "run", str(path), "--store", str(store), "--engine", "fast", "--chip-id", "W3-D12"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.1)
            assert proc.poll() is None, proc.communicate()
            if store.exists():
                try:
                    state = _session_state(store)
                except sqlite3.OperationalError:
                    continue
                if any(len(seqs) >= 5 for _, _, seqs, _ in state.get(2, [])):
                    break
        else:
            pytest.fail("the endurance step did not start")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    before = _session_state(store)
    assert [s for _, s, _, _ in before[0]] == ["finished"] and [s for _, s, _, _ in before[1]] == ["finished"]
    (killed_id, killed_status, killed_seqs, killed_data), = before[2]
    assert killed_status == "running" and 5 <= len(killed_seqs) < 60 and 3 not in before

    done = subprocess.run([*argv, "--resume", "1"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "did not finish" in done.stderr and "starts again as a new run" in done.stderr
    after = _session_state(store)
    # no finished step ran again: steps 0 and 1 have the same one run, with the same records
    assert after[0] == before[0] and after[1] == before[1]
    # the killed run kept every record it committed, none added or duplicated
    assert after[2][0][0] == killed_id and after[2][0][2] == killed_seqs and after[2][0][3] == killed_data
    # the step ran again as one new, finished run; the last step ran once
    assert len(after[2]) == 2 and after[2][1][1] == "finished" and len(after[2][1][2]) == 60
    assert [s for _, s, _, _ in after[3]] == ["finished"]
    for runs in after.values():
        for _, _, seqs, _ in runs:
            assert seqs == list(range(len(seqs)))  # no gap, no duplicate
    with RunStore(store) as s:
        assert s.session(1).status == "finished" and s.finished_steps(1) == {0, 1, 2, 3}
        assert s.run(killed_id).shown_status == "unfinished"


def test_api_stop_then_resume_continues_at_the_first_unfinished_step(tmp_path):
    recipe = rc.recipe_from_text(KILL_RECIPE.replace("cycles = 60", "cycles = 30"), source="kill.toml")
    planned = rc.plan_recipe(recipe)
    store = tmp_path / "runs.sqlite"
    seen = []

    def stop():
        return len(seen) >= 3 and seen[-1] == "endurance"

    with VirtualArray(seed=1, engine="fast") as chip:
        with pytest.raises(KeyboardInterrupt):
            rc.run_recipe(planned, chip, store, metadata=RunMetadata(chip_id="C1"), should_stop=stop,
                          say=lambda t: None, on_record=lambda step, r: seen.append(step.protocol))
        assert chip.outputs_safe
    with RunStore(store) as s:
        assert s.session(1).status == "aborted"
        assert s.finished_steps(1) == {0, 1}
        aborted = [r for r in s.session_runs(1) if r.step_index == 2]
        assert [r.status for r in aborted] == ["aborted"] and aborted[0].records >= 1
        assert aborted[0].metadata.chip_id == "C1"
    with VirtualArray(seed=1, engine="fast") as chip:
        done = rc.run_recipe(planned, chip, store, resume=1, say=lambda t: None)
    assert done.skipped == (0, 1) and sorted(done.runs) == [2, 3]
    with RunStore(store) as s:
        assert s.session(1).status == "finished" and s.finished_steps(1) == {0, 1, 2, 3}
        assert [r.status for r in s.session_runs(1) if r.step_index == 2] == ["aborted", "finished"]
        # resumed without metadata: every step's run keeps the session's chip id
        assert {r.metadata.chip_id for r in s.session_runs(1)} == {"C1"}
    other = rc.recipe_from_text(KILL_RECIPE.replace("cycles = 60", "cycles = 31"), source="other.toml")
    with VirtualArray(seed=1, engine="fast") as chip, pytest.raises(rc.RecipeError, match="another recipe"):
        rc.run_recipe(rc.plan_recipe(other), chip, store, resume=1, say=lambda t: None)


def test_a_transfer_step_stopped_part_way_continues_its_own_run_on_resume(tmp_path):
    import numpy as np

    from rramlab.protocols.weights import save_weights

    save_weights(tmp_path / "w.npz", np.array([[3, -2], [1, 4]]))
    text = ('[[step]]\nprotocol = "transfer"\nweights = "w.npz"\nscheme = "half-bias"\n'
            'ispva = {max_pulses = 30}\n\n[[step]]\nprotocol = "map"\nregion = "0:2,0:4"\n')
    recipe = rc.load_recipe(write(tmp_path, text))
    assert recipe.steps[0].ispva.max_pulses == 30 and recipe.steps[0].weights == tmp_path / "w.npz"
    planned = rc.plan_recipe(recipe)
    store, chip_file = tmp_path / "runs.sqlite", tmp_path / "chip.npz"
    seen = []
    with VirtualArray(seed=1, engine="fast") as chip:
        with pytest.raises(KeyboardInterrupt):
            rc.run_recipe(planned, chip, store, should_stop=lambda: len(seen) >= 2, say=lambda t: None,
                          on_record=lambda step, r: seen.append(r))
        chip.save_chip(chip_file)  # the chip as the stop left it (the CLI: --save-chip)
    with RunStore(store) as s:
        (stopped,) = s.session_runs(1)
        assert stopped.status == "aborted" and stopped.settings["ispva"]["max_pulses"] == 30
        kept = [r.data for r in s.records(stopped.run_id)]
    lines = []
    with VirtualArray.load_chip(chip_file, engine="fast") as chip:
        done = rc.run_recipe(planned, chip, store, resume=1, say=lines.append)
    assert done.runs == {0: stopped.run_id, 1: done.runs[1]}  # the same run continued, then the map
    assert any("continuing run" in line for line in lines)
    with RunStore(store) as s:
        info = s.run(stopped.run_id)
        assert info.status == "finished" and [r.data for r in s.records(stopped.run_id)][:len(kept)] == kept
        finals = [r.data for r in s.records(stopped.run_id, "CellRead") if r.data["stage"] == "final"]
        assert finals and all(abs(f["conductance_s"] - f["target_s"]) <= 2e-9 for f in finals if f["target_s"])


def test_a_wait_on_the_virtual_bench_holds_every_output_at_0_v_with_the_matrix_open(tmp_path):
    from rramlab.app.virtual_bench import open_bench

    text = '[[step]]\nprotocol = "map"\nregion = "0:1,0:2"\n\n[[step]]\nwait = "2h"\n\n' \
           '[[step]]\nprotocol = "map"\nregion = "0:1,0:2"\n'
    recipe = rc.load_recipe(write(tmp_path, text))
    from rramlab.drivers.probe_station import load_bench

    planned = rc.plan_recipe(recipe, load_bench(VIRTUAL_BENCH).checker())
    safe_during_wait = []
    with open_bench(VIRTUAL_BENCH) as station:
        bench = station.virtual_bench
        advance = bench.array.advance_time

        def watched(seconds):
            safe_during_wait.append((seconds, bench.is_safe()))
            advance(seconds)

        bench.array.advance_time = watched
        t = time.monotonic()
        done = rc.run_recipe(planned, station, tmp_path / "runs.sqlite", say=lambda line: None)
        assert time.monotonic() - t < 60  # the two hours are simulated, not slept
    assert safe_during_wait == [(7200.0, True)]
    assert sorted(done.runs) == [0, 2]


def test_nested_settings_and_a_bad_nested_key_name_their_table(tmp_path):
    good = ('[[step]]\nprotocol = "retention"\ncells = "0:1,0:2"\ntargets_ns = [20, 60]\nduration_s = 100.0\n'
            'reads = 5\nprogram = {pulse_width_s = 2e-3, max_pulses = 20}\n')
    (step,) = rc.load_recipe(write(tmp_path, good)).steps
    assert step.cells == ((0, 0), (0, 1)) and step.targets_s == (20e-9, 60e-9)
    assert step.settings.program.pulse_width_s == 2e-3 and step.settings.reads == 5
    bad = good.replace("max_pulses = 20", "max_pulse = 20")
    with pytest.raises(rc.RecipeError, match=r"line 7, step 1: unknown key program.max_pulse"):
        rc.load_recipe(write(tmp_path, bad))


def test_sigterm_mid_step_stops_safe_marks_the_session_aborted_and_says_how_to_resume(tmp_path):
    path, store = write(tmp_path, KILL_RECIPE), tmp_path / "runs.sqlite"
    argv = [RRAMLAB, "run", str(path), "--store", str(store), "--engine", "fast"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.1)
            assert proc.poll() is None, proc.communicate()
            try:
                if store.exists() and any(len(seqs) >= 3 for _, _, seqs, _ in _session_state(store).get(2, [])):
                    break
            except sqlite3.OperationalError:
                continue
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM in step 3 (line 10) endurance; outputs are at 0 V" in err, err
    assert f"continue with: rramlab run {path} --resume 1" in err and "2 of 4 steps finished" in err
    with RunStore(store) as s:
        assert s.session(1).status == "aborted" and s.session(1).error == "interrupted by SIGTERM"
        assert [r.status for r in s.session_runs(1)] == ["finished", "finished", "aborted"]


def test_two_steps_of_one_name_are_refused_at_the_second(tmp_path):
    text = '[[step]]\nname = "before"\nprotocol = "map"\n\n[[step]]\nprotocol = "map"\nname = "before"\n'
    with pytest.raises(rc.RecipeError, match=r"line 7, step 2: name 'before' is also step 1's"):
        rc.load_recipe(write(tmp_path, text))


def test_a_pause_between_pulses_of_a_step_leaves_the_records_those_of_an_unpaused_session(tmp_path):
    import threading

    from rramlab.protocols.control import RunControl

    text = '[[step]]\nprotocol = "ispp"\ncell = [0, 0]\ncycles = 1\n\n[[step]]\nprotocol = "map"\nregion = "0:1,0:2"\n'
    planned = rc.plan_recipe(rc.load_recipe(write(tmp_path, text)))

    def session(store, control=None):
        seen = []
        with VirtualArray(seed=2, engine="fast") as chip:
            if control is not None:
                control.bind(chip)

                def on_record(step, record):
                    seen.append(record)
                    if len(seen) == 3:
                        control.pause()
                        threading.Timer(0.5, control.resume).start()
            else:
                on_record = None
            done = rc.run_recipe(planned, chip, store, should_stop=control, say=lambda t: None, on_record=on_record)
        with RunStore(store) as s:
            return [[r.data for r in s.records(run_id)] for run_id in done.runs.values()]

    states = []
    control = RunControl(on_paused=lambda seconds: states.append(seconds))
    paused = session(tmp_path / "paused.sqlite", control)
    assert states  # it did pause
    assert paused == session(tmp_path / "plain.sqlite")


def test_a_session_still_running_in_another_process_is_not_resumed(tmp_path):
    planned = rc.plan_recipe(rc.recipe_from_text('[[step]]\nprotocol = "map"\nregion = "0:1,0:1"\n'))
    store = tmp_path / "runs.sqlite"
    other = subprocess.Popen(["sleep", "30"])
    try:
        with RunStore(store) as s:
            sid = s.start_session("day.toml", "", planned.recipe.fingerprint, 1)
            s.conn.execute("UPDATE sessions SET pid=? WHERE id=?", (other.pid, sid))
            s.conn.commit()
        with VirtualArray(seed=1, engine="fast") as chip, \
                pytest.raises(rc.RecipeError, match=f"still running in process {other.pid}"):
            rc.run_recipe(planned, chip, store, resume=sid, say=lambda t: None)
        with RunStore(store) as s:
            assert s.session_runs(sid) == []
    finally:
        other.kill()
        other.wait()
    with VirtualArray(seed=1, engine="fast") as chip:  # its process gone: the session resumes
        assert rc.run_recipe(planned, chip, store, resume=sid, say=lambda t: None).runs == {0: 1}


def test_two_resumes_started_together_continue_the_session_once(tmp_path):
    """Two ``rramlab run --resume`` at the same moment: the store's claim is one transaction, so one
    continues the session and the other is refused in one line; no step runs twice."""
    path, store = write(tmp_path, KILL_RECIPE), tmp_path / "runs.sqlite"
    planned = rc.plan_recipe(rc.recipe_from_text(KILL_RECIPE, source=str(path)))
    seen = []
    with VirtualArray(seed=1, engine="fast") as chip, pytest.raises(KeyboardInterrupt):
        rc.run_recipe(planned, chip, store, should_stop=lambda: len(seen) >= 1, say=lambda t: None,
                      on_record=lambda step, r: seen.append(step.protocol))
    with RunStore(store) as s:
        assert s.session(1).status == "aborted"
    argv = [RRAMLAB, "run", str(path), "--store", str(store), "--engine", "fast", "--resume", "1"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0 and codes[1] != 0, outs
    refused = next(err for p, (_, err) in zip(procs, outs) if p.returncode != 0)
    assert "still running in process" in refused and "Traceback" not in refused, refused
    state = _session_state(store)
    # every step finished exactly once; the step the API stop cut short has its aborted run and one more
    for index, runs in state.items():
        assert [s for _, s, _, _ in runs].count("finished") == 1, (index, runs)
    with RunStore(store) as s:
        assert s.session(1).status == "finished" and s.finished_steps(1) == {0, 1, 2, 3}


def test_resuming_a_finished_session_says_so_and_opens_no_bench(tmp_path, capsys):
    path, store = write(tmp_path, '[[step]]\nprotocol = "map"\nregion = "0:1,0:1"\n'), tmp_path / "runs.sqlite"
    assert main(["run", str(path), "--store", str(store), "--engine", "fast"]) == 0
    capsys.readouterr()
    log = tmp_path / "visa.log"
    code = main(["run", str(path), "--store", str(store), "--bench", str(VIRTUAL_BENCH), "--resume", "1",
                 "--visa-log", str(log)])
    err = capsys.readouterr().err
    assert code != 0 and "already finished" in err and "nothing to resume" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not log.exists() or log.read_text().strip() == ""
    with RunStore(store) as s:
        assert s.session(1).status == "finished" and len(s.session_runs(1)) == 1


def test_a_recipe_that_is_not_text_is_refused_naming_the_file(tmp_path, capsys):
    path = tmp_path / "day.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    store = tmp_path / "runs.sqlite"
    assert main(["run", str(path), "--store", str(store)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"the recipe {path} is not UTF-8 text (byte 0 is 0x89)" in err
    assert not store.exists()


def test_a_wait_of_31_days_is_the_longest_a_step_takes():
    assert rc.recipe_from_text('[[step]]\nwait = "31d"\n').steps[0].wait_s == 31 * 86400
    with pytest.raises(rc.RecipeError, match="31.01 days"):
        rc.recipe_from_text(f'[[step]]\nwait = {31 * 86400 + 1000}\n')
