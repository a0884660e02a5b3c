"""mm/compaction.py and mm/migrate.py: the kernel's formulas, the scanners, deferral, direct and
proactive compaction, migration through the design, against a reference model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from typer.testing import CliRunner

from memdesc.cli import app
from memdesc.errors import ConfigError
from memdesc.mm import compaction as C
from memdesc.mm import folio as F
from memdesc.mm import gfp as G
from memdesc.mm.machine import Machine
from memdesc.mm.mmzone import PAGEBLOCK_ORDER
from memdesc.mm.page_alloc import dispatch
from memdesc.mm.page_alloc.dispatch import pa_drain
from nojit import both

MOVABLE = "GFP_HIGHUSER_MOVABLE"


def machine(design: str = "linux", mem: str = "32M") -> tuple[Machine, F.Folios, C.Compaction]:
    m = Machine.create(mem, design=design, cpus=2)
    f = F.Folios.of(m)
    return m, f, C.Compaction(f)


def fragment(f: F.Folios, keep_every: int = 2, order: int = 0, limit: int = 100_000) -> list[int]:
    """Fill memory with LRU anon folios of ``order``, then free all but every ``keep_every``-th:
    every pageblock keeps some, so no high-order block is free.  The kept ones are mapped (one
    PTE per page) and the allocation's reference is dropped, as a page fault leaves them."""
    hs = []
    while len(hs) < limit:
        h = f.folio_alloc(gfp=MOVABLE, order=order)
        if h is None:
            break
        f.lru_add(h, "inactive_anon")
        hs.append(h)
    kept = []
    for i, h in enumerate(hs):
        if i % keep_every:
            f.lru_del(h)
            f.put(h)
        else:
            f.map_ptes(h, 0, f.nr_pages(h))
            f.put(h)
            kept.append(h)
    return kept


def free_pages(m: Machine) -> int:
    """NR_FREE_PAGES after draining the per-CPU lists (pcp pages are free but not counted)."""
    pa_drain(m.design.zs)
    return int(np.asarray(m.design.zs.z_free).sum())


# ------------------------------------------------------------------ formulas (mm/vmstat.c, mm/compaction.c)


