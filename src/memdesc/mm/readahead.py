"""Readahead: Linux 6.18's mm/readahead.c and the read / fault paths of mm/filemap.c that call it.

Theory
------
Every open file has a ``struct file_ra_state`` -- ``start``, ``size``, ``async_size``
(the last readahead window and its asynchronous tail), ``ra_pages`` (the window limit,
``bdi->ra_pages``, doubled by ``POSIX_FADV_SEQUENTIAL``), ``order`` (the folio order the
next window may use), ``mmap_miss`` (mmap faults that missed the cache) and
``prev_pos`` (the byte after the previous read).  Readahead is *deterministic given the
read requests and the page-cache contents*: this module ports, line by line, the code
that turns one request into folios added to the page cache:

* ``filemap_get_pages`` (one iteration of ``filemap_read``): a missing first folio calls
  ``page_cache_sync_ra(index, last_index - index)``; the last folio of the read batch
  (which stops at a hole, a folio not yet uptodate, a ``PG_readahead`` folio or 31
  folios) carrying ``PG_readahead`` calls ``page_cache_async_ra`` (``filemap_readahead``);
  if nothing could be read ahead ``filemap_create_folio`` adds one min-order folio.
* ``page_cache_sync_ra``: start of file, oversized or sequential (``index - prev_index
  <= 1``) -> ``get_init_ra_size`` (round up to a power of two; x4 up to max/32, x2 up to
  max/4, else max) with ``async_size = size - req`` (or ``size / 2``); otherwise
  ``page_cache_prev_miss`` looks for the cached history of a stream: no more than the
  request -> a plain ``do_page_cache_ra(req, 0)``; else a window of ``contig + req``
  (doubled history when cached from index 0), ``async_size = 1``.  ``ra->order = 0``.
* ``page_cache_async_ra``: at the expected mark (``round_down(start + size - async_size,
  folio_nr_pages)``) the window moves on, ``get_next_ra_size`` (x4 below max/16, x2 up
  to max/2, else max); otherwise ``page_cache_next_miss`` measures the old window.
  ``ra->order += 2``; the window end is aligned down to ``1 << min(order, ffs(max) - 1)``;
  ``async_size = size``.
* ``page_cache_ra_order``: ``new_order = max(min_order, min(order, max_order,
  ilog2(size)))`` (``ra->order`` becomes it); folios from the start, an unaligned index
  using ``__ffs(index)``, the order lowered while the folio would pass EOF (or the
  window); ``PG_readahead`` on the folio holding ``round_down(mark, 1 << order)``; the
  first failure (a folio already cached: -EEXIST, or no memory) falls back to
  ``do_page_cache_ra`` for the rest -- as does a mapping without large folios.
* ``do_page_cache_ra`` clamps to EOF, ``page_cache_ra_unbounded`` adds min-order folios
  over the holes, marking the one at ``index + nr_to_read - lookahead_size``.
* the mmap fault path: ``do_sync_mmap_readahead`` on a miss (``VM_HUGEPAGE``: two
  PMD-size folios; ``VM_SEQ_READ``: sync readahead of ``ra_pages``; else ``mmap_miss++``
  and, up to ``MMAP_LOTSAMISS`` (100) misses, read-around: ``start = index - ra_pages/2``,
  ``size = ra_pages``, ``async_size = ra_pages/4``; ``VM_EXEC``: the VMA-bounded window of
  ``exec_folio_order()``, no async tail), then ``__filemap_get_folio(FGP_CREAT |
  FGP_FOR_MMAP)``; ``do_async_mmap_readahead`` on a hit (``mmap_miss--``, async readahead
  on a ``PG_readahead`` folio with ``req_count = ra_pages``); ``filemap_map_pages``
  (fault-around) lowers ``mmap_miss`` by the pages it maps.

State is numpy arrays (:class:`RaArrays`, one row per open file) beside the page cache's
(:mod:`memdesc.mm.filemap`); every function above is an ``@njit`` kernel named after its
Linux counterpart.  Each kernel appends what the kernel's tracepoints would print to an
effect log (:class:`RaCtx`: ``EV_SYNC_RA``, ``EV_ASYNC_RA``, ``EV_RA_ORDER``,
``EV_RA_UNBOUNDED``, ``EV_ADD``) with the same fields, so a run can be compared with a
capture event by event (:mod:`memdesc.sim.readahead`).  :class:`Readahead` is the thin
Python facade.

I/O timing: a folio added for reading is locked and not uptodate until a reader waits on
it (``filemap_update_page``, ``filemap_fault``): the wait completes every outstanding read
of the file (:func:`folio_complete_reads`).  Not modelled: real I/O latencies,
``FMODE_RANDOM`` unless set, ``blk_cgroup_congested``, writeback folios (``PG_reclaim``
shares the ``PG_readahead`` bit), ``bdi->io_pages`` unless given, readahead(2) and
fadvise(WILLNEED) (``force_page_cache_ra`` is here; only ``FMODE_RANDOM`` calls it),
``readahead_expand``, ``dropbehind``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from memdesc._numba import njit
from memdesc.mm import filemap as fm
from memdesc.mm.filemap import (
    PG_READAHEAD,
    PG_UPTODATE,
    PG_WORKINGSET,
    PageCache,
    filemap_add_folio_nb,
    filemap_get_folio_nb,
    page_cache_next_miss_nb,
    page_cache_prev_miss_nb,
)

PAGE_SHIFT = 12
MMAP_LOTSAMISS = 100
PAGEVEC_SIZE = fm.PAGEVEC_SIZE
HPAGE_PMD_ORDER = fm.HPAGE_PMD_ORDER
MAX_PAGECACHE_ORDER = fm.MAX_PAGECACHE_ORDER
#: 2 MiB chunks of force_page_cache_ra
FORCE_CHUNK = (2 * 1024 * 1024) >> PAGE_SHIFT

# vm_flags bits (include/linux/mm.h)
VM_EXEC = 0x00000004
VM_SEQ_READ = 0x00008000
VM_RAND_READ = 0x00010000
VM_HUGEPAGE = 0x20000000

# file flags kept in RaArrays.flags
RA_FMODE_RANDOM = 1

# effect kinds (what a tracepoint would print)
EV_SYNC_RA = 0
EV_ASYNC_RA = 1
EV_RA_ORDER = 2
EV_RA_UNBOUNDED = 3
EV_ADD = 4
NR_EV = 5
EV_NAMES = ("page_cache_sync_ra", "page_cache_async_ra", "page_cache_ra_order", "page_cache_ra_unbounded",
            "mm_filemap_add_to_page_cache")

# effect record fields
O_KIND = 0
O_INDEX = 1
O_ORDER = 2       # ra->order (ra events), folio order (adds)
O_SIZE = 3        # ra->size; nr_to_read (unbounded); 1 << order (adds)
O_ASYNC = 4       # ra->async_size; lookahead_size (unbounded); 0 (adds)
O_REQ = 5         # req_count (sync/async)
O_RA_PAGES = 6
O_MMAP_MISS = 7
O_PREV_POS = 8
O_FILE = 9
O_FOLIO = 10      # folio id (adds), -1
O_FLAGS = 11      # adds: PG flags | ADD_* origin bits
O_REQID = 12
O_LEN = 13
ADD_CREATE = 1 << 16   # filemap_create_folio / FGP_CREAT, not readahead

# RaCtx.ctl words
CT_N = 0          # effect records written
CT_REQID = 1      # request id stamped on records
CT_NUNDO = 2      # undo records written
CT_OVERFLOW = 3   # records dropped for want of room
CT_ALLOC_MAX = 4  # folio allocations above this order fail (-ENOMEM); default 63
CT_NOMEM = 5      # the page cache ran out of XArray nodes / folio rows (a driver error)
CT_NINFLIGHT = 6  # folios under read I/O (in ``RaCtx.inflight``)
CT_WAITS = 7      # readers that waited for read I/O
CT_LEN = 8


class RaArrays(NamedTuple):
    """``struct file_ra_state`` of every open file, plus what a file knows of its mapping."""

    start: np.ndarray
    size: np.ndarray
    async_size: np.ndarray
    ra_pages: np.ndarray
    order: np.ndarray
    mmap_miss: np.ndarray
    prev_pos: np.ndarray
    io_pages: np.ndarray   # bdi->io_pages of the file's device
    mapping: np.ndarray    # the file's address space id
    flags: np.ndarray      # RA_FMODE_RANDOM


def new_ra_arrays(n: int) -> RaArrays:
    n = max(1, int(n))
    z = lambda: np.zeros(n, np.int64)  # noqa: E731
    r = RaArrays(z(), z(), z(), z(), z(), z(), np.full(n, -1, np.int64), z(), np.full(n, -1, np.int64), z())
    return r


class RaCtx(NamedTuple):
    """The effect log of a run, its undo log (folios added, marks cleared) and the folios
    under read I/O."""

    out: np.ndarray       # int64[cap, O_LEN]
    ctl: np.ndarray       # int64[CT_LEN]
    undo: np.ndarray      # int64[cap, 2]: (folio id, -1) added, (folio id, old flags) flags changed
    inflight: np.ndarray  # int64[cap, 3]: (folio id, mapping, index) added by readahead, not yet uptodate


def new_ctx(cap: int = 4096, undo_cap: int | None = None, inflight_cap: int = 1 << 14) -> RaCtx:
    ctl = np.zeros(CT_LEN, np.int64)
    ctl[CT_ALLOC_MAX] = 63
    return RaCtx(np.zeros((max(16, cap), O_LEN), np.int64), ctl,
                 np.zeros((max(16, undo_cap if undo_cap is not None else cap), 2), np.int64),
                 np.zeros((max(16, inflight_cap), 3), np.int64))


# ------------------------------------------------------------------------------------------
# small helpers (include/linux/log2.h, bitops)
# ------------------------------------------------------------------------------------------
@njit
def roundup_pow_of_two(n):
    v = np.int64(1)
    while v < n:
        v <<= 1
    return v


@njit
def ilog2(n):
    r = np.int64(-1)
    while n > 0:
        n >>= 1
        r += 1
    return r


@njit
def ffs_(x):
    """``ffs``: 1 + index of the lowest set bit, 0 for 0."""
    if x == 0:
        return np.int64(0)
    r = np.int64(1)
    while (x & 1) == 0:
        x >>= 1
        r += 1
    return r


@njit
def lsr(x, s):
    """Logical shift right of an int64 bit pattern (unsigned long semantics)."""
    if x >= 0:
        return x >> s
    return (x >> s) & ((np.int64(1) << (64 - s)) - 1)


@njit
def ule(a, b):
    """``a <= b`` as unsigned longs."""
    return (a ^ np.int64(-9223372036854775808)) <= (b ^ np.int64(-9223372036854775808))


@njit
def get_init_ra_size(size, mx):
    newsize = roundup_pow_of_two(size)
    if newsize <= mx // 32:
        newsize = newsize * 4
    elif newsize <= mx // 4:
        newsize = newsize * 2
    else:
        newsize = mx
    return newsize


@njit
def get_next_ra_size(cur, mx):
    if cur < mx // 16:
        return 4 * cur
    if cur <= mx // 2:
        return 2 * cur
    return mx


# ------------------------------------------------------------------------------------------
# effect and undo logs
# ------------------------------------------------------------------------------------------
@njit
def _emit(ctx, R, kind, f, index, order, size, async_size, req):
    n = ctx.ctl[CT_N]
    if n >= ctx.out.shape[0]:
        ctx.ctl[CT_OVERFLOW] += 1
        return
    o = ctx.out[n]
    o[O_KIND] = kind
    o[O_INDEX] = index
    o[O_ORDER] = order
    o[O_SIZE] = size
    o[O_ASYNC] = async_size
    o[O_REQ] = req
    o[O_RA_PAGES] = R.ra_pages[f]
    o[O_MMAP_MISS] = R.mmap_miss[f]
    o[O_PREV_POS] = R.prev_pos[f]
    o[O_FILE] = f
    o[O_FOLIO] = -1
    o[O_FLAGS] = 0
    o[O_REQID] = ctx.ctl[CT_REQID]
    ctx.ctl[CT_N] = n + 1


@njit
def _emit_ra(ctx, R, kind, f, index, req):
    _emit(ctx, R, kind, f, index, R.order[f], R.size[f], R.async_size[f], req)


@njit
def _log(ctx, fid, old):
    n = ctx.ctl[CT_NUNDO]
    if n < ctx.undo.shape[0]:
        ctx.undo[n, 0] = fid
        ctx.undo[n, 1] = old
        ctx.ctl[CT_NUNDO] = n + 1
    else:
        ctx.ctl[CT_OVERFLOW] += 1


@njit
def _add_folio(P, H, S, R, ctx, f, mapping, index, order, flags):
    """``filemap_alloc_folio`` + ``filemap_add_folio``: the folio id or a negative errno."""
    if order > ctx.ctl[CT_ALLOC_MAX]:
        return np.int64(-fm.ENOMEM)
    fid = filemap_add_folio_nb(P, H, S, mapping, index, order, np.int64(-1), flags & 0xFFFF)
    if fid == -fm.ENOMEM:
        ctx.ctl[CT_NOMEM] += 1
    if fid < 0:
        return fid
    _emit(ctx, R, EV_ADD, f, index, order, np.int64(1) << order, np.int64(0), np.int64(0))
    n = ctx.ctl[CT_N]
    if 0 < n <= ctx.out.shape[0]:
        ctx.out[n - 1, O_FOLIO] = fid
        ctx.out[n - 1, O_FLAGS] = flags
    _log(ctx, fid, np.int64(-1))
    folio_start_read(S, ctx, fid)
    return fid


@njit
def folio_start_read(S, ctx, fid):
    """A folio added for reading: locked and not uptodate until its I/O completes."""
    S.f_flags[fid] = (S.f_flags[fid] & ~PG_UPTODATE) | fm.PG_LOCKED
    n = ctx.ctl[CT_NINFLIGHT]
    if n >= ctx.inflight.shape[0]:
        # a long-forgotten read completes on its own: the older half of the list
        folio_complete_reads(S, ctx, np.int64(-1), n // 2)
        n = ctx.ctl[CT_NINFLIGHT]
    ctx.inflight[n, 0] = fid
    ctx.inflight[n, 1] = S.f_mapping[fid]
    ctx.inflight[n, 2] = S.f_index[fid]
    ctx.ctl[CT_NINFLIGHT] = n + 1


@njit
def folio_complete_reads(S, ctx, mapping, limit):
    """Read I/O completes (``folio_end_read``): every folio under read of ``mapping`` (all
    mappings for -1; only the ``limit`` oldest entries looked at when ``limit`` >= 0) becomes
    uptodate and unlocked.  The model's I/O timing: a reader that waits on one folio of a
    file finds the file's outstanding reads done."""
    n = ctx.ctl[CT_NINFLIGHT]
    if limit < 0:
        ctx.ctl[CT_WAITS] += 1
    lim = n if limit < 0 else min(limit, n)
    w = 0
    for r in range(n):
        fid = ctx.inflight[r, 0]
        m = ctx.inflight[r, 1]
        if r < lim and (mapping < 0 or m == mapping):
            if S.f_order[fid] >= 0 and S.f_mapping[fid] == m and S.f_index[fid] == ctx.inflight[r, 2]:
                S.f_flags[fid] = (S.f_flags[fid] | PG_UPTODATE) & ~fm.PG_LOCKED
            continue
        ctx.inflight[w, 0] = fid
        ctx.inflight[w, 1] = m
        ctx.inflight[w, 2] = ctx.inflight[r, 2]
        w += 1
    ctx.ctl[CT_NINFLIGHT] = w


