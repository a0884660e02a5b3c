"""The modelled clock: the kernel's periodic page-allocator work, for every driver.

Theory
------
Some allocator state changes with time, not with requests:

* ``vmstat_update()`` runs on every CPU once a second (``sysctl_stat_interval`` = HZ) and
  decays each per-CPU list's ``high`` by an eighth toward ``high_min``, freeing what is above
  it (``decay_pcp_high()``): ``core.vmstat_update``;
* kswapd, woken by an allocation that found a zone's watermark boosted, ends its run by
  taking the boost back (``balance_pgdat()``): ``core.kswapd_balance``.

:func:`periodic_work` is both, once.  Trace replay runs it on the trace's timestamps.
Synthetic workloads (churn, scenarios) have no timestamps: they advance a modelled clock
``ns_per_op`` nanoseconds per allocator operation (:data:`DEFAULT_NS_PER_OP`: 5 us, about
what the ``anon`` capture spends per kmem event — 1.9 M events in 8.3 s) and run periodic
work every :data:`core.VMSTAT_INTERVAL_NS` of it.  ``ns_per_op = 0`` stops the clock.

A clock is an int64[3] array: modelled now, the next tick, ns per operation.  The
decay needs the design's bulk pcp free (``pcp_free_bulk``); a design without it gets the
kswapd part only (chosen at compile time).
"""

from __future__ import annotations

import numpy as np
from numba.extending import overload

from memdesc._numba import njit
from memdesc.errors import ConfigError
from memdesc.mm.page_alloc import core, dispatch

#: modelled nanoseconds per allocator operation of a synthetic workload
DEFAULT_NS_PER_OP = 5_000
NOW, NEXT, NS_PER_OP = range(3)


def new_clock(ns_per_op: int = DEFAULT_NS_PER_OP) -> np.ndarray:
    """A clock at 0 whose first tick is one interval away."""
    if isinstance(ns_per_op, bool) or int(ns_per_op) != ns_per_op or ns_per_op < 0:
        raise ConfigError(f"ns_per_op must be a non-negative integer, got {ns_per_op!r}")
    return np.array([0, core.VMSTAT_INTERVAL_NS, int(ns_per_op)], np.int64)


def periodic_work(st):
    """core.vmstat_update() (pcp high decay) if the design can free pcp pages in bulk, and
    core.kswapd_balance()."""
    if dispatch.has(type(st), "pcp_free_bulk"):
        core.vmstat_update(st)
    core.kswapd_balance(st)


@overload(periodic_work, prefer_literal=False)
def _ol_periodic_work(st):
    if dispatch.has(type(st), "pcp_free_bulk"):
        def impl(st):
            core.vmstat_update(st)
            core.kswapd_balance(st)
    else:
        def impl(st):
            core.kswapd_balance(st)
    return impl


@njit
def advance(st, clk, ns):
    """Move the clock ``ns`` forward, running periodic work for every tick passed."""
    clk[NOW] += ns
    while clk[NOW] >= clk[NEXT]:
        periodic_work(st)
        clk[NEXT] += core.VMSTAT_INTERVAL_NS


@njit(inline="always")
def tick(st, clk):
    """One allocator operation of a synthetic workload."""
    if clk[NS_PER_OP] > 0:
        advance(st, clk, clk[NS_PER_OP])
