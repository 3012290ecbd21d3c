"""Settlement: every payment between prosumers, aggregator, DSO and market, per PTU.

A `Ledger` records named flows. Each flow has a payer and a payee account among `prosumer` (per
prosumer, shape (B, P)), `aggregator`, `dso` and `market` (shape (B,)); the market account stands
for everything outside the modelled actors (wholesale and imbalance market, TSO, regulator). Every
payment leaves one account and enters another, so the four accounts always sum to zero: that is the
money-balance invariant the tests check every step.
"""

from __future__ import annotations

import numpy as np

ACCOUNTS = ("prosumer", "aggregator", "dso", "market")


class Ledger:
    """Money of one step, by account and by flow. Amounts in €; positive = received."""

    def __init__(self, batch: int, n_prosumers: int):
        self.prosumer = np.zeros((batch, n_prosumers))
        self.aggregator = np.zeros(batch)
        self.dso = np.zeros(batch)
        self.market = np.zeros(batch)
        self.flows: dict[str, np.ndarray] = {}  # flow name -> (B,) total paid this step

    def pay(self, name: str, payer: str, payee: str, amount_eur: np.ndarray, per_row: np.ndarray | None = None) -> None:
        """Record `amount_eur` paid from `payer` to `payee`: (B, P) when a prosumer is involved
        (per prosumer), else (B,). A negative amount flows the other way. `per_row`, the (B,) total
        of a (B, P) amount, may be given when it is known already (a constant fee)."""
        amount = amount_eur
        if type(amount) is not np.ndarray or amount.dtype != np.float64:
            amount = np.asarray(amount_eur, dtype=np.float64)
        if (payer == "prosumer" or payee == "prosumer") and amount.ndim != 2:
            raise ValueError(f"flow {name!r}: a prosumer payment needs a (B, P) amount")
        if per_row is None:
            per_row = amount.sum(axis=1) if amount.ndim == 2 else amount
        # in place: x - a is x + (-a) exactly, so this equals adding the signed amounts
        target = getattr(self, payer)
        target -= amount if payer == "prosumer" else per_row
        target = getattr(self, payee)
        target += amount if payee == "prosumer" else per_row
        self.flows[name] = self.flows.get(name, 0.0) + per_row

    def imbalance(self) -> np.ndarray:
        """(B,) sum of all accounts; zero up to rounding."""
        return self.prosumer.sum(axis=1) + self.aggregator + self.dso + self.market


def energy_cost_eur(net_kw: np.ndarray, import_price: np.ndarray, export_price: np.ndarray, dt_h: float) -> np.ndarray:
    """Cost of a net power over one PTU: import × import price − export × export price (€)."""
    return dt_h * (np.maximum(net_kw, 0.0) * import_price - np.maximum(-net_kw, 0.0) * export_price)


def imbalance_cost_eur(deviation_kw: np.ndarray, short_price: np.ndarray, long_price: np.ndarray, dt_h: float) -> np.ndarray:
    """What a balance-responsible party pays for a deviation from its position over one PTU.

    deviation = actual − position (kW): short (> 0) buys the missing energy at the short price,
    long (< 0) sells the surplus at the long price (a payment back, or a cost if that price is negative).
    """
    return dt_h * (np.maximum(deviation_kw, 0.0) * short_price - np.maximum(-deviation_kw, 0.0) * long_price)