@njit
def _set_flags(S, ctx, fid, flags):
    if S.f_flags[fid] != flags:
        _log(ctx, fid, S.f_flags[fid])
        S.f_flags[fid] = flags


# ------------------------------------------------------------------------------------------
# mm/readahead.c
# ------------------------------------------------------------------------------------------
@njit
def page_cache_ra_unbounded_nb(P, H, S, R, ctx, f, index, nr_to_read, lookahead_size):
    mapping = R.mapping[f]
    _emit(ctx, R, EV_RA_UNBOUNDED, f, index, np.int64(0), nr_to_read, lookahead_size, np.int64(0))
    min_order = S.m_min_order[mapping]
    min_nrpages = np.int64(1) << min_order
    aligned = index & ~(min_nrpages - 1)        # mapping_align_index
    have_mark = False
    mark = np.int64(0)
    if ule(lookahead_size, nr_to_read):
        ra_folio_index = (index + nr_to_read - lookahead_size + min_nrpages - 1) & ~(min_nrpages - 1)
        mark = ra_folio_index - aligned
        have_mark = True
    nr_to_read += index - aligned
    r_index = aligned      # ractl->_index
    r_nr = np.int64(0)     # ractl->_nr_pages
    i = np.int64(0)
    while i < nr_to_read:
        if filemap_get_folio_nb(P, H, S, mapping, aligned + i) >= 0:
            r_index += r_nr     # read_pages() consumed the batch
            r_nr = 0
            r_index += min_nrpages
            i = r_index + r_nr - aligned
            continue
        fid = _add_folio(P, H, S, R, ctx, f, mapping, aligned + i, min_order, np.int64(0))
        if fid < 0:
            if fid == -fm.ENOMEM:
                break
            r_index += r_nr
            r_nr = 0
            r_index += min_nrpages
            i = r_index + r_nr - aligned
            continue
        if have_mark and i == mark:
            _set_flags(S, ctx, fid, S.f_flags[fid] | PG_READAHEAD)
            ctx.out[min(ctx.ctl[CT_N], ctx.out.shape[0]) - 1, O_FLAGS] |= PG_READAHEAD
        r_nr += min_nrpages
        i += min_nrpages


