"""The design contract: what a page-allocator design is, declares and provides, in one place.

Theory
------
A *design* is a way of keeping physical memory's free state and per-page metadata.  All
designs answer the same questions, so a workload (random churn, a replayed real trace)
can be run on each and compared.  A design is three things, all checked when it is
registered (:func:`register_design`), and registering it is all it takes to appear in
``DESIGNS``, the CLI's ``--design`` and the conformance suite (tests/test_conformance.py):

1. **A state struct** (``state_cls``, :mod:`memdesc._struct`): the fields of
   ``core.ZONE_FIELDS`` (zones, watermarks, pageblock bits, per-CPU list counters,
   statistics, the ``owner`` byte per pfn) followed by the design's own numpy arrays.
   Every byte of allocator state is in these arrays, which is what makes
   :meth:`memdesc.mm.machine.Machine.save` work for any design.

2. **Primitives** (numba, :mod:`.dispatch`), by layer:

   ===================  ==========================================================  ========
   layer                primitives                                                   default
   ===================  ==========================================================  ========
   interface            ``pa_alloc``, ``pa_free``, ``pa_take``, ``pa_drain``         none
   zone                 ``pool_prepare``, ``pool_rmqueue``, ``pool_rmqueue_smallest``, buddy
                        ``pool_free``, ``pool_first_free``,
                        ``pool_move_freepages_block``, ``pool_retype_block``,
                        ``pcp_add``, ``pcp_pop``, ``mark_allocated``, ``mark_freed``,
                        ``pa_free_extent``
   optional             ``pcp_free_bulk``, ``pa_own_page``, ``pa_zone_free_area``     all
   buddy                ``list_add/del/first/last/next``, ``set_buddy``,              --
                        ``clear_buddy``, ``is_buddy``, ``buddy_order``,
                        ``mark_reserved``
   exact placement      ``pa_free_range``, ``pa_set_pageblock_type``,                 buddy
                        ``pa_mark_allocated``, ``pa_mark_unallocated``, ``pa_split``,
                        ``pa_pcp_link``, ``pa_pcp_unlink``, ``pa_online_range``
   compaction           ``pa_free_block``, ``pa_isolate_free`` (a design without     --
                        them runs without compaction)
   ===================  ==========================================================  ========

   *buddy* defaults: a design that registers the whole buddy layer gets core's zone layer
   and exact placement (``core.BUDDY_DEFAULTS``) -- ``linux`` and ``radix`` differ only in
   list and page-state primitives.  A design that is not a list buddy registers the zone
   layer and reuses all of core above it: the zonelist walk and watermarks
   (``get_page_from_freelist``), the per-CPU lists and their high/batch policy
   (``rmqueue_pcplist``, ``free_unref_page_commit``, ``free_pcppages_bulk``), highatomic
   reserves, the slow path; its interface primitives are then core's entry points
   (``core.__alloc_pages``, ``core.check_free`` + ``core.__free_pages``,
   ``core.drain_all_pages``), wrapped if it keeps state of its own around them.

3. **A Design subclass** with the declared attributes below and the methods of
   :class:`Design` marked abstract.

Declared attributes (class level):

=======================  ==================================================================
``name``                 the design's name in ``DESIGNS`` and specs ``NAME[:OPTIONS]``
``words``                per-page words (W): 8-byte words of struct page / memdesc per pfn
``page_layout``          key of ``memmap.LAYOUTS`` decoding ``page_words()`` (two designs
                         with the same W are told apart by it, never by W)
``memmap_field``         the state field of the per-page words (uint64[npages, W], or
                         [npages] when W = 1): ``page_words()``, metadata bytes, and the
                         prefetch target of workloads (``_prefetch.prefetch_page``)
``state_cls``            the state struct class (ZONE_FIELDS first)
``exact_replay``         exact trace replay runs on it (every exact primitive resolves)
``splits_on_free``       policy replay may split an allocation in place when a part of it
                         is freed (``pa_split`` on the free path); False: the replay keeps
                         it whole until its last piece is freed (vmem: a free path may not
                         create descriptors)
``fault_injection``      honours ``AllocConfig.fail_descriptor_alloc`` and ``seed_faults``;
                         other designs refuse a non-zero rate (ConfigError naming them)
``metadata_counters``    which of ``free_path_allocations``, ``free_stalls``,
                         ``alloc_failed_for_metadata`` the design can make non-zero (the
                         others must stay 0: the conformance suite checks it)
``spec_key``, ``options``  option names and values of ``NAME:OPTIONS`` (``with_options``)
``saved_attrs``          Python attributes (JSON values) ``Machine.save`` keeps beside the
                         state arrays
=======================  ==================================================================

The owner contract.  ``owner[pfn]`` (one byte, simulation bookkeeping, never read by a
design decision) plays page_owner: ``OWNER_NONE`` inside a free block or an allocation,
``OWNER_RESERVED`` for reserved pages and holes, ``OWNER_PCP`` on the head of a block on a
per-CPU list, else an allocation head ``1 | order << 1 | migratetype << 5``.  The shared
code keeps it on every allocation, free and pcp move; a design sets it for reserved pages
at boot and marks the pages it takes for its own metadata as allocation heads for which
``pa_own_page`` is True (frees of them are refused, replay leaves them alone).

The statistics contract.  ``stats[ST_*]`` (``core.STAT_NAMES``) are counted by the shared
code; a design counts ``ST_FREE_PATH_ALLOCS`` (metadata allocated while freeing),
``ST_FREE_STALLS`` (frees that could not complete) and, through ``E_META`` from
``pool_prepare`` or itself, ``ST_ALLOC_FAILED_FOR_META``, within ``metadata_counters``.
``design_stats()`` adds design-specific figures to every JSON summary.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from memdesc.errors import ConfigError
from memdesc.mm import memmap
from memdesc.mm.mm_init import MachineLayout
from memdesc.mm.mmzone import MIGRATE_TYPES, NR_PAGE_ORDERS, NR_PAGEBLOCK_BITS, PAGEBLOCK_ORDER
from memdesc.mm.page_alloc import core, dispatch
from memdesc.mm.page_alloc.setup import AllocConfig, build_zone_state

#: name -> design class, in registration order (see register_design)
DESIGNS: dict[str, type[Design]] = {}

#: the counters of the statistics contract a design may make non-zero
METADATA_COUNTERS = ("free_path_allocations", "free_stalls", "alloc_failed_for_metadata")


class Design(ABC):
    """A page-allocator design (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    words: ClassVar[int] = 0
    page_layout: ClassVar[str] = ""
    memmap_field: ClassVar[str] = ""
    state_cls: ClassVar[type] = None
    exact_replay: ClassVar[bool] = True
    splits_on_free: ClassVar[bool] = True
    fault_injection: ClassVar[bool] = False
    metadata_counters: ClassVar[tuple[str, ...]] = ()
    spec_key: ClassVar[str | None] = None
    options: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: the options this class was configured with (with_options): part of its spec
    spec_options: ClassVar[dict[str, str]] = {}
    saved_attrs: ClassVar[tuple[str, ...]] = ()

    #: pfns per memory section (SECTION_SIZE_BITS 27 on x86-64: 128 MiB)
    SECTION_PAGES = 1 << 15

    def __init__(self, layout: MachineLayout, config: AllocConfig | None = None, boot: bool = True,
                 npages: int | None = None):
        """Build the design's state for ``layout``; with ``boot`` free all managed memory
        (memblock_free_all), else leave it for :meth:`init_from_snapshot` or a load."""
        self.layout = layout
        self.config = config or AllocConfig()
        rate = float(self.config.fail_descriptor_alloc or 0.0)
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"fail_descriptor_alloc must be a rate in [0, 1], got {rate}")
        # a rate fails the design's own descriptors (fault_injection designs) and the descriptor
        # caches of typed memory (mm/folio.py's failslab), which only designs whose struct page is
        # smaller than today's 64 bytes allocate (radix, linux:32): on linux it could fail nothing
        if rate and not self.fault_injection and self.struct_page_bytes >= 64:
            which = ", ".join(n for n, c in DESIGNS.items() if c.fault_injection) or "none"
            raise ConfigError(f"--fail-descriptor-alloc: the {self.name} design allocates no descriptors, so there "
                              f"is nothing to fail (fault injection applies to: {which}, and to the typed-memory "
                              f"descriptor caches of designs that separate descriptors)")
        self.npages = max(layout.max_pfn, npages or 0)
        managed = [z.managed for z in layout.zones]
        zone_fields, self.min_free_kbytes = build_zone_state(layout, managed, self.npages, self.config)
        self._online: tuple[np.ndarray, int] | None = None
        self.state = self._make_state(zone_fields, self.npages, self.nr_lists())
        self._init_page_flags()
        if boot:
            self.boot()

    # ------------------------------------------------------------------ what a design implements
    @abstractmethod
    def _make_state(self, zone_fields: dict, npages: int, nlists: int):
        """The state struct: ``zone_fields`` (core.ZONE_FIELDS) plus the design's own fields."""

    def _init_page_flags(self) -> None:  # noqa: B027  (optional hook)
        """Set design-specific per-page constant bits (zone/node) before boot."""

    @abstractmethod
    def boot(self) -> None:
        """memblock_free_all(): mark reserved pages and holes, free every managed range."""

    @abstractmethod
    def init_from_snapshot(self, reserved: np.ndarray, alloc_pfn: np.ndarray, alloc_order: np.ndarray,
                           alloc_mt: np.ndarray, alloc_gfp: np.ndarray, free_pfn: np.ndarray,
                           free_order: np.ndarray, pageblock_mt: np.ndarray,
                           pcp_pfn: np.ndarray | None = None, pcp_cpu: np.ndarray | None = None) -> None:
        """Load a real machine's state (see memdesc.sim.snapshot) into a design built with
        ``boot=False``: reserved pfns, allocation heads with order/migratetype/gfp, free
        blocks, pageblock migratetypes, optional pcp pages (order 0) and their CPUs."""

    @abstractmethod
    def freelist_bytes(self) -> int:
        """Bytes of the free-list structures (list heads, counters, bitmaps...)."""

    def descriptor_bytes(self) -> int:
        """Bytes of separately allocated metadata (tree nodes, descriptors); 0 if none."""
        return 0

    @abstractmethod
    def free_blocks(self) -> np.ndarray:
        """Every free block as int64 rows (pfn, order, migratetype, zone): a free run that is
        not a buddy block is shown as the aligned blocks the kernel would count."""

    @abstractmethod
    def check(self) -> str:
        """Full invariant check: ``"ok"`` or the first violation, in words."""

    def own_pages(self) -> int:
        """Pages the design allocated for its own metadata (pa_own_page heads)."""
        return 0

    def design_stats(self) -> dict:
        """Design-specific figures for reports (radix: tree nodes; vmem: descriptors)."""
        return {}

    def seed_faults(self, seed: int) -> None:  # noqa: B027  (optional hook)
        """Reseed the design's fault injection (``fault_injection`` designs; a no-op otherwise)."""

    # ------------------------------------------------------------------ the interface (numba primitives)
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

    def free_extent(self, pfn: int) -> tuple[int, int]:
        """(start, end) of the free block holding pfn, or (-1, -1)."""
        s, e = dispatch.pa_free_extent(self.state, np.int64(pfn))
        return int(s), int(e)

    def is_own_page(self, pfn: int) -> bool:
        return bool(dispatch.pa_own_page(self.state, np.int64(pfn)))

    # ------------------------------------------------------------------ views with defaults
    @property
    def nr_free(self) -> np.ndarray:
        """Free blocks per zone and order, as /proc/buddyinfo counts them."""
        return self.zs.nr_free

    def free_counts_by_migratetype(self) -> np.ndarray:
        """pagetypeinfo's free counts [zone, migratetype, order]."""
        b = self.free_blocks()
        out = np.zeros((len(self.layout.zones), MIGRATE_TYPES, NR_PAGE_ORDERS), np.int64)
        np.add.at(out, (b[:, 3], b[:, 2], b[:, 1]), 1)
        return out

    def page_words(self, pfn: int) -> np.ndarray:
        """The W words of one page."""
        return np.atleast_1d(np.array(getattr(self.state, self.memmap_field)[pfn], dtype=np.uint64))

    @property
    def struct_page_bytes(self) -> int:
        return self.words * 8

    def memmap_bytes(self) -> int:
        return int(getattr(self.state, self.memmap_field).nbytes)

    def metadata_bytes(self) -> dict[str, int]:
        memmap_b = self.memmap_bytes()
        freelists = self.freelist_bytes()
        descriptors = self.descriptor_bytes()
        pageblock = self.pageblock_bytes()
        return {"memmap": memmap_b, "freelists": freelists, "descriptors": descriptors,
                "pageblock_flags": pageblock, "total": memmap_b + freelists + descriptors + pageblock}

    def bookkeeping_bytes(self) -> dict[str, int]:
        """Simulation bookkeeping (not design metadata): owner bytes, stats, event log."""
        zs = self.zs
        return {
            "page_owner": int(zs.owner.nbytes),
            "stats": int(zs.stats.nbytes + zs.zstats.nbytes),
            "event_log": int(zs.evlog.nbytes),
        }

    def pageblock_bytes(self) -> int:
        """NR_PAGEBLOCK_BITS per pageblock (of the layout's pageblock_order)."""
        npb = self.zs.pb.shape[0] >> (self.layout.pageblock_order - PAGEBLOCK_ORDER)
        return (npb * NR_PAGEBLOCK_BITS + 7) // 8

    def nr_lists(self) -> int:
        """Buddy free lists (zones x orders x migratetypes) and per-CPU lists: list ids of core."""
        nz = len(self.layout.zones)
        return nz * NR_PAGE_ORDERS * MIGRATE_TYPES + self.layout.nr_cpus * nz * core.NR_PCP_LISTS

    def set_online_sections(self, online: np.ndarray, section_pages: int | None = None) -> None:
        """Which memory sections are online (pfn_to_online_page()); pagetypeinfo counts only those."""
        self._online = (np.asarray(online, np.bool_), section_pages or self.SECTION_PAGES)

    def online_sections(self) -> tuple[np.ndarray, int]:
        """Default: a section is online if any of its pfns is present RAM in a zone."""
        if self._online is None:
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

    # ------------------------------------------------------------------ specs and saved state
    @classmethod
    def spec(cls) -> str:
        """``NAME[:KEY=VALUE,...]``: the spec that gives this class back (get_design)."""
        if not cls.spec_options:
            return cls.name
        return f"{cls.name}:{','.join(f'{k}={v}' for k, v in sorted(cls.spec_options.items()))}"

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every array of the state struct, by field name (what Machine.save writes)."""
        return {f: getattr(self.state, f) for f in self.state_cls._fields}

    def python_state(self) -> dict:
        """Python-side state beside the arrays (JSON values): see ``saved_attrs``."""
        out = {"npages": int(self.npages), "min_free_kbytes": int(self.min_free_kbytes)}
        for a in self.saved_attrs:
            out[a] = getattr(self, a)
        if self._online is not None:
            out["online_sections"] = [self._online[0].astype(np.uint8).tolist(), int(self._online[1])]
        return out

    def load_python_state(self, saved: dict) -> None:
        """Restore what :meth:`python_state` returned (after the arrays are in place)."""
        self.min_free_kbytes = saved["min_free_kbytes"]
        for a in self.saved_attrs:
            setattr(self, a, saved[a])
        if "online_sections" in saved:
            bits, sp = saved["online_sections"]
            self.set_online_sections(np.array(bits, np.bool_), sp)


class BuddyDesign(Design):
    """A list buddy: registers the buddy layer and runs core's zone layer over it."""

    def boot(self) -> None:
        starts, ends, res = self._managed_ranges()
        core.init_free_state(self.state, starts, ends, res)

    def init_from_snapshot(self, reserved: np.ndarray, alloc_pfn: np.ndarray, alloc_order: np.ndarray,
                           alloc_mt: np.ndarray, alloc_gfp: np.ndarray, free_pfn: np.ndarray,
                           free_order: np.ndarray, pageblock_mt: np.ndarray,
                           pcp_pfn: np.ndarray | None = None, pcp_cpu: np.ndarray | None = None) -> None:
        zs = self.zs
        zs.pb[:] = (zs.pb & 0xF8) | pageblock_mt.astype(np.uint8)
        empty = np.zeros(0, np.int64)
        core.init_from_snapshot(self.state, reserved.astype(np.int64), alloc_pfn.astype(np.int64),
                                alloc_order.astype(np.int64), alloc_mt.astype(np.int64),
                                alloc_gfp.astype(np.int64), free_pfn.astype(np.int64), free_order.astype(np.int64),
                                empty if pcp_pfn is None else pcp_pfn.astype(np.int64),
                                empty if pcp_cpu is None else pcp_cpu.astype(np.int64))

    def design_check(self) -> str | None:
        """The design's own structures (list links, trees); None when consistent."""
        return None

    def free_blocks(self) -> np.ndarray:
        total = int(self.zs.nr_free.sum())
        out = np.zeros((total, 4), np.int64)
        n = core.collect_free_blocks(self.state, out)
        return out[:n]

    def free_counts_by_migratetype(self) -> np.ndarray:
        out = np.zeros((len(self.layout.zones), MIGRATE_TYPES, NR_PAGE_ORDERS), np.int64)
        core.free_counts_by_mt(self.state, out)
        return out

    def check(self) -> str:
        msg = self.design_check()
        if msg:
            return msg
        code, p, a, b = core.check_buddy_state(self.state)
        if code != core.CHK_OK:
            return core.CHECK_MESSAGES[int(code)].format(p=int(p), a=int(a), b=int(b))
        return "ok"


