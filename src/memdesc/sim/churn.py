"""Random allocation churn: a synthetic workload that runs on any design.

Theory
------
The workload keeps the machine near a target *occupancy* (allocated pages / managed
pages): each operation frees a random live allocation when the allocated pages are at or
above the target, and allocates otherwise.  After a *fill* phase that brings occupancy to
the target, ``pairs`` measured alloc+free pairs are run, i.e. ``2 * pairs`` operations.
Orders and gfp masks are drawn from tables (a single order, or the ``mix`` distribution
below); CPUs are drawn uniformly, so frees often happen on another CPU than the
allocation, as in a real kernel.  Random numbers come from xorshift64*, seeded, so a run
is reproducible and identical with and without numba.

The loop is one numba kernel calling the design interface (``pa_alloc``/``pa_free``); the
Python side only slices the run into chunks for the progress bar and for checkpoints
(:class:`~memdesc.sim.checkpoint.Checkpoints`): the machine and the workload's arrays (live
allocations, counters, random-number state, modelled clock) saved together, so that
:meth:`Churn.resume` continues a run bit-identically.  The seed also reseeds the design's
fault injection (``Design.seed_faults``).  Each operation advances the modelled clock
(:mod:`memdesc.sim.clock`, ``ns_per_op``), so the kernel's periodic work (pcp high decay,
kswapd taking a watermark boost back) runs once a modelled second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from memdesc import _mem as hugemem
from memdesc._numba import njit
from memdesc._prefetch import prefetch, prefetch_page
from memdesc.errors import ConfigError
from memdesc.mm import gfp as gfpmod
from memdesc.mm.machine import Machine
from memdesc.mm.mmzone import MAX_PAGE_ORDER
from memdesc.mm.page_alloc import dispatch
from memdesc.sim.checkpoint import Checkpoints
from memdesc.sim.clock import DEFAULT_NS_PER_OP, new_clock, tick

#: the "mix" order distribution: order-0 dominated with compound pages, page-table and slab
#: orders, and THP-sized (order-9) allocations, roughly the shape of the real captures
ORDER_MIX = {0: 0.86, 1: 0.04, 2: 0.03, 3: 0.04, 4: 0.005, 5: 0.004, 6: 0.003, 7: 0.002, 8: 0.002,
             9: 0.012, 10: 0.002}
#: gfp mix: user pages (movable), kernel (unmovable), reclaimable caches
GFP_MIX = {"GFP_HIGHUSER_MOVABLE|__GFP_COMP": 0.70, "GFP_KERNEL": 0.22, "GFP_KERNEL|__GFP_RECLAIMABLE": 0.08}
TABLE = 1024


def sampling_table(dist: dict, dtype=np.int64) -> np.ndarray:
    """A 1024-entry table whose uniform sampling follows ``dist`` (largest remainder rounding)."""
    keys = list(dist)
    w = np.array([float(dist[k]) for k in keys])
    if (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"bad distribution {dist}")
    w = w / w.sum() * TABLE
    n = np.floor(w).astype(int)
    rem = TABLE - n.sum()
    for i in np.argsort(-(w - n))[:rem]:
        n[i] += 1
    return np.repeat(np.array(keys, dtype=dtype), n)


@njit(inline="always")
def xorshift64s(rng):
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    return (x * np.uint64(2685821657736338717)) >> np.uint64(11)


@njit(inline="always")
def scale(r, n):
    """Map a xorshift64* draw to a uniform integer in [0, n) for n < 2**32 (multiply-shift)."""
    return np.int64(((r >> np.uint64(21)) * np.uint64(n)) >> np.uint64(32))


@njit(inline="always")
def below(rng, n):
    """A uniform integer in [0, n) for n < 2**32 (no division)."""
    return scale(xorshift64s(rng), n)


@njit
def free_random(st, live, ctr, rng, cpu):
    """Free a random live allocation; live entries are pfn << 4 | order.

    Victims are drawn two frees ahead (rng[1], rng[2]) so that the live-table slot of the
    victim after next and the struct page of the next victim can be prefetched.
    """
    n = ctr[0]
    j = scale(rng[1], n)
    rng[1] = rng[2]
    rng[2] = xorshift64s(rng)
    prefetch(live, scale(rng[2], n))
    prefetch_page(st, live[scale(rng[1], n)] >> 4)
    v = live[j]
    order = v & 15
    if dispatch.pa_free(st, v >> 4, order, cpu) != 0:
        ctr[5] += 1
    n -= 1
    live[j] = live[n]
    ctr[0] = n
    ctr[1] -= 1 << order
    ctr[3] += 1


@njit
def churn_kernel(st, live, ctr, rng, orders, gfps, target_pages, nops, ncpu, clk):
    """Run nops operations around target_pages allocated pages.

    live[i] = pfn << 4 | order of the live allocations.  ctr: [0] live count,
    [1] allocated pages, [2] allocs, [3] frees, [4] failed allocs, [5] free errors (must
    stay 0).  ``clk``: the modelled clock (memdesc.sim.clock), one tick per operation.
    """
    mask = np.uint64(orders.shape[0] - 1)
    for _ in range(nops):
        tick(st, clk)
        cpu = below(rng, ncpu)
        if ctr[1] >= target_pages and ctr[0] > 0:
            free_random(st, live, ctr, rng, cpu)
            continue
        r = xorshift64s(rng)
        order = orders[np.int64(r & mask)]
        gfp = gfps[np.int64((r >> np.uint64(10)) & mask)]
        pfn = dispatch.pa_alloc(st, gfp, order, cpu)
        ctr[2] += 1
        if pfn < 0:
            ctr[4] += 1
            # this request cannot be met now: free something instead
            if ctr[0] > 0:
                free_random(st, live, ctr, rng, cpu)
            continue
        if ctr[0] >= live.shape[0]:
            # live table full (only with absurd targets): give it straight back
            dispatch.pa_free(st, pfn, order, cpu)
            ctr[3] += 1
            continue
        live[ctr[0]] = (pfn << 4) | order
        ctr[0] += 1
        ctr[1] += 1 << order


@njit
def fill_kernel(st, live, ctr, rng, orders, gfps, target_pages, max_ops, ncpu, clk):
    """Allocate until target_pages are allocated (or max_ops attempts); returns attempts."""
    mask = np.uint64(orders.shape[0] - 1)
    ops = 0
    fails_in_row = 0
    while ctr[1] < target_pages and ops < max_ops and ctr[0] < live.shape[0]:
        tick(st, clk)
        cpu = below(rng, ncpu)
        r = xorshift64s(rng)
        order = orders[np.int64(r & mask)]
        gfp = gfps[np.int64((r >> np.uint64(10)) & mask)]
        pfn = dispatch.pa_alloc(st, gfp, order, cpu)
        ops += 1
        ctr[2] += 1
        if pfn < 0:
            ctr[4] += 1
            fails_in_row += 1
            if fails_in_row > 10000:
                break
            continue
        fails_in_row = 0
        live[ctr[0]] = (pfn << 4) | order
        ctr[0] += 1
        ctr[1] += 1 << order
    return ops


@njit
def free_all_kernel(st, live, ctr):
    errors = 0
    for j in range(ctr[0]):
        if dispatch.pa_free(st, live[j] >> 4, live[j] & 15, 0) != 0:
            errors += 1
    ctr[3] += ctr[0]
    ctr[0] = 0
    ctr[1] = 0
    return errors


@dataclass
class ChurnResult:
    """The measured phase of a churn (after the fill): ``alloc``, ``free`` and ``alloc_failed``
    count as the machine summary's ``ops`` do (the same names everywhere)."""

    pairs: int
    operations: int
    alloc: int
    free: int
    alloc_failed: int
    free_errors: int
    fill_seconds: float
    seconds: float
    ns_per_pair: float
    occupancy_target: float
    occupancy_final: float
    live_allocations: int
    #: pairs done before a checkpoint this run resumed from (0: a run from the start)
    resumed_at: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Churn:
    """A churn workload bound to one machine (keeps the live allocations between calls)."""

    def __init__(self, machine: Machine, order: int | None = 0, orders: str | dict | None = None,
                 gfp: str | int | dict = "GFP_KERNEL", occupancy: float = 0.5, seed: int = 1,
                 ns_per_op: int = DEFAULT_NS_PER_OP):
        self.m = machine
        self.clock = new_clock(ns_per_op)
        if orders == "mix":
            dist = ORDER_MIX
        elif isinstance(orders, dict):
            dist = orders
        elif orders is None:
            if order is None or not 0 <= order <= MAX_PAGE_ORDER:
                raise ConfigError(f"order must be in 0..{MAX_PAGE_ORDER}, got {order}")
            dist = {int(order): 1.0}
        else:
            raise ConfigError(f"--orders takes 'mix', got {orders!r}")
        self.orders = sampling_table(dist)
        if gfp == "mix":
            gdist = {gfpmod.parse_gfp(k): v for k, v in GFP_MIX.items()}
        elif isinstance(gfp, dict):
            gdist = {gfpmod.parse_gfp(k) if isinstance(k, str) else int(k): v for k, v in gfp.items()}
        else:
            gdist = {gfpmod.parse_gfp(gfp) if isinstance(gfp, str) else int(gfp): 1.0}
        for g in gdist:
            if machine.design.zs.gfp_zone_table[g & gfpmod.GFP_ZONEMASK] < 0:
                raise ConfigError(f"gfp {gfpmod.format_gfp(g)} has an invalid zone combination")
        self.gfps = sampling_table(gdist)
        if not 0.0 <= occupancy < 1.0:
            raise ConfigError(f"occupancy must be in [0, 1), got {occupancy}")
        self.occupancy = occupancy
        managed = int(machine.design.zs.z_managed.sum())
        self.managed = managed
        self.target = int(occupancy * managed)
        cap = max(16, self.target + 1024)
        self.live = hugemem.zeros(cap, np.int64)
        self.ctr = np.zeros(8, np.int64)
        self.rng = np.array([np.uint64(seed * 0x9E3779B97F4A7C15 % (1 << 64) or 1), 0, 0], np.uint64)
        self.rng[1] = xorshift64s(self.rng)
        self.rng[2] = xorshift64s(self.rng)
        self.ncpu = machine.nr_cpus
        machine.design.seed_faults(seed)

    def fill(self) -> float:
        t = time.perf_counter()
        fill_kernel(self.m.state, self.live, self.ctr, self.rng, self.orders, self.gfps,
                    self.target, 4 * self.live.shape[0] + 1000, self.ncpu, self.clock)
        return time.perf_counter() - t

    def run(self, pairs: int, chunk: int = 1 << 20, progress: Callable[[int], None] | None = None,
            checkpoint: Checkpoints | None = None) -> ChurnResult:
        """Fill to the target occupancy, then run ``pairs`` measured alloc+free pairs;
        ``checkpoint`` saves the run (positions counted in pairs)."""
        if pairs < 0:
            raise ConfigError(f"--ops must be >= 0, got {pairs}")
        self._compile()
        fill_s = self.fill()
        return self._measure(pairs, 0, self.ctr.copy(), fill_s, 0.0, chunk, progress, checkpoint)

    def _compile(self) -> None:
        """Compile (or load from cache) the kernels before timing anything (no state changes)."""
        st = self.m.state
        churn_kernel(st, self.live, self.ctr, self.rng, self.orders, self.gfps, self.target, 0, self.ncpu,
                     self.clock)
        fill_kernel(st, self.live, self.ctr, self.rng, self.orders, self.gfps, 0, 0, self.ncpu, self.clock)

    def _measure(self, pairs: int, done_pairs: int, before: np.ndarray, fill_s: float, elapsed: float, chunk: int,
                 progress, ckpt: Checkpoints | None) -> ChurnResult:
        st = self.m.state
        ops = 2 * pairs
        done = 2 * done_pairs
        active = ckpt is not None and ckpt.active
        while done < ops:
            stop = 2 * ckpt.next_stop(done // 2, pairs) if active else ops
            n = min(chunk, stop - done)
            t = time.perf_counter()
            churn_kernel(st, self.live, self.ctr, self.rng, self.orders, self.gfps,
                         self.target, n, self.ncpu, self.clock)
            elapsed += time.perf_counter() - t
            done += n
            if progress:
                progress(n // 2)
            if active and done == stop and done < ops:
                self.save(ckpt.path, pairs, done // 2, before, fill_s, elapsed)
        d = self.ctr - before
        return ChurnResult(
            pairs=pairs, operations=ops, alloc=int(d[2]), free=int(d[3]), alloc_failed=int(d[4]),
            free_errors=int(self.ctr[5]), fill_seconds=fill_s, seconds=elapsed,
            ns_per_pair=(elapsed * 1e9 / pairs) if pairs else 0.0,
            occupancy_target=self.occupancy, occupancy_final=float(self.ctr[1]) / max(1, self.managed),
            live_allocations=int(self.ctr[0]), resumed_at=done_pairs)

    # -- checkpoints
    def arrays(self) -> dict[str, np.ndarray]:
        """The workload's own state: live allocations, counters, random-number state, tables, clock."""
        return {"live": self.live, "ctr": self.ctr, "rng": self.rng, "orders": self.orders, "gfps": self.gfps,
                "clock": self.clock}

    def save(self, path, pairs: int, done: int, before: np.ndarray, fill_s: float, elapsed: float):
        """Write the machine and this workload, ``done`` of ``pairs`` measured pairs run."""
        return self.m.save(path, extra_arrays={**self.arrays(), "before": before}, extra_meta={
            "kind": "churn", "pairs": pairs, "done": done, "fill_seconds": fill_s, "seconds": elapsed,
            "occupancy": self.occupancy, "target": self.target, "managed": self.managed, "ncpu": self.ncpu})

    @classmethod
    def resume(cls, path, chunk: int = 1 << 20, progress: Callable[[int], None] | None = None,
               checkpoint: Checkpoints | None = None) -> tuple[Churn, ChurnResult]:
        """Continue a checkpointed run to its end: (the workload, its result over all pairs)."""
        m, meta, arrays = Machine.load_checkpoint(path)
        if meta.get("kind") != "churn":
            raise ConfigError(f"{path}: not a churn checkpoint (kind {meta.get('kind')!r})")
        c = cls.__new__(cls)
        c.m = m
        c.live, c.ctr, c.rng = arrays["live"].copy(), arrays["ctr"].copy(), arrays["rng"].copy()
        c.orders, c.gfps, c.clock = arrays["orders"], arrays["gfps"], arrays["clock"].copy()
        c.occupancy, c.target, c.managed, c.ncpu = meta["occupancy"], meta["target"], meta["managed"], meta["ncpu"]
        c._compile()
        r = c._measure(meta["pairs"], meta["done"], arrays["before"], meta["fill_seconds"], meta["seconds"], chunk,
                       progress, checkpoint)
        return c, r

    def free_all(self) -> int:
        return int(free_all_kernel(self.m.state, self.live, self.ctr))