@njit
def do_page_cache_ra_nb(P, H, S, R, ctx, f, index, nr_to_read, lookahead_size):
    isize = S.m_isize[R.mapping[f]]
    if isize == 0:
        return
    end_index = (isize - 1) >> PAGE_SHIFT
    if index > end_index:
        return
    if nr_to_read > end_index - index:
        nr_to_read = end_index - index + 1
    page_cache_ra_unbounded_nb(P, H, S, R, ctx, f, index, nr_to_read, lookahead_size)


@njit
def force_page_cache_ra_nb(P, H, S, R, ctx, f, index, nr_to_read):
    max_pages = max(R.io_pages[f], R.ra_pages[f])
    nr_to_read = min(nr_to_read, max_pages)
    while nr_to_read > 0:
        chunk = min(np.int64(FORCE_CHUNK), nr_to_read)
        do_page_cache_ra_nb(P, H, S, R, ctx, f, index, chunk, np.int64(0))
        index += chunk
        nr_to_read -= chunk


@njit
def ra_alloc_folio_nb(P, H, S, R, ctx, f, index, mark, order):
    mark = mark & ~((np.int64(1) << order) - 1)
    flags = PG_READAHEAD if index == mark else 0
    fid = _add_folio(P, H, S, R, ctx, f, R.mapping[f], index, order, np.int64(flags))
    if fid < 0:
        return fid
    return np.int64(0)


