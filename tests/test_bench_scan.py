"""rramlab bench scan: the VISA resources, their *IDN? answers and the bench-file lines (pyvisa-sim)."""

from __future__ import annotations

from rramlab.app.bench_scan import Found, bench_lines, scan
from rramlab.app.cli import main


def test_scan_finds_the_simulated_4156c_and_e5250a_and_suggests_their_lines(capsys):
    assert main(["bench", "scan", "--backend", "@sim:default"]) == 0
    out = capsys.readouterr().out
    assert "GPIB0::17::INSTR  HEWLETT-PACKARD,4156C" in out and "GPIB0::22::INSTR  HEWLETT-PACKARD,E5250A" in out
    lines = [line.strip() for line in out.splitlines()]
    at = lines.index("[analyzer]")
    assert lines[at + 1] == 'resource = "GPIB0::17::INSTR"'
    at = lines.index("[matrix]")
    assert lines[at + 1] == 'resource = "GPIB0::22::INSTR"'
    assert 'visa_library = "@sim:default"' in lines


def test_scan_lists_instruments_that_do_not_answer_and_says_what_is_missing(capsys):
    library, found = scan("@sim", timeout_s=0.05)
    by_name = {f.resource: f for f in found}
    assert by_name["ASRL1::INSTR"].idn is None and "no answer to *IDN?" in by_name["ASRL1::INSTR"].problem
    assert by_name["GPIB0::9::INSTR"].idn == "SCPI,MOCK,VERSION_1.0" and by_name["GPIB0::9::INSTR"].model is None
    only_analyzer = [Found("GPIB0::17::INSTR", "Agilent Technologies,4156C,0,03.10"), Found("GPIB0::3::INSTR", None)]
    assert bench_lines("@py", only_analyzer) == ["[bench]", 'visa_library = "@py"', "[analyzer]",
                                                 'resource = "GPIB0::17::INSTR"']


def test_a_visa_library_that_cannot_load_is_one_line(capsys):
    assert main(["bench", "scan", "--backend", "@nosuchbackend"]) == 1
    err = capsys.readouterr().err
    assert "cannot load the VISA library '@nosuchbackend'" in err and "docs/bench.md" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
