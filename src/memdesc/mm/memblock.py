"""mm/memblock.c's ``__free_pages_memory()``: a run of free pages as maximal aligned blocks.

Theory
------
At boot the kernel hands every free memblock range ``[start, end)`` to the page allocator
in the largest naturally aligned blocks that fit: at each pfn, the order is the number of
trailing zero bits of the pfn (capped at ``MAX_PAGE_ORDER``; pfn 0 takes the cap), reduced
until the block ends by ``end``.  The same split turns any run of free pages into the
blocks a buddy allocator would hold for it, which is how memdesc

* boots every buddy design and frees a range at its
  pfns in exact replay (``core.buddy_free_range``);
* rebuilds buddy blocks from KPF_BUDDY runs of a real /proc/kpageflags dump
  (:mod:`memdesc.trace.kpagebuddy`);
* shows the free segments of a design that is not a buddy (vmem) as the aligned blocks
  ``/proc/buddyinfo`` would count.

This module is the one copy of that split; it depends on nothing but numpy.
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc.mm.mmzone import MAX_PAGE_ORDER


@njit(inline="always")
def block_order(pfn, end, max_order):
    """Order of the largest block aligned at ``pfn`` that ends by ``end`` (at most max_order)."""
    o = max_order
    while o > 0 and (pfn & ((np.int64(1) << o) - 1)) != 0:
        o -= 1
    while pfn + (np.int64(1) << o) > end:
        o -= 1
    return o


@njit
def free_pages_memory(run_start, run_end, run_zone, max_order, out_pfn, out_order, out_zone):
    """Split each run [start, end) into maximal aligned blocks of order <= max_order.

    Writes the blocks to out_*; returns how many, or -1 if they do not fit in out_*."""
    n = 0
    cap = out_pfn.shape[0]
    for r in range(run_start.shape[0]):
        p = np.int64(run_start[r])
        e = np.int64(run_end[r])
        z = run_zone[r]
        while p < e:
            order = block_order(p, e, max_order)
            if n >= cap:
                return -1
            out_pfn[n] = p
            out_order[n] = order
            out_zone[n] = z
            n += 1
            p += np.int64(1) << order
    return n


@njit
def count_blocks(start, end, max_order):
    """How many blocks free_pages_memory() makes of one run."""
    n = 0
    p = np.int64(start)
    while p < end:
        p += np.int64(1) << block_order(p, end, max_order)
        n += 1
    return n


__all__ = ["MAX_PAGE_ORDER", "block_order", "count_blocks", "free_pages_memory"]
