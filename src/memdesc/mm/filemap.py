"""The page cache: one XArray per file (``struct address_space``), folios as multi-index entries.

Theory
------
Linux keeps a file's cached folios in ``mapping->i_pages``, an XArray indexed by page
offset (``pgoff_t``).  A folio of order k at index i (``i`` a multiple of ``2**k``)
is *one multi-index entry* covering ``[i, i + 2**k)``: a lookup at any of those indices
finds the folio (``filemap_get_folio``), a store or erase acts on the whole range.
Evicted folios leave *shadow* entries (value entries, ``workingset_eviction``) that
readahead treats as holes.  This module models that with memdesc's XArray
(:mod:`memdesc.lib._xarray_kernels`): every mapping is one XArray of one shared node pool
(so the ``xa_node`` memory of the whole page cache is counted), and a folio entry is the
pointer-shaped entry ``(folio_id + 1) << 2`` naming a row of the folio table.

Invariants (checked by :meth:`PageCache.check`):

* a folio of order k sits at an index aligned to ``2**k``, in exactly one mapping, and the
  XArray returns it at each of its ``2**k`` indices; ``nrpages`` of a mapping is the sum
  of its folios' sizes;
* ``min_order <= order <= max_order`` of its mapping (``mapping_set_folio_order_range``);
* a folio id is either live (in one mapping) or on the free list.

Kernels (numba, named after the Linux functions; all take the pool arrays ``P``, the
heads ``H`` and the page-cache arrays ``S``):

* :func:`filemap_add_folio_nb` -- ``__filemap_add_folio``: -EEXIST if any folio overlaps
  the range, shadow entries in the range are replaced; -ENOMEM only for want of XArray
  nodes (the pool's ``xas_nomem`` protocol: the facade supplies nodes and retries);
* :func:`filemap_get_folio_nb` -- ``filemap_get_folio`` (the folio containing an index);
* :func:`filemap_remove_folio_nb` -- ``__filemap_remove_folio`` (optionally leaving a shadow);
* :func:`page_cache_next_miss_nb` / :func:`page_cache_prev_miss_nb` -- exactly the
  kernel's scans (``max_scan`` indices; the result conventions of ``mm/filemap.c``,
  ULONG_MAX as -1);
* :func:`folio_split_nb` -- ``__split_unmapped_folio``: uniform (``split_huge_page_to_order``)
  or non-uniform (``folio_split``, buddy-like: halves of order k-1, k-2, ... down to
  ``new_order`` around the page kept), with ``xas_try_split``;
* :func:`truncate_inode_pages_range_nb` -- ``truncate_inode_pages_range`` with
  ``truncate_inode_partial_folio``: folios wholly in the range are removed, a large folio
  the range cuts is split with ``try_folio_split_to_order(folio, page, min_order)``
  (non-uniform) and the pieces in the range removed.

The folio layer (typed descriptors allocated from the slab, pfns from the design) is not
here yet: pages come from a :class:`FolioSource` -- ``alloc(order) -> pfn or -1`` and
``free(pfn, order)`` -- which the facade calls; the kernels store whatever pfn they are
given (-1 for "no page model", as the readahead validation does).  ``__filemap_get_folio``
with FGP flags is the facade method :meth:`AddressSpace.filemap_get_folio_flags`.

Not modelled: locking, reference counts, dirty/writeback tagging (``PAGECACHE_TAG_*``
marks), large shadow entries split on add (a larger shadow is dropped whole), hugetlbfs
and shmem specifics.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from memdesc._numba import njit
from memdesc.errors import ConfigError, InvalidOrder, InvariantViolation, MemdescError
from memdesc.lib import _xarray_kernels as K
from memdesc.lib.xarray import XaPool, XArray

#: MAX_PAGECACHE_ORDER on x86-64 with 4 KiB pages: min(MAX_XAS_ORDER = 11, HPAGE_PMD_ORDER = 9)
MAX_XAS_ORDER = 2 * K.XA_CHUNK_SHIFT - 1
HPAGE_PMD_ORDER = 9
MAX_PAGECACHE_ORDER = min(MAX_XAS_ORDER, HPAGE_PMD_ORDER)
PAGE_SHIFT = 12
PAGEVEC_SIZE = 31

# folio flags kept by the model (a subset of PG_*)
PG_READAHEAD = 1
PG_UPTODATE = 2
PG_WORKINGSET = 4
PG_DIRTY = 8
PG_LOCKED = 16

# FGP flags (include/linux/pagemap.h, 6.18 values)
FGP_ACCESSED = 0x00000001
FGP_LOCK = 0x00000002
FGP_CREAT = 0x00000004
FGP_WRITE = 0x00000008
FGP_NOFS = 0x00000010
FGP_NOWAIT = 0x00000020
FGP_FOR_MMAP = 0x00000040
FGP_STABLE = 0x00000080
FGF_GET_ORDER_SHIFT = 26  # fgf_set_order(size): order in the top bits

EEXIST = K.EEXIST
ENOMEM = K.ENOMEM
ENOENT = 2
EAGAIN = 11
EINVAL = K.EINVAL

# page-cache control words (S.ctl)
C_FREE_HEAD = 0   # first free folio id, -1 none
C_LIVE = 1        # live folios
C_NR_ADDED = 2    # filemap_add_folio successes, ever
C_NR_REMOVED = 3  # folios removed, ever
C_NR_SPLIT = 4    # folio splits (each __split_folio_to_order step counts one)
C_WANT = 5        # nodes / folio rows an -ENOMEM asked for
C_LEN = 8

#: the minimum number of free XArray nodes the facade keeps before a kernel call; no
#: single page-cache operation on a mapping of at most 2**32 pages needs more
NODE_RESERVE = 64


class PageCacheArrays(NamedTuple):
    """State of every mapping and folio, as numpy arrays (one row per id)."""

    f_pfn: np.ndarray       # int64[folios]: first pfn, -1 without a page model
    f_index: np.ndarray     # int64: folio->index
    f_order: np.ndarray     # int64: folio order; -1 free row
    f_flags: np.ndarray     # int64: PG_* bits of the model
    f_mapping: np.ndarray   # int64: owning mapping id; -1 free row
    f_next: np.ndarray      # int64: next free row
    m_xa: np.ndarray        # int64[mappings]: XArray id in the pool
    m_nrpages: np.ndarray   # int64: pages cached
    m_nrfolios: np.ndarray  # int64
    m_isize: np.ndarray     # int64: i_size in bytes
    m_min_order: np.ndarray  # int64
    m_max_order: np.ndarray  # int64: 0 = no large folio support
    ctl: np.ndarray         # int64[C_LEN]


def new_page_cache_arrays(folios: int, mappings: int) -> PageCacheArrays:
    folios = max(1, int(folios))
    mappings = max(1, int(mappings))
    f_next = np.arange(1, folios + 1, dtype=np.int64)
    f_next[-1] = -1
    ctl = np.zeros(C_LEN, np.int64)
    ctl[C_FREE_HEAD] = 0
    return PageCacheArrays(np.full(folios, -1, np.int64), np.zeros(folios, np.int64), np.full(folios, -1, np.int64),
                           np.zeros(folios, np.int64), np.full(folios, -1, np.int64), f_next,
                           np.full(mappings, -1, np.int64), np.zeros(mappings, np.int64), np.zeros(mappings, np.int64),
                           np.zeros(mappings, np.int64), np.zeros(mappings, np.int64), np.zeros(mappings, np.int64),
                           ctl)


def grow_folios(S: PageCacheArrays, folios: int) -> PageCacheArrays:
    old = S.f_pfn.shape[0]
    if folios <= old:
        return S
    f_pfn = np.full(folios, -1, np.int64)
    f_index = np.zeros(folios, np.int64)
    f_order = np.full(folios, -1, np.int64)
    f_flags = np.zeros(folios, np.int64)
    f_mapping = np.full(folios, -1, np.int64)
    f_next = np.arange(1, folios + 1, dtype=np.int64)
    f_next[-1] = S.ctl[C_FREE_HEAD]
    for a, b in ((f_pfn, S.f_pfn), (f_index, S.f_index), (f_order, S.f_order), (f_flags, S.f_flags),
                 (f_mapping, S.f_mapping), (f_next, S.f_next)):
        a[:old] = b
    ctl = S.ctl.copy()
    ctl[C_FREE_HEAD] = old
    return S._replace(f_pfn=f_pfn, f_index=f_index, f_order=f_order, f_flags=f_flags, f_mapping=f_mapping,
                      f_next=f_next, ctl=ctl)


def grow_mappings(S: PageCacheArrays, mappings: int) -> PageCacheArrays:
    old = S.m_xa.shape[0]
    if mappings <= old:
        return S
    out = {}
    for name, fill in (("m_xa", -1), ("m_nrpages", 0), ("m_nrfolios", 0), ("m_isize", 0), ("m_min_order", 0),
                       ("m_max_order", 0)):
        a = np.full(mappings, fill, np.int64)
        a[:old] = getattr(S, name)
        out[name] = a
    return S._replace(**out)


# ------------------------------------------------------------------------------------------
# entries
# ------------------------------------------------------------------------------------------
@njit
def folio_entry(fid):
    """The XArray entry of folio ``fid``: pointer-shaped (low bits 00), never NULL."""
    return (fid + 1) << 2


@njit
def entry_folio(entry):
    """Folio id of an entry; -1 for NULL, value (shadow) and internal entries."""
    if entry == 0 or (entry & 3) != 0:
        return np.int64(-1)
    return (entry >> 2) - 1


@njit
def _free_count(P):
    return K.pool_free_count(P)


# ------------------------------------------------------------------------------------------
# folio rows
# ------------------------------------------------------------------------------------------
@njit
def folio_row_alloc(S):
    fid = S.ctl[C_FREE_HEAD]
    if fid < 0:
        S.ctl[C_WANT] = 1
        return np.int64(-1)
    S.ctl[C_FREE_HEAD] = S.f_next[fid]
    S.f_next[fid] = -1
    S.ctl[C_LIVE] += 1
    return fid


@njit
def folio_row_free(S, fid):
    S.f_order[fid] = -1
    S.f_mapping[fid] = -1
    S.f_flags[fid] = 0
    S.f_pfn[fid] = -1
    S.f_next[fid] = S.ctl[C_FREE_HEAD]
    S.ctl[C_FREE_HEAD] = fid
    S.ctl[C_LIVE] -= 1


# ------------------------------------------------------------------------------------------
# lookups
# ------------------------------------------------------------------------------------------
@njit
def filemap_get_entry_nb(P, H, S, mapping, index):
    """The raw entry at ``index`` (a folio entry, a shadow value entry, or 0)."""
    return K.xa_load_nb(P, H, S.m_xa[mapping], index)


@njit
def filemap_get_folio_nb(P, H, S, mapping, index):
    """``filemap_get_folio``: the folio id containing ``index``, -1 if none (shadows are none)."""
    return entry_folio(K.xa_load_nb(P, H, S.m_xa[mapping], index))


@njit
def page_cache_next_miss_nb(P, H, S, mapping, index, max_scan):
    """``page_cache_next_miss``: the first index in ``[index, index + max_scan)`` without a
    folio (a shadow counts as a miss), else ``index + max_scan``; 0 on wrap-around.

    A literal port over ``xas_next``, quirk included: when ``index`` falls inside a
    multi-index entry, ``xas_load`` leaves ``xa_offset`` on the entry's canonical slot, so
    the following ``xas_next`` steps read the slots ``index - folio->index`` behind their
    ``xa_index`` (the captures show it: a miss right after such a folio is reported one
    index late)."""
    xas = np.zeros(K.X_LEN, np.int64)
    K.xas_init(xas, S.m_xa[mapping], index)
    nr = max_scan
    while nr > 0:
        nr -= 1
        entry = K.xas_next(P, H, xas)
        if entry == 0 or (entry & 1) != 0:
            return xas[K.X_INDEX]
        if xas[K.X_INDEX] == 0:
            return np.int64(0)
    return index + max_scan


@njit
def page_cache_prev_miss_nb(P, H, S, mapping, index, max_scan):
    """``page_cache_prev_miss``: the highest index in ``[index - max_scan + 1, index]``
    without a folio; if there is none, the last index looked at; ULONG_MAX (-1) when the
    walk passes index 0.  A literal port over ``xas_prev`` (same slot quirk as next_miss)."""
    xas = np.zeros(K.X_LEN, np.int64)
    K.xas_init(xas, S.m_xa[mapping], index)
    nr = max_scan
    while nr > 0:
        nr -= 1
        entry = K.xas_prev(P, H, xas)
        if entry == 0 or (entry & 1) != 0:
            break
        if xas[K.X_INDEX] == -1:
            break
    return xas[K.X_INDEX]


# ------------------------------------------------------------------------------------------
# adding and removing
# ------------------------------------------------------------------------------------------
@njit
def filemap_add_folio_nb(P, H, S, mapping, index, order, pfn, flags):
    """``filemap_add_folio``: add a new folio of ``order`` at ``index``.

    Returns the folio id, or -EEXIST (a folio overlaps), -EINVAL (misaligned index or an
    order outside the mapping's range), -ENOMEM (no free folio row, or too few XArray nodes:
    ``S.ctl[C_WANT]`` / ``P.ctl[C_WANT]`` say how many; nothing was changed).
    """
    if order < S.m_min_order[mapping] or order > max(S.m_max_order[mapping], S.m_min_order[mapping]):
        return np.int64(-EINVAL)
    n = np.int64(1) << order
    if index & (n - 1):
        return np.int64(-EINVAL)
    xa = S.m_xa[mapping]
    # xas_for_each_conflict: a folio anywhere in the range is -EEXIST; shadows are replaced
    e = K.xa_load_nb(P, H, xa, index)
    if entry_folio(e) >= 0:
        return np.int64(-EEXIST)
    if n > 1:
        e2, i2 = K.xa_find_nb(P, H, xa, index, index + n - 1, K.XA_PRESENT)
        while e2 != 0:
            if entry_folio(e2) >= 0:
                return np.int64(-EEXIST)
            if i2 >= index + n - 1:
                break
            e2, i2 = K.xa_find_after_nb(P, H, xa, i2, index + n - 1, K.XA_PRESENT)
    if e != 0 and (e & 1):
        # a shadow entry larger than the folio: the kernel splits it; the model drops it
        so = K.xa_get_order_nb(P, H, xa, index)
        if so > order:
            need = K.xa_nodes_needed_nb(P, H, xa, index, order)
            if _free_count(P) < need + 1:
                P.ctl[K.C_WANT] = need + 1
                return np.int64(-ENOMEM)
            K.xa_erase_nb(P, H, xa, index)
    fid = folio_row_alloc(S)
    if fid < 0:
        return np.int64(-ENOMEM)
    r = K.xa_store_order_nb(P, H, xa, index, order, folio_entry(fid))
    if K.xa_is_err(r):
        folio_row_free(S, fid)
        return np.int64(K.xa_err(r))
    S.f_index[fid] = index
    S.f_order[fid] = order
    S.f_flags[fid] = flags
    S.f_mapping[fid] = mapping
    S.f_pfn[fid] = pfn
    S.m_nrpages[mapping] += n
    S.m_nrfolios[mapping] += 1
    S.ctl[C_NR_ADDED] += 1
    return fid


@njit
def filemap_remove_folio_nb(P, H, S, fid, shadow):
    """``__filemap_remove_folio``: take folio ``fid`` out of its mapping; ``shadow`` > 0
    leaves ``xa_mk_value(shadow)`` in its place (``workingset_eviction``).  Returns the
    folio's pfn (the caller frees it)."""
    mapping = S.f_mapping[fid]
    xa = S.m_xa[mapping]
    order = S.f_order[fid]
    index = S.f_index[fid]
    if shadow > 0:
        K.xa_store_order_nb(P, H, xa, index, order, K.xa_mk_value(shadow))
    else:
        K.xa_store_order_nb(P, H, xa, index, order, np.int64(0))
    S.m_nrpages[mapping] -= np.int64(1) << order
    S.m_nrfolios[mapping] -= 1
    S.ctl[C_NR_REMOVED] += 1
    pfn = S.f_pfn[fid]
    folio_row_free(S, fid)
    return pfn


