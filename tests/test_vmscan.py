"""LRU and reclaim (mm/swap.py, mm/memcontrol.py, mm/vmscan.py): the kernel's formulas,
memcg charging, direct reclaim and kswapd, a stateful test against a reference model,
NUMBA_DISABLE_JIT equality."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from memdesc.mm import vmscan as V
from memdesc.mm.machine import Machine
from memdesc.mm.swap import LOG_RECLAIMED, PAGEVEC_SIZE
from memdesc.mm.vmscan import Reclaim
from nojit import call_json

# ------------------------------------------------------------------ the kernel's formulas


def test_int_sqrt_and_inactive_is_low():
    for x in range(0, 2000):
        assert V.int_sqrt(x) == int(np.floor(np.sqrt(x)))
    # below 1 GiB the ratio is 1: inactive < active
    assert V.inactive_is_low_sizes(100, 101)
    assert not V.inactive_is_low_sizes(101, 100)
    # 1 GiB (262144 pages): ratio int_sqrt(10) = 3
    assert V.inactive_is_low_sizes(65536, 196609)        # 65536 * 3 = 196608 < 196609
    assert not V.inactive_is_low_sizes(65536, 196608)
    assert V.inactive_is_low_sizes(65535, 196608)        # 262143 pages: below 1 GiB, ratio 1
    # 10 GiB: ratio int_sqrt(100) = 10
    total = 10 << 18
    ina = total // 11
    assert V.inactive_is_low_sizes(ina, total - ina) == (ina * 10 < total - ina)


def test_scan_fractions_follow_get_scan_count():
    # no cost yet: ap = swappiness, fp = 200 - swappiness
    assert V.scan_fractions(60, 0, 0) == (60, 140)
    # anon_cost 100, file_cost 50: total 150, anon 250, file 200, total 450
    assert V.scan_fractions(60, 100, 50) == (60 * 451 // 251, 140 * 451 // 201)
    assert V.scan_fractions(0, 7, 9)[0] == 0


def _expected_memcg_round(size: int, nr_to_reclaim: int) -> list[tuple[int, int]]:
    """The kernel's do_try_to_free_pages / shrink_lruvec loop over one inactive file list of
    clean, unreferenced order-0 folios, no swap: (priority, nr_requested) per isolation."""
    out, total, prio = [], 0, 12
    while prio >= 0:
        nr = size >> prio
        local = 0
        while nr:
            req = min(nr, 32)
            nr -= req
            out.append((prio, req))
            size -= req
            local += req
            if local >= nr_to_reclaim:   # nr_anon == 0: break
                break
        total += local
        if total >= nr_to_reclaim:
            break
        prio -= 1
    return out


@pytest.fixture(scope="module")
def machine_1g():
    return Machine.create("1G", design="linux", cpus=2)


def _fill_memcg(r: Reclaim, memcg: int, n: int, order: int = 0, mapping: int = 1):
    out = r.add_folios(n, order=order, memcg=memcg, mapping=mapping)
    assert None not in out
    r.drain()
    return out


def test_memcg_round_scans_lruvec_size_shifted_by_priority():
    """The capture's first memcg round (priority 12: 12 pages, 11: 25, 10: 32 + 18, 9: 32 x 3 + 5,
    ...) is the arithmetic of size >> priority in SWAP_CLUSTER_MAX batches."""
    m = Machine.create("1G", design="linux", cpus=2)
    r = Reclaim(m, log_capacity=1 << 14)
    cg = r.memcg_create()
    n = 51850
    _fill_memcg(r, cg, n)
    r.clear_log()
    got = r.reclaim_memcg(cg, 512)
    iso = [(row[10], row[3]) for row in r.state.log[:int(r.state.logn[0])] if row[0] == 7]
    pr = [int(row[10]) for row in r.state.log[:int(r.state.logn[0])] if row[0] == 8]
    want = _expected_memcg_round(n, 512)
    assert [q for _, q in want] == [int(a) for _, a in iso]
    assert pr == [p for p, _ in want]
    assert got == sum(q for _, q in want)
    assert [q for _, q in want][:8] == [12, 25, 32, 18, 32, 32, 32, 5]
    assert r.lru_sizes(cg)["inactive_file"] == n - got
    assert r.check() == "ok"


def test_large_folio_at_the_tail_satisfies_the_scan_in_pages():
    """isolate_lru_folios counts pages: one order-9 folio answers a request of 12 (the capture:
    nr_requested=12 nr_scanned=512 nr_taken=512)."""
    m = Machine.create("1G", design="linux", cpus=2)
    r = Reclaim(m, log_capacity=1 << 12)
    cg = r.memcg_create()
    _fill_memcg(r, cg, 101, order=9)      # 51712 pages: 51712 >> 12 = 12
    r.clear_log()
    assert r.reclaim_memcg(cg, 512) == 512
    rows = [tuple(int(x) for x in row[:8]) for row in r.state.log[:int(r.state.logn[0])]]
    iso = [row for row in rows if row[0] == 7]
    assert len(iso) == 1 and iso[0][3:7] == (12, 512, 0, 512)
    assert sum(1 for row in rows if row[0] == LOG_RECLAIMED) == 1
    assert r.check() == "ok"


# ------------------------------------------------------------------ batches, activation, memcg


def test_lru_add_batch_flushes_at_pagevec_size_and_on_large_folios():
    m = Machine.create("256M", design="linux", cpus=2)
    r = Reclaim(m)
    s = [r.add_folio(mapping=1, index=i) for i in range(PAGEVEC_SIZE - 1)]
    assert r.lru_sizes()["inactive_file"] == 0
    r.add_folio(mapping=1, index=100)
    assert r.lru_sizes()["inactive_file"] == PAGEVEC_SIZE
    # newest at the head: batch order kept
    assert r.folios.lru_list("inactive_file")[-1] == s[0]
    a = r.add_folio(mapping=1, index=200)
    big = r.add_folio(mapping=1, index=512, order=4)
    assert r.lru_sizes()["inactive_file"] == PAGEVEC_SIZE + 1 + 16
    assert r.folios.lru_list("inactive_file")[:2] == [big, a]
    assert r.check() == "ok"


def test_mark_accessed_twice_activates():
    m = Machine.create("256M", design="linux", cpus=2)
    r = Reclaim(m)
    s = r.add_folio(mapping=1, index=0, order=2)        # large: on the list at once
    r.mark_accessed(s)
    assert r.lru_sizes()["active_file"] == 0 and r.ms.flags[s] >> 2 & 1   # PG_referenced
    r.mark_accessed(s)                                  # large: the activate batch moves at once
    assert r.lru_sizes()["active_file"] == 4 and r.vmstat()["pgactivate"] == 4
    # an order-0 folio on a list waits in the per-CPU activate batch
    u = r.add_folio(mapping=1, index=8)
    r.drain()
    r.mark_accessed(u, cpu=1)
    r.mark_accessed(u, cpu=1)
    assert u in r.folios.lru_list("inactive_file") and int(r.state.fbn[1, 1]) == 1
    r.drain(1)
    assert u in r.folios.lru_list("active_file")
    # a folio still in this CPU's lru_add batch is activated in place
    t = r.add_folio(mapping=1, index=16)
    r.mark_accessed(t)
    r.mark_accessed(t)
    assert r.ms.flags[t] >> 8 & 1 and r.ms.lru[t] < 0
    r.drain()
    assert t in r.folios.lru_list("active_file")
    assert r.check() == "ok"


def test_memcg_limit_without_swap_fails_the_charge_and_counts_oom():
    m = Machine.create("256M", design="linux", cpus=2)
    r = Reclaim(m)
    cg = r.memcg_create(limit_pages=128)
    got = [r.add_folio(anon=True, memcg=cg) for _ in range(200)]
    ok = [g for g in got if g is not None]
    assert len(ok) == 128 and got[128] is None
    st_ = r.memcg_stat(cg)
    assert st_["usage"] == 128 and st_["failcnt"] > 0 and st_["oom"] > 0
    assert r.vmstat()["pgscan_anon"] == 0            # no swap: anon is never scanned
    assert r.check() == "ok"


def test_swap_device_lets_memcg_reclaim_anon():
    m = Machine.create("256M", design="linux", cpus=2)
    r = Reclaim(m, swap_pages=1000)
    cg = r.memcg_create(limit_pages=128)
    got = [r.add_folio(anon=True, memcg=cg) for _ in range(300)]
    assert all(g is not None for g in got)
    vm = r.vmstat()
    assert vm["pswpout"] >= 300 - 128 and vm["pgsteal_anon"] == vm["pswpout"]
    assert r.memcg_stat(cg)["usage"] <= 128
    assert r.check() == "ok"


def test_dirty_file_folios_are_activated_not_reclaimed_by_memcg_reclaim():
    m = Machine.create("256M", design="linux", cpus=2)
    r = Reclaim(m)
    cg = r.memcg_create()
    s = _fill_memcg(r, cg, 64)
    for x in s:
        r.set_dirty(x)
    assert r.reclaim_memcg(cg, 32) == 0
    assert r.vmstat()["nr_vmscan_immediate_reclaim"] > 0
    assert r.lru_sizes(cg)["active_file"] > 0
    assert r.check() == "ok"


def test_direct_reclaim_and_kswapd_in_the_allocation_entry():
    """Filling a small machine with page cache: allocations recover by direct reclaim,
    kswapd is woken below the low watermark and sleeps balanced at the high one."""
    m = Machine.create("64M", design="linux", cpus=2)
    r = Reclaim(m)
    got = r.add_folios(40000)
    vm = r.vmstat()
    assert None not in got                  # 160 MiB of page cache through a 64 MiB machine
    assert vm["direct_reclaim"] > 0 and vm["pgsteal_direct"] > 0 and vm["allocstall"] > 0
    assert vm["kswapd_wake"] > 0
    assert r.kswapd() is not None
    assert r.vmstat()["kswapd_sleep"] >= 1 and not r.kswapd_awake
    pa = m.design.state
    assert V.pgdat_balanced(pa, 0, 3)
    assert r.check() == "ok"


def _holes_between_anon(design: str, compaction: bool, hold_free_blocks: bool = False,
                        ) -> tuple[Reclaim, int | None, int]:
    """Memory filled with order-0 anon folios (no swap: reclaim cannot free them), those at odd
    pfns then freed: the free memory is order-0 holes.  Then a THP fault in an madvised VMA
    (GFP_TRANSHUGE: direct reclaim, __GFP_NORETRY) asks for order 9.  ``hold_free_blocks``:
    before the holes are made, order-9 folios are allocated and held until none is left (LLFree's
    fill keeps an entirely free child)."""
    m = Machine.create("64M", design=design, cpus=2)
    r = Reclaim(m, compaction=compaction)
    pa = m.design.state
    free = int(pa.z_free.sum())
    got = [s for s in r.add_folios(free, anon=True) if s is not None]   # the last ones fail: memory is full
    assert len(got) > 0.9 * free
    while hold_free_blocks and r.alloc(order=9, gfp="GFP_TRANSHUGE") is not None:
        pass
    pfn = r.folios.state.pfn
    for s in got:
        if pfn[s] % 2:          # every odd pfn: no two free pages are buddies
            r.delete(s)
    r.drain()
    fails = r.vmstat()["alloc_fail"]
    return r, r.alloc(order=9, gfp="GFP_TRANSHUGE"), r.vmstat()["alloc_fail"] - fails


@pytest.mark.parametrize("design", ["linux", "vmem"])
def test_direct_compaction_in_the_allocation_entry(design):
    """Reclaim cannot form an order-9 block out of order-0 holes between unreclaimable anon
    folios; the slow path's direct compaction (costly order: async compaction before reclaim)
    migrates folios and the THP fault succeeds.  Without compaction the same request fails.
    On vmem every migrated folio's new descriptor is allocated before the old is freed."""
    r0, s0, failed = _holes_between_anon(design, compaction=False)
    assert s0 is None and failed == 1 and r0.compaction.stats()["compact_stall"] == 0 and r0.check() == "ok"
    r, s, failed = _holes_between_anon(design, compaction=True)
    assert failed == 0
    assert s is not None and r.folios.state.order[r.folios._slot(s)] == 9
    cs = r.compaction.stats()
    assert cs["compact_stall"] >= 1 and cs["pages_migrated"] >= 256
    assert r.vmstat()["compact_stall"] >= 1
    if design == "linux":
        assert cs["descriptor_allocations"] == 0
    else:
        assert cs["descriptor_allocations"] >= cs["pages_migrated"]
    assert r.check() == "ok" and r.machine.check() == "ok"


