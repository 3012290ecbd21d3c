"""Exact elimination of buses that cannot carry an injection, for the power-flow sweep.

Most buses of a real LV feeder only connect cables: the IEEE European LV feeder has 907 buses but
55 loads. Buses that carry no injection make the network between the load buses a *linear* passive
network, which is eliminated exactly (no approximation, only rounding):

* **dead ends**: a subtree with no load bus carries only charging (and shunt) current, so it is a
  constant admittance at its junction. Folded bottom-up, branch by branch:
  ``Y_in = (y_p + Y_c / (1 + z Y_c)) / |tap|^2`` with ``Y_c = y_c + Y_child``.
* **pass-through chains**: a bus with no load and exactly one branch leading on to load buses lies on
  a chain of pi sections. The chain's ABCD matrix (sections ``[[1 + z y_c, z], [y_p + y_c + z y_p y_c,
  1 + z y_p]]`` times node shunts ``[[1, 0], [Y, 1]]``) is reciprocal, so it is exactly one pi section
  with ``z = B``, ``y_p = (D - 1) / B``, ``y_c = (A - 1) / B`` -- the kernel's branch model with unequal
  end shunts. A tap (the transformer) may only sit on the first section of a chain; a bus whose next
  section has a tap is kept.

Kept ("reduced") nodes: the slack, every node holding a load bus, and every junction of two or more
branches leading to load buses. After the sweep on the reduced tree, every eliminated node's voltage is
a fixed linear combination of two solved voltages, ``V = a V[src1] + b V[src2]``:

* chain node between kept nodes ``u`` (top) and ``w`` (bottom): from the ABCD walk up from ``w``,
  ``V = c V_w + d I_w`` with ``I_w = (V_u / tap - A V_w) / B``;
* dead-end node: ``V = V_parent / tap / (1 + z Y_c)`` (``b = 0``), parents first.

With all node voltages back, line loadings, losses and the slack power are computed on the original
branches as without reduction, so the public result is the same to within the solver tolerance.

"Load buses" are ``feeder.load_buses``; a feeder without any (e.g. a bare network) is not reduced.
"""

from __future__ import annotations

import numpy as np

from flexenv.physics.feeder import Feeder


def node_branch_params(feeder: Feeder) -> dict:
    """Per sweep node ``k >= 1``, the branch feeding it, oriented parent -> k (cached on the feeder).

    ``z``: series impedance, ``tap``: complex ratio on the parent side (1 for lines and for lines fed
    from their to end), ``y_p``/``y_c``: shunts on the parent/child side of the series impedance,
    ``own``: bus shunts of the node (``own[0]`` included). All p.u., complex, shape ``(n_node,)``.
    """
    cache = feeder._kernel_cache
    if "params" in cache:
        return cache["params"]
    n_node = feeder.n_node
    z = np.zeros(n_node, dtype=np.complex128)
    tap = np.ones(n_node, dtype=np.complex128)
    y_p = np.zeros(n_node, dtype=np.complex128)
    y_c = np.zeros(n_node, dtype=np.complex128)
    own = np.zeros(n_node, dtype=np.complex128)
    np.add.at(own, feeder.bus_node, feeder.bus_shunt_pu)
    e = feeder.node_branch[1:]
    forward = feeder.node_edge_forward[1:]
    z[1:] = feeder.branch_r_pu[e] + 1j * feeder.branch_x_pu[e]
    tap[1:] = np.where(forward, feeder.branch_tap[e], 1.0)  # a line fed from its to end: tap 1
    y_p[1:] = np.where(forward, feeder.branch_y_from_pu[e], feeder.branch_y_to_pu[e])
    y_c[1:] = np.where(forward, feeder.branch_y_to_pu[e], feeder.branch_y_from_pu[e])
    cache["params"] = {"z": z, "tap": tap, "y_p": y_p, "y_c": y_c, "own": own}
    return cache["params"]


def _section(z, y_p, y_c) -> np.ndarray:
    """ABCD matrix of a pi section: (V_in, I_in) = M @ (V_out, I_out)."""
    return np.array([[1 + z * y_c, z], [y_p + y_c + z * y_p * y_c, 1 + z * y_p]])