# ------------------------------------------------------------------------------------------
# split
# ------------------------------------------------------------------------------------------
@njit
def _split_step(P, H, S, fid, new_order, one_node):
    """Split folio ``fid`` (order k) into 2**(k - new_order) folios of ``new_order``:
    ``xas_split``/``xas_try_split`` then ``__split_folio_to_order`` (the first piece keeps
    ``fid``; the others get new rows with the same mapping, flags and consecutive pfns).
    Returns 0 or a negative errno (nothing changed)."""
    mapping = S.f_mapping[fid]
    xa = S.m_xa[mapping]
    old = S.f_order[fid]
    index = S.f_index[fid]
    pieces = np.int64(1) << (old - new_order)
    # enough free folio rows for the new folios?
    cnt = 0
    f = S.ctl[C_FREE_HEAD]
    while f >= 0 and cnt < pieces - 1:
        cnt += 1
        f = S.f_next[f]
    if cnt < pieces - 1:
        S.ctl[C_WANT] = pieces - 1
        return np.int64(-ENOMEM)
    xas = np.zeros(K.X_LEN, np.int64)
    K.xas_init(xas, xa, index)
    K.xas_set_order(xas, index, new_order)
    entry = folio_entry(fid)
    if one_node:
        K.xas_try_split(P, H, xas, entry, old)
    else:
        K.xas_split(P, H, xas, entry, old)
    err = K.xas_error(xas)
    if err != 0:
        return err
    size = np.int64(1) << new_order
    flags = S.f_flags[fid] & ~PG_READAHEAD
    S.f_order[fid] = new_order
    for k in range(1, pieces):
        nf = folio_row_alloc(S)
        S.f_index[nf] = index + k * size
        S.f_order[nf] = new_order
        S.f_flags[nf] = flags
        S.f_mapping[nf] = mapping
        S.f_pfn[nf] = S.f_pfn[fid] + k * size if S.f_pfn[fid] >= 0 else -1
        K.xa_store_order_nb(P, H, xa, index + k * size, new_order, folio_entry(nf))
    S.m_nrfolios[mapping] += pieces - 1
    S.ctl[C_NR_SPLIT] += 1
    return np.int64(0)


