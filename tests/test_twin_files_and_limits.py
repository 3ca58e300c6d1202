"""Issue 8's twin items: chip files that cannot be read, resistances outside the modelled range,
Ctrl-C while ngspice runs, and a --seed that means something."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from rramlab.app.cli import main
from rramlab.drivers.interface import ArrayGeometry
from rramlab.sim.array import MAX_CONTACT_RESISTANCE, MAX_WIRE_RESISTANCE, ArrayParameterError, ArrayParameters
from rramlab.sim.virtual_array import ChipFileError, VirtualArray


@pytest.fixture
def good_chip(tmp_path):
    chip = VirtualArray(ArrayGeometry(3, 4), seed=2)
    chip.pulse_cell(1, 2, 4.0, 2e-6)
    return chip.save_chip(tmp_path / "good.npz")


def _rewrite(path, out, drop=(), replace=None):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k not in drop}
    arrays.update(replace or {})
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)
    return out


def _truncated(good, tmp):
    out = tmp / "truncated.npz"
    out.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return out


def _empty(good, tmp):
    out = tmp / "empty.npz"
    out.write_bytes(b"")
    return out


def _text(good, tmp):
    out = tmp / "notes.npz"
    out.write_text("wordline,bitline\n0,0\n")
    return out


def _directory(good, tmp):
    out = tmp / "a_folder.npz"
    out.mkdir()
    return out


def _single_npy(good, tmp):
    out = tmp / "array.npy"
    np.save(out, np.zeros(3))
    return out


def _pickled(good, tmp):
    return _rewrite(good, tmp / "pickled.npz", replace={"meta": np.array([{"a": 1}], dtype=object)})


def _wrong_shape(good, tmp):
    return _rewrite(good, tmp / "shape.npz", replace={"switch_states": np.zeros((2, 2, 8), dtype=bool)})


def _missing_states(good, tmp):
    return _rewrite(good, tmp / "missing.npz", drop=("switch_states",))


def _missing_meta_key(good, tmp):
    with np.load(good, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
    del meta["geometry"]
    return _rewrite(good, tmp / "meta.npz", replace={"meta": np.array(json.dumps(meta))})


def _bad_json(good, tmp):
    return _rewrite(good, tmp / "json.npz", replace={"meta": np.array("{not json")})


def _nan_offsets(good, tmp):
    return _rewrite(good, tmp / "nan.npz", replace={"conductance_offset": np.full((3, 4), np.nan)})


@pytest.mark.parametrize("make, message", [
    pytest.param(_truncated, "cannot be read as an npz archive|damaged or truncated", id="truncated"),
    pytest.param(_empty, "is empty", id="empty-file"),
    pytest.param(_text, "cannot be read as an npz archive", id="not-npz-text"),
    pytest.param(_directory, "is a directory", id="directory"),
    pytest.param(_single_npy, "single array", id="npy-not-npz"),
    pytest.param(_pickled, "holds Python objects", id="object-array"),
    pytest.param(_wrong_shape, r"switch_states has shape \(2, 2, 8\).*needs \(3, 4, 8\)", id="wrong-shape"),
    pytest.param(_missing_states, "no 'switch_states' field", id="missing-field"),
    pytest.param(_missing_meta_key, "lacks 'geometry'", id="missing-meta-key"),
    pytest.param(_bad_json, "not valid JSON", id="meta-not-json"),
    pytest.param(_nan_offsets, "NaN or infinite", id="nan-values"),
])
def test_a_bad_chip_file_gets_one_clear_message(good_chip, tmp_path, make, message, capsys):
    path = make(good_chip, tmp_path)
    with pytest.raises(ChipFileError, match=message) as exc:
        VirtualArray.load_chip(path)
    assert str(path) in str(exc.value) and "pickled data" not in str(exc.value).lower()
    # and through the command line: one line, exit 1, no traceback
    assert main(["ispp", "--chip", str(path), "--cycles", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "pickled data" not in err.lower() and "error:" in err


def test_a_good_chip_file_still_loads(good_chip):
    assert VirtualArray.load_chip(good_chip).switch_states[1, 2].sum() > 0


@pytest.mark.parametrize("name", ["wire_resistance", "contact_resistance"])
@pytest.mark.parametrize("value", [1e6, 1e8, 1e12, -1.0, float("nan"), float("inf")])
def test_resistances_outside_the_modelled_range_are_refused_with_the_reason(name, value):
    with pytest.raises(ArrayParameterError) as exc:
        ArrayParameters(**{name: value})
    text = str(exc.value)
    assert name in text and ("beyond the twin's limit" in text or ">= 0 ohm" in text)


def test_the_largest_allowed_resistances_still_solve():
    for engine in ("fast", "spice"):
        chip = VirtualArray(ArrayGeometry(6, 6), engine=engine,
                            array=ArrayParameters(MAX_WIRE_RESISTANCE, MAX_CONTACT_RESISTANCE))
        chip.switch_states[:] = True
        chip.pulse_cell(0, 5, 4.2, 2e-6)
        assert 0 < chip.read_cell(0, 5) < 80e-9


def test_the_cli_refuses_a_huge_wire_resistance_in_one_line(capsys):
    assert main(["ispp", "--cell", "0,0", "--wire-resistance", "1e8", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "wire_resistance" in err and "Traceback" not in err


CHILD = textwrap.dedent("""
    import sys, time
    from rramlab.sim.spice import simulate
    # an RC ladder with a tiny maximum step: ngspice needs minutes for it
    net = "\\n".join(["* long", "V1 n0 0 PWL(0 0 1e-3 1)"]
                     + [f"R{i} n{i} n{i+1} 1k" for i in range(50)] + [f"C{i} n{i+1} 0 1n" for i in range(50)]
                     + [".tran 1e-9 1 0 1e-9", ".end", ""])
    print("running", flush=True)
    t0 = time.monotonic()
    try:
        simulate(net, ["time"])
        print("finished", flush=True)
    except KeyboardInterrupt:
        print(f"interrupted after {time.monotonic() - t0:.2f} s", flush=True)
        # ngspice is idle again: the next run works
        out = simulate("* rc\\nV1 a 0 DC 1\\nR1 a 0 1k\\n.op\\n.end\\n", ["v(a)"])
        print(f"next run ok {out['v(a)'][0]:.3f}", flush=True)
