"""LRU insertion and activation (mm/swap.c), reclaim statistics, an optional swap device.

Theory
------
The LRU lists themselves are the folio layer's (:mod:`memdesc.mm.folio`: one lruvec per
memory cgroup, rows ``memcg * NR_LRU_LISTS + lru`` of ``lru_head``, each folio linked
through ``lru_next``/``lru_prev``).  This module is how folios *get onto* them and move
between them, as in Linux 6.18 with the classic (two-list) LRU -- the kernel of the
captures runs it: the ``reclaim`` capture shows ``mm_vmscan_lru_shrink_inactive`` and
``mm_vmscan_lru_isolate`` events, which MGLRU's ``evict_folios`` never emits.

* ``folio_add_lru`` takes a reference and puts the folio in the *per-CPU* ``lru_add``
  folio batch (``cpu_fbatches.lru_add``, ``PAGEVEC_SIZE`` = 31 folios); the batch is moved
  to the lists (``folio_batch_move_lru`` -> ``lru_add``: PG_lru set, ``lruvec_add_folio``
  at the list head, the batch's reference dropped) when it is full, when the folio is
  large (6.18: ``folio_may_be_lru_cached()`` is false for large folios), or at
  ``lru_add_drain`` (which every ``shrink_*_list`` does first, on the reclaiming CPU).
  A folio goes to the unevictable list when ``folio_evictable()`` is false (PG_mlocked,
  or an unevictable mapping), else to ``[in]active_{anon,file}`` by PG_active.
* ``folio_mark_accessed``: a first access sets PG_referenced; a second one on an inactive,
  evictable folio activates it -- through the per-CPU ``lru_activate`` batch when the folio
  is on a list (``folio_activate``: PG_active set, moved to the active list head,
  ``PGACTIVATE``), or by setting PG_active on the folio still sitting in this CPU's
  ``lru_add`` batch (``__lru_cache_activate_folio``) -- and clears PG_referenced.
* ``lru_note_cost``: reclaim's cost of a list type (``nr_io * SWAP_CLUSTER_MAX +
  nr_rotated``) added to the lruvec and its ancestors, halved when the costs exceed a
  quarter of the lruvec's pages; ``get_scan_count`` balances anon against file with it.
* The swap device is optional and off by default (``swap_pages`` 0, as the captures'
  machine: no swap).  With one, anonymous folios can be reclaimed: ``add_to_swap`` takes
  ``folio_nr_pages`` slots, the write completes synchronously (as a ``SWP_SYNCHRONOUS_IO``
  device such as zram) and the slots stay taken (swap-in is not modelled).

State: :class:`ReclaimState` (numpy arrays in a numba struct; the kernels of this module,
:mod:`memdesc.mm.memcontrol` and :mod:`memdesc.mm.vmscan` take it explicitly beside the
folio state ``ms``): configuration, vm event counters (``/proc/vmstat`` names), the memory
cgroup table, per-CPU charge stocks and folio batches, kswapd's state, the scan control of
the reclaim in progress, and an event log in the tracepoints' terms.

A model-only folio bit ``FOLIO_YOUNG`` (bit 30 of the folio flags, no PG_ flag) stands for
the accessed bits of the PTEs that map the folio: ``folio_referenced()`` tests and clears it.
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc._struct import StructProxy, StructType, define_struct
from memdesc.errors import ConfigError
from memdesc.mm import memmap as mmap
from memdesc.mm.folio import (
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    LRU_UNEVICTABLE,
    MD_ANON,
    NR_LRU_LISTS,
    folio_live,
    lru_add,
    lru_del,
)

# ------------------------------------------------------------------ constants (include/linux/*.h)
PAGEVEC_SIZE = 31            # folio_batch: PAGEVEC_SIZE
SWAP_CLUSTER_MAX = 32
DEF_PRIORITY = 12
MAX_RECLAIM_RETRIES = 16
MEMCG_CHARGE_BATCH = 64
MAX_SWAPPINESS = 200
DEFAULT_SWAPPINESS = 60
PAGE_ALLOC_COSTLY_ORDER = 3

#: model-only folio bit: the PTEs mapping the folio were accessed (folio_referenced())
FOLIO_YOUNG = 30

B_REFERENCED = np.int64(1) << mmap.PG_referenced
B_ACTIVE = np.int64(1) << mmap.PG_active
B_LRU = np.int64(1) << mmap.PG_lru
B_UNEVICTABLE = np.int64(1) << mmap.PG_unevictable
B_MLOCKED = np.int64(1) << mmap.PG_mlocked
B_DIRTY = np.int64(1) << mmap.PG_dirty
B_WRITEBACK = np.int64(1) << mmap.PG_writeback
B_RECLAIM = np.int64(1) << mmap.PG_readahead     # 6.18: PG_reclaim = PG_readahead
B_WORKINGSET = np.int64(1) << mmap.PG_workingset
B_SWAPBACKED = np.int64(1) << mmap.PG_swapbacked
B_SWAPCACHE = np.int64(1) << mmap.PG_owner_priv_1
B_YOUNG = np.int64(1) << FOLIO_YOUNG

# cfg
RC_NCPU, RC_SWAPPINESS, RC_SWAP_TOTAL, RC_LAPTOP_MODE, RC_LOG_MASK, RC_NMEMCG = range(6)
NR_RC = 8

# vm event counters (/proc/vmstat names)
VM_NAMES = ("pgscan_kswapd", "pgscan_direct", "pgscan_anon", "pgscan_file", "pgsteal_kswapd", "pgsteal_direct",
            "pgsteal_anon", "pgsteal_file", "pgactivate", "pgdeactivate", "pgrefill", "pgrotated", "allocstall",
            "pageoutrun", "kswapd_wake", "kswapd_sleep", "nr_vmscan_immediate_reclaim", "nr_vmscan_write",
            "pswpout", "swap_used", "memcg_reclaim", "direct_reclaim", "compact_stall", "alloc_fail", "oom",
            "lru_add", "lru_batch_flush", "memcg_charge_fail", "pgsteal_memcg", "pgscan_memcg", "writeback_done")
(VM_PGSCAN_KSWAPD, VM_PGSCAN_DIRECT, VM_PGSCAN_ANON, VM_PGSCAN_FILE, VM_PGSTEAL_KSWAPD, VM_PGSTEAL_DIRECT,
 VM_PGSTEAL_ANON, VM_PGSTEAL_FILE, VM_PGACTIVATE, VM_PGDEACTIVATE, VM_PGREFILL, VM_PGROTATED, VM_ALLOCSTALL,
 VM_PAGEOUTRUN, VM_KSWAPD_WAKE, VM_KSWAPD_SLEEP, VM_IMMEDIATE, VM_WRITE, VM_PSWPOUT, VM_SWAP_USED,
 VM_MEMCG_RECLAIM, VM_DIRECT_RECLAIM, VM_COMPACT_STALL, VM_ALLOC_FAIL, VM_OOM, VM_LRU_ADD, VM_BATCH_FLUSH,
 VM_CHARGE_FAIL, VM_PGSTEAL_MEMCG, VM_PGSCAN_MEMCG, VM_WB_DONE) = range(len(VM_NAMES))
NR_VM = len(VM_NAMES)

# memory cgroup table columns (one row per memcg; row 0 the root)
MC_NAMES = ("usage", "max", "failcnt", "watermark", "parent", "online", "events_max", "anon_cost", "file_cost",
            "pgscan", "pgsteal", "oom", "reclaim_rounds", "pgactivate", "pgdeactivate", "pgrefill")
(MCF_USAGE, MCF_MAX, MCF_FAILCNT, MCF_WATERMARK, MCF_PARENT, MCF_ONLINE, MCF_EVENTS_MAX, MCF_ANON_COST,
 MCF_FILE_COST, MCF_PGSCAN, MCF_PGSTEAL, MCF_OOM, MCF_ROUNDS, MCF_PGACTIVATE, MCF_PGDEACTIVATE,
 MCF_PGREFILL) = range(len(MC_NAMES))
NR_MCF = len(MC_NAMES)
PAGE_COUNTER_MAX = np.int64(1) << 62

# per-CPU folio batches
FB_LRU_ADD, FB_ACTIVATE = 0, 1
NR_FB = 2

# kswapd
KS_WOKEN, KS_ORDER, KS_ZONEIDX, KS_FAILURES, KS_RUNS = range(5)
NR_KS = 8

# the model's event log: kind + up to 11 values, named as the tracepoints' fields
(LOG_MEMCG_BEGIN, LOG_MEMCG_END, LOG_DIRECT_BEGIN, LOG_DIRECT_END, LOG_KSWAPD_WAKE, LOG_KSWAPD_SLEEP,
 LOG_WAKEUP_KSWAPD, LOG_ISOLATE, LOG_SHRINK_INACTIVE, LOG_SHRINK_ACTIVE, LOG_RECLAIMED, LOG_LRU_INSERT,
 LOG_LRU_ACTIVATE, LOG_CHARGE_FAIL) = range(14)
LOG_KINDS = ("memcg_reclaim_begin", "memcg_reclaim_end", "direct_reclaim_begin", "direct_reclaim_end",
             "kswapd_wake", "kswapd_sleep", "wakeup_kswapd", "lru_isolate", "lru_shrink_inactive",
             "lru_shrink_active", "reclaimed_folio", "lru_insertion", "lru_activate", "charge_fail")
#: kind + 11 values; columns 12 and 13 are free for a driver (event index, its own id)
LOG_WIDTH = 14
#: log kinds on by default (the per-folio insert/activate records are opt-in)
LOG_DEFAULT = sum(1 << k for k in range(LOG_LRU_INSERT)) | (1 << LOG_CHARGE_FAIL)


class ReclaimStateType(StructType):
    pass


class ReclaimState(StructProxy):
    """cfg, vm counters, memcg table, per-CPU stocks and folio batches, kswapd, scan control, log."""

    _fields = ("cfg", "vm", "mc", "stock", "fb", "fbn", "ks", "sc", "iso", "log", "logn")


define_struct(ReclaimState, ReclaimStateType)


def new_reclaim_state(nr_cpus: int, max_memcgs: int = 64, swap_pages: int = 0, swappiness: int = DEFAULT_SWAPPINESS,
                      log_capacity: int = 1 << 16, log_mask: int = LOG_DEFAULT) -> ReclaimState:
    if nr_cpus < 1 or max_memcgs < 1:
        raise ConfigError("a reclaim state needs at least one CPU and one memcg (the root)")
    if swap_pages < 0 or not 0 <= swappiness <= MAX_SWAPPINESS:
        raise ConfigError(f"swap_pages {swap_pages} / swappiness {swappiness} out of range")
    cfg = np.zeros(NR_RC, np.int64)
    cfg[RC_NCPU] = nr_cpus
    cfg[RC_SWAPPINESS] = swappiness
    cfg[RC_SWAP_TOTAL] = swap_pages
    cfg[RC_LOG_MASK] = log_mask
    cfg[RC_NMEMCG] = 1
    mc = np.zeros((max_memcgs, NR_MCF), np.int64)
    mc[:, MCF_MAX] = PAGE_COUNTER_MAX
    mc[:, MCF_PARENT] = -1
    mc[0, MCF_ONLINE] = 1
    stock = np.zeros((nr_cpus, 2), np.int64)
    stock[:, 0] = -1
    return ReclaimState(cfg=cfg, vm=np.zeros(NR_VM, np.int64), mc=mc, stock=stock,
                        fb=np.full((nr_cpus, NR_FB, PAGEVEC_SIZE), -1, np.int64),
                        fbn=np.zeros((nr_cpus, NR_FB), np.int64), ks=np.zeros(NR_KS, np.int64),
                        sc=np.zeros(64, np.int64), iso=np.full(4 * SWAP_CLUSTER_MAX, -1, np.int64),
                        log=np.zeros((max(16, int(log_capacity)), LOG_WIDTH), np.int64), logn=np.zeros(2, np.int64))


def grow_log(rs: ReclaimState, capacity: int) -> ReclaimState:
    """The same state with a log of ``capacity`` rows (the logged rows kept)."""
    if capacity <= rs.log.shape[0]:
        return rs
    log = np.zeros((capacity, LOG_WIDTH), np.int64)
    log[:rs.log.shape[0]] = rs.log
    return ReclaimState(**{f: (log if f == "log" else getattr(rs, f)) for f in ReclaimState._fields})


# ------------------------------------------------------------------ log


@njit
def rlog(rs, kind, a, b, c, d, e, f, g, h, i, j, k):
    """Append one model event (when its kind is enabled); a full log counts the drop."""
    if not (rs.cfg[RC_LOG_MASK] >> kind) & 1:
        return
    n = rs.logn[0]
    if n >= rs.log.shape[0]:
        rs.logn[1] += 1
        return
    r = rs.log[n]
    r[0] = kind
    r[1] = a
    r[2] = b
    r[3] = c
    r[4] = d
    r[5] = e
    r[6] = f
    r[7] = g
    r[8] = h
    r[9] = i
    r[10] = j
    r[11] = k
    rs.logn[0] = n + 1


# ------------------------------------------------------------------ folio predicates


@njit(inline="always")
def folio_is_file_lru(ms, s):
    """!PG_swapbacked: page cache (shmem is swap-backed and not modelled here)."""
    return ms.mtype[s] != MD_ANON


@njit(inline="always")
def folio_evictable(ms, s):
    return (ms.flags[s] & (B_MLOCKED | B_UNEVICTABLE)) == 0


@njit(inline="always")
def folio_lru_list(ms, s):
    """folio_lru_list(): the list a folio belongs on from its flags."""
    if not folio_evictable(ms, s):
        return LRU_UNEVICTABLE
    base = LRU_INACTIVE_FILE if folio_is_file_lru(ms, s) else LRU_INACTIVE_ANON
    if ms.flags[s] & B_ACTIVE:
        return base + 1
    return base


@njit(inline="always")
def lruvec_size(ms, memcg, lru):
    """lruvec_lru_size(): pages on one list of memcg's own lruvec."""
    return ms.lru_head[np.int64(memcg) * NR_LRU_LISTS + lru, 3]


