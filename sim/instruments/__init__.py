"""Virtual instruments in front of the twin: a 4156C and an E5250A that speak their own command
sets, coupled through a virtual probe card to a VirtualArray, with a bench clock that counts the
time a real bench would take. Plain Python; no pyvisa, Qt, app or protocol imports."""

from .analyzer import VirtualAnalyzer
from .base import Fault, VirtualResource, VirtualTimeoutError
from .bench import VISA_LIBRARY, BenchWiring, TwinResourceManager, VirtualBench
from .clock import BenchClock, BenchTiming, format_duration
from .matrix import VirtualMatrix
from .probe_card import VirtualProbeCard

__all__ = ["VirtualAnalyzer", "VirtualMatrix", "VirtualProbeCard", "VirtualBench", "TwinResourceManager",
           "BenchWiring", "BenchClock", "BenchTiming", "Fault", "VirtualResource", "VirtualTimeoutError",
           "VISA_LIBRARY", "format_duration"]
