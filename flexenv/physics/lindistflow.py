"""LinDistFlow: bus voltages and branch flows as linear functions of bus injections.

For the MILP oracle and the DSO's forecasts. On the radial feeder of :mod:`flexenv.physics.feeder`
(node tree, branch into node ``k`` with series impedance ``r_k + j x_k`` behind the tap ``tap_k``)::

    P_k = sum of p over the subtree of k,     Q_k likewise          (losses neglected)
    v_k = v_parent / |tap_k|^2 - 2 (r_k P_k + x_k Q_k)               (v = |V|^2, p.u.)

Shunts (cable charging, transformer magnetising, bus shunts) are taken as constant loads at the
reference voltage, so they only shift the constant terms. The squared voltage is converted to a
magnitude by linearising ``sqrt`` around a reference magnitude per bus: the no-load magnitude behind
the taps by default, or a given operating point (e.g. the last AC solution). The result is exactly
linear: ``vm_pu = vm0_pu + dvm_dp @ p_kw + dvm_dq @ q_kvar``.

Its error against the AC power flow is what :func:`lindistflow_error` reports (see
``tests/test_lindistflow.py`` for the bound that is checked on the pandapower LV networks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flexenv.physics.feeder import Feeder
from flexenv.physics.powerflow import F_FP, F_SH_IM, F_SH_RE, kernel_arrays, solve


@dataclass(frozen=True, eq=False)
class LinDistFlow:
    """Linear model of one feeder. Shapes: ``n_bus`` buses (feeder order), ``n_branch`` branches
    (lines in ``feeder.line_ids`` order, then the transformer). Injections in kW/kvar, consumption
    positive, shape ``(n_bus,)`` or ``(batch, n_bus)``.

    vm0_pu: (n_bus,) voltage magnitude with no injection.
    dvm_dp_pu_per_kw, dvm_dq_pu_per_kvar: (n_bus, n_bus) sensitivities [bus, injection bus].
    v2_0_pu, dv2_dp_pu_per_kw, dv2_dq_pu_per_kvar: the same for the squared magnitude (exactly the
        LinDistFlow equations, without the sqrt linearisation; use these for voltage limits as
        ``vmin**2 <= v2 <= vmax**2``).
    flow_incidence: (n_branch, n_bus) 1 where the bus is downstream of the branch, so
        ``branch_p_kw = branch_p0_kw + flow_incidence @ p_kw`` (flow leaving the slack side end).
    branch_p0_kw, branch_q0_kvar: (n_branch,) flows with no injection (shunts).
    branch_s_rated_kva: (n_branch,) apparent power that is 100 % loading at the reference voltage of
        the sending end.
    """

    feeder: Feeder
    vm_ref_pu: np.ndarray
    vm0_pu: np.ndarray
    dvm_dp_pu_per_kw: np.ndarray
    dvm_dq_pu_per_kvar: np.ndarray
    v2_0_pu: np.ndarray
    dv2_dp_pu_per_kw: np.ndarray
    dv2_dq_pu_per_kvar: np.ndarray
    flow_incidence: np.ndarray
    branch_p0_kw: np.ndarray
    branch_q0_kvar: np.ndarray
    branch_s_rated_kva: np.ndarray

    def vm_pu(self, p_kw, q_kvar) -> np.ndarray:
        """Linear voltage magnitudes, shape like the injections."""
        return self.vm0_pu + np.asarray(p_kw) @ self.dvm_dp_pu_per_kw.T + np.asarray(q_kvar) @ self.dvm_dq_pu_per_kvar.T

    def branch_p_kw(self, p_kw) -> np.ndarray:
        return self.branch_p0_kw + np.asarray(p_kw) @ self.flow_incidence.T

    def branch_q_kvar(self, q_kvar) -> np.ndarray:
        return self.branch_q0_kvar + np.asarray(q_kvar) @ self.flow_incidence.T

    def branch_loading_pct(self, p_kw, q_kvar) -> np.ndarray:
        """|S| of the linear flows over the rating (not linear itself: the oracle uses polygons)."""
        s_kva = np.hypot(self.branch_p_kw(p_kw), self.branch_q_kvar(q_kvar))
        return 100.0 * s_kva / self.branch_s_rated_kva


def lindistflow(feeder: Feeder, vm_ref_pu=None) -> LinDistFlow:
    """Build the LinDistFlow model of ``feeder``.

    vm_ref_pu: optional (n_bus,) magnitudes of an operating point to linearise around (e.g. the last
        AC solution's ``vm_pu``); default: the slack voltage behind the transformer taps.
    """
    _, node_f, bus_node, _ = kernel_arrays(feeder)
    n_node, n_bus = feeder.n_node, feeder.n_bus
    parent = feeder.node_parent
    kw_to_pu = 1e-3 / feeder.s_base_mva
    tap_abs2 = np.ones(n_node)
    r = np.zeros(n_node)
    x = np.zeros(n_node)
    for k in range(1, n_node):
        e = feeder.node_branch[k]
        if feeder.node_edge_forward[k]:
            tap_abs2[k] = abs(feeder.branch_tap[e]) ** 2
        r[k], x[k] = feeder.branch_r_pu[e], feeder.branch_x_pu[e]

    # Reference magnitude per node.
    vm_ref_node = np.empty(n_node)
    vm_ref_node[0] = feeder.slack_vm_pu
    for k in range(1, n_node):
        vm_ref_node[k] = vm_ref_node[parent[k]] / np.sqrt(tap_abs2[k])
    if vm_ref_pu is not None:
        vm_ref_pu = np.asarray(vm_ref_pu, dtype=np.float64)
        if vm_ref_pu.shape != (n_bus,) or not np.all(np.isfinite(vm_ref_pu) & (vm_ref_pu > 0)):
            raise ValueError(f"vm_ref_pu must be a positive finite array of shape ({n_bus},); "
                             f"got shape {vm_ref_pu.shape}")
        vm_ref_node[bus_node] = vm_ref_pu  # auxiliary nodes keep the no-load value
        vm_ref_node[0] = feeder.slack_vm_pu

    # Subtree incidence: which buses feed through the branch into node k.
    subtree = np.zeros((n_node, n_bus))
    subtree[bus_node, np.arange(n_bus)] = 1.0
    shunt_p = node_f[F_SH_RE] * vm_ref_node**2  # constant shunt loads at the reference voltage (p.u.)
    shunt_q = -node_f[F_SH_IM] * vm_ref_node**2
    p0 = shunt_p.copy()
    q0 = shunt_q.copy()
    for k in range(n_node - 1, 0, -1):  # children before parents
        subtree[parent[k]] += subtree[k]
        p0[parent[k]] += p0[k]
        q0[parent[k]] += q0[k]

    # Squared voltages, down the tree.
    v2_0 = np.empty(n_node)
    dv2_dp = np.zeros((n_node, n_bus))
    dv2_dq = np.zeros((n_node, n_bus))
    v2_0[0] = feeder.slack_vm_pu**2
    for k in range(1, n_node):
        pk = parent[k]
        v2_0[k] = v2_0[pk] / tap_abs2[k] - 2.0 * (r[k] * p0[k] + x[k] * q0[k])
        dv2_dp[k] = dv2_dp[pk] / tap_abs2[k] - 2.0 * r[k] * kw_to_pu * subtree[k]
        dv2_dq[k] = dv2_dq[pk] / tap_abs2[k] - 2.0 * x[k] * kw_to_pu * subtree[k]

    # sqrt linearised at the reference: vm ~ vm_ref + (v2 - vm_ref^2) / (2 vm_ref)
    half_inv = 0.5 / vm_ref_node
    vm0 = vm_ref_node + (v2_0 - vm_ref_node**2) * half_inv
    dvm_dp = dv2_dp * half_inv[:, None]
    dvm_dq = dv2_dq * half_inv[:, None]

    # Branch flows at the sending end; edge k is branch node_branch[k].
    branch_of = feeder.node_branch[1:]
    nodes = np.arange(1, n_node)
    incidence = np.zeros((feeder.n_branch, n_bus))
    incidence[branch_of] = subtree[nodes]
    s_kw = feeder.s_base_mva * 1e3
    p0_kw = np.zeros(feeder.n_branch)
    q0_kvar = np.zeros(feeder.n_branch)
    p0_kw[branch_of] = p0[nodes] * s_kw
    q0_kvar[branch_of] = q0[nodes] * s_kw
    # node_f[F_FP] is loading % per p.u. current at the sending end; |I| = |S| / vm
    s_rated = np.zeros(feeder.n_branch)
    s_rated[branch_of] = 100.0 / node_f[F_FP, nodes] * vm_ref_node[parent[nodes]] * s_kw

    return LinDistFlow(
        feeder=feeder, vm_ref_pu=vm_ref_node[bus_node], vm0_pu=vm0[bus_node],
        dvm_dp_pu_per_kw=dvm_dp[bus_node], dvm_dq_pu_per_kvar=dvm_dq[bus_node],
        v2_0_pu=v2_0[bus_node], dv2_dp_pu_per_kw=dv2_dp[bus_node], dv2_dq_pu_per_kvar=dv2_dq[bus_node],
        flow_incidence=incidence, branch_p0_kw=p0_kw, branch_q0_kvar=q0_kvar, branch_s_rated_kva=s_rated,
    )


def lindistflow_error(model: LinDistFlow, p_kw, q_kvar) -> dict:
    """Largest errors of the linear model against the AC power flow for the given injections.

    Returns ``max_dvm_pu`` (bus voltage magnitude), ``max_dloading_pct`` (branch loading, percentage
    points; AC loading is current-based, the linear one uses |S| at the reference voltage) and
    ``max_dp_flow_kw`` (active flow at the sending end of each branch)."""
    ac = solve(model.feeder, p_kw, q_kvar)
    if not np.all(ac.converged):
        raise ValueError("the AC power flow did not converge for these injections")
    lin_vm = model.vm_pu(p_kw, q_kvar)
    ac_loading = np.concatenate([ac.line_loading_pct, ac.trafo_loading_pct], axis=-1)
    lin_loading = model.branch_loading_pct(p_kw, q_kvar)
    ac_p = _ac_sending_p_kw(model.feeder, ac.v_pu)
    return {
        "max_dvm_pu": float(np.abs(lin_vm - ac.vm_pu).max()),
        "max_dloading_pct": float(np.abs(lin_loading - ac_loading).max()),
        "max_dp_flow_kw": float(np.abs(model.branch_p_kw(p_kw) - ac_p).max()),
    }


def _ac_sending_p_kw(feeder: Feeder, v_pu) -> np.ndarray:
    """AC active power entering each branch at its sending (slack-side) end, kW."""
    v = np.atleast_2d(v_pu)
    out = np.zeros((v.shape[0], feeder.n_branch))
    rep = feeder.bus_fused_to == np.arange(feeder.n_bus)
    v_node = np.zeros((v.shape[0], feeder.n_node), dtype=np.complex128)
    v_node[:, feeder.bus_node[rep]] = v[:, rep]
    for k in range(1, feeder.n_node):
        e = feeder.node_branch[k]
        pk = feeder.node_parent[k]
        forward = feeder.node_edge_forward[k]
        tap = feeder.branch_tap[e] if forward else 1.0
        y_send = feeder.branch_y_from_pu[e] if forward else feeder.branch_y_to_pu[e]
        y_recv = feeder.branch_y_to_pu[e] if forward else feeder.branch_y_from_pu[e]
        y_series = 1.0 / complex(feeder.branch_r_pu[e], feeder.branch_x_pu[e])
        vp = v_node[:, pk]
        if feeder.bus_node.tolist().count(k) == 0:  # auxiliary open-end node: no load, solve for V
            vk = vp / tap * y_series / (y_series + y_recv)
        else:
            vk = v_node[:, k]
        v_int = vp / tap
        i_send = ((v_int - vk) * y_series + y_send * v_int) / np.conj(tap)
        out[:, e] = (vp * np.conj(i_send)).real * feeder.s_base_mva * 1e3
    return out if np.ndim(v_pu) == 2 else out[0]
