"""The crossbar netlist: a device at every crosspoint, wire resistance along every line, contacts.

Layout (wordline w, bitline b, both counted from 0)::

    Vwl_w -- Rcontact -- (w,0) -Rwire- (w,1) -Rwire- ... (w,B-1)          wordline w (top electrodes)
                           |             |                 |
                         cell          cell              cell
                           |             |                 |
    bitline b: (0,b) -Rwire- (1,b) -Rwire- ... (W-1,b) -- Rcontact -- Vbl_b (0 V sense source on reads)

Wordlines are driven from their first cell's side, bitlines leave after the last wordline, so the
cell farthest from both drivers is (0, B-1), the worst case for IR drop.
A wire segment sits between every pair of neighbouring cells on a line; a contact resistance (probe
needle and pad) sits between each line and its source. A zero resistance merges the nodes.

Each bitline ends in a voltage source; its branch current is the bitline current (positive when
current flows out of the array into the source, as a sense amplifier at 0 V sees it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rramlab.drivers.interface import RequestError
from rramlab.sim.device import DeviceParameters, _num, device_netlist, switch_model_lines


#: Largest wire resistance per segment (ohm) the twin accepts. A Pt or Au line of one cell pitch is
#: a few ohm; even 1 kohm per segment (24 kohm along a line) is a broken or badly thinned line.
#: Beyond it the lines, not the devices, set the currents (a whole line approaches an LRS device's
#: ~12 Mohm only near 1e5 ohm per segment) and the array solve loses its meaning and its conditioning.
MAX_WIRE_RESISTANCE = 1e3
#: Largest contact resistance (ohm): a probe needle on a pad is ohms to about a kohm when it scrubs
#: badly; 100 kohm means the needle is not touching the pad.
MAX_CONTACT_RESISTANCE = 1e5


@dataclass(frozen=True)
class ArrayParameters:
    """Parasitics of the array (ohm).

    wire_resistance: one line segment between neighbouring cells, on wordlines and bitlines alike.
        Not given in the paper; 2 ohm is a thin-film Pt line of about one cell pitch. At most
        MAX_WIRE_RESISTANCE.
    contact_resistance: probe needle and pad, between each line and its source. At most
        MAX_CONTACT_RESISTANCE.
    """

    wire_resistance: float = 2.0
    contact_resistance: float = 10.0

    def __post_init__(self):
        for name, top, why in (("wire_resistance", MAX_WIRE_RESISTANCE,
                                "a line segment of one cell pitch is a few ohm; beyond this the lines, "
                                "not the devices, would set every current"),
                               ("contact_resistance", MAX_CONTACT_RESISTANCE,
                                "a probe needle on its pad is ohms to a kohm; beyond this it is not touching")):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v)
                                           and v >= 0):
                raise ArrayParameterError(f"{name} must be a finite resistance >= 0 ohm, got {v!r}")
            if v > top:
                raise ArrayParameterError(f"{name} {v:g} ohm is beyond the twin's limit of {top:g} ohm: {why}")


class ArrayParameterError(RequestError):
    """A wire or contact resistance outside the range the twin models."""


class ArrayNodes:
    """Node names of the array netlist (zero resistances merge nodes)."""

    def __init__(self, wordlines: int, bitlines: int, array: ArrayParameters):
        self.W, self.B, self.array = wordlines, bitlines, array

    def wl(self, w: int, b: int) -> str:
        return f"w{w}_{b}" if self.array.wire_resistance > 0 else f"w{w}_0"

    def bl(self, w: int, b: int) -> str:
        return f"b{b}_{w}" if self.array.wire_resistance > 0 else f"b{b}_{self.W - 1}"

    def wl_driver(self, w: int) -> str:
        return f"wd{w}" if self.array.contact_resistance > 0 else self.wl(w, 0)

    def bl_driver(self, b: int) -> str:
        return f"bd{b}" if self.array.contact_resistance > 0 else self.bl(self.W - 1, b)


def wordline_source(w: int) -> str:
    return f"vwl{w}"


def bitline_source(b: int) -> str:
    return f"vbl{b}"


def array_netlist(device: DeviceParameters, array: ArrayParameters, switch_states: np.ndarray,
                  conductance_offset: np.ndarray, wordline_sources: list[str], bitline_sources: list[str],
                  cell_switches: np.ndarray | None = None, insulator_r0: np.ndarray | None = None) -> list[str]:
    """Netlist lines of the whole array, without analysis cards.

    switch_states: (W, B, n) bool, the initial state of every switch.
    conductance_offset: (W, B) siemens, programming error per cell.
    wordline_sources, bitline_sources: the value part of each line's source, e.g. ``"DC 1.0"`` or
        ``"PWL(...)"``, one per line.
    cell_switches: optional (W, B, n, 3) array of (turn_on_v, turn_off_v, on_resistance) per
        switch when devices differ (device-to-device variability); None means all cells are ``device``.
    """
    W, B, n = switch_states.shape
    nodes = ArrayNodes(W, B, array)
    lines: list[str] = []
    if cell_switches is None:
        lines += switch_model_lines(device, "sw")
    for w in range(W):
        lines.append(f"V{wordline_source(w)[1:]} {nodes.wl_driver(w)} 0 {wordline_sources[w]}")
        if array.contact_resistance > 0:
            lines.append(f"Rcw{w} {nodes.wl_driver(w)} {nodes.wl(w, 0)} {_num(array.contact_resistance)}")
        if array.wire_resistance > 0:
            for b in range(B - 1):
                lines.append(f"Rw{w}_{b} {nodes.wl(w, b)} {nodes.wl(w, b + 1)} {_num(array.wire_resistance)}")
    for b in range(B):
        lines.append(f"V{bitline_source(b)[1:]} {nodes.bl_driver(b)} 0 {bitline_sources[b]}")
        if array.contact_resistance > 0:
            lines.append(f"Rcb{b} {nodes.bl(W - 1, b)} {nodes.bl_driver(b)} {_num(array.contact_resistance)}")
        if array.wire_resistance > 0:
            for w in range(W - 1):
                lines.append(f"Rb{b}_{w} {nodes.bl(w, b)} {nodes.bl(w + 1, b)} {_num(array.wire_resistance)}")
    for w in range(W):
        for b in range(B):
            prefix = "sw"
            if cell_switches is not None:
                prefix = f"sw{w}_{b}"
                lines += _cell_models(prefix, cell_switches[w, b], device)
            lines += device_netlist(device, f"x{w}_{b}", nodes.wl(w, b), nodes.bl(w, b), switch_states[w, b],
                                    prefix, float(conductance_offset[w, b]),
                                    None if insulator_r0 is None else float(insulator_r0[w, b]))
    return lines


def _cell_models(prefix: str, switches: np.ndarray, device: DeviceParameters) -> list[str]:
    out = []
    for k, (von, voff, ron) in enumerate(switches):
        vt, vh = (von + voff) / 2.0, (von - voff) / 2.0
        roff = device.switches[k].off_resistance
        out.append(f".model {prefix}_{k} SW(VT={_num(vt)} VH={_num(vh)} RON={_num(ron)} ROFF={_num(roff)})")
    return out
