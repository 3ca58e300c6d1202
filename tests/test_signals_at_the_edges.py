"""Signals at the edges of a run, with real signals to a real ``rramlab`` process (issue 18, s4):
an ignored SIGHUP (``nohup``) stays ignored, a script's background job (Ctrl-C ignored, POSIX) is
stopped with ``kill``, and a Ctrl-C during start-up is one line, not a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rramlab.protocols.store import RunStore
from test_stop_paths import RRAMLAB, SIM_BENCH, assert_rows_intact, bench_state, lines_in, visa_writes, wait_for

ROOT = Path(__file__).resolve().parents[1]
PULSES_PER_CYCLE = 62  # the default ISPP: 49 set pulses and 13 reset pulses


def bench_run(tmp_path, cycles):
    return ["ispp", "--bench", SIM_BENCH, "--cell", "3,7", "--width", "2e-3", "--cycles", str(cycles), "--no-progress",
            "--visa-log", str(tmp_path / "visa.log"), "--csv", str(tmp_path / "ispp.csv"),
            "--store", str(tmp_path / "runs.sqlite")]


def stored_run(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as store:
        (run,) = store.runs()
    return run


def test_under_nohup_a_hang_up_does_not_stop_the_run(tmp_path):
    log = tmp_path / "visa.log"
    proc = subprocess.Popen(["nohup", RRAMLAB, *bench_run(tmp_path, 4)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    wait_for(lambda: lines_in(log) > 400, proc)   # well into the pulses
    for _ in range(3):                            # a logout, and then some
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "interrupted" not in err and "Traceback" not in err
    assert_rows_intact(tmp_path / "ispp.csv", 4 * PULSES_PER_CYCLE)
    assert stored_run(tmp_path).status == "finished"
    assert bench_state(visa_writes(log)).safe


def test_a_background_job_of_a_script_ignores_ctrl_c_and_stops_safely_with_kill(tmp_path):
    # sh runs "cmd &" with SIGINT ignored (POSIX, no job control): Ctrl-C cannot reach it. The README
    # says so and says to stop it with kill PID (SIGTERM), which stops it as Ctrl-C would.
    log, pid_file = tmp_path / "visa.log", tmp_path / "pid"
    argv = " ".join(f"'{a}'" for a in [RRAMLAB, *bench_run(tmp_path, 1000)])
    shell = subprocess.Popen(["sh", "-c", f"{argv} 2>{tmp_path / 'err.txt'} & echo $! >{pid_file}; wait $!; echo $? "
                                          f">{tmp_path / 'rc'}"], cwd=tmp_path)
    wait_for(lambda: lines_in(log) > 400, shell)
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGINT)                   # ignored
    before = lines_in(log)
    wait_for(lambda: lines_in(log) > before + 200, shell, what="the run to go on after the ignored Ctrl-C")
    os.kill(pid, signal.SIGTERM)
    shell.wait(timeout=60)
    assert (tmp_path / "rc").read_text().strip() == "143"
    err = (tmp_path / "err.txt").read_text()
    assert "interrupted by SIGTERM" in err and "outputs are at 0 V" in err and "Traceback" not in err
    assert bench_state(visa_writes(log)).safe
    readme = (ROOT / "README.md").read_text()
    assert "background job" in readme and "kill PID" in readme and "nohup" in readme


# A real SIGINT sent by the process to itself at a chosen point of its start-up: when the module
# named by STARTUP_SIGINT_AT is first imported (a finder put in front by sitecustomize).
SITECUSTOMIZE = textwrap.dedent("""
    import os, signal, sys

    class SigintAt:
        def find_spec(self, name, path=None, target=None):
            if name == os.environ.get("STARTUP_SIGINT_AT"):
                sys.meta_path.remove(self)
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):   # the handler runs at the next bytecode boundary
                    pass
            return None

    sys.meta_path.insert(0, SigintAt())
""")


@pytest.mark.parametrize("module", ["rramlab.drivers.interface", "rramlab.protocols.ispp", "rramlab.protocols.store"],
                         ids=["while-importing-the-cli", "while-building-the-parser", "while-adding-the-store-flag"])
def test_a_ctrl_c_during_start_up_is_one_line(tmp_path, module):
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, PYTHONPATH=str(tmp_path), STARTUP_SIGINT_AT=module)
    proc = subprocess.run([RRAMLAB, *bench_run(tmp_path, 1)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["rramlab: interrupted while starting (Ctrl-C); nothing was sent to any instrument"], proc.stderr
    # 130 from main, or death by SIGINT (what a shell also reports as 130) when the import was cut
    assert proc.returncode in (130, -signal.SIGINT), proc.returncode
    assert not (tmp_path / "visa.log").exists() or (tmp_path / "visa.log").read_text() == ""


def test_the_start_up_hook_is_gone_once_the_cli_is_imported():
    code = "import sys; before = sys.excepthook; import rramlab.app.cli; print(sys.excepthook is before)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr
