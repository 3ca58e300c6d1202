"""Wall time and CPU time of ``rramlab reproduce`` with its sweeps, and the machine's load while it ran.

Run by hand:  .venv/bin/python benchmarks/reproduce.py [--full] [--against DIR [--repeat N]] [-- extra flags]

By default the spiking sweep's accuracy runs on 200 test images (``--split-images 200``, well under a
minute on 2 idle cores); ``--full`` runs the whole command as a user does (the 1,000-image split,
the figure the README quotes and the < 30 s target). Prints the wall time, the CPU time of the
reproduce process (user + system), the 1-minute load average before and after (other jobs on a
shared machine stretch the wall time, not the CPU time) and the time of each part from its JSON.

``--against DIR``: DIR is another checkout of the repository (e.g. ``git worktree add /tmp/old main``
or ``git archive main | tar -x -C /tmp/old``); its reproduce and this tree's run alternately,
``--repeat`` times each (old, new, old, new, ...), each printed with its load, then the medians,
and the two JSON documents are compared key by key (every number within ``--rtol``, timings and
provenance aside): a speed-up must not change what reproduce reports.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
#: keys of the JSON that are expected to differ between two runs
VOLATILE = {"timings_s", "wall_time_s", "provenance", "store"}
#: the package layout of pyproject.toml: import name -> folder of the checkout
PACKAGE_DIRS = {"rramlab": "rramlab", "rramlab/app": "app", "rramlab/drivers": "drivers", "rramlab/sim": "sim",
                "rramlab/protocols": "protocols"}


def package_root(checkout: Path, into: Path) -> Path:
    """A folder that imports ``rramlab`` from ``checkout`` (pyproject's package-dir layout, by symlinks):
    put it first on PYTHONPATH to run another checkout with this environment's libraries."""
    top = into / "rramlab"
    top.mkdir(parents=True)
    for f in (checkout / "rramlab").iterdir():
        (top / f.name).symlink_to(f)
    for name, folder in PACKAGE_DIRS.items():
        if name != "rramlab":
            (into / name).symlink_to(checkout / folder)
    return into


def run_once(tmp: Path, tag: str, extra: list[str], pythonpath: Path | None = None) -> dict:
    """One reproduce process: its wall time, CPU time (user + system), loads, and its JSON document."""
    out = tmp / f"{tag}.json"
    for p in (out, tmp / f"{tag}.runs.sqlite"):
        p.unlink(missing_ok=True)
    command = [sys.executable, "-m", "rramlab", "reproduce", "--json", str(out), "--no-progress", *extra]
    env = {**os.environ, "RRAMLAB_STORE": str(tmp / f"{tag}.sqlite")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath) + os.pathsep + env.get("PYTHONPATH", "")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=tmp)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "load_before": load_before, "load_after": os.getloadavg()[0],
            "summary": json.loads(out.read_text())}


def differences(a, b, rtol: float, path: str = "") -> list[str]:
    """Where two JSON documents differ (keys, types, strings, numbers beyond rtol relative)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in one" for k in sorted(set(a) ^ set(b), key=str) if k not in VOLATILE]
        for k in a:
            if k in b and k not in VOLATILE:
                out += differences(a[k], b[k], rtol, f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items against {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, rtol, f"{path}[{i}]")]
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) \
            or not isinstance(b, (int, float)):
        return [] if a == b else [f"{path}: {a!r} against {b!r}"]
    if math.isnan(a) and math.isnan(b):
        return []
    return [] if abs(a - b) <= rtol * max(abs(a), abs(b)) else [f"{path}: {a!r} against {b!r}"]


def line(tag: str, r: dict) -> str:
    return (f"  {tag:4s} wall {r['wall']:6.1f} s, CPU {r['cpu']:6.1f} s, load average {r['load_before']:.1f} before / "
            f"{r['load_after']:.1f} after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the 1,000-image split (the default command)")
    parser.add_argument("--against", metavar="DIR", help="another checkout to time alternately with this one")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (with --against)")
    parser.add_argument("--rtol", type=float, default=1e-12, help="relative tolerance of the JSON comparison")
    parser.add_argument("extra", nargs="*", help="more reproduce flags (after --)")
    args = parser.parse_args()
    extra = list(args.extra) + ([] if args.full else ["--split-images", "200"])
    what = "rramlab reproduce" + (" (full)" if args.full else " --split-images 200")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.against:
            r = run_once(tmp, "new", extra)
            print(f"{what}: wall {r['wall']:.1f} s, CPU {r['cpu']:.1f} s, load average {r['load_before']:.1f} before / "
                  f"{r['load_after']:.1f} after on {os.cpu_count()} cores")
            print("  parts (wall s): " + ", ".join(f"{k} {v:.1f}" for k, v in r["summary"]["timings_s"].items()))
            return
        old_path = package_root(Path(args.against).resolve(), tmp / "old-package")
        print(f"{what}: {args.against} (old) and {HERE} (new) alternately, {args.repeat} each, "
              f"{os.cpu_count()} cores")
        runs = {"old": [], "new": []}
        for _ in range(args.repeat):
            for tag in ("old", "new"):
                r = run_once(tmp, tag, extra, old_path if tag == "old" else None)
                runs[tag].append(r)
                print(line(tag, r), flush=True)
        for tag in ("old", "new"):
            rs = runs[tag]
            print(f"  {tag} median: wall {statistics.median(r['wall'] for r in rs):.1f} s, CPU "
                  f"{statistics.median(r['cpu'] for r in rs):.1f} s; parts (wall s) of the last: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in rs[-1]["summary"]["timings_s"].items()))
        cpu_old = statistics.median(r["cpu"] for r in runs["old"])
        cpu_new = statistics.median(r["cpu"] for r in runs["new"])
        print(f"  CPU time new / old: {cpu_new / cpu_old:.2f}")
        diff = differences(runs["old"][-1]["summary"], runs["new"][-1]["summary"], args.rtol)
        print(f"  JSON old against new (rtol {args.rtol:g}, without {', '.join(sorted(VOLATILE))}): "
              + ("the same" if not diff else f"{len(diff)} differences"))
        for d in diff[:40]:
            print(f"    {d}")


if __name__ == "__main__":
    main()
