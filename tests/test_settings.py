"""Settings declared once: bounds from the declaration and the safe operating area, flags from it."""

import argparse
from dataclasses import dataclass

import pytest

from rramlab.app.settings_flags import add_settings_flags, join_negative_values, settings_from_args
from rramlab.drivers.interface import RequestError, SafeOperatingArea, SafetyError
from rramlab.protocols.ispp import IsppSettings
from rramlab.protocols.settings import check_settings, declared, setting, settings_dict


@dataclass(frozen=True)
class Example:
    amplitude_v: float = setting(3.5, "set amplitude", "V", soa="set")
    count: int = setting(4, "repeats", minimum=1, maximum=10)
    step_v: float = setting(0.1, "step", "V", minimum=0.0, exclusive_minimum=True)
    shape: str = setting("rect", "shape", choices=("rect", "tri"))


def test_bounds_come_from_the_declaration_and_narrow_with_the_safe_operating_area():
    d = {x.name: x for x in declared(Example)}
    assert d["amplitude_v"].bounds() == (0.0, 4.3)
    assert d["amplitude_v"].bounds(SafeOperatingArea(max_set_voltage=3.0)) == (0.0, 3.0)
    assert d["count"].bounds() == (1, 10)
    assert d["step_v"].describe_bounds() == "> 0 V"
    assert d["shape"].describe_bounds() == "one of rect, tri"
    assert d["amplitude_v"].flag == "--amplitude-v"


@pytest.mark.parametrize("kwargs, error, message", [
    ({"amplitude_v": 4.4}, SafetyError, "--amplitude-v (amplitude_v) = 4.4 V is beyond the set limit"),
    ({"count": 0}, RequestError, "--count (count) = 0 is out of range: allowed 1 to 10"),
    ({"count": 2.5}, RequestError, "must be a whole number"),
    ({"count": True}, RequestError, "must be a whole number"),
    ({"step_v": 0.0}, RequestError, "allowed > 0 V"),
    ({"amplitude_v": float("nan")}, RequestError, "finite number"),
    ({"shape": "sine"}, RequestError, "use one of rect, tri"),
], ids=["over-set-limit", "below-minimum", "float-count", "bool-count", "exclusive-zero", "nan", "bad-choice"])
def test_check_settings_names_the_setting_the_value_and_the_limit(kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_settings(Example(**kwargs))


def test_a_narrower_instrument_tightens_the_check():
    check_settings(Example(amplitude_v=3.5))
    with pytest.raises(SafetyError, match="allowed 0 to 3 V"):
        check_settings(Example(amplitude_v=3.5), SafeOperatingArea(max_set_voltage=3.0))


def test_flags_round_trip_and_negative_values_need_no_equals_sign():
    parser = argparse.ArgumentParser()
    add_settings_flags(parser, IsppSettings)
    args = parser.parse_args(join_negative_values(["--reset-start", "-1.2", "--reset-stop", "-1.3e0",
                                                   "--width", "1e-6", "--cycles", "2", "--shape", "tri"]))
    s = settings_from_args(IsppSettings, args)
    assert (s.reset_start_v, s.reset_stop_v, s.pulse_width_s, s.cycles, s.shape) == (-1.2, -1.3, 1e-6, 2, "tri")
    assert settings_dict(s)["set_stop_v"] == 4.2
    help_text = " ".join(parser.format_help().split())
    assert "0 to 4.3 V" in help_text and "-2.5 to 0 V" in help_text  # the limits, from the safe operating area


def test_every_ispp_setting_has_a_declaration_with_help():
    names = {d.name for d in declared(IsppSettings)}
    assert names == set(IsppSettings.__dataclass_fields__)
    assert all(d.spec.help for d in declared(IsppSettings))


def test_a_setting_that_would_share_a_destination_with_another_flag_is_refused():
    parser = argparse.ArgumentParser(prog="demo")
    parser.add_argument("--count", type=int)
    with pytest.raises(ValueError, match="Example.count collides"):
        add_settings_flags(parser, Example)


def test_every_command_builds_its_parser():
    from rramlab.app.cli import build_parser

    build_parser()  # raises on a colliding destination in any subcommand