@njit
def folio_split_nb(P, H, S, fid, new_order, at_index, uniform):
    """``__split_unmapped_folio`` of a page-cache folio.

    ``uniform``: every piece of ``new_order`` (``split_huge_page_to_order``).  Otherwise the
    buddy-like ``folio_split``: split in halves one order at a time, always splitting again
    the half that holds ``at_index``, until it is of ``new_order``: an order-9 folio split
    at page 3 to order 0 leaves orders 8, 7, 6, 5, 4, 3, 2, 1, 0, 0.  Each step uses
    ``xas_try_split`` (at most one new XArray node).  Returns 0, or a negative errno
    (-ENOMEM: the folio may be split part of the way, as in the kernel).  The id of the
    folio holding ``at_index`` afterwards is ``filemap_get_folio_nb(at_index)``.
    """
    order = S.f_order[fid]
    if new_order >= order or new_order < S.m_min_order[S.f_mapping[fid]]:
        return np.int64(-EINVAL)
    if uniform:
        return _split_step(P, H, S, fid, new_order, False)
    cur = fid
    for split_order in range(order - 1, new_order - 1, -1):
        if _free_count(P) < 1:
            P.ctl[K.C_WANT] = 1
            return np.int64(-ENOMEM)
        err = _split_step(P, H, S, cur, split_order, True)
        if err != 0:
            return err
        cur = entry_folio(K.xa_load_nb(P, H, S.m_xa[S.f_mapping[cur]], at_index))
    return np.int64(0)


