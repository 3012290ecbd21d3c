"""Markets: retail tariffs, wholesale and imbalance settlement, DSO and reserve clearing."""
