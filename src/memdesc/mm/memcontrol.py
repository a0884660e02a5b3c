"""Memory cgroup page counters and per-CPU charge stocks (mm/memcontrol.c, mm/page_counter.c).

Theory
------
A memory cgroup (cgroup v1 ``memory.limit_in_bytes`` or v2 ``memory.max``) counts the pages
charged to it in a ``page_counter``: ``usage`` and ``max`` in pages, ``failcnt`` (charges
refused), ``watermark`` (``max_usage_in_bytes``).  A charge goes up the hierarchy and fails
at the first ancestor over its limit (``page_counter_try_charge`` returns that ancestor:
``mem_over_limit``).  Charges are batched: ``try_charge_memcg`` charges ``batch =
max(MEMCG_CHARGE_BATCH, nr_pages)`` = 64 pages and keeps the surplus in a per-CPU stock
that later small charges consume without touching the counter (6.18 keeps several memcgs
per CPU in the stock; the model keeps one, the last charged).  When the charge fails it
retries with the exact size, then reclaims from ``mem_over_limit`` -- that loop
(``try_charge_memcg``) is in :mod:`memdesc.mm.vmscan`, beside the reclaim it calls, so the
modules stay acyclic; the counters and stocks are here.

Uncharging a freed folio (``mem_cgroup_uncharge``) returns its pages to the counters of
its memcg and ancestors; ``drain_all_stock`` gives every CPU's stock of a subtree back.
The memcg of a folio is the folio layer's ``memcg`` column (0: the root, never limited and
not counted: the root's ``usage`` stays 0).
"""

from __future__ import annotations

import numpy as np

from memdesc._numba import njit
from memdesc.errors import ConfigError
from memdesc.mm.swap import (
    MCF_FAILCNT,
    MCF_MAX,
    MCF_ONLINE,
    MCF_PARENT,
    MCF_USAGE,
    MCF_WATERMARK,
    PAGE_COUNTER_MAX,
    RC_NMEMCG,
    ReclaimState,
)


def mem_cgroup_create(rs: ReclaimState, parent: int = 0, limit_pages: int | None = None) -> int:
    """A new online memcg under ``parent``; its id (= its lruvec)."""
    n = int(rs.cfg[RC_NMEMCG])
    if n >= rs.mc.shape[0]:
        raise ConfigError(f"at most {rs.mc.shape[0]} memory cgroups in this state")
    if not 0 <= parent < n or not rs.mc[parent, MCF_ONLINE]:
        raise ConfigError(f"no online memcg {parent} to be the parent")
    rs.mc[n, :] = 0
    rs.mc[n, MCF_PARENT] = parent
    rs.mc[n, MCF_ONLINE] = 1
    rs.mc[n, MCF_MAX] = PAGE_COUNTER_MAX if limit_pages is None else int(limit_pages)
    if limit_pages is not None and limit_pages < 0:
        raise ConfigError(f"memcg limit {limit_pages} < 0")
    rs.cfg[RC_NMEMCG] = n + 1
    return n


@njit
def page_counter_try_charge(rs, memcg, nr):
    """-1 on success, else the memcg whose limit refused (the charge is undone below it)."""
    m = np.int64(memcg)
    while m > 0:
        new = rs.mc[m, MCF_USAGE] + nr
        if new > rs.mc[m, MCF_MAX]:
            rs.mc[m, MCF_FAILCNT] += 1
            # undo below the failing one
            u = np.int64(memcg)
            while u != m:
                rs.mc[u, MCF_USAGE] -= nr
                u = rs.mc[u, MCF_PARENT]
            return m
        rs.mc[m, MCF_USAGE] = new
        if new > rs.mc[m, MCF_WATERMARK]:
            rs.mc[m, MCF_WATERMARK] = new
        m = rs.mc[m, MCF_PARENT]
    return np.int64(-1)


@njit
def page_counter_charge(rs, memcg, nr):
    """page_counter_charge(): unconditional (a forced charge may exceed the limit)."""
    m = np.int64(memcg)
    while m > 0:
        rs.mc[m, MCF_USAGE] += nr
        if rs.mc[m, MCF_USAGE] > rs.mc[m, MCF_WATERMARK]:
            rs.mc[m, MCF_WATERMARK] = rs.mc[m, MCF_USAGE]
        m = rs.mc[m, MCF_PARENT]


@njit
def page_counter_uncharge(rs, memcg, nr):
    m = np.int64(memcg)
    while m > 0:
        rs.mc[m, MCF_USAGE] -= nr
        m = rs.mc[m, MCF_PARENT]


@njit
def mem_cgroup_margin(rs, memcg):
    """mem_cgroup_margin(): the least room left up the hierarchy."""
    margin = PAGE_COUNTER_MAX
    m = np.int64(memcg)
    while m > 0:
        room = rs.mc[m, MCF_MAX] - rs.mc[m, MCF_USAGE]
        if room < margin:
            margin = room
        m = rs.mc[m, MCF_PARENT]
    return max(margin, np.int64(0))


@njit
def consume_stock(rs, memcg, nr, cpu):
    if rs.stock[cpu, 0] == memcg and rs.stock[cpu, 1] >= nr:
        rs.stock[cpu, 1] -= nr
        return True
    return False


@njit
def drain_stock(rs, cpu):
    m = rs.stock[cpu, 0]
    if m >= 0 and rs.stock[cpu, 1] > 0:
        page_counter_uncharge(rs, m, rs.stock[cpu, 1])
    rs.stock[cpu, 0] = -1
    rs.stock[cpu, 1] = 0


@njit
def refill_stock(rs, memcg, nr, cpu):
    """refill_stock(): the surplus of a batch charge stays with this CPU (another memcg's
    stock is given back first); a stock above MEMCG_CHARGE_BATCH is drained."""
    if rs.stock[cpu, 0] != memcg:
        drain_stock(rs, cpu)
        rs.stock[cpu, 0] = memcg
    rs.stock[cpu, 1] += nr
    if rs.stock[cpu, 1] > 64:
        drain_stock(rs, cpu)


@njit
def in_subtree(rs, memcg, root):
    m = np.int64(memcg)
    while m >= 0:
        if m == root:
            return True
        m = rs.mc[m, MCF_PARENT] if m > 0 else -1
    return False


@njit
def drain_all_stock(rs, root):
    for c in range(rs.stock.shape[0]):
        if rs.stock[c, 0] >= 0 and in_subtree(rs, rs.stock[c, 0], root):
            drain_stock(rs, c)


@njit
def stocked_pages(rs, memcg):
    tot = np.int64(0)
    for c in range(rs.stock.shape[0]):
        if rs.stock[c, 0] == memcg:
            tot += rs.stock[c, 1]
    return tot
