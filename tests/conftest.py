"""Fixtures shared by the test modules. Every test records its runs in a store of its own, never
in the user's data folder. The driver tests' helper classes live in ``drivers_fixtures.py`` (plain
importable code); the fixtures that build them are here."""

from __future__ import annotations

import signal

import pytest

from drivers_fixtures import Recorder, sim_bench_data, sim_station


def pytest_configure(config):
    """The stop tests send Ctrl-C and SIGHUP and expect a run to stop. A suite started in the
    background or under nohup inherits both as ignored, and so would every child it starts (an
    ignored signal stays ignored across exec), which rramlab rightly honours: restore the defaults
    so those tests see what a terminal user's run sees."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _private_run_store(tmp_path, monkeypatch):
    monkeypatch.setenv("RRAMLAB_STORE", str(tmp_path / "runs.sqlite"))


@pytest.fixture
def recorder():
    """Every VISA message of a station built with it, as (instrument, direction, text)."""
    return Recorder()


@pytest.fixture
def station(recorder):
    """A ProbeStation on the shipped pyvisa-sim bench, initialised; the recorder starts empty."""
    st = sim_station(recorder=recorder)
    yield st
    st.close()


@pytest.fixture
def bench_data():
    """The shipped sim bench as a dict (parsed TOML), ready to change and write back."""
    return sim_bench_data()
