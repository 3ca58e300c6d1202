"""What the stack's cell capacitances cost the ngspice engine: CPU seconds of the ngspice ISPP of
tests/test_ispp.py (a lone device, 3 cycles; ``--array``: also one cycle on cell (3, 7) of the
24 x 24 array, about a minute) with Cs = Ci = 0.1 fF (Table 1) and with the default (the stack's,
sim/device.py ARRAY_CELL_SIDE_M), and whether the read levels are the same.

CPU time (time.process_time, which counts ngspice's own thread: it runs in this process) rather
than wall time, so the figure does not move with the machine's load. Measured (load 12 on 2 cores):
lone device 1.10 s with 0.1 fF, 0.84 s with the stack's pF, the same reads; one 24 x 24 array pulse
(cell (3, 7), 2 us) 2.82 / 3.48 s at 3.0 / 3.3 V with 0.1 fF, 2.85 / 3.37 s with the stack's.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from rramlab.protocols.ispp import IsppSettings, run_ispp
from rramlab.sim.device import device_preset
from rramlab.sim.virtual_array import VirtualArray


def ispp_cpu(device, array: bool) -> tuple[float, np.ndarray]:
    """(CPU seconds, read currents A) of the spice ISPP: lone device 3 cycles, or array cell (3, 7) 1 cycle."""
    t = time.process_time()
    if array:
        with VirtualArray(engine="spice", device=device) as chip:
            reads = [r.read_a for r in run_ispp(chip, IsppSettings(cycles=1), cell=(3, 7))]
    else:
        with VirtualArray.lone_device(engine="spice", device=device) as chip:
            reads = [r.read_a for r in run_ispp(chip, IsppSettings(cycles=3))]
    return time.process_time() - t, np.array(reads)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", action="store_true", help="also the 24 x 24 array cell (about a minute)")
    args = ap.parse_args(argv)
    default = device_preset("measured")
    table1_c = dataclasses.replace(default, switching_c=0.1e-15, insulator_c=0.1e-15)
    for array in ([False, True] if args.array else [False]):
        what = "24 x 24 array, cell (3, 7), 1 cycle" if array else "lone device, 3 cycles"
        t_small, i_small = ispp_cpu(table1_c, array)
        t_stack, i_stack = ispp_cpu(default, array)
        print(f"{what}: CPU {t_small:.2f} s with 0.1 fF, {t_stack:.2f} s with the default "
              f"Cs {default.switching_c * 1e12:.3g} pF / Ci {default.insulator_c * 1e12:.3g} pF; "
              f"largest read difference {np.max(np.abs(i_stack - i_small)) * 1e9:.4f} nA of {len(i_small)} reads")


if __name__ == "__main__":
    main()