def test_direct_compaction_compiles_and_runs_on_llfree():
    """LLFree registers compaction primitives: its allocation entry compacts.  On this fill it
    does not need to: LLFree's fill ends with 1,019 failed order-0 faults while an entirely
    free child is left (its gets fail at 528 free pages, min watermark 511: not examined here),
    and after the holes the THP fault is served without compaction.  With ``hold_free_blocks``
    the order-9 requests that empty the zone stall in direct compaction, which finds the
    zone unsuitable (nothing scanned) and leaves every state consistent.  Direct compaction that
    migrates on llfree: tests/test_compaction.py::test_direct_compaction_capture_and_deferral."""
    r0, s0, failed0 = _holes_between_anon("llfree", compaction=False, hold_free_blocks=True)
    assert r0.vmstat()["compact_stall"] == 0 and s0 is not None and failed0 == 0
    r, s, failed = _holes_between_anon("llfree", compaction=True, hold_free_blocks=True)
    assert r.compaction is not None and s is not None and failed == 0
    cs = r.compaction.stats()
    assert cs["compact_stall"] >= 1 and cs["compact_migrate_scanned"] == 0
    assert r.check() == "ok" and r.machine.check() == "ok"


# ------------------------------------------------------------------ stateful, against a reference model


class LruReference:
    """The list order of mm/swap.c in plain Python: per-lruvec lists (head first), per-CPU
    lru_add and activate batches, PG_referenced / PG_active."""

    def __init__(self, ncpu):
        self.lists: dict[tuple[int, int], list[int]] = {}
        self.batch = [[[], []] for _ in range(ncpu)]
        self.ref: dict[int, bool] = {}
        self.active: dict[int, bool] = {}
        self.onlru: dict[int, tuple[int, int]] = {}
        self.info: dict[int, tuple[bool, int, int]] = {}   # anon, order, memcg

    def lru_of(self, s):
        anon, _o, m = self.info[s]
        return (m, (0 if anon else 2) + (1 if self.active[s] else 0))

    def _put(self, s):
        key = self.lru_of(s)
        self.lists.setdefault(key, []).insert(0, s)
        self.onlru[s] = key

    def _flush(self, c, w):
        for s in self.batch[c][w]:
            if w == 0:
                self._put(s)
            elif s in self.onlru and not self.active[s]:
                self.lists[self.onlru[s]].remove(s)
                self.active[s] = True
                self._put(s)
        self.batch[c][w] = []

    def _add_batch(self, s, c, w):
        self.batch[c][w].append(s)
        if len(self.batch[c][w]) >= PAGEVEC_SIZE or self.info[s][1] > 0:
            self._flush(c, w)

    def add(self, s, anon, order, memcg, c):
        self.info[s] = (anon, order, memcg)
        self.ref[s] = False
        self.active[s] = False
        self._add_batch(s, c, 0)

    def access(self, s, c):
        if not self.ref[s]:
            self.ref[s] = True
        elif not self.active[s]:
            if s in self.onlru:
                self._add_batch(s, c, 1)
            elif s in self.batch[c][0]:
                self.active[s] = True
            self.ref[s] = False

    def drain(self):
        for c in range(len(self.batch)):
            self._flush(c, 0)
            self._flush(c, 1)

    def remove(self, s):
        if s in self.onlru:
            self.lists[self.onlru.pop(s)].remove(s)
        for c in self.batch:
            for w in c:
                if s in w:
                    w.remove(s)
        for d in (self.info, self.ref, self.active):
            d.pop(s, None)