@njit
def lruvec_size_tree(ms, rs, memcg, lru):
    """The hierarchical size of a list: memcg and all its descendants (the target lruvec's
    ``lruvec_page_state``; memcg 0 = the node's lruvec)."""
    n = rs.cfg[RC_NMEMCG]
    tot = np.int64(0)
    for m in range(n):
        if rs.mc[m, MCF_ONLINE] == 0 and m != 0:
            continue
        a = m
        while a >= 0 and a != memcg:
            a = rs.mc[a, MCF_PARENT]
        if a == memcg:
            tot += lruvec_size(ms, m, lru)
    return tot


# ------------------------------------------------------------------ lru_add batches (mm/swap.c)


@njit
def lru_add_one(ms, rs, s):
    """lru_add(): PG_lru, lruvec_add_folio() at the list head, trace mm_lru_insertion."""
    if not folio_evictable(ms, s):
        ms.flags[s] &= ~B_ACTIVE
        ms.flags[s] |= B_UNEVICTABLE
    lru = folio_lru_list(ms, s)
    active = (ms.flags[s] & B_ACTIVE) != 0
    lru_add(ms, s, lru, False)
    if active:
        ms.flags[s] |= B_ACTIVE
    rs.vm[VM_LRU_ADD] += 1
    rlog(rs, LOG_LRU_INSERT, s, ms.pfn[s], lru, ms.memcg[s], 0, 0, 0, 0, 0, 0, 0)


