"""Scenarios: the 2021 folio thread's claims as reproducible experiments.

Theory
------
**highmem-free** is Kent Overstreet's paragraph (23 Oct 2021) run on a modelled machine:

    "I ran into a major roadblock when I tried converting buddy allocator freelists to
    radix trees: freeing a page may require allocating a new page for the radix tree
    freelist, which is fine normally - we're freeing a page after all - but not if it's
    highmem."

and Matthew Wilcox's answer, the rule of his vmem-based design: "We must never allocate
memory when freeing memory.  So we must allocate the necessary struct buddy at the time
we allocate the memory.  If we cannot do so, we simply fail the allocation."

The machine is an i386 PAE PC (``--layout i386``): ZONE_DMA below 16 MiB, ZONE_NORMAL up
to 896 MiB (the directly-mapped *lowmem*, the only memory the kernel can put its own data
structures in) and ZONE_HIGHMEM above.  Every step, and why it is there:

1. **User memory** (``GFP_HIGHUSER_MOVABLE``, order 0).  Processes take ``--user-fraction``
   (default 3/4) of HighMem, which is what HighMem is for; the rest stays free for step 4.
   A page that comes from a lowmem zone ends the step (the zonelist fell back below
   HighMem's watermark; the page is given straight back).  Order-0 pages allocated one by
   one leave no free block behind where they were taken, so the later frees build free
   lists entry by entry.
2. **Kernel memory** (``GFP_KERNEL``, then ``GFP_ATOMIC``, order 0).  The kernel's demand
   is every lowmem page: ``GFP_KERNEL`` attempts as many allocations as lowmem has managed
   pages (its slow path goes down to the min watermark), then ``GFP_ATOMIC`` attempts as
   many as the lowmem min watermarks hold (``__GFP_HIGH`` dips below min, as interrupt
   handlers do).  Every design sees the same demand; how many pages the kernel gets shows
   how much lowmem a design's metadata holds back.  At the end lowmem is exhausted even
   for atomic callers -- the state in which Kent's free path has nowhere to get a tree
   node from.
3. **User (HighMem) frees.**  A random ``--free-fraction`` (default half) of the user pages
   is freed in a random order, on random CPUs (per-CPU lists fill and drain in batches
   into the buddy lists, as in the kernel).  Random order-0 frees are mostly not mergeable
   with their buddy, so nearly every free adds a free-list entry.  Counted per free: did
   the design allocate metadata while freeing (``free_path_allocations``), and did the
   free stall (the design's ``free_stalls`` counter moved during it: an insertion that
   could not get memory and had to wait).  The radix design counts one stall per parked
   insertion, so a free that drains a per-CPU batch can count several; ``stalled_frees``
   counts frees.
4. **More user memory, lowmem still exhausted.**  Processes allocate again as many pages
   as are free for them (the HighMem never taken in step 1 plus the pages freed in step
   3).  This is where Wilcox's rule is paid for: a design that must obtain lowmem metadata
   for a later free at allocation time ("if we cannot do so, we simply fail the
   allocation") fails HighMem allocations here (``alloc_failed_for_metadata``) although
   HighMem has the pages, while ``linux`` and radix-consume succeed.
5. **Lowmem release.**  A random ``--release-fraction`` (default a quarter) of the kernel
   pages is freed.  A design that parked insertions gets the memory to complete them: the
   report shows the parked entries after step 3 and after step 5 (0 means every stalled
   free completed: no page was lost).  Finally ``check()`` verifies every invariant.

Expected, by design (``tests/test_scenario.py`` checks each):

* ``linux``: free lists threaded through struct page; a free never needs memory:
  0 free-path allocations and 0 stalls by construction.
* ``radix --radix-nodes consume`` (Kent's path): a lowmem free whose spare is short
  consumes the page being freed for tree nodes ("we're freeing a page after all"), so on
  x86-64, where every page is directly mapped, stalls are 0; on i386 a HighMem page cannot
  hold nodes, lowmem is exhausted, so frees stall (> 0) -- the wall.
* ``radix --radix-nodes reserve`` (Wilcox's rule on Kent's structure): nodes for the
  worst case of all outstanding frees are reserved at allocation time; 0 free-path
  allocations and 0 stalls, paid for with tree-node bytes held in lowmem (fewer kernel
  pages in step 2) and HighMem allocations that fail for the reserve in step 4.
* ``vmem``: every allocation obtains the descriptors its free will need, or fails
  (``alloc_failed_for_descriptor``, step 4); 0 free-path allocations and 0 stalls.

On ``--layout x86_64`` the same steps run with as many user pages as the i386 machine of
the same ``--mem`` has HighMem pages (``user_pages`` overrides it); they come from Normal
and DMA32, all directly mapped.  The kernel's demand in step 2 is every page left, so
in step 4 only the pages freed in step 3 are there to be had.

A run's ``free_path_allocations``, ``free_stalls`` and ``alloc_failed_for_metadata`` are the
whole run's counts (the names mean the same in every memdesc summary); what each step
moved is in its :class:`Phase`, and ``stalled_frees`` counts the user frees of step 3 that
stalled.

The loops are numba kernels over the design interface (``dispatch.pa_alloc``/``pa_free``);
random numbers come from numpy's PCG64 (the permutations) and xorshift64* (the CPUs),
both seeded with ``--seed``, so every count is a function of the arguments alone.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from memdesc._numba import njit
from memdesc.errors import ConfigError
from memdesc.mm import gfp as G
from memdesc.mm.machine import Machine, summary_design_stats
from memdesc.mm.mm_init import i386_layout
from memdesc.mm.mmzone import ZoneType
from memdesc.mm.page_alloc import core, design_spec, dispatch, get_design
from memdesc.sim.churn import below
from memdesc.sim.clock import DEFAULT_NS_PER_OP, new_clock, tick
from memdesc.sim.thp_scenario import SCENARIO as THP_SCENARIO
from memdesc.sim.thp_scenario import thp_after_pagecache, without_timings

LAYOUTS = ("i386", "x86_64")
#: ``--design all``: every design and radix node policy, in report order
ALL_VARIANTS = (("linux", None), ("radix", "consume"), ("radix", "reserve"), ("vmem", None))

# result slots of the kernels
R_OK, R_FAILED, R_OUTSIDE, R_ERRORS, R_STALLED, R_ALLOCATED = range(6)


# ------------------------------------------------------------------ kernels


@njit
def alloc_phase(st, out, count, gfp, attempts, lo, hi, stop_on_fail, rng, ncpu, res, clk):
    """Up to ``attempts`` order-0 allocations with ``gfp`` on random CPUs, kept in ``out``.

    A page outside [lo, hi) is freed straight back and ends the phase (res[R_OUTSIDE]);
    a failure ends it when ``stop_on_fail``.  Returns the new count of ``out``.  Each attempt
    advances the modelled clock ``clk`` (memdesc.sim.clock).
    """
    for _ in range(attempts):
        tick(st, clk)
        cpu = below(rng, ncpu)
        pfn = dispatch.pa_alloc(st, gfp, 0, cpu)
        if pfn < 0:
            res[R_FAILED] += 1
            if stop_on_fail:
                break
            continue
        if pfn < lo or pfn >= hi:
            if dispatch.pa_free(st, pfn, 0, cpu) != core.OK:
                res[R_ERRORS] += 1
            res[R_OUTSIDE] += 1
            break
        out[count] = pfn
        count += 1
        res[R_OK] += 1
    return count


@njit
def free_phase(st, pfns, rng, ncpu, res, clk):
    """Free every order-0 page of ``pfns`` (in that order) on random CPUs.

    res[R_STALLED]: frees during which the design's free_stalls counter moved;
    res[R_ALLOCATED]: frees during which it allocated metadata.
    """
    for i in range(pfns.shape[0]):
        tick(st, clk)
        cpu = below(rng, ncpu)
        s0 = st.stats[core.ST_FREE_STALLS]
        a0 = st.stats[core.ST_FREE_PATH_ALLOCS]
        if dispatch.pa_free(st, pfns[i], 0, cpu) != core.OK:
            res[R_ERRORS] += 1
        else:
            res[R_OK] += 1
        if st.stats[core.ST_FREE_STALLS] != s0:
            res[R_STALLED] += 1
        if st.stats[core.ST_FREE_PATH_ALLOCS] != a0:
            res[R_ALLOCATED] += 1


# ------------------------------------------------------------------ results


@dataclass
class Phase:
    """What one step did: attempts and outcomes, and the machine's counters moved by it."""

    name: str
    gfp: str
    attempts: int
    succeeded: int
    failed: int = 0
    errors: int = 0
    stalled_frees: int = 0
    frees_that_allocated: int = 0
    free_path_allocations: int = 0
    free_stalls: int = 0
    alloc_failed_for_metadata: int = 0
    parked_after: int = 0
    seconds: float = 0.0


