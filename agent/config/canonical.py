"""Canonical point names (the table in the README): the same quantity has the same name and unit on every vendor.

A profile point that uses one of these names must deliver it in this unit, after all scaling, so
the platform needs no per-vendor mapping. Per-string PV points (pv1_voltage, pv12_current, ...)
follow a pattern.
"""

from __future__ import annotations

import re

CANONICAL_UNITS: dict[str, str] = {
    **{f"voltage_{ph}": "V" for ph in ("l1", "l2", "l3", "l12", "l23", "l31")},
    **{f"current_{ph}": "A" for ph in ("l1", "l2", "l3")},
    "active_power": "W", "active_power_l1": "W", "active_power_l2": "W", "active_power_l3": "W",
    "reactive_power": "var",
    "apparent_power": "VA",
    "power_factor": "1",
    "frequency": "Hz",
    "energy_import": "kWh",
    "energy_export": "kWh",
    "energy_yield_total": "kWh",
    "energy_yield_today": "kWh",
    "dc_power": "W",
    "inverter_state": "",
    "internal_temperature": "°C",
    "volume_total": "m³",
    "volume_reverse": "m³",
    "flow_rate": "m³/h",
    # heat meters (CJ/T 188 type 20H): in the units of electrical energy and power, so a platform can
    # add energy across carriers; meters that report GJ or MWh are converted by their unit code
    "heat_energy": "kWh",
    "heat_power": "W",
}

CANONICAL_COUNTERS = frozenset({"energy_import", "energy_export", "energy_yield_total",
                                "volume_total", "volume_reverse", "heat_energy"})

_PV_STRING = re.compile(r"^pv(\d{1,2})_(voltage|current)$")


def canonical_unit(name: str) -> str | None:
    """The unit a canonical point must have, or None for a vendor-specific name."""
    if name in CANONICAL_UNITS:
        return CANONICAL_UNITS[name]
    if match := _PV_STRING.match(name):
        return "V" if match.group(2) == "voltage" else "A"
    return None
