"""The ``llfree`` design: LLFree (Wrenger et al., USENIX ATC'23) as the zone's page allocator.

Theory
------
LLFree keeps no free lists and no free-list state in struct page: one bit per frame in a
512-bit bitfield per 2 MiB *child*, a 16-bit child entry ``{free:15, huge:1}``, one 32-bit
entry per 16 MiB *tree* ``{reserved:1, class:3, free:28}``, and per CPU and allocation class
a *reservation* of one tree (:mod:`memdesc.lib.llfree`, a faithful port of llfree-c
970bb3d, op by op).  This design puts one LLFree instance under every zone, as
llfree-linux does (``zone->llfree``, ``llfree_node_init`` per zone, metadata from memblock),
and runs everything above the zone from :mod:`memdesc.mm.page_alloc.core`: zonelists,
watermarks, gfp handling, the per-CPU lists' high/batch policy and the slow path.

Mapping of the zone layer (``base.py``'s contract):

===========================  ===============================================================
primitive                    llfree
===========================  ===============================================================
pool_rmqueue (__rmqueue)     ``llfree_get(order, class, cpu)``: class 0 (immovable) for
                             unmovable/reclaimable requests, 1 for movable, 2 (huge) for
                             orders >= 9 (``llfree_classing_movable``).  The fallbacks between
                             classes are llfree-c's: the CPU's reservation, a near then a
                             global tree search rated by the policy (Match / Steal / Demote),
                             then stealing from other CPUs' reservations and demoting one.
                             No CMA, claim or steal of pageblocks: classes are per tree
pool_free                    ``llfree_put`` by the freeing CPU (its reservation takes the
                             frames if it holds the tree, else the tree's counter); a block
                             of order >= 9 that is not a huge child goes back in rows
pool_rmqueue_smallest,       -1 / -1 / False: LLFree has no highatomic reserves and no
pool_move_freepages_block,   pageblock types (core then reserves nothing)
pool_retype_block
pool_first_free              a free aligned block of ``order`` in a child of that size class
                             (``nr_free`` below), or an entirely free child / pair
pcp_add / pcp_pop            core's pcp lists, doubly linked through the page words
pa_take                      ``llfree_take`` (exact replay's take_page_off_buddy)
pa_free_block,               compaction's free scanner: the largest aligned block at a pfn
pa_isolate_free              whose frames are free in the bitfields; ``llfree_take`` of it
                             (out of whichever reservation or tree counter holds the frames),
                             then a movable allocation head
pa_zone_free_area            the fragmentation index and score read the bitfields' aligned
                             free blocks (buddyinfo's view), not the child size classes
===========================  ===============================================================

*Per-CPU lists.*  llfree-linux compiles Linux's pcp lists out (``#ifndef CONFIG_NVALLOC``
around the pcp locking in its mm/page_alloc.c): LLFree's per-CPU tree reservations are its
per-CPU cache.  Here the pcp lists are core's and follow ``AllocConfig.pcp``: with
``--no-pcp`` (``pcp=False``) every order-0 allocation and free is an ``llfree_get`` /
``llfree_put`` on the CPU's reservation -- llfree-linux's configuration; with the default
``--pcp`` LLFree sits under Linux's pcp lists like the other designs, so that designs are
compared with the same front end.  benchmarks/bench_designs.py measures both.

*Per-page state: one word* (memmap layout ``llfree``): the type in bits 0-3; an allocation
head keeps its order (bits 4-9) and migratetype (bits 10-12), a tail its head's pfn
(bits 4-33), free and reserved pages only the zone and node (bits 51-63; free state is the
bitfield's); a page on a pcp list is linked through its word (next + 1 in bits 4-33,
prev + 1 in bits 34-63), as struct page's ``pcp_list`` overlays ``lru``.

*Counters.*  ``nr_free[z, o]`` for o <= 9 counts the zone's children whose free count is in
size class o (``2^o <= free < 2^(o+1)``; 9: entirely free), ``nr_free[z, 10]`` the aligned
pairs of entirely free children: what LLFree's child counters can tell the watermark test
without a scan (a child counter admits an order-o request when ``free >= 2^o``, as
``child_dec`` does).  buddyinfo and pagetypeinfo (:meth:`LLFreeDesign.free_blocks`) scan
the bitfields for the maximal aligned free blocks instead.  ``z_free`` (NR_FREE_PAGES)
counts the frames free in LLFree; frames in CPU reservations are free.

*Pageblock types* follow LLFree's classes: an allocation served in a tree of its own class
(a Match or a Demote, not a Steal) gives its pageblocks the request's migratetype, so that
its free goes to that type's pcp list, as after a claim in Linux (the trees by class are in
``design_stats``).

*Compaction* runs on LLFree as on the buddy designs (mm/compaction.py through the two
primitives above).  Its free scanner takes free pages from MOVABLE pageblocks only, and
pageblock types here follow the class of the tree each allocation was served from (above),
not Linux's claim rules: where few 16 MiB trees serve both classes (a 32 MiB machine),
unmovable descriptor slab pages retype pageblocks all over the zone and fewer pageblocks
are migration targets (``tests/test_compaction.py``: on 32 MiB compact_memory migrates
1,092 pages on llfree, 1,542 on linux).

Deviations, by construction of the design: no highatomic reserves, no CMA placement, no
pageblock claim or steal (classes are per 16 MiB tree); LLFree's metadata is not taken from the machine's pages (it is
memblock-allocated at boot in llfree-linux, like the memmap); ``pageblock_order`` must be 9
(one pageblock per child).
"""