@dataclass
class ScenarioResult:
    """One run of highmem-free (see the module's theory statement)."""

    scenario: str
    design: str
    policy: str | None
    layout: str
    mem: str
    seed: int
    cpus: int
    lowmem_managed_pages: int
    highmem_managed_pages: int
    user_pages: int
    kernel_pages: int
    late_user_attempts: int
    late_user_failed: int
    late_user_failed_for_metadata: int
    frees_attempted: int
    stalled_frees: int
    free_stalls: int
    free_path_allocations: int
    alloc_failed: int
    alloc_failed_for_metadata: int
    metadata_bytes: dict
    metadata_node_bytes: int
    reserve_bytes: int
    nodes_per_free_page: float | None
    parked_after_frees: int
    parked_after_release: int
    check: str
    seconds: float
    phases: list[Phase] = field(default_factory=list)
    design_stats: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    #: Machine.summary() at the end of the run (the keys every command's JSON has)
    summary: dict = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return f"{self.design} {self.policy}" if self.policy else self.design

    def as_dict(self) -> dict:
        """The machine summary at the end, with the scenario's own figures (``ScenarioRun``)."""
        own = asdict(self)
        own.pop("summary")
        d = {**self.summary, **own}
        d["label"] = self.label
        return d

    def counts(self) -> dict:
        """:meth:`as_dict` without the timings: what a seed determines."""
        return without_timings(self.as_dict())


