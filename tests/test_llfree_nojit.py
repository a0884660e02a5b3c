"""The LLFree kernels give the same results as plain Python (NUMBA_DISABLE_JIT=1)."""

from __future__ import annotations

import hashlib

import numpy as np

from memdesc.lib.llfree import HUGE_ORDER, TREE_SIZE, Classing, LLFree
from nojit import call_json, jsonable


def workload() -> dict:
    """A small deterministic mix of every kernel path; returns what it observed."""
    rng = np.random.default_rng(2023)
    res: dict = {}
    for name, classing, free_reserve in (("simple", Classing.simple(2), True), ("movable", Classing.movable(3), False)):
        a = LLFree(5 * TREE_SIZE - 300, classing, free_reserve=free_reserve)
        live: list[tuple[int, int]] = []
        got = []
        for i in range(700):
            u = rng.random()
            if live and u < 0.45:
                f, o = live.pop(int(rng.integers(len(live))))
                a.put(f, o, None, int(rng.integers(0, 2)))
            elif u < 0.47:
                a.drain()
            else:
                order = int(rng.choice([0, 0, 0, 1, 3, 7, 8, HUGE_ORDER, HUGE_ORDER + 1]))
                frame = int(rng.integers(0, a.frames >> order)) << order if u > 0.95 else None
                local = None if u > 0.9 else int(rng.integers(0, 2))
                r = a.get_classed(order, None, local, frame=frame if frame is None or
                                  frame + (1 << order) <= a.frames else None)
                got.append(r)
                if r is not None:
                    live.append((r[0], order))
            if i % 100 == 0:
                a.validate()
        huge = next((f for f, o in live if o == HUGE_ORDER), None)
        if huge is not None:
            a.put(huge + 5, 0)  # split
        a.change_tree(None, classing.default, TREE_SIZE, cls=0)
        ops = np.array([0, 9, 0, -1, 2, -3, -2, 0, -8], np.int64)
        got.append(a.run(ops, locals=1).tolist())
        a.validate()
        res[name] = {"got": got, "stats": list(a.stats()), "tree_stats": a.tree_stats().free_frames,
                     "counters": a.counters(), "reservations": [list(r) for r in a.reservations()],
                     "state": hashlib.sha256(a.w.tobytes()).hexdigest()}
    return res


def test_plain_python_kernels_agree_with_numba():
    plain = call_json("test_llfree_nojit", "workload", jit=False, timeout=600, warnings_as_errors=True)
    jit = jsonable(workload())
    assert plain == jit
    assert sum(r is not None for r in jit["movable"]["got"][:-1]) > 250
