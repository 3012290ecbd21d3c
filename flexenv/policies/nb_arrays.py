"""Numba array helpers shared by the EMS kernels (:mod:`flexenv.policies.ems`, :mod:`flexenv.policies.ems_lp`)."""

from __future__ import annotations

import numba as nb
from numba.core import types as nbt
from numba.extending import intrinsic


@intrinsic
def _data_pointer(typingctx, arr):
    """Pointer to the data of a C-contiguous array (see :func:`borrow`)."""
    if not isinstance(arr, nbt.Array) or arr.layout != "C":
        return None  # typing error: only C-contiguous arrays can be borrowed

    def codegen(context, builder, signature, args):
        return context.make_array(signature.args[0])(context, builder, args[0]).data

    return nbt.CPointer(arr.dtype)(arr), codegen


@nb.njit(cache=True)
def borrow(a):
    """The same array without a reference count, for the work arrays of the inner loops.

    Numba updates an array's reference count (an atomic operation) each time the array is passed to
    a function or a view of it is taken; in the DP's inner loops and in the interior-point iterations
    that was a large part of the run time. A borrowed view has none. It must not outlive ``a``: borrow
    only a function's own arguments (the caller keeps them alive during the call), and never return
    or store the view."""
    return nb.carray(_data_pointer(a), a.shape)