class ReclaimMachine(RuleBasedStateMachine):
    swap = 0

    @initialize()
    def setup(self):
        self.m = Machine.create("64M", design="linux", cpus=2)
        self.r = Reclaim(self.m, swap_pages=self.swap, log_capacity=1 << 14)
        self.cgs = [0, self.r.memcg_create(limit_pages=300), self.r.memcg_create(limit_pages=2000)]
        self.ref = LruReference(2)
        self.live: list[int] = []
        self.idx = 0

    def _resync(self):
        """After reclaim: the model's lists and flags become the reference's."""
        ms = self.r.ms
        self.ref.lists = {}
        self.ref.onlru = {}
        for m in range(len(self.cgs)):
            for lru in range(4):
                lst = self.r.folios.lru_list(lru, m)
                self.ref.lists[(m, lru)] = lst
                for s in lst:
                    self.ref.onlru[s] = (m, lru)
        for c in range(2):
            for w in range(2):
                self.ref.batch[c][w] = [int(x) for x in self.r.state.fb[c, w, :int(self.r.state.fbn[c, w])]]
        for s in self.live:
            self.ref.active[s] = bool(ms.flags[s] >> 8 & 1)
            self.ref.ref[s] = bool(ms.flags[s] >> 2 & 1)

    @rule(anon=st.booleans(), order=st.sampled_from([0, 0, 0, 2, 4]), cg=st.integers(0, 2), cpu=st.integers(0, 1))
    def add(self, anon, order, cg, cpu):
        self.idx += 1 << 4
        r0 = int(self.r.state.vm[V.VM_MEMCG_RECLAIM] + self.r.state.vm[V.VM_DIRECT_RECLAIM])
        self.r.clear_log()
        s = self.r.add_folio(anon=anon, order=order, memcg=self.cgs[cg], cpu=cpu, mapping=1, index=self.idx)
        reclaimed = int(self.r.state.vm[V.VM_MEMCG_RECLAIM] + self.r.state.vm[V.VM_DIRECT_RECLAIM]) != r0
        if s is not None:
            self.live.append(s)
        if reclaimed:
            if s is not None:
                self.ref.info[s] = (anon, order, self.cgs[cg])
                self.ref.ref[s] = self.ref.active[s] = False
            self._account_reclaim(self._reclaimed())
        elif s is not None:
            self.ref.add(s, anon, order, self.cgs[cg], cpu)

    def _reclaimed(self):
        log = self.r.state.log[:int(self.r.state.logn[0])]
        return [(int(row[1]), int(row[7]), int(row[3])) for row in log if row[0] == LOG_RECLAIMED]

    def _account_reclaim(self, reclaimed):
        for s, file, _order in reclaimed:
            assert s in self.live, "reclaimed a folio nobody added"
            anon, _o, _m = self.ref.info[s]
            assert file == (not anon)
            if anon:
                assert self.swap > 0, "anon reclaimed without a swap device"
            self.live.remove(s)
            self.ref.remove(s)
        self._resync()

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 10**6), cpu=st.integers(0, 1))
    def access(self, i, cpu):
        s = self.live[i % len(self.live)]
        self.r.mark_accessed(s, cpu)
        self.ref.access(s, cpu)

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 10**6))
    def delete(self, i):
        s = self.live.pop(i % len(self.live))
        self.r.delete(s)
        self.ref.drain()
        self.ref.remove(s)

    @rule()
    def drain(self):
        self.r.drain()
        self.ref.drain()

    @rule(cg=st.integers(1, 2), nr=st.sampled_from([1, 32, 100]))
    def reclaim(self, cg, nr):
        self.r.clear_log()
        before = self.r.memcg_stat(self.cgs[cg])["usage"]
        got = self.r.reclaim_memcg(self.cgs[cg], nr)
        rec = self._reclaimed()
        assert got == sum(1 << o for _, _, o in rec)
        self._account_reclaim(rec)
        assert self.r.memcg_stat(self.cgs[cg])["usage"] == before - got

    @invariant()
    def consistent(self):
        if not hasattr(self, "r"):
            return
        assert self.r.check() == "ok"
        for m in range(len(self.cgs)):
            for lru in range(4):
                assert self.r.folios.lru_list(lru, m) == self.ref.lists.get((m, lru), [])
        for c in range(2):
            for w in range(2):
                n = int(self.r.state.fbn[c, w])
                assert list(map(int, self.r.state.fb[c, w, :n])) == self.ref.batch[c][w]


