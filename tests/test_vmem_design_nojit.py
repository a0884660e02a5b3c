"""The vmem design's kernels run as plain Python (NUMBA_DISABLE_JIT=1) with the same results.

A small i386 machine (DMA, Normal, HighMem) goes through boot, pcp and direct allocations
of every order, frees, a drain, fault injection and take; the memdescs, descriptor pool,
counters and check() must be identical with and without the JIT.
"""

from __future__ import annotations

from nojit import both

SCENARIO = r'''
import hashlib, json
import numpy as np
from memdesc._numba import JIT_DISABLED
from memdesc.mm.machine import Machine

out = {"jit_disabled": JIT_DISABLED}
m = Machine.create("1200M", design="vmem", layout="i386", cpus=2, fail_descriptor_alloc=0.05)
d = m.design
rng = np.random.default_rng(7)
live = []
gfps = ["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_COMP", "GFP_KERNEL|__GFP_RECLAIMABLE", "GFP_ATOMIC"]
res = []
for i in range(700):
    if live and rng.random() < 0.45:
        p, o = live.pop(int(rng.integers(len(live))))
        m.free_pages(p, o, cpu=int(rng.integers(2)))
    else:
        o = int(rng.choice([0, 0, 1, 2, 3, 5, 9, 10]))
        p = m.alloc_pages(gfps[int(rng.integers(4))], o, cpu=int(rng.integers(2)))
        res.append(-1 if p is None else p)
        if p is not None:
            live.append((p, o))
    if i == 350:
        m.drain_all_pages()
blk = d.free_blocks()
out["take"] = [m.take(int(blk[-1, 0]), 0), m.take(int(blk[-1, 0]), 0)]
out["allocs"] = res
out["check"] = m.check()
out["stats"] = m.stats()
out["desc"] = d.descriptor_stats()
out["memdesc"] = hashlib.sha1(d.state.memdesc.tobytes()).hexdigest()
out["buddyinfo"] = d.nr_free.tolist()
print(json.dumps(out))
'''


def test_vmem_same_results_without_jit():
    nojit, jit = both(SCENARIO, timeout=900)
    assert nojit.pop("jit_disabled") is True
    assert jit.pop("jit_disabled") is False
    assert nojit["check"] == "ok"
    assert nojit["desc"]["injected_failures"] > 0 and nojit["stats"]["free_path_allocations"] == 0
    assert nojit == jit