# ------------------------------------------------------------------ the scenario


def design_for(design: str, radix_nodes: str | None):
    """The design class for ``design`` (a name or spec such as ``radix:reserve``) plus the
    ``--radix-nodes`` flag, and the node policy reported (None for designs without one)."""
    cls = get_design(design_spec(design, radix_nodes=radix_nodes))
    return cls, getattr(cls, "node_policy", None)


def variants(design: str, radix_nodes: str | None) -> list[tuple[str, str | None]]:
    """(design, radix policy) pairs to run: one, or every one for ``design='all'``."""
    if design == "all":
        if radix_nodes is not None:
            return [(d, p) for d, p in ALL_VARIANTS if d != "radix" or p == radix_nodes]
        return list(ALL_VARIANTS)
    cls, policy = design_for(design, radix_nodes)
    return [(cls.name, policy)]


def _highmem_pages_i386(mem: str | int) -> int:
    return sum(z.managed for z in i386_layout(mem).zones if z.ztype == ZoneType.HIGHMEM)


def _design_stats(m: Machine) -> dict:
    d = m.design
    out = dict(d.design_stats() or {})
    if not out:
        for name in ("node_stats", "descriptor_stats"):
            fn = getattr(d, name, None)
            if fn is not None:
                out = dict(fn())
                break
    return out


def _parked(ds: dict) -> int:
    return int(ds.get("parked_now", 0))