""")


def test_ctrl_c_stops_a_long_ngspice_run_within_a_second():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        time.sleep(1.5)                                   # ngspice is well into its run
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupted after" in out, (out, err)
    assert "next run ok 1.000" in out
    assert "finished" not in out
    assert elapsed < 3.0, f"the run took {elapsed:.1f} s to stop"   # ~0.1 s; slack for a loaded CI machine


def test_seed_draws_a_different_chip_and_no_seed_is_the_papers_device(tmp_path):
    def run(*extra):
        out = tmp_path / f"r{len(list(tmp_path.iterdir()))}.csv"
        assert main(["ispp", "--cycles", "1", "--no-progress", "--csv", str(out), *extra]) == 0
        # the data rows; the '#' provenance lines name the file and the start time, which differ
        return "".join(line for line in out.read_text().splitlines(True) if not line.startswith("#"))
    paper, again = run(), run()
    one, one_again, two = run("--seed", "1"), run("--seed", "1"), run("--seed", "2")
    assert paper == again and one == one_again
    assert len({paper, one, two}) == 3


def test_device_flag_picks_the_preset(tmp_path, capsys):
    assert main(["ispp", "--cycles", "1", "--no-progress", "--device", "table1"]) == 0
    assert "first 3 reset pulses remove 37 %" in capsys.readouterr().out
    assert main(["ispp", "--cycles", "1", "--no-progress", "--device", "measured"]) == 0
    assert "first 3 reset pulses remove 75 %" in capsys.readouterr().out


def test_seed_and_device_are_refused_with_a_bench_or_a_loaded_chip(good_chip, capsys):
    assert main(["ispp", "--chip", str(good_chip), "--seed", "3", "--no-progress"]) == 1
    assert "keeps its own" in capsys.readouterr().err


def test_ctrl_c_stops_rramlab_ispp_on_ngspice_at_once():
    """The user's case: `rramlab ispp --engine spice` on an array cell, Ctrl-C while ngspice runs."""
    proc = subprocess.Popen([sys.executable, "-m", "rramlab.app.cli", "ispp", "--cell", "0,23", "--engine", "spice",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4.0)                                   # imports, then ngspice pulses and reads
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err and "Traceback" not in err
    assert elapsed < 3.0, f"stopped {elapsed:.1f} s after Ctrl-C"
