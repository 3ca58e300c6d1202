"""runs export --netcdf: every value of a run comes back equal, with units, metadata, provenance and
array snapshots; rramlab cell: a cell's reads across runs as a table, a CSV and a PNG."""

import csv
import json
from dataclasses import dataclass

import numpy as np
import pytest

from rramlab.app.cli import main
from rramlab.app.export import dataset_records, field_units, open_run, write_netcdf
from rramlab.protocols.store import RunMetadata, RunStore


@dataclass(frozen=True)
class CellRead:
    stage: str
    round: int
    wordline: int
    bitline: int
    target_s: float
    conductance_s: float


@dataclass(frozen=True)
class Odd:
    """Every kind of field a record may hold."""
    count: int
    big: int
    read_a: float
    ok: bool
    kind: str
    bitlines: tuple
    currents: list
    ragged: list
    maybe: object
    pulse_width_s: float


def _store(path):
    meta = RunMetadata("W3-D12", "S1", "kim", 298.15, "after anneal", ("a", "b"))
    with RunStore(path) as s:
        run = s.start_run("transfer", {"read_v": 0.2, "levels": [[1, -2]]}, "twin", {"geometry": [4, 3]},
                          "9.9", metadata=meta)
        for stage, rnd in [("start", 0), ("final", 1)]:
            for w in range(4):
                for b in range(2):  # bitline 2 never read: NaN in the snapshot
                    s.append(run, CellRead(stage, rnd, w, b, 1e-8 * b, 1e-8 * b + 1e-10 * w + (rnd * 1e-11)))
        for i in range(3):
            s.append(run, Odd(i, 2**40 + i, float("nan") if i == 1 else i * 1e-9, i % 2 == 0, f"k{i}",
                              (i, i + 1), [[i * 1.5, float("nan")], [2.0, 3.0]], list(range(i)),
                              None if i else {"x": 1}, 1e-3))
        s.set_summary(run, {"rmse_s": 1.2e-9})
        s.end_run(run, "finished")
    return run


def test_every_value_of_a_run_comes_back_equal_from_the_netcdf_file(tmp_path):
    path = tmp_path / "r.sqlite"
    run = _store(path)
    with RunStore(path) as s:
        write_netcdf(s, run, tmp_path / "run.nc")
        stored = [(r.seq, r.type, r.data) for r in s.records(run)]
        info = s.run(run)
    ds = open_run(tmp_path / "run.nc")
    assert dataset_records(ds) == stored  # NaN stored as null comes back None, as the store has it
    assert ds.attrs["chip_id"] == "W3-D12" and ds.attrs["operator"] == "kim" and ds.attrs["temperature_k"] == 298.15
    assert json.loads(ds.attrs["tags"]) == ["a", "b"] and ds.attrs["notes"] == "after anneal"
    assert json.loads(ds.attrs["settings"]) == info.settings and json.loads(ds.attrs["summary"]) == info.summary
    provenance = json.loads(ds.attrs["provenance"])
    assert (provenance["rramlab"], provenance["chip_id"], provenance["backend"]["geometry"]) == ("9.9", "W3-D12", [4, 3])
    assert ds.attrs["run_id"] == run and ds.attrs["protocol"] == "transfer"
    assert ds["CellRead.conductance_s"].attrs["units"] == "S" and ds["Odd.read_a"].attrs["units"] == "A"
    assert ds["Odd.currents"].shape == (3, 2, 2) and ds["Odd.ragged"].attrs["encoding"] == "json"
    snap = ds["snapshot.conductance_s"]
    assert snap.dims == ("snapshot", "wordline", "bitline") and snap.shape == (2, 4, 3)
    assert list(ds["snapshot_stage"].values) == ["start", "final"] and list(ds["snapshot_round"].values) == [0, 1]
    assert snap.values[1, 3, 1] == pytest.approx(1e-8 + 3e-10 + 1e-11, rel=0, abs=0)
    assert np.isnan(snap.values[:, :, 2]).all()


@pytest.mark.parametrize("name, unit", [("conductance_s", "S"), ("pulse_width_s", "s"), ("pulse_v", "V"),
                                        ("read_a", "A"), ("power_w", "W"), ("wordline", "1")])
def test_units_follow_the_field_names(name, unit):
    assert field_units(name) == unit


def test_a_real_ispp_run_round_trips_through_runs_export(tmp_path, capsys):
    path = tmp_path / "r.sqlite"
    assert main(["ispp", "--store", str(path), "--cell", "3,7", "--cycles", "1", "--no-progress",
                 "--chip-id", "W3-D12"]) == 0
    with RunStore(path) as s:
        (info,) = s.runs()
        stored = [(r.seq, r.type, r.data) for r in s.records(info.run_id)]
    capsys.readouterr()
    out = tmp_path / "run.nc"
    assert main(["runs", "export", str(info.run_id), "--netcdf", str(out), "--store", str(path)]) == 0
    assert f"{len(stored)} records of run {info.run_id} written to {out}" in capsys.readouterr().out
    assert dataset_records(open_run(out)) == stored
    assert main(["runs", "export", str(info.run_id), "--netcdf", str(out), "--store", str(path)]) == 1  # no --force
    assert "--force" in capsys.readouterr().err


