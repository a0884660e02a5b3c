"""The XArray kernels run as plain Python (NUMBA_DISABLE_JIT=1) with the same results.

A scenario touching every kind of operation (stores of value and pointer entries, a
multi-index store and split, marks, finds, an allocating array, xa_state walks, the
-ENOMEM protocol of a kernel and a node source) runs in a subprocess without the JIT;
its results must equal those of the same scenario compiled.
"""

from __future__ import annotations

from nojit import both

SCENARIO = r'''
import json
import numpy as np
from memdesc._numba import JIT_DISABLED
from memdesc.lib import _xarray_kernels as K
from memdesc.lib.xarray import (ULONG_MAX, XA_FLAGS_ALLOC, XA_LIMIT, XA_MARK_1, XArray, XaPool,
                                XaState, XaNoMemory)

out = {"jit_disabled": JIT_DISABLED}
xa = XArray()
for i in (0, 1, 63, 64, 4095, 1 << 40, ULONG_MAX):
    xa.store(i, i & ((1 << 63) - 1))
xa.store(7, "obj")
xa.store_order(1 << 20, 9, "multi")
xa.set_mark(64, XA_MARK_1)
xa.set_mark((1 << 20) + 5, XA_MARK_1)
out["load"] = [xa.load(i) for i in (0, 7, 63, 65, (1 << 20) + 511, (1 << 20) + 512, ULONG_MAX)]
out["items"] = [[i, e] for i, e in xa.items()]
out["marked"] = list(xa.keys(mark=XA_MARK_1))
out["find"] = list(xa.find(100, ULONG_MAX, XA_MARK_1)) + list(xa.find_after(1 << 20))
out["order"] = [xa.get_order((1 << 20) + 100), xa.get_order(7)]
out["nodes"] = xa.nodes
xas = XaState(xa, (1 << 20), order=3)
xas.split_alloc("multi", 9)
xas.split("multi", 9)
out["after_split"] = [xa.get_order((1 << 20) + 8), xa.get_mark((1 << 20) + 8, XA_MARK_1)]
xas = XaState(xa, 60)
out["walk"] = [xas.next() for _ in range(6)] + [xas.index]
xas.set(ULONG_MAX)
out["prev"] = [xas.prev() for _ in range(3)]
out["erased"] = [xa.erase(i) for i in (1, 64, ULONG_MAX)]
xa.check()
a = XArray(XA_FLAGS_ALLOC)
out["alloc"] = [a.alloc("p")[1], a.alloc("q")[1], a.alloc_cyclic("r", XA_LIMIT(1, 10), 9)]
a.erase(0)
out["alloc_reuse"] = a.alloc("s")
P, H = xa.pool.arrays, xa.pool.heads
while xa.pool.free_count:
    K.pool_take_free_nb(P)
e = K.xa_store_nb(P, H, np.int64(xa.id), np.int64(1 << 50), np.int64(3))
out["enomem"] = [int(e), xa.pool.want, xa.load(1 << 50)]

class Src:
    def __init__(self):
        self.n = 0
    def alloc_node(self):
        self.n += 1
        return None if self.n > 2 else self.n - 1
    def free_node(self, nid):
        pass

b = XArray(pool=XaPool(source=Src()))
b.store(70, 1)
try:
    b.store(1 << 30, 2)
    out["source"] = "stored"
except XaNoMemory:
    out["source"] = ["XaNoMemory", b.load(70), b.load(1 << 30)]
xa.destroy()
out["destroyed"] = [xa.empty, xa.nodes, xa.pool.live_nodes]
print(json.dumps(out))
'''


def test_kernels_without_jit_match_compiled():
    nojit, jit = both(SCENARIO, timeout=600, nojit_kw={"env": {"PYTHONWARNINGS": "error::RuntimeWarning"}})
    assert nojit.pop("jit_disabled") is True
    assert jit.pop("jit_disabled") is False
    assert nojit == jit
    # independent anchors: what the scenario must produce whatever the mode
    assert jit["load"] == [0, "obj", 63, None, "multi", None, (1 << 63) - 1]
    assert jit["marked"] == [64, 1 << 20]
    assert jit["order"] == [9, 0]
    assert jit["after_split"] == [3, True]
    assert jit["alloc"][:2] == [0, 1] and jit["alloc"][2] == [0, 9, 10]
    assert jit["alloc_reuse"] == [0, 0]
    assert jit["enomem"][0] == (-12 << 2) | 2 and jit["enomem"][2] is None
    assert jit["source"] == ["XaNoMemory", 1, None]
    assert jit["destroyed"] == [True, 0, 0]
