"""rramlab sweep: the same numbers serially, on a local Dask cluster and on a real scheduler with two
worker processes; per-point seeds; points kept as they arrive, resume after SIGKILL with an
identical file; bad sweeps refused in one line before any point runs; the Dataset and the report."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import rramlab
from rramlab.app import sweep as sw
from rramlab.app.cli import main

ROOT = Path(__file__).resolve().parent.parent

#: a tiny transfer sweep: 2 chips x 2 threshold spreads on a 4 x 4 array, two weights (4 cells)
TINY = {"seed": 11, "axes": {"chip": {"count": 2}, "threshold_sigma_v": [0.0, 0.03]},
        "pipeline": {"name": "transfer", "scheme": "half-bias", "levels": [[3, -5]], "wordlines": 4,
                     "bitlines": 4}}


def _same(a, b):
    """Every output equal to 1e-12 (NaN where the other is NaN), same coordinates."""
    assert list(a.dims) == list(b.dims)
    for name in a.coords:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    for k in sw.OUTPUTS:
        x, y = a[k].values, b[k].values
        assert np.array_equal(np.isnan(x), np.isnan(y)), k
        np.testing.assert_allclose(x[~np.isnan(x)], y[~np.isnan(y)], rtol=0, atol=1e-12 * max(1.0, np.nanmax(
            np.abs(x), initial=0.0)), err_msg=k)


@pytest.fixture(scope="module")
def serial():
    return rramlab.sweep(TINY, scheduler="serial", progress=False)


def test_serial_sweep_is_a_dataset_with_one_dimension_per_axis(serial):
    assert dict(serial.sizes) == {"chip": 2, "threshold_sigma_v": 2}
    assert set(serial.data_vars) == set(sw.OUTPUTS)
    assert np.all(np.isfinite(serial.transfer_rmse_s)) and np.all(serial.transfer_rmse_s < 5e-9)
    assert np.all(np.isnan(serial.accuracy))          # transfer only: no inference
    # different chips differ: the seeds come from the coordinates
    assert len(set(serial.pulses_per_cell.values.ravel().tolist()) | set(
        serial.transfer_rmse_s.values.ravel().tolist())) > 2


def test_point_seed_comes_from_the_sweep_seed_and_the_coordinates_only():
    a = sw.point_seed(11, {"chip": 1, "threshold_sigma_v": 0.03})
    assert a == sw.point_seed(11, {"threshold_sigma_v": 0.03, "chip": 1})     # order of the keys
    assert a != sw.point_seed(12, {"chip": 1, "threshold_sigma_v": 0.03})
    assert a != sw.point_seed(11, {"chip": 0, "threshold_sigma_v": 0.03})
    assert a != sw.point_seed(11, {"chip": 1, "threshold_sigma_v": 0.0})


def test_a_point_gives_the_same_numbers_in_any_order_and_in_a_bigger_grid(serial):
    spec = sw.spec_from_dict(TINY)
    last = spec.points()[-1]
    alone = sw.point_result(spec.payload(), last)           # computed first, on its own
    assert alone == pytest.approx({k: float(serial[k].isel(chip=-1, threshold_sigma_v=-1)) for k in sw.OUTPUTS},
                                  nan_ok=True, abs=1e-12)
    bigger = {**TINY, "axes": {"chip": {"count": 3}, "threshold_sigma_v": [0.0, 0.03]}}
    grid = rramlab.sweep(bigger, scheduler="serial", progress=False)
    _same(grid.isel(chip=slice(0, 2)), serial)


def test_local_cluster_gives_the_serial_numbers_and_prints_its_dashboard(serial):
    said = []
    ds = rramlab.sweep(TINY, workers=2, progress=False, say=said.append)
    _same(ds, serial)
    assert any("local Dask cluster: 2 worker processes, dashboard http://" in s for s in said), said


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _dask_cluster(workers: int = 2):
    """``dask scheduler`` and ``dask worker`` as separate processes on localhost, on free ports."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        for _ in range(workers):
            procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
                                           "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        from dask.distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=90)
            pids = client.run(os.getpid)
        yield address, set(pids.values())
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def test_two_dask_workers_in_their_own_processes_give_the_serial_numbers(serial, tmp_path):
    with _dask_cluster(2) as (address, worker_pids):
        assert len(worker_pids) == 2 and os.getpid() not in worker_pids
        out = tmp_path / "remote.nc"
        ds = rramlab.sweep(TINY, out, scheduler=address, progress=False)
        with sqlite3.connect(str(out) + ".points.sqlite") as db:
            workers = {w for (w,) in db.execute("SELECT worker FROM points")}
    _same(ds, serial)
    assert {int(w.rsplit(":", 1)[1]) for w in workers} <= worker_pids     # computed there, not here
    import xarray as xr

    with xr.open_dataset(out, engine="scipy") as back:
        _same(back.load(), serial)


