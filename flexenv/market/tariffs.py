"""Retail tariff schemes turned into price curves on the PTU grid."""

from __future__ import annotations

import numpy as np

from flexenv.scenario.schema import Tariff, slot_covers


def _slot_curve(slots, hours: np.ndarray, weekdays: np.ndarray) -> np.ndarray:
    """Price per step from `slots`, later slots overriding earlier ones; NaN where none applies."""
    price = np.full(hours.shape, np.nan)
    for slot in slots:
        covered = np.array([slot_covers(slot, h, int(w)) for h, w in zip(hours, weekdays)])
        price = np.where(covered, slot.price_eur_per_kwh, price)
    return price


def tariff_curves(tariff: Tariff, grid) -> dict[str, np.ndarray]:
    """Import, export and (if any) exclusive-device prices of `tariff` on a `TimeGrid`, each (T,) €/kWh.

    Keys: `import_eur_per_kwh`, `export_eur_per_kwh`, and `exclusive_eur_per_kwh` (the exclusive-meter
    price where its slots apply, else the normal import price) when the tariff has exclusive slots.
    """
    hours = grid.hour_of_day + 1e-9  # a PTU belongs to the slot its start lies in
    weekdays = grid.weekday[grid.day_index]
    curves = {
        "import_eur_per_kwh": _slot_curve(tariff.slots, hours, weekdays),
        "export_eur_per_kwh": np.full(grid.n_steps, tariff.export_price_eur_per_kwh),
    }
    if tariff.exclusive_slots:
        exclusive = _slot_curve(tariff.exclusive_slots, hours, weekdays)
        curves["exclusive_eur_per_kwh"] = np.where(np.isnan(exclusive), curves["import_eur_per_kwh"], exclusive)
    return curves