from __future__ import annotations

import numpy as np

from memdesc._struct import StructProxy, StructType, define_struct
from memdesc.errors import ConfigError
from memdesc.lib import _llfree_kernels as K
from memdesc.lib.llfree import Classing, LLFree
from memdesc.mm import memmap as mmap
from memdesc.mm.mmzone import MAX_PAGE_ORDER, MIGRATE_TYPES, NR_PAGE_ORDERS, PAGEBLOCK_ORDER
from memdesc.mm.page_alloc import core
from memdesc.mm.page_alloc import llfree_zone as lz
from memdesc.mm.page_alloc.base import Design, register_design
from memdesc.mm.page_alloc.llfree_zone import (
    LC_LLFREE,
    LC_OK,
    LCHECK_MESSAGES,
    LM_CPU,
    LT_NAMES,
    LT_PCP,
    LT_TAIL,
    LT_TYPED,
    M30,
    MAX_PFNS,
    NR_LM,
)


def _decode(w: list[int], out: dict) -> None:
    t = out["type"]
    out["type"] = LT_NAMES[t] if t < len(LT_NAMES) else str(t)
    if t == LT_PCP:
        out["next"], out["prev"] = (w[0] >> 4 & M30) - 1, (w[0] >> 34 & M30) - 1
        out.pop("zone"), out.pop("node")
    elif t == LT_TAIL:
        out["head"] = w[0] >> 4 & M30
    elif t == LT_TYPED:
        d = w[0] >> 8 & lz.DESC_MASK
        out["memdesc_type"] = mmap.MD_TYPE_NAMES[w[0] >> 4 & 0xF]
        out["descriptor"] = (d - 1) << 3 if d else None


def _dump(pfn: int, w: list[int], d: dict) -> list[str]:
    where = f"node:{d['node']} zone:{d.get('zone_name', d['zone'])}" if "zone" in d else \
        f"pcp_list next {d['next']:#x} prev {d['prev']:#x}"
    extra = {"allocated": f" order:{d['order']} migratetype:{d['migratetype']}",
             "tail": f" head:{d.get('head', 0):#x}",
             "typed": f" memdesc:{d.get('memdesc_type')} descriptor:{d.get('descriptor')}"}.get(d["type"], "")
    return [f"page: llfree type:{d['type']}{extra} pfn:{pfn:#x} {where}", f"raw: {w[0]:016x}"]


