"""The run store: schema, migrations, records as they come, run status, bad paths, the runs command."""

import csv
import sqlite3
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from rramlab.app.cli import main
from rramlab.protocols import store as st
from rramlab.protocols.store import RunStore, StoreError, record_run


@dataclass(frozen=True)
class Sample:
    wordline: int
    value_s: float
    tags: tuple


class FakeInstrument:
    backend_name = "fake"

    def describe(self):
        return {"backend": "fake", "geometry": [1, 1]}


def test_a_new_store_has_the_current_schema_in_wal_mode(tmp_path):
    path = tmp_path / "sub" / "runs.sqlite"
    with RunStore(path) as s:
        assert st.schema_version(s.conn) == st.SCHEMA_VERSION == len(st.MIGRATIONS)
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert path.exists()


def test_records_round_trip_with_their_type_name_and_order(tmp_path):
    with RunStore(tmp_path / "r.sqlite") as s:
        run = s.start_run("demo", {"a": 1.5, "arr": np.arange(3)}, "fake", {"x": np.float64(2.0)}, "9.9")
        for i in range(3):
            assert s.append(run, Sample(i, i * 1e-9, (i, "x"))) == i
        s.end_run(run, "finished")
    with RunStore(tmp_path / "r.sqlite") as s:
        info = s.run(run)
        assert (info.protocol, info.status, info.software_version, info.records) == ("demo", "finished", "9.9", 3)
        assert info.settings == {"a": 1.5, "arr": [0, 1, 2]} and info.backend_describe == {"x": 2.0}
        assert info.started_at <= info.ended_at
        recs = s.records(run)
        assert [r.seq for r in recs] == [0, 1, 2] and {r.type for r in recs} == {"Sample"}
        assert recs[2].data == {"wordline": 2, "value_s": 2e-9, "tags": [2, "x"]}


def test_non_finite_values_are_stored_as_null(tmp_path):
    with RunStore(tmp_path / "r.sqlite") as s:
        run = s.start_run("demo", {}, "fake", {})
        s.append(run, Sample(0, float("nan"), ()))
        assert s.records(run)[0].data["value_s"] is None


@pytest.mark.parametrize("error, status, text", [
    (None, "finished", None),
    (RuntimeError("instrument said no"), "failed", "RuntimeError: instrument said no"),
    (KeyboardInterrupt(), "aborted", "interrupted (Ctrl-C)"),
])
def test_record_run_ends_the_run_by_how_the_block_ends(tmp_path, error, status, text):
    path = tmp_path / "r.sqlite"
    with RunStore(path) as s:
        try:
            with record_run(s, "demo", {"k": 1}, FakeInstrument()) as rec:
                rec.add(Sample(0, 1e-9, ()))
                if error is not None:
                    raise error
        except (RuntimeError, KeyboardInterrupt):
            pass
        info = s.runs()[0]
        assert (info.status, info.error, info.records, info.backend) == (status, text, 1, "fake")


def test_resume_continues_the_same_run_after_its_last_record(tmp_path):
    with RunStore(tmp_path / "r.sqlite") as s:
        run = s.start_run("demo", {}, "fake", {})
        s.append(run, Sample(0, 0.0, ()))
        s.end_run(run, "aborted", "stopped")
    with RunStore(tmp_path / "r.sqlite") as s:
        with record_run(s, "demo", {}, FakeInstrument(), resume=run) as rec:
            rec.add(Sample(1, 0.0, ()))
        assert [r.seq for r in s.records(run)] == [0, 1]
        assert s.run(run).status == "finished" and len(s.runs()) == 1


def test_an_old_schema_is_migrated_in_order(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (0)")
    conn.commit()
    conn.close()
    with RunStore(path) as s:
        assert st.schema_version(s.conn) == st.SCHEMA_VERSION
        assert s.runs() == []


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.write_text("hello, not a database"), "not a rramlab run store (not an SQLite file)"),
    (lambda p: sqlite3.connect(p).execute("CREATE TABLE other (x)").connection.commit(), "not a rramlab run store"),
])
def test_a_bad_store_path_is_refused_naming_it(tmp_path, make, message):
    path = tmp_path / "bad.sqlite"
    make(path)
    with pytest.raises(StoreError) as exc:
        RunStore(path)
    assert message in str(exc.value) and str(path) in str(exc.value) and "--store" in str(exc.value)


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version=99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this rramlab"):
        RunStore(path)


