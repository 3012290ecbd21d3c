"""Import a radial pandapower network into the arrays of :class:`flexenv.physics.feeder.Feeder`.

pandapower is imported lazily by the caller; this module only reads the net's DataFrames. Columns
are cast to numbers first because some sources (e.g. SimBench) store numeric columns as text.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from flexenv.physics.feeder import BRANCH_LINE, BRANCH_TRAFO, SQRT3, line_pu, trafo_pu

# Elements whose physics this balanced radial model does not represent.
_UNSUPPORTED = {
    "gen": "voltage-controlled generator (PV bus)",
    "trafo3w": "three-winding transformer",
    "impedance": "impedance branch",
    "ward": "ward equivalent",
    "xward": "extended ward equivalent",
    "dcline": "DC line",
    "tcsc": "TCSC",
    "svc": "SVC",
    "ssc": "SSC",
    "motor": "motor",
}


def _numeric(df: pd.DataFrame, table: str, column: str, default=None) -> np.ndarray:
    """Column as float64, whatever dtype it is stored with; clear error if it is not numeric."""
    if column not in df.columns:
        if default is None:
            raise ValueError(f"net.{table} has no column {column!r}")
        return np.full(len(df), default, dtype=np.float64)
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    raw = df[column]
    bad = np.isnan(values) & raw.notna().to_numpy()
    if bad.any():
        idx = df.index[np.flatnonzero(bad)[0]]
        raise ValueError(f"net.{table}.{column} of {table} {idx} is not a number: {raw.loc[idx]!r}")
    return values


def _in_service(df: pd.DataFrame) -> np.ndarray:
    if "in_service" not in df.columns:
        return np.ones(len(df), dtype=bool)
    return df["in_service"].astype(bool).to_numpy()


def _require(values: np.ndarray, ok: np.ndarray, df: pd.DataFrame, table: str, column: str, what: str):
    bad = np.flatnonzero(~ok)
    if len(bad):
        idx = df.index[bad[0]]
        raise ValueError(f"{table} {idx}: {column} = {values[bad[0]]!r} ({what})")


def feeder_tables_from_pandapower(net) -> dict:
    """Keyword arguments of :class:`Feeder` (all but ``name``) for a pandapower net."""
    for table, what in _UNSUPPORTED.items():
        if table in net and len(net[table]) and _in_service(net[table]).any():
            idx = net[table].index[np.flatnonzero(_in_service(net[table]))[0]]
            raise ValueError(f"{table} {idx}: {what} is not supported by the radial feeder model")

    s_base_mva = float(net.sn_mva)
    bus_df = net.bus
    bus_ids = bus_df.index.to_numpy(dtype=np.int64)
    n_bus = len(bus_ids)
    pos_of = pd.Series(np.arange(n_bus), index=bus_df.index)
    bus_vn_kv = _numeric(bus_df, "bus", "vn_kv")
    _require(bus_vn_kv, np.isfinite(bus_vn_kv) & (bus_vn_kv > 0), bus_df, "bus", "vn_kv", "must be > 0")
    bus_ok = _in_service(bus_df)

    def positions(values, table, column, df):
        ids = pd.Index(values)
        missing = ~ids.isin(bus_df.index)
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise ValueError(f"{table} {df.index[i]}: {column} = {values[i]} is not a bus of the net")
        return pos_of.loc[values].to_numpy(dtype=np.int64)

    # ---- external grid
    eg = net.ext_grid[_in_service(net.ext_grid)]
    if len(eg) != 1:
        raise ValueError(f"the feeder needs exactly one in-service external grid, net.ext_grid has {len(eg)} "
                         f"(indices {list(eg.index)})")
    slack_bus = int(positions(eg["bus"].to_numpy(), "ext_grid", "bus", eg)[0])
    slack_vm_pu = float(_numeric(eg, "ext_grid", "vm_pu")[0])
    slack_va_degree = float(_numeric(eg, "ext_grid", "va_degree", default=0.0)[0])

    # ---- switches: fuse closed bus-bus switches; open line ends; open trafo switches isolate the feeder
    fused_to = np.arange(n_bus, dtype=np.int64)

    def root(b):
        while fused_to[b] != b:
            b = fused_to[b]
        return b

    open_line_ends = {}  # line index -> set of bus positions whose switch is open
    sw = net.switch
    if len(sw):
        closed = sw["closed"].astype(bool).to_numpy()
        sw_bus = positions(sw["bus"].to_numpy(), "switch", "bus", sw)
        z_ohm = _numeric(sw, "switch", "z_ohm", default=0.0)
        for i, (idx, row) in enumerate(sw.iterrows()):
            et = row["et"]
            if et == "b" and closed[i]:
                if z_ohm[i] > 0:
                    raise ValueError(f"switch {idx}: closed bus-bus switch with z_ohm = {z_ohm[i]} > 0 is not "
                                     "supported (use a line)")
                a = root(sw_bus[i])
                b = root(int(positions(np.array([row["element"]]), "switch", "element", sw.loc[[idx]])[0]))
                if a != b:
                    fused_to[max(a, b)] = min(a, b)
            elif et == "l" and not closed[i]:
                open_line_ends.setdefault(int(row["element"]), set()).add(int(sw_bus[i]))
            elif et == "t" and not closed[i]:
                if int(row["element"]) in net.trafo.index and bool(net.trafo.at[int(row["element"]), "in_service"]):
                    raise ValueError(f"switch {idx} is open at trafo {row['element']}: the feeder is not supplied")
            elif et not in ("b", "l", "t"):
                if not closed[i]:
                    raise ValueError(f"switch {idx}: open switch of type {et!r} is not supported")
    fused_to = np.array([root(b) for b in range(n_bus)], dtype=np.int64)
    for b in np.flatnonzero(fused_to != np.arange(n_bus)):
        if bus_vn_kv[b] != bus_vn_kv[fused_to[b]]:
            raise ValueError(f"bus {bus_ids[b]} is switched to bus {bus_ids[fused_to[b]]} of another voltage level")

    # ---- lines
    line = net.line[_in_service(net.line)]
    lf = positions(line["from_bus"].to_numpy(), "line", "from_bus", line)
    lt = positions(line["to_bus"].to_numpy(), "line", "to_bus", line)
    length_km = _numeric(line, "line", "length_km")
    r_km = _numeric(line, "line", "r_ohm_per_km")
    x_km = _numeric(line, "line", "x_ohm_per_km")
    c_km = _numeric(line, "line", "c_nf_per_km", default=0.0)
    g_km = _numeric(line, "line", "g_us_per_km", default=0.0)
    max_i_ka = _numeric(line, "line", "max_i_ka", default=np.nan)
    df = _numeric(line, "line", "df", default=1.0)
    parallel = _numeric(line, "line", "parallel", default=1.0)
    for values, column in ((length_km, "length_km"), (r_km, "r_ohm_per_km"), (x_km, "x_ohm_per_km"),
                           (c_km, "c_nf_per_km"), (g_km, "g_us_per_km")):
        _require(values, np.isfinite(values), line, "line", column, "missing")
    _require(max_i_ka, np.isfinite(max_i_ka) & (max_i_ka > 0), line, "line", "max_i_ka",
             "missing or non-positive rating")
    _require(df, np.isfinite(df) & (df > 0), line, "line", "df", "rating factor must be > 0")
    _require(parallel, np.isfinite(parallel) & (parallel >= 1), line, "line", "parallel", "must be >= 1")
    for ends, column in ((lf, "from_bus"), (lt, "to_bus")):
        _require(bus_ids[ends], bus_ok[ends], line, "line", column, "bus is out of service")
    z_ohm_r = r_km * length_km / parallel
    z_ohm_x = x_km * length_km / parallel
    b_us = 2 * float(net.f_hz) * math.pi * c_km * 1e-3 * length_km * parallel
    g_us = g_km * length_km * parallel
    r_pu, x_pu, y_half = line_pu(z_ohm_r, z_ohm_x, b_us, g_us, bus_vn_kv[lf], s_base_mva)
    _require(r_pu, (np.abs(r_pu) + np.abs(x_pu)) > 0, line, "line", "r, x", "zero impedance")

    keep = np.ones(len(line), dtype=bool)
    from_bus = fused_to[lf].copy()
    to_bus = fused_to[lt].copy()
    for i, idx in enumerate(line.index):
        opened = open_line_ends.get(int(idx), set())
        from_open, to_open = lf[i] in opened, lt[i] in opened
        if from_open and to_open:
            keep[i] = False  # disconnected at both ends: carries nothing
        elif from_open:  # lines are symmetric: put the connected end first
            from_bus[i], to_bus[i] = to_bus[i], -1
        elif to_open:
            to_bus[i] = -1
    i_rated_line = (max_i_ka * df * parallel)[keep]

    # ---- transformer
    tr = net.trafo[_in_service(net.trafo)]
    if len(tr) != 1:
        raise ValueError(f"the feeder needs exactly one in-service transformer, net.trafo has {len(tr)} "
                         f"(indices {list(tr.index)})")
    t_idx = tr.index[0]
    hv = int(positions(tr["hv_bus"].to_numpy(), "trafo", "hv_bus", tr)[0])
    lv = int(positions(tr["lv_bus"].to_numpy(), "trafo", "lv_bus", tr)[0])
    num = {c: float(_numeric(tr, "trafo", c, default=d)[0]) for c, d in (
        ("sn_mva", None), ("vn_hv_kv", None), ("vn_lv_kv", None), ("vk_percent", None),
        ("vkr_percent", None), ("pfe_kw", 0.0), ("i0_percent", 0.0), ("shift_degree", 0.0),
        ("parallel", 1.0), ("df", 1.0), ("leakage_resistance_ratio_hv", 0.5),
        ("leakage_reactance_ratio_hv", 0.5))}
    for c, v in num.items():
        if not np.isfinite(v):
            if c.startswith("leakage"):
                num[c] = 0.5
            else:
                raise ValueError(f"trafo {t_idx}: {c} is missing")
    for c in ("sn_mva", "vn_hv_kv", "vn_lv_kv", "vk_percent", "df", "parallel"):
        if num[c] <= 0:
            raise ValueError(f"trafo {t_idx}: {c} = {num[c]} must be > 0 (rating/parameters)")
    vn_hv_tap, vn_lv_tap, shift = _trafo_taps(tr, num)
    r_t, x_t, yf_t, yt_t, tap_t = trafo_pu(
        sn_mva=num["sn_mva"], vn_lv_kv=num["vn_lv_kv"], vn_hv_tap_kv=vn_hv_tap, vn_lv_tap_kv=vn_lv_tap,
        vk_percent=num["vk_percent"], vkr_percent=num["vkr_percent"], pfe_kw=num["pfe_kw"],
        i0_percent=num["i0_percent"], shift_degree=shift, parallel=num["parallel"],
        bus_vn_hv_kv=bus_vn_kv[hv], bus_vn_lv_kv=bus_vn_kv[lv], s_base_mva=s_base_mva,
        r_ratio_hv=num["leakage_resistance_ratio_hv"], x_ratio_hv=num["leakage_reactance_ratio_hv"])
    # pandapower: loading = max(i_hv * vn_hv, i_lv * vn_lv) * sqrt3 / sn / parallel / df
    s_rated = num["sn_mva"] * num["parallel"] * num["df"]
    i_rated_hv = s_rated / (SQRT3 * num["vn_hv_kv"])
    i_rated_lv = s_rated / (SQRT3 * num["vn_lv_kv"])

    n_line = int(keep.sum())
    branch = {
        "line_ids": line.index.to_numpy(dtype=np.int64)[keep],
        "trafo_ids": np.array([t_idx], dtype=np.int64),
        "branch_kind": np.r_[np.full(n_line, BRANCH_LINE), BRANCH_TRAFO].astype(np.int64),
        "branch_from_bus": np.r_[from_bus[keep], fused_to[hv]].astype(np.int64),
        "branch_to_bus": np.r_[to_bus[keep], fused_to[lv]].astype(np.int64),
        "branch_r_pu": np.r_[r_pu[keep], r_t].astype(np.float64),
        "branch_x_pu": np.r_[x_pu[keep], x_t].astype(np.float64),
        "branch_y_from_pu": np.r_[y_half[keep], yf_t].astype(np.complex128),
        "branch_y_to_pu": np.r_[y_half[keep], yt_t].astype(np.complex128),
        "branch_tap": np.r_[np.ones(n_line), tap_t].astype(np.complex128),
        "branch_i_rated_from_ka": np.r_[i_rated_line, i_rated_hv].astype(np.float64),
        "branch_i_rated_to_ka": np.r_[i_rated_line, i_rated_lv].astype(np.float64),
    }

    # ---- bus shunts (constant admittance), pandapower _calc_shunts_and_add_on_ppc
    bus_shunt_pu = np.zeros(n_bus, dtype=np.complex128)
    if "shunt" in net and len(net.shunt):
        sh = net.shunt[_in_service(net.shunt)]
        sb = positions(sh["bus"].to_numpy(), "shunt", "bus", sh)
        vn = _numeric(sh, "shunt", "vn_kv", default=np.nan)
        vn = np.where(np.isnan(vn), bus_vn_kv[sb], vn)
        step = _numeric(sh, "shunt", "step", default=1.0)
        v_ratio = (bus_vn_kv[sb] / vn) ** 2
        y = (_numeric(sh, "shunt", "p_mw") - 1j * _numeric(sh, "shunt", "q_mvar")) * step * v_ratio / s_base_mva
        np.add.at(bus_shunt_pu, fused_to[sb], y)

    # ---- injections of the source network (consumption positive), for scenarios and examples
    p_kw = np.zeros(n_bus)
    q_kvar = np.zeros(n_bus)
    has_injection = np.zeros(n_bus, dtype=bool)
    for table, sign, phases in (("load", 1.0, ("",)), ("sgen", -1.0, ("",)), ("storage", 1.0, ("",)),
                                ("asymmetric_load", 1.0, ("_a", "_b", "_c")),
                                ("asymmetric_sgen", -1.0, ("_a", "_b", "_c"))):
        if table not in net or not len(net[table]):
            continue
        el = net[table][_in_service(net[table])]
        eb = positions(el["bus"].to_numpy(), table, "bus", el)
        scaling = _numeric(el, table, "scaling", default=1.0)
        for ph in phases:
            np.add.at(p_kw, eb, sign * 1e3 * scaling * _numeric(el, table, f"p{ph}_mw"))
            np.add.at(q_kvar, eb, sign * 1e3 * scaling * _numeric(el, table, f"q{ph}_mvar", default=0.0))
        has_injection[eb] = True

    return dict(
        s_base_mva=s_base_mva, bus_ids=bus_ids, bus_vn_kv=bus_vn_kv, bus_shunt_pu=bus_shunt_pu,
        slack_bus=int(fused_to[slack_bus]), slack_vm_pu=slack_vm_pu, slack_va_degree=slack_va_degree,
        load_buses=np.flatnonzero(has_injection).astype(np.int64), p_kw_base=p_kw, q_kvar_base=q_kvar,
        bus_fused_to=fused_to, **branch,
    )


def _trafo_taps(tr: pd.DataFrame, num: dict) -> tuple[float, float, float]:
    """Tap-adjusted (vn_hv_kv, vn_lv_kv, shift_degree), as pandapower's ``_calc_tap_from_dataframe``."""
    t_idx = tr.index[0]
    vn = {"hv": num["vn_hv_kv"], "lv": num["vn_lv_kv"]}
    shift = num["shift_degree"]
    for t in ("", "2"):
        if f"tap{t}_pos" not in tr.columns:
            continue
        pos = float(_numeric(tr, "trafo", f"tap{t}_pos")[0])
        if np.isnan(pos):
            continue
        if f"tap{t}_dependency_table" in tr.columns and bool(tr[f"tap{t}_dependency_table"].fillna(False).iloc[0]):
            raise ValueError(f"trafo {t_idx}: tap{t}_dependency_table (characteristic tables) is not supported")
        ctype = tr[f"tap{t}_changer_type"].iloc[0] if f"tap{t}_changer_type" in tr.columns else None
        ctype = "" if ctype is None or (isinstance(ctype, float) and np.isnan(ctype)) else str(ctype)
        side = str(tr[f"tap{t}_side"].iloc[0]) if f"tap{t}_side" in tr.columns else ""
        if side not in ("hv", "lv") or ctype == "":
            continue
        direction = 1.0 if side == "hv" else -1.0
        neutral = float(_numeric(tr, "trafo", f"tap{t}_neutral", default=0.0)[0])
        step_pct = float(_numeric(tr, "trafo", f"tap{t}_step_percent", default=np.nan)[0])
        step_deg = float(_numeric(tr, "trafo", f"tap{t}_step_degree", default=np.nan)[0])
        diff = pos - neutral
        if ctype == "Ideal":
            if np.nan_to_num(step_deg) != 0:
                shift += direction * diff * step_deg
            else:
                shift += direction * 2 * math.degrees(math.asin(diff * step_pct / 100 / 2))
        elif ctype in ("Ratio", "Symmetrical"):
            steps = 0.0 if np.isnan(step_pct) else step_pct * diff / 100
            angle = math.radians(np.nan_to_num(step_deg))
            u1 = vn[side]
            du = u1 * steps
            vn[side] = math.sqrt((u1 + du * math.cos(angle)) ** 2 + (du * math.sin(angle)) ** 2)
            shift += math.degrees(math.atan(direction * du * math.sin(angle) / (u1 + du * math.cos(angle))))
        else:
            raise ValueError(f"trafo {t_idx}: tap{t}_changer_type {ctype!r} is not supported")
    return vn["hv"], vn["lv"], shift


def set_pandapower_injections(net, feeder, p_kw, q_kvar) -> None:
    """Replace all loads/sgens/storage of ``net`` by one constant-power load per bus with a nonzero
    injection ``p_kw``/``q_kvar`` (shape (n_bus,), feeder bus order, consumption positive), so that
    ``pandapower.runpp(net)`` solves the same case as ``powerflow.solve(feeder, p_kw, q_kvar)``."""
    import pandapower as pp

    for table in ("load", "sgen", "storage", "asymmetric_load", "asymmetric_sgen"):
        if table in net and len(net[table]):
            net[table] = net[table].iloc[0:0]
    p_kw = np.asarray(p_kw, dtype=np.float64)
    q_kvar = np.asarray(q_kvar, dtype=np.float64)
    nonzero = np.flatnonzero((p_kw != 0) | (q_kvar != 0))
    if len(nonzero):
        pp.create_loads(net, feeder.bus_ids[nonzero], p_kw[nonzero] / 1e3, q_mvar=q_kvar[nonzero] / 1e3)
