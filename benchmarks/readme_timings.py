"""Wall and CPU time of the README's commands, on this machine, named: the README's timings come from here.

    python benchmarks/readme_timings.py            # the quick ones (under a minute)
    python benchmarks/readme_timings.py --all      # and ispva --devices 50 and reproduce (about 2 minutes more)

Each command runs once as its own process in a fresh folder with a run store of its own (the
README's commands, as a user types them); the line printed per command is its wall time, its CPU
time (user + system of the process and its children) and the load average when it ended, since a
shared machine makes the wall time what the neighbours leave.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RRAMLAB = [sys.executable, "-m", "rramlab"]
QUICK = [
    ("rramlab ispp --cycles 3 --csv ispp.csv", ["ispp", "--cycles", "3", "--csv", "ispp.csv", "--no-progress"]),
    ("rramlab train --out net.npz", ["train", "--out", "net.npz", "--no-progress"]),
    ("rramlab transfer ... --scheme half-bias", ["transfer", "examples/weights_24x10.npz", "--scheme", "half-bias",
                                                 "--no-progress"]),
    ("rramlab transfer ... --scheme fast", ["transfer", "examples/weights_24x10.npz", "--scheme", "fast",
                                            "--no-progress"]),
    ("rramlab infer --network net.npz --images 200", ["infer", "--network", "net.npz", "--images", "200",
                                                      "--no-progress"]),
]
SLOW = [
    ("rramlab ispva --devices 50", ["ispva", "--devices", "50", "--no-progress"]),
    ("rramlab reproduce --json r.json --report report/", ["reproduce", "--json", "r.json", "--report", "report",
                                                          "--no-progress"]),
    ("rramlab reproduce --no-sweep", ["reproduce", "--no-sweep", "--no-progress"]),
]


def machine() -> str:
    """'2-core machine, <CPU model>, Python x.y' for the README."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()}-core machine, {model}, Python {platform.python_version()}"


def run(args: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    before = os.times()
    t = time.perf_counter()
    done = subprocess.run(RRAMLAB + args, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = os.times()
    if done.returncode != 0:
        raise SystemExit(f"rramlab {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="also ispva --devices 50 and reproduce")
    opts = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in ("examples", "drivers"):
            (folder / name).symlink_to(ROOT / name)
        env = {**os.environ, "RRAMLAB_STORE": str(folder / "runs.sqlite"), "MPLBACKEND": "Agg",
               "XDG_CACHE_HOME": str(folder / "cache")}
        for title, args in QUICK + (SLOW if opts.all else []):
            wall, cpu = run(args, folder, env)
            print(f"  {title:50s} wall {wall:6.1f} s  CPU {cpu:6.1f} s  load {os.getloadavg()[0]:4.1f}", flush=True)


if __name__ == "__main__":
    main()