@njit
def page_cache_ra_order_nb(P, H, S, R, ctx, f, start):
    mapping = R.mapping[f]
    index = start
    min_order = S.m_min_order[mapping]
    isize = S.m_isize[mapping]
    limit = (isize - 1) >> PAGE_SHIFT  # isize 0: -1, i.e. ULONG_MAX
    mark = index + R.size[f] - R.async_size[f]
    err = np.int64(0)
    new_order = R.order[f]
    _emit_ra(ctx, R, EV_RA_ORDER, f, start, np.int64(0))
    if S.m_max_order[mapping] > 0:
        wend = index + R.size[f] - 1
        if limit < 0 or wend < limit:
            limit = wend
        new_order = min(S.m_max_order[mapping], new_order)
        new_order = min(new_order, ilog2(R.size[f]))
        new_order = max(new_order, min_order)
        R.order[f] = new_order
        index = index & ~((np.int64(1) << min_order) - 1)
        while index <= limit:
            order = new_order
            if index & ((np.int64(1) << order) - 1):
                order = ffs_(index) - 1
            while order > min_order and index + (np.int64(1) << order) - 1 > limit:
                order -= 1
            err = ra_alloc_folio_nb(P, H, S, R, ctx, f, index, mark, order)
            if err != 0:
                break
            index += np.int64(1) << order
        if err == 0:
            return
    else:
        R.order[f] = 0
    if R.size[f] > index - start:
        do_page_cache_ra_nb(P, H, S, R, ctx, f, index, R.size[f] - (index - start), R.async_size[f])