# ----- kept as they arrive, resume -----

def _write_sweep_file(path: Path, chips: int) -> Path:
    path.write_text(f"""seed = 5
[axes]
chip = {{count = {chips}}}
wire_resistance_ohm = [2.0, 20.0]
[pipeline]
name = "transfer"
scheme = "half-bias"
levels = [[4, -2]]
wordlines = 4
bitlines = 4
""")
    return path


def _sessions(out: Path) -> dict:
    with sqlite3.connect(str(out) + ".points.sqlite") as db:
        return dict(db.execute("SELECT key, session FROM points"))


def test_sigkill_halfway_then_the_same_command_computes_only_the_missing_points(tmp_path):
    spec_file = _write_sweep_file(tmp_path / "s.toml", chips=5)       # 10 points
    out = tmp_path / "killed.nc"
    cmd = [sys.executable, "-m", "rramlab", "sweep", str(spec_file), "--out", str(out), "--serial", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    points = Path(str(out) + ".points.sqlite")
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if points.exists():
            with contextlib.suppress(sqlite3.Error), sqlite3.connect(points) as db:
                done = db.execute("SELECT COUNT(*) FROM points").fetchone()[0]
            if done >= 4:
                break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    first = _sessions(out)
    assert 4 <= len(first) < 10
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(first)} already in" in rerun.stderr and f"computing the {10 - len(first)} missing" in rerun.stderr
    after = _sessions(out)
    assert len(after) == 10
    assert {k for k, s in after.items() if s == 1} == set(first)       # kept, not recomputed
    assert {k for k, s in after.items() if s == 2} == set(after) - set(first)
    # the file is the one an uninterrupted run writes, byte for byte
    whole = tmp_path / "whole.nc"
    assert main(["sweep", str(spec_file), "--out", str(whole), "--serial", "--no-progress"]) == 0
    assert out.read_bytes() == whole.read_bytes()