# ------------------------------------------------------------------------------------------
# truncation
# ------------------------------------------------------------------------------------------
@njit
def _remove_range(P, H, S, mapping, start, end, out_pfn, out_order, nout):
    """Remove every folio wholly inside ``[start, end)`` (``find_lock_entries`` +
    ``delete_from_page_cache_batch``); pfns and orders of removed folios go to ``out_*``."""
    xa = S.m_xa[mapping]
    i = start
    while i < end:
        e, j = K.xa_find_nb(P, H, xa, i, end - 1, K.XA_PRESENT)
        if e == 0:
            break
        fid = entry_folio(e)
        if fid < 0:
            # a shadow: truncation clears shadows in the range too
            o = K.xa_get_order_nb(P, H, xa, j)
            base = j & ~((np.int64(1) << o) - 1)
            if base >= start and base + (np.int64(1) << o) <= end:
                K.xa_store_order_nb(P, H, xa, base, o, np.int64(0))
            i = base + (np.int64(1) << o)
            continue
        base = S.f_index[fid]
        nr = np.int64(1) << S.f_order[fid]
        if base >= start and base + nr <= end:
            if nout < out_pfn.shape[0]:
                out_pfn[nout] = S.f_pfn[fid]
                out_order[nout] = S.f_order[fid]
            nout += 1
            filemap_remove_folio_nb(P, H, S, fid, np.int64(0))
        i = base + nr
    return nout


