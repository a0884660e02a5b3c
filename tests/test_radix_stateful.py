"""Hypothesis state machine over the ``radix`` design, against a trivially correct model.

The reference model is a set of live allocations and a per-pfn ownership array: an
allocation must land on pages that are neither allocated nor tree-node memory, inside a
zone the gfp mask allows; every managed page is free, on a per-CPU list, allocated or node
memory.  ``check()`` (deques, trees, node pool, buddy state) runs after every step.  Both
node policies, on a small x86-64 machine and on an i386 machine where a rule exhausts
lowmem so that HighMem frees hit the wall.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as S
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from memdesc.mm.machine import Machine
from memdesc.mm.mmzone import MAX_PAGE_ORDER
from memdesc.mm.page_alloc import core
from memdesc.mm.page_alloc import radix as rx

GFPS = ["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_COMP", "GFP_KERNEL|__GFP_RECLAIMABLE", "GFP_ATOMIC",
        "GFP_NOWAIT", "GFP_USER"]
HIGHMEM_OK = {"GFP_HIGHUSER_MOVABLE|__GFP_COMP"}


class RadixMachine(RuleBasedStateMachine):
    MEM = "64M"
    LAYOUT = "x86_64"
    POLICY = "consume"

    def __init__(self):
        super().__init__()
        self.m = Machine.create(self.MEM, design=f"radix:{self.POLICY}", layout=self.LAYOUT, cpus=2)
        self.live: list[tuple[int, int]] = []
        self.owned = np.zeros(self.m.max_pfn, np.bool_)
        self.zone_of = np.full(self.m.max_pfn, -1, np.int64)
        for i, z in enumerate(self.m.zones):
            if z.spanned:
                self.zone_of[z.start_pfn:z.end_pfn] = i
        self.highmem = {i for i, z in enumerate(self.m.zones) if z.name == "HighMem"}
        self.managed = int(self.m.design.zs.z_managed.sum())

    def _node_mask(self) -> np.ndarray:
        st = self.m.design.state
        mask = np.zeros(self.m.max_pfn, np.bool_)
        for b in range(int(st.rx[rx.RX_NBLOCKS])):
            p, o = int(st.nb_pfn[b]), int(st.nb_order[b])
            mask[p:p + (1 << o)] = True
        return mask

    def _alloc(self, gfp, order, cpu):
        pfn = self.m.alloc_pages(gfp, order, cpu)
        if pfn is None:
            return False
        n = 1 << order
        assert pfn % n == 0
        assert not self.owned[pfn:pfn + n].any(), f"allocation {pfn:#x}/{order} overlaps a live one"
        zi = int(self.zone_of[pfn])
        assert zi >= 0 and (zi not in self.highmem or gfp in HIGHMEM_OK)
        self.owned[pfn:pfn + n] = True
        self.live.append((pfn, order))
        return True

    @rule(gfp=S.sampled_from(GFPS), order=S.sampled_from([0, 0, 0, 1, 2, 3, 4, 9, 10]),
          cpu=S.integers(0, 1), n=S.integers(1, 40))
    def alloc(self, gfp, order, cpu, n):
        for _ in range(n):
            self._alloc(gfp, order, cpu)

    @rule(n=S.integers(1000, 15000))
    def fill(self, n):
        """Many order-0 user pages (HighMem first on i386): enough that freeing them needs
        more tree nodes than any preloaded spare holds."""
        for _ in range(n):
            if not self._alloc("GFP_HIGHUSER_MOVABLE|__GFP_COMP", 0, 1):
                break

    @rule(gfp=S.sampled_from(["GFP_KERNEL", "GFP_ATOMIC"]))
    def exhaust(self, gfp):
        """Kernel allocations until they fail, largest blocks first (lowmem runs out)."""
        for order in range(MAX_PAGE_ORDER, -1, -1):
            while self._alloc(gfp, order, 0):
                pass

    @precondition(lambda self: self.live)
    @rule(data=S.data(), cpu=S.integers(0, 1), n=S.integers(1, 200) | S.just(20000), high_first=S.booleans())
    def free(self, data, cpu, n, high_first):
        if high_first or n > 200:  # in a random order (buddies rarely merge); HighMem first: the wall
            order = np.random.default_rng(data.draw(S.integers(0, 2**32 - 1))).permutation(len(self.live))
            self.live = [self.live[i] for i in order]
            if high_first:
                self.live.sort(key=lambda t: int(self.zone_of[t[0]]) in self.highmem)
        for _ in range(min(n, len(self.live))):
            i = len(self.live) - 1 if high_first or n > 200 else data.draw(S.integers(0, len(self.live) - 1))
            pfn, order = self.live.pop(i)
            self.m.free_pages(pfn, order, cpu)  # a free never fails: at worst it stalls
            self.owned[pfn:pfn + (1 << order)] = False

    @rule()
    def drain(self):
        self.m.drain_all_pages()

    @invariant()
    def consistent(self):
        assert self.m.check() == "ok"
        zs = self.m.design.zs
        nodes = self._node_mask()
        assert not (nodes & self.owned).any(), "tree-node memory handed out"
        assert int(nodes.sum()) == self.m.design.node_pages()
        live_pages = int(self.owned.sum())
        accounted = int(zs.z_free.sum() + zs.pcp[:, :, core.PCP_COUNT].sum()) + live_pages + int(nodes.sum())
        assert accounted == self.managed
        ns = self.m.design.node_stats()
        if self.POLICY == "reserve":
            assert ns["free_path_allocations"] == 0 and ns["free_stalls"] == 0
        if not self.highmem:  # every zone directly mapped: a free can always be completed
            assert ns["free_stalls"] == 0 and ns["parked_now"] == 0


class RadixReserveMachine(RadixMachine):
    POLICY = "reserve"


class RadixI386Machine(RadixMachine):
    MEM = "1000M"
    LAYOUT = "i386"


class RadixI386ReserveMachine(RadixI386Machine):
    POLICY = "reserve"


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestRadixConsume = RadixMachine.TestCase
TestRadixConsume.settings = settings(max_examples=20, stateful_step_count=30, **_SETTINGS)
TestRadixReserve = RadixReserveMachine.TestCase
TestRadixReserve.settings = settings(max_examples=20, stateful_step_count=30, **_SETTINGS)
TestRadixI386Consume = RadixI386Machine.TestCase
TestRadixI386Consume.settings = settings(max_examples=15, stateful_step_count=20, **_SETTINGS)
TestRadixI386Reserve = RadixI386ReserveMachine.TestCase
TestRadixI386Reserve.settings = settings(max_examples=15, stateful_step_count=20, **_SETTINGS)
