"""Every command treats its output files as ``rramlab ispp`` does: each path is checked before any
data is read, network trained or pulse sent (one line, exit 1), an existing file is replaced only
with --force, CSVs start with the provenance lines and JSON files carry them as "provenance", a
stop exits 128 + the signal number and "0 V" is said only when the outputs were made safe."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rramlab.app.cli import Stopped, main
from rramlab.protocols import transfer
from rramlab.protocols.store import RunStore
from rramlab.protocols.weights import save_weights
from rramlab.sim.virtual_array import VirtualArray

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "weights_24x10.npz"


@pytest.fixture
def pulses(monkeypatch):
    """Every pulse the twin is asked for (none may come before the outputs are checked)."""
    sent = []
    real = VirtualArray._pulse

    def counted(self, *a, **k):
        sent.append(a)
        return real(self, *a, **k)

    monkeypatch.setattr(VirtualArray, "_pulse", counted)
    return sent


@pytest.fixture
def no_training(monkeypatch):
    """Training or reading MNIST before the outputs are checked fails the test."""
    from rramlab.protocols import mnist, network

    def forbidden(*a, **k):
        raise AssertionError("data read or network trained before the output paths were checked")

    monkeypatch.setattr(network, "train_network", forbidden)
    monkeypatch.setattr(mnist, "load", forbidden)


def refused(argv, capsys, *messages):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err  # one line
    for m in messages:
        assert m in err, err
    return err


def no_runs(store_path) -> bool:
    with RunStore(store_path) as store:
        return store.runs() == []


def comments_and_rows(path):
    lines = Path(path).read_text().splitlines()
    n = next(i for i, x in enumerate(lines) if not x.startswith("#"))
    return lines[:n], list(csv.reader(lines[n:]))


# ----- transfer -----

def test_transfer_refuses_an_existing_json_and_a_bad_folder_before_any_pulse(tmp_path, capsys, pulses):
    store_path = tmp_path / "s.sqlite"
    js = tmp_path / "t.json"
    js.write_text("keep me")
    base = ["transfer", str(EXAMPLE), "--store", str(store_path), "--no-progress"]
    refused(base + ["--json", str(js)], capsys, f"--json {js} already exists", "--force")
    assert js.read_text() == "keep me"
    refused(base + ["--json", str(tmp_path / "nope" / "t.json")], capsys, "the folder", "does not exist",
            "mkdir -p")
    refused(base + ["--save-chip", str(tmp_path)], capsys, "--save-chip", "is a folder")
    chip = tmp_path / "chip.npz"
    chip.write_bytes(b"old chip")
    refused(base + ["--save-chip", str(chip)], capsys, f"--save-chip {chip} already exists")
    assert not pulses and no_runs(store_path)


def test_transfer_force_overwrites_the_json_which_carries_the_provenance(tmp_path, capsys):
    w, js = tmp_path / "w.npz", tmp_path / "t.json"
    save_weights(w, [[3], [-5]])
    js.write_text("old")
    assert main(["transfer", str(w), "--json", str(js), "--force", "--no-progress"]) == 0
    report = json.loads(js.read_text())
    prov = report["provenance"]
    assert prov["command"] == f"rramlab transfer {w} --json {js} --force --no-progress"
    assert prov["protocol"] == "transfer" and prov["run_id"] == report["run_id"]
    assert prov["backend"]["engine"] == "fast" and prov["settings"]["transfer"]["scheme"] == "half-bias"
    assert prov["rramlab"] and prov["started"][:2] == "20"


def _stop_transfer_after(monkeypatch, n, exc):
    real = transfer.run

    def stopping(instrument, plan, *a, **k):
        for i, r in enumerate(real(instrument, plan, *a, **k)):
            if i == n:
                raise exc
            yield r

    monkeypatch.setattr(transfer, "run", stopping)


def test_a_sigterm_stop_of_a_transfer_exits_143(tmp_path, capsys, monkeypatch):
    _stop_transfer_after(monkeypatch, 5, Stopped(signal.SIGTERM))
    store_path = tmp_path / "s.sqlite"
    assert main(["transfer", str(EXAMPLE), "--store", str(store_path), "--no-progress"]) == 143
    err = capsys.readouterr().err
    assert "interrupted by SIGTERM; outputs are at 0 V; run 1 holds 5 records in" in err and "--resume 1" in err
    with RunStore(store_path) as store:
        assert store.run(1).status == "aborted" and store.run(1).records == 5


def test_a_stopped_transfer_whose_reset_did_not_complete_does_not_claim_0_v(tmp_path, capsys, monkeypatch):
    _stop_transfer_after(monkeypatch, 5, KeyboardInterrupt())
    # the instrument reports its outputs as not made safe (a reset that did not run to its end)
    monkeypatch.setattr(VirtualArray, "outputs_safe", property(lambda self: False))
    assert main(["transfer", str(EXAMPLE), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "interrupted; the twin's outputs were not reset; run 1 holds 5 records" in err and "0 V" not in err


def test_sigterm_to_a_half_bias_transfer_exits_143_with_its_records_stored(tmp_path):
    store_path = tmp_path / "s.sqlite"
    env = {**os.environ, "RRAMLAB_STORE": str(store_path)}
    rramlab = str(Path(sys.executable).with_name("rramlab"))
    proc = subprocess.Popen([rramlab, "transfer", str(EXAMPLE), "--scheme", "half-bias", "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    seen = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if store_path.exists():
                try:  # read-only, so the poll never writes to the store the transfer is filling
                    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
                    seen = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
                    conn.close()
                except sqlite3.Error:
                    seen = 0
            if seen >= 50:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the transfer ended before the signal: {proc.stderr.read()!r}"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM; outputs are at 0 V; run 1 holds" in err and "Traceback" not in err
    assert "continue with --resume 1" in err
    with RunStore(store_path) as store:
        (info,) = store.runs()
        assert info.status == "aborted" and info.ended_at is not None
        records = store.records(info.id)
        assert len(records) >= seen and [r.seq for r in records] == list(range(len(records)))
    assert f"run 1 holds {len(records)} records" in err


# ----- ispva -----

def test_ispva_refuses_existing_outputs_and_bad_folders_before_any_device(tmp_path, capsys, pulses):
    store_path = tmp_path / "s.sqlite"
    table, js = tmp_path / "i.csv", tmp_path / "i.json"
    table.write_text("keep me")
    base = ["ispva", "--devices", "1", "--engine", "fast", "--store", str(store_path), "--no-progress"]
    refused(base + ["--csv", str(table)], capsys, f"--csv {table} already exists", "--force")
    assert table.read_text() == "keep me"
    refused(base + ["--json", str(tmp_path / "nope" / "i.json")], capsys, "does not exist")
    refused(base + ["--csv", str(tmp_path)], capsys, "is a folder")
    refused(base + ["--csv", str(js), "--json", str(js)], capsys, "are the same file")
    assert not pulses and no_runs(store_path)


def test_ispva_force_writes_provenance_into_the_csv_and_the_json(tmp_path, capsys):
    table, js = tmp_path / "i.csv", tmp_path / "i.json"
    table.write_text("old")
    js.write_text("old")
    argv = ["ispva", "--devices", "1", "--engine", "fast", "--csv", str(table), "--json", str(js), "--force",
            "--no-progress"]
    assert main(argv) == 0
    comments, rows = comments_and_rows(table)
    assert comments[0].startswith("# rramlab ") and f"# command: rramlab {' '.join(argv)}" in comments
    assert any(c.startswith("# settings: ") and '"devices_per_level": 1' in c for c in comments)
    assert rows[0][:2] == ["device", "target_s"] and len(rows) == 1 + 8
    summary = json.loads(js.read_text())
    assert summary["provenance"]["command"] == "rramlab " + " ".join(argv)
    assert summary["provenance"]["backend"] == json.loads(
        next(c for c in comments if c.startswith("# backend: "))[len("# backend: "):])


# ----- train, infer, power, reproduce -----

@pytest.mark.parametrize("argv, message", [
    (["train", "--out", "{existing}"], "--out {existing} already exists"),
    (["train", "--out", "{tmp}/nope/net.npz"], "does not exist"),
    (["train", "--out", "{tmp}/net.npz"], "--out (its qt weight file) {tmp}/net.qt.weights.npz already exists"),
    (["infer", "--csv", "{existing}"], "--csv {existing} already exists"),
    (["infer", "--plot", "{tmp}/nope/p.png"], "does not exist"),
    (["infer", "--save-chip", "{existing}"], "--save-chip {existing} already exists"),
    (["power", "--plot", "{existing}"], "--plot {existing} already exists"),
    (["power", "--save-chip", "{tmp}"], "is a folder"),
    (["reproduce", "--json", "{existing}"], "--json {existing} already exists"),
    (["reproduce", "--report", "{existing}"], "is a file, not a folder"),
    (["reproduce", "--report", "{tmp}/nope/report"], "does not exist"),
    (["reproduce", "--report", "{tmp}"], "--report {tmp}/weight_maps.png already exists"),
])
def test_network_commands_check_their_outputs_before_data_training_or_pulses(tmp_path, capsys, pulses,
                                                                               no_training, argv, message):
    existing = tmp_path / "existing.out"
    existing.write_text("keep me")
    (tmp_path / "net.qt.weights.npz").write_text("keep me")
    (tmp_path / "weight_maps.png").write_text("keep me")
    fill = {"existing": str(existing), "tmp": str(tmp_path)}
    store_path = tmp_path / "s.sqlite"
    refused([a.format(**fill) for a in argv] + ["--store", str(store_path)] * (argv[0] != "train"), capsys,
            message.format(**fill))
    assert existing.read_text() == "keep me" and not pulses and no_runs(store_path)


def test_infer_force_replaces_the_csv_and_plot(tmp_path, capsys):
    table, png = tmp_path / "i.csv", tmp_path / "i.png"
    table.write_text("old")
    png.write_text("old")
    assert main(["infer", "--index", "0", "--csv", str(table), "--plot", str(png), "--force"]) == 0
    comments, rows = comments_and_rows(table)
    assert any(c.startswith("# command: rramlab infer --index 0") for c in comments)
    assert rows[0][:4] == ["image", "label", "prediction", "step"] and png.read_bytes()[:4] == b"\x89PNG"


def test_a_sigterm_stop_of_inference_exits_143_and_says_0_v_only_when_safe(capsys, monkeypatch):
    def stopped(self, wordline_v, bitlines):
        raise Stopped(signal.SIGTERM)

    monkeypatch.setattr(VirtualArray, "_vmm", stopped)
    assert main(["infer", "--images", "10"]) == 143
    assert "interrupted by SIGTERM after 0 of 10 images; outputs are at 0 V" in capsys.readouterr().err
    monkeypatch.setattr(VirtualArray, "outputs_safe", property(lambda self: False))
    assert main(["power", "--per-class", "1"]) == 143
    err = capsys.readouterr().err
    assert "interrupted by SIGTERM" in err and "0 V" not in err and "not reset" in err


# ----- runs export -----

def test_runs_export_refuses_existing_files_and_writes_the_stored_runs_provenance(tmp_path, capsys):
    store_path = tmp_path / "s.sqlite"
    w = tmp_path / "w.npz"
    save_weights(w, [[3], [-5]])
    assert main(["transfer", str(w), "--store", str(store_path), "--no-progress"]) == 0
    capsys.readouterr()
    table, arrays = tmp_path / "r.csv", tmp_path / "r.npz"
    table.write_text("keep me")
    base = ["runs", "export", "1", "--store", str(store_path)]
    refused(base + ["--csv", str(table)], capsys, f"--csv {table} already exists", "--force")
    refused(base + ["--npz", str(tmp_path / "nope" / "r.npz")], capsys, "does not exist")
    assert table.read_text() == "keep me" and not arrays.exists()
    assert main(base + ["--csv", str(table), "--npz", str(arrays), "--force"]) == 0
    with RunStore(store_path) as store:
        info = store.run(1)
    comments, rows = comments_and_rows(table)
    assert comments[0] == f"# rramlab {info.software_version}"
    assert f"# started: {info.started_at}" in comments
    backend = json.loads(next(c for c in comments if c.startswith("# backend: "))[len("# backend: "):])
    assert backend == {"backend": info.backend, **info.backend_describe}
    settings = json.loads(next(c for c in comments if c.startswith("# settings: "))[len("# settings: "):])
    assert settings == json.loads(json.dumps(info.settings))
    assert rows[0][:2] == ["seq", "type"] and len(rows) == 1 + info.records
    with np.load(arrays) as data:
        prov = json.loads(str(data["provenance"]))
    assert prov["rramlab"] == info.software_version and prov["run_id"] == 1 and prov["status"] == "finished"