def reduce_tree(feeder: Feeder) -> dict:
    """The reduced tree and the recovery coefficients (see the module docstring), built once.

    Returns a dict with, for the ``n_red`` kept nodes in sweep order: ``full`` (full node index),
    ``parent`` (reduced index), ``z``, ``tap``, ``y_p``, ``y_c`` (equivalent branch), ``own`` (node shunt
    incl. folded dead ends); for the eliminated nodes in increasing full index: ``rec_node``,
    ``rec_src`` (2, n_elim) full node indices and ``rec_coef`` (2, n_elim) complex ``a, b``.
    """
    prm = node_branch_params(feeder)
    parent = feeder.node_parent
    n_node = feeder.n_node
    is_load = np.zeros(n_node, dtype=bool)
    is_load[feeder.bus_node[feeder.load_buses]] = True
    live = is_load.copy()  # subtree holds a load bus
    live[0] = True
    for k in range(n_node - 1, 0, -1):
        live[parent[k]] |= live[k]
    n_live_children = np.zeros(n_node, dtype=np.int64)
    live_child = np.full(n_node, -1)
    for k in range(1, n_node):
        if live[k]:
            n_live_children[parent[k]] += 1
            live_child[parent[k]] = k
    kept = is_load.copy()
    kept[0] = True
    for k in range(1, n_node):
        if live[k] and not kept[k]:
            # a pass-through node only if exactly one branch leads on, and it has no tap
            kept[k] = n_live_children[k] != 1 or prm["tap"][live_child[k]] != 1

    # Fold dead ends into their parents' shunts, children first (parent[k] < k).
    shunt = prm["own"].copy()
    rec_coef = {}
    for k in range(n_node - 1, 0, -1):
        if not live[k]:
            y_end = prm["y_c"][k] + shunt[k]  # admittance behind the series impedance
            shunt[parent[k]] += (prm["y_p"][k] + y_end / (1 + prm["z"][k] * y_end)) / abs(prm["tap"][k]) ** 2
            rec_coef[k] = (parent[k], 0, 1 / prm["tap"][k] / (1 + prm["z"][k] * y_end), 0j)

    kept_nodes = np.flatnonzero(kept)
    red_index = np.full(n_node, -1, dtype=np.int64)
    red_index[kept_nodes] = np.arange(len(kept_nodes))
    n_red = len(kept_nodes)
    out = {"full": kept_nodes, "parent": np.full(n_red, -1, dtype=np.int64), "own": shunt[kept_nodes],
           "z": np.zeros(n_red, dtype=np.complex128), "tap": np.ones(n_red, dtype=np.complex128),
           "y_p": np.zeros(n_red, dtype=np.complex128), "y_c": np.zeros(n_red, dtype=np.complex128)}
    for r, k in enumerate(kept_nodes[1:], start=1):
        # walk up from k through eliminated nodes to the kept node u, cascading ABCD matrices
        m = _section(prm["z"][k], prm["y_p"][k], prm["y_c"][k])
        chain = []  # (node, c, d): V_node = c V_k + d I_k
        x = k
        while not kept[parent[x]]:
            x = parent[x]
            chain.append((x, m[0, 0], m[0, 1]))
            m = _section(prm["z"][x], prm["y_p"][x], prm["y_c"][x]) @ np.array([[1, 0], [shunt[x], 1]]) @ m
        a, b = m[0, 0], m[0, 1]
        u = parent[x]
        t_inv = 1 / prm["tap"][x]
        out["parent"][r] = red_index[u]
        out["tap"][r] = prm["tap"][x]
        if chain:  # the equivalent pi of the chain
            out["z"][r], out["y_p"][r], out["y_c"][r] = b, (m[1, 1] - 1) / b, (a - 1) / b
        else:  # a single section: keep its parameters as they are (no rounding)
            out["z"][r], out["y_p"][r], out["y_c"][r] = prm["z"][k], prm["y_p"][k], prm["y_c"][k]
        for node, c, d in chain:
            # I_k = (V_u / tap - a V_k) / b
            rec_coef[node] = (u, k, d / b * t_inv, c - d * a / b)
    elim = np.array(sorted(rec_coef), dtype=np.int64)
    out["rec_node"] = elim
    out["rec_src"] = np.array([[rec_coef[k][0] for k in elim], [rec_coef[k][1] for k in elim]],
                              dtype=np.int64).reshape(2, len(elim))
    out["rec_coef"] = np.array([[rec_coef[k][2] for k in elim], [rec_coef[k][3] for k in elim]],
                               dtype=np.complex128).reshape(2, len(elim))
    return out
