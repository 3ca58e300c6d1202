"""The Python API: top-level exports (lazy), the same shape in every protocol module, records as
dicts and DataFrames, the run store shared with the command line, and docs/api.md generated from
the docstrings."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import rramlab
from rramlab.protocols import ispp, ispva, transfer

ROOT = Path(__file__).resolve().parent.parent


def _gen_api_docs():
    spec = importlib.util.spec_from_file_location("gen_api_docs", ROOT / "tools" / "gen_api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----- top-level exports -----

def test_import_rramlab_loads_no_backend_until_one_is_used():
    code = ("import sys, rramlab\n"
            "heavy = ('PySpice', 'pyvisa', 'rramlab.sim.virtual_array', 'rramlab.drivers.probe_station', 'numpy')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n"
            "rramlab.VirtualArray\n"
            "print('rramlab.sim.virtual_array' in sys.modules, 'pyvisa' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["[]", "True False"]


def test_every_export_is_the_object_its_module_defines():
    from rramlab.app import virtual_bench
    from rramlab.drivers import interface
    from rramlab.protocols import store
    from rramlab.sim import virtual_array

    assert rramlab.VirtualArray is virtual_array.VirtualArray
    assert rramlab.open_bench is virtual_bench.open_bench   # real or virtual instruments, by the bench file
    assert rramlab.CrossbarInstrument is interface.CrossbarInstrument
    assert rramlab.RunStore is store.RunStore and rramlab.record_run is store.record_run
    for name in rramlab.__all__:
        assert getattr(rramlab, name) is not None
        assert name in dir(rramlab)
    assert issubclass(rramlab.SafetyError, rramlab.RramlabError) and issubclass(rramlab.StoreError, rramlab.RramlabError)


def test_an_unknown_top_level_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="'NoSuchThing'"):
        rramlab.NoSuchThing  # noqa: B018
    with pytest.raises(ImportError):
        exec("from rramlab import NoSuchThing")


# ----- every protocol module has the same shape -----

def _protocol_modules():
    import importlib

    from rramlab.protocols import PROTOCOLS

    return [importlib.import_module(f"rramlab.protocols.{name}") for name in PROTOCOLS]


# the network protocols join PROTOCOLS (rramlab/protocols/__init__.py) and are checked here with no change
@pytest.mark.parametrize("module", _protocol_modules(), ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_each_protocol_module_has_settings_plan_run_and_its_record_classes(module):
    assert dataclasses.is_dataclass(module.Settings) and module.Settings.__dataclass_params__.frozen
    assert callable(module.plan) and callable(module.run) and dataclasses.is_dataclass(module.Plan)
    assert module.RECORDS and all(dataclasses.is_dataclass(c) and c.__dataclass_params__.frozen
                                  for c in module.RECORDS)
    from rramlab import protocols

    assert module.__name__.rsplit(".", 1)[1] in protocols.__all__   # so docs/api.md documents it


def test_the_protocols_a_script_imports_are_listed():
    from rramlab import protocols

    assert protocols.PROTOCOLS[:3] == ("ispp", "ispva", "transfer")


def _run_each_protocol():
    """(module, records) of a tiny run of each protocol on the twin."""
    from rramlab import VirtualArray

    out = []
    with VirtualArray.lone_device(seed=3) as dev:
        out.append((ispp, list(ispp.run(dev, ispp.plan(ispp.Settings(cycles=1), (0, 0), dev)))))
    with VirtualArray(seed=3, engine="fast") as chip:
        p = ispva.plan(ispva.Settings(), [(0, 0), (1, 1)], [30e-9, 70e-9], chip)
        out.append((ispva, list(ispva.run(chip, p))))
    with VirtualArray(seed=3, engine="fast") as chip:
        p = transfer.plan(transfer.Settings(scheme="fast"), ispva.Settings(), [[2, -3]], chip)
        out.append((transfer, list(transfer.run(chip, p))))
    return out


def test_every_record_a_protocol_yields_is_one_of_its_record_classes_and_asdict_works():
    for module, records in _run_each_protocol():
        assert records
        kinds = {type(r) for r in records}
        assert kinds <= set(module.RECORDS), (module.__name__, kinds - set(module.RECORDS))
        for r in records:
            d = dataclasses.asdict(r)
            assert d and all(isinstance(k, str) for k in d)
    # the fast transfer yields its row pulses and verify reads too
    assert {"RowPulse", "CellRead", "IspvaResult"} <= {type(r).__name__ for r in records}


# ----- records to tables -----

def test_records_frame_makes_one_row_per_record_with_a_type_column_in_si_units():
    (_, ispp_records), (_, ispva_records), _ = _run_each_protocol()
    df = rramlab.records_frame(ispp_records)
    assert len(df) == len(ispp_records) == 62
    assert list(df.columns) == ["type", *[f.name for f in dataclasses.fields(ispp.IsppRecord)]]
    assert df["read_a"].max() == pytest.approx(max(r.read_a for r in ispp_records))
    mixed = rramlab.records_frame(ispva_records)
    assert set(mixed["type"]) == {"IspvaPulse", "IspvaResult"}
    results = rramlab.records_frame(ispva_records, type="IspvaResult")
    assert list(results["target_s"]) == [30e-9, 70e-9]
    assert results["error_s"].abs().max() <= 2e-9
    # a field one record type lacks is missing (NaN) for the other
    assert mixed.loc[mixed["type"] == "IspvaPulse", "converged"].isna().all()


def test_stored_records_give_the_same_table_as_live_ones(tmp_path):
    from rramlab import VirtualArray, record_run

    live = []
    with VirtualArray(seed=2, engine="fast") as chip, \
            record_run(tmp_path / "s.sqlite", "ispva", ispva.Settings(), chip) as rec:
        for r in ispva.run(chip, ispva.plan(ispva.Settings(), [(0, 0)], [50e-9], chip)):
            rec.add(r)
            live.append(r)
    with rramlab.RunStore(tmp_path / "s.sqlite") as store:
        stored = rramlab.records_frame(store.records(rec.run_id))
    live_df = rramlab.records_frame(live)
    assert list(stored["seq"]) == list(range(len(live)))
    assert stored.drop(columns=["run_id", "seq"]).equals(live_df)


def test_record_dicts_refuses_what_is_not_a_record():
    with pytest.raises(rramlab.RequestError, match="got dict"):
        rramlab.record_dicts([{"read_a": 1e-9}])


def test_records_frame_without_pandas_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)   # import pandas now raises ImportError
    with pytest.raises(ImportError, match="pip install pandas"):
        rramlab.records_frame([])
    assert rramlab.record_dicts([]) == []              # the plain helper needs nothing


# ----- scripts and the command line share the run store -----

def test_a_scripts_run_is_listed_by_rramlab_runs(tmp_path, monkeypatch, capsys):
    from rramlab import VirtualArray, record_run
    from rramlab.app.cli import main

    monkeypatch.setenv("RRAMLAB_STORE", str(tmp_path / "shared.sqlite"))
    with VirtualArray(seed=4, engine="fast") as chip, record_run(None, "ispva", ispva.Settings(), chip) as rec:
        for r in ispva.run(chip, ispva.plan(ispva.Settings(), [(2, 3)], [20e-9], chip)):
            rec.add(r)
    assert main(["runs", "show", str(rec.run_id)]) == 0
    shown = capsys.readouterr().out
    assert "ispva" in shown and "finished" in shown and "IspvaResult" in shown


# ----- docs/api.md -----

def test_every_public_name_has_a_docstring():
    assert _gen_api_docs().missing_docstrings() == []


def test_docs_api_md_is_what_the_generator_writes_now():
    gen = _gen_api_docs()
    assert (ROOT / "docs" / "api.md").read_text() == gen.render(), \
        "docs/api.md is stale: run `.venv/bin/python tools/gen_api_docs.py` and commit it"


def test_the_api_page_lists_every_public_name_with_units_and_examples():
    gen = _gen_api_docs()
    page = gen.render()
    for modname, names in gen.sections():
        for name in names:
            assert f"### `{modname}.{name}`" in page
    # settings tables carry units and limits from the declarations
    assert "| `set_max_v` | V | `4.2` | 0 to 4.3 V | `--set-max` |" in page
    assert "| `conductance_s` | `float` | read current / read voltage after the pulse (S) |" in page
    assert page.count("Example::") >= 6


def test_the_docstring_check_catches_a_public_name_without_one(monkeypatch):
    gen = _gen_api_docs()
    monkeypatch.setattr(ispva.first_set_v, "__doc__", None)
    monkeypatch.setattr(rramlab.RunStore.runs, "__doc__", None)
    missing = gen.missing_docstrings()
    assert "rramlab.protocols.ispva.first_set_v" in missing and "rramlab.RunStore.runs" in missing


def test_the_generator_check_mode_fails_on_a_stale_page(tmp_path):
    stale = tmp_path / "api.md"
    stale.write_text("# old\n")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_api_docs.py"), "--check", "--out", str(stale)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "is stale" in proc.stderr


def test_run_protocol_runs_and_records_in_one_call(tmp_path):
    from rramlab import VirtualArray, run_protocol
    from rramlab.protocols import ispva, transfer
    from rramlab.protocols.ispva import IspvaSettings
    from rramlab.protocols.store import RunStore

    store = tmp_path / "runs.sqlite"
    seen = []
    with VirtualArray(seed=1, engine="fast") as chip:
        plan = ispva.plan(ispva.IspvaSettings(), [(0, 0), (0, 1)], [20e-9, 50e-9], chip)
        done = run_protocol(chip, ispva, plan, store, on_record=seen.append)
        tplan = transfer.plan(transfer.TransferSettings(), IspvaSettings(), [[1, -1]], chip)
        moved = run_protocol(chip, transfer, tplan, store)
    assert done.records == seen and sum(isinstance(r, ispva.IspvaResult) for r in done.records) == 2
    with RunStore(store) as s:
        info = s.run(done.run_id)
        assert info.protocol == "ispva" and info.status == "finished" and info.records == len(done.records)
        assert info.run_id == info.id == done.run_id  # one name, the old one kept
        assert s.records(done.run_id)[0].run_id == info.run_id
        assert s.run(moved.run_id).settings["levels"] == [[1, -1]]  # what `rramlab transfer --resume` reads


def test_reading_with_a_number_for_cells_says_what_read_takes_and_a_closed_twin_refuses():
    from rramlab import InstrumentError, RequestError, VirtualArray

    with VirtualArray(seed=0) as chip:
        with pytest.raises(RequestError, match=r"cells must be a list of \(wordline, bitline\) pairs.*read_cell"):
            chip.read(3, 7)
        assert chip.read_cell(3, 7) > 0
    with pytest.raises(InstrumentError, match="closed"):
        chip.read_cell(3, 7)
    with pytest.raises(InstrumentError, match="closed"):
        chip.vmm([0.0] * 24)
    with chip:  # entered again: open again
        assert chip.read_cell(3, 7) > 0
