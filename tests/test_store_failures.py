"""Run-store faults end in one line naming the store and the fix, exit code 1, no traceback; a store
that cannot be used is found before any instrument command; a store that fails mid-run stops the run
at a safe point with the bench safe, the CSV holding every record, the run marked failed where the
store still takes a write; a corrupt store is found when it is opened. And a stop (a real signal)
leaves the CSV and the store with the same records, the store naming the signal.

Faults are injected in-process where SQLite lets us (max_page_count is SQLite's own "disk full",
a second connection holds the write lock); ``ulimit -f`` needs a real process with its limit.
"""

from __future__ import annotations

import csv
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from rramlab.app.cli import main
from rramlab.protocols import store as st
from rramlab.protocols.store import RunStore, StoreError

from test_stop_paths import bench_state, visa_writes

ROOT = Path(__file__).resolve().parents[1]
VIRTUAL_BENCH = str(ROOT / "drivers" / "benches" / "virtual.toml")
TWIN_RUN = ["ispp", "--cell", "3,7", "--cycles", "2", "--no-progress"]
BENCH_RUN = ["ispp", "--bench", VIRTUAL_BENCH, "--cell", "3,7", "--width", "1e-3", "--cycles", "1", "--no-progress"]


def one_line_error(capsys, store_path) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first = err.strip().splitlines()[0]
    assert str(store_path) in first and "--store" in first, err
    return err


def csv_body(path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(line for line in fh if not line.startswith("#")))[1:]


def filled_store(path, records=3000) -> None:
    with RunStore(path) as s:
        run = s.start_run("demo", {}, "fake", {})
        with s.conn:
            s.conn.executemany("INSERT INTO records (run_id, seq, type, data, at) VALUES (?, ?, 'Demo', ?, 'now')",
                               ((run, i, '{"wordline": 3, "read_a": 1.5e-08, "note": "%s"}' % ("x" * 40))
                                for i in range(records)))
        s.end_run(run, "finished")


# ----- found when the store is opened -----

def test_a_device_as_store_is_refused_in_one_line(capsys, tmp_path):
    # /dev/full used to end in "cannot rollback - no transaction is active"
    assert main([*TWIN_RUN, "--store", "/dev/full"]) == 1
    err = one_line_error(capsys, "/dev/full")
    assert "not a regular file" in err and "rollback" not in err


def test_a_store_missing_its_records_table_is_refused_at_open(capsys, tmp_path):
    path = tmp_path / "runs.sqlite"
    RunStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE records")
    with pytest.raises(StoreError, match="damaged: it has no records table"):
        RunStore(path)
    assert main([*TWIN_RUN, "--store", str(path)]) == 1
    assert "mv " in one_line_error(capsys, path)


def test_a_corrupt_page_is_found_when_the_store_is_opened_not_at_export(capsys, tmp_path):
    path = tmp_path / "runs.sqlite"
    filled_store(path)
    page = 4096
    assert path.stat().st_size > 40 * page
    with open(path, "r+b") as fh:  # garbage over a leaf page of the records table, mid-file
        fh.seek(30 * page)
        fh.write(os.urandom(page))
    with pytest.raises(StoreError, match="is damaged"):
        RunStore(path)
    assert main(["runs", "export", "1", "--csv", str(tmp_path / "out.csv"), "--store", str(path)]) == 1
    one_line_error(capsys, path)
    assert not (tmp_path / "out.csv").exists()


def test_a_write_lock_held_by_another_program_is_one_line_and_no_visa_write(capsys, tmp_path, monkeypatch):
    path, log = tmp_path / "runs.sqlite", tmp_path / "visa.log"
    RunStore(path).close()
    monkeypatch.setattr(st, "BUSY_TIMEOUT_S", 0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock for longer than we wait
    try:
        assert main([*BENCH_RUN, "--store", str(path), "--visa-log", str(log)]) == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    err = one_line_error(capsys, path)
    assert "write lock" in err
    assert not log.exists() or visa_writes(log) == []


class FullDisk(sqlite3.Connection):
    """A connection to a store on a full disk: it reads, and every write fails as SQLite reports it."""

    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "CREATE", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, *args)


def test_a_full_disk_at_start_is_found_before_the_bench_is_connected(capsys, tmp_path, monkeypatch):
    # The store opens and reads, but the disk filled since the last run: its first write fails. It
    # used to be found after the bench was connected and initialised (35 VISA writes, then a traceback).
    path, log = tmp_path / "runs.sqlite", tmp_path / "visa.log"
    filled_store(path, records=10)
    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, factory=FullDisk, **k))
    assert main([*BENCH_RUN, "--store", str(path), "--visa-log", str(log)]) == 1
    err = one_line_error(capsys, path)
    assert "disk is full" in err
    assert not log.exists() or visa_writes(log) == []


