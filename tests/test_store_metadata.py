"""Run metadata (schema 3): kept with every run from the API and the command line's flags, old
stores migrated without loss, runs list filters, and each cell's history across runs."""

import json
import sqlite3
from dataclasses import dataclass

import pytest

from rramlab.app.cli import main
from rramlab.protocols import store as st
from rramlab.protocols.store import RunMetadata, RunStore, StoreError, record_run, using_metadata


@dataclass(frozen=True)
class Read:
    wordline: int
    bitline: int
    conductance_s: float


class FakeInstrument:
    backend_name = "fake"

    def describe(self):
        return {"backend": "fake"}


def _old_store(path, version: int, runs: int = 3):
    """A store as rramlab wrote it at schema ``version`` (1 to 4), built by hand with that schema's SQL."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
    for sql in st.MIGRATIONS[:version]:
        conn.executescript(sql)
    for i in range(runs):
        conn.execute("INSERT INTO runs (protocol, settings, backend, backend_describe, software_version, pid, host, "
                     "started_at, ended_at, status, error) VALUES (?, ?, 'twin', '{}', '0.0.9', 1, 'h', ?, ?, "
                     "'finished', NULL)", ("ispva", json.dumps({"read_v": 1.0, "i": i}),
                                           f"2026-11-0{i + 1}T00:00:00.000+00:00", f"2026-11-0{i + 1}T01:00:00.000+00:00"))
        for seq in range(i + 1):
            conn.execute("INSERT INTO records (run_id, seq, type, data, at) VALUES (?, ?, 'Read', ?, ?)",
                         (i + 1, seq, json.dumps({"wordline": 3, "bitline": 7, "conductance_s": (seq + 1) * 1e-8}),
                          f"2026-11-0{i + 1}T00:00:0{seq}.000+00:00"))
    if version >= 2:
        conn.execute("UPDATE runs SET summary=? WHERE id=1", (json.dumps({"rmse_s": 1e-9}),))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_an_old_store_migrates_to_the_current_schema_and_keeps_every_run_and_record(tmp_path, version):
    path = tmp_path / f"v{version}.sqlite"
    _old_store(path, version)
    with RunStore(path) as s:
        assert st.schema_version(s.conn) == 5 == st.SCHEMA_VERSION
        runs = s.runs()
        assert [r.run_id for r in runs] == [3, 2, 1] and [r.records for r in runs] == [3, 2, 1]
        assert [r.settings["i"] for r in runs] == [2, 1, 0]
        assert all(r.metadata == RunMetadata() for r in runs)
        assert s.run(1).summary == ({"rmse_s": 1e-9} if version >= 2 else None)
        assert [rec.data["conductance_s"] for rec in s.records(3)] == [(seq + 1) * 1e-8 for seq in range(3)]
        # an old run has no chip: its cell's reads are found under "no chip id"
        assert len(s.cell_history(None, 3, 7)) == 6
        # new runs in the migrated store take metadata
        new = s.start_run("ispp", {}, "fake", {}, metadata=RunMetadata(chip_id="W3-D12"))
        assert s.run(new).metadata.chip_id == "W3-D12"
    with RunStore(path) as s:  # opened again: no second migration, nothing lost
        assert len(s.runs()) == 4 and st.schema_version(s.conn) == 5


def test_record_run_keeps_the_metadata_given_or_that_of_the_enclosing_block(tmp_path):
    path = tmp_path / "r.sqlite"
    given = RunMetadata("W3-D12", "batch 7", "kim", 298.15, "after anneal", ("retention", "day1"))
    with record_run(path, "demo", {}, FakeInstrument(), metadata=given) as rec:
        rec.add(Read(0, 0, 1e-8))
    with using_metadata(RunMetadata(chip_id="W1-D1", tags=("x",))):
        with record_run(path, "demo", {}, FakeInstrument()) as rec2:
            pass
    with record_run(path, "demo", {}, FakeInstrument()) as rec3:
        pass
    with RunStore(path) as s:
        assert s.run(rec.run_id).metadata == given
        assert s.run(rec2.run_id).metadata == RunMetadata(chip_id="W1-D1", tags=("x",))
        assert s.run(rec3.run_id).metadata == RunMetadata()


@pytest.mark.parametrize("text, kelvin", [("300", 300.0), ("300K", 300.0), ("25C", 298.15), ("0 K", 0.0)])
def test_temperatures_are_kelvin_or_celsius(text, kelvin):
    assert st.parse_temperature(text) == pytest.approx(kelvin)


@pytest.mark.parametrize("text", ["warm", "-300C", "-1"])
def test_a_bad_temperature_is_one_line_naming_the_flag(text):
    with pytest.raises(ValueError, match="--temperature"):
        st.parse_temperature(text)


def test_a_negative_kelvin_from_the_api_is_refused():
    with pytest.raises(StoreError, match="kelvin"):
        RunMetadata(temperature_k=-1.0)


def test_the_command_line_flags_reach_the_run_row(tmp_path, capsys):
    path = tmp_path / "r.sqlite"
    code = main(["ispp", "--store", str(path), "--cycles", "1", "--no-progress", "--seed", "1",
                 "--chip-id", "W3-D12", "--sample", "S1", "--operator", "kim", "--temperature", "25C",
                 "--notes", "first look", "--tag", "a", "--tag", "b"])
    assert code == 0
    with RunStore(path) as s:
        (info,) = s.runs()
    assert info.metadata == RunMetadata("W3-D12", "S1", "kim", 298.15, "first look", ("a", "b"))


def _three_runs(path):
    with RunStore(path) as s:
        ids = []
        for protocol, chip, tags in [("ispva", "W3-D12", ("a",)), ("ispp", "W3-D12", ()), ("ispva", "W1-D1", ("a",))]:
            run = s.start_run(protocol, {"read_v": 0.2}, "fake", {}, metadata=RunMetadata(chip_id=chip, tags=tags))
            s.append(run, Read(3, 7, len(ids) * 1e-8 + 1e-8))
            s.append(run, Read(3, 8, 5e-8))
            s.end_run(run, "finished")
            ids.append(run)
        s.conn.execute("UPDATE runs SET started_at='2026-11-20T00:00:00.000+00:00' WHERE id=?", (ids[0],))
        s.conn.commit()
    return ids


def test_runs_list_filters_by_chip_protocol_since_and_tag(tmp_path):
    path = tmp_path / "r.sqlite"
    a, b, c = _three_runs(path)
    with RunStore(path) as s:
        assert [r.run_id for r in s.runs(chip="W3-D12")] == [b, a]
        assert [r.run_id for r in s.runs(chip="W3-D12", protocol="ispva")] == [a]
        assert [r.run_id for r in s.runs(since="2026-12-01")] == [c, b]
        assert [r.run_id for r in s.runs(tag="a")] == [c, a]
        with pytest.raises(StoreError, match="--since"):
            s.runs(since="yesterday")


def test_runs_list_prints_a_header_and_json(tmp_path, capsys):
    path = tmp_path / "r.sqlite"
    a, b, c = _three_runs(path)
    assert main(["runs", "list", "--store", str(path), "--chip", "W3-D12"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("2 runs in") and "chip W3-D12" in lines[0]
    assert lines[1].split() == ["RUN", "PROTOCOL", "STATUS", "RECORDS", "STARTED", "(UTC)", "BACKEND", "CHIP"]
    assert [int(line.split()[0]) for line in lines[2:]] == [b, a]
    assert main(["runs", "list", "--store", str(path), "--chip", "W3-D12", "--protocol", "ispva",
                 "--since", "2026-11-01", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["filters"] == {"chip": "W3-D12", "protocol": "ispva", "since": "2026-11-01"}
    assert [r["run_id"] for r in out["runs"]] == [a] and out["runs"][0]["tags"] == ["a"]


def test_a_cells_history_spans_the_runs_of_its_chip_only(tmp_path):
    path = tmp_path / "r.sqlite"
    a, b, c = _three_runs(path)
    with RunStore(path) as s:
        history = s.cell_history("W3-D12", 3, 7)
        assert [(h.run_id, h.protocol) for h in history] == [(a, "ispva"), (b, "ispp")]
        assert [h.conductance_s for h in history] == [1e-8, 2e-8]
        assert [h.run_id for h in s.cell_history("W1-D1", 3, 7)] == [c]
        assert s.cell_history("W3-D12", 9, 9) == []


def test_the_api_finds_a_cells_history_from_a_path(tmp_path):
    import rramlab

    path = tmp_path / "r.sqlite"
    a, b, c = _three_runs(path)
    assert [h.run_id for h in rramlab.cell_history((3, 8), "W3-D12", store=path)] == [a, b]
    assert [h.seq for h in rramlab.cell_history((3, 8), "W1-D1", store=path)] == [1]


def test_run_protocol_keeps_its_metadata(tmp_path):
    from rramlab import VirtualArray, run_protocol
    from rramlab.protocols import ispva

    with VirtualArray(seed=1, engine="fast") as chip:
        plan = ispva.plan(ispva.IspvaSettings(), [(3, 7)], [20e-9], chip)
        done = run_protocol(chip, ispva, plan, store=tmp_path / "r.sqlite",
                            metadata=RunMetadata(chip_id="twin-1", operator="kim"))
    with RunStore(tmp_path / "r.sqlite") as s:
        assert s.run(done.run_id).metadata == RunMetadata(chip_id="twin-1", operator="kim")
        assert len(s.cell_history("twin-1", 3, 7)) == len(done.records)


def test_a_cells_history_is_found_by_index_not_by_reading_every_record(tmp_path):
    with RunStore(tmp_path / "r.sqlite") as s:
        sql, args = st._cell_history_sql("W3-D12", 3, 7)
        plan = " ".join(str(row) for row in s.conn.execute("EXPLAIN QUERY PLAN " + sql, args))
    assert "records_by_cell" in plan


def test_runs_show_prints_the_metadata(tmp_path, capsys):
    path = tmp_path / "r.sqlite"
    with RunStore(path) as s:
        run = s.start_run("ispp", {}, "twin", {}, metadata=RunMetadata("W3-D12", None, "kim", 298.15, "n1", ("a",)))
    assert main(["runs", "show", str(run), "--store", str(path)]) == 0
    assert "chip W3-D12, sample -, operator kim, temperature 298.15 K, tags a; notes: n1" in capsys.readouterr().out


@pytest.mark.parametrize("argv, text", [
    (["cell", "3", "--chip", "W3-D12"], "the cell is WL,BL"),
    (["cell", "3,-1"], "the cell is WL,BL"),
    (["runs", "list", "--since", "yesterday"], "--since 'yesterday' is not a date"),
    (["ispp", "--temperature", "warm", "--cycles", "1"], "--temperature 'warm'"),
])
def test_bad_input_is_one_line_naming_the_flag(tmp_path, capsys, argv, text):
    code = None
    try:
        code = main([*argv, "--store", str(tmp_path / "r.sqlite")])
    except SystemExit as exc:  # argparse refuses a bad positional itself
        code = exc.code
    assert code in (1, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert text in err[-1]
    if argv[0] == "ispp":
        assert not (tmp_path / "r.sqlite").exists() or RunStore(tmp_path / "r.sqlite").runs() == []
