"""rramlab runs watch: reads a store while another process writes it, and never holds the writer up."""

import io
import os
import signal
import subprocess
import sys
import textwrap
import time

from rramlab.app.cli import main
from rramlab.app.watch import open_reader, snapshot, snapshot_text, watch
from rramlab.protocols.store import RunMetadata, RunStore

# A writer that fails at once on a lock (busy_timeout 0): any SQLITE_BUSY the watch caused would end it.
WRITER = textwrap.dedent("""
    import sys, time
    from dataclasses import dataclass
    from rramlab.protocols.store import RunMetadata, RunStore

    @dataclass(frozen=True)
    class Read:
        wordline: int
        bitline: int
        conductance_s: float

    with RunStore(sys.argv[1]) as s:
        s.conn.execute("PRAGMA busy_timeout=0")
        run = s.start_run("ispva", {}, "twin", {}, metadata=RunMetadata(chip_id="W3-D12"))
        print(run, flush=True)
        sys.stdin.readline()  # the test's watch is running
        for i in range(int(sys.argv[2])):
            s.append(run, Read(i % 24, 7, i * 1e-9))
            time.sleep(0.002)
        s.end_run(run, "finished")
    print("done", flush=True)
""")


def test_the_watch_sees_a_concurrent_writers_records_and_the_writer_never_sees_busy(tmp_path):
    path = tmp_path / "r.sqlite"
    RunStore(path).close()
    n = 400
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = int(writer.stdout.readline())
        conn = open_reader(path)
        seen = [snapshot(conn, last=3)]
        writer.stdin.write("go\n")
        writer.stdin.flush()
        while writer.poll() is None:  # read as fast as it can while the writer writes
            seen.append(snapshot(conn, last=3))
        seen.append(snapshot(conn, last=3))
        conn.close()
        out, err = writer.communicate(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0, err
    assert "done" in out and "locked" not in err and "BUSY" not in err
    counts = [s["records"] for s in seen]
    assert all(s["run_id"] == run for s in seen)
    assert counts[0] == 0 and counts[-1] == n and counts == sorted(counts)
    assert len(set(counts)) > 2  # it saw the run grow, not only its start and end
    assert seen[-1]["status"] == "finished" and [r["seq"] for r in seen[-1]["last"]] == [n - 3, n - 2, n - 1]
    assert seen[-1]["chip_id"] == "W3-D12"


def test_the_watch_prints_the_live_run_and_its_last_records(tmp_path):
    path = tmp_path / "r.sqlite"
    with RunStore(path) as s:  # the watch shows the newest running run, not the newest run
        done = s.start_run("ispp", {}, "twin", {})
        s.end_run(done, "finished")
        live = s.start_run("ispva", {}, "twin", {}, metadata=RunMetadata(chip_id="W3-D12"))
        for i in range(4):
            s.conn.execute("INSERT INTO records (run_id, seq, type, data, at) VALUES (?, ?, 'Read', ?, ?)",
                           (live, i, f'{{"wordline": {i}, "conductance_s": 1.5e-08}}', f"2026-12-04T02:00:0{i}.000+00:00"))
        s.conn.commit()
        s.end_run(s.start_run("ispp", {}, "twin", {}), "aborted")
    out = io.StringIO()
    assert watch(path, last=2, interval_s=0.01, times=2, out=out) == 0
    frames = out.getvalue().strip().split("\n\n")
    assert len(frames) == 2
    lines = frames[0].splitlines()
    assert lines[0].startswith(f"run {live} ispva running on twin, chip W3-D12: 4 records in")
    assert lines[1].split()[:3] == ["2", "02:00:02.000", "Read:"] and "conductance_s=1.5e-08" in lines[1]
    assert len(lines) == 3


def test_the_watch_of_a_missing_store_is_one_line(tmp_path, capsys):
    assert main(["runs", "watch", "--store", str(tmp_path / "none.sqlite")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err


def test_ctrl_c_ends_the_watch_with_one_line(tmp_path):
    path = tmp_path / "r.sqlite"
    with RunStore(path) as s:
        s.start_run("ispva", {}, "twin", {})
    p = subprocess.Popen([sys.executable, "-m", "rramlab", "runs", "watch", "--store", str(path), "--interval", "0.05"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline()  # the first frame is out: the watch is in its loop
        assert first.startswith("run 1 ispva running")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0 and err == ""
    assert out.strip().splitlines()[-1] == f"stopped watching {path}"
