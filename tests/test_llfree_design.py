"""The ``llfree`` page-allocator design (memdesc.mm.page_alloc.llfree): what the conformance
suite (tests/test_conformance.py, which runs it like every design) does not look at --
LLFree's own structures under the zones, its classes and per-CPU reservations, the page
word and its pcp links, the counters, exact placement corner cases."""

from __future__ import annotations

import numpy as np

from memdesc.lib import _llfree_kernels as K
from memdesc.lib.llfree import Classing, LLFree
from memdesc.mm import memmap
from memdesc.mm.machine import Machine
from memdesc.mm.page_alloc import core, dispatch
from memdesc.mm.page_alloc.llfree import LLFreeDesign
from memdesc.mm.page_alloc.llfree_zone import LT_PCP
from memdesc.sim.replay import sample_path
from memdesc.sim.snapshot import machine_from_snapshot


def zone_of(m: Machine, pfn: int) -> int:
    return int(core.page_zone(m.design.state, pfn))


def tree_of(m: Machine, pfn: int) -> int:
    z = zone_of(m, pfn)
    return (pfn - int(m.design.state.llz[z, 2])) >> K.TREE_ORDER


def reservations(m: Machine, z: int) -> list[tuple[int, int, int]]:
    """(class, cpu, tree) of every present reservation of zone z."""
    w = m.design.zone_llfree(z)
    out = []
    for c in range(3):
        for i in range(int(w[K.M_CLS_LEN + c])):
            r = int(w[K.slot_word(w, c, i)])
            if r & 1:
                out.append((c, i, K.row_tree(K.res_row(r))))
    return out


def test_one_llfree_per_zone_metadata_from_llfree():
    m = Machine.create("4G", design="llfree", cpus=4)
    d = m.design
    assert isinstance(d, LLFreeDesign) and d.words == 1 and d.struct_page_bytes == 8
    total = 0
    for z, zl in enumerate(m.zones):
        if not zl.spanned:
            assert d.state.llz[z, 1] == 0
            continue
        w = d.zone_llfree(z)
        base = int(d.state.llz[z, 2])
        assert base % K.TREE_SIZE == 0 and base <= zl.start_pfn < base + int(w[K.M_FRAMES])
        assert int(w[K.M_FRAMES]) >= zl.end_pfn - base
        assert K.k_validate(w)[0] == 0
        total += LLFree.metadata_size(Classing.movable(4), int(w[K.M_FRAMES])).total
    assert d.freelist_bytes() == total + d.state.pcph.shape[0] * 16
    assert sum(d.llfree_metadata().values()) == total
    # LLFree's own metadata is a fraction of a byte per page; the page word is 8
    assert total / d.npages < 0.2
    assert d.metadata_bytes()["memmap"] == 8 * d.npages


def test_classes_and_per_cpu_reservations_without_pcp():
    """--no-pcp (llfree-linux): order-0 allocations come from the CPU's reservation of the
    request's class; CPUs and classes hold different trees; a free by the holding CPU goes
    back into its reservation."""
    m = Machine.create("1G", design="llfree", cpus=2, pcp=False)
    a0 = [m.alloc_pages("GFP_KERNEL", 0, cpu=0) for _ in range(4)]
    a1 = [m.alloc_pages("GFP_KERNEL", 0, cpu=1) for _ in range(4)]
    mv = [m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0, cpu=0) for _ in range(4)]
    assert len({tree_of(m, p) for p in a0}) == 1 and len({tree_of(m, p) for p in a1}) == 1
    assert tree_of(m, a0[0]) != tree_of(m, a1[0])
    assert tree_of(m, mv[0]) != tree_of(m, a0[0])
    z = zone_of(m, a0[0])
    res = reservations(m, z)
    assert (0, 0, tree_of(m, a0[0])) in res and (0, 1, tree_of(m, a1[0])) in res
    assert (1, 0, tree_of(m, mv[0])) in res
    w = m.design.zone_llfree(z)
    before = int(w[K.slot_word(w, 0, 0)])
    m.free_pages(a0[0], 0, cpu=0)
    assert K.res_free(int(w[K.slot_word(w, 0, 0)])) == K.res_free(before) + 1
    t = w[K.tw(w, tree_of(m, a1[1]))]
    m.free_pages(a1[1], 0, cpu=0)  # CPU 0 does not hold CPU 1's tree: the tree counter takes it
    assert K.tree_free(w[K.tw(w, tree_of(m, a1[1]))]) == K.tree_free(t) + 1
    huge = m.alloc_pages("GFP_HIGHUSER_MOVABLE|__GFP_COMP", 9, cpu=0)
    assert (int(K.child_free(w[K.cw(w, (huge - int(m.design.state.llz[z, 2])) >> 9)])),
            int(w[K.cw(w, (huge - int(m.design.state.llz[z, 2])) >> 9)]) >> 15) == (0, 1)
    assert any(c == 2 for c, _i, _t in reservations(m, z))
    m.drain_all_pages()
    assert reservations(m, z) == []
    assert m.check() == "ok"


