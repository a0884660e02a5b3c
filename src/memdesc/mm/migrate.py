"""Page migration (mm/migrate.c): moving folios to other pages, through the design.

Theory
------
``migrate_pages(from, get_new_folio, put_new_folio, private, mode, reason)`` moves a list of
isolated folios in batches (``migrate_pages_batch``): an *unmap* phase in which every folio
gets its destination from ``get_new_folio`` (compaction: ``compaction_alloc``, taking pages
its free scanner isolated; otherwise ``alloc_migration_target``) and is unmapped, then a
*move* phase (``migrate_folio_move`` -> ``move_to_new_folio`` -> ``migrate_folio`` /
``folio_migrate_mapping``, which checks the reference count) in which state, mappings, page
cache entry and LRU position go to the destination, ``remove_migration_ptes(src, dst)``
points the page tables at it, and the source is freed.  A folio whose
reference count is not the expected one (a pin, or any transient reference) gives -EAGAIN,
retried up to ``NR_MAX_MIGRATE_PAGES_RETRY`` (10) passes in sync modes and then counted
failed; ``get_new_folio`` returning NULL is -ENOMEM: a large folio is then split
(``try_split_folio``: to order 0, the pieces migrated in the same call, ``nr_split``), any
other failure ends the call, the folios not yet tried going back to their LRU lists
(``putback_movable_pages``).  The split needs a descriptor per new folio on designs with
separate descriptors (counted by the folio layer as split descriptor allocations).

In memdesc the move itself is the folio layer's (``folio.folio_migrate_to`` for a destination
the caller holds, ``folio.folio_migrate`` for one from the page allocator).  The mappings move
as counters (``page_mc``, mapcounts, references: there are no migration entries, nothing runs
in between), and for an anon folio the rmap walk (:mod:`memdesc.mm.rmap`) rewrites the
address spaces' page tables: through the folio's anon_vma (its fork family) and index, every
PTE and PMD naming a source page names the destination page at the same offset, write bit
kept -- in the faulting mm and in every forked child sharing the folio.  A large folio split
for want of a destination (``try_split_folio``) first has its PMD mappings split into PTE
tables by the same walk (``unmap_folio``), and each piece migrates with its own walk.  What differs per
design is the destination's *descriptor*: on ``linux`` (64-byte struct page) the descriptor
is the struct page of the destination, nothing is allocated; on designs with separately
allocated descriptors (``radix``, ``vmem``, ``linux:32``) the destination's descriptor is
allocated from the slab **before** the source is freed -- one allocation per migrated folio,
counted, and when it cannot be had (slab refill failed, failslab) the migration fails with
-ENOMEM, as ``get_new_folio`` returning NULL does.  The model has no notion of time, so a
busy folio stays busy over its retries: it fails once and is counted once.

Mapping to Linux 6.18: :func:`migrate_pages_batch` is the move phase of
``migrate_pages_batch()`` for folios whose destinations were obtained by the caller (mode
MIGRATE_ASYNC / SYNC_LIGHT / SYNC only decides which folios the *isolation* took: the move
never blocks here); :func:`migrate_pages` is ``migrate_pages()`` with
``alloc_migration_target``.  Statistics: ``mm_migrate_pages``' ``nr_succeeded`` (pages) and
``nr_failed`` (folios) per call.  Not modelled: THP splitting on failure (``nr_thp_split``),
hugetlb, non-LRU movable_ops pages (zsmalloc, balloon), migration entries (the move is one
step; the walk looks for entries naming the source pfns), the file rmap walk (no file VMAs:
page-cache folios are mapped by counters only), NUMA targets.
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc.mm import folio as F

# enum migrate_mode (include/linux/migrate_mode.h)
MIGRATE_ASYNC, MIGRATE_SYNC_LIGHT, MIGRATE_SYNC = 0, 1, 2
MIGRATE_MODE_NAMES = ("MIGRATE_ASYNC", "MIGRATE_SYNC_LIGHT", "MIGRATE_SYNC")
#: include/linux/migrate.h
NR_MAX_MIGRATE_PAGES_RETRY = 10

# per-folio outcomes of migrate_pages_batch (out[i])
MIG_OK = 0          # migrated: out_slot[i] is the new folio
MIG_EAGAIN = 1      # busy (pinned, extra references): failed after the retries
MIG_ENOMEM = 2      # no destination descriptor (or no destination): -ENOMEM, the call ends
MIG_NOT_TRIED = 3   # put back untouched after an -ENOMEM
MIG_INVALID = 4     # not a live folio

# counters (index into the ``stats`` array a caller passes)
(MS_CALLS, MS_SUCCEEDED_PAGES, MS_SUCCEEDED, MS_FAILED, MS_FAILED_BUSY, MS_FAILED_NOMEM_DESC,
 MS_DESC_ALLOCS, MS_NOT_TRIED) = range(8)
NR_MS = 8
MS_NAMES = ("calls", "succeeded_pages", "succeeded", "failed", "failed_busy", "failed_nomem_descriptor",
            "descriptor_allocations", "put_back_untried")


@njit
def migrate_one(ms, ss, pa, s, dst, cpu, stats):
    """One folio of a migrate_pages() call to the untyped allocation dst the caller holds:
    (MIG_* outcome, new slot or -1); folio.E_NOCAP as the outcome when nothing changed for
    want of capacity."""
    d0 = ms.ostat[F.OP_MIGRATE, F.OS_DESC_ALLOCS]
    r = F.folio_migrate_to(ms, ss, pa, s, dst, cpu)
    stats[MS_DESC_ALLOCS] += ms.ostat[F.OP_MIGRATE, F.OS_DESC_ALLOCS] - d0
    if r == F.E_NOCAP:
        return np.int64(F.E_NOCAP), np.int64(-1)
    if r >= 0:
        stats[MS_SUCCEEDED] += 1
        stats[MS_SUCCEEDED_PAGES] += np.int64(1) << ms.order[r]
        return np.int64(MIG_OK), np.int64(r)
    stats[MS_FAILED] += 1
    if r == F.E_BUSY:
        stats[MS_FAILED_BUSY] += 1
        return np.int64(MIG_EAGAIN), np.int64(-1)
    if r == F.E_NOMEM_DESC:
        stats[MS_FAILED_NOMEM_DESC] += 1
        return np.int64(MIG_ENOMEM), np.int64(-1)
    return np.int64(MIG_INVALID), np.int64(-1)


@njit
def migrate_pages_batch(ms, ss, pa, slots, dsts, n, cpu, out, out_slot, stats):
    """Move folios ``slots[:n]`` to the untyped allocations ``dsts[:n]`` the caller holds (each of
    its folio's order).  ``out[i]``: MIG_*; ``out_slot[i]``: the new folio for MIG_OK.  A
    destination that was not used (every outcome but MIG_OK) stays the caller's
    (compaction_free).  Returns 0, or -ENOMEM (-12) when a destination's descriptor could not
    be had (the remaining folios are MIG_NOT_TRIED), or folio.E_NOCAP before any change to
    folio ``i`` (grow and call again from there: ``out[i]`` is then -1)."""
    stats[MS_CALLS] += 1
    err = np.int64(0)
    for i in range(n):
        if err != 0:
            out[i] = MIG_NOT_TRIED
            stats[MS_NOT_TRIED] += 1
            continue
        r, ns = migrate_one(ms, ss, pa, slots[i], dsts[i], cpu, stats)
        if r == F.E_NOCAP:
            out[i] = -1
            return F.E_NOCAP
        out[i] = r
        out_slot[i] = ns
        if r == MIG_ENOMEM:
            err = np.int64(-12)
    return err


@njit
def migrate_pages(ms, ss, pa, slots, n, cpu, out, out_slot, stats):
    """migrate_pages() with alloc_migration_target(): each folio to a new folio from the page
    allocator (its own gfp), descriptor first.  Same outcomes as :func:`migrate_pages_batch`;
    -ENOMEM when a destination (descriptor or pages) could not be had."""
    stats[MS_CALLS] += 1
    err = np.int64(0)
    for i in range(n):
        if err != 0:
            out[i] = MIG_NOT_TRIED
            stats[MS_NOT_TRIED] += 1
            continue
        s = slots[i]
        d0 = ms.ostat[F.OP_MIGRATE, F.OS_DESC_ALLOCS]
        r = F.folio_migrate(ms, ss, pa, s, cpu)
        stats[MS_DESC_ALLOCS] += ms.ostat[F.OP_MIGRATE, F.OS_DESC_ALLOCS] - d0
        if r == F.E_NOCAP:
            out[i] = -1
            return F.E_NOCAP
        if r >= 0:
            out[i] = MIG_OK
            out_slot[i] = r
            stats[MS_SUCCEEDED] += 1
            stats[MS_SUCCEEDED_PAGES] += np.int64(1) << ms.order[r]
        elif r == F.E_BUSY:
            out[i] = MIG_EAGAIN
            stats[MS_FAILED] += 1
            stats[MS_FAILED_BUSY] += 1
        elif r == F.E_NOMEM_DESC or r == F.E_NOMEM_PAGES:
            out[i] = MIG_ENOMEM
            stats[MS_FAILED] += 1
            if r == F.E_NOMEM_DESC:
                stats[MS_FAILED_NOMEM_DESC] += 1
            err = np.int64(-12)
        else:
            out[i] = MIG_INVALID
            stats[MS_FAILED] += 1
    return err