@njit
def folio_batch_move_lru(ms, rs, cpu, which):
    """Move one per-CPU batch to the lists in batch order and drop the batch's references."""
    n = rs.fbn[cpu, which]
    for i in range(n):
        s = rs.fb[cpu, which, i]
        rs.fb[cpu, which, i] = -1
        if not folio_live(ms, s):
            continue
        if which == FB_LRU_ADD:
            lru_add_one(ms, rs, s)
        else:
            lru_activate(ms, rs, s)
        ms.ref[s] -= 1
    rs.fbn[cpu, which] = 0
    if n:
        rs.vm[VM_BATCH_FLUSH] += 1


@njit
def lru_activate(ms, rs, s):
    """lru_activate(): an inactive, evictable folio on a list moves to the active list head."""
    if ms.lru[s] < 0 or (ms.flags[s] & B_ACTIVE) or not folio_evictable(ms, s):
        return
    lru_del(ms, s)
    ms.flags[s] |= B_ACTIVE
    lru_add(ms, s, folio_lru_list(ms, s), False)
    nr = np.int64(1) << ms.order[s]
    rs.vm[VM_PGACTIVATE] += nr
    rs.mc[ms.memcg[s], MCF_PGACTIVATE] += nr
    rlog(rs, LOG_LRU_ACTIVATE, s, ms.pfn[s], 0, 0, 0, 0, 0, 0, 0, 0, 0)