@njit
def truncate_inode_pages_range_nb(P, H, S, mapping, lstart, lend, out_pfn, out_order):
    """``truncate_inode_pages_range(mapping, lstart, lend)`` (bytes; ``lend`` -1 = to EOF).

    Folios wholly in the page range are removed; a large folio holding ``lstart`` (or
    ``lend``) is split at that page with the non-uniform ``try_folio_split_to_order``
    (new order = the mapping's min order) and the pieces in the range removed.  If a split
    fails the whole folio is removed (``truncate_inode_folio``: clean folios).  Returns the
    number of folios removed (their pfns/orders in ``out_*`` as far as they fit), or
    -ENOMEM before anything changed if the pool lacks nodes for the splits.
    """
    need = 2 * 10  # two non-uniform splits of at most 10 steps, one node each
    if _free_count(P) < need:
        P.ctl[K.C_WANT] = need
        return np.int64(-ENOMEM)
    start = (lstart + 4095) >> PAGE_SHIFT
    end = np.int64(9223372036854775807) if lend == -1 else (lend + 1) >> PAGE_SHIFT
    nout = _remove_range(P, H, S, mapping, start, end, out_pfn, out_order, np.int64(0))
    min_order = S.m_min_order[mapping]
    xa = S.m_xa[mapping]
    for which in range(2):
        if which == 0:
            page = lstart >> PAGE_SHIFT
        else:
            if lend == -1:
                break
            page = lend >> PAGE_SHIFT
        fid = entry_folio(K.xa_load_nb(P, H, xa, page))
        if fid < 0:
            continue
        pos = S.f_index[fid] << PAGE_SHIFT
        size = np.int64(1) << (S.f_order[fid] + PAGE_SHIFT)
        offset = lstart - pos if pos < lstart else np.int64(0)
        if lend == -1 or pos + size <= lend:
            length = size - offset
        else:
            length = lend + 1 - pos - offset
        if length == size:
            if nout < out_pfn.shape[0]:
                out_pfn[nout] = S.f_pfn[fid]
                out_order[nout] = S.f_order[fid]
            nout += 1
            filemap_remove_folio_nb(P, H, S, fid, np.int64(0))
            continue
        if S.f_order[fid] == 0:
            continue
        split_at = S.f_index[fid] + (offset >> PAGE_SHIFT)
        err = folio_split_nb(P, H, S, fid, min_order, split_at, False)
        if err != 0:
            f2 = entry_folio(K.xa_load_nb(P, H, xa, split_at))
            if nout < out_pfn.shape[0]:
                out_pfn[nout] = S.f_pfn[f2]
                out_order[nout] = S.f_order[f2]
            nout += 1
            filemap_remove_folio_nb(P, H, S, f2, np.int64(0))
            continue
        if offset + length != size:
            # truncate_inode_partial_folio also splits at offset + length
            split2 = S.f_index[fid] + ((offset + length) >> PAGE_SHIFT)
            f2 = entry_folio(K.xa_load_nb(P, H, xa, split2))
            if f2 >= 0 and S.f_order[f2] > min_order:
                folio_split_nb(P, H, S, f2, min_order, split2, False)
    nout = _remove_range(P, H, S, mapping, start, end, out_pfn, out_order, nout)
    return nout


# ------------------------------------------------------------------------------------------
# the Python facade
# ------------------------------------------------------------------------------------------
class FolioSource(Protocol):
    """Where a folio's pages come from (the folio layer / page allocator, later)."""

    def alloc(self, order: int) -> int:
        """First pfn of 2**order new pages, or -1 on failure."""
        ...

    def free(self, pfn: int, order: int) -> None: ...


class NoPages:
    """A folio source without a page model: every allocation succeeds with pfn -1."""

    def alloc(self, order: int) -> int:
        return -1

    def free(self, pfn: int, order: int) -> None:
        return None


@dataclass(frozen=True)
class Folio:
    """A snapshot of one page-cache folio."""

    id: int
    mapping: int
    index: int
    order: int
    pfn: int
    flags: int

    @property
    def nr_pages(self) -> int:
        return 1 << self.order

    @property
    def readahead(self) -> bool:
        return bool(self.flags & PG_READAHEAD)


class FilemapError(MemdescError):
    """A page-cache operation the model refuses (bad index, order or mapping)."""


def filemap_get_order(size: int) -> int:
    """``filemap_get_order``: ``ilog2(size) - PAGE_SHIFT``, 0 up to a page."""
    shift = max(int(size), 1).bit_length() - 1
    return 0 if shift <= PAGE_SHIFT else shift - PAGE_SHIFT


def fgf_set_order(size: int) -> int:
    """``fgf_set_order``: the folio order hint for ``size`` bytes, in the top FGP bits."""
    return filemap_get_order(size) << FGF_GET_ORDER_SHIFT


