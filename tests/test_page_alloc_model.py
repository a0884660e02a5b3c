"""Stateful property tests of the page allocator against a trivially correct reference.

The reference is a dict of live allocations (pfn -> order).  Whatever the allocator's
placement policy, it must hand out aligned, in-zone, non-overlapping blocks from the
zones the gfp allows, refuse every invalid free without changing state, keep ``check()``
clean after every step, and account for every managed page.  The same workload run with
and without numba must give identical results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from memdesc.errors import DoubleFree, InvalidPfn, NotAllocationHead, OrderMismatch
from memdesc.mm.machine import Machine
from memdesc.mm.page_alloc import core

GFPS = {
    "GFP_KERNEL": None,  # highest zone: Normal
    "GFP_HIGHUSER_MOVABLE|__GFP_COMP": None,
    "GFP_KERNEL|__GFP_RECLAIMABLE": None,
    "GFP_ATOMIC": None,
    "GFP_DMA32": None,
    "GFP_DMA": None,
    "GFP_NOWAIT|__GFP_NOWARN": None,
}


class AllocatorMachine(RuleBasedStateMachine):
    layout = "x86_64"
    mem = "96M"

    @initialize(pcp=st.booleans())
    def boot(self, pcp):
        self.m = Machine.create(self.mem, layout=self.layout, pcp=pcp)
        self.live: dict[int, int] = {}
        self.managed = int(self.m.design.zs.z_managed.sum())
        zt = self.m.layout.zone_types
        self.zone_idx = [zt.index(z.ztype) for z in self.m.zones]

    def _allowed_zone_idx(self, gfp: str) -> int:
        from memdesc.mm.machine import to_gfp

        return int(self.m.design.zs.gfp_zone_table[to_gfp(gfp) & 0xF])

    @rule(gfp=st.sampled_from(sorted(GFPS)), order=st.integers(0, 10), cpu=st.integers(0, 1))
    def alloc(self, gfp, order, cpu):
        p = self.m.alloc_pages(gfp, order, cpu)
        if p is None:
            return
        assert p % (1 << order) == 0, "allocation not naturally aligned"
        zi = self.m.layout.zone_of_pfn(p)
        assert zi >= 0 and self.m.layout.zone_of_pfn(p + (1 << order) - 1) == zi, "allocation crosses a zone"
        assert self.zone_idx[zi] <= self._allowed_zone_idx(gfp), f"{gfp} got a page from {self.m.zones[zi].name}"
        for q, o in self.live.items():
            assert p + (1 << order) <= q or q + (1 << o) <= p, "allocations overlap"
        owner = self.m.design.zs.owner
        assert not (owner[p:p + (1 << order)] == core.OWNER_RESERVED).any(), "allocated a reserved page"
        self.live[p] = order

    @precondition(lambda self: self.live)
    @rule(data=st.data(), cpu=st.integers(0, 1))
    def free(self, data, cpu):
        p = data.draw(st.sampled_from(sorted(self.live)))
        self.m.free_pages(p, self.live.pop(p), cpu)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free_with_wrong_order(self, data):
        p = data.draw(st.sampled_from(sorted(self.live)))
        wrong = (self.live[p] + 1) % 11
        before = self.m.buddyinfo().to_dict()
        try:
            self.m.free_pages(p, wrong)
        except OrderMismatch:
            pass
        else:
            raise AssertionError("freeing with the wrong order succeeded")
        assert self.m.buddyinfo().to_dict() == before

    @rule(pfn=st.integers(0, 96 * 256 + 64))
    def free_random_pfn(self, pfn):
        if pfn in self.live:
            return
        before = (self.m.buddyinfo().to_dict(), self.m.free_pages_count())
        try:
            self.m.free_pages(pfn, 0)
        except (DoubleFree, NotAllocationHead, InvalidPfn, OrderMismatch):
            pass
        else:
            raise AssertionError(f"free of pfn {pfn:#x}, never allocated, succeeded")
        assert (self.m.buddyinfo().to_dict(), self.m.free_pages_count()) == before

    @rule()
    def drain(self):
        self.m.drain_all_pages()

    @invariant()
    def consistent(self):
        assert self.m.check() == "ok"
        zs = self.m.design.zs
        pcp_pages = int(zs.pcp[:, :, core.PCP_COUNT].sum())
        allocated = sum(1 << o for o in self.live.values())
        assert self.m.free_pages_count() + pcp_pages + allocated == self.managed


TestAllocator = AllocatorMachine.TestCase
TestAllocator.settings = settings(max_examples=25, stateful_step_count=40, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])


class I386AllocatorMachine(AllocatorMachine):
    layout = "i386"
    mem = "1G"

    @rule(gfp=st.sampled_from(["GFP_HIGHUSER", "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL"]), order=st.integers(0, 10))
    def alloc_user(self, gfp, order):
        self.alloc(gfp, order, 0)

    @rule(pfn=st.integers(0, 1 << 18))
    def free_random_pfn(self, pfn):
        super().free_random_pfn(pfn)


TestI386Allocator = I386AllocatorMachine.TestCase
TestI386Allocator.settings = settings(max_examples=10, stateful_step_count=30, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])


_SCRIPT = r"""
import json, sys
from memdesc.mm.machine import Machine
from memdesc.sim.churn import Churn
m = Machine.create("64M")
c = Churn(m, orders="mix", gfp="mix", occupancy=0.6, seed=3)
r = c.run(3000)
print(json.dumps({"buddyinfo": m.buddyinfo().to_dict(), "stats": m.stats(), "check": m.check(),
                  "allocs": r.alloc, "failed": r.alloc_failed}))
"""


def _run(env_extra):
    env = dict(os.environ, **env_extra)
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_same_results_with_and_without_numba():
    jit = _run({})
    nojit = _run({"NUMBA_DISABLE_JIT": "1"})
    assert jit["check"] == "ok" and nojit["check"] == "ok"
    assert jit == nojit


def test_churn_is_reproducible_and_keeps_occupancy():
    from memdesc.sim.churn import Churn

    results = []
    for _ in range(2):
        m = Machine.create("256M")
        c = Churn(m, order=0, occupancy=0.5, seed=11)
        r = c.run(20000)
        results.append((m.buddyinfo().to_dict(), r.alloc, r.free))
        assert abs(r.occupancy_final - 0.5) < 0.01
        assert r.free_errors == 0 and m.check() == "ok"
        assert c.free_all() == 0
        m.drain_all_pages()
        assert m.check() == "ok"
    assert results[0] == results[1]


def test_sampling_table_follows_distribution():
    from memdesc.sim.churn import sampling_table

    t = sampling_table({0: 0.5, 3: 0.25, 9: 0.25})
    assert len(t) == 1024
    assert list(np.bincount(t, minlength=10)[[0, 3, 9]]) == [512, 256, 256]
