"""The design interface every page-allocator design implements, and its buddy-based base.

Theory
------
A *design* is a way of keeping physical memory's free state and per-page metadata.  All
designs answer the same questions, so a workload (random churn, a replayed real trace)
can be run on each and compared:

==========================  ==============================================================
``alloc(gfp, order, cpu)``  allocate 2^order pages; pfn, or -1 when the allocation fails
``free(pfn, order, cpu)``   free an allocation; 0 or a negative error code, state unchanged
``take(pfn, order)``        remove one specific free block (take_page_off_buddy), for exact
                            replay of a real kernel's placement
``drain()``                 return per-CPU cached pages to the allocator
``nr_free``                 per zone, per order: number of free blocks (/proc/buddyinfo)
``free_blocks()``           every free block: pfn, order, migratetype, zone
``metadata_bytes()``        bytes of every structure the design needs, counted honestly
``check()``                 full invariant check: "ok" or the first violation
``page_words(pfn)``         the W words of a page's struct page / memdesc
==========================  ==============================================================

Inside numba kernels the same operations are the primitives ``pa_alloc``, ``pa_free``,
``pa_take`` and ``pa_drain`` of :mod:`memdesc.mm.page_alloc.dispatch`, so workload
kernels are written once and specialised per design.

:class:`BuddyDesign` implements the interface for designs that reuse the shared buddy
algorithms of :mod:`memdesc.mm.page_alloc.core` (``linux``, ``radix``); a subclass only
provides its state, its primitives, and its own metadata accounting.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from memdesc.mm.mm_init import MachineLayout
from memdesc.mm.mmzone import MIGRATE_TYPES, NR_PAGE_ORDERS, NR_PAGEBLOCK_BITS, PAGEBLOCK_ORDER
from memdesc.mm.page_alloc import core, dispatch
from memdesc.mm.page_alloc.setup import AllocConfig, build_zone_state


class Design(ABC):
    """Interface of a page-allocator design (see the module docstring)."""

    name: str = ""
    words: int = 0

    def __init__(self, layout: MachineLayout, config: AllocConfig | None = None):
        self.layout = layout
        self.config = config or AllocConfig()

    @property
    def struct_page_bytes(self) -> int:
        return self.words * 8

    @property
    @abstractmethod
    def zs(self):
        """An object with the shared zone fields of core.ZONE_FIELDS (usually the state itself)."""

    @abstractmethod
    def alloc(self, gfp: int, order: int, cpu: int = 0) -> int: ...

    @abstractmethod
    def free(self, pfn: int, order: int, cpu: int = 0) -> int: ...

    @abstractmethod
    def take(self, pfn: int, order: int) -> int: ...

    @abstractmethod
    def drain(self) -> None: ...

    @abstractmethod
    def free_blocks(self) -> np.ndarray: ...

    @abstractmethod
    def free_counts_by_migratetype(self) -> np.ndarray: ...

    @abstractmethod
    def metadata_bytes(self) -> dict[str, int]: ...

    @abstractmethod
    def check(self) -> str: ...

    @abstractmethod
    def page_words(self, pfn: int) -> np.ndarray: ...

    @property
    def nr_free(self) -> np.ndarray:
        return self.zs.nr_free

    def design_stats(self) -> dict:
        """Design-specific figures for reports (radix: tree nodes; vmem: descriptors).

        Every design reports ``free_path_allocations`` (metadata allocations made while
        freeing) and ``free_stalls`` (frees that could not complete) in ``stats``; a design
        with separately allocated metadata adds its own counters here.
        """
        return {}

    def bookkeeping_bytes(self) -> dict[str, int]:
        """Simulation bookkeeping (not design metadata): owner bytes, stats, event log."""
        zs = self.zs
        return {
            "page_owner": int(zs.owner.nbytes),
            "stats": int(zs.stats.nbytes + zs.zstats.nbytes),
            "event_log": int(zs.evlog.nbytes),
        }

    #: pfns per memory section (SECTION_SIZE_BITS 27 on x86-64: 128 MiB)
    SECTION_PAGES = 1 << 15

    def set_online_sections(self, online: np.ndarray, section_pages: int | None = None) -> None:
        """Which memory sections are online (pfn_to_online_page()); pagetypeinfo counts only those."""
        self._online = (np.asarray(online, np.bool_), section_pages or self.SECTION_PAGES)

    def online_sections(self) -> tuple[np.ndarray, int]:
        """Default: a section is online if any of its pfns is present RAM in a zone."""
        if getattr(self, "_online", None) is None:
            sp = self.SECTION_PAGES
            nsec = -(-self.layout.max_pfn // sp)
            present = np.zeros(nsec * sp, np.bool_)
            for z in self.layout.zones:
                if z.spanned:
                    present[z.start_pfn:z.end_pfn] = True
                    for hs, he in z.holes:
                        present[hs:he] = False
            self._online = (present.reshape(nsec, sp).any(axis=1), sp)
        return self._online

    def pageblock_bytes(self) -> int:
        """NR_PAGEBLOCK_BITS per pageblock (of the layout's pageblock_order)."""
        npb = self.zs.pb.shape[0] >> (self.layout.pageblock_order - PAGEBLOCK_ORDER)
        return (npb * NR_PAGEBLOCK_BITS + 7) // 8


class BuddyDesign(Design):
    """A design that runs the shared buddy algorithms of core.py over its own primitives."""

    state_cls: type = None  # the design's state NamedTuple

    def __init__(self, layout: MachineLayout, config: AllocConfig | None = None, boot: bool = True,
                 npages: int | None = None):
        super().__init__(layout, config)
        self.npages = max(layout.max_pfn, npages or 0)
        managed = [z.managed for z in layout.zones]
        zone_fields, self.min_free_kbytes = build_zone_state(layout, managed, self.npages, self.config)
        nz = len(layout.zones)
        nlists = nz * NR_PAGE_ORDERS * MIGRATE_TYPES + layout.nr_cpus * nz * core.NR_PCP_LISTS
        self.state = self._make_state(zone_fields, self.npages, nlists)
        self._init_page_flags()
        if boot:
            starts, ends, res = self._managed_ranges()
            core.init_free_state(self.state, starts, ends, res)

    def init_from_snapshot(self, reserved: np.ndarray, alloc_pfn: np.ndarray, alloc_order: np.ndarray,
                           alloc_mt: np.ndarray, alloc_gfp: np.ndarray, free_pfn: np.ndarray,
                           free_order: np.ndarray, pageblock_mt: np.ndarray,
                           pcp_pfn: np.ndarray | None = None, pcp_cpu: np.ndarray | None = None) -> None:
        """Load a real machine's state into a design built with ``boot=False``."""
        zs = self.zs
        zs.pb[:] = (zs.pb & 0xF8) | pageblock_mt.astype(np.uint8)
        empty = np.zeros(0, np.int64)
        core.init_from_snapshot(self.state, reserved.astype(np.int64), alloc_pfn.astype(np.int64),
                                alloc_order.astype(np.int64), alloc_mt.astype(np.int64),
                                alloc_gfp.astype(np.int64), free_pfn.astype(np.int64), free_order.astype(np.int64),
                                empty if pcp_pfn is None else pcp_pfn.astype(np.int64),
                                empty if pcp_cpu is None else pcp_cpu.astype(np.int64))

    # -- subclass hooks
    @abstractmethod
    def _make_state(self, zone_fields: dict, npages: int, nlists: int):
        """The design's state struct: ``zone_fields`` (core.ZONE_FIELDS) plus its own fields."""

    def _init_page_flags(self) -> None:
        """Set design-specific per-page constant bits (zone/node) before boot."""

    @abstractmethod
    def freelist_bytes(self) -> int: ...

    def descriptor_bytes(self) -> int:
        return 0

    def design_check(self) -> str | None:
        return None

    # -- boot
    def _managed_ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Managed pfn ranges (to free at boot) and every reserved/hole pfn inside zones."""
        reserved = np.zeros(self.npages, np.bool_)
        for r in self.layout.reservations:
            reserved[r.start_pfn:r.end_pfn] = True
        inzone = np.zeros(self.npages, np.bool_)
        for z in self.layout.zones:
            if z.spanned:
                inzone[z.start_pfn:z.end_pfn] = True
                for hs, he in z.holes:
                    reserved[hs:he] = True
        reserved &= inzone
        free = inzone & ~reserved
        # ranges of free pages, split at zone boundaries
        edges = np.flatnonzero(np.diff(np.concatenate(([False], free, [False])).astype(np.int8)))
        starts, ends = edges[0::2], edges[1::2]
        cuts = sorted({z.start_pfn for z in self.layout.zones if z.spanned})
        s_out, e_out = [], []
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            for c in cuts:
                if s < c < e:
                    s_out.append(s)
                    e_out.append(c)
                    s = c
            s_out.append(s)
            e_out.append(e)
        return (np.array(s_out, np.int64), np.array(e_out, np.int64),
                np.flatnonzero(reserved).astype(np.int64))

    # -- interface
    @property
    def zs(self):
        """The shared zone fields (core.ZONE_FIELDS); they live in the design's state struct."""
        return self.state

    def alloc(self, gfp: int, order: int, cpu: int = 0) -> int:
        return int(dispatch.pa_alloc(self.state, np.int64(gfp), np.int64(order), np.int64(cpu)))

    def free(self, pfn: int, order: int, cpu: int = 0) -> int:
        return int(dispatch.pa_free(self.state, np.int64(pfn), np.int64(order), np.int64(cpu)))

    def take(self, pfn: int, order: int) -> int:
        return int(dispatch.pa_take(self.state, np.int64(pfn), np.int64(order)))

    def drain(self) -> None:
        dispatch.pa_drain(self.state)

    def free_blocks(self) -> np.ndarray:
        total = int(self.zs.nr_free.sum())
        out = np.zeros((total, 4), np.int64)
        n = core.collect_free_blocks(self.state, out)
        return out[:n]

    def free_counts_by_migratetype(self) -> np.ndarray:
        out = np.zeros((len(self.layout.zones), MIGRATE_TYPES, NR_PAGE_ORDERS), np.int64)
        core.free_counts_by_mt(self.state, out)
        return out

    def page_words(self, pfn: int) -> np.ndarray:
        return np.array(self.state.memmap[pfn], dtype=np.uint64)

    def memmap_bytes(self) -> int:
        return int(self.state.memmap.nbytes)

    def metadata_bytes(self) -> dict[str, int]:
        memmap = self.memmap_bytes()
        freelists = self.freelist_bytes()
        descriptors = self.descriptor_bytes()
        pageblock = self.pageblock_bytes()
        return {
            "memmap": memmap,
            "freelists": freelists,
            "descriptors": descriptors,
            "pageblock_flags": pageblock,
            "total": memmap + freelists + descriptors + pageblock,
        }

    def check(self) -> str:
        msg = self.design_check()
        if msg:
            return msg
        code, p, a, b = core.check_buddy_state(self.state)
        if code != core.CHK_OK:
            return core.CHECK_MESSAGES[int(code)].format(p=int(p), a=int(a), b=int(b))
        return "ok"

    def pageblock_counts(self) -> np.ndarray:
        """Number of pageblocks of each migratetype per zone (pagetypeinfo's second table)."""
        zs = self.zs
        online, sp = self.online_sections()
        out = np.zeros((len(self.layout.zones), MIGRATE_TYPES), np.int64)
        for i, z in enumerate(self.layout.zones):
            if not z.spanned:
                continue
            # pagetypeinfo_showblockcount_print(): every pageblock_nr_pages from zone_start_pfn,
            # skipping pfns whose section is not online (pfn_to_online_page() == NULL)
            pfns = np.arange(z.start_pfn, z.end_pfn, 1 << self.layout.pageblock_order)
            sec = pfns // sp
            pfns = pfns[(sec < online.shape[0]) & online[np.minimum(sec, online.shape[0] - 1)]]
            mts = zs.pb[pfns >> PAGEBLOCK_ORDER] & core.PB_MIGRATETYPE_MASK
            out[i] = np.bincount(mts, minlength=MIGRATE_TYPES)[:MIGRATE_TYPES]
        return out