class PageCache:
    """Every address space of a modelled machine: XArrays in one node pool, a folio table."""

    def __init__(self, *, folios: int = 1024, mappings: int = 16, source: FolioSource | None = None,
                 pool: XaPool | None = None):
        self.pool = pool if pool is not None else XaPool(256, max_xarrays=max(4, mappings))
        self.S = new_page_cache_arrays(folios, mappings)
        self.source: FolioSource = source if source is not None else NoPages()
        self.mappings: list[AddressSpace] = []

    # --- resources ---------------------------------------------------------------------
    def reserve(self, nodes: int = NODE_RESERVE, folios: int = 1) -> None:
        """Make sure ``nodes`` XArray nodes and ``folios`` folio rows are free."""
        if self.pool.free_count < nodes:
            self.pool.supply(nodes)
        free = self.free_folio_rows()
        if free < folios:
            self.S = grow_folios(self.S, max(2 * self.S.f_pfn.shape[0], self.S.f_pfn.shape[0] + folios - free))

    def free_folio_rows(self) -> int:
        return int(self.S.f_pfn.shape[0] - self.S.ctl[C_LIVE])

    def _call(self, fn, *args, folios: int = 1):
        """Run a kernel, supplying nodes / folio rows and retrying on -ENOMEM."""
        for _ in range(64):
            self.reserve(NODE_RESERVE, folios)
            self.pool.arrays.ctl[K.C_WANT] = 0
            self.S.ctl[C_WANT] = 0
            r = fn(self.pool.arrays, self.pool.heads, self.S, *args)
            rv = r[0] if isinstance(r, tuple) else r
            if int(rv) != -ENOMEM:
                return r
            want_nodes = int(self.pool.arrays.ctl[K.C_WANT])
            want_rows = int(self.S.ctl[C_WANT])
            if want_nodes == 0 and want_rows == 0:
                return r
            self.reserve(NODE_RESERVE + want_nodes, folios + want_rows)
        raise FilemapError("page cache: could not get the XArray nodes / folio rows an operation needs")

    # --- mappings ----------------------------------------------------------------------
    def new_mapping(self, *, i_size: int = 0, min_order: int = 0, max_order: int = MAX_PAGECACHE_ORDER,
                    name: str | None = None) -> AddressSpace:
        """A new address space (``mapping_set_folio_order_range(min_order, max_order)``;
        ``max_order=0``: no large folios)."""
        if not 0 <= min_order <= MAX_PAGECACHE_ORDER or not 0 <= max_order <= MAX_PAGECACHE_ORDER:
            raise InvalidOrder(f"folio order range {min_order}..{max_order} outside 0..{MAX_PAGECACHE_ORDER}")
        if max_order and max_order < min_order:
            raise InvalidOrder(f"max folio order {max_order} below min order {min_order}")
        if i_size < 0:
            raise ConfigError(f"i_size {i_size} is negative")
        mid = len(self.mappings)
        self.S = grow_mappings(self.S, max(mid + 1, 2 * self.S.m_xa.shape[0]) if mid >= self.S.m_xa.shape[0]
                               else self.S.m_xa.shape[0])
        xa = XArray(pool=self.pool)
        self.S.m_xa[mid] = xa.id
        self.S.m_isize[mid] = i_size
        self.S.m_min_order[mid] = min_order
        self.S.m_max_order[mid] = max_order
        m = AddressSpace(self, mid, xa, name)
        self.mappings.append(m)
        return m

    # --- views -------------------------------------------------------------------------
    def folio(self, fid: int) -> Folio:
        S = self.S
        if not 0 <= fid < S.f_order.shape[0] or S.f_order[fid] < 0:
            raise FilemapError(f"folio {fid} is not in the page cache")
        return Folio(int(fid), int(S.f_mapping[fid]), int(S.f_index[fid]), int(S.f_order[fid]),
                     int(S.f_pfn[fid]), int(S.f_flags[fid]))

    @property
    def nr_folios(self) -> int:
        return int(self.S.ctl[C_LIVE])

    @property
    def xa_nodes(self) -> int:
        """XArray nodes in the page cache's trees (576 bytes each)."""
        return self.pool.live_nodes

    def stats(self) -> dict:
        c = self.S.ctl
        return {"folios": int(c[C_LIVE]), "added": int(c[C_NR_ADDED]), "removed": int(c[C_NR_REMOVED]),
                "split_steps": int(c[C_NR_SPLIT]), "xa_nodes": self.pool.live_nodes,
                "xa_node_bytes": self.pool.memory_bytes,
                "pages": int(self.S.m_nrpages[: len(self.mappings)].sum())}

    def check(self) -> str:
        """Check the invariants of every mapping; ``"ok"`` or the first violation."""
        S = self.S
        seen = np.zeros(S.f_order.shape[0], bool)
        for m in self.mappings:
            try:
                m.xa.check()
            except InvariantViolation as e:
                return f"mapping {m.id}: {e}"
            pages = 0
            nf = 0
            for idx, fid in m._entries():
                if fid < 0:
                    continue
                f = self.folio(fid)
                if f.mapping != m.id:
                    return f"folio {fid} in mapping {m.id}'s tree but owned by {f.mapping}"
                if f.index != idx or idx & (f.nr_pages - 1):
                    return f"folio {fid} at index {idx} has index {f.index}, order {f.order}"
                if K.xa_get_order_nb(self.pool.arrays, self.pool.heads, m.xa.id, idx) != f.order:
                    return f"folio {fid}: XArray entry order differs from folio order {f.order}"
                lo, hi = int(S.m_min_order[m.id]), max(int(S.m_max_order[m.id]), int(S.m_min_order[m.id]))
                if not lo <= f.order <= hi:
                    return f"folio {fid} of order {f.order} outside mapping {m.id}'s range {lo}..{hi}"
                if seen[fid]:
                    return f"folio {fid} appears twice"
                seen[fid] = True
                pages += f.nr_pages
                nf += 1
            if pages != S.m_nrpages[m.id] or nf != S.m_nrfolios[m.id]:
                return (f"mapping {m.id}: nrpages {int(S.m_nrpages[m.id])} / folios {int(S.m_nrfolios[m.id])} "
                        f"but the tree holds {pages} / {nf}")
        live = int((S.f_order >= 0).sum())
        if live != S.ctl[C_LIVE] or live != seen.sum():
            return f"{live} live folio rows, {int(S.ctl[C_LIVE])} counted, {int(seen.sum())} in trees"
        return "ok"