mmap.register_layout(mmap.PageLayout("llfree", 1, "LLFree design: one word (state in the zone's bitfields)", (
    mmap.Field("type", 0, 0, 4, "free/reserved/hole/allocated/tail/pcp"),
    mmap.Field("order", 0, 4, 6, "allocation order (head)"),
    mmap.Field("migratetype", 0, 10, 3, "allocation migratetype (head)"),
    mmap.Field("zone", 0, mmap.ZONES_PGSHIFT, mmap.ZONES_WIDTH, "zone_idx within the node"),
    mmap.Field("node", 0, mmap.NODES_PGSHIFT, mmap.NODES_WIDTH, "NUMA node"),
), _decode, _dump))


class LLFreeStateType(StructType):
    pass


class LLFreeState(StructProxy):
    """core.ZONE_FIELDS, then: pages int64[npages] (the page words); ll int64[...] (every
    zone's LLFree state array, one after another); llz int64[Z, 3] (offset, words, base
    pfn of each zone's); pcph int64[pcp lists, 2] (head + 1, tail + 1); llm int64[NR_LM]."""

    _fields = (*core.ZONE_FIELDS, "pages", "ll", "llz", "pcph", "llm")


define_struct(LLFreeState, LLFreeStateType)


# ------------------------------------------------------------------ the design
class LLFreeDesign(Design):
    """LLFree under every zone; one word per page; zones, watermarks, pcp policy and the
    slow path are core's (see the module's theory)."""

    name = "llfree"
    words = 1
    page_layout = "llfree"
    memmap_field = "pages"
    state_cls = LLFreeState

    def classing(self) -> Classing:
        """``llfree_classing_movable`` with one slot per CPU (llfree-linux: ``cores``)."""
        return Classing.movable(self.layout.nr_cpus)

    def _make_state(self, zone_fields: dict, npages: int, nlists: int) -> LLFreeState:
        if PAGEBLOCK_ORDER != K.HUGE_ORDER or getattr(self.layout, "pageblock_order", K.HUGE_ORDER) != K.HUGE_ORDER:
            raise ConfigError("llfree: pageblock_order must be 9 (one pageblock per LLFree child)")
        if npages > MAX_PFNS:
            raise ConfigError(f"llfree: at most {MAX_PFNS} pfns (pcp links are 30 bits), got {npages}")
        cl = self.classing()
        nz = len(zone_fields["z_start"])
        llz = np.zeros((nz, 3), np.int64)
        parts, off = [], 0
        for z in range(nz):
            s, e = int(zone_fields["z_start"][z]), int(zone_fields["z_end"][z])
            if e <= s:
                continue
            base = s & ~(K.TREE_SIZE - 1)
            w = LLFree(max(e - base, K.MIN_PAGES), cl, init=1).w
            llz[z] = (off, len(w), base)
            parts.append(w)
            off += len(w)
        npcp = self.layout.nr_cpus * nz * core.NR_PCP_LISTS
        llm = np.zeros(NR_LM, np.int64)
        llm[LM_CPU] = -1
        return LLFreeState(**zone_fields, pages=np.zeros(npages, np.int64),
                           ll=np.concatenate(parts) if parts else np.zeros(0, np.int64), llz=llz,
                           pcph=np.zeros((npcp, 2), np.int64), llm=llm)

    def _load(self, free: np.ndarray, reserved: np.ndarray, huge_pfns: np.ndarray, alloc=None, pcp=None) -> None:
        """Every zone's LLFree from one bool per pfn (``free``) and the heads of huge
        children (LLFREE_INIT_RECOVER), then words, owners, counters."""
        st = self.state
        for z in range(st.llz.shape[0]):
            off, n, base = (int(x) for x in st.llz[z])
            if n == 0:
                continue
            w = st.ll[off:off + n]
            frames = int(w[K.M_FRAMES])
            allocated = np.ones(frames, np.bool_)
            lo, hi = int(st.z_start[z]), min(int(st.z_end[z]), base + frames)
            allocated[lo - base:hi - base] = ~free[lo:hi]
            huge = np.zeros(int(w[K.M_NCHILD]), np.bool_)
            hp = huge_pfns[(huge_pfns >= base) & (huge_pfns < base + frames)]
            huge[(hp - base) >> K.CHILD_ORDER] = True
            K.recover_state(w, allocated, huge)
            for i, mt in enumerate((core.MT_ISOLATE, core.MT_CMA, core.MT_HIGHATOMIC)):
                pfns = np.arange(lo, hi)
                f = free[lo:hi] & ((st.pb[pfns >> PAGEBLOCK_ORDER] & 7) == mt)
                cnt = int(f.sum())
                if i == 0:
                    st.z_free[z] = int(free[lo:hi].sum()) - cnt
                elif i == 1:
                    st.z_free_cma[z] = cnt
                else:
                    st.z_free_highatomic[z] = cnt
        holes = np.zeros(self.npages, np.bool_)
        for zl in self.layout.zones:
            if zl.spanned:
                for hs, he in zl.holes:
                    holes[hs:he] = True
        e = np.zeros(0, np.int64)
        a = alloc or (e, e, e, e)
        p = pcp or (e, e)
        lz.ll_init_words(st, reserved, holes[reserved], *a, *p)

    def boot(self) -> None:
        starts, ends, res = self._managed_ranges()
        free = np.zeros(self.npages, np.bool_)
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            free[s:e] = True
        self._load(free, res, np.zeros(0, np.int64))

    def init_from_snapshot(self, reserved: np.ndarray, alloc_pfn: np.ndarray, alloc_order: np.ndarray,
                           alloc_mt: np.ndarray, alloc_gfp: np.ndarray, free_pfn: np.ndarray,
                           free_order: np.ndarray, pageblock_mt: np.ndarray,
                           pcp_pfn: np.ndarray | None = None, pcp_cpu: np.ndarray | None = None) -> None:
        """A real machine's state: free blocks are LLFree's free frames, allocations of order
        >= 9 its huge children (LLFREE_INIT_RECOVER), pcp pages on their CPUs' lists."""
        st = self.state
        st.pb[:] = (st.pb & 0xF8) | pageblock_mt.astype(np.uint8)
        free = np.zeros(self.npages, np.bool_)
        fs = np.asarray(free_pfn, np.int64)
        fo = np.asarray(free_order, np.int64)
        for o in np.unique(fo).tolist():
            heads = fs[fo == o]
            free[(heads[:, None] + np.arange(1 << o)[None, :]).ravel()] = True
        ap, ao = np.asarray(alloc_pfn, np.int64), np.asarray(alloc_order, np.int64)
        big = ao >= K.HUGE_ORDER
        huge = (ap[big][:, None] + (np.arange(1 << (MAX_PAGE_ORDER - K.HUGE_ORDER)) << K.HUGE_ORDER)[None, :])
        keep = (np.arange(huge.shape[1])[None, :] < (1 << (ao[big] - K.HUGE_ORDER))[:, None])
        e = np.zeros(0, np.int64)
        self._load(free, np.asarray(reserved, np.int64), huge[keep].astype(np.int64),
                   (ap, ao, np.asarray(alloc_gfp, np.int64), np.asarray(alloc_mt, np.int64)),
                   (e, e) if pcp_pfn is None else (np.asarray(pcp_pfn, np.int64), np.asarray(pcp_cpu, np.int64)))

    # -- accounting
    def zone_llfree(self, z: int) -> np.ndarray:
        off, n, _base = (int(x) for x in self.state.llz[z])
        return self.state.ll[off:off + n]

    def llfree_metadata(self) -> dict[str, int]:
        """llfree-c's buffers of every zone (LLFree.metadata_size: struct, locals, trees, lower)."""
        out = {"llfree": 0, "local": 0, "trees": 0, "lower": 0}
        for z in range(self.state.llz.shape[0]):
            if self.state.llz[z, 1]:
                m = LLFree.metadata_size(self.classing(), int(self.zone_llfree(z)[K.M_FRAMES]))
                for k in out:
                    out[k] += getattr(m, k)
        return out

    def freelist_bytes(self) -> int:
        """LLFree's metadata (llfree-c's buffer sizes) plus a list head per pcp list."""
        return sum(self.llfree_metadata().values()) + self.state.pcph.shape[0] * 16

    def page_words(self, pfn: int) -> np.ndarray:
        return np.array([self.state.pages[pfn]], np.int64).view(np.uint64)

    def design_stats(self) -> dict:
        """LLFree's counters over the zones (gets, reservations, steals, demotions...) and
        its trees by class."""
        out = {f"llfree_{k}": 0 for k in K.COUNTERS}
        trees = {c: 0 for c in ("immovable", "movable", "huge", "reserved")}
        for z in range(self.state.llz.shape[0]):
            if not self.state.llz[z, 1]:
                continue
            w = self.zone_llfree(z)
            for k, i in K.COUNTERS.items():
                out[f"llfree_{k}"] += int(w[i])
            t = K.region(w, "trees")
            for c, name in enumerate(("immovable", "movable", "huge")):
                trees[name] += int((((t >> 1) & 7) == c).sum())
            trees["reserved"] += int((t & 1).sum())
        out.update({f"llfree_trees_{k}": v for k, v in trees.items()})
        return out

    # -- views
    @property
    def nr_free(self) -> np.ndarray:
        """/proc/buddyinfo's counts: the maximal aligned free blocks of the bitfields."""
        return self.free_counts_by_migratetype().sum(axis=1)

    def free_counts_by_migratetype(self) -> np.ndarray:
        counts = np.zeros((len(self.layout.zones), MIGRATE_TYPES, NR_PAGE_ORDERS), np.int64)
        lz.ll_free_blocks(self.state, np.zeros((0, 4), np.int64), counts)
        return counts

    def free_blocks(self) -> np.ndarray:
        out = np.zeros((int(self.free_counts_by_migratetype().sum()), 4), np.int64)
        lz.ll_free_blocks(self.state, out, np.zeros((len(self.layout.zones), MIGRATE_TYPES, NR_PAGE_ORDERS), np.int64))
        return out

    def check(self) -> str:
        code, a, b, c = lz.ll_check(self.state)
        if code != LC_OK:
            msg = K.CHECK_MESSAGES.get(int(c), "?") if code == LC_LLFREE else ""
            return LCHECK_MESSAGES[int(code)].format(a=int(a), b=int(b), c=int(c), msg=msg)
        return "ok"


