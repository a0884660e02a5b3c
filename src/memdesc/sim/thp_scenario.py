"""thp-after-pagecache: can a 2 MiB folio still be had after page cache and anon folios
filled memory?  Per design, with and without direct compaction.

Theory
------
The seed's question (issue 11, part 6): in the one-word memdesc world a migration needs a
new descriptor before the old folio can be freed and a split needs several, while Linux's
64-byte ``struct page`` *is* the descriptor.  Compaction is how Linux gets order-9 blocks
back once memory has filled with smaller folios; this scenario runs that recovery on every
design and counts what it costs in descriptor allocations.  The machine is x86_64
(``--layout x86_64``: DMA + DMA32 [+ Normal]), one process, no swap device.  Steps:

1. **Fill** (``fill``).  Files are read sequentially, whole, through the readahead model
   (:class:`memdesc.mm.readahead.Readahead`: sync then async readahead, ``ra->order`` rising
   by 2 per async round, read_ahead_kb 128, so page-cache folios of orders 0..5); each folio
   the model adds becomes a page-cache folio of the folio layer at that index
   (:func:`memdesc.mm.vmscan.add_folio_nb`: allocation with recovery, charged to the root
   memcg, on the file LRU), on every design a descriptor plus pages.  Interleaved with the
   files, anonymous regions are mmapped and written (:class:`memdesc.mm.memory.AddressSpaces`:
   faults under the mTHP policy ``enabled=madvise``, ``hugepages-{16,32,64}kB=always``: anon
   folios of order 4 first, with fallback; the regions are not madvised, so no PMD THP).  File
   or anon and each size (16 KiB .. ``--max-chunk``) are drawn from the seed; ``--file-share``
   of the bytes go to files.  The fill stops when the free pages reach the zones' summed low
   watermark (a chunk is cut to what is left above it), or earlier when a fault found no
   memory (``VM_FAULT_OOM``) or a page-cache folio was refused: on a small machine the
   summed figure counts ZONE_DMA's pages, which ``lowmem_reserve`` keeps from user
   allocations.  No reclaim runs during the fill (but a page-cache folio refused by the
   fast path gets the allocation entry's direct reclaim).
2. **Reclaim** (``reclaim``).  kswapd is woken at the order-0 low watermark and balances
   the node to the high watermark (``balance_pgdat``: the oldest file folios go); then
   ``--drop-fraction`` of the files (drawn from the seed) are deleted (truncation: the page
   cache lets go, the folios are freed) and the same fraction of the anon regions munmapped;
   in the regions kept, one page in every fourth 64 KiB chunk (drawn) is zapped with
   ``MADV_DONTNEED``, leaving those mTHPs partially mapped on the deferred split queue, whose
   shrinker then splits them (on designs with separate descriptors: a descriptor per new
   folio).  What was freed lies between folios still in use: free memory is fragmented.
3. **THP requests** (``thp``).  Order-9 folios are asked for as a THP fault in a
   ``MADV_HUGEPAGE`` region with ``defrag=always`` asks (``vma_thp_gfp_mask``:
   ``GFP_TRANSHUGE | __GFP_THISNODE | __GFP_NORETRY``) through the MM's allocation entry
   :func:`memdesc.mm.vmscan.alloc_folio_recover` until ``--max-failures`` consecutive
   requests failed (default 1: "until they fail"), at most the managed pages / 512.  *With
   compaction* the allocation entry's slow path is the kernel's for this costly
   ``__GFP_NORETRY`` order: async direct compaction first (giving up at once if it was
   skipped or deferred), then one round of direct reclaim and direct compaction; a block the
   compactor captured becomes the folio.  *Without compaction* (``Reclaim(compaction=False)``,
   as a kernel without CONFIG_COMPACTION) the slow path has reclaim only.  The page-cache
   folios of step 1 go through the same entry, without direct compaction in either variant.
   Both variants start from the same
   state: the run is repeated with the same seed (every count of steps 1-2 is equal, tested).
   A design without compaction primitives (none of the registered designs today) would run the
   variant without compaction only and report compaction as unsupported.

Figures (per run): order-9 folios obtained and the failed requests; compaction stalls /
successes / failures, pages migrated, descriptor allocations made to migrate
(``migrate_descriptor_allocations``: 0 on ``linux``, whose descriptors are struct pages;
one per migrated folio on designs with separate descriptors), migrations failed for a
descriptor, folios split by compaction and the descriptor allocations of those splits,
and the deferred-split shrinker's splits and their descriptor allocations in step 2; the
free blocks per order summed over the zones at the end of each step (per-CPU lists
drained first, as /proc/buddyinfo after ``drop_caches`` would show them); ``check``: the
machine, the folio layer, the LRU/reclaim state and the page tables.

The loops over folios are numba kernels (:func:`add_file_folios`, :func:`drop_file_folios`,
:func:`thp_requests`, and the kernels of the layers they call); the Python loop is over
files and regions.  Random choices come from numpy's PCG64 seeded with ``--seed``, CPUs
round-robin, so every count is a function of the arguments alone.

Not modelled here: readahead's own page cache (the decision model's XArray) and the folio
layer's are kept apart -- the decisions (index, order) are replayed into the folio layer,
which is where pages, descriptors, LRU and reclaim live; time (no kcompactd, no proactive
compaction, kswapd runs when the scenario says); memcg limits; file mmaps; swap.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from memdesc._numba import njit
from memdesc.errors import ConfigError
from memdesc.mm import compaction as C
from memdesc.mm import folio as F
from memdesc.mm import gfp as G
from memdesc.mm import huge_memory as H
from memdesc.mm import migrate as M
from memdesc.mm import vmscan as V
from memdesc.mm.filemap import PageCache
from memdesc.mm.machine import Machine
from memdesc.mm.memory import AddressSpaces
from memdesc.mm.mmzone import HPAGE_PMD_ORDER, NR_PAGE_ORDERS
from memdesc.mm.page_alloc import design_spec, dispatch, get_design
from memdesc.mm.readahead import EV_NAMES as RA_EV_NAMES
from memdesc.mm.readahead import Readahead
from memdesc.units import parse_size

SCENARIO = "thp-after-pagecache"
#: ``--design all``: every registered design, linux also with 32-byte struct page
ALL_DESIGNS = ("linux", "linux:32", "radix", "vmem", "llfree")
VARIANTS = ("no-compaction", "compaction")
PAGE = 4096
CHUNK_MIN = 16 << 10
#: the mTHP policy of the anon faults (per-size enabled settings)
MTHP_SIZES = {"16kB": "always", "32kB": "always", "64kB": "always"}
RA_ADD = RA_EV_NAMES[4]

# res slots of thp_requests
(T_TRIED, T_OK, T_FAILED, T_AFTER_COMPACTION, T_LAST_OK_FAILED) = range(5)


# ------------------------------------------------------------------ kernels


@njit
def add_file_folios(ms, ss, pa, rs, cs, mapping, index, order, ncpu, cpu0, out):
    """The page-cache folios ``(index[i], order[i])`` of file ``mapping`` as folios of the
    folio layer (:func:`memdesc.mm.vmscan.add_folio_nb`, GFP_HIGHUSER_MOVABLE, CPUs in turn
    from cpu0); out[i]: slot or negative error.  Returns the count done (fewer when the folio
    state needs room: grow and call again from there)."""
    n = index.shape[0]
    for i in range(n):
        if not F.headroom_ok(ms, ss):
            return i
        gfp = G.GFP_HIGHUSER_MOVABLE | (G.__GFP_COMP if order[i] else 0)
        s = V.add_folio_nb(ms, ss, pa, rs, cs, False, order[i], np.int64(0), gfp, (cpu0 + i) % ncpu, mapping,
                           index[i], False)
        if s == F.E_NOCAP:
            return i
        out[i] = s
    return n


@njit
def drop_file_folios(ms, ss, pa, rs, slots, mapping, index, cpu):
    """Truncate a file: every folio of ``slots`` still in the page cache of ``mapping`` at its
    index (reclaimed folios' slots may hold other folios now) deleted.  Returns (folios, pages)
    freed, or (-1, k) when the folio state needed room before slot k."""
    nf = np.int64(0)
    npg = np.int64(0)
    for i in range(slots.shape[0]):
        s = slots[i]
        if s < 0 or not F.folio_live(ms, s) or ms.mapping[s] != mapping or ms.index[s] != index[i]:
            continue
        if not F.headroom_ok(ms, ss):
            return np.int64(-1), np.int64(i)
        nr = np.int64(1) << ms.order[s]
        if V.delete_folio_nb(ms, ss, pa, rs, s, cpu) >= 0:
            nf += 1
            npg += nr
    return nf, npg


@njit
def thp_requests(ms, ss, pa, rs, cs, gfp, max_tries, max_failures, ncpu, out, res):
    """Order-9 anon folios through alloc_folio_recover (its slow path: direct compaction when
    ``cs`` allows it, direct reclaim) until ``max_failures`` consecutive requests failed or
    ``max_tries`` were made; a folio obtained after its slow path compacted counts in
    T_AFTER_COMPACTION.  out[i]: the slots obtained.  Returns the count in ``out``, or -1
    when the folio state needs room (call again: ``res`` keeps the position)."""
    n = res[T_OK]
    fails = res[T_FAILED] - res[T_LAST_OK_FAILED]
    while res[T_TRIED] < max_tries and fails < max_failures:
        if not F.headroom_ok(ms, ss):
            return np.int64(-1)
        cpu = res[T_TRIED] % ncpu
        stalls = cs.stats[C.CS_COMPACT_STALL]
        s = V.alloc_folio_recover(ms, ss, pa, rs, cs, gfp, HPAGE_PMD_ORDER, F.MD_ANON, cpu)
        if s == F.E_NOCAP:
            return np.int64(-1)
        if s >= 0 and cs.stats[C.CS_COMPACT_STALL] > stalls:
            res[T_AFTER_COMPACTION] += 1
        res[T_TRIED] += 1
        if s >= 0:
            out[n] = s
            n += 1
            res[T_OK] += 1
            res[T_LAST_OK_FAILED] = res[T_FAILED]
            fails = 0
        else:
            res[T_FAILED] += 1
            fails += 1
    return n


# ------------------------------------------------------------------ results


def without_timings(d: dict) -> dict:
    """A scenario run's dict without its ``seconds`` (the run's and every phase's): what a seed
    determines, for pinned figures and JIT / no-JIT equality (shared by every scenario)."""
    d.pop("seconds")
    for p in d["phases"]:
        p.pop("seconds")
    return d


@dataclass
class ThpPhase:
    """One step: what it did and the free blocks per order after it (zones summed)."""

    name: str
    file_folios: int = 0
    file_pages: int = 0
    anon_pages: int = 0
    freed_pages: int = 0
    free_pages_after: int = 0
    free_blocks_after: list[int] = field(default_factory=list)
    order9_blocks_after: int = 0
    seconds: float = 0.0


@dataclass
class ThpRun:
    """One run of thp-after-pagecache on one design, one variant (module theory statement)."""

    scenario: str
    design: str
    variant: str
    compaction: str                # "on", "off", or "unsupported" (design without compaction primitives)
    layout: str
    mem: str
    seed: int
    cpus: int
    managed_pages: int
    low_wmark_pages: int
    high_wmark_pages: int
    files: int
    anon_regions: int
    file_folios_by_order: dict
    anon_folios_by_order: dict
    kswapd_reclaimed: int
    files_dropped: int
    regions_unmapped: int
    dontneed_zaps: int
    deferred_splits: int
    deferred_split_descriptor_allocations: int
    thp_requested: int
    thp_obtained: int
    thp_failed: int
    thp_obtained_after_compaction: int
    direct_reclaim_pages: int
    compact_stall: int
    compact_success: int
    compact_fail: int
    compact_captured: int
    pages_migrated: int
    migrate_descriptor_allocations: int
    migrate_failed_for_descriptor: int
    migrate_failed_busy: int
    folios_split: int
    split_descriptor_allocations: int
    descriptor_bytes: int
    free_blocks: list
    order9_blocks: int
    check: str
    #: the anon model's page tables after step 3 ("ok", or their first inconsistency with the
    #: folio layer; compaction's migrations rewrite them through the rmap walk)
    page_tables_after_thp: str
    seconds: float
    phases: list[ThpPhase] = field(default_factory=list)
    thp_events: dict = field(default_factory=dict)
    compaction_stats: dict = field(default_factory=dict)
    folio_op_stats: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.design} {self.variant}"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["label"] = self.label
        return d

    def counts(self) -> dict:
        """:meth:`as_dict` without the timings: what a seed determines."""
        return without_timings(self.as_dict())


# ------------------------------------------------------------------ the scenario


def _free_blocks(m: Machine) -> list[int]:
    """Free blocks per order summed over the zones, the per-CPU lists drained first."""
    m.design.drain()
    nf = np.asarray(m.design.zs.nr_free)
    return [int(x) for x in nf.sum(axis=0)[:NR_PAGE_ORDERS]]


def _order9(blocks: list[int]) -> int:
    return sum(c << (o - HPAGE_PMD_ORDER) for o, c in enumerate(blocks) if o >= HPAGE_PMD_ORDER)


def _free_pages(m: Machine) -> int:
    return int(np.asarray(m.design.zs.z_free).sum())


def _wmark(m: Machine, w: int) -> int:
    zs = m.design.zs
    return int(sum(int(zs.wmark[z, w]) for z in range(zs.z_start.shape[0]) if int(zs.z_managed[z]) > 0))


def _check_args(mem, seed, file_share, drop_fraction, max_chunk, max_failures) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")
    for name, v in (("--file-share", file_share), ("--drop-fraction", drop_fraction)):
        if not 0.0 <= float(v) <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {v}")
    chunk = parse_size(max_chunk) if isinstance(max_chunk, str) else int(max_chunk)
    if chunk < CHUNK_MIN or chunk % CHUNK_MIN:
        raise ConfigError(f"--max-chunk must be a multiple of 16K and at least 16K, got {max_chunk!r}")
    if isinstance(max_failures, bool) or not isinstance(max_failures, int | np.integer) or max_failures < 1:
        raise ConfigError(f"--max-failures must be a positive integer, got {max_failures!r}")
    if parse_size(mem) < (64 << 20):
        raise ConfigError(f"--mem must be at least 64M for this scenario, got {mem!r}")
    return chunk


def thp_after_pagecache(design: str = "linux", mem: str | int = "512M", seed: int = 1, compaction: bool = True,
                        cpus: int | None = None, file_share: float = 0.5, drop_fraction: float = 0.5,
                        max_chunk: str | int = "8M", max_failures: int = 1) -> ThpRun:
    """Run the scenario (theory statement above) once on ``design`` (a name or spec such as
    ``linux:32``); ``compaction``: direct compaction after a failed THP request (ignored, and
    reported "unsupported", on a design without compaction primitives)."""
    chunk_max = _check_args(mem, seed, file_share, drop_fraction, max_chunk, max_failures)
    cls = get_design(design_spec(design))
    t0 = time.perf_counter()
    m = Machine.create(mem, design=cls, layout="x86_64", cpus=cpus)
    folios = F.Folios.of(m)
    compactable = dispatch.has(type(folios.pa), *dispatch.COMPACTION_PRIMITIVES)
    do_compact = bool(compaction and compactable)
    rs = V.Reclaim(m, max_memcgs=2, log_capacity=1, log_mask=0, compaction=do_compact)
    total = int(np.asarray(m.design.zs.z_managed).sum())
    vpages = max(1 << 19, 1 << int(2 * total - 1).bit_length())
    aspace = AddressSpaces(m, H.ThpSettings(enabled="madvise", defrag="always", sizes=dict(MTHP_SIZES)),
                           vpages=vpages, nmm=1, nvma=4096)
    mm = aspace.mm_alloc()
    comp = rs.compaction
    # steps 1-2 run without direct compaction in both variants (the same state before step 3)
    rs.compact_state.cfg[C.CFG_DIRECT] = 0
    rng = np.random.default_rng(int(seed))
    ncpu = np.int64(m.nr_cpus)
    low, high = _wmark(m, 1), _wmark(m, 2)
    phases: list[ThpPhase] = []

    # ---- step 1: fill
    t = time.perf_counter()
    cache = PageCache(folios=1024, mappings=16)
    ra = Readahead(cache, files=16)
    files: list[tuple[int, np.ndarray, np.ndarray]] = []   # (mapping id, indices, slots)
    regions: list[tuple[int, int]] = []                   # (addr, length) in bytes
    file_pages = anon_pages = 0
    file_orders = np.zeros(NR_PAGE_ORDERS, np.int64)
    cpu0 = 0
    exhausted = False
    while not exhausted:
        room = (_free_pages(m) - low) * PAGE
        if room < CHUNK_MIN:
            break
        size = int(rng.integers(1, chunk_max // CHUNK_MIN + 1)) * CHUNK_MIN
        size = min(size, room - room % CHUNK_MIN)
        is_file = bool(rng.random() < file_share)
        if is_file:
            mapping = cache.new_mapping(i_size=size)
            f = ra.open(mapping)
            adds = [(e[1], e[2]) for e in ra.read(f, 0, size) if e[0] == RA_ADD]
            ra.complete_reads()
            idx = np.array([a[0] for a in adds], np.int64)
            order = np.array([a[1] for a in adds], np.int64)
            mid = len(files) + 1
            slots = np.full(idx.shape[0], -1, np.int64)
            done = 0
            while done < idx.shape[0]:
                folios._ensure()
                done += int(add_file_folios(folios.state, folios.slab.state, folios.pa, rs.state, rs.compact_state,
                                            np.int64(mid),
                                            idx[done:], order[done:], ncpu, np.int64(cpu0 + done), slots[done:]))
                if done < idx.shape[0]:
                    aspace._grow()
            cpu0 += idx.shape[0]
            ok = slots >= 0
            exhausted = not bool(ok.all())
            np.add.at(file_orders, order[ok], 1)
            file_pages += int((np.int64(1) << order[ok]).sum())
            files.append((mid, idx, slots))
        else:
            addr = aspace.mmap(mm, size)
            r = aspace.touch(mm, addr, size)
            anon_pages += r["ok"]
            regions.append((addr, size))
            exhausted = r["oom"] > 0
    V.lru_add_drain_all(folios.state, rs.state)
    anon_orders = {k: v for k, v in aspace.anon_allocations().items() if k != "cow_copies"}
    blocks = _free_blocks(m)
    phases.append(ThpPhase("fill", file_folios=int(file_orders.sum()), file_pages=file_pages,
                           anon_pages=anon_pages, free_pages_after=_free_pages(m), free_blocks_after=blocks,
                           order9_blocks_after=_order9(blocks), seconds=time.perf_counter() - t))

    # ---- step 2: reclaim
    t = time.perf_counter()
    free0 = _free_pages(m)
    pa = folios.pa
    hz = int(np.asarray(m.design.zs.z_idx).max())
    V.wakeup_kswapd(pa, rs.state, np.int64(0), np.int64(hz), np.int64(G.GFP_KERNEL))
    kswapd = rs.kswapd() or 0
    nf_drop = int(round(drop_fraction * len(files)))
    dropped = 0
    for i in sorted(rng.permutation(len(files))[:nf_drop].tolist()):
        mid, idx, slots = files[i]
        k = 0
        while True:
            folios._ensure()
            a, b = drop_file_folios(folios.state, folios.slab.state, pa, rs.state, slots[k:], np.int64(mid), idx[k:],
                                    np.int64(0))
            if int(a) >= 0:
                break
            k += int(b)
            aspace._grow()
        dropped += 1
    nr_unmap = int(round(drop_fraction * len(regions)))
    unmap = set(rng.permutation(len(regions))[:nr_unmap].tolist())
    zaps = 0
    for i, (addr, size) in enumerate(regions):
        if i in unmap:
            aspace.munmap(mm, addr, size)
            continue
        chunks = size // (64 << 10)
        for c in np.flatnonzero(rng.random(chunks) < 0.25).tolist():
            page = int(rng.integers(0, 16))
            aspace.madvise_dontneed(mm, addr + c * (64 << 10) + page * PAGE, PAGE)
            zaps += 1
    sd0 = int(folios.state.ostat[F.OP_SPLIT, F.OS_DESC_ALLOCS])
    sp0 = int(folios.state.ostat[F.OP_SPLIT, F.OS_OK])
    aspace.shrink_deferred_split()
    deferred_splits = int(folios.state.ostat[F.OP_SPLIT, F.OS_OK]) - sp0
    deferred_split_desc = int(folios.state.ostat[F.OP_SPLIT, F.OS_DESC_ALLOCS]) - sd0
    blocks = _free_blocks(m)
    phases.append(ThpPhase("reclaim", freed_pages=_free_pages(m) - free0, free_pages_after=_free_pages(m),
                           free_blocks_after=blocks, order9_blocks_after=_order9(blocks),
                           seconds=time.perf_counter() - t))

    # ---- step 3: THP requests
    tables_before = aspace.check()      # the anon model's page tables, consistent up to here
    t = time.perf_counter()
    gfp = int(H.vma_thp_gfp_mask(np.int64(H.DEFRAG_ALWAYS), np.int64(H.VM_HUGEPAGE), np.int64(HPAGE_PMD_ORDER)))
    rs.compact_state.cfg[C.CFG_DIRECT] = 1 if do_compact else 0
    max_tries = max(1, total >> HPAGE_PMD_ORDER)
    out = np.full(max_tries, -1, np.int64)
    res = np.zeros(5, np.int64)
    vm0 = rs.vmstat()
    while True:
        folios._ensure()
        if comp is not None:
            comp._ensure_generous()
        n = int(thp_requests(folios.state, folios.slab.state, folios.pa, rs.state, rs.compact_state,
                             np.int64(gfp), np.int64(max_tries), np.int64(max_failures), ncpu, out, res))
        if n >= 0:
            break
        aspace._grow()
    vm1 = rs.vmstat()
    blocks = _free_blocks(m)
    phases.append(ThpPhase("thp", free_pages_after=_free_pages(m), free_blocks_after=blocks,
                           order9_blocks_after=_order9(blocks), seconds=time.perf_counter() - t))
    cstats = comp.stats() if comp is not None else {n_: 0 for n_ in C.CS_NAMES}
    mstats = comp.migrate_stats() if comp is not None else {n_: 0 for n_ in M.MS_NAMES}

    check = m.check()
    for part in (folios.check, rs.check, lambda: tables_before):
        if check == "ok":
            check = part()
    # migration moves a folio's mappings in the folio layer and the rmap walk
    # (remove_migration_ptes, memdesc.mm.rmap) points the anon PTEs/PMDs at the new pfns: the
    # page tables must still agree with the folio layer after compaction moved anon folios
    tables_after = aspace.check()
    desc_bytes = sum(int(v) for k, v in m.summary().get("metadata_bytes", {}).items() if "desc" in k)
    return ThpRun(
        scenario=SCENARIO, design=design, variant=VARIANTS[int(do_compact)] if compactable else "no-compaction",
        compaction=("on" if do_compact else "off") if compactable else "unsupported",
        layout="x86_64", mem=str(mem), seed=int(seed), cpus=int(m.nr_cpus), managed_pages=total,
        low_wmark_pages=low, high_wmark_pages=high, files=len(files), anon_regions=len(regions),
        file_folios_by_order={str(o): int(c) for o, c in enumerate(file_orders) if c},
        anon_folios_by_order=anon_orders, kswapd_reclaimed=int(kswapd), files_dropped=dropped,
        regions_unmapped=len(unmap), dontneed_zaps=zaps, deferred_splits=int(deferred_splits),
        deferred_split_descriptor_allocations=deferred_split_desc,
        thp_requested=int(res[T_TRIED]), thp_obtained=int(res[T_OK]), thp_failed=int(res[T_FAILED]),
        thp_obtained_after_compaction=int(res[T_AFTER_COMPACTION]),
        direct_reclaim_pages=sum(vm1[k] - vm0[k] for k in vm1 if k == "pgsteal_direct"),
        compact_stall=cstats["compact_stall"], compact_success=cstats["compact_success"],
        compact_fail=cstats["compact_fail"], compact_captured=cstats["compact_captured"],
        pages_migrated=cstats["pages_migrated"], migrate_descriptor_allocations=cstats["descriptor_allocations"],
        migrate_failed_for_descriptor=cstats["descriptor_failures"], migrate_failed_busy=cstats["failed_busy"],
        folios_split=cstats["folios_split"], split_descriptor_allocations=cstats["split_descriptor_allocations"],
        descriptor_bytes=desc_bytes, free_blocks=blocks, order9_blocks=_order9(blocks), check=check,
        page_tables_after_thp=tables_after,
        seconds=time.perf_counter() - t0, phases=phases, thp_events=aspace.events(), compaction_stats=cstats,
        folio_op_stats=folios.op_stats() | {"migrate_pages": mstats})


def runs_for(design: str, variant: str) -> list[tuple[str, bool]]:
    """(design, compaction) pairs: ``design`` one spec or "all"; ``variant`` no-compaction,
    compaction or both."""
    if variant not in (*VARIANTS, "both"):
        raise ConfigError(f"--variant must be one of no-compaction, compaction, both; got {variant!r}")
    designs = list(ALL_DESIGNS) if design == "all" else [design]
    for d in designs:
        get_design(design_spec(d))  # a clear error for an unknown design
    comps = [False, True] if variant == "both" else [variant == "compaction"]
    return [(d, c) for d in designs for c in comps]