class AddressSpace:
    """One file's page cache (``struct address_space``)."""

    def __init__(self, cache: PageCache, mid: int, xa: XArray, name: str | None):
        self.cache = cache
        self.id = mid
        self.xa = xa
        self.name = name

    def __repr__(self) -> str:
        return (f"AddressSpace({self.name or self.id}: {self.nrpages} pages in {self.nrfolios} folios, "
                f"i_size {self.i_size})")

    # --- attributes --------------------------------------------------------------------
    @property
    def nrpages(self) -> int:
        return int(self.cache.S.m_nrpages[self.id])

    @property
    def nrfolios(self) -> int:
        return int(self.cache.S.m_nrfolios[self.id])

    @property
    def i_size(self) -> int:
        return int(self.cache.S.m_isize[self.id])

    @i_size.setter
    def i_size(self, v: int) -> None:
        if v < 0:
            raise ConfigError(f"i_size {v} is negative")
        self.cache.S.m_isize[self.id] = v

    @property
    def min_order(self) -> int:
        return int(self.cache.S.m_min_order[self.id])

    @property
    def max_order(self) -> int:
        return int(self.cache.S.m_max_order[self.id])

    def large_folio_support(self) -> bool:
        """``mapping_large_folio_support``."""
        return self.max_order > 0

    # --- operations --------------------------------------------------------------------
    def _index(self, index: int) -> int:
        if not 0 <= index < (1 << 63):
            raise FilemapError(f"page index {index} outside 0 .. 2**63 - 1")
        return int(index)

    def filemap_add_folio(self, index: int, order: int = 0, *, flags: int = 0, pfn: int | None = None) -> int:
        """Add a new folio; returns its id, or -EEXIST / -EINVAL / -ENOMEM (the folio source
        had no pages).  ``pfn`` None: allocate from the cache's folio source."""
        index = self._index(index)
        if not 0 <= order <= MAX_PAGECACHE_ORDER:
            raise InvalidOrder(f"folio order {order} outside 0..{MAX_PAGECACHE_ORDER}")
        own = pfn is None
        if own:
            pfn = self.cache.source.alloc(order)
            if pfn is None or (pfn < 0 and not isinstance(self.cache.source, NoPages)):
                return -ENOMEM
        r = int(self.cache._call(filemap_add_folio_nb, np.int64(self.id), np.int64(index), np.int64(order),
                                 np.int64(pfn), np.int64(flags)))
        if r < 0 and own:
            self.cache.source.free(pfn, order)
        return r

    def get_folio(self, index: int) -> Folio | None:
        """``filemap_get_folio``: the folio containing ``index``."""
        fid = int(filemap_get_folio_nb(self.cache.pool.arrays, self.cache.pool.heads, self.cache.S,
                                       np.int64(self.id), np.int64(self._index(index))))
        return None if fid < 0 else self.cache.folio(fid)

    def filemap_get_folio_flags(self, index: int, fgp: int = 0) -> Folio | int:
        """``__filemap_get_folio(mapping, index, fgp_flags, gfp)``.

        The folio containing ``index``; if there is none and ``FGP_CREAT`` is set, a new
        folio is added *at* ``index`` (aligned down to the mapping's min order only): of
        order ``max(min_order, FGF_GET_ORDER(fgp))`` capped by the max order, lowered to
        ``__ffs(index)`` when ``index`` is not aligned to it, and on any failure retried one
        order lower down to the min order; -EEXIST (a racing folio) looks again.  Returns a
        :class:`Folio` or a negative errno (-ENOENT without FGP_CREAT, -ENOMEM, -EAGAIN for
        FGP_NOWAIT when out of memory).  Locking flags (FGP_LOCK, FGP_NOWAIT's trylock,
        FGP_STABLE) change nothing in the model.
        """
        index = self._index(index)
        for _ in range(4):
            f = self.get_folio(index)
            if f is not None:
                return f
            if not fgp & FGP_CREAT:
                return -ENOENT
            min_order = self.min_order
            order = max(min_order, fgp >> FGF_GET_ORDER_SHIFT)
            idx = index & ~((1 << min_order) - 1)
            max_order = max(self.max_order, min_order)
            if order > max_order:
                order = max_order
            if idx & ((1 << order) - 1):
                order = (idx & -idx).bit_length() - 1
            err = -ENOMEM
            while True:
                err = self.filemap_add_folio(idx, order)
                if err >= 0:
                    return self.cache.folio(err)
                if order <= min_order:
                    break
                order -= 1
            if err == -EEXIST:
                continue
            if fgp & FGP_NOWAIT and err == -ENOMEM:
                return -EAGAIN
            return err
        return -EEXIST

    def remove(self, folio: Folio | int, *, shadow: int = 0) -> None:
        """``filemap_remove_folio``: the folio leaves the page cache; its pages go back to the source."""
        fid = folio.id if isinstance(folio, Folio) else int(folio)
        f = self.cache.folio(fid)
        if f.mapping != self.id:
            raise FilemapError(f"folio {fid} belongs to mapping {f.mapping}, not {self.id}")
        pfn = int(self.cache._call(filemap_remove_folio_nb, np.int64(fid), np.int64(shadow)))
        self.cache.source.free(pfn, f.order)

    def split(self, folio: Folio | int, new_order: int = 0, *, at: int | None = None, uniform: bool = False) -> int:
        """Split a folio: uniform (every piece ``new_order``) or non-uniform at page index ``at``
        (``folio_split``).  Returns 0 or a negative errno."""
        fid = folio.id if isinstance(folio, Folio) else int(folio)
        f = self.cache.folio(fid)
        at_index = f.index if at is None else int(at)
        if not f.index <= at_index < f.index + f.nr_pages:
            raise FilemapError(f"split point {at_index} is outside folio {fid} [{f.index}, {f.index + f.nr_pages})")
        if not 0 <= new_order < f.order:
            raise InvalidOrder(f"cannot split an order-{f.order} folio to order {new_order}")
        return int(self.cache._call(folio_split_nb, np.int64(fid), np.int64(new_order), np.int64(at_index),
                                    bool(uniform), folios=1 << (f.order - new_order)))

    def truncate_inode_pages_range(self, lstart: int, lend: int = -1) -> list[tuple[int, int]]:
        """``truncate_inode_pages_range`` (bytes, ``lend`` inclusive, -1 = EOF): removes the
        folios in the range, splitting large folios it cuts.  Returns (pfn, order) of the
        folios removed, in removal order; their pages go back to the source."""
        if lstart < 0 or (lend != -1 and lend < lstart):
            raise FilemapError(f"bad truncation range {lstart}..{lend}")
        cap = max(16, self.nrfolios + 2 * MAX_PAGECACHE_ORDER + 2)
        out_pfn = np.zeros(cap, np.int64)
        out_order = np.zeros(cap, np.int64)
        n = int(self.cache._call(truncate_inode_pages_range_nb, np.int64(self.id), np.int64(lstart),
                                 np.int64(lend), out_pfn, out_order, folios=2 * (1 << MAX_PAGECACHE_ORDER)))
        removed = [(int(out_pfn[i]), int(out_order[i])) for i in range(min(n, cap))]
        for pfn, order in removed:
            self.cache.source.free(pfn, order)
        return removed

    def truncate(self, new_size: int) -> list[tuple[int, int]]:
        """``truncate_setsize`` + ``truncate_pagecache``: shrink the file to ``new_size`` bytes."""
        if new_size < 0:
            raise FilemapError(f"negative file size {new_size}")
        self.i_size = new_size
        return self.truncate_inode_pages_range(new_size, -1)

    def next_miss(self, index: int, max_scan: int) -> int:
        return int(page_cache_next_miss_nb(self.cache.pool.arrays, self.cache.pool.heads, self.cache.S,
                                           np.int64(self.id), np.int64(index), np.int64(max_scan)))

    def prev_miss(self, index: int, max_scan: int) -> int:
        """``page_cache_prev_miss``; ULONG_MAX is returned as 2**64 - 1."""
        r = int(page_cache_prev_miss_nb(self.cache.pool.arrays, self.cache.pool.heads, self.cache.S,
                                        np.int64(self.id), np.int64(index), np.int64(max_scan)))
        return r & ((1 << 64) - 1)

    def _entries(self) -> Iterator[tuple[int, int]]:
        """(index, folio id or -1 for a shadow) of every entry, in index order."""
        P, H = self.cache.pool.arrays, self.cache.pool.heads
        i = 0
        xa = np.int64(self.xa.id)
        while True:
            e, j = K.xa_find_nb(P, H, xa, np.int64(i), np.int64(K.LONG_MAX), np.int64(K.XA_PRESENT))
            if e == 0:
                return
            fid = int(entry_folio(e))
            o = int(K.xa_get_order_nb(P, H, xa, j))
            base = int(j) & ~((1 << o) - 1)
            yield base, fid
            i = base + (1 << o)

    def folios(self) -> list[Folio]:
        """Every folio of the mapping, in index order."""
        return [self.cache.folio(fid) for _, fid in self._entries() if fid >= 0]

    def orders(self) -> list[tuple[int, int]]:
        """(index, order) of every folio, in index order."""
        return [(f.index, f.order) for f in self.folios()]