def test_default_path_is_the_env_var_else_the_user_data_folder(monkeypatch, tmp_path):
    assert st.default_store_path() == tmp_path / "runs.sqlite"  # conftest sets RRAMLAB_STORE
    monkeypatch.delenv("RRAMLAB_STORE")
    import platformdirs
    assert st.default_store_path() == \
        __import__("pathlib").Path(platformdirs.user_data_dir("rramlab")) / "runs.sqlite"


def test_a_running_run_whose_process_is_gone_shows_as_unfinished(tmp_path):
    with RunStore(tmp_path / "r.sqlite") as s:
        run = s.start_run("demo", {}, "fake", {})
        assert s.run(run).shown_status == "running"
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        s.conn.execute("UPDATE runs SET pid=? WHERE id=?", (dead.pid, run))
        s.conn.commit()
        assert s.run(run).status == "running" and s.run(run).shown_status == "unfinished"


def test_ispp_records_every_pulse_in_the_store(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    assert main(["ispp", "--cycles", "1", "--no-progress", "--store", str(path)]) == 0
    with RunStore(path) as s:
        (info,) = s.runs()
        assert (info.protocol, info.status, info.records, info.backend) == ("ispp", "finished", 62, "twin")
        assert info.settings["cycles"] == 1 and info.backend_describe["backend"] == "twin"
        recs = s.records(info.id, "IsppRecord")
        assert recs[0].data["phase"] == "set" and recs[0].data["pulse_v"] == 3.0


def test_ispp_refuses_a_bad_store_before_any_pulse(tmp_path, capsys):
    assert main(["ispp", "--cycles", "1", "--no-progress", "--store", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err


def test_runs_list_show_and_export(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    assert main(["ispp", "--cycles", "1", "--no-progress", "--store", str(path)]) == 0
    capsys.readouterr()
    assert main(["runs", "list", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ispp" in out and "finished" in out and "62 records" in out
    assert main(["runs", "show", "1", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert "run 1: ispp, finished" in out and "62 IsppRecord" in out
    c, n = tmp_path / "r.csv", tmp_path / "r.npz"
    assert main(["runs", "export", "1", "--csv", str(c), "--npz", str(n), "--store", str(path)]) == 0
    rows = list(csv.DictReader(line for line in open(c) if not line.startswith("#")))
    assert len(rows) == 62 and rows[0]["type"] == "IsppRecord" and float(rows[0]["pulse_v"]) == 3.0
    with np.load(n) as data:
        assert data["IsppRecord.pulse_v"].shape == (62,) and data["IsppRecord.read_a"][0] < 5e-9
    assert main(["runs", "show", "7", "--store", str(path)]) == 1
    assert "run 7 is not in the store" in capsys.readouterr().err


def test_a_version_1_store_keeps_its_runs_and_gains_the_summary_column(tmp_path):
    """A store written before run summaries existed (schema 1) opens, keeps every run and record,
    and its runs show no summary until one is set."""
    import json
    import sqlite3

    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(st.MIGRATIONS[0])
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute("INSERT INTO runs (protocol, settings, backend, backend_describe, software_version, started_at, "
                 "ended_at, status) VALUES ('transfer', '{\"scheme\": \"fast\"}', 'twin', '{}', '0.1', "
                 "'2026-01-01T00:00:00', '2026-01-01T00:01:00', 'finished')")
    conn.execute("INSERT INTO records (run_id, seq, type, data, at) VALUES (1, 0, 'CellRead', ?, "
                 "'2026-01-01T00:00:01')", (json.dumps({"stage": "start", "conductance_s": 1.6e-9}),))
    conn.commit()
    conn.close()
    with st.RunStore(path) as s:
        assert st.schema_version(s.conn) == st.SCHEMA_VERSION == 5
        info = s.run(1)
        assert info.protocol == "transfer" and info.settings == {"scheme": "fast"} and info.records == 1
        assert info.summary is None and s.records(1)[0].data["stage"] == "start"
        s.set_summary(1, {"rmse_s": 1.2e-9, "within_2ns": float("nan")})
    with st.RunStore(path) as s:
        assert s.run(1).summary == {"rmse_s": 1.2e-9, "within_2ns": None}