@njit
def ractl_max_pages(R, f, req_size):
    max_pages = R.ra_pages[f]
    if req_size > max_pages and R.io_pages[f] > max_pages:
        max_pages = min(req_size, R.io_pages[f])
    return max_pages


@njit
def page_cache_sync_ra_nb(P, H, S, R, ctx, f, index, req_count):
    mapping = R.mapping[f]
    _emit_ra(ctx, R, EV_SYNC_RA, f, index, req_count)
    do_forced_ra = (R.flags[f] & RA_FMODE_RANDOM) != 0
    if R.ra_pages[f] == 0:
        req_count = np.int64(1)
        do_forced_ra = True
    if do_forced_ra:
        force_page_cache_ra_nb(P, H, S, R, ctx, f, index, req_count)
        return
    max_pages = ractl_max_pages(R, f, req_count)
    prev_index = lsr(R.prev_pos[f], PAGE_SHIFT)
    d = index - prev_index
    if index == 0 or req_count > max_pages or (d >= 0 and d <= 1):
        R.start[f] = index
        R.size[f] = get_init_ra_size(req_count, max_pages)
        R.async_size[f] = R.size[f] - req_count if R.size[f] > req_count else R.size[f] >> 1
    else:
        miss = page_cache_prev_miss_nb(P, H, S, mapping, index - 1, max_pages)
        contig_count = index - miss - 1
        if ule(contig_count, req_count):
            do_page_cache_ra_nb(P, H, S, R, ctx, f, index, req_count, np.int64(0))
            return
        if miss == -1:
            contig_count *= 2
        R.start[f] = index
        R.size[f] = min(contig_count + req_count, max_pages)
        R.async_size[f] = 1
    R.order[f] = 0
    page_cache_ra_order_nb(P, H, S, R, ctx, f, R.start[f])


@njit
def page_cache_async_ra_nb(P, H, S, R, ctx, f, fid, index, req_count):
    """``page_cache_async_ra(ractl at index, folio fid, req_count)``."""
    mapping = R.mapping[f]
    if R.ra_pages[f] == 0:
        return
    _emit_ra(ctx, R, EV_ASYNC_RA, f, index, req_count)
    _set_flags(S, ctx, fid, S.f_flags[fid] & ~PG_READAHEAD)
    max_pages = ractl_max_pages(R, f, req_count)
    nr = np.int64(1) << S.f_order[fid]
    expected = (R.start[f] + R.size[f] - R.async_size[f]) & ~(nr - 1)
    if index == expected:
        R.start[f] += R.size[f]
        R.size[f] = max(R.size[f], get_next_ra_size(R.size[f], max_pages))
    else:
        start = page_cache_next_miss_nb(P, H, S, mapping, index + 1, max_pages)
        if start == 0 or start - index > max_pages:
            return
        R.start[f] = start
        R.size[f] = start - index + req_count
        R.size[f] = get_next_ra_size(R.size[f], max_pages)
    R.order[f] += 2
    align = np.int64(1) << min(R.order[f], ffs_(max_pages) - 1)
    end = R.start[f] + R.size[f]
    aligned_end = end & ~(align - 1)
    if aligned_end > R.start[f]:
        R.size[f] -= end - aligned_end
    R.async_size[f] = R.size[f]
    page_cache_ra_order_nb(P, H, S, R, ctx, f, R.start[f])


# ------------------------------------------------------------------------------------------
# mm/filemap.c: the read path
# ------------------------------------------------------------------------------------------
@njit
def _uptodate(S, fid):
    return (S.f_flags[fid] & PG_UPTODATE) != 0


