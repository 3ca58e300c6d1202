"""Command-line flags built from a protocol's settings declaration (``rramlab.protocols.settings``).

A flag's type, default, help, unit and limits all come from the declaration, so ``rramlab X --help``
and the GUI's forms say the same thing and nothing is written twice.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the declarations import numpy; the CLI imports this module for every command line
    from rramlab.drivers.interface import SafeOperatingArea

_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def add_settings_flags(parser: argparse.ArgumentParser, settings_class, title: str | None = None,
                       limits: SafeOperatingArea | None = None, extra_help: dict[str, str] | None = None,
                       defaults: dict | None = None, skip: tuple[str, ...] = ()):
    """Add one flag per declared setting of ``settings_class`` to ``parser`` (in a group).

    The flag's destination is the field name; ``settings_from_args`` builds the instance back.
    ``limits``: the safe operating area whose windows the help quotes (default: the device's).
    ``extra_help``: more text for some fields, by field name (e.g. a rule of the bench).
    ``defaults``: this command's own default of some fields, by field name (the help quotes it).
    ``skip``: fields that get no flag here (the command sets them; ``settings_from_args`` with the same
    ``skip`` leaves them at their defaults).
    """
    from rramlab.protocols.settings import declared

    group = parser.add_argument_group(title or "settings (units and limits in each help)")
    taken = {a.dest for a in parser._actions}
    for d in declared(settings_class):
        if d.name in skip:
            continue
        if d.name in taken:
            # Two flags writing one destination would silently feed one setting from the other flag.
            raise ValueError(f"{settings_class.__name__}.{d.name} collides with another option of "
                             f"'{parser.prog}' that is stored as {d.name!r}: rename the field")
        bounds = d.describe_bounds(limits)
        unit = f" {d.spec.unit}" if d.spec.unit else ""
        default = (defaults or {}).get(d.name, d.default)
        text = f"{d.spec.help} (default {default:g}{unit}" if isinstance(default, float) \
            else f"{d.spec.help} (default {default}"
        text += f"; {bounds})" if bounds else ")"
        if extra_help and d.name in extra_help:
            text += " " + extra_help[d.name]
        kwargs = dict(dest=d.name, default=default, help=text.replace("%", "%%"))
        if d.spec.choices is not None:
            kwargs["choices"] = d.spec.choices
            kwargs["type"] = type(d.default)
        else:
            kwargs["type"] = d.type
            # N is a count; a unitless float (a ratio, a rate, a percentile) is an X
            kwargs["metavar"] = d.spec.unit.upper() if d.spec.unit else ("X" if d.type is float else "N")
        group.add_argument(d.flag, **kwargs)
    return group


def settings_from_args(settings_class, args: argparse.Namespace, skip: tuple[str, ...] = ()):
    """An instance of ``settings_class`` from the flags ``add_settings_flags`` added (``skip``: the
    fields it was told to skip, left at their defaults)."""
    from rramlab.protocols.settings import declared

    return settings_class(**{d.name: getattr(args, d.name) for d in declared(settings_class) if d.name not in skip})


def join_negative_values(argv: list[str]) -> list[str]:
    """``--flag -1e-3`` -> ``--flag=-1e-3``.

    argparse takes ``-1`` and ``-1.5`` as values on its own but reads ``-1e-3`` as an unknown option;
    joining a negative number to the option before it lets every negative voltage be given without
    ``=``.
    """
    out: list[str] = []
    for token in argv:
        if out and _NUMBER.match(token) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out