def test_pcp_lists_threaded_through_the_page_word():
    m = Machine.create("256M", design="llfree", cpus=2)
    ps = [m.alloc_pages("GFP_KERNEL", 0, cpu=1) for _ in range(3)]
    for p in ps:
        m.free_pages(p, 0, cpu=1)
    st = m.design.state
    for p in ps:
        assert int(st.pages[p]) & 0xF == LT_PCP and m.page_state(p) == "pcp"
    info = memmap.describe_page(m.design.page_words(ps[1]), "llfree")
    assert info["type"] == "pcp" and {info["next"], info["prev"]} == {ps[0], ps[2]}
    assert "pcp_list next" in m.describe_page(ps[1])
    head = m.alloc_pages("GFP_KERNEL|__GFP_COMP", 2)
    assert memmap.describe_page(m.design.page_words(head), "llfree")["order"] == 2
    assert memmap.describe_page(m.design.page_words(head + 3), "llfree")["head"] == head
    # the next order-0 allocation of CPU 1 is the page it freed last (list head)
    assert m.alloc_pages("GFP_KERNEL", 0, cpu=1) == ps[-1]
    assert m.check() == "ok"


def test_counters_and_buddyinfo_view():
    """nr_free counts children by size class (the watermark's view); buddyinfo scans the
    bitfields for maximal aligned free blocks and equals a brute-force count."""
    m = Machine.create("512M", design="llfree", cpus=2)
    rng = np.random.default_rng(3)
    live = []
    for _ in range(3000):
        p = m.alloc_pages("GFP_KERNEL" if rng.random() < 0.5 else "GFP_HIGHUSER_MOVABLE", int(rng.integers(0, 4)))
        if p is not None:
            live.append(p)
    for i in rng.permutation(len(live))[:1500]:
        m.free_pages(live[int(i)], core.owner_order(int(m.design.zs.owner[live[int(i)]])))
    assert m.check() == "ok"  # nr_free recount, z_free, every page in one state
    d = m.design
    free = np.zeros(d.npages, bool)
    for z in range(len(m.zones)):
        if d.state.llz[z, 1]:
            w = d.zone_llfree(z)
            base = int(d.state.llz[z, 2])
            lo, hi = int(d.zs.z_start[z]), int(d.zs.z_end[z])
            free[lo:hi] = [bool(K.k_is_free(w, p - base, 0)) for p in range(lo, hi)]
    blocks = d.free_blocks()
    covered = np.zeros(d.npages, bool)
    for p, o, _mt, _z in blocks.tolist():
        assert p % (1 << o) == 0 and not covered[p:p + (1 << o)].any()
        covered[p:p + (1 << o)] = True
        # maximal: the parent block is not entirely free (or would exceed MAX_PAGE_ORDER)
        if o < 10:
            q = p & ~((2 << o) - 1)
            assert not free[q:q + (2 << o)].all()
    assert np.array_equal(covered, free)
    assert int(d.nr_free.sum()) == len(blocks)
    assert int(free.sum()) == int(d.zs.z_free.sum())


def test_exact_placement_non_huge_child_freed_in_rows():
    """Frames taken one by one and freed as one order-9 block (exact replay can do that):
    the child is not huge, so the block goes back in halves; then it is a whole free child."""
    m = Machine.create("256M", design="llfree", cpus=2)
    st = m.design.state
    blocks = m.design.free_blocks()
    pfn = int(blocks[blocks[:, 1] >= 9][-1, 0])
    assert m.design.free_extent(pfn)[1] - m.design.free_extent(pfn)[0] >= 512
    for q in range(pfn, pfn + 512):
        assert m.design.take(q, 0) == core.OK
    assert m.design.take(pfn, 0) == core.E_BUSY
    assert dispatch.pa_free_range(st, np.int64(pfn), np.int64(pfn + 512), np.int64(0)) == 0
    s, e = m.design.free_extent(pfn)
    assert s <= pfn and e >= pfn + 512
    assert m.check() == "ok"


def test_snapshot_huge_allocations_are_huge_children():
    m, state, _snap = machine_from_snapshot(sample_path(), "before", "llfree")
    assert m.check() == "ok"
    big = state.alloc_pfn[state.alloc_order >= 9].astype(np.int64)
    assert len(big) > 0
    p = int(big[0])
    z = zone_of(m, p)
    w = m.design.zone_llfree(z)
    c = (p - int(m.design.state.llz[z, 2])) >> 9
    assert int(w[K.cw(w, c)]) >> 15 == 1
    m.free_pages(p, int(state.alloc_order[state.alloc_pfn == p][0]))
    m.drain_all_pages()  # an order-9 free goes to the THP pcp list first
    assert m.check() == "ok" and m.design.free_extent(p)[0] >= 0

