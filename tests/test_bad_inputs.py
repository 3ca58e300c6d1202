"""Bad inputs an adversarial pass still found (issue 18, section 5): each is refused in one line naming
the problem and the fix, exit code 1 (2 for argparse's own usage errors), no traceback, before anything
is sent: on the virtual bench its VISA log stays empty."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rramlab.app.cli import main
from rramlab.drivers.interface import RequestError
from rramlab.protocols import ispp
from rramlab.protocols.network import load_network
from rramlab.protocols.weights import WeightFileError, load_weight_file
from rramlab.sim.virtual_array import ChipFileError, VirtualArray

ROOT = Path(__file__).resolve().parents[1]
VIRTUAL_BENCH = ROOT / "drivers" / "benches" / "virtual.toml"
WEIGHTS = ROOT / "examples" / "weights_24x10.npz"


def refused(capsys, argv, *expected, code=1) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], err
    return lines[0]


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("RRAMLAB_STORE", str(tmp_path / "runs.sqlite"))


@pytest.fixture
def chip_file(tmp_path):
    path = tmp_path / "chip.npz"
    VirtualArray(seed=1).save_chip(path)
    return path


def edited_chip(chip_file, tmp_path, geometry):
    data = dict(np.load(chip_file))
    meta = json.loads(str(data["meta"]))
    if isinstance(geometry, dict):
        meta["geometry"].update(geometry)
    else:
        meta["geometry"] = geometry
    data["meta"] = np.array(json.dumps(meta))
    out = tmp_path / "edited.npz"
    np.savez(out, **data)
    return out


# ----- infer --network given another kind of file -----

def test_a_chip_file_as_network_names_what_it_is(capsys, store, chip_file):
    with pytest.raises(RequestError, match="is a chip file saved with --save-chip: give it as --chip"):
        load_network(chip_file)
    refused(capsys, ["infer", "--network", str(chip_file), "--images", "1"], str(chip_file), "--chip")


def test_a_weight_file_and_a_text_file_as_network_are_refused(capsys, store, tmp_path):
    refused(capsys, ["infer", "--network", str(WEIGHTS), "--images", "1"], "weight file", "rramlab transfer")
    text = tmp_path / "net.txt"
    text.write_text("784,24,10\n")
    refused(capsys, ["power", "--network", str(text), "--per-class", "1"], "text file", "rramlab train")


# ----- bounds, as --cycles is bounded -----

def test_ispva_devices_is_bounded_and_the_help_says_so(capsys, store):
    from rramlab.app.cmd_ispva import MAX_DEVICES_PER_LEVEL

    refused(capsys, ["ispva", "--devices", "1000000000", "--no-progress"], f"1 to {MAX_DEVICES_PER_LEVEL}")
    with pytest.raises(SystemExit):
        main(["ispva", "--help"])
    assert f"1 to {MAX_DEVICES_PER_LEVEL}" in capsys.readouterr().out.replace("\n", " ").replace("  ", " ")
    # "1e9" is not a whole number: argparse refuses it as a usage error
    with pytest.raises(SystemExit) as exc:
        main(["ispva", "--devices", "1e9"])
    assert exc.value.code == 2


def test_a_million_pulse_set_ramp_is_refused_before_the_bench_is_connected(capsys, store, tmp_path):
    log = tmp_path / "visa.log"
    line = refused(capsys, ["ispp", "--bench", str(VIRTUAL_BENCH), "--cell", "3,7", "--width", "1e-3",
                            "--set-start", "3", "--set-stop", "4.2", "--set-step", "1.2e-6", "--visa-log", str(log)],
                   "1,000,001 pulses", f"at most {ispp.MAX_RAMP_PULSES:,} pulses", "--set-step")
    assert "0.000121 V" in line
    assert not log.exists() or log.read_text().strip() == ""
    with pytest.raises(SystemExit):
        main(["ispp", "--help"])
    assert f"at most {ispp.MAX_RAMP_PULSES} pulses" in capsys.readouterr().out.replace("\n", " ")


def test_the_longest_ramp_allowed_still_plans():
    s = ispp.IsppSettings(set_start_v=3.0, set_stop_v=3.0 + 1e-4 * (ispp.MAX_RAMP_PULSES - 1), set_step_v=1e-4)
    assert len(s.set_voltages()) == ispp.MAX_RAMP_PULSES
    with pytest.raises(RequestError, match="at most"):
        ispp.IsppSettings(set_start_v=3.0, set_stop_v=3.0 + 1e-4 * ispp.MAX_RAMP_PULSES, set_step_v=1e-4).validate()


@pytest.mark.parametrize("flag", ["--set-step", "--reset-step"])
def test_a_step_of_1e_300_is_our_message_not_numpys(capsys, store, flag):
    line = refused(capsys, ["ispp", flag, "1e-300"], flag, "1e-06 to 1 V")
    assert "Maximum allowed size" not in line


# ----- files -----

def test_a_bench_file_with_a_utf8_bom_is_read(capsys, tmp_path):
    bom = tmp_path / "bench.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + VIRTUAL_BENCH.read_bytes())
    assert main(["bench", "check", str(bom)]) == 0, capsys.readouterr().err
    assert "bench check OK" in capsys.readouterr().out


def test_a_text_file_as_weight_file_is_named_a_text_file(capsys, store, tmp_path):
    text = tmp_path / "weights.csv"
    text.write_text("1,2\n-3,4\n")
    with pytest.raises(WeightFileError, match="it is a text file, not an .npz archive") as exc:
        load_weight_file(text)
    assert "pickle" not in str(exc.value)
    refused(capsys, ["transfer", str(text)], str(text), "np.savez")


def test_a_boolean_array_is_not_taken_as_levels(capsys, store, tmp_path):
    path = tmp_path / "mask.npz"
    np.savez(path, levels=np.array([[True, False], [False, True]]))
    with pytest.raises(WeightFileError, match="booleans"):
        load_weight_file(path)
    refused(capsys, ["transfer", str(path)], "booleans", "integers -8..8")


@pytest.mark.parametrize("geometry", [[100000, 100000], [0, -1], {"wordlines": 100000, "bitlines": 100000},
                                      {"wordlines": 0, "bitlines": -1}])
def test_a_chip_file_with_an_impossible_geometry_is_refused_without_allocating(capsys, store, chip_file, tmp_path,
                                                                              geometry):
    path = edited_chip(chip_file, tmp_path, geometry)
    with pytest.raises(ChipFileError, match="geometry"):
        VirtualArray.load_chip(path)
    refused(capsys, ["ispp", "--chip", str(path), "--cell", "1,1", "--cycles", "1", "--no-progress"],
            str(path), "save the chip again")