def register_design(cls: type[Design], impls: dict[str, object]) -> type[Design]:
    """Enrol a design: check its declared attributes, register its primitives (with the
    defaults it is entitled to) and add it to ``DESIGNS``.  Returns the class.

    A design registering every buddy primitive gets core's zone layer and exact placement
    (``core.BUDDY_DEFAULTS``) for what it does not register itself; every design gets the
    optional defaults (``core.GENERIC_DEFAULTS``).  Missing required primitives, unknown
    attributes values or a name already taken are ConfigErrors."""
    who = f"design {cls.__name__}"
    if not cls.name or not cls.name.isidentifier():
        raise ConfigError(f"{who}: name must be an identifier, got {cls.name!r}")
    if cls.name in DESIGNS and DESIGNS[cls.name] is not cls:
        raise ConfigError(f"{who}: the name {cls.name!r} is taken by {DESIGNS[cls.name].__name__}")
    if cls.state_cls is None or tuple(cls.state_cls._fields[:len(core.ZONE_FIELDS)]) != core.ZONE_FIELDS:
        raise ConfigError(f"{who}: state_cls must start with core.ZONE_FIELDS")
    if cls.memmap_field not in cls.state_cls._fields:
        raise ConfigError(f"{who}: memmap_field {cls.memmap_field!r} is not a field of {cls.state_cls.__name__}")
    layout = memmap.LAYOUTS.get(cls.page_layout)
    if layout is None:
        raise ConfigError(f"{who}: page_layout {cls.page_layout!r} is not in memmap.LAYOUTS "
                          f"({', '.join(memmap.LAYOUTS)})")
    if layout.words != cls.words:
        raise ConfigError(f"{who}: page layout {cls.page_layout!r} has {layout.words} words, the design {cls.words}")
    bad = set(cls.metadata_counters) - set(METADATA_COUNTERS)
    if bad:
        raise ConfigError(f"{who}: unknown metadata counters {sorted(bad)} (known: {', '.join(METADATA_COUNTERS)})")
    table = dict(impls)
    buddy = [n for n in dispatch.BUDDY_PRIMITIVES if n in table]
    if buddy and len(buddy) != len(dispatch.BUDDY_PRIMITIVES):
        missing = sorted(set(dispatch.BUDDY_PRIMITIVES) - set(buddy))
        raise ConfigError(f"{who}: registers part of the buddy layer; missing {', '.join(missing)}")
    for name, f in core.GENERIC_DEFAULTS.items():
        table.setdefault(name, f)
    if buddy:
        for name, f in core.BUDDY_DEFAULTS.items():
            table.setdefault(name, f)
    missing = [n for n in dispatch.REQUIRED if n not in table]
    if cls.exact_replay:
        missing += [n for n in dispatch.EXACT_PRIMITIVES if n not in table and n not in missing]
    if missing:
        raise ConfigError(f"{who} lacks primitives: {', '.join(missing)}")
    dispatch.register(cls.state_cls, table, cls.name)
    # the prefetch contract: workloads prefetch a page's words from this field
    cls.state_cls._numba_type_class.memmap_field = cls.memmap_field
    cls.state_cls.memmap_field = cls.memmap_field
    DESIGNS[cls.name] = cls
    return cls


__all__ = ["DESIGNS", "METADATA_COUNTERS", "BuddyDesign", "Design", "register_design"]
