"""Protocol settings, declared once.

Every protocol declares its settings as a frozen dataclass whose fields are made with ``setting``:
the default, the unit, the help text and the limits live on the field. The command line builds its
flags from the declaration (``rramlab.app.settings_flags``), the GUI builds its forms from it, the run
store records ``settings_dict`` of it, and ``check_settings`` validates an instance against a safe
operating area before anything is planned. Nothing about a setting is written twice.

Limits come from two places:

* ``minimum`` / ``maximum``: fixed bounds of the protocol itself (e.g. at least 1 cycle);
* ``soa``: the name of a ``SafeOperatingArea.window`` ("set", "reset", "read", "width"), for
  voltages and pulse widths, so the bound is the instrument's own and narrows with it.

Units are SI ("V", "s", "S", "A"); "" for counts and choices.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

from rramlab.drivers.interface import RequestError, SafeOperatingArea, SafetyError

_KEY = "rramlab.setting"
_WINDOW_NAMES = {"set": "set", "reset": "reset", "read": "read", "width": "pulse width"}


@dataclass(frozen=True)
class Setting:
    """What a settings field declares besides its default. See ``setting``."""

    help: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    soa: str | None = None
    choices: tuple | None = None
    flag: str | None = None
    exclusive_minimum: bool = False


@dataclass(frozen=True)
class DeclaredSetting:
    """One field of a settings class with its declaration: what forms and flags are built from."""

    name: str
    default: Any
    type: type
    spec: Setting

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--set-start`` for ``set_start_v``."""
        return "--" + (self.spec.flag or self.name).replace("_", "-")

    def bounds(self, limits: SafeOperatingArea | None = None) -> tuple[float | None, float | None]:
        """(low, high) in force for this setting under ``limits`` (None: unbounded on that side)."""
        lo, hi = self.spec.minimum, self.spec.maximum
        if self.spec.soa is not None:
            slo, shi = (limits or SafeOperatingArea()).window(self.spec.soa)
            lo = slo if lo is None else max(lo, slo)
            hi = shi if hi is None else min(hi, shi)
        return lo, hi

    def describe_bounds(self, limits: SafeOperatingArea | None = None) -> str:
        """The bounds as a user reads them, e.g. "0 to 4.3 V" or ">= 1"."""
        lo, hi = self.bounds(limits)
        unit = f" {self.spec.unit}" if self.spec.unit else ""
        if self.spec.choices:
            return "one of " + ", ".join(str(c) for c in self.spec.choices)
        if lo is not None and hi is not None:
            if self.spec.exclusive_minimum:
                return f"above {lo:g}, up to {hi:g}{unit}"
            return f"{lo:g} to {hi:g}{unit}"
        if lo is not None:
            return f"{'>' if self.spec.exclusive_minimum else '>='} {lo:g}{unit}"
        if hi is not None:
            return f"<= {hi:g}{unit}"
        return ""


def setting(default, help: str, unit: str = "", *, minimum=None, maximum=None, soa: str | None = None,
            choices=None, flag: str | None = None, exclusive_minimum: bool = False):
    """A dataclass field that declares one protocol setting.

    ``help`` says what it is (the unit and limits are added wherever it is shown); ``soa`` names the
    ``SafeOperatingArea.window`` that bounds it; ``flag`` overrides the command-line flag name
    (default: the field name with dashes).
    """
    if soa is not None and soa not in SafeOperatingArea.WINDOWS:
        raise ValueError(f"soa={soa!r}: use one of {SafeOperatingArea.WINDOWS}")
    spec = Setting(help=help, unit=unit, minimum=minimum, maximum=maximum, soa=soa,
                   choices=tuple(choices) if choices is not None else None, flag=flag,
                   exclusive_minimum=exclusive_minimum)
    return field(default=default, metadata={_KEY: spec})


def declared(settings_class) -> list[DeclaredSetting]:
    """The declared settings of a settings class (or instance), in declaration order."""
    out = []
    for f in dataclasses.fields(settings_class):
        spec = f.metadata.get(_KEY)
        if spec is None:
            continue
        out.append(DeclaredSetting(name=f.name, default=f.default, type=type(f.default), spec=spec))
    return out


def check_settings(settings, limits: SafeOperatingArea | None = None) -> None:
    """Check every declared setting's type and bounds; raise RequestError (or SafetyError for a
    safe-operating-area bound) naming the setting, its flag, the value, the limit and the unit."""
    for d in declared(settings):
        value = getattr(settings, d.name)
        where = f"{d.flag} ({d.name})"
        if d.spec.choices is not None:
            if value not in d.spec.choices:
                raise RequestError(f"{where} is {value!r}: use one of {', '.join(map(str, d.spec.choices))}")
            continue
        if d.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise RequestError(f"{where} must be a whole number, got {value!r}")
        elif d.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RequestError(f"{where} must be a finite number, got {value!r}")
        lo, hi = d.bounds(limits)
        unit = f" {d.spec.unit}" if d.spec.unit else ""
        error = SafetyError if d.spec.soa is not None else RequestError
        too_low = lo is not None and (value <= lo if d.spec.exclusive_minimum else value < lo)
        if too_low or (hi is not None and value > hi):
            if d.spec.soa is not None:
                raise error(f"{where} = {value:g}{unit} is beyond the {_WINDOW_NAMES[d.spec.soa]} limit of the "
                            f"safe operating area: allowed {d.describe_bounds(limits)}")
            raise error(f"{where} = {value:g}{unit} is out of range: allowed {d.describe_bounds(limits)}")


def settings_dict(settings) -> dict:
    """The settings as plain values, for run records and JSON."""
    return dataclasses.asdict(settings)


def iter_settings(settings) -> Iterator[tuple[DeclaredSetting, Any]]:
    """(declaration, value) for each declared setting of an instance: for summaries and forms."""
    for d in declared(settings):
        yield d, getattr(settings, d.name)