class SwapReclaimMachine(ReclaimMachine):
    swap = 4096


_SETTINGS = settings(max_examples=12, stateful_step_count=40, deadline=None,
                     suppress_health_check=list(HealthCheck))
TestReclaimStateful = ReclaimMachine.TestCase
TestReclaimStateful.settings = _SETTINGS
TestSwapReclaimStateful = SwapReclaimMachine.TestCase
TestSwapReclaimStateful.settings = _SETTINGS


# ------------------------------------------------------------------ NUMBA_DISABLE_JIT equality

def scenario() -> dict:
    """A memcg under pressure with a small swap device, dirty and accessed folios, then page
    cache through the root filling the machine (direct reclaim, kswapd)."""
    from memdesc._numba import JIT_DISABLED

    m = Machine.create("64M", design="linux", cpus=2)
    r = Reclaim(m, swap_pages=64, log_capacity=1 << 14)
    cg = r.memcg_create(limit_pages=200)
    for i in range(600):
        s = r.add_folio(anon=(i % 3 == 0), order=(i % 5 == 0) * 2, memcg=cg, cpu=i % 2, mapping=1, index=4 * i)
        if s is not None and i % 7 == 0:
            r.mark_accessed(s)
            r.mark_accessed(s)
        if s is not None and i % 11 == 0:
            r.set_dirty(s)
    r.add_folios(20000, mapping=2)
    r.kswapd()
    log = [list(map(int, row)) for row in r.state.log[:int(r.state.logn[0])]]
    return {"jit_disabled": JIT_DISABLED, "vm": r.vmstat(), "memcg": r.memcg_stat(cg), "root": r.lru_sizes(0),
            "log": log, "check": r.check()}


def test_numba_disable_jit_equality():
    nojit = call_json("test_vmscan", "scenario", jit=False, timeout=1200)
    jit = scenario()
    assert nojit.pop("jit_disabled") is True and jit.pop("jit_disabled") is False
    assert nojit == jit
    assert jit["check"] == "ok" and jit["vm"]["memcg_reclaim"] > 0 and jit["vm"]["direct_reclaim"] > 0
