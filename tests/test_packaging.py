"""The distribution adds exactly one top-level import name, ``rramlab``, and works from outside
the checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import rramlab

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation and no dependencies: this builds rramlab itself from the checkout with the
    # setuptools already in the environment, so the test needs no network.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(REPO)], check=True, capture_output=True, cwd=out)
    (whl,) = out.glob("rramlab-*.whl")
    return whl


def test_the_wheel_adds_only_the_rramlab_import_name(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        top_level = zf.read(next(n for n in names if n.endswith(".dist-info/top_level.txt"))).decode().split()
    roots = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert roots == {"rramlab"}
    assert top_level == ["rramlab"]
    for sub in ("app/cli.py", "drivers/interface.py", "drivers/keysight_sim.yaml", "drivers/benches/sim.toml",
                "sim/virtual_array.py", "protocols/ispp.py"):
        assert f"rramlab/{sub}" in names


def test_installed_distribution_declares_one_top_level_name():
    from importlib.metadata import distribution

    assert distribution("rramlab").read_text("top_level.txt").split() == ["rramlab"]


def test_imports_work_from_outside_the_checkout(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import rramlab.sim.virtual_array, rramlab; print(rramlab.__version__)"],
                          cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == rramlab.__version__ != "0+unknown"


def test_version_flag_prints_the_version(capsys):
    from rramlab.app.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"rramlab {rramlab.__version__}"
