"""The command line starts at once: ``rramlab --help`` imports no protocol, numpy or pydantic, a
command's help comes from a cache that follows the code, and numpy's BLAS runs one thread unless
the user says otherwise. (Timings: benchmarks/cli_startup.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rramlab.app import help_cache
from rramlab.app.cli import COMMANDS, build_parser, limit_blas_threads, main

PROBE = """
import json, sys
sys.argv = ["rramlab", *json.loads(sys.argv[1])]
from rramlab.app.cli import main
try:
    main()
except SystemExit:
    pass
heavy = [m for m in ("numpy", "pydantic", "importlib.metadata", "rramlab.protocols.ispp", "PySpice")
         if m in sys.modules]
print("HEAVY", json.dumps(heavy))
"""


def _run_probe(args, env=None):
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    text, _, heavy = done.stdout.rpartition("HEAVY")
    return text, json.loads(heavy)


def test_top_level_help_lists_every_command_and_imports_no_numpy():
    out, heavy = _run_probe(["--help"], {**os.environ, "COLUMNS": "400"})  # no wrapping inside a line
    assert heavy == []
    listed = " ".join(out.split())
    for name, (_, text) in COMMANDS.items():
        assert f" {name} " in listed and " ".join(text.split()) in listed


def test_version_is_read_without_importlib_metadata():
    out, heavy = _run_probe(["--version"])
    from rramlab import __version__

    assert f"rramlab {__version__}" in out and heavy == []


def test_each_command_line_in_the_top_help_is_the_commands_own():
    full = build_parser()
    sub = next(a for a in full._actions if a.dest == "command")
    for action in sub._choices_actions:
        assert COMMANDS[action.dest][1] == action.help
    assert list(sub.choices) == list(COMMANDS)  # every command registered, none missing from COMMANDS


def test_command_help_is_served_from_the_cache_and_rebuilt_when_the_code_changes(tmp_path, monkeypatch):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    first, heavy = _run_probe(["ispp", "--help"], env)
    assert "--cell WL,BL" in first and "rramlab.protocols.ispp" in heavy  # built: the protocol was imported
    second, heavy = _run_probe(["ispp", "--help"], env)
    assert second == first and heavy == []  # from the cache: nothing heavy imported
    # an edit of any source file (here: a new module in a package folder) changes the key
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    stored = help_cache._cache_file(("ispp",))
    key = stored.read_text().partition("\n")[0]
    assert key == help_cache.help_key(("ispp",))
    stored.write_text("stale\nold text\n")
    third, heavy = _run_probe(["ispp", "--help"], env)
    assert third == first and "rramlab.protocols.ispp" in heavy
    stamp = help_cache.source_stamp()
    assert any(path.endswith(os.path.join("protocols", "ispp.py")) for path, _, _ in stamp)
    edited = [(path, size + 1, mtime) if path.endswith("ispp.py") else (path, size, mtime)
              for path, size, mtime in stamp]
    monkeypatch.setattr(help_cache, "source_stamp", lambda: edited)
    assert help_cache.help_key(("ispp",)) != key


def test_install_builds_every_commands_help_and_a_first_help_request_is_served_from_it(tmp_path, monkeypatch):
    """What install.sh runs (python -m rramlab.app.help_cache) stores the help of every command and
    action, the same text a help request builds; afterwards a command's very first help request
    imports nothing heavy."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "installed"))
    monkeypatch.setenv("COLUMNS", "100")
    count = help_cache.build_all()
    paths = [path for path, _ in help_cache.command_parsers(build_parser())]
    assert count == len(paths) and ("bench", "check") in paths and len(paths) > len(COMMANDS)
    assert all(help_cache._cache_file(path).is_file() for path in paths)
    env = {**os.environ, "COLUMNS": "100"}
    for args in (["infer", "--help"], ["bench", "check", "--help"]):
        served, heavy = _run_probe(args, {**env, "XDG_CACHE_HOME": str(tmp_path / "installed")})
        assert heavy == []
        built, heavy = _run_probe(args, {**env, "XDG_CACHE_HOME": str(tmp_path / "empty")})
        assert served == built                        # built afresh: the same text
        assert "numpy" in heavy or args[0] == "bench"  # (bench's help needs no protocol)
    monkeypatch.setenv("COLUMNS", "120")   # another terminal width: not served (argparse wraps there)
    assert not help_cache.print_cached_help(["infer", "--help"], COMMANDS)


def test_only_bare_help_requests_use_the_cache():
    assert help_cache.help_path(["ispp", "--help"], COMMANDS) == ("ispp",)
    assert help_cache.help_path(["bench", "check", "-h"], COMMANDS) == ("bench", "check")
    assert help_cache.help_path(["--help"], COMMANDS) is None
    assert help_cache.help_path(["ispp", "--cell", "3,7", "--help"], COMMANDS) is None
    assert help_cache.help_path(["nosuch", "--help"], COMMANDS) is None


def test_in_process_help_still_ends_like_argparse(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for _ in range(2):  # built, then cached
        with pytest.raises(SystemExit) as stop:
            main(["iv", "--help"])
        assert stop.value.code == 0
        assert "--set-peak V" in capsys.readouterr().out


@pytest.mark.parametrize("given, expected", [({}, "1"), ({"OPENBLAS_NUM_THREADS": "2"}, None),
                                             ({"OMP_NUM_THREADS": "4"}, None)])
def test_blas_threads_are_limited_unless_the_user_set_them(given, expected):
    env = dict(given)
    limit_blas_threads(env)
    if expected is None:
        assert env == given
    else:
        assert all(env[v] == expected for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"))


def test_the_console_entry_sets_the_blas_threads_before_numpy_loads():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    code = ("import sys; sys.argv = ['rramlab', 'runs', 'list']\n"
            "from rramlab.app.cli import main\nmain()\n"
            "from threadpoolctl import threadpool_info\n"
            "print('THREADS', max(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rsplit("THREADS", 1)[1].strip() == "1"