@njit
def filemap_get_pages_nb(P, H, S, R, ctx, f, index, last_index):
    """One traced ``filemap_get_pages`` call of a read of pages ``[index, last_index)``.

    ``filemap_get_read_batch`` collects folios from ``index`` and stops at a hole, after a
    folio that is not uptodate or carries ``PG_readahead``, or at 31 folios.  An empty batch
    calls ``page_cache_sync_ra``; if that added nothing, ``filemap_create_folio`` adds one
    min-order folio.  A ``PG_readahead`` last folio calls ``page_cache_async_ra``
    (``filemap_readahead``).  A last folio still under read I/O is waited for
    (``filemap_update_page`` -> ``AOP_TRUNCATED_PAGE``) and the batch is looked up again
    (``goto retry``), which can meet the next ``PG_readahead`` folio.  Returns the index
    after the batch (what ``filemap_read`` copies), negated when the folio was created."""
    mapping = R.mapping[f]
    for _ in range(64):
        fid = filemap_get_folio_nb(P, H, S, mapping, index)
        if fid < 0:
            page_cache_sync_ra_nb(P, H, S, R, ctx, f, index, last_index - index)
            fid = filemap_get_folio_nb(P, H, S, mapping, index)
        if fid < 0:
            min_order = S.m_min_order[mapping]
            at = index & ~((np.int64(1) << min_order) - 1)
            fid = _add_folio(P, H, S, R, ctx, f, mapping, at, min_order, np.int64(ADD_CREATE))
            if fid < 0:
                return np.int64(0)
            folio_complete_reads(S, ctx, mapping, np.int64(-1))   # filemap_read_folio waits
            return -(at + (np.int64(1) << min_order))
        n = np.int64(1)
        last = fid
        while True:
            if not _uptodate(S, last) or (S.f_flags[last] & PG_READAHEAD) != 0 or n >= PAGEVEC_SIZE:
                break
            nxt_index = S.f_index[last] + (np.int64(1) << S.f_order[last])
            if nxt_index > last_index - 1:
                break
            nxt = filemap_get_folio_nb(P, H, S, mapping, nxt_index)
            if nxt < 0:
                break
            last = nxt
            n += 1
        if (S.f_flags[last] & PG_READAHEAD) != 0:
            page_cache_async_ra_nb(P, H, S, R, ctx, f, last, S.f_index[last], last_index - S.f_index[last])
        if _uptodate(S, last):
            return S.f_index[last] + (np.int64(1) << S.f_order[last])
        # wait for the read and look again (a batch of several folios ending in one under
        # I/O returns them untraced in the kernel; a traced call here was the retry's)
        folio_complete_reads(S, ctx, mapping, np.int64(-1))
    return S.f_index[last] + (np.int64(1) << S.f_order[last])


@njit
def filemap_read_end_nb(S, R, f, end_pos):
    """End of ``filemap_read``: ``ra->prev_pos`` = the position after the last byte copied,
    at most i_size."""
    isize = S.m_isize[R.mapping[f]]
    R.prev_pos[f] = min(end_pos, isize)


