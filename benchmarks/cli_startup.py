"""CPU time of ``rramlab --help`` and ``rramlab COMMAND --help`` against ``python -c pass``.

    python benchmarks/cli_startup.py [--repeats 5]

Each command runs as its own process (``python -m rramlab ...``, as the console script does),
interleaved with the floor, ``--repeats`` times; the CPU time is the child's user + system time
(``os.wait4``), the figure is the median. ``COMMAND --help`` is measured three ways: with an empty
help cache (the first call after an edit of the code, or after an install without install.sh: the
text is built), warm (every later call), and as the first call after ``install.sh`` (which runs
``python -m rramlab.app.help_cache``: every command's help built once; its CPU time is printed too).
Issue 21 asks for every figure a user meets after installing within 3x of the floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

FLOOR = ["-c", "pass"]
#: what install.sh runs after installing
BUILD = ["-m", "rramlab.app.help_cache"]
CASES = {
    "rramlab --help": ["-m", "rramlab", "--help"],
    "rramlab ispp --help": ["-m", "rramlab", "ispp", "--help"],
    "rramlab infer --help": ["-m", "rramlab", "infer", "--help"],
    "rramlab bench check --help": ["-m", "rramlab", "bench", "check", "--help"],
}


def cpu_time(args: list[str], env: dict) -> float:
    """User + system CPU seconds of ``python args`` (its output discarded)."""
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"python {' '.join(args)} exited {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def empty(cache: str) -> None:
    """Remove every cached help text: the next help request builds its text."""
    folder = os.path.join(cache, "rramlab")
    for entry in os.scandir(folder) if os.path.isdir(folder) else ():
        os.remove(entry.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    opts = ap.parse_args()
    times: dict[str, list[float]] = {"python -c pass": []}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        for _ in range(opts.repeats):
            for name, args in CASES.items():
                if name != "rramlab --help":
                    empty(cache)
                    times.setdefault(f"{name} (cold cache)", []).append(cpu_time(args, env))
                times.setdefault(name, []).append(cpu_time(args, env))
                times["python -c pass"].append(cpu_time(FLOOR, env))
            # what install.sh leaves: every command's help built once, then each command's first call
            empty(cache)
            times.setdefault("install.sh's help build (all commands)", []).append(cpu_time(BUILD, env))
            for name, args in CASES.items():
                if name != "rramlab --help":
                    times.setdefault(f"{name} (first call after install.sh)", []).append(cpu_time(args, env))
    floor = statistics.median(times["python -c pass"])
    print(f"CPU time, median of {opts.repeats} (interleaved), {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}")
    for name, ts in times.items():
        print(f"  {name:58s} {statistics.median(ts) * 1e3:7.1f} ms  {statistics.median(ts) / floor:5.1f}x floor")


if __name__ == "__main__":
    main()
