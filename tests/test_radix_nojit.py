"""The ``radix`` kernels run as plain Python (NUMBA_DISABLE_JIT=1) with the same results.

An i386 machine per node policy: HighMem pages allocated, lowmem exhausted by kernel and
atomic allocations, the HighMem pages freed in a random order on both CPUs (consume: free
stalls, parked entries), a few lowmem blocks freed (consumed for nodes, parked entries
inserted), a drain.  Both words of every struct page, the deques, counters, buddyinfo and
check() must be identical with and without the JIT.
"""

from __future__ import annotations

from nojit import both

SCENARIO = r'''
import hashlib, json
import numpy as np
from memdesc._numba import JIT_DISABLED
from memdesc.mm.machine import Machine
out = {"jit_disabled": JIT_DISABLED}
for pol in ("consume", "reserve", "host"):
    m = Machine.create("1000M", design=f"radix:{pol}", layout="i386", cpus=2)
    rng = np.random.default_rng(5)
    high = [m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0, cpu=1) for _ in range(9000)]
    low = []
    for gfp in ("GFP_KERNEL", "GFP_ATOMIC"):
        for order in range(10, -1, -1):
            while (p := m.alloc_pages(gfp, order)) is not None:
                low.append((p, order))
    for i in rng.permutation(len(high)):
        m.free_pages(high[i], 0, cpu=int(rng.integers(2)))
    for p, o in low[-20:]:
        m.free_pages(p, o)
    m.drain_all_pages()
    d = m.design
    out[pol] = {"high": high, "check": m.check(), "stats": m.stats(), "nodes": d.node_stats(),
                "memmap": hashlib.sha1(d.state.memmap.tobytes()).hexdigest(),
                "dq": hashlib.sha1(d.state.dq.tobytes()).hexdigest(), "nr_free": d.nr_free.tolist()}
print(json.dumps(out))
'''


def test_radix_same_results_without_jit():
    nojit, jit = both(SCENARIO, timeout=900)
    assert nojit.pop("jit_disabled") is True
    assert jit.pop("jit_disabled") is False
    assert all(nojit[p]["check"] == "ok" for p in ("consume", "reserve", "host"))
    assert nojit["consume"]["nodes"]["free_stalls"] > 0
    assert nojit["consume"]["nodes"]["parked_entries_inserted_later"] > 0
    assert nojit["reserve"]["nodes"]["free_path_allocations"] == 0
    assert nojit == jit