def test_sigterm_keeps_the_finished_points_and_says_how_to_continue(tmp_path):
    spec_file = _write_sweep_file(tmp_path / "s.toml", chips=4)
    out = tmp_path / "s.nc"
    proc = subprocess.Popen([sys.executable, "-m", "rramlab", "sweep", str(spec_file), "--out", str(out), "--serial"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    points = Path(str(out) + ".points.sqlite")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if points.exists():
            with contextlib.suppress(sqlite3.Error), sqlite3.connect(points) as db:
                if db.execute("SELECT COUNT(*) FROM points").fetchone()[0] >= 2:
                    break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143, err
    kept = len(_sessions(out))
    assert 2 <= kept < 8
    assert f"interrupted by SIGTERM: {kept} of 8 points kept" in err and "run the same command again" in err
    assert "8/8" not in err and "/8 [" in err            # the progress bar: points done, time left


# ----- refused before any point runs -----

@pytest.mark.parametrize("change, words", [
    ({"axes": {"threshold_sigma_v": [0.02, -0.01]}}, "axis threshold_sigma_v: -0.01 V is below 0: a spread cannot "
                                                     "be negative"),
    ({"axes": {"wire_resistance_ohm": [2, 5000]}}, "axis wire_resistance_ohm: 5000 ohm is beyond the twin's limit"),
    ({"pipeline": {**TINY["pipeline"], "name": "training"}}, "pipeline 'training' is unknown: use one of transfer, "
                                                             "inference"),
    ({"axes": {"chip": {"count": 2}, "programming_error_sigma_s": []}}, "axis programming_error_sigma_s is an empty "
                                                                        "list"),
    ({"axes": {"temperature": [300]}}, "unknown axis 'temperature'"),
])
def test_a_bad_sweep_is_one_line_before_any_point(tmp_path, capsys, change, words):
    import tomllib  # noqa: F401  (the file is TOML; written by hand below)

    doc = {**TINY, **change}
    path = tmp_path / "bad.toml"
    path.write_text(_toml(doc))
    code = main(["sweep", str(path), "--out", str(tmp_path / "bad.nc"), "--serial"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and err.startswith("rramlab sweep: error: ") and words in err, err
    assert not list(tmp_path.glob("bad.nc*"))                 # nothing written, nothing computed


def test_a_scheduler_that_does_not_answer_is_refused_within_the_connect_timeout(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(_toml(TINY))
    port = _free_port()       # nothing listens there
    t = time.monotonic()
    code = main(["sweep", str(path), "--out", str(tmp_path / "s.nc"), "--scheduler", f"tcp://127.0.0.1:{port}",
                 "--connect-timeout", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and time.monotonic() - t < 15
    assert len(err.splitlines()) == 1 and f"no Dask scheduler answers at tcp://127.0.0.1:{port}" in err, err
    assert not list(tmp_path.glob("s.nc*"))


def test_another_sweep_into_the_same_out_is_refused_and_force_starts_afresh(tmp_path):
    out = tmp_path / "x.nc"
    one = {**TINY, "axes": {"chip": {"count": 1}, "threshold_sigma_v": [0.0]}}
    rramlab.sweep(one, out, scheduler="serial", progress=False)
    other = {**one, "seed": 12}
    with pytest.raises(sw.SweepError, match="holds points of another sweep"):
        rramlab.sweep(other, out, scheduler="serial", progress=False)
    ds = rramlab.sweep(other, out, scheduler="serial", progress=False, force=True)
    assert ds.attrs["sweep_seed"] == 12


def _toml(doc: dict) -> str:
    def value(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return json.dumps(v)

    lines = [f"seed = {doc['seed']}"]
    for table in ("axes", "pipeline", "spec"):
        if table in doc:
            lines.append(f"[{table}]")
            lines += [f"{k} = {value(v)}" for k, v in doc[table].items()]
    return "\n".join(lines) + "\n"


# ----- the inference pipeline and the report -----

def test_inference_sweep_reports_accuracy_power_and_yield_pngs(tmp_path):
    spec = {"seed": 3, "axes": {"chip": {"count": 2}, "prune_ratio": [0.0, 0.5]},
            "pipeline": {"name": "inference", "hidden": 2, "epochs": 1, "finetune_epochs": 1, "wordlines": 2,
                         "bitlines": 20, "images_per_class": 1, "power_per_class": 1, "scheme": "half-bias"},
            "spec": {"min_accuracy": 0.3}}
    report = tmp_path / "report"
    ds = rramlab.sweep(spec, tmp_path / "inf.nc", scheduler="serial", progress=False, report=report)
    assert np.all((ds.accuracy >= 0) & (ds.accuracy <= 1)) and np.all((ds.power_w > 1e-9) & (ds.power_w < 1e-6))
    assert np.all(np.isfinite(ds.transfer_rmse_s))
    # the pruning axis programs another network: other conductances, other power on every chip
    assert np.all(ds.power_w.sel(prune_ratio=0.5) != ds.power_w.sel(prune_ratio=0.0))
    names = {p.name for p in report.glob("*.png")}
    assert {"accuracy_vs_prune_ratio.png", "power_w_vs_prune_ratio.png", "yield_vs_prune_ratio.png"} <= names
    y = sw.yield_fraction(ds, {"min_accuracy": 0.3})
    assert set(np.unique(y.values)) <= {0.0, 1.0}
    assert np.array_equal(y.values, (ds.accuracy.values >= 0.3).astype(float))


def test_the_shipped_example_sweep_file_is_valid():
    spec = sw.load_spec(ROOT / "examples" / "sweep.toml")
    assert spec.size == 200 and spec.pipeline["name"] == "transfer"


def test_a_point_runs_on_one_blas_thread_and_workers_are_started_with_one():
    from threadpoolctl import threadpool_info

    with sw._single_blas_thread():
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    import dask
    import distributed  # noqa: F401  (loads its configuration)

    # what `dask worker` and the local cluster's nannies set in every worker process before it starts
    environ = dask.config.get("distributed.nanny.pre-spawn-environ")
    assert all(int(environ[k]) == 1 for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"))