def highmem_free(design: str = "radix", radix_nodes: str | None = None, layout: str = "i386",
                 mem: str | int = "4G", seed: int = 1, cpus: int | None = None, free_fraction: float = 0.5,
                 release_fraction: float = 0.25, user_fraction: float = 0.75,
                 user_pages: int | None = None, ns_per_op: int = DEFAULT_NS_PER_OP) -> ScenarioResult:
    """Run the highmem-free scenario (theory statement above) once; returns its counts.

    ``design`` linux | radix | vmem; ``radix_nodes`` consume | reserve (radix only, default
    consume); ``layout`` i386 | x86_64; ``user_fraction`` of the user pages allocated in step
    1 (the rest in step 4), ``free_fraction`` of them freed in step 3,
    ``release_fraction`` of the kernel pages freed in step 5.  ``user_pages`` overrides the
    number of user pages (default: the HighMem pages of the i386 machine of this size).
    ``ns_per_op``: modelled time per allocator operation (periodic work once a modelled second,
    memdesc.sim.clock; 0 stops the clock).
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    for name, v in (("--free-fraction", free_fraction), ("--release-fraction", release_fraction),
                    ("--user-fraction", user_fraction)):
        if not 0.0 <= float(v) <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {v}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")
    cls, policy = design_for(design, radix_nodes)
    if user_pages is not None and (isinstance(user_pages, bool) or not isinstance(user_pages, int | np.integer)
                                   or user_pages < 0):
        raise ConfigError(f"user_pages must be a non-negative integer, got {user_pages!r}")
    highmem_i386 = _highmem_pages_i386(mem)
    user_target = highmem_i386 if user_pages is None else int(user_pages)
    if highmem_i386 == 0 and (layout == "i386" or user_pages is None):
        raise ConfigError(f"an i386 machine with {mem} has no HighMem (it needs more than 896M): the scenario "
                          "frees HighMem pages (x86_64 takes its user-page count from it unless user_pages "
                          "is given)")
    t0 = time.perf_counter()
    m = Machine.create(mem, design=cls, layout=layout, cpus=cpus)
    st = m.state
    zones = m.zones
    high = [z for z in zones if z.present and not z.direct_mapped]
    lowmem_managed = sum(int(st.z_managed[i]) for i, z in enumerate(zones) if z.direct_mapped)
    highmem_managed = sum(int(st.z_managed[i]) for i, z in enumerate(zones) if z.present and not z.direct_mapped)
    ncpu = np.int64(m.nr_cpus)
    rng = np.array([np.uint64((int(seed) * 0x9E3779B97F4A7C15 + 1) % (1 << 64) or 1)], np.uint64)
    perm = np.random.default_rng(int(seed))
    clk = new_clock(ns_per_op)
    phases: list[Phase] = []

    def counters() -> np.ndarray:
        return st.stats[[core.ST_FREE_PATH_ALLOCS, core.ST_FREE_STALLS, core.ST_ALLOC_FAILED_FOR_META]].copy()

    def record(name, gfp, attempts, res, c0, t) -> Phase:
        c = counters() - c0
        p = Phase(name=name, gfp=gfp, attempts=int(attempts), succeeded=int(res[R_OK]),
                  failed=int(res[R_FAILED]), errors=int(res[R_ERRORS]), stalled_frees=int(res[R_STALLED]),
                  frees_that_allocated=int(res[R_ALLOCATED]), free_path_allocations=int(c[0]),
                  free_stalls=int(c[1]), alloc_failed_for_metadata=int(c[2]),
                  parked_after=_parked(_design_stats(m)), seconds=time.perf_counter() - t)
        phases.append(p)
        return p

    res = np.zeros(8, np.int64)
    gfp_user = np.int64(G.GFP_HIGHUSER_MOVABLE)
    if high:
        lo, hi = high[0].start_pfn, max(z.end_pfn for z in high)
        user_target = min(user_target, highmem_managed)
    else:
        lo, hi = 0, m.max_pfn
        user_target = min(user_target, sum(int(x) for x in st.z_managed))
    user = np.zeros(max(user_target, 1), np.int64)

    def step(name, gfp_name, fn, attempts, *args) -> tuple[Phase, int]:
        """Run one kernel; its Phase record and the kernel's return value."""
        res[:] = 0
        c0, t = counters(), time.perf_counter()
        out = fn(*args)
        return record(name, gfp_name, attempts, res, c0, t), int(out or 0)

    # 1. user memory: user_fraction of HighMem
    first = int(round(user_fraction * user_target))
    _, n_user = step("user pages", "GFP_HIGHUSER_MOVABLE", alloc_phase, first,
                     st, user, 0, gfp_user, first, lo, hi, True, rng, ncpu, res, clk)
    n_user1 = n_user

    # 2. kernel memory: all of lowmem, then GFP_ATOMIC into the min watermark reserves
    demand_kernel = lowmem_managed if high else max(0, sum(int(x) for x in st.z_managed) - n_user)
    demand_atomic = sum(int(st.wmark[i][0]) for i, z in enumerate(zones) if z.direct_mapped and z.present)
    kernel = np.zeros(max(demand_kernel + demand_atomic, 1), np.int64)
    n_kernel = 0
    for gname, gfp, demand in (("GFP_KERNEL", G.GFP_KERNEL, demand_kernel),
                               ("GFP_ATOMIC", G.GFP_ATOMIC, demand_atomic)):
        _, n_kernel = step("kernel pages", gname, alloc_phase, demand,
                           st, kernel, n_kernel, np.int64(gfp), demand, 0, m.max_pfn, False, rng, ncpu, res, clk)
    kernel = kernel[:n_kernel]

    # 3. user (HighMem) frees: a random subset in random order
    nfree = int(round(free_fraction * n_user))
    order = perm.permutation(n_user)
    freed, kept = user[order[:nfree]], user[order[nfree:]]
    p3, _ = step("free user pages", "-", free_phase, nfree, st, freed, rng, ncpu, res, clk)

    # 4. more user memory with lowmem still exhausted: every page free for users now
    more = (user_target - n_user) + nfree
    user = np.concatenate([kept, np.zeros(more, np.int64)])
    p4, n_user = step("more user pages", "GFP_HIGHUSER_MOVABLE", alloc_phase, more,
                      st, user, kept.shape[0], gfp_user, more, lo, hi, False, rng, ncpu, res, clk)

    # 5. lowmem release: parked insertions can complete
    nrel = int(round(release_fraction * n_kernel))
    p5, _ = step("free kernel pages", "-", free_phase, nrel, st, perm.permutation(kernel)[:nrel], rng, ncpu, res,
                 clk)

    ds = _design_stats(m)
    md = m.metadata_bytes()
    summary = m.summary()
    stats = m.stats()
    nodes_pp = ds.get("nodes_per_free_page")
    return ScenarioResult(
        scenario="highmem-free", design=m.design.name, policy=policy, layout=layout, mem=str(mem),
        seed=int(seed), cpus=m.nr_cpus, lowmem_managed_pages=lowmem_managed,
        highmem_managed_pages=highmem_managed, user_pages=n_user1, kernel_pages=n_kernel,
        late_user_attempts=p4.attempts, late_user_failed=p4.failed,
        late_user_failed_for_metadata=p4.alloc_failed_for_metadata,
        frees_attempted=nfree, stalled_frees=p3.stalled_frees, free_stalls=stats["free_stalls"],
        free_path_allocations=stats["free_path_allocations"], alloc_failed=stats["alloc_failed"],
        alloc_failed_for_metadata=stats["alloc_failed_for_metadata"], metadata_bytes=md,
        metadata_node_bytes=int(md.get("descriptors", 0)), reserve_bytes=int(ds.get("reserve_target_bytes", 0)),
        nodes_per_free_page=None if nodes_pp is None else float(nodes_pp),
        parked_after_frees=p3.parked_after, parked_after_release=p5.parked_after, check=m.check(),
        seconds=time.perf_counter() - t0, phases=phases, design_stats=summary_design_stats(ds),
        stats=summary["stats"], summary=summary)


SCENARIOS = {"highmem-free": highmem_free, THP_SCENARIO: thp_after_pagecache}
