"""Seeded synthetic radial LV feeders (see :meth:`flexenv.physics.feeder.Feeder.synthetic`)."""

from __future__ import annotations

import numpy as np

from flexenv.physics.feeder import (
    BRANCH_LINE,
    BRANCH_TRAFO,
    LV_CABLES,
    LV_TRAFOS,
    SQRT3,
    line_pu,
    trafo_pu,
)

F_HZ = 50.0
S_BASE_MVA = 1.0


def synthetic_tables(n_buses: int, seed: int, *, n_feeders, trafo_type, main_cables, branch_cable,
                     service_cable, segment_m, service_m, p_branch) -> dict:
    """Keyword arguments of ``Feeder`` (all but ``name``) for a synthetic feeder; see ``Feeder.synthetic``."""
    if int(n_buses) != n_buses or n_buses < 4:
        raise ValueError(f"n_buses must be an integer >= 4 (MV bus, LV busbar, one cabinet, one house); "
                         f"got {n_buses}")
    n_buses = int(n_buses)
    if trafo_type not in LV_TRAFOS:
        raise ValueError(f"trafo_type {trafo_type!r} unknown; choose one of {sorted(LV_TRAFOS)}")
    for cable in (*main_cables, branch_cable, service_cable):
        if cable not in LV_CABLES:
            raise ValueError(f"cable type {cable!r} unknown; choose from {sorted(LV_CABLES)}")
    if not 0.0 <= p_branch <= 1.0:
        raise ValueError(f"p_branch must be in [0, 1]; got {p_branch}")
    if n_feeders is None:
        n_feeders = min(6, 2 + n_buses // 40)
    n_feeders = max(1, min(int(n_feeders), (n_buses - 2) // 2))
    rng = np.random.default_rng(seed)

    # Bus 0: MV slack (20 kV); bus 1: LV busbar. Lines as (from, to, cable, length_km).
    sn, vn_hv, vn_lv, vk, vkr, pfe, i0, shift = LV_TRAFOS[trafo_type]
    bus_vn_kv = [vn_hv, vn_lv]
    lines: list[tuple[int, int, str, float]] = []
    houses: list[int] = []
    tips = [(1, str(main_cables[rng.integers(len(main_cables))])) for _ in range(n_feeders)]

    def add_bus() -> int:
        bus_vn_kv.append(vn_lv)
        return len(bus_vn_kv) - 1

    while len(bus_vn_kv) < n_buses:
        t = int(rng.integers(len(tips)))
        tip_bus, cable = tips[t]
        cabinet = add_bus()
        lines.append((tip_bus, cabinet, cable, rng.uniform(*segment_m) / 1e3))
        tips[t] = (cabinet, cable)
        if len(bus_vn_kv) < n_buses:
            house = add_bus()
            lines.append((cabinet, house, service_cable, rng.uniform(*service_m) / 1e3))
            houses.append(house)
        if rng.random() < p_branch:
            tips.append((cabinet, branch_cable))

    n_bus = len(bus_vn_kv)
    bus_vn_kv = np.asarray(bus_vn_kv, dtype=np.float64)
    lf = np.array([ln[0] for ln in lines], dtype=np.int64)
    lt = np.array([ln[1] for ln in lines], dtype=np.int64)
    length_km = np.array([ln[3] for ln in lines])
    r_km, x_km, c_km, i_max = (np.array([LV_CABLES[ln[2]][j] for ln in lines]) for j in range(4))
    b_us = 2 * F_HZ * np.pi * c_km * 1e-3 * length_km
    r_pu, x_pu, y_half = line_pu(r_km * length_km, x_km * length_km, b_us, np.zeros_like(b_us),
                                 bus_vn_kv[lf], S_BASE_MVA)
    r_t, x_t, yf_t, yt_t, tap_t = trafo_pu(
        sn_mva=sn, vn_lv_kv=vn_lv, vn_hv_tap_kv=vn_hv, vn_lv_tap_kv=vn_lv, vk_percent=vk,
        vkr_percent=vkr, pfe_kw=pfe, i0_percent=i0, shift_degree=shift, parallel=1.0,
        bus_vn_hv_kv=vn_hv, bus_vn_lv_kv=vn_lv, s_base_mva=S_BASE_MVA)
    n_line = len(lines)
    return dict(
        s_base_mva=S_BASE_MVA, bus_ids=np.arange(n_bus, dtype=np.int64), bus_vn_kv=bus_vn_kv,
        bus_shunt_pu=np.zeros(n_bus, dtype=np.complex128), slack_bus=0, slack_vm_pu=1.0, slack_va_degree=0.0,
        line_ids=np.arange(n_line, dtype=np.int64), trafo_ids=np.array([0], dtype=np.int64),
        branch_kind=np.r_[np.full(n_line, BRANCH_LINE), BRANCH_TRAFO].astype(np.int64),
        branch_from_bus=np.r_[lf, 0].astype(np.int64), branch_to_bus=np.r_[lt, 1].astype(np.int64),
        branch_r_pu=np.r_[r_pu, r_t], branch_x_pu=np.r_[x_pu, x_t],
        branch_y_from_pu=np.r_[y_half, yf_t].astype(np.complex128),
        branch_y_to_pu=np.r_[y_half, yt_t].astype(np.complex128),
        branch_tap=np.r_[np.ones(n_line), tap_t].astype(np.complex128),
        branch_i_rated_from_ka=np.r_[i_max, sn / (SQRT3 * vn_hv)],
        branch_i_rated_to_ka=np.r_[i_max, sn / (SQRT3 * vn_lv)],
        load_buses=np.asarray(houses, dtype=np.int64),
        line_type=[ln[2] for ln in lines], line_length_km=length_km, trafo_type=trafo_type,
    )


def synthetic_to_pandapower(feeder):
    """The same synthetic feeder as a pandapower net (lines from parameters, no loads), for checks."""
    import pandapower as pp

    if feeder.line_type is None:
        raise ValueError(f"feeder {feeder.name!r} is not synthetic: it has no cable types to export")
    net = pp.create_empty_network(name=feeder.name, f_hz=F_HZ, sn_mva=feeder.s_base_mva)
    for b in range(feeder.n_bus):
        pp.create_bus(net, vn_kv=float(feeder.bus_vn_kv[b]), index=int(feeder.bus_ids[b]))
    pp.create_ext_grid(net, bus=int(feeder.bus_ids[feeder.slack_bus]), vm_pu=feeder.slack_vm_pu,
                       va_degree=feeder.slack_va_degree)
    for j, cable in enumerate(feeder.line_type):
        r, x, c, i_max = LV_CABLES[cable]
        pp.create_line_from_parameters(
            net, from_bus=int(feeder.bus_ids[feeder.branch_from_bus[j]]),
            to_bus=int(feeder.bus_ids[feeder.branch_to_bus[j]]), length_km=float(feeder.line_length_km[j]),
            r_ohm_per_km=r, x_ohm_per_km=x, c_nf_per_km=c, max_i_ka=i_max, name=cable, index=int(feeder.line_ids[j]))
    sn, vn_hv, vn_lv, vk, vkr, pfe, i0, shift = LV_TRAFOS[feeder.trafo_type]
    e = feeder.n_line
    pp.create_transformer_from_parameters(
        net, hv_bus=int(feeder.bus_ids[feeder.branch_from_bus[e]]), lv_bus=int(feeder.bus_ids[feeder.branch_to_bus[e]]),
        sn_mva=sn, vn_hv_kv=vn_hv, vn_lv_kv=vn_lv, vk_percent=vk, vkr_percent=vkr, pfe_kw=pfe, i0_percent=i0,
        shift_degree=shift, index=int(feeder.trafo_ids[0]))
    return net
