"""The command line's help says what each flag does here (issue 19, "Command line and API wording")."""

from __future__ import annotations

import argparse

import pytest

from rramlab.app.cli import build_parser
from rramlab.app.outputs import plural


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no line breaks inside the phrases looked for


def _help(*path: str) -> str:
    parser = build_parser(path[0])
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return " ".join(parser.format_help().split())


@pytest.mark.parametrize("command", ["infer", "power", "reproduce"])
def test_the_transfer_scheme_help_gives_this_commands_default(command):
    text = _help(command)
    assert "(default fast;" in text and "default half-bias" not in text and "Here the default" not in text


def test_transfer_keeps_its_own_default_scheme():
    assert "(default half-bias;" in _help("transfer")


def test_every_positional_and_visa_log_has_help():
    for path in (("bench", "check"), ("bench", "safe"), ("runs", "show"), ("runs", "export")):
        parser = build_parser(path[0])
        for name in path:
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = sub.choices[name]
        for action in parser._actions:
            if action.dest != "help":
                assert action.help, f"rramlab {' '.join(path)}: {action.dest} has no help"
    assert "log every VISA write and read" in _help("bench", "check")


def test_store_help_says_what_the_command_does_with_it():
    assert "run store (SQLite) to list the runs of" in _help("runs", "list")
    assert "run store (SQLite) to read the run from" in _help("runs", "show")
    assert "to record this run in" in _help("ispp")
    assert "a store of its own next to --json" in _help("reproduce")


def test_float_settings_are_not_shown_as_counts():
    text = _help("train")
    assert "--learning-rate X" in text and "--prune-ratio X" in text and "--epochs N" in text


def test_seed_means_the_same_everywhere():
    for command in ("ispp", "transfer", "ispva", "reproduce"):
        text = _help(command)
        assert "with device-to-device variability" in text and "exact device" in text, command


def test_plurals():
    assert plural(1, "distinct level") == "1 distinct level" and plural(3, "test image") == "3 test images"
    assert plural(0, "pulse") == "0 pulses"