register_design(LLFreeDesign, {
    "pa_alloc": core.__alloc_pages,
    "pa_free": lz.ll_pa_free,
    "pa_take": lz.ll_take,
    "pa_drain": lz.ll_pa_drain,
    "pool_prepare": lz.ll_pool_prepare,
    "pool_rmqueue": lz.ll_pool_rmqueue,
    "pool_rmqueue_smallest": lz.ll_pool_none,
    "pool_free": lz.ll_pool_free,
    "pool_first_free": lz.ll_first_free,
    "pool_move_freepages_block": lz.ll_cannot_move,
    "pool_retype_block": lz.ll_cannot_retype,
    "pcp_add": lz.ll_pcp_add,
    "pcp_pop": lz.ll_pcp_pop,
    "mark_allocated": lz.ll_mark_allocated,
    "mark_freed": lz.ll_mark_freed,
    "pa_free_extent": lz.ll_free_extent,
    # exact placement
    "pa_free_range": lz.ll_free_range,
    "pa_set_pageblock_type": lz.ll_set_pageblock_type,
    "pa_mark_allocated": lz.ll_mark_allocated,
    "pa_mark_unallocated": lz.ll_mark_freed,
    "pa_split": core.split_page,
    "pa_pcp_link": lz.ll_pcp_add,
    "pa_pcp_unlink": lz.ll_pcp_unlink,
    "pa_online_range": lz.ll_online_range,
    # typed memory (folio, slab): the head word holds the memdesc; splits rewrite words only
    "pa_set_memdesc": lz.ll_set_memdesc,
    "pa_clear_memdesc": lz.ll_clear_memdesc,
    "pa_page_memdesc": lz.ll_page_memdesc,
    "pa_split_alloc": core.buddy_split_alloc,
    "pa_split_prepare": core.buddy_split_prepare,
    "pa_free_block": lz.ll_free_block,
    "pa_isolate_free": lz.ll_isolate_free,
    "pa_zone_free_area": lz.ll_zone_free_area,
})
