"""A thin MILP model builder on top of HiGHS (highspy), vectorised with numpy.

Variables come in named blocks of any shape (typically ``(prosumer, time)``); a block is a numpy array
of column indices. Affine expressions (:class:`LinExpr`) are arrays of the same shape holding a list of
``(column index array, coefficient array)`` terms plus a constant array; every term contributes one
nonzero per element. Rows ``lb <= expr <= ub`` are collected as COO triplets and converted to a
column-wise (CSC) matrix once, then passed to ``highspy.Highs.passModel``.

Example::

    m = ModelBuilder()
    x = m.add_var("x", (P, T), lb=0, ub=5)
    e = LinExpr.of(x, 2.0) + 1.0
    m.add_rows(e, lb=-np.inf, ub=10.0)
    m.add_cost(LinExpr.of(x, price))
    sol = m.solve()
    sol.value(x)            # (P, T) array
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp


class LinExpr:
    """Array-shaped affine expression ``sum_k coef_k * x[idx_k] + const`` (all arrays of ``shape``)."""

    def __init__(self, shape, terms=None, const=None):
        self.shape = tuple(shape)
        self.terms: list[tuple[np.ndarray, np.ndarray]] = list(terms or [])
        self.const = np.zeros(self.shape) if const is None else np.broadcast_to(const, self.shape).astype(float)

    @classmethod
    def of(cls, idx, coef=1.0) -> "LinExpr":
        """Expression ``coef * x[idx]`` for an index block ``idx`` (coef broadcast to its shape)."""
        idx = np.asarray(idx)
        return cls(idx.shape, [(idx, np.broadcast_to(np.asarray(coef, float), idx.shape))])

    def add_term(self, idx, coef) -> "LinExpr":
        idx = np.broadcast_to(np.asarray(idx), self.shape)
        self.terms.append((idx, np.broadcast_to(np.asarray(coef, float), self.shape)))
        return self

    def __add__(self, other):
        if isinstance(other, LinExpr):
            if other.shape != self.shape:
                raise ValueError(f"LinExpr shapes differ: {self.shape} vs {other.shape}")
            return LinExpr(self.shape, self.terms + other.terms, self.const + other.const)
        return LinExpr(self.shape, self.terms, self.const + np.asarray(other, float))

    __radd__ = __add__

    def __mul__(self, k):
        k = np.asarray(k, float)
        return LinExpr(self.shape, [(i, c * k) for i, c in self.terms], self.const * k)

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-other if isinstance(other, LinExpr) else -np.asarray(other, float))

    def __rsub__(self, other):
        return (-self) + other


@dataclass
class Solution:
    """Result of :meth:`ModelBuilder.solve`: status string, objective, column values, solve seconds,
    the MIP gap reached."""

    status: str
    objective: float
    x: np.ndarray
    seconds: float
    mip_gap: float

    def value(self, idx) -> np.ndarray:
        """Values of a variable block (same shape as the index array)."""
        return self.x[np.asarray(idx)]

    def eval(self, expr: LinExpr) -> np.ndarray:
        """Value of an expression (shape of the expression)."""
        out = expr.const.copy()
        for idx, coef in expr.terms:
            out = out + coef * self.x[idx]
        return out


class ModelBuilder:
    """Collects variable blocks, rows (COO) and a linear cost; builds and solves with HiGHS."""

    def __init__(self):
        self.lb: list[np.ndarray] = []
        self.ub: list[np.ndarray] = []
        self.cost: list[np.ndarray] = []
        self.integer: list[np.ndarray] = []
        self.blocks: dict[str, np.ndarray] = {}
        self.n_col = 0
        self.n_row = 0
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self.row_lb: list[np.ndarray] = []
        self.row_ub: list[np.ndarray] = []
        self.offset = 0.0

    def add_var(self, name: str, shape, lb=0.0, ub=np.inf, cost=0.0, integer: bool = False) -> np.ndarray:
        """Add a block of variables; returns its column indices with shape ``shape``."""
        if name in self.blocks:
            raise ValueError(f"variable block {name!r} already exists")
        shape = tuple(np.atleast_1d(shape)) if not isinstance(shape, tuple) else shape
        n = int(np.prod(shape))
        idx = np.arange(self.n_col, self.n_col + n).reshape(shape)
        self.n_col += n
        lb = np.broadcast_to(np.asarray(lb, float), shape).ravel()
        ub = np.broadcast_to(np.asarray(ub, float), shape).ravel()
        if np.any(lb > ub):
            raise ValueError(f"variable block {name!r}: lb > ub")
        self.lb.append(lb)
        self.ub.append(ub)
        self.cost.append(np.broadcast_to(np.asarray(cost, float), shape).ravel().copy())
        self.integer.append(np.full(n, bool(integer)))
        self.blocks[name] = idx
        return idx

    def add_rows(self, expr: LinExpr, lb=-np.inf, ub=np.inf, mask=None) -> np.ndarray:
        """Add rows ``lb <= expr <= ub`` elementwise (optionally only where ``mask``); returns row ids."""
        keep = np.ones(expr.shape, bool) if mask is None else np.broadcast_to(mask, expr.shape)
        n = int(keep.sum())
        rows = np.full(expr.shape, -1, dtype=np.int64)
        rows[keep] = np.arange(self.n_row, self.n_row + n)
        for idx, coef in expr.terms:
            use = keep & (coef != 0)
            self._rows.append(rows[use])
            self._cols.append(np.asarray(idx)[use])
            self._vals.append(np.asarray(coef)[use])
        lo = np.broadcast_to(np.asarray(lb, float), expr.shape) - expr.const
        hi = np.broadcast_to(np.asarray(ub, float), expr.shape) - expr.const
        self.row_lb.append(lo[keep])
        self.row_ub.append(hi[keep])
        self.n_row += n
        return rows

    def add_cost(self, expr: LinExpr) -> None:
        """Add ``sum(expr)`` to the (minimised) objective."""
        cost = np.concatenate(self.cost) if self.cost else np.zeros(0)
        for idx, coef in expr.terms:
            np.add.at(cost, np.asarray(idx).ravel(), np.asarray(coef).ravel())
        self.cost = [cost]
        self.offset += float(expr.const.sum())

    def build(self) -> highspy.HighsLp:
        lp = highspy.HighsLp()
        lp.num_col_ = self.n_col
        lp.num_row_ = self.n_row
        lp.col_cost_ = np.concatenate(self.cost)
        lp.col_lower_ = np.concatenate(self.lb)
        lp.col_upper_ = np.concatenate(self.ub)
        lp.row_lower_ = np.concatenate(self.row_lb) if self.row_lb else np.zeros(0)
        lp.row_upper_ = np.concatenate(self.row_ub) if self.row_ub else np.zeros(0)
        lp.offset_ = self.offset
        r = np.concatenate(self._rows) if self._rows else np.zeros(0, np.int64)
        c = np.concatenate(self._cols) if self._cols else np.zeros(0, np.int64)
        v = np.concatenate(self._vals) if self._vals else np.zeros(0)
        a = sp.coo_matrix((v, (r, c)), shape=(self.n_row, self.n_col)).tocsc()
        a.sum_duplicates()
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr.astype(np.int32)
        lp.a_matrix_.index_ = a.indices.astype(np.int32)
        lp.a_matrix_.value_ = a.data
        integ = np.concatenate(self.integer)
        if integ.any():
            lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                               for i in integ]
        return lp

    def solve(self, mip_rel_gap: float = 1e-4, time_limit: float | None = None, threads: int = 1,
              output: bool = False) -> Solution:
        """Build and solve; raises RuntimeError if HiGHS finds no feasible solution."""
        h = highspy.Highs()
        h.setOptionValue("output_flag", bool(output))
        h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
        h.setOptionValue("threads", int(threads))
        h.setOptionValue("random_seed", 0)
        if time_limit is not None:
            h.setOptionValue("time_limit", float(time_limit))
        t0 = time.perf_counter()
        h.passModel(self.build())
        h.run()
        secs = time.perf_counter() - t0
        status = h.modelStatusToString(h.getModelStatus())
        info = h.getInfo()
        if info.primal_solution_status != 2:  # 2 = feasible
            raise RuntimeError(f"HiGHS found no feasible solution (status {status})")
        x = np.asarray(h.getSolution().col_value)
        gap = float(info.mip_gap) if np.isfinite(info.mip_gap) else 0.0
        return Solution(status, float(info.objective_function_value), x, secs, gap)
