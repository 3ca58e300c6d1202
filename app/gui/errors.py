"""Every error the window shows, as what happened and what to do (no Qt here)."""

from __future__ import annotations

from rramlab.drivers.interface import GeometryError, InstrumentError, RequestError, RramlabError, SafetyError


def explain(exc: BaseException) -> tuple[str, str]:
    """(title, text) for a message box: the error's own message plus the next step for the user."""
    from rramlab.drivers.probe_station import BenchError

    message = str(exc) or exc.__class__.__name__
    if isinstance(exc, BenchError):
        return "Bad bench file", f"{message}\n\nFix the bench file (see docs/bench.md) and press Connect again."
    if isinstance(exc, SafetyError):
        return "Outside the safe operating area", (
            f"{message}\n\nNothing was sent to the instrument. Change the value and run again.")
    if isinstance(exc, GeometryError):
        return "Not in the array", f"{message}\n\nChoose a cell inside the array and run again."
    if isinstance(exc, InstrumentError) or _is_visa_error(exc):
        return "Instrument error", (
            f"{message}\n\nThe outputs were set to 0 V and the matrix opened where the instrument still "
            "answered. Check that both instruments are on and cabled and that the bench file names their "
            "VISA resources (rramlab bench check FILE), then connect again.")
    if isinstance(exc, RequestError):
        return "Request refused", f"{message}\n\nNothing was sent to the instrument. Change the setting and run again."
    if isinstance(exc, FileNotFoundError):
        return "File not found", f"{message}\n\nChoose an existing file."
    if isinstance(exc, (OSError, ValueError)) and not isinstance(exc, RramlabError):
        return "Cannot use this input", f"{message}\n\nCheck the file or value and try again."
    if isinstance(exc, RramlabError):
        return "rramlab error", message
    return "Unexpected error", (
        f"{exc.__class__.__name__}: {message}\n\nThe run was stopped and the outputs set to 0 V. The full "
        "traceback is in the log (stderr); please report it with the run's settings.")


def _is_visa_error(exc: BaseException) -> bool:
    return any(c.__module__.startswith("pyvisa") for c in type(exc).__mro__)