@njit
def folio_batch_add_and_move(ms, rs, s, cpu, which):
    """folio_batch_add_and_move(): a reference for the batch; flush when full or large."""
    ms.ref[s] += 1
    n = rs.fbn[cpu, which]
    rs.fb[cpu, which, n] = s
    rs.fbn[cpu, which] = n + 1
    if n + 1 >= PAGEVEC_SIZE or ms.order[s] > 0:
        folio_batch_move_lru(ms, rs, cpu, which)


@njit
def folio_add_lru(ms, rs, s, cpu):
    """folio_add_lru(): into this CPU's lru_add batch (E_INVAL-like -1 if already on a list)."""
    if not folio_live(ms, s) or ms.lru[s] >= 0 or (ms.flags[s] & B_LRU):
        return -1
    for c in range(rs.fb.shape[0]):
        for i in range(rs.fbn[c, FB_LRU_ADD]):
            if rs.fb[c, FB_LRU_ADD, i] == s:
                return -1
    folio_batch_add_and_move(ms, rs, s, cpu, FB_LRU_ADD)
    return 0


@njit
def lru_add_drain_cpu(ms, rs, cpu):
    folio_batch_move_lru(ms, rs, cpu, FB_LRU_ADD)
    folio_batch_move_lru(ms, rs, cpu, FB_ACTIVATE)


