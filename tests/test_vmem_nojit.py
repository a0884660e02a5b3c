"""The vmem kernels give the same results as plain Python (NUMBA_DISABLE_JIT=1)."""

from __future__ import annotations

import numpy as np

from memdesc.lib.vmem import Policy, SegType, Vmem
from nojit import call_json, jsonable


def workload() -> dict:
    """A small deterministic mix of every kernel path; returns what it observed."""
    rng = np.random.default_rng(2001)
    res: dict = {}
    for policy in Policy:
        a = Vmem("nojit", 0, 1 << 20, quantum=64, tags=4)
        live: list[tuple[int, int]] = []
        got = []
        for _ in range(120):
            if live and rng.random() < 0.4:
                p, n = live.pop(int(rng.integers(len(live))))
                a.free(p, n)
            else:
                n = int(rng.integers(1, 5000))
                p = a.alloc(n, policy, nosleep=True)
                got.append(p)
                if p is not None:
                    live.append((p, n))
        if policy != Policy.NEXTFIT:
            got.append(a.xalloc(100, 256, 64, 1024, 4096, 1 << 19, policy, nosleep=True))
            got.append(a.xalloc(300, 1024, policy=policy, nosleep=True))  # the aligned fast path
        a.check()
        ops = np.array([300, 5000, -1, 64, -2, 7000, -4], np.int64)
        got += a.run(ops, policy).tolist()
        if policy != Policy.NEXTFIT:
            got += a.run(ops, policy, aligns=np.array([256, 2048, 0, 128, 0, 1024, 0])).tolist()
        a.check()
        res[policy.name] = got
        res[policy.name + "_stats"] = {k: v for k, v in a.stats().items() if k != "qcache"}
    heap = Vmem("heap", 1 << 20, 1 << 20, quantum=4096)
    va = Vmem("va", quantum=4096, source=heap, qcache_max=2 * 4096)
    ptrs = [va.alloc(n) for n in (4096, 8192, 3 * 4096, 4096)]
    res["import"] = ptrs + [heap.size(SegType.ALLOC)]
    for p, n in zip(ptrs, (4096, 8192, 3 * 4096, 4096), strict=True):
        va.free(p, n)
    va.reap()
    va.check()
    res["released"] = [heap.size(SegType.ALLOC), va.size()]
    return res


def test_plain_python_kernels_agree_with_numba():
    plain = call_json("test_vmem_nojit", "workload", jit=False, timeout=300)
    assert plain == jsonable(workload())
