"""Hypothesis state machine over the vmem design: check() after every step, with and
without descriptor fault injection; frees never fail and never allocate."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as S
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from memdesc.mm.machine import Machine
from memdesc.mm.page_alloc import core
from memdesc.mm.page_alloc import vmem_arena as va

GFPS = ["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_COMP", "GFP_KERNEL|__GFP_RECLAIMABLE", "GFP_ATOMIC",
        "GFP_DMA32", "GFP_NOWAIT"]


class VmemMachine(RuleBasedStateMachine):
    MEM = "64M"
    LAYOUT = "x86_64"
    RATE = 0.0

    def __init__(self):
        super().__init__()
        self.m = Machine.create(self.MEM, design="vmem", layout=self.LAYOUT, cpus=2,
                                fail_descriptor_alloc=self.RATE)
        self.live: list[tuple[int, int]] = []
        self.managed = int(self.m.design.zs.z_managed.sum())

    @rule(gfp=S.sampled_from(GFPS), order=S.sampled_from([0, 0, 0, 1, 2, 3, 4, 8, 9, 10]),
          cpu=S.integers(0, 1), n=S.integers(1, 40))
    def alloc(self, gfp, order, cpu, n):
        for _ in range(n):
            pfn = self.m.alloc_pages(gfp, order, cpu)
            if pfn is not None:
                self.live.append((pfn, order))

    @precondition(lambda self: self.live)
    @rule(data=S.data(), cpu=S.integers(0, 1), n=S.integers(1, 40))
    def free(self, data, cpu, n):
        vm = self.m.design.state.vm
        for _ in range(min(n, len(self.live))):
            i = data.draw(S.integers(0, len(self.live) - 1))
            pfn, order = self.live.pop(i)
            before = int(vm[va.V_DESC_ALLOCS])
            self.m.free_pages(pfn, order, cpu)  # raises if a free ever fails
            assert int(vm[va.V_DESC_ALLOCS]) == before

    @rule()
    def drain(self):
        self.m.drain_all_pages()

    @invariant()
    def consistent(self):
        assert self.m.check() == "ok"
        zs = self.m.design.zs
        live_pages = sum(1 << o for _, o in self.live)
        accounted = int(zs.z_free.sum() + zs.pcp[:, :, core.PCP_COUNT].sum()) + live_pages \
            + int(zs.vm[va.V_NDPAGES])
        assert accounted == self.managed
        assert self.m.stats()["free_path_allocations"] == 0


class VmemFaultMachine(VmemMachine):
    RATE = 0.2


class VmemI386Machine(VmemMachine):
    MEM = "1100M"
    LAYOUT = "i386"
    RATE = 0.05


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestVmem = VmemMachine.TestCase
TestVmem.settings = settings(max_examples=20, stateful_step_count=30, **_SETTINGS)
TestVmemFaults = VmemFaultMachine.TestCase
TestVmemFaults.settings = settings(max_examples=15, stateful_step_count=30, **_SETTINGS)
TestVmemI386 = VmemI386Machine.TestCase
TestVmemI386.settings = settings(max_examples=6, stateful_step_count=20, **_SETTINGS)