# ------------------------------------------------------------------------------------------
# mm/filemap.c: the fault path
# ------------------------------------------------------------------------------------------
@njit
def do_sync_mmap_readahead_nb(P, H, S, R, ctx, f, index, vm_flags, vm_start, vm_end, exec_order):
    if (vm_flags & VM_HUGEPAGE) != 0 and HPAGE_PMD_ORDER <= MAX_PAGECACHE_ORDER:
        start = index & ~((np.int64(1) << HPAGE_PMD_ORDER) - 1)
        R.size[f] = np.int64(1) << HPAGE_PMD_ORDER
        if (vm_flags & VM_RAND_READ) == 0:
            R.size[f] *= 2
        R.async_size[f] = np.int64(1) << HPAGE_PMD_ORDER
        R.order[f] = HPAGE_PMD_ORDER
        page_cache_ra_order_nb(P, H, S, R, ctx, f, start)
        return
    if (vm_flags & (VM_RAND_READ | VM_EXEC)) == VM_RAND_READ:
        return
    if R.ra_pages[f] == 0:
        return
    if (vm_flags & VM_SEQ_READ) != 0:
        page_cache_sync_ra_nb(P, H, S, R, ctx, f, index, R.ra_pages[f])
        return
    mmap_miss = R.mmap_miss[f]
    if mmap_miss < MMAP_LOTSAMISS * 10:
        mmap_miss += 1
        R.mmap_miss[f] = mmap_miss
    if mmap_miss > MMAP_LOTSAMISS:
        return
    if (vm_flags & VM_EXEC) != 0:
        R.order[f] = exec_order
        start = index & ~((np.int64(1) << exec_order) - 1)
        start = max(start, vm_start)
        ra_end = (start + R.ra_pages[f] + (np.int64(1) << exec_order) - 1) & ~((np.int64(1) << exec_order) - 1)
        ra_end = min(ra_end, vm_end)
        R.start[f] = start
        R.size[f] = ra_end - start
        R.async_size[f] = 0
    else:
        R.start[f] = max(np.int64(0), index - R.ra_pages[f] // 2)
        R.size[f] = R.ra_pages[f]
        R.async_size[f] = R.ra_pages[f] // 4
        R.order[f] = 0
    page_cache_ra_order_nb(P, H, S, R, ctx, f, R.start[f])


@njit
def do_async_mmap_readahead_nb(P, H, S, R, ctx, f, fid, index, vm_flags):
    if (vm_flags & VM_RAND_READ) != 0 or R.ra_pages[f] == 0:
        return
    if (S.f_flags[fid] & fm.PG_LOCKED) == 0 and R.mmap_miss[f] > 0:
        R.mmap_miss[f] -= 1
    if (S.f_flags[fid] & PG_READAHEAD) != 0:
        page_cache_async_ra_nb(P, H, S, R, ctx, f, fid, index, R.ra_pages[f])


@njit
def filemap_fault_nb(P, H, S, R, ctx, f, index, vm_flags, vm_start, vm_end, exec_order):
    """``filemap_fault`` at page ``index`` (the part that reads ahead and adds folios).
    Returns 1 for a major fault (the page was not cached), 0 otherwise, -1 SIGBUS."""
    mapping = R.mapping[f]
    isize = S.m_isize[mapping]
    if index >= (isize + 4095) >> PAGE_SHIFT:
        return np.int64(-1)
    fid = filemap_get_folio_nb(P, H, S, mapping, index)
    if fid >= 0:
        do_async_mmap_readahead_nb(P, H, S, R, ctx, f, fid, index, vm_flags)
        if not _uptodate(S, fid):
            folio_complete_reads(S, ctx, mapping, np.int64(-1))   # lock_folio_maybe_drop_mmap
        return np.int64(0)
    do_sync_mmap_readahead_nb(P, H, S, R, ctx, f, index, vm_flags, vm_start, vm_end, exec_order)
    if filemap_get_folio_nb(P, H, S, mapping, index) < 0:
        # __filemap_get_folio(FGP_CREAT | FGP_FOR_MMAP): a min-order folio at index
        min_order = S.m_min_order[mapping]
        at = index & ~((np.int64(1) << min_order) - 1)
        _add_folio(P, H, S, R, ctx, f, mapping, at, min_order, np.int64(ADD_CREATE))
    folio_complete_reads(S, ctx, mapping, np.int64(-1))   # the fault waits for its page
    return np.int64(1)


@njit
def filemap_map_pages_nb(P, H, S, R, f, start_pgoff, end_pgoff):
    """``filemap_map_pages`` (fault-around) as far as readahead cares: ``mmap_miss`` is
    lowered by the pages of the uptodate, unlocked, non-readahead folios mapped (a large
    folio inside i_size counts whole; no VMA or page-table crossing is modelled; a
    PMD-size first folio is PMD-mapped and counts nothing).  Returns the pages counted."""
    mapping = R.mapping[f]
    isize = S.m_isize[mapping]
    file_end = ((isize + 4095) >> PAGE_SHIFT) - 1
    end_pgoff = min(end_pgoff, file_end)
    count = np.int64(0)
    i = start_pgoff
    first = True
    while i <= end_pgoff:
        fid = filemap_get_folio_nb(P, H, S, mapping, i)
        if fid < 0:
            i += 1
            continue
        fidx = S.f_index[fid]
        nr = np.int64(1) << S.f_order[fid]
        if (S.f_flags[fid] & PG_UPTODATE) == 0 or (S.f_flags[fid] & PG_READAHEAD) != 0:
            i = fidx + nr
            continue
        if first and S.f_order[fid] == HPAGE_PMD_ORDER and file_end >= fidx + nr:
            count = 0
            break
        first = False
        if S.f_order[fid] > 0 and file_end >= fidx + nr:
            pages = nr
        else:
            pages = min(fidx + nr - 1, end_pgoff) - i + 1
        if (S.f_flags[fid] & PG_WORKINGSET) == 0:
            count += pages
        i = fidx + nr
    saved = R.mmap_miss[f]
    R.mmap_miss[f] = 0 if count >= saved else saved - count
    return count


# ------------------------------------------------------------------------------------------
# the Python facade
# ------------------------------------------------------------------------------------------
class Readahead:
    """Open files over a :class:`~memdesc.mm.filemap.PageCache`, with their readahead state.

    Each method runs one kernel path and returns the effects it logged, as tuples
    ``(event name, index, order, size, async_size)`` (see :meth:`effects`)."""

    def __init__(self, cache: PageCache | None = None, *, files: int = 16):
        self.cache = cache if cache is not None else PageCache()
        self.R = new_ra_arrays(files)
        self.nfiles = 0
        self.ctx = new_ctx(1 << 14)

    def open(self, mapping, *, ra_pages: int = 32, io_pages: int = 0, random: bool = False) -> int:
        """``file_ra_state_init``: a new open file of ``mapping``; returns its id."""
        f = self.nfiles
        if f >= self.R.start.shape[0]:
            n = 2 * self.R.start.shape[0]
            self.R = RaArrays(*[np.concatenate([a, np.full(n - a.shape[0], fill, np.int64)])
                                for a, fill in zip(self.R, (0, 0, 0, 0, 0, 0, -1, 0, -1, 0), strict=True)])
        self.nfiles += 1
        self.R.ra_pages[f] = ra_pages
        self.R.io_pages[f] = io_pages
        self.R.prev_pos[f] = -1
        self.R.mapping[f] = mapping.id
        self.R.flags[f] = RA_FMODE_RANDOM if random else 0
        return f

    def state(self, f: int) -> dict:
        R = self.R
        return {k: int(getattr(R, k)[f]) for k in ("start", "size", "async_size", "ra_pages", "order", "mmap_miss",
                                                   "prev_pos")}

    def set_state(self, f: int, **kw) -> None:
        for k, v in kw.items():
            getattr(self.R, k)[f] = v

    def _run(self, fn, *args) -> list[tuple]:
        self.cache.reserve(fm.NODE_RESERVE + 2 * 4096 // 64, 2 * 4096)
        self.ctx.ctl[CT_N] = 0
        self.ctx.ctl[CT_NUNDO] = 0
        self._ret = fn(self.cache.pool.arrays, self.cache.pool.heads, self.cache.S, self.R, self.ctx, *args)
        if self.ctx.ctl[CT_NOMEM]:
            raise fm.FilemapError("readahead ran out of page-cache nodes (reserve too small)")
        return self.effects(self.ctx.out[: self.ctx.ctl[CT_N]])

    def complete_reads(self) -> None:
        """Let every outstanding read I/O complete (time passes)."""
        folio_complete_reads(self.cache.S, self.ctx, np.int64(-1), np.int64(-1))

    @staticmethod
    def effects(out: np.ndarray) -> list[tuple]:
        return [(EV_NAMES[int(r[O_KIND])], int(r[O_INDEX]), int(r[O_ORDER]), int(r[O_SIZE]), int(r[O_ASYNC]))
                for r in out]

    def read(self, f: int, pos: int, count: int) -> list[tuple]:
        """A ``read(2)`` of ``count`` bytes at ``pos``: the ``filemap_get_pages`` calls of
        ``filemap_read`` (each copies its batch), then ``prev_pos``.  Stops at EOF."""
        S = self.cache.S
        isize = int(S.m_isize[self.R.mapping[f]])
        effects: list[tuple] = []
        end = pos + count
        last_index = (end + 4095) >> PAGE_SHIFT
        while pos < min(end, isize):
            effects += self._run(filemap_get_pages_nb, np.int64(f), np.int64(pos >> PAGE_SHIFT),
                                 np.int64(last_index))
            nxt = abs(int(self._ret))
            if nxt == 0:
                break
            pos = min(end, nxt << PAGE_SHIFT)
        filemap_read_end_nb(S, self.R, np.int64(f), np.int64(min(end, isize)))
        return effects

    def get_pages(self, f: int, index: int, last_index: int) -> list[tuple]:
        """One ``filemap_get_pages`` call for pages ``[index, last_index)``."""
        return self._run(filemap_get_pages_nb, np.int64(f), np.int64(index), np.int64(last_index))

    def ra_order(self, f: int, start: int) -> list[tuple]:
        """``page_cache_ra_order`` of the file's current window from ``start``."""
        return self._run(page_cache_ra_order_nb, np.int64(f), np.int64(start))

    def folio_flags(self, f: int, index: int) -> int:
        """PG_* flags of the folio at ``index`` of the file's mapping (-1: none)."""
        fid = int(filemap_get_folio_nb(self.cache.pool.arrays, self.cache.pool.heads, self.cache.S,
                                       np.int64(self.R.mapping[f]), np.int64(index)))
        return -1 if fid < 0 else int(self.cache.S.f_flags[fid])

    def sync_ra(self, f: int, index: int, req_count: int) -> list[tuple]:
        return self._run(page_cache_sync_ra_nb, np.int64(f), np.int64(index), np.int64(req_count))

    def async_ra(self, f: int, index: int, req_count: int) -> list[tuple]:
        m = self.R.mapping[f]
        fid = int(filemap_get_folio_nb(self.cache.pool.arrays, self.cache.pool.heads, self.cache.S, np.int64(m),
                                       np.int64(index)))
        if fid < 0:
            raise fm.FilemapError(f"no folio at index {index} for async readahead")
        return self._run(page_cache_async_ra_nb, np.int64(f), np.int64(fid), np.int64(index), np.int64(req_count))

    def fault(self, f: int, index: int, *, vm_flags: int = 0, vm_start: int = 0, vm_end: int = 1 << 40,
              exec_order: int = 0) -> list[tuple]:
        """``filemap_fault`` at page ``index`` of a VMA with ``vm_flags`` (``vm_start``/``vm_end``:
        its first and end page offsets, for VM_EXEC)."""
        return self._run(filemap_fault_nb, np.int64(f), np.int64(index), np.int64(vm_flags), np.int64(vm_start),
                         np.int64(vm_end), np.int64(exec_order))

    def map_pages(self, f: int, start: int, end: int) -> int:
        """``filemap_map_pages`` over ``[start, end]``: pages counted against ``mmap_miss``."""
        return int(filemap_map_pages_nb(self.cache.pool.arrays, self.cache.pool.heads, self.cache.S, self.R,
                                        np.int64(f), np.int64(start), np.int64(end)))
