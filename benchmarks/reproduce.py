"""Wall time and CPU time of ``rramlab reproduce`` with its sweeps, and the machine's load while it ran.

Run by hand:  .venv/bin/python benchmarks/reproduce.py [--full] [-- extra reproduce flags]

By default the spiking sweep's accuracy runs on 200 test images (``--split-images 200``, well under a
minute on 2 idle cores); ``--full`` runs the whole command as a user does (the 1,000-image split,
the figure the README quotes and the < 2 min target). Prints the wall time, the CPU time of the
reproduce process (user + system), the 1-minute load average before and after (other jobs on a
shared machine stretch the wall time, not the CPU time) and the time of each part from its JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the 1,000-image split (the default command)")
    parser.add_argument("extra", nargs="*", help="more reproduce flags (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        command = [sys.executable, "-m", "rramlab", "reproduce", "--json", str(out), *args.extra]
        if not args.full:
            command += ["--split-images", "200"]
        env = {**os.environ, "RRAMLAB_STORE": str(Path(tmp) / "runs.sqlite")}
        load_before = os.getloadavg()[0]
        t = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        load_after = os.getloadavg()[0]
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        summary = json.loads(out.read_text())
    cpu = usage.ru_utime + usage.ru_stime
    print(f"rramlab reproduce{' (full)' if args.full else ' --split-images 200'}: wall {wall:.1f} s, "
          f"CPU {cpu:.1f} s, load average {load_before:.1f} before / {load_after:.1f} after on "
          f"{os.cpu_count()} cores")
    print("  parts (wall s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["timings_s"].items()))


if __name__ == "__main__":
    main()