def test_fragmentation_index_formula():
    # __fragmentation_index(): 1000 - (1000 + free_pages * 1000 / requested) / free_blocks_total
    assert C.__fragmentation_index(9, 1000, 1000, 0) == 1000 - (1000 + 1000 * 1000 // 512) // 1000 == 998
    assert C.__fragmentation_index(4, 64, 8, 0) == 1000 - (1000 + 64 * 1000 // 16) // 8 == 375
    assert C.__fragmentation_index(9, 0, 0, 0) == 0          # no free memory: lack of memory
    assert C.__fragmentation_index(3, 100, 10, 1) == -1000   # a block of the order is free


@pytest.mark.parametrize("design", ["linux", "vmem", "llfree"])
def test_fragmentation_index_and_extfrag_of_a_zone_from_its_free_area(design):
    """The kernel's formulas over the zone's free blocks as /proc/buddyinfo shows them
    (pa_zone_free_area), on every design: vmem's and llfree's nr_free count size classes
    (segments, children) for their watermark tests, which would give other figures."""
    m, f, c = machine(design)
    fragment(f)
    pa = m.design.zs
    pa_drain(pa)
    buddyinfo = m.design.nr_free
    if design != "linux":
        assert not np.array_equal(buddyinfo, np.asarray(pa.nr_free))  # the test tells them apart
    for z in range(pa.z_start.shape[0]):
        nf = [int(x) for x in buddyinfo[z]]
        free = sum(n << o for o, n in enumerate(nf))
        for order in (4, 9):
            suit = sum(n << (o - order) for o, n in enumerate(nf) if o >= order)
            total = sum(nf)
            want = 0 if total == 0 else (-1000 if suit else 1000 - (1000 + free * 1000 // (1 << order)) // total)
            assert C.fragmentation_index(pa, z, order) == want
            ext = 0 if free == 0 else (free - (suit << order)) * 100 // free
            assert C.extfrag_for_order(pa, z, order) == ext


@pytest.mark.parametrize("proactiveness,low,high", [(20, 80, 90), (0, 100, 100), (100, 5, 15), (97, 5, 15)])
def test_fragmentation_score_wmarks(proactiveness, low, high):
    _m, _f, c = machine()
    c.set_sysctl(proactiveness=proactiveness)
    assert C.fragmentation_score_wmark(c.state, True) == low  # max(100 - proactiveness, 5)
    assert C.fragmentation_score_wmark(c.state, False) == high  # min(low + 10, 100)


def test_compaction_suitable_watermark_gap_and_extfrag_threshold():
    m, f, c = machine()
    fragment(f)
    pa = m.design.zs
    z = int(np.argmax(np.asarray(pa.z_managed)))
    # order 9 (costly): low watermark + 2 << 9 at order 0, then the fragmentation index above 500
    fi = int(C.fragmentation_index(pa, z, 9))
    wm = int(pa.wmark[z, 1] + pa.boost[z]) + (2 << 9)
    above = int(pa.z_free[z]) > wm + int(pa.lowmem_reserve[z, pa.z_idx[z]])
    r = int(C.compaction_suitable_result(c.state, pa, z, 9, int(pa.z_idx[z])))
    if not above:
        assert r == C.COMPACT_SKIPPED
    else:
        assert r == (C.COMPACT_NOT_SUITABLE_ZONE if 0 <= fi <= 500 else C.COMPACT_CONTINUE)
    assert above and fi > 500 and r == C.COMPACT_CONTINUE  # this machine: fragmented, plenty free
    c.set_sysctl(extfrag_threshold=1000)   # every failure is "lack of memory": not suitable
    assert C.compaction_suitable_result(c.state, pa, z, 9, int(pa.z_idx[z])) == C.COMPACT_NOT_SUITABLE_ZONE
    # order 3 is not costly: no fragmentation index test
    assert C.compaction_suitable_result(c.state, pa, z, 3, int(pa.z_idx[z])) == C.COMPACT_CONTINUE


def test_deferral_follows_defer_compaction():
    _m, _f, c = machine()
    cs = c.state
    z = 1
    assert not C.compaction_deferred(cs, z, 9)          # never failed
    C.defer_compaction(cs, z, 9)                        # shift 1: skip 1 of the next 2
    assert c.zone_state(z)["compact_order_failed"] == 9
    assert C.compaction_deferred(cs, z, 9)
    assert not C.compaction_deferred(cs, z, 9)
    assert not C.compaction_deferred(cs, z, 8)          # below compact_order_failed: never deferred
    for _ in range(10):
        C.defer_compaction(cs, z, 9)
    assert c.zone_state(z)["compact_defer_shift"] == C.COMPACT_MAX_DEFER_SHIFT
    skipped = sum(bool(C.compaction_deferred(cs, z, 9)) for _ in range(64))
    assert skipped == 63                                # 1 << 6 considered, the 64th runs
    C.compaction_defer_reset(cs, z, 9, True)
    st_ = c.zone_state(z)
    assert st_["compact_defer_shift"] == 0 and st_["compact_considered"] == 0 and st_["compact_order_failed"] == 10


# ------------------------------------------------------------------ full compaction


@pytest.mark.parametrize("design", ["linux", "vmem", "llfree"])
def test_compact_memory_moves_folios_up_and_frees_pageblocks(design):
    m, f, c = machine(design)
    kept = fragment(f)
    pinned = kept[3]
    f.pin(pinned)
    pin_pfn = f.pfn(pinned)
    free0 = free_pages(m)
    o9_before = C.fragmentation_index(m.design.zs, 1, 9)
    statuses = c.compact_memory()
    assert statuses == [C.COMPACT_COMPLETE] * len(statuses)
    s = c.stats()
    runs = c.zone_runs()
    for r in runs:  # both scanners ran to their meeting pageblock
        assert r.migrate_pfn_begin == r.start_pfn
        assert r.free_pfn_begin == ((r.end_pfn - 1) >> PAGEBLOCK_ORDER) << PAGEBLOCK_ORDER
        assert r.free_pfn_end >> PAGEBLOCK_ORDER <= r.migrate_pfn_end >> PAGEBLOCK_ORDER
        assert r.status == "complete" and r.sync
    assert s["pages_migrated"] > 0.3 * len(kept)
    assert s["pages_migrated"] == c.migrate_stats()["succeeded_pages"]
    assert f.pfn(pinned) == pin_pfn                       # pinned folios are not migrated
    # the free pages are the same pages (descriptor slabs aside), now in large blocks
    free1 = free_pages(m)
    if design == "linux":
        assert free1 == free0 and s["descriptor_allocations"] == 0
    else:
        assert s["descriptor_allocations"] == s["pages_migrated"]  # order-0 folios: one descriptor each
        assert abs(free1 - free0) <= 64
    assert C.fragmentation_index(m.design.zs, 1, 9) == -1000 and o9_before > 500
    assert f.check() == "ok" and m.check() == "ok"
    assert f.op_stats()["migrate"]["free_path_allocations"] == 0


def test_skip_bits_make_a_second_pass_skip_blocks():
    m, f, c = machine()
    fragment(f, keep_every=2)
    for h in list(f.lru_list("inactive_anon")):
        f.pin(h)                      # nothing can move: every block scanned is marked skip
    cs, ms, ss, pa = c._states()
    z = 1
    C.compact_control_init(cs, pa, z, 9, 1, G.GFP_KERNEL, 1, int(pa.z_idx[z]), True, True, False, False, False, 0)
    C.compact_zone(cs, ms, ss, pa)
    nskip = int(((np.asarray(pa.pb) & 0x8) != 0).sum())
    assert nskip > 0 and c.stats()["pages_migrated"] == 0
    scanned = c.stats()["compact_migrate_scanned"]
    C.compact_control_init(cs, pa, z, 9, 1, G.GFP_KERNEL, 1, int(pa.z_idx[z]), True, True, False, False, False, 0)
    C.compact_zone(cs, ms, ss, pa)   # skip hints honoured: the marked blocks are not scanned again
    assert c.stats()["compact_migrate_scanned"] - scanned < scanned // 4


@pytest.mark.parametrize("design", ["vmem"])
def test_descriptor_failures_fail_migrations_and_change_nothing(design):
    m, f, c = machine(design)
    kept = fragment(f)
    pfns = {h: f.pfn(h) for h in kept}
    f.slab.state.scfg[1] = 1 << 53   # failslab: every descriptor allocation fails from now on
    c.compact_memory()
    s = c.stats()
    assert s["pages_migrated"] == 0 and s["descriptor_failures"] > 0
    assert all(r.status == "contended" for r in c.zone_runs())  # -ENOMEM before the scanners met
    assert {h: f.pfn(h) for h in kept} == pfns
    assert f.check() == "ok" and m.check() == "ok"


@pytest.mark.parametrize("design", ["linux", "llfree"])
def test_direct_compaction_capture_and_deferral(design):
    m, f, c = machine(design)
    fragment(f)
    pa = m.design.zs
    gfp = "GFP_TRANSHUGE"
    z = int(np.flatnonzero(np.asarray(pa.z_managed) > 0)[-1])  # the highest zone: first in the zonelist
    assert m.design.nr_free[z, 9:].sum() == 0
    st0, cap = c.try_to_compact_pages(gfp, 9, prio=C.COMPACT_PRIO_SYNC_FULL)
    assert st0 == C.COMPACT_SUCCESS
    runs = c.zone_runs()
    assert runs[0].zone == z and runs[-1].status == "success"
    # llfree: the highest zone completes without a free order-9 block (its pageblocks follow the
    # classes of 16 MiB trees: few are MOVABLE migration targets on 32 MiB), the next succeeds
    assert [r.status for r in runs] == (["success"] if design == "linux" else ["complete", "success"])
    if cap >= 0:  # a captured block is the caller's allocation: not free
        assert cap % 512 == 0 and F.core.owner_order(int(pa.owner[cap])) == 9
        assert c.stats()["compact_captured"] == 1
    else:
        assert m.design.nr_free[z, 9:].sum() > 0
    assert c.stats()["compact_stall"] == 1 and c.stats()["compact_success"] == 1
    s = c.stats()
    assert s["pages_migrated"] > 0
    assert s["descriptor_allocations"] == (0 if design == "linux" else s["pages_migrated"])
    assert f.check() == "ok" and m.check() == "ok"
    # a machine where nothing can move: compaction completes without success and defers the zone
    m2, f2, c2 = machine(design)
    for h in fragment(f2):
        f2.pin(h)
    r, cap = c2.try_to_compact_pages(gfp, 9, prio=C.COMPACT_PRIO_SYNC_LIGHT)
    assert cap == -1 and c2.zone_runs()[0].zone == z and c2.zone_runs()[0].status == "complete"
    assert c2.zone_state(z)["compact_defer_shift"] == 1 and c2.stats()["pages_migrated"] == 0
    runs = len(c2.zone_runs())
    c2.try_to_compact_pages(gfp, 9, prio=C.COMPACT_PRIO_SYNC_LIGHT)
    assert c2.stats()["compact_deferred"] >= 1      # the zone is skipped this time
    assert all(r.zone != z for r in c2.zone_runs()[runs:])
    c2.try_to_compact_pages(gfp, 9, prio=C.COMPACT_PRIO_SYNC_FULL)   # SYNC_FULL ignores deferral
    assert any(r.zone == z for r in c2.zone_runs()[runs:])
    assert c2.try_to_compact_pages("GFP_NOIO", 9)[0] == C.COMPACT_SKIPPED  # no __GFP_IO: may not compact
    assert f2.check() == "ok" and m2.check() == "ok"


def test_kcompactd_proactive_compaction_lowers_the_score():
    m, f, c = machine(mem="256M")
    fragment(f)
    pa = m.design.zs
    c.set_sysctl(proactiveness=0)
    assert not c.kcompactd_timer()                       # proactiveness 0: never
    c.set_sysctl(proactiveness=30)                       # marks: low 70, high 80
    before = int(C.fragmentation_score_node(c.state, pa, 0))
    assert before > 80
    assert c.kcompactd_timer()
    after = int(C.fragmentation_score_node(c.state, pa, 0))
    assert after < before and c.stats()["proactive_runs"] == 1
    assert f.check() == "ok"


# ------------------------------------------------------------------ reference model


class CompactionMachine(RuleBasedStateMachine):
    """Allocate file folios (each with a unique page-cache identity), pin, unpin, free and
    compact; the reference model is each identity's pages and pin state.  Compaction may move
    any unpinned folio (or split a large one that finds no block of its order: the pieces keep
    the identity), never a pinned one, never loses or duplicates a page, never changes the free
    page count (linux), migrates exactly the pages it reports, and every check() stays "ok"."""

    design = "linux"

    def __init__(self):
        super().__init__()
        self.m, self.f, self.c = machine(self.design, "32M")
        self.ref: dict[int, tuple[int, bool]] = {}   # id -> (pages, pinned)
        self.next_id = 1

    def _by_id(self) -> dict[int, list[int]]:
        ms = self.f.state
        top = int(ms.meta[F.MM_TOP])
        out: dict[int, list[int]] = {}
        for s in range(top):
            if int(ms.mtype[s]) == F.MD_FILE:
                out.setdefault(int(ms.mapping[s]), []).append(s)
        return out

    def _pages(self, slots) -> set[int]:
        return {p for s in slots for p in range(self.f.pfn(s), self.f.pfn(s) + self.f.nr_pages(s))}

    @rule(order=st.sampled_from([0, 0, 0, 1, 2, 3, 5]), n=st.integers(1, 40))
    def alloc(self, order, n):
        for _ in range(n):
            h = self.f.folio_alloc(gfp=MOVABLE, order=order, anon=False)
            if h is None:
                return
            self.f.add_to_page_cache(h, self.next_id, 0)   # ref: 1 + one per page
            self.f.lru_add(h, "inactive_file")
            self.f.put(h)                                  # the page cache's references only
            self.ref[self.next_id] = (1 << order, False)
            self.next_id += 1

    @rule(data=st.data())
    def free_some(self, data):
        ids = sorted(self.ref)
        if not ids:
            return
        pick = data.draw(st.lists(st.sampled_from(ids), max_size=20, unique=True))
        by = self._by_id()
        for i in pick:
            if self.ref[i][1]:
                continue
            for h in by[i]:
                self.f.lru_del(h)
                self.f.remove_from_page_cache(h)      # its last references: freed
                assert not F.folio_live(self.f.state, np.int64(h))
            del self.ref[i]

    @rule(data=st.data(), unpin=st.booleans())
    def pin_or_unpin(self, data, unpin):
        by = self._by_id()
        ids = [i for i, (_n, p) in self.ref.items() if p == unpin and len(by[i]) == 1]
        if not ids:
            return
        i = data.draw(st.sampled_from(sorted(ids)))
        h = by[i][0]
        if unpin:
            self.f.unpin(h)
        else:
            self.f.pin(h)
        self.ref[i] = (self.ref[i][0], not unpin)

    @rule()
    def compact(self):
        pages0 = {i: self._pages(s) for i, s in self._by_id().items()}
        free0 = free_pages(self.m)
        mig0 = self.c.stats()["pages_migrated"]
        self.c.compact_memory()
        pages1 = {i: self._pages(s) for i, s in self._by_id().items()}
        moved = {i: len(pages1[i] - pages0[i]) for i in pages1}
        assert all(moved[i] == 0 for i in moved if self.ref[i][1])          # pinned folios stay
        assert sum(moved.values()) == self.c.stats()["pages_migrated"] - mig0
        if self.design == "linux":
            assert free_pages(self.m) == free0

    @invariant()
    def consistent(self):
        by = self._by_id()
        assert set(by) == set(self.ref)
        for i, slots in by.items():
            assert sum(self.f.nr_pages(s) for s in slots) == self.ref[i][0]
            if self.ref[i][1]:
                assert len(slots) == 1 and self.f.maybe_dma_pinned(slots[0])
        assert self.f.check() == "ok"
        assert self.m.check() == "ok"


CompactionMachine.TestCase.settings = settings(max_examples=12, stateful_step_count=12, deadline=None,
                                               suppress_health_check=[HealthCheck.too_slow])
TestCompactionLinux = CompactionMachine.TestCase


class VmemCompactionMachine(CompactionMachine):
    design = "vmem"


VmemCompactionMachine.TestCase.settings = CompactionMachine.TestCase.settings
TestCompactionVmem = VmemCompactionMachine.TestCase


# ------------------------------------------------------------------ NUMBA_DISABLE_JIT equality


def test_nojit_gives_the_same_compaction():
    code = (
        "import json, numpy as np\n"
        "from memdesc.mm.machine import Machine\n"
        "from memdesc.mm import folio as F, compaction as C\n"
        "m = Machine.create('32M', design='vmem', cpus=1)\n"
        "f = F.Folios.of(m)\n"
        "hs = []\n"
        "while True:\n"
        "    h = f.folio_alloc(gfp='GFP_HIGHUSER_MOVABLE', order=len(hs) % 3)\n"
        "    if h is None: break\n"
        "    f.lru_add(h, 'inactive_anon'); f.map_ptes(h, 0, f.nr_pages(h)); f.put(h); hs.append(h)\n"
        "for h in hs[1::2]:\n"
        "    f.lru_del(h); f.unmap_ptes(h, 0, f.nr_pages(h))\n"
        "c = C.Compaction(f)\n"
        "r = c.compact_memory()\n"
        "print(json.dumps([r, c.stats(), c.events().tolist(), np.asarray(m.design.zs.nr_free).tolist(), f.check()]))\n")
    outs = both(code, timeout=900)
    assert outs[0] == outs[1] and outs[0][-1] == "ok" and outs[0][1]["pages_migrated"] > 0


def test_cli_errors_name_the_problem(tmp_path):
    r = CliRunner().invoke(app, ["compact"])
    assert r.exit_code == 2 and "capture directory" in r.output
    r = CliRunner().invoke(app, ["compact", str(tmp_path), "--when", "during"])
    assert r.exit_code == 2 and "--when must be before or after" in r.output
    r = CliRunner().invoke(app, ["compact", str(tmp_path)])   # not a capture: no snapshot files
    assert r.exit_code == 2 and "before.zoneinfo" in r.output


def test_a_design_without_compaction_primitives_is_refused_by_name(monkeypatch):
    """Every design registers pa_free_block / pa_isolate_free (dispatch.COMPACTION_PRIMITIVES);
    one that did not would be refused by name."""
    for design in ("linux", "radix", "vmem", "llfree"):
        C.check_compactable(Machine.create("64M", design=design).design.zs)
    zs = Machine.create("64M", design="llfree").design.zs
    table = dict(dispatch._REGISTRY[type(zs)])
    del table["pa_isolate_free"]
    monkeypatch.setitem(dispatch._REGISTRY, type(zs), table)
    with pytest.raises(ConfigError, match="'llfree' cannot be compacted"):
        C.check_compactable(zs)
