"""Protocols: each is one module written only against the seam (``rramlab.drivers.interface``).

Every protocol module has the same shape, which is what the command line uses too, so a script and
``rramlab ...`` do the same thing:

* ``Settings``: the settings dataclass (fields declared with units, defaults and limits);
* ``plan(settings, ..., checker)``: validates everything against a checker or an instrument and
  touches no instrument; raises SafetyError, GeometryError or RequestError naming the value;
* ``run(instrument, plan, should_stop=None)``: a generator of records, frozen dataclasses;
* ``RECORDS``: the record classes ``run`` yields.

::

    from rramlab.protocols import ispp, ispva, transfer

Modules: ``ispp`` (incremental step pulse programming), ``ispva`` (write-verify), ``transfer``
(weight transfer into the differential array), ``inference`` (25-step spiking inference through
``vmm``), ``array_map`` (the conductance map of the array at the read voltage), ``iv`` (a DC staircase
sweep of one cell), ``power`` (eqns 1-3 from measured conductances), ``endurance``, ``retention`` and
``disturb`` (set/reset cycling, states over time, read and half-select disturb), ``control`` (pause,
resume and stop any protocol at its checkpoints), ``network`` and ``mnist`` (training,
quantisation, pruning, mapping; the data), ``weights`` (weight files), ``store`` (the run
store), ``records`` (records to rows and DataFrames), ``settings`` (the declarations).
"""

#: the protocol modules (each has Settings, plan, run, RECORDS)
PROTOCOLS = ("ispp", "ispva", "transfer", "inference", "power", "array_map", "iv", "endurance", "retention",
             "disturb")

__all__ = ["PROTOCOLS", "ispp", "ispva", "transfer", "inference", "power", "array_map", "iv", "endurance",
           "retention", "disturb", "weights", "store", "records", "control"]
