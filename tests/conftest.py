"""Every test records its runs in a store of its own, never in the user's data folder."""

import pytest


@pytest.fixture(autouse=True)
def _private_run_store(tmp_path, monkeypatch):
    monkeypatch.setenv("RRAMLAB_STORE", str(tmp_path / "runs.sqlite"))
