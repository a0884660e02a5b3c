"""Shadow replay kernels: before each real event, the model's own decision from its state.

Theory
------
Exact replay (:mod:`memdesc.sim.replay_kernels`) imposes the kernel's pfns, so it checks
bookkeeping, not policy.  Shadow replay runs the same exact replay, and *before* applying
each event asks the model what it would have done from the state it has at that moment —
through core.py's read-only choices (``rmqueue_peek``, ``rmqueue_buddy_peek``,
``zone_allows``, the pcp list heads and tails, ``nr_pcp_alloc``/``pcp_free_commit_count``
on copies of the pcp row) — records whether the kernel did the same, then applies the
kernel's event.  The decisions, by class, and the event that reveals the kernel's choice:

==============  =====================================================  ======================================
class           the model decides                                      the kernel's choice shows in
==============  =====================================================  ======================================
pcp_alloc       zone (zonelist walk, watermarks), then the head of     mm_page_alloc of a pcp order (or the
                the pcp list, or "empty: refill"                       first zone_locked of its refill)
pcp_refill      each block rmqueue_bulk() takes (__rmqueue(): list     each zone_locked(percpu_refill=1) /
                heads, fallbacks, the batch's rmqueue_mode), and the    extfrag of the batch; the batch
                batch size (nr_pcp_alloc())                            length at its mm_page_alloc
buddy_alloc     zone, order, migratetype, block (rmqueue_buddy())      zone_locked(percpu_refill=0), or the
                                                                       extfrag / mm_page_alloc that starts
                                                                       the allocation
fallback        claim or steal, fallback order, pageblock              mm_page_alloc_extfrag
                (__rmqueue_claim() / __rmqueue_steal())
free            pcp list or buddy (pcp_allowed_order(), isolated       the next event of the page: a drain
                pageblock)                                             or pcp allocation (pcp), or a take off
                                                                       the free lists (buddy)
drain           each page free_pcppages_bulk() takes (round robin      each mm_page_pcpu_drain; the batch
                over the lists from the freed page's, list tails),     length (drains right after a free)
                and how many (nr_pcp_high()/nr_pcp_free())
==============  =====================================================  ======================================

*Informed* decisions are those whose inputs the model built during the trace.  What the
before-snapshot cannot show is the order of the blocks on each free list and the
contents of the pcp lists; both are tracked:

* buddy lists: a free block present in the snapshot keeps an *unknown* position until it
  leaves its list (taken, merged, moved); every block put on a list during the trace has
  a known position (head or tail, as the kernel puts it).  A list is
  [head-inserted][unknown][tail-inserted] in the kernel and in the model alike, so the
  model's first block is the kernel's when it is a known one, or the only unknown one;
* pcp lists: the snapshot's pcp pages (zoneinfo's count per CPU and zone, ``U``) are not
  in the model at all.  A pcp list is [freed during the trace][U][refilled during the
  trace]: its head is known when it is a freed page, its tail when it is a refilled page,
  either when the list is *complete* (U of its CPU and zone used up, or the kernel took a
  refilled page from its head, or drained a freed page from its tail);
* pcp counters: ``high`` comes from before.zoneinfo, but ``free_count``, ``alloc_factor``,
  ``PCPF_PREV_FREE_HIGH_ORDER`` and how many of U are still there are not visible.  Two rows
  are kept and run through the same events by core.py's functions: the model's own
  (``st.pcp``: hidden counters 0, its own pages only) and one with the largest values
  (counters at their maxima, every U page still there).  The model decides from its own
  row; a batch size is informed when both rows give the same answer.

Accounting per class: decisions, agree, informed decisions, informed agree; the first N
disagreements of each class keep the model's state beside the kernel's choice
(:data:`DIV_FIELDS`).
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc._struct import StructProxy, StructType, define_struct
from memdesc.mm import gfp as G
from memdesc.mm.mmzone import MAX_PAGE_ORDER, MIGRATE_PCPTYPES, MIGRATE_TYPES, NR_PCP_LISTS
from memdesc.mm.page_alloc import core
from memdesc.mm.page_alloc.dispatch import buddy_order, is_buddy, list_first, list_last, list_next
from memdesc.sim import replay_kernels as R

# decision classes
C_PCP_ALLOC, C_PCP_REFILL, C_BUDDY_ALLOC, C_FALLBACK, C_FREE, C_DRAIN = range(6)
NR_CLASSES = 6
CLASS_NAMES = ("pcp_alloc", "pcp_refill", "buddy_alloc", "fallback", "free", "drain")
# dcount columns
D_N, D_AGREE, D_INF, D_INF_AGREE, D_UNRESOLVED = range(5)
NR_D = 5

# per-CPU context (what the CPU's recent events have started)
K_NONE, K_REFILL, K_BUDDY, K_FREEC, K_DRAIN = range(5)
(X_KIND, X_ZONE, X_ORDER, X_MT, X_MODE, X_COUNT, X_PRED_LO, X_PRED_HI, X_FLAGS, X_ALLOC, X_CURSOR, X_OWNER,
 X_PINDEX, X_LAST, X_PEEK_PFN, X_PEEK_KIND, X_PEEK_CO, X_PEEK_FMT, X_PEEK_INF, X_PEEK_EV, X_REQ, X_TRIGGER,
 X_START, X_KPFN, X_IF_LO, X_IF_HI, X_RAGREE, X_RINF, X_RLID, X_RSTART) = range(30)
NR_X = 30
TRIG_FREE, TRIG_OTHER = 1, 2
#: a pcp list's answer in peek_get_page(): the page at its head
PEEK_PCP = 6

# divergence record fields
DIV_FIELDS = ("event", "line", "cpu", "kernel_pfn", "model_pfn", "order", "migratetype", "kernel_zone",
              "model_zone", "informed", "kernel_kind", "model_kind", "kernel_value", "model_value", "list_head",
              "list_tail", "pcp_count", "pcp_high", "pcp_batch", "wmark_min", "wmark_low", "wmark_high",
              "zone_free", "kernel_pb_type", "model_pb_type", "kernel_pfn_state", "pcp_unseen", "list")
NR_DIV_FIELDS = len(DIV_FIELDS)
(F_EVENT, F_LINE, F_CPU, F_KPFN, F_MPFN, F_ORDER, F_MT, F_KZONE, F_MZONE, F_INF, F_KKIND, F_MKIND, F_KVAL,
 F_MVAL, F_HEAD, F_TAIL, F_PCOUNT, F_PHIGH, F_PBATCH, F_WMIN, F_WLOW, F_WHIGH, F_ZFREE, F_KPB, F_MPB, F_KSTATE,
 F_UNSEEN, F_LIST) = range(NR_DIV_FIELDS)
#: kinds printed in divergence records (kernel_kind / model_kind)
KIND_NAMES = {-1: "-", core.PEEK_NONE: "fail", core.PEEK_NORMAL: "normal", core.PEEK_CMA: "cma",
              core.PEEK_CLAIM: "claim", core.PEEK_STEAL: "steal", core.PEEK_HIGHATOMIC: "highatomic",
              PEEK_PCP: "pcp", 10: "refill", 11: "buddy", 12: "no drain", 13: "drain"}
KIND_REFILL, KIND_BUDDY, KIND_NODRAIN, KIND_DRAIN = 10, 11, 12, 13

#: the candidate buffer of unknown free-list positions an event may disturb
CAND = 8192


class ShadowStateType(StructType):
    pass


class ShadowState(StructProxy):
    """The shadow replay's own state (simulation bookkeeping, beside the design's state).

    dcount: int64[NR_CLASSES, NR_D]; divs: int64[NR_CLASSES, ndiv, NR_DIV_FIELDS]; ndiv:
    int64[NR_CLASSES]; unk: uint8[npages] (free block whose list position is not known: 1 from
    the snapshot, 2 suspect: contradicted by the kernel, or left by the repair of an
    inconsistency); unk_cnt: int64[buddy lists] (blocks with unk == 1); headins: uint8[npages]
    (pcp page put at its list's head); phantom: uint8[npages] (pcp page the kernel showed is
    not where the model has it);
    presnap: uint8[npages] (allocation head from the snapshot, never freed since);
    pcp_done: uint8[pcp lists]; pcp_unseen: int64[cpus, zones]; row_hi: int64[cpus, zones,
    NR_PCP_FIELDS]; ctx: int64[cpus, NR_X]; pend: int32[npages] (free decision awaiting the
    kernel's answer); fdec: int64[cap, 4] (destination, informed, class row, -); nfdec:
    int64[1]; nxt_alloc: int64[events] (next mm_page_alloc on the event's CPU); lines:
    int64[events]; fall: int64[2, 2] (model/kernel x claim/steal); tick, last_tick: int64[cpus]
    (next and last modelled vmstat_update);
    cand: int64[CAND, 4]; misc: int64[8]; trig: int64[4] (drain trigger: decisions, agree,
    informed, informed agree).
    """

    _fields = ("dcount", "divs", "ndiv", "unk", "unk_cnt", "headins", "phantom", "presnap", "pcp_done", "pcp_unseen",
               "row_hi", "ctx", "pend", "fdec", "nfdec", "nxt_alloc", "lines", "fall", "tick", "last_tick", "cand",
               "misc", "trig")


define_struct(ShadowState, ShadowStateType)

# misc counters
M_NO_ROOM, M_TICKS, M_RESYNC, M_PHASE, M_TRIG_FIRST = range(5)


# ------------------------------------------------------------------ small helpers


@njit
def count(sh, cls, agree, informed):
    sh.dcount[cls, D_N] += 1
    if agree:
        sh.dcount[cls, D_AGREE] += 1
    if informed:
        sh.dcount[cls, D_INF] += 1
        if agree:
            sh.dcount[cls, D_INF_AGREE] += 1


@njit
def buddy_known(st, sh, lid):
    """Whether the kernel's first block on buddy list lid is the model's (see the docstring)."""
    if lid < 0:
        return True
    first = list_first(st, lid)
    if first < 0:
        return sh.unk_cnt[lid] == 0
    return sh.unk[first] == 0 or (sh.unk[first] == 1 and sh.unk_cnt[lid] == 1)


@njit
def suspect(st, sh, pfn):
    """A free block whose presence at its place the kernel contradicted (one divergence counts
    once: later choices resting on it are not informed)."""
    if pfn < 0:
        return
    if sh.unk[pfn] == 1:
        sh.unk_cnt[core.buddy_lid(st, core.page_zone(st, pfn), buddy_order(st, pfn),
                                  core.get_pfnblock_migratetype(st, pfn))] -= 1
    sh.unk[pfn] = 2


@njit
def taint(st, sh, start, end):
    """The free blocks in [start, end) after a repair of an inconsistency are suspect."""
    q = max(start, np.int64(0))
    end = min(end, st.owner.shape[0])
    while q < end:
        if is_buddy(st, q):
            if sh.unk[q] == 0:
                suspect(st, sh, q)
            q += np.int64(1) << buddy_order(st, q)
        else:
            q += 1


@njit
def pcp_head_known(st, sh, lid):
    first = list_first(st, lid)
    if first < 0:
        return sh.pcp_done[lid] != 0
    if sh.phantom[first] != 0:
        return False
    return sh.pcp_done[lid] != 0 or sh.headins[first] != 0


@njit
def unseen(sh, cpu, z):
    return sh.pcp_unseen[cpu, z]


@njit
def row_copy(row, extra):
    """A copy of a pcp row whose count includes the snapshot's pcp pages still unseen."""
    out = row.copy()
    out[core.PCP_COUNT] += extra
    return out


@njit
def row_back(row, tmp):
    """Write the fields a pcp bookkeeping function changed back (count stays the model's)."""
    for f in range(core.NR_PCP_FIELDS):
        if f != core.PCP_COUNT:
            row[f] = tmp[f]


@njit
def lid_of_pcp(st, cpu, z, pindex):
    return core.pcp_lid(st, cpu, z, pindex)


@njit
def pcp_pindex_of(st, loc, pfn):
    lv = np.int64(loc[pfn])
    if lv < 0:
        return np.int64(-1), np.int64(-1)
    return lv // NR_PCP_LISTS, lv % NR_PCP_LISTS


# ------------------------------------------------------------------ the model's choice (peek)


@njit
def peek_walk(st, gfp, order, alloc_flags, node, hz, mt, cpu, pcp_on):
    """get_page_from_freelist()'s choice, read-only but for the zone watermark flags it sets as
    the kernel does: (zone, pfn, kind, current order, list migratetype, alloc_flags used)."""
    zl = st.zonelist[node]
    af = alloc_flags
    while True:
        no_fallback = (af & core.ALLOC_NOFRAGMENT) != 0
        retry = False
        preferred = -1
        for i in range(zl.shape[0]):
            z = zl[i]
            if z < 0:
                break
            if st.z_idx[z] > hz:
                continue
            if preferred < 0:
                preferred = z
            if no_fallback and st.cfg[core.CFG_NR_ONLINE_NODES] > 1 and z != preferred \
                    and st.z_node[z] != st.z_node[preferred]:
                retry = True
                break
            if not core.zone_allows(st, z, order, af, hz):
                continue
            if pcp_on and core.pcp_allowed_order(st, order):
                first = list_first(st, core.pcp_lid(st, cpu, z, core.order_to_pindex(mt, order)))
                if first >= 0:
                    return np.int64(z), first, np.int64(PEEK_PCP), np.int64(order), np.int64(mt), af
                pfn, kind, co, fmt = core.rmqueue_peek(st, z, order, mt, af, core.RMQUEUE_NORMAL)
            else:
                pfn, kind, co, fmt = core.rmqueue_buddy_peek(st, z, order, af, mt)
            if pfn >= 0:
                return np.int64(z), pfn, kind, co, fmt, af
        if retry or no_fallback:
            af &= ~core.ALLOC_NOFRAGMENT
            continue
        return np.int64(-1), np.int64(-1), np.int64(core.PEEK_NONE), np.int64(-1), np.int64(-1), af


@njit
def peek_get_page(st, gfp, order, cpu, pcp_on):
    """__alloc_pages()'s choice for (gfp, order) on cpu: the fast path's walk, then the slow
    path's flags (no reclaim).  (zone, pfn, kind, current order, list mt, alloc_flags)."""
    node = st.cpu_node[cpu]
    hz = st.gfp_zone_table[gfp & core.GFP_ZONEMASK]
    mt = core.gfp_migratetype(st, gfp)
    if mt >= MIGRATE_PCPTYPES:
        mt = core.MT_MOVABLE
    if hz < 0:
        return np.int64(-1), np.int64(-1), np.int64(core.PEEK_NONE), np.int64(-1), np.int64(-1), np.int64(0)
    preferred = core.first_zone(st, node, hz)
    if preferred < 0:
        return np.int64(-1), np.int64(-1), np.int64(core.PEEK_NONE), np.int64(-1), np.int64(-1), np.int64(0)
    af = core.ALLOC_WMARK_LOW
    if st.cfg[core.CFG_CMA] != 0 and mt == core.MT_MOVABLE:
        af |= core.ALLOC_CMA
    af |= core.alloc_flags_nofragment(st, preferred, gfp)
    z, pfn, kind, co, fmt, used = peek_walk(st, gfp, order, af, node, hz, mt, cpu, pcp_on)
    if pfn < 0:
        af2 = G.gfp_to_alloc_flags_nb(gfp, order, st.cfg[core.CFG_CMA] != 0, False, False)
        z, pfn, kind, co, fmt, used = peek_walk(st, gfp, order, af2, node, hz, mt, cpu, pcp_on)
    return z, pfn, kind, co, fmt, used


@njit
def peek_informed(st, sh, z, kind, co, fmt):
    """Whether a buddy-list choice rests on known list heads (see the module docstring)."""
    if kind == core.PEEK_NONE or z < 0 or co < 0:
        return True
    return buddy_known(st, sh, core.buddy_lid(st, z, co, fmt))


# ------------------------------------------------------------------ divergence records


@njit
def record(st, sh, loc, unavail, cls, i, cpu, kpfn, mpfn, order, mt, kz, mz, informed, kkind, mkind, kval, mval,
           lid, pcpu, pz):
    n = sh.ndiv[cls]
    if n >= sh.divs.shape[1]:
        return
    sh.ndiv[cls] = n + 1
    r = sh.divs[cls, n]
    r[F_EVENT] = i
    r[F_LINE] = sh.lines[i]
    r[F_CPU] = cpu
    r[F_KPFN] = kpfn
    r[F_MPFN] = mpfn
    r[F_ORDER] = order
    r[F_MT] = mt
    r[F_KZONE] = kz
    r[F_MZONE] = mz
    r[F_INF] = 1 if informed else 0
    r[F_KKIND] = kkind
    r[F_MKIND] = mkind
    r[F_KVAL] = kval
    r[F_MVAL] = mval
    r[F_LIST] = lid
    r[F_HEAD] = list_first(st, lid) if lid >= 0 else -1
    r[F_TAIL] = list_last(st, lid) if lid >= 0 else -1
    zz = kz if kz >= 0 else mz
    if pcpu >= 0 and pz >= 0:
        r[F_PCOUNT] = st.pcp[pcpu, pz, core.PCP_COUNT] + sh.pcp_unseen[pcpu, pz]
        r[F_PHIGH] = st.pcp[pcpu, pz, core.PCP_HIGH]
        r[F_PBATCH] = st.pcp[pcpu, pz, core.PCP_BATCH]
        r[F_UNSEEN] = sh.pcp_unseen[pcpu, pz]
    else:
        r[F_PCOUNT] = -1
        r[F_PHIGH] = -1
        r[F_PBATCH] = -1
        r[F_UNSEEN] = -1
    if zz >= 0:
        r[F_WMIN] = core.wmark_pages(st, zz, 0)
        r[F_WLOW] = core.wmark_pages(st, zz, 1)
        r[F_WHIGH] = core.high_wmark_pages(st, zz)
        r[F_ZFREE] = st.z_free[zz]
    else:
        r[F_WMIN] = -1
        r[F_WLOW] = -1
        r[F_WHIGH] = -1
        r[F_ZFREE] = -1
    npages = st.owner.shape[0]
    r[F_KPB] = core.get_pfnblock_migratetype(st, kpfn) if 0 <= kpfn < npages else -1
    r[F_MPB] = core.get_pfnblock_migratetype(st, mpfn) if 0 <= mpfn < npages else -1
    if 0 <= kpfn < npages and 0 <= order <= MAX_PAGE_ORDER:
        r[F_KSTATE] = R.classify(st, loc, unavail, kpfn, order, cpu)
    else:
        r[F_KSTATE] = -1


# ------------------------------------------------------------------ knowledge of list positions


@njit
def _cand_add(sh, n, pfn, st):
    """Remember an unknown-position free block that the next event may move (head, order, mt)."""
    if n >= CAND:
        sh.misc[M_NO_ROOM] += 1
        return n
    sh.cand[n, 0] = pfn
    sh.cand[n, 1] = buddy_order(st, pfn)
    sh.cand[n, 2] = core.get_pfnblock_migratetype(st, pfn)
    sh.cand[n, 3] = core.page_zone(st, pfn)
    return n + 1


@njit
def _cand_range(st, sh, n, start, end):
    """Unknown free blocks overlapping [start, end): the one holding start, those inside."""
    npages = st.owner.shape[0]
    if start < 0 or start >= npages:
        return n
    h = core.find_free_block_containing(st, start)
    if h >= 0 and sh.unk[h] != 0:
        n = _cand_add(sh, n, h, st)
    q = start + 1 if h == start else start
    end = min(end, npages)
    while q < end:
        if sh.unk[q] != 0 and is_buddy(st, q):
            n = _cand_add(sh, n, q, st)
            q += np.int64(1) << buddy_order(st, q)
        else:
            q += 1
    return n


@njit
def _cand_buddies(st, sh, n, pfn, order):
    """Unknown free buddies a free of [pfn, 2^order) merges with (its buddy chain)."""
    p = pfn
    for k in range(order, MAX_PAGE_ORDER):
        b = p ^ (np.int64(1) << k)
        if b < 0 or b >= st.owner.shape[0] or not is_buddy(st, b) or buddy_order(st, b) != k:
            break
        if sh.unk[b] != 0:
            n = _cand_add(sh, n, b, st)
        p = p & ~(np.int64(1) << k)
    return n


@njit
def candidates(st, sh, e, p, o, gfp, mt, fbo, chown):
    """Unknown-position free blocks the event about to be applied may take off their lists."""
    n = 0
    npages = st.owner.shape[0]
    if p < 0 or p >= npages or o < 0 or o > MAX_PAGE_ORDER:
        return n
    if e == R.EV_ISOLATE_FREE:
        return _cand_range(st, sh, n, p, gfp)
    end = p + (np.int64(1) << o)
    n = _cand_range(st, sh, n, p, end)
    if e == R.EV_FREE or e == R.EV_FREE_BATCHED or e == R.EV_PCPU_DRAIN:
        n = _cand_buddies(st, sh, n, p, o)
    if (e == R.EV_ZONE_LOCKED or e == R.EV_PCPU_DRAIN) and 0 <= mt < MIGRATE_TYPES \
            and core.get_pfnblock_migratetype(st, p) != mt:
        span = max(o, core.pageblock_order(st))
        s0 = p & ~((np.int64(1) << span) - 1)
        n = _cand_range(st, sh, n, s0, s0 + (np.int64(1) << span))
    if e == R.EV_EXTFRAG and chown == 1:
        span = max(min(max(fbo, o), MAX_PAGE_ORDER), core.pageblock_order(st))
        s0 = p & ~((np.int64(1) << span) - 1)
        n = _cand_range(st, sh, n, s0, s0 + (np.int64(1) << span))
    return n


@njit
def settle(st, sh, n):
    """After the event: a candidate that is no longer the same free block left its list (its
    position is lost; where it went, the kernel put it at a known place)."""
    for k in range(n):
        u = sh.cand[k, 0]
        if sh.unk[u] == 0:
            continue
        o = sh.cand[k, 1]
        if is_buddy(st, u) and buddy_order(st, u) == o and core.get_pfnblock_migratetype(st, u) == sh.cand[k, 2]:
            continue
        if sh.unk[u] == 1:
            sh.unk_cnt[core.buddy_lid(st, sh.cand[k, 3], o, sh.cand[k, 2])] -= 1
        sh.unk[u] = 0


# ------------------------------------------------------------------ pcp bookkeeping on the two rows


@njit
def refill_reveals(st, sh, lid):
    """rmqueue_bulk() runs only on an empty list: the kernel's list lid held no page, so it is
    complete from now on, and whatever the model still has on it is not in the kernel's."""
    p = list_first(st, lid)
    n = 0
    while p >= 0 and n < 4096:
        sh.phantom[p] = 1
        p = list_next(st, lid, p)
        n += 1
    sh.pcp_done[lid] = 1


@njit
def rows_alloc_start(st, sh, cpu, z):
    """rmqueue_pcplist() entry: free_count >>= 1 on both rows."""
    st.pcp[cpu, z, core.PCP_FREE_COUNT] >>= 1
    sh.row_hi[cpu, z, core.PCP_FREE_COUNT] >>= 1


@njit
def rows_refill(st, sh, cpu, z, order):
    """nr_pcp_alloc() on both rows (the model's own, and the one with the largest hidden values):
    the batch each predicts, and their high/alloc_factor updates."""
    t = st.pcp[cpu, z].copy()
    lo = core.nr_pcp_alloc(st, t, z, order)
    row_back(st.pcp[cpu, z], t)
    t2 = row_copy(sh.row_hi[cpu, z], st.pcp[cpu, z, core.PCP_COUNT] + sh.pcp_unseen[cpu, z]
                  - sh.row_hi[cpu, z, core.PCP_COUNT])
    hi = core.nr_pcp_alloc(st, t2, z, order)
    row_back(sh.row_hi[cpu, z], t2)
    return lo, hi


@njit
def _commit_on(st, t, z, order):
    """pcp_free_commit_count() on row t; returns (pages it drains, -1 none; pages it would drain
    if the kernel found count >= high: nr_pcp_free() with the row's high)."""
    n = core.pcp_free_commit_count(st, t, z, order)
    if n >= 0:
        return n, n
    return n, core.nr_pcp_free(t, t[core.PCP_BATCH], t[core.PCP_HIGH], False)


@njit
def rows_free_commit(st, sh, cpu, z, order):
    """pcp_free_commit_count() on both rows (the page is already on the list): for each row, the
    pages it would drain (-1: none) and the pages a drain would take."""
    t = st.pcp[cpu, z].copy()
    lo, lo_if = _commit_on(st, t, z, order)
    row_back(st.pcp[cpu, z], t)
    t2 = row_copy(sh.row_hi[cpu, z], st.pcp[cpu, z, core.PCP_COUNT] + sh.pcp_unseen[cpu, z]
                  - sh.row_hi[cpu, z, core.PCP_COUNT])
    hi, hi_if = _commit_on(st, t2, z, order)
    row_back(sh.row_hi[cpu, z], t2)
    return lo, hi, lo_if, hi_if


@njit
def rows_decay(st, sh, cpu):
    """vmstat_update() on cpu: decay_pcp_high()'s bookkeeping on both rows of each zone (the
    drain it causes is in the trace as pcpu_drain events).  Returns the pages the model's
    row would drain from the zone with the most."""
    most = np.int64(-1)
    for z in range(st.z_start.shape[0]):
        if st.z_managed[z] <= 0:
            continue
        t = st.pcp[cpu, z].copy()
        _todo, d = core.pcp_decay_high(t)
        row_back(st.pcp[cpu, z], t)
        most = max(most, d)
        t2 = row_copy(sh.row_hi[cpu, z], st.pcp[cpu, z, core.PCP_COUNT] + sh.pcp_unseen[cpu, z]
                      - sh.row_hi[cpu, z, core.PCP_COUNT])
        core.pcp_decay_high(t2)
        row_back(sh.row_hi[cpu, z], t2)
    return most


#: a kworker drain batch this long after the CPU's last modelled vmstat_update is taken to be
#: the kernel's vmstat_update (its phase on that CPU)
RESYNC_NS = 300_000_000


@njit
def clock(st, sh, ts):
    """The modelled clock: every CPU runs vmstat_update once a second of trace time, at the
    phase (within the second) the trace's own vmstat drains show (misc[M_PHASE], -1 unknown)."""
    for cpu in range(sh.tick.shape[0]):
        if sh.tick[cpu] < 0:
            phase = sh.misc[M_PHASE]
            if phase < 0:
                sh.tick[cpu] = ts + core.VMSTAT_INTERVAL_NS
            else:
                t = ts - ts % core.VMSTAT_INTERVAL_NS + phase
                sh.tick[cpu] = t if t > ts else t + core.VMSTAT_INTERVAL_NS
        elif ts >= sh.tick[cpu]:
            rows_decay(st, sh, cpu)
            sh.misc[M_TICKS] += 1
            sh.last_tick[cpu] = ts
            sh.tick[cpu] += core.VMSTAT_INTERVAL_NS * (1 + (ts - sh.tick[cpu]) // core.VMSTAT_INTERVAL_NS)


@njit
def see_unseen(st, sh, loc, cpu, p, o):
    """The kernel used a page the model holds as a snapshot allocation from a pcp list: one of
    the snapshot's pcp pages (U) is gone; when U is used up the CPU's lists are complete."""
    if sh.presnap[p] == 0:
        return
    z = core.page_zone(st, p)
    if z < 0:
        return
    sh.pcp_unseen[cpu, z] = max(np.int64(0), sh.pcp_unseen[cpu, z] - (np.int64(1) << o))
    if sh.pcp_unseen[cpu, z] == 0:
        for pindex in range(NR_PCP_LISTS):
            sh.pcp_done[core.pcp_lid(st, cpu, z, pindex)] = 1


# ------------------------------------------------------------------ free decisions (resolved later)


@njit
def resolve(sh, p, dest):
    """The kernel showed where the page freed at p went (0 pcp, 1 buddy)."""
    k = sh.pend[p]
    if k < 0:
        return
    sh.pend[p] = -1
    pred = sh.fdec[k, 0]
    count(sh, C_FREE, pred == dest, sh.fdec[k, 1] != 0)
    sh.fdec[k, 2] = 1


@njit
def resolve_range(st, sh, p, o):
    """A take off the free lists of [p, 2^o): pending frees inside went to the buddy."""
    end = min(p + (np.int64(1) << o), sh.pend.shape[0])
    for q in range(max(p, np.int64(0)), end):
        if sh.pend[q] >= 0:
            resolve(sh, q, 1)


# ------------------------------------------------------------------ context closing


@njit
def close_refill(st, sh, loc, unavail, cpu, i):
    """End of an rmqueue_bulk() batch: the batch size decision."""
    x = sh.ctx[cpu]
    n = x[X_COUNT]
    lo = x[X_PRED_LO]
    hi = x[X_PRED_HI]
    agree = n == lo
    informed = lo == hi
    count(sh, C_PCP_REFILL, agree, informed)
    if not agree:
        z = x[X_ZONE]
        record(st, sh, loc, unavail, C_PCP_REFILL, x[X_START], cpu, -1, -1, x[X_ORDER], x[X_MT], z, z, informed,
               KIND_REFILL, KIND_REFILL, n, lo, -1, cpu, z)
    x[X_KIND] = K_NONE


@njit
def close_drain(st, sh, loc, unavail, cpu, i):
    """End of a free_pcppages_bulk() batch: after a free, the batch length decision."""
    x = sh.ctx[cpu]
    if x[X_TRIGGER] == TRIG_FREE:
        # the trigger: the model's own row said drain (X_PRED_LO >= 0) or not
        trigger(sh, x[X_PRED_LO] >= 0, (x[X_PRED_LO] >= 0) == (x[X_PRED_HI] >= 0), x[X_START])
        total = x[X_COUNT]
        req = min(x[X_IF_LO], x[X_REQ])
        last = x[X_LAST]
        agree = total - last < req <= total
        informed = x[X_IF_LO] == x[X_IF_HI]
        count(sh, C_DRAIN, agree, informed)
        if not agree:
            z = x[X_ZONE]
            record(st, sh, loc, unavail, C_DRAIN, x[X_START], cpu, -1, -1, -1, -1, z, z, informed,
                   KIND_DRAIN, KIND_DRAIN, total, x[X_IF_LO], -1, x[X_OWNER], z)
        z = x[X_ZONE]
        if z >= 0 and (st.z_flags[z] & core.ZONE_BELOW_HIGH) and core.zone_watermark_ok(
                st, z, 0, core.high_wmark_pages(st, z), st.cfg[core.CFG_MOVABLE_IDX], 0):
            st.z_flags[z] &= ~core.ZONE_BELOW_HIGH
    x[X_KIND] = K_NONE


@njit
def close_freec(st, sh, loc, unavail, cpu, i):
    """A free's commit was not followed by a drain: the kernel did not drain."""
    x = sh.ctx[cpu]
    lo = x[X_PRED_LO]
    hi = x[X_PRED_HI]
    trigger(sh, lo < 0, (lo >= 0) == (hi >= 0), x[X_START])
    x[X_KIND] = K_NONE


@njit
def trigger(sh, agree, informed, i):
    """Whether a free to a pcp list drains it (count >= high): counted apart from the classes
    (``drain_trigger``): it compares two numbers, count and pcp->high, and high moves with
    events the trace does not show (vmstat_update's decay, frees that miss the pcp lock)."""
    sh.trig[0] += 1
    if agree:
        sh.trig[1] += 1
    elif sh.misc[M_TRIG_FIRST] < 0 and informed:
        sh.misc[M_TRIG_FIRST] = i
    if informed:
        sh.trig[2] += 1
        if agree:
            sh.trig[3] += 1


@njit
def close_ctx(st, sh, loc, unavail, cpu, i):
    k = sh.ctx[cpu, X_KIND]
    if k == K_REFILL:
        close_refill(st, sh, loc, unavail, cpu, i)
    elif k == K_DRAIN:
        close_drain(st, sh, loc, unavail, cpu, i)
    elif k == K_FREEC:
        close_freec(st, sh, loc, unavail, cpu, i)
    else:
        sh.ctx[cpu, X_KIND] = K_NONE


# ------------------------------------------------------------------ decisions per event


@njit
def decide_alloc_start(st, sh, loc, unavail, i, c, p, o, gfp, kz, pcp_on, refill_started):
    """The pcp_alloc or buddy_alloc decision of the allocation whose first event is i; returns
    the model's (zone, pfn, kind, current order, list mt, alloc_flags)."""
    z, mp, kind, co, fmt, af = peek_get_page(st, gfp, o, c, pcp_on)
    mt = core.gfp_migratetype(st, gfp)
    if mt >= MIGRATE_PCPTYPES:
        mt = core.MT_MOVABLE
    if pcp_on and core.pcp_allowed_order(st, o):
        lid = core.pcp_lid(st, c, kz if kz >= 0 else max(z, np.int64(0)), core.order_to_pindex(mt, o))
        informed = pcp_head_known(st, sh, lid) if z == kz else True
        if refill_started:
            # the kernel found its list empty and refilled it; the decision is counted at its
            # mm_page_alloc, where the page the refill put first shows (finish_refilled_alloc)
            agree = z == kz and kind != PEEK_PCP
            x = sh.ctx[c]
            x[X_RAGREE] = 1 if agree else 0
            x[X_RINF] = 1 if informed else 0
            x[X_RLID] = lid
            x[X_RSTART] = i
        else:
            agree = z == kz and kind == PEEK_PCP and mp == p
            count(sh, C_PCP_ALLOC, agree, informed)
        if not agree:
            record(st, sh, loc, unavail, C_PCP_ALLOC, i, c, p, mp, o, mt, kz, z, informed,
                   KIND_REFILL if refill_started else PEEK_PCP, kind, -1, co, lid, c, kz)
            if z == kz and kind == PEEK_PCP and mp >= 0:
                sh.phantom[mp] = 1
        if z == kz and kz >= 0:
            rows_alloc_start(st, sh, c, kz)
            if kind == PEEK_PCP and not refill_started and mp == p and sh.headins[p] == 0:
                sh.pcp_done[lid] = 1
        elif kz >= 0:
            rows_alloc_start(st, sh, c, kz)
    else:
        agree = mp == p
        informed = peek_informed(st, sh, z, kind, co, fmt) if z == kz else True
        count(sh, C_BUDDY_ALLOC, agree, informed)
        if not agree:
            lid = core.buddy_lid(st, z, co, fmt) if (z >= 0 and co >= 0) else -1
            record(st, sh, loc, unavail, C_BUDDY_ALLOC, i, c, p, mp, o, mt, kz, z, informed, -1, kind, -1, co,
                   lid, c, kz)
            if lid >= 0:
                suspect(st, sh, list_first(st, lid))
        # (a pcp allocation's fallbacks are the refill's blocks: counted there)
        if kind == core.PEEK_CLAIM:
            sh.fall[0, 0] += 1
        elif kind == core.PEEK_STEAL:
            sh.fall[0, 1] += 1
    return z, mp, kind, co, fmt, af


@njit
def finish_refilled_alloc(st, sh, loc, unavail, i, c, p, o, mt):
    """The mm_page_alloc a refill served: the pcp_alloc decision (refill, then the list's head)."""
    x = sh.ctx[c]
    lid = x[X_RLID]
    head = list_first(st, lid) if lid >= 0 else np.int64(-1)
    agree = x[X_RAGREE] != 0 and head == p
    informed = x[X_RINF] != 0
    count(sh, C_PCP_ALLOC, agree, informed)
    if x[X_RAGREE] != 0 and not agree:
        z = core.page_zone(st, p)
        record(st, sh, loc, unavail, C_PCP_ALLOC, i, c, p, head, o, mt, z, z, informed, KIND_REFILL, PEEK_PCP, -1,
               -1, lid, c, z)
        if head >= 0:
            sh.phantom[head] = 1


@njit
def start_refill(st, sh, loc, unavail, i, c, p, o, kz, j, agfp, pcp_on):
    """The first block of an rmqueue_bulk() batch on cpu c: the pcp_alloc decision of the
    allocation it serves (the kernel found its list empty), nr_pcp_alloc() on both rows."""
    x = sh.ctx[c]
    z, mp, kind, co, fmt, af = decide_alloc_start(st, sh, loc, unavail, i, c, p, o, agfp, kz, pcp_on, True)
    amt = core.gfp_migratetype(st, agfp)
    x[X_KIND] = K_REFILL
    x[X_ZONE] = kz
    x[X_ORDER] = o
    x[X_MT] = amt if amt < MIGRATE_PCPTYPES else core.MT_MOVABLE
    x[X_MODE] = core.RMQUEUE_NORMAL
    x[X_COUNT] = 0
    x[X_FLAGS] = af
    x[X_ALLOC] = j
    x[X_START] = i
    x[X_KPFN] = -1
    lo = np.int64(0)
    hi = np.int64(0)
    if kz >= 0:
        lo, hi = rows_refill(st, sh, c, kz, o)
    x[X_PRED_LO] = lo
    x[X_PRED_HI] = hi
    if kz >= 0:
        refill_reveals(st, sh, core.pcp_lid(st, c, kz, core.order_to_pindex(x[X_MT], o)))


@njit
def decide_refill_block(st, sh, loc, unavail, i, c, p, o):
    """One block of an rmqueue_bulk() batch: the model's __rmqueue() from the current state."""
    x = sh.ctx[c]
    z = x[X_ZONE]
    mp, kind, co, fmt = core.rmqueue_peek(st, z, o, x[X_MT], x[X_FLAGS], x[X_MODE])
    informed = peek_informed(st, sh, z, kind, co, fmt)
    agree = mp == p
    count(sh, C_PCP_REFILL, agree, informed)
    if not agree:
        lid = core.buddy_lid(st, z, co, fmt) if co >= 0 else -1
        record(st, sh, loc, unavail, C_PCP_REFILL, i, c, p, mp, o, x[X_MT], core.page_zone(st, p), z, informed,
               -1, kind, -1, co, lid, c, z)
        if lid >= 0:
            suspect(st, sh, list_first(st, lid))
    x[X_PEEK_PFN] = mp
    x[X_PEEK_KIND] = kind
    x[X_PEEK_CO] = co
    x[X_PEEK_FMT] = fmt
    x[X_PEEK_INF] = 1 if informed else 0
    x[X_PEEK_EV] = i
    if kind == core.PEEK_CLAIM:
        sh.fall[0, 0] += 1
    elif kind == core.PEEK_STEAL:
        sh.fall[0, 1] += 1
    x[X_COUNT] += 1


@njit
def decide_fallback(st, sh, loc, unavail, i, c, p, o, amt, fbo, fbmt, chown, mp, kind, co, fmt, informed, z):
    """mm_page_alloc_extfrag: claim (the pageblock changed hands) or steal, fallback order, pageblock."""
    kkind = core.PEEK_CLAIM if chown == 1 else core.PEEK_STEAL
    if kkind == core.PEEK_CLAIM:
        sh.fall[1, 0] += 1
    else:
        sh.fall[1, 1] += 1
    pbo = core.pageblock_order(st)
    agree = kind == kkind and co == fbo and mp >= 0 and (mp >> pbo) == (p >> pbo)
    count(sh, C_FALLBACK, agree, informed)
    if not agree:
        lid = core.buddy_lid(st, z, co, fmt) if (z >= 0 and co >= 0) else -1
        record(st, sh, loc, unavail, C_FALLBACK, i, c, p, mp, o, amt, core.page_zone(st, p), z, informed, kkind,
               kind, fbo, co, lid, c, z)


@njit
def decide_drain_page(st, sh, loc, unavail, i, c, p, o):
    """One page of a free_pcppages_bulk() batch: the tail of the first non-empty list from the
    cursor (round robin)."""
    x = sh.ctx[c]
    oc = x[X_OWNER]
    z = x[X_ZONE]
    if oc < 0 or z < 0:
        return
    cur = x[X_CURSOR]
    informed = True
    mp = np.int64(-1)
    lid = np.int64(-1)
    for step in range(NR_PCP_LISTS):
        pi = (cur + step) % NR_PCP_LISTS
        lid = core.pcp_lid(st, oc, z, pi)
        last = list_last(st, lid)
        if last >= 0:
            mp = last
            if sh.phantom[last] != 0 or (sh.pcp_done[lid] == 0 and sh.headins[last] != 0):
                informed = False
            break
        if sh.pcp_done[lid] == 0:
            informed = False
    agree = mp == p
    count(sh, C_DRAIN, agree, informed)
    if not agree:
        record(st, sh, loc, unavail, C_DRAIN, i, c, p, mp, o, -1, core.page_zone(st, p), z, informed, -1, -1,
               -1, -1, lid, oc, z)
        if mp >= 0:
            sh.phantom[mp] = 1


# ------------------------------------------------------------------ the kernel


@njit
def shadow_kernel(st, sh, loc, unavail, ev, cpu_col, pfn_col, order_col, gfp_col, mt_col, refill_col, fbo_col,
                  fbmt_col, chown_col, aux_col, bm_col, ts_col, first, last, ncpu, pcp_on, cnt, xc):
    """Events [first, last): the model's decision, then the exact replay of the event."""
    npages = st.owner.shape[0]
    for i in range(first, last):
        e = np.int64(ev[i])
        c = R.fold_cpu(np.int64(cpu_col[i]), ncpu, xc, R.X_CPU_FOLDED)
        p = np.int64(pfn_col[i])
        o = np.int64(order_col[i])
        gfp = np.int64(gfp_col[i])
        mt = np.int64(mt_col[i])
        refill = np.int64(refill_col[i])
        fbo = np.int64(fbo_col[i])
        fbmt = np.int64(fbmt_col[i])
        chown = np.int64(chown_col[i])
        aux = np.int64(aux_col[i])
        bm = np.int64(bm_col[i])
        ts = np.int64(ts_col[i])
        clock(st, sh, ts)
        x = sh.ctx[c]
        k = x[X_KIND]
        # the CPU's context: continued by this event, or closed
        applies_free = (e == R.EV_FREE and bm != 1) or (e == R.EV_FREE_BATCHED and bm >= 0)
        if k == K_REFILL and not ((e == R.EV_ZONE_LOCKED and refill == 1 and o == x[X_ORDER]) or e == R.EV_EXTFRAG):
            close_refill(st, sh, loc, unavail, c, i)
            k = K_NONE
        elif k == K_BUDDY and not (e == R.EV_ZONE_LOCKED or e == R.EV_EXTFRAG):
            x[X_KIND] = K_NONE
            k = K_NONE
        elif k == K_FREEC and e != R.EV_PCPU_DRAIN:
            close_freec(st, sh, loc, unavail, c, i)
            k = K_NONE
        elif k == K_DRAIN and e != R.EV_PCPU_DRAIN:
            close_drain(st, sh, loc, unavail, c, i)
            k = K_NONE
        fo = bm if e == R.EV_FREE_BATCHED else o
        ncand = 0
        if e == R.EV_FREE_BATCHED:
            if bm >= 0:
                ncand = candidates(st, sh, R.EV_FREE, p, fo, gfp, mt, fbo, chown)
        elif not (e == R.EV_FREE and bm == 1) and not (e == R.EV_ALLOC and p < 0):
            ncand = candidates(st, sh, e, p, o, gfp, mt, fbo, chown)
        pre_state = np.int64(-1)
        taint_from = np.int64(-1)
        taint_to = np.int64(-1)
        if e == R.EV_ALLOC and p >= 0 and 0 <= o <= MAX_PAGE_ORDER:
            pre_state = R.classify(st, loc, unavail, p, o, c)
            if pre_state == R.S_FREE:
                # the model holds free what the kernel hands out: what is left of the block is suspect
                h = core.find_free_block_containing(st, p)
                if h >= 0:
                    taint_from = h
                    taint_to = h + (np.int64(1) << buddy_order(st, h))
            decided = x[X_ALLOC] == i
            x[X_ALLOC] = -1
            if decided and x[X_RLID] >= 0:
                finish_refilled_alloc(st, sh, loc, unavail, i, c, p, o, mt)
            elif not decided:
                kz = core.page_zone(st, p) if p < npages else -1
                decide_alloc_start(st, sh, loc, unavail, i, c, p, o, gfp, kz, pcp_on, False)
            x[X_RLID] = -1
            if pre_state == R.S_PCP or pre_state == R.S_PCP_OTHER_CPU:
                lv = np.int64(loc[p])
                resolve(sh, p, 0)
                if sh.headins[p] == 0 and lv >= 0:
                    sh.pcp_done[core.pcp_lid(st, lv // NR_PCP_LISTS, core.page_zone(st, p), lv % NR_PCP_LISTS)] = 1
            elif pre_state == R.S_ALLOC or pre_state == R.S_ALLOC_LARGER:
                see_unseen(st, sh, loc, c, p, o)
                resolve_range(st, sh, p, o)
            elif pre_state == R.S_FREE or pre_state == R.S_MIXED:
                resolve_range(st, sh, p, o)
        elif e == R.EV_ZONE_LOCKED and 0 <= p < npages and 0 <= o <= MAX_PAGE_ORDER:
            kz = core.page_zone(st, p)
            if refill == 1 and k != K_REFILL:
                j = sh.nxt_alloc[i]
                start_refill(st, sh, loc, unavail, i, c, p, o, kz, j, np.int64(gfp_col[j]) if j >= 0 else
                             np.int64(G.GFP_KERNEL), pcp_on)
                k = K_REFILL
            if k == K_REFILL:
                decide_refill_block(st, sh, loc, unavail, i, c, p, o)
                x[X_KPFN] = p
            elif k != K_BUDDY:
                j = sh.nxt_alloc[i]
                agfp = np.int64(gfp_col[j]) if j >= 0 else np.int64(G.GFP_KERNEL)
                z, mp, kind, co, fmt, af = decide_alloc_start(st, sh, loc, unavail, i, c, p, o, agfp, kz,
                                                              pcp_on, False)
                x[X_KIND] = K_BUDDY
                x[X_ZONE] = z
                x[X_ALLOC] = j
                x[X_PEEK_PFN] = mp
                x[X_PEEK_KIND] = kind
                x[X_PEEK_CO] = co
                x[X_PEEK_FMT] = fmt
                x[X_PEEK_INF] = 1 if peek_informed(st, sh, z, kind, co, fmt) else 0
                x[X_PEEK_EV] = i
                x[X_FLAGS] = af
                x[X_KPFN] = p
                k = K_BUDDY
            resolve_range(st, sh, p, o)
        elif e == R.EV_EXTFRAG and 0 <= p < npages and 0 <= o <= MAX_PAGE_ORDER:
            kz = core.page_zone(st, p)
            if (k == K_REFILL or k == K_BUDDY) and x[X_KPFN] == p:
                # the zone_locked event just before was this block (a claim below pageblock_order)
                decide_fallback(st, sh, loc, unavail, i, c, p, o, mt, fbo, fbmt, chown, x[X_PEEK_PFN],
                                x[X_PEEK_KIND], x[X_PEEK_CO], x[X_PEEK_FMT], x[X_PEEK_INF] != 0, x[X_ZONE])
            else:
                if k != K_REFILL and pcp_on and core.pcp_allowed_order(st, o) and 0 <= mt < MIGRATE_PCPTYPES:
                    # rmqueue_bulk()'s first block came by a fallback with no zone_locked event
                    # (a whole-block claim, a steal): the refill starts here
                    j = sh.nxt_alloc[i]
                    start_refill(st, sh, loc, unavail, i, c, p, o, kz, j, np.int64(gfp_col[j]) if j >= 0 else
                                 np.int64(G.GFP_KERNEL), pcp_on)
                    k = K_REFILL
                if k == K_REFILL:
                    decide_refill_block(st, sh, loc, unavail, i, c, p, o)
                    decide_fallback(st, sh, loc, unavail, i, c, p, o, mt, fbo, fbmt, chown, x[X_PEEK_PFN],
                                    x[X_PEEK_KIND], x[X_PEEK_CO], x[X_PEEK_FMT], x[X_PEEK_INF] != 0, x[X_ZONE])
                else:
                    j = sh.nxt_alloc[i]
                    agfp = np.int64(gfp_col[j]) if j >= 0 else np.int64(G.GFP_KERNEL)
                    z, mp, kind, co, fmt, af = decide_alloc_start(st, sh, loc, unavail, i, c, p, o, agfp, kz,
                                                                  pcp_on, False)
                    inf = peek_informed(st, sh, z, kind, co, fmt)
                    decide_fallback(st, sh, loc, unavail, i, c, p, o, mt, fbo, fbmt, chown, mp, kind, co, fmt,
                                    inf, z)
                    x[X_KIND] = K_BUDDY
                    x[X_ZONE] = z
                    x[X_ALLOC] = j
                    x[X_PEEK_EV] = i
                    x[X_KPFN] = -1
                    k = K_BUDDY
            # the batch's rmqueue_mode after this block
            if k == K_REFILL:
                x[X_MODE] = core.RMQUEUE_NORMAL if chown == 1 else core.RMQUEUE_STEAL
            resolve_range(st, sh, p, o)
        elif e == R.EV_PCPU_DRAIN and 0 <= p < npages and 0 <= o <= MAX_PAGE_ORDER:
            z = core.page_zone(st, p)
            owner_cpu = c
            pindex = np.int64(-1)
            if st.owner[p] == core.OWNER_PCP:
                owner_cpu, pindex = pcp_pindex_of(st, loc, p)
            if k != K_DRAIN:
                if k == K_FREEC:
                    x[X_TRIGGER] = TRIG_FREE
                    x[X_CURSOR] = x[X_PINDEX]
                else:
                    x[X_TRIGGER] = TRIG_OTHER
                    x[X_CURSOR] = 0
                    x[X_START] = i
                    if ts - sh.last_tick[owner_cpu] > RESYNC_NS:
                        # the kernel's vmstat_update on that CPU: take its phase
                        rows_decay(st, sh, owner_cpu)
                        sh.misc[M_RESYNC] += 1
                        sh.last_tick[owner_cpu] = ts
                        if sh.misc[M_PHASE] < 0:
                            sh.tick[owner_cpu] = ts + core.VMSTAT_INTERVAL_NS
                x[X_KIND] = K_DRAIN
                x[X_COUNT] = 0
                x[X_OWNER] = owner_cpu
                x[X_ZONE] = z
                x[X_REQ] = st.pcp[owner_cpu, z, core.PCP_COUNT] if z >= 0 else 0
                k = K_DRAIN
            decide_drain_page(st, sh, loc, unavail, i, c, p, o)
            if pindex >= 0:
                x[X_CURSOR] = pindex
                if sh.headins[p] != 0:
                    sh.pcp_done[core.pcp_lid(st, owner_cpu, z, pindex)] = 1
                resolve(sh, p, 0)
            else:
                see_unseen(st, sh, loc, owner_cpu, p, o)
            x[X_COUNT] += np.int64(1) << o
            x[X_LAST] = np.int64(1) << o
        # ---- apply the kernel's event
        fz = np.int64(-1)
        if applies_free and 0 <= p < npages and 0 <= fo <= MAX_PAGE_ORDER:
            fz = core.page_zone(st, p)
            if sh.pend[p] >= 0:
                sh.fdec[sh.pend[p], 2] = 2  # freed again before the kernel showed where: unresolved
                sh.pend[p] = -1
        R.exact_event(st, loc, unavail, e, c, p, o, gfp, mt, refill, fbo, fbmt, chown, aux, bm, pcp_on, cnt, xc)
        settle(st, sh, ncand)
        if taint_from >= 0:
            taint(st, sh, taint_from, taint_to)
        if e == R.EV_ALLOC or e == R.EV_FREE or e == R.EV_FREE_BATCHED or e == R.EV_PCPU_DRAIN:
            if 0 <= p < npages:
                if e == R.EV_ALLOC or e == R.EV_PCPU_DRAIN:
                    sh.presnap[p] = 0
        if applies_free and fz >= 0:
            sh.presnap[p] = 0
            on_pcp = st.owner[p] == core.OWNER_PCP
            # the free decision: the model's own free path (free_frozen_pages()) decides pcp or buddy
            dest = np.int64(1)
            if pcp_on and core.pcp_allowed_order(st, fo) and core.get_pfnblock_migratetype(st, p) != core.MT_ISOLATE:
                dest = 0
            kf = sh.nfdec[0]
            if kf < sh.fdec.shape[0]:
                sh.fdec[kf, 0] = dest
                sh.fdec[kf, 1] = 1
                sh.fdec[kf, 2] = 0
                sh.fdec[kf, 3] = i
                sh.nfdec[0] = kf + 1
                sh.pend[p] = kf
            if on_pcp:
                sh.headins[p] = 1
                sh.phantom[p] = 0
                lo, hi, lo_if, hi_if = rows_free_commit(st, sh, c, fz, fo)
                x[X_KIND] = K_FREEC
                x[X_PRED_LO] = lo
                x[X_PRED_HI] = hi
                x[X_IF_LO] = lo_if
                x[X_IF_HI] = hi_if
                x[X_ZONE] = fz
                x[X_START] = i
                mtp = core.get_pfnblock_migratetype(st, p)
                if mtp >= MIGRATE_PCPTYPES:
                    mtp = core.MT_MOVABLE
                x[X_PINDEX] = core.order_to_pindex(mtp, fo)
        elif (e == R.EV_ZONE_LOCKED or e == R.EV_EXTFRAG) and 0 <= p < npages and st.owner[p] == core.OWNER_PCP:
            sh.headins[p] = 0
            sh.phantom[p] = 0
    return last


@njit
def finish(st, sh, loc, unavail, ncpu):
    """Close every open context at the end of the trace."""
    for c in range(ncpu):
        close_ctx(st, sh, loc, unavail, c, -1)
