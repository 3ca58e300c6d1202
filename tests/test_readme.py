"""The README as a script: its shell blocks, run in order in a fresh folder, all succeed.

A shell block is an indented code block whose first line is a command (``.venv/bin/...``,
``rramlab ...``, ``bash ...``, or a ``$ `` transcript, whose ``$`` lines alone are run). A block
that needs what a test cannot have (root for apt-get, a display, a Ctrl-C part-way, minutes of
benchmarks) says so in an HTML comment just above it, ``<!-- readme-test: skip (why) -->``; every
other block runs, with the repository's ``.venv``, ``examples/`` and ``drivers/`` linked into the
folder and a run store of its own. This is the slowest test of the suite (it runs ``rramlab
reproduce`` and the README's ispva of 400 devices); it prints each block's time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"^(\.venv/bin/|rramlab |bash |\$ )")
SKIP = re.compile(r"^<!-- readme-test: skip \((.+)\) -->$")
#: what may keep a block from running here
ALLOWED_REASONS = ("root", "needs a display", "needs a Ctrl-C", "benchmarks", "needs other machines")


def readme_blocks(text: str) -> list[dict]:
    """Every shell block: its first line number, its commands, and the skip reason (or None)."""
    lines = text.split("\n")
    blocks, i = [], 0
    while i < len(lines):
        starts = lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip())
        if not starts:
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].startswith("    "):
            j += 1
        body = [line[4:] for line in lines[i:j]]
        if COMMAND.match(body[0]):
            if body[0].startswith("$ "):
                body = [line[2:] for line in body if line.startswith("$ ")]
            before = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            marker = SKIP.match(before)
            blocks.append({"line": i + 1, "commands": body, "skip": marker.group(1) if marker else None})
        i = j
    return blocks


def test_the_readme_blocks_are_found_and_every_skip_says_why():
    blocks = readme_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 15
    for b in blocks:
        if b["skip"] is not None:
            assert b["skip"].startswith(ALLOWED_REASONS), b
    run = [b for b in blocks if b["skip"] is None]
    assert len(run) >= 10
    commands = [c for b in run for c in b["commands"]]
    assert any(c.startswith(".venv/bin/rramlab reproduce") for c in commands)
    assert not any("rramlab gui" in c or "install.sh" in c for c in commands)  # no display, no root here


def test_the_readme_commands_run_in_order_in_a_fresh_folder(tmp_path):
    folder = tmp_path / "fresh"
    folder.mkdir()
    venv = Path(sys.executable).parent.parent
    (folder / ".venv").symlink_to(venv)
    for name in ("examples", "drivers"):
        (folder / name).symlink_to(ROOT / name)
    env = {**os.environ, "RRAMLAB_STORE": str(tmp_path / "store" / "runs.sqlite"), "MPLBACKEND": "Agg",
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DISPLAY", None)
    times = []
    for block in readme_blocks((ROOT / "README.md").read_text()):
        if block["skip"] is not None:
            continue
        script = "set -euo pipefail\n" + "\n".join(block["commands"]) + "\n"
        t = time.perf_counter()
        done = subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=900)
        times.append((block["line"], time.perf_counter() - t))
        if done.returncode != 0:
            pytest.fail(f"README block at line {block['line']} exited {done.returncode}:\n{script}\n"
                        f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}")
        assert "Traceback" not in done.stderr, done.stderr
    print("README blocks (line: seconds): " + ", ".join(f"{line}: {s:.1f}" for line, s in times)
          + f"; all {sum(s for _, s in times):.1f} s")
    assert (folder / "r.json").exists() and (folder / "r.runs.sqlite").exists() and (folder / "net.npz").exists()