def test_the_store_is_written_once_when_opened(tmp_path, monkeypatch):
    path = tmp_path / "runs.sqlite"
    RunStore(path).close()
    writes = []
    real_connect = sqlite3.connect

    def traced(*a, **k):
        conn = real_connect(*a, **k)
        conn.set_trace_callback(writes.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    RunStore(path).close()
    assert any(w.startswith("UPDATE schema_version") for w in writes), writes
    assert any(w.startswith("PRAGMA quick_check") for w in writes), writes


# ----- failing mid-run -----

def _fill_after(monkeypatch, records: int):
    """From the start of a run, the store takes ``records`` more records' pages, then is full."""
    real_start = RunStore.start_run

    def start_run(self, *a, **k):
        run_id = real_start(self, *a, **k)
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        self.conn.execute(f"PRAGMA max_page_count = {pages + records}")
        return run_id

    monkeypatch.setattr(RunStore, "start_run", start_run)


def test_a_store_that_fills_mid_run_stops_the_run_safe_with_every_row_in_the_csv(capsys, tmp_path, monkeypatch):
    path, log, out = tmp_path / "runs.sqlite", tmp_path / "visa.log", tmp_path / "ispp.csv"
    _fill_after(monkeypatch, 3)
    # each record needs its own page here: a record with 8 KB of text per row
    monkeypatch.setattr(st, "record_to_json", lambda r: (type(r).__name__, '{"pad": "%s"}' % ("x" * 8000)))
    assert main([*BENCH_RUN, "--store", str(path), "--visa-log", str(log), "--csv", str(out)]) == 1
    err = one_line_error(capsys, path)
    assert "disk is full" in err and "rows kept in" in err
    state = bench_state(visa_writes(log))
    assert state.safe, state
    with RunStore(path) as s:
        (info,) = s.runs()
        stored = s.records(info.id)
    assert info.status == "failed" and "disk is full" in info.error
    rows = csv_body(out)
    assert 0 < len(stored) < 62
    assert len(rows) == len(stored) + 1  # the record the store refused is in the CSV


@pytest.mark.parametrize("limit_kib", [120])
def test_ulimit_f_mid_run_is_one_line(tmp_path, limit_kib):
    # a real process with RLIMIT_FSIZE (ulimit -f): Python ignores SIGXFSZ, so the write fails (EFBIG)
    path, out = tmp_path / "runs.sqlite", tmp_path / "ispp.csv"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_kib * 1024, limit_kib * 1024))

    proc = subprocess.run([sys.executable, "-m", "rramlab", *TWIN_RUN, "--store", str(path), "--csv", str(out)],
                          capture_output=True, text=True, preexec_fn=limit, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"run store {path}: cannot store record" in proc.stderr and "ulimit -f" in proc.stderr
    with RunStore(path) as s:
        (info,) = s.runs()
        stored = len(s.records(info.id))
    assert len(csv_body(out)) == stored + 1


def test_record_run_keeps_the_store_error_when_marking_failed_fails_too(tmp_path, monkeypatch):
    from dataclasses import make_dataclass

    class Instrument:
        backend_name = "fake"

        def describe(self):
            return {}

    big = make_dataclass("Big", [("pad", str)])
    with RunStore(tmp_path / "runs.sqlite") as s:
        with pytest.raises(StoreError, match="cannot store record 0 of run 1: the disk is full"):
            with st.record_run(s, "demo", {}, Instrument()) as rec:
                s.conn.execute(f"PRAGMA max_page_count = {s.conn.execute('PRAGMA page_count').fetchone()[0]}")

                def end_run(*a, **k):
                    raise StoreError("cannot mark the run failed either")

                monkeypatch.setattr(s, "end_run", end_run)
                rec.add(big("x" * 20000))


# ----- stops: the store names the signal, and the CSV and the store agree -----

@pytest.mark.parametrize("sig, text", [(signal.SIGTERM, "interrupted by SIGTERM"),
                                       (signal.SIGHUP, "interrupted by SIGHUP"),
                                       (signal.SIGINT, "interrupted (Ctrl-C)")])
def test_the_store_names_the_signal_that_stopped_a_run(tmp_path, monkeypatch, sig, text):
    path = tmp_path / "runs.sqlite"
    real_add = st.RunRecorder.add

    def add(self, record):
        real_add(self, record)
        if self.count == 5:
            os.kill(os.getpid(), sig)  # a real signal, as from kill or a closed terminal

    monkeypatch.setattr(st.RunRecorder, "add", add)
    assert main([*TWIN_RUN, "--store", str(path)]) == 128 + sig
    with RunStore(path) as s:
        (info,) = s.runs()
    assert info.status == "aborted" and info.error == text


@pytest.mark.parametrize("where", ["after the store record", "before the CSV row"])
def test_a_signal_between_the_store_and_the_csv_cannot_part_them(tmp_path, monkeypatch, where):
    # A real SIGTERM arrives right after a record was stored (or just before its CSV row is written):
    # the pair is written in one deferred-signal section, so both files hold the same records.
    from rramlab.app.outputs import RecordFile

    path, out = tmp_path / "runs.sqlite", tmp_path / "ispp.csv"
    if where == "after the store record":
        real_add = st.RunRecorder.add

        def add(self, record):
            real_add(self, record)
            if self.count == 7:
                os.kill(os.getpid(), signal.SIGTERM)

        monkeypatch.setattr(st.RunRecorder, "add", add)
    else:
        real_write = RecordFile.write

        def write(self, row):
            if self.rows == 7:
                os.kill(os.getpid(), signal.SIGTERM)
            real_write(self, row)

        monkeypatch.setattr(RecordFile, "write", write)
    assert main([*TWIN_RUN, "--store", str(path), "--csv", str(out)]) == 143
    with RunStore(path) as s:
        (info,) = s.runs()
        stored = s.records(info.id)
    rows = csv_body(out)
    # the signal lands after the 7th pair, or inside the 8th pair (held back until its end)
    assert len(rows) == len(stored) == (7 if where == "after the store record" else 8)
    assert [r[2] for r in rows] == [f"{rec.data['pulse_v']:.6g}" for rec in stored]


def test_a_transfer_whose_store_fills_does_not_claim_every_record_is_stored(capsys, tmp_path, monkeypatch):
    from rramlab.protocols.weights import save_weights

    path, weights = tmp_path / "runs.sqlite", tmp_path / "w.npz"
    save_weights(weights, [[3, -2], [5, 1]])
    _fill_after(monkeypatch, 2)
    monkeypatch.setattr(st, "record_to_json", lambda r: (type(r).__name__, '{"pad": "%s"}' % ("x" * 8000)))
    assert main(["transfer", str(weights), "--store", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"run store {path}: cannot store record" in err and "disk is full" in err
    assert "every record is in" not in err and "the records stored before the failure are run 1" in err
    with RunStore(path) as s:
        assert s.run(1).status == "failed"


@pytest.mark.parametrize("sig, text", [(signal.SIGTERM, "interrupted by SIGTERM"), (signal.SIGHUP, "interrupted by SIGHUP")])
def test_a_signal_from_another_process_mid_run_on_the_virtual_bench(tmp_path, sig, text):
    # the real console script on the virtual bench, signalled from outside wherever it happens to be
    import time

    path, log, out = tmp_path / "runs.sqlite", tmp_path / "visa.log", tmp_path / "ispp.csv"
    argv = [str(Path(sys.executable).with_name("rramlab")), "ispp", "--bench", VIRTUAL_BENCH, "--cell", "3,7",
            "--width", "1e-3", "--cycles", "1000", "--no-progress", "--store", str(path), "--visa-log", str(log),
            "--csv", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while (not out.exists() or len(csv_body(out)) < 30) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert bench_state(visa_writes(log)).safe
    with RunStore(path) as s:
        (info,) = s.runs()
        stored = s.records(info.id)
    assert info.status == "aborted" and info.error == text
    rows = csv_body(out)
    assert len(rows) >= 30 and len(rows) == len(stored)
    assert [r[3] for r in rows] == [f"{rec.data['read_a']:.6e}" for rec in stored]


def test_ispva_csv_and_store_agree_after_a_sigterm_right_after_a_stored_result(tmp_path, monkeypatch):
    path, out = tmp_path / "runs.sqlite", tmp_path / "ispva.csv"
    real_add = st.RunRecorder.add
    results = []

    def add(self, record):
        real_add(self, record)
        if type(record).__name__ == "IspvaResult":
            results.append(record)
            if len(results) == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(st.RunRecorder, "add", add)
    assert main(["ispva", "--devices", "1", "--no-progress", "--store", str(path), "--csv", str(out)]) == 143
    with RunStore(path) as s:
        (info,) = s.runs()
        stored = s.records(info.id, "IspvaResult")
    assert info.error == "interrupted by SIGTERM"
    assert len(csv_body(out)) == len(stored) == 3