def test_rramlab_cell_lists_every_read_across_runs_and_writes_csv_and_png(tmp_path, capsys):
    path = tmp_path / "r.sqlite"
    for _ in range(2):
        assert main(["ispp", "--store", str(path), "--cell", "3,7", "--cycles", "1", "--no-progress",
                     "--chip-id", "W3-D12"]) == 0
    assert main(["ispp", "--store", str(path), "--cell", "3,7", "--cycles", "1", "--no-progress",
                 "--chip-id", "W9-D1"]) == 0
    with RunStore(path) as s:
        counts = {r.run_id: r.records for r in s.runs(chip="W3-D12")}
    capsys.readouterr()
    assert main(["cell", "3,7", "--chip", "W3-D12", "--store", str(path), "--csv", str(tmp_path / "c.csv"),
                 "--png", str(tmp_path / "c.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"cell 3,7 on chip W3-D12: {sum(counts.values())} reads in 2 runs")
    with open(tmp_path / "c.csv") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    assert sorted({int(r["run_id"]) for r in rows}) == sorted(counts)
    assert all(r["wordline"] == "3" and r["bitline"] == "7" for r in rows)
    assert max(float(r["conductance_s"]) for r in rows) > 10 * min(float(r["conductance_s"]) for r in rows)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["cell", "0,0", "--chip", "W3-D12", "--store", str(path)]) == 0
    assert capsys.readouterr().out.startswith("no records of cell 0,0 on chip W3-D12")


def test_npz_and_netcdf_of_one_run_hold_the_same_numbers(tmp_path):
    from rramlab.app.export import write_npz

    path = tmp_path / "r.sqlite"
    run = _store(path)
    with RunStore(path) as s:
        arrays = write_npz(s, run, tmp_path / "run.npz", ["rramlab", "test"])
        write_netcdf(s, run, tmp_path / "run.nc", ["rramlab", "test"])
    npz = np.load(tmp_path / "run.npz")
    ds = open_run(tmp_path / "run.nc")
    assert arrays == len(npz.files) - 1
    for name in ("CellRead.conductance_s", "CellRead.wordline", "Odd.read_a", "Odd.count", "CellRead.seq"):
        np.testing.assert_array_equal(npz[name], ds[name].values)
    assert json.loads(str(npz["provenance"])) == json.loads(ds.attrs["provenance"])


def test_asking_for_hdf5_names_the_netcdf_flag_before_writing_anything(tmp_path, capsys):
    path = tmp_path / "r.sqlite"
    run = _store(path)
    assert main(["runs", "export", str(run), "--hdf5", str(tmp_path / "r.h5"), "--store", str(path)]) == 1
    assert f"give --netcdf {tmp_path / 'r.h5'}" in capsys.readouterr().err
    assert not (tmp_path / "r.h5").exists()


def test_the_api_exports_a_run_as_the_command_line_does(tmp_path, capsys):
    import rramlab
    from rramlab.app.outputs import OutputError

    path = tmp_path / "r.sqlite"
    run = _store(path)
    for suffix, flag in [(".nc", "--netcdf"), (".csv", "--csv"), (".npz", "--npz")]:
        api, cli = tmp_path / f"api{suffix}", tmp_path / f"cli{suffix}"
        assert rramlab.export_run(path, run, api) == api
        assert main(["runs", "export", str(run), flag, str(cli), "--store", str(path)]) == 0
        if suffix == ".nc":
            assert rramlab.dataset_records(rramlab.open_run(api)) == rramlab.dataset_records(rramlab.open_run(cli))
        elif suffix == ".csv":  # the same rows; the provenance's command is each one's own
            rows = [[line for line in p.read_text().splitlines() if not line.startswith("#")] for p in (api, cli)]
            assert rows[0] == rows[1] and len(rows[0]) == 4 * 2 * 2 + 3 + 1
        else:
            with np.load(api) as a, np.load(cli) as c:
                assert set(a.files) == set(c.files)
                for key in a.files:
                    if key != "provenance":
                        np.testing.assert_array_equal(a[key], c[key])
    with RunStore(path) as opened:  # an open store is taken as it is
        rramlab.export_run(opened, run, tmp_path / "again.data", format="netcdf")
    with pytest.raises(OutputError, match="give format= one of netcdf, csv, npz"):
        rramlab.export_run(path, run, tmp_path / "run.h5")
