"""The end of a bench run (issue 18, section 4): each safe-state step is tried once more after a
device clear, the matrix is read back (``:ROUT:CLOS:CARD?``), a run whose safe state failed is never
``finished``, and errors already in an instrument's queue at connect are shown and recorded.

Each test runs ``rramlab ispp`` (in this process) on the virtual bench with faults injected into the
virtual matrix; the VISA log and the virtual instruments' own state say what happened.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rramlab.app import virtual_bench
from rramlab.app.cli import main
from rramlab.protocols.store import RunStore
from rramlab.sim.instruments.bench import VirtualBench
from test_stop_paths import visa_writes

ROOT = Path(__file__).resolve().parents[1]
VIRTUAL_BENCH = str(ROOT / "drivers" / "benches" / "virtual.toml")
OPEN_ALL = ":ROUT:OPEN:CARD ALL"


@pytest.fixture
def opened(monkeypatch):
    """The virtual benches the command opens (VirtualBench objects), and a hook list: each
    callable in it gets the bench right after it was opened (faults go in there)."""
    benches, hooks = [], []
    real = virtual_bench.open_virtual_bench

    def opening(config, args, visa_log=None):
        station = real(config, args, visa_log=visa_log)
        benches.append(station.virtual_bench)
        for hook in hooks:
            hook(station.virtual_bench)
        return station

    monkeypatch.setattr(virtual_bench, "open_virtual_bench", opening)
    return benches, hooks


def run_ispp(tmp_path, *extra):
    log, store = tmp_path / "visa.log", tmp_path / "runs.sqlite"
    argv = ["ispp", "--bench", VIRTUAL_BENCH, "--cell", "3,7", "--width", "2e-3", "--cycles", "1",
            "--set-stop", "3.2", "--reset-stop", "-1.1", "--no-progress", "--visa-log", str(log),
            "--store", str(store), "--engine", "fast", *extra]
    code = main(argv)
    with RunStore(store) as s:
        runs = s.runs()
    assert len(runs) == 1
    return code, log, runs[0]


def after_last_pulse(log) -> list[str]:
    writes = [f"{n}: {c}" for n, c in visa_writes(log)]
    last = max(i for i, w in enumerate(writes) if w.startswith("4156C: PV"))
    return writes[last + 1:]


def test_a_lost_open_all_is_retried_after_a_device_clear_and_the_run_finishes(tmp_path, opened, capsys):
    benches, hooks = opened
    faults = []
    # (hooks run after connect: the first OPEN:CARD ALL after that is the end of the run) lost
    hooks.append(lambda b: faults.append(b.matrix.inject("timeout", "^:ROUT:OPEN:CARD ALL$")))
    code, log, run = run_ispp(tmp_path)
    err = capsys.readouterr().err
    assert faults[0].fired
    assert code == 0, err
    assert run.status == "finished"
    assert benches[0].is_safe()
    tail = after_last_pulse(log)
    assert "E5250A: :ROUT:CLOS:CARD? 0" in tail
    # in the log: the lost write, a device clear, the same step once more, then the read-back
    text = Path(log).read_text()
    lost = text.index("<message lost: timeout>", text.rindex("'PV "))
    clear = text.index("<device clear>", lost)
    again = text.index(f"'{OPEN_ALL}'", clear)
    assert text.index("':ROUT:CLOS:CARD? 0'", again) > again
    assert "UNKNOWN" not in err and "Traceback" not in err


def test_a_run_whose_safe_state_failed_is_never_finished(tmp_path, opened, capsys):
    benches, hooks = opened
    # both tries of the end-of-run open are lost (a fault counts the messages it is asked about,
    # and the second is asked only once the first has fired: occurrence 1 each is messages 1 and 2)
    hooks.append(lambda b: [b.matrix.inject("timeout", "^:ROUT:OPEN:CARD ALL$") for _ in range(2)])
    code, log, run = run_ispp(tmp_path)
    err = capsys.readouterr().err
    assert code == 1, err
    assert run.status == "failed", run
    assert "safe state" in run.error and "open every crosspoint" in run.error
    assert run.records > 0                          # the records taken are kept
    assert "Traceback" not in err


def test_the_matrix_is_read_back_and_an_open_it_never_carried_out_is_found(tmp_path, opened, capsys):
    benches, hooks = opened

    def ignore_the_end_of_run_open_all(bench):
        # the message arrives and is acknowledged, but the relays never open (a lost command)
        matrix, real, seen = bench.matrix, bench.matrix._execute, []

        def execute(command):
            if command == OPEN_ALL:
                seen.append(command)
                if len(seen) == 1:
                    return None
            return real(command)

        matrix._execute = execute

    hooks.append(ignore_the_end_of_run_open_all)
    code, log, run = run_ispp(tmp_path)
    err = capsys.readouterr().err
    assert code == 0, err
    assert benches[0].is_safe()                     # the read-back found it, the second open did it
    assert run.status == "finished"
    tail = after_last_pulse(log)
    assert tail.count("E5250A: :ROUT:CLOS:CARD? 0") >= 2 and tail.count(f"E5250A: {OPEN_ALL}") >= 2
    text = Path(log).read_text()
    assert "(@)" in text.splitlines()[-1] or "'(@)'" in text


def test_a_matrix_that_never_opens_fails_the_run_and_the_cli_says_the_state_is_unknown(tmp_path, opened, capsys):
    benches, hooks = opened

    def never_open_after_connect(bench):
        matrix, real = bench.matrix, bench.matrix._execute

        def execute(command):
            return None if command == OPEN_ALL else real(command)

        matrix._execute = execute

    hooks.append(never_open_after_connect)
    code, log, run = run_ispp(tmp_path)
    err = capsys.readouterr().err
    assert code == 1, err
    assert run.status == "failed" and "still reports" in run.error
    assert "the bench state is UNKNOWN" in err and "outputs are at 0 V" not in err
    assert not benches[0].is_safe()


def test_errors_already_queued_at_connect_are_shown_and_recorded(tmp_path, opened, monkeypatch, capsys):
    real = VirtualBench.resource_manager

    def with_leftovers(self):
        self.analyzer.push_error(-222, "Data out of range")
        self.matrix.push_error(-113, "Undefined header")
        return real(self)

    monkeypatch.setattr(VirtualBench, "resource_manager", with_leftovers)
    csv = tmp_path / "ispp.csv"
    code, log, run = run_ispp(tmp_path, "--csv", str(csv))
    err = capsys.readouterr().err
    assert code == 0, err
    assert "note: the analyzer held an error from before this connection: -222 Data out of range" in err
    assert "note: the matrix held an error from before this connection: -113 Undefined header" in err
    assert run.backend_describe["stale_errors"] == {"analyzer": [[-222, "Data out of range"]],
                                                    "matrix": [[-113, "Undefined header"]]}
    provenance = [ln for ln in csv.read_text().splitlines() if ln.startswith("#")]
    assert any("Data out of range" in ln for ln in provenance)


def test_a_clean_connect_records_empty_queues(tmp_path, opened, capsys):
    code, log, run = run_ispp(tmp_path)
    assert code == 0
    assert run.backend_describe["stale_errors"] == {"analyzer": [], "matrix": []}
    assert "held an error" not in capsys.readouterr().err
