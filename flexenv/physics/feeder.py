"""Radial LV feeder as plain arrays, in per-unit, ready for the numba power flow.

Per-unit system (same as pandapower's, so results compare one to one):

* power base ``s_base_mva`` (pandapower's ``net.sn_mva``, 1 MVA by default), the same for every bus;
* voltage base per bus: its nominal voltage ``bus_vn_kv`` (line-to-line), so a bus at nominal voltage
  is at 1 p.u. on either side of the transformer;
* impedance base per branch ``vn_kv**2 / s_base_mva`` of its from-bus (HV bus for the transformer).

Branch model (balanced positive sequence, identical to pandapower's ``makeYbus``)::

    from bus --[ideal transformer tap:1]-- int --+--[ r + jx ]--+-- to bus
                                                 |              |
                                              y_from          y_to        (shunts to ground)

``tap`` is complex (ratio * exp(j*shift)); it is 1 for lines. For a line ``y_from = y_to`` is half its
charging admittance; for the transformer pandapower's T model (magnetising branch in the middle) is
turned into this pi model exactly as pandapower does it, so ``y_from != y_to`` in general.

Branches are numbered lines first (in the order of ``line_ids``), then the transformer. Buses are
numbered in the order of ``net.bus.index`` (``bus_ids`` keeps the original index).

Radial sweep: the feeder also stores a *node* tree rooted at the slack. A node is a bus, or several
buses fused by closed bus-bus switches, or an auxiliary node at the open end of a line that hangs
from one side only (that line still draws charging current, as in pandapower). Nodes are numbered in
breadth-first order from the slack (node 0), so ``node_parent[k] < k``: one backward loop
``k = n-1 .. 1`` and one forward loop ``k = 1 .. n-1`` are a full sweep, with no searching at solve
time. Node ``k >= 1`` is fed by tree edge ``k`` (the branch ``node_branch[k]``).

Three-phase note: all per-bus arrays have the bus as their last axis and all per-branch arrays the
branch as their last axis; an unbalanced solver can add per-phase arrays (e.g. ``(n_branch, 3, 3)``
impedance matrices, injections ``(batch, n_bus, 3)``) next to these without changing this API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SQRT3 = math.sqrt(3.0)

# Standard LV cables used by ``Feeder.synthetic`` (positive sequence), taken from pandapower's
# standard types ("... SE") and from the cable types of pandapower's Kerber networks:
# name -> (r_ohm_per_km, x_ohm_per_km, c_nf_per_km, max_i_ka)
LV_CABLES = {
    "NAYY 4x185": (0.165, 0.08042478, 830.0, 0.313),  # Kerber
    "NAYY 4x150": (0.2067, 0.08042478, 830.0, 0.275),  # Kerber
    "NAYY 4x150 SE": (0.208, 0.08, 261.0, 0.27),  # pandapower std type
    "NAYY 4x120 SE": (0.225, 0.08, 264.0, 0.242),  # pandapower std type
    "NAYY 4x50": (0.6417, 0.084823, 670.0, 0.141),  # Kerber
    "NAYY 4x50 SE": (0.642, 0.083, 210.0, 0.142),  # pandapower std type
    "NYY 4x35": (0.5240284, 0.08513716, 0.0, 0.156),  # Kerber (house connection)
}
# Standard MV/LV transformers (pandapower standard types, Dyn5):
# name -> (sn_mva, vn_hv_kv, vn_lv_kv, vk_percent, vkr_percent, pfe_kw, i0_percent, shift_degree)
LV_TRAFOS = {
    "0.25 MVA 20/0.4 kV": (0.25, 20.0, 0.4, 6.0, 1.44, 0.8, 0.32, 150.0),
    "0.4 MVA 20/0.4 kV": (0.4, 20.0, 0.4, 6.0, 1.425, 1.35, 0.3375, 150.0),
    "0.63 MVA 20/0.4 kV": (0.63, 20.0, 0.4, 6.0, 1.206, 1.65, 0.2619, 150.0),
}

BRANCH_LINE = 0
BRANCH_TRAFO = 1


@dataclass(frozen=True, eq=False)
class Feeder:
    """A radial feeder behind one MV/LV transformer, as arrays (see the module docstring).

    Shapes: ``n_bus`` buses, ``n_branch = n_line + 1`` branches, ``n_node`` sweep nodes.
    """

    name: str
    s_base_mva: float
    bus_ids: np.ndarray  # (n_bus,) int64, original bus index (pandapower net.bus.index)
    bus_vn_kv: np.ndarray  # (n_bus,) nominal (base) voltage, kV line-to-line
    bus_shunt_pu: np.ndarray  # (n_bus,) complex, admittance drawing current I = Y*V, p.u.
    slack_bus: int  # position of the external-grid bus
    slack_vm_pu: float
    slack_va_degree: float
    line_ids: np.ndarray  # (n_line,) original line index
    trafo_ids: np.ndarray  # (1,) original trafo index
    branch_kind: np.ndarray  # (n_branch,) BRANCH_LINE or BRANCH_TRAFO
    branch_from_bus: np.ndarray  # (n_branch,) bus position (HV bus for the transformer)
    branch_to_bus: np.ndarray  # (n_branch,) bus position, -1 when that end is switched open
    branch_r_pu: np.ndarray  # (n_branch,) series resistance
    branch_x_pu: np.ndarray  # (n_branch,) series reactance
    branch_y_from_pu: np.ndarray  # (n_branch,) complex shunt at the from side (behind the tap)
    branch_y_to_pu: np.ndarray  # (n_branch,) complex shunt at the to side
    branch_tap: np.ndarray  # (n_branch,) complex ratio * exp(j shift), 1 for lines
    branch_i_rated_from_ka: np.ndarray  # (n_branch,) current at the from end that is 100 % loading
    branch_i_rated_to_ka: np.ndarray  # (n_branch,) same at the to end
    load_buses: np.ndarray  # (n_load_bus,) bus positions that carry loads/PV in the source network
    p_kw_base: np.ndarray = field(default=None)  # (n_bus,) injections of the source network, if any
    q_kvar_base: np.ndarray = field(default=None)
    # (n_bus,) bus position whose node this bus shares (closed bus-bus switches fuse buses); default
    # every bus is its own representative. Branches must refer to representative buses only.
    bus_fused_to: np.ndarray = field(default=None)
    # Synthetic feeders only: cable type and length of each line, to rebuild them in pandapower.
    line_type: list = field(default=None)
    line_length_km: np.ndarray = field(default=None)
    trafo_type: str | None = None
    # ---- radial sweep, derived in __post_init__ ----
    bus_node: np.ndarray = field(init=False)  # (n_bus,) node of each bus
    node_parent: np.ndarray = field(init=False)  # (n_node,) parent node, -1 for the slack node 0
    node_branch: np.ndarray = field(init=False)  # (n_node,) branch feeding node k (-1 for node 0)
    node_edge_forward: np.ndarray = field(init=False)  # (n_node,) True if parent is the branch's from end
    node_va_nominal_degree: np.ndarray = field(init=False)  # (n_node,) slack angle minus shifts on the path

    # ------------------------------------------------------------------ sizes
    @property
    def n_bus(self) -> int:
        return len(self.bus_ids)

    @property
    def n_line(self) -> int:
        return len(self.line_ids)

    @property
    def n_branch(self) -> int:
        return len(self.branch_kind)

    @property
    def n_node(self) -> int:
        return len(self.node_parent)

    def bus_position(self, bus_id) -> int:
        """Position (array index) of the pandapower bus index ``bus_id``."""
        hits = np.flatnonzero(self.bus_ids == bus_id)
        if len(hits) != 1:
            raise KeyError(f"bus {bus_id!r} is not in feeder {self.name!r}")
        return int(hits[0])

    # ------------------------------------------------------------------ sweep
    def __post_init__(self):
        if self.p_kw_base is None:
            object.__setattr__(self, "p_kw_base", np.zeros(self.n_bus))
        if self.q_kvar_base is None:
            object.__setattr__(self, "q_kvar_base", np.zeros(self.n_bus))
        if self.bus_fused_to is None:
            object.__setattr__(self, "bus_fused_to", np.arange(self.n_bus, dtype=np.int64))
        for name, value in _build_sweep(self).items():
            object.__setattr__(self, name, value)
        # The kernel arrays are built once; power flows reuse them.
        object.__setattr__(self, "_kernel_cache", {})

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_pandapower(cls, net, name: str | None = None) -> Feeder:
        """Import a radial pandapower LV network with one external grid and one transformer.

        Bus ``i`` of the feeder is ``net.bus.index[i]``; line ``j`` is ``feeder.line_ids[j]``.
        Injections of ``net.load``, ``net.sgen``, ``net.storage`` (and ``net.asymmetric_load`` /
        ``net.asymmetric_sgen``, summed over phases) are stored in ``p_kw_base``/``q_kvar_base``
        (consumption positive) and their buses in ``load_buses``.

        Raises ``ValueError`` naming the element for: a meshed network, more or fewer than one
        in-service external grid or transformer, voltage-controlled generators, elements this model
        does not cover (3-winding transformers, impedances, wards, DC lines), open switches that
        island buses, and missing or non-positive ratings.
        """
        from flexenv.physics.feeder_pandapower import feeder_tables_from_pandapower

        return cls(name=name or str(net.name or "pandapower net"), **feeder_tables_from_pandapower(net))

    @classmethod
    def synthetic(
        cls,
        n_buses: int,
        seed: int,
        *,
        n_feeders: int | None = None,
        trafo_type: str = "0.4 MVA 20/0.4 kV",
        main_cables: tuple[str, ...] = ("NAYY 4x185", "NAYY 4x150", "NAYY 4x120 SE"),
        branch_cable: str = "NAYY 4x50",
        service_cable: str = "NYY 4x35",
        segment_m: tuple[float, float] = (20.0, 60.0),
        service_m: tuple[float, float] = (8.0, 30.0),
        p_branch: float = 0.15,
    ) -> Feeder:
        """A seeded, realistic radial LV feeder (same ``seed`` -> identical arrays, bit for bit).

        Layout: a 20 kV slack bus, the MV/LV transformer ``trafo_type`` (Dyn5), an LV busbar and
        ``n_feeders`` (default: 2 + one per 40 buses, at most 6) outgoing cable feeders. Each feeder
        is a main cable (one of ``main_cables``) built from ``segment_m``-long segments between cable
        distribution cabinets; each cabinet feeds one house through a ``service_cable`` of
        ``service_m`` metres and, with probability ``p_branch``, starts a side branch of
        ``branch_cable``. House buses are the ``load_buses``. Cable data are pandapower standard types.
        """
        from flexenv.physics.feeder_synthetic import synthetic_tables

        tables = synthetic_tables(
            n_buses, seed, n_feeders=n_feeders, trafo_type=trafo_type, main_cables=main_cables,
            branch_cable=branch_cable, service_cable=service_cable, segment_m=segment_m,
            service_m=service_m, p_branch=p_branch,
        )
        return cls(name=f"synthetic_{n_buses}_seed{seed}", **tables)


    def to_pandapower(self):
        """A synthetic feeder as a pandapower net without loads (to check it against ``runpp``)."""
        from flexenv.physics.feeder_synthetic import synthetic_to_pandapower

        return synthetic_to_pandapower(self)


def line_pu(r_ohm, x_ohm, b_us, g_us, vn_kv, s_base_mva):
    """Per-unit series impedance and half-shunt of lines (pandapower ``_calc_line_parameter``)."""
    z_base_ohm = vn_kv**2 / s_base_mva
    r_pu = r_ohm / z_base_ohm
    x_pu = x_ohm / z_base_ohm
    y_half_pu = (g_us * 1e-6 + 1j * b_us * 1e-6) * z_base_ohm / 2.0
    return r_pu, x_pu, y_half_pu


def trafo_pu(*, sn_mva, vn_lv_kv, vn_hv_tap_kv, vn_lv_tap_kv, vk_percent, vkr_percent, pfe_kw, i0_percent,
             shift_degree, parallel, bus_vn_hv_kv, bus_vn_lv_kv, s_base_mva, r_ratio_hv=0.5, x_ratio_hv=0.5):
    """Two-winding transformer in the pi model of the module docstring, per unit.

    ``vn_lv_kv`` is the rated LV voltage; ``vn_hv_tap_kv``/``vn_lv_tap_kv``/``shift_degree`` are the
    tap-adjusted values. This follows pandapower's ``_calc_branch_values_from_trafo_df`` with
    ``trafo_model="t"`` (its default): short-circuit impedance from ``vk``/``vkr``, magnetising
    admittance from ``pfe``/``i0``, then the T model (leakage split ``r_ratio_hv``/``x_ratio_hv`` on
    the HV side, magnetising branch in the middle) converted to a pi model.
    Returns ``(r_pu, x_pu, y_from_pu, y_to_pu, tap)`` with ``tap`` complex.
    """
    # Leakage impedance, referred to the LV bus base.
    tap_lv = (vn_lv_tap_kv / bus_vn_lv_kv) ** 2 * s_base_mva
    z_sc = vk_percent / 100.0 / sn_mva * tap_lv
    r_sc = vkr_percent / 100.0 / sn_mva * tap_lv
    x_sc = math.copysign(math.sqrt(z_sc**2 - r_sc**2), z_sc)
    r = r_sc / parallel
    x = x_sc / parallel
    # Magnetising admittance (inductive: negative susceptance), on the LV bus base.
    z_base_lv = bus_vn_lv_kv**2 / s_base_mva
    g_mva = pfe_kw * 1e-3
    ym_mva = i0_percent / 100.0 * sn_mva
    b_mva = -math.sqrt(max(ym_mva**2 - g_mva**2, 0.0))
    scale = z_base_lv * parallel / (vn_lv_kv**2 * (vn_lv_tap_kv / vn_lv_kv) ** 2)
    y_m = complex(g_mva * scale, b_mva * scale)
    if y_m == 0:
        y_from = y_to = 0j
        z_series = complex(r, x)
    else:
        # T (star) -> pi (delta), pandapower's _wye_delta.
        za = complex(r * r_ratio_hv, x * x_ratio_hv)
        zb = complex(r * (1 - r_ratio_hv), x * (1 - x_ratio_hv))
        zc = 1 / y_m
        z_sum = za * zb + za * zc + zb * zc
        z_series = z_sum / zc
        y_from = 1 / (z_sum / zb)
        y_to = 1 / (z_sum / za)
    ratio = (vn_hv_tap_kv / vn_lv_tap_kv) / (bus_vn_hv_kv / bus_vn_lv_kv)
    tap = ratio * complex(math.cos(math.radians(shift_degree)), math.sin(math.radians(shift_degree)))
    return z_series.real, z_series.imag, y_from, y_to, tap


def _build_sweep(feeder: Feeder) -> dict:
    """Node tree for the radial sweep (see module docstring); checks radiality and supply."""
    n_bus = feeder.n_bus
    n_branch = feeder.n_branch
    adjacency = [[] for _ in range(n_bus)]
    for e in range(n_branch):
        f, t = int(feeder.branch_from_bus[e]), int(feeder.branch_to_bus[e])
        if t < 0:
            adjacency[f].append((e, -1, True))
            continue
        if f == t:
            raise ValueError(f"{_branch_name(feeder, e)} connects bus {feeder.bus_ids[f]} to itself "
                             "(after fusing closed bus-bus switches): the network is meshed")
        adjacency[f].append((e, t, True))
        adjacency[t].append((e, f, False))

    node_bus = [feeder.slack_bus]  # bus of each node (-1 for an auxiliary open-end node)
    node_parent = [-1]
    node_branch = [-1]
    node_forward = [True]
    bus_node = np.full(n_bus, -1, dtype=np.int64)
    bus_node[feeder.slack_bus] = 0
    used_branch = np.zeros(n_branch, dtype=bool)
    head = 0
    while head < len(node_bus):
        bus = node_bus[head]
        if bus >= 0:
            for e, other, forward in adjacency[bus]:
                if used_branch[e]:
                    continue
                used_branch[e] = True
                if other >= 0 and bus_node[other] >= 0:
                    raise ValueError(
                        f"the network is meshed: {_branch_name(feeder, e)} closes a loop between buses "
                        f"{feeder.bus_ids[bus]} and {feeder.bus_ids[other]}")
                if not forward and feeder.branch_kind[e] == BRANCH_TRAFO:
                    raise ValueError(f"{_branch_name(feeder, e)} is fed from its LV side; the external "
                                     "grid must be on the transformer's HV side")
                if other >= 0:
                    bus_node[other] = len(node_bus)
                node_bus.append(other)
                node_parent.append(head)
                node_branch.append(e)
                node_forward.append(forward)
        head += 1

    representative = feeder.bus_fused_to
    fused = np.flatnonzero(representative != np.arange(n_bus))
    bus_node[fused] = bus_node[representative[fused]]
    unreached = np.flatnonzero(bus_node < 0)
    if len(unreached):
        ids = [int(b) for b in feeder.bus_ids[unreached[:10]]]
        raise ValueError(f"buses {ids}{' ...' if len(unreached) > 10 else ''} are not supplied from the "
                         "external grid (islanded by open switches or out-of-service elements)")
    unused = np.flatnonzero(~used_branch)
    if len(unused):
        raise ValueError(f"{_branch_name(feeder, int(unused[0]))} is not connected to the supplied network")

    # Nominal angle of every node: slack angle minus the transformer shifts on its path, so that
    # `va_degree` is reported unwrapped exactly like pandapower (e.g. -150 deg behind a Dyn5).
    node_parent_a = np.asarray(node_parent, dtype=np.int64)
    node_branch_a = np.asarray(node_branch, dtype=np.int64)
    va_nominal = np.zeros(len(node_parent))
    va_nominal[0] = feeder.slack_va_degree
    for k in range(1, len(node_parent)):
        shift = math.degrees(np.angle(feeder.branch_tap[node_branch_a[k]]))
        va_nominal[k] = va_nominal[node_parent_a[k]] + (-shift if node_forward[k] else shift)
    return {
        "bus_node": bus_node,
        "node_parent": node_parent_a,
        "node_branch": node_branch_a,
        "node_edge_forward": np.asarray(node_forward, dtype=bool),
        "node_va_nominal_degree": va_nominal,
    }


def _branch_name(feeder: Feeder, e: int) -> str:
    if feeder.branch_kind[e] == BRANCH_TRAFO:
        return f"trafo {feeder.trafo_ids[e - feeder.n_line]}"
    return f"line {feeder.line_ids[e]}"