@njit
def lru_add_drain_all(ms, rs):
    for c in range(rs.fb.shape[0]):
        lru_add_drain_cpu(ms, rs, c)


@njit
def folio_in_batch(rs, s, cpu, which):
    for i in range(rs.fbn[cpu, which]):
        if rs.fb[cpu, which, i] == s:
            return True
    return False


@njit
def folio_activate(ms, rs, s, cpu):
    """folio_activate(): through this CPU's lru_activate batch."""
    if (ms.flags[s] & B_ACTIVE) or not folio_evictable(ms, s):
        return
    folio_batch_add_and_move(ms, rs, s, cpu, FB_ACTIVATE)   # (a folio may sit there twice)


@njit
def folio_mark_accessed(ms, rs, s, cpu):
    """folio_mark_accessed() (classic LRU): referenced, then activated on the second access."""
    if not folio_live(ms, s):
        return
    f = ms.flags[s]
    if not (f & B_REFERENCED):
        ms.flags[s] |= B_REFERENCED
    elif not folio_evictable(ms, s):
        pass
    elif not (f & B_ACTIVE):
        if f & B_LRU:
            folio_activate(ms, rs, s, cpu)
        elif folio_in_batch(rs, s, cpu, FB_LRU_ADD):
            ms.flags[s] |= B_ACTIVE          # __lru_cache_activate_folio()
        ms.flags[s] &= ~B_REFERENCED


@njit
def lru_note_cost(ms, rs, memcg, file, nr_io, nr_rotated):
    """lru_note_cost(): cost = nr_io * SWAP_CLUSTER_MAX + nr_rotated, up the hierarchy, halved
    when anon + file cost exceeds a quarter of the lruvec's pages."""
    cost = nr_io * SWAP_CLUSTER_MAX + nr_rotated
    m = np.int64(memcg)
    while m >= 0:
        if file:
            rs.mc[m, MCF_FILE_COST] += cost
        else:
            rs.mc[m, MCF_ANON_COST] += cost
        lrusize = np.int64(0)
        for lru in range(4):
            lrusize += lruvec_size(ms, m, lru)
        if rs.mc[m, MCF_ANON_COST] + rs.mc[m, MCF_FILE_COST] > lrusize // 4:
            rs.mc[m, MCF_ANON_COST] //= 2
            rs.mc[m, MCF_FILE_COST] //= 2
        m = rs.mc[m, MCF_PARENT]


# ------------------------------------------------------------------ the swap device


@njit(inline="always")
def nr_swap_pages(rs):
    """get_nr_swap_pages(): free slots of the (optional) swap device."""
    return rs.cfg[RC_SWAP_TOTAL] - rs.vm[VM_SWAP_USED]


@njit
def add_to_swap(ms, rs, s):
    """folio_alloc_swap() + the swap cache: False when the device has no room."""
    nr = np.int64(1) << ms.order[s]
    if nr_swap_pages(rs) < nr:
        return False
    rs.vm[VM_SWAP_USED] += nr
    ms.flags[s] |= B_SWAPCACHE
    return True


@njit
def check_batches(ms, rs):
    """0, or 1 + cpu of the first batch holding a folio that is dead or already on a list."""
    for c in range(rs.fb.shape[0]):
        for w in range(NR_FB):
            for i in range(rs.fbn[c, w]):
                s = rs.fb[c, w, i]
                if not folio_live(ms, s):
                    return 1 + c
                if w == FB_LRU_ADD and ms.lru[s] >= 0:
                    return 1 + c
    return 0


LRU_LIST_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")
LRU_ACTIVE_LISTS = (LRU_ACTIVE_ANON, LRU_ACTIVE_FILE)
