"""`rramlab train` with numpy's default BLAS threads (before) and with rramlab's one thread (after).

    python benchmarks/blas_threads.py [--repeats 3] [--epochs 30]

Before: the training loop without rramlab's limit (threadpoolctl) and numpy loaded before the
command line could set OPENBLAS_NUM_THREADS, i.e. one BLAS thread per core, as before issue 19.
After: `rramlab train` as shipped. Each run is its own process, the two alternate, and the figure
is the median wall time (and CPU time) of ``--repeats`` runs. The gap depends on how busy the
machine is: BLAS threads that find their cores taken wait for each other.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

BEFORE = """
import sys
import numpy  # loaded before rramlab's entry point: OpenBLAS starts a thread per core
import rramlab.protocols.network as network
network.sgd_epochs = lambda *a, masks=None, on_epoch=None: network._sgd(*a, masks, on_epoch)  # no limit
from rramlab.app.cli import main
sys.exit(main(sys.argv[1:]))
"""
AFTER = "import sys\nfrom rramlab.app.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def timed(code: str, args: list[str], env: dict) -> tuple[float, float]:
    """(wall s, CPU s) of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"train failed: {proc.stderr.read().decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30, help="training epochs (default 30, train's default)")
    opts = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    results = {"before (BLAS threads = cores)": [], "after (rramlab: 1 BLAS thread)": []}
    with tempfile.TemporaryDirectory() as tmp:
        args = ["train", "--out", os.path.join(tmp, "net.npz"), "--force", "--no-progress", "--epochs",
                str(opts.epochs)]
        for _ in range(opts.repeats):
            for (name, runs), code in zip(results.items(), (BEFORE, AFTER)):
                runs.append(timed(code, args, env))
    load = os.getloadavg()[0]
    print(f"rramlab train --epochs {opts.epochs}: median of {opts.repeats} interleaved runs, {os.cpu_count()} cores, "
          f"load average {load:.1f} at the end")
    for name, runs in results.items():
        print(f"  {name:32s} wall {statistics.median(w for w, _ in runs):6.2f} s   "
              f"CPU {statistics.median(c for _, c in runs):6.2f} s   (walls: "
              + ", ".join(f"{w:.2f}" for w, _ in runs) + ")")


if __name__ == "__main__":
    main()
