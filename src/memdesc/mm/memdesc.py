"""The memdesc type system: what every page *is*, and where its descriptor lives in each design.

Theory
------
Matthew Wilcox's plan (kernelnewbies MatthewWilcox/Memdescs; "State of the Page", Aug
2022) replaces today's 64-byte ``struct page`` by one word, the *memdesc*: a 4-bit type and
a 60-bit payload.  For every type but 0 the payload is a pointer to a separately allocated,
16-byte aligned descriptor (the low 4 bits of the pointer are free for the type); type 0
("misc"/bare) has no descriptor and keeps its few facts in the word itself::

    bits  0-3   type                       (all types)
    bits  4-63  descriptor pointer >> 4    (types 1-15)
    type 0:
    bits  4-10  subtype                    (reserved, zero page, driver, vmalloc, guard, ...)
    bit  11     may be mapped to userspace
    bits 12-17  allocation order
    bits 51-53  zone      bits 54-63  node (as page->flags today, SPARSEMEM_VMEMMAP)

"There is no refcount for this kind of memory!  Nor mapcount!" (the wiki on type 0);
Wilcox confirmed the bare encoding on LKML in May 2026 (lkml.iu.edu 2605.3/03483).

**Numbering.**  The type ids are those of the one-word layout the ``vmem`` design already
uses (``memmap.py``, docs/architecture.md W=1), which follow the kernelnewbies Memdescs
table: 0 misc, 1 file folio, 2 anon folio, 3 KSM, 4 slab, 5 free (``struct buddy``),
6 movable, 7 vmalloc (mappable), 8 the model's allocated-buddy (Wilcox 2021: "perhaps a
different type id for allocated-buddy and free-buddy"; the wiki leaves 8 unassigned),
9 page table (ptdesc), 10 netpool (netmem_desc), 11 hwpoison.  That table has no number
for zsmalloc or percpu, so this module **extends** it: 12 zsmalloc (zpdesc), 13 percpu
(another wiki revision numbers PerCPU 10, but renumbering would break the existing
layout).  14 and 15 stay free.  Bare subtypes 0-8 are the wiki's; 9 (hole: a pfn with no
RAM) and 10 (uninit: RAM whose struct page is not initialised yet, deferred struct-page
init) are model extensions.

**Descriptors per design.**  Each type's state has one home per design:

==========  ========  ======================================================================
design      struct    where descriptors live
            page
==========  ========  ======================================================================
linux       64 B      overlaid on struct page (``FOLIO_MATCH``/``SLAB_MATCH``/``TABLE_MATCH``/
                      ``ZPDESC_MATCH`` asserts); a large folio spans its first 4 struct pages
                      (256 B); no extra bytes
linux:32    32 B      the plan's next step (Memdescs/Path): ``{flags; union {buddy_list;
                      pcp_list; {memdesc; union {private; _mapcount}}}; _refcount}`` over the
                      unchanged list buddy; folio, slab, ptdesc, zpdesc, netmem_desc separately
                      allocated from 16-byte aligned slab caches
radix       16 B      Kent Overstreet's two words (allocator state; allocatee pointer or free-
                      list index); descriptors separately allocated as in the plan
vmem        8 B       the memdesc; descriptors separately allocated; free memory and every
                      allocation carry a 32-byte ``struct buddy`` (Wilcox 2021)
llfree      8 B       the memdesc; descriptors separately allocated; free state only in
                      LLFree's bitfields, children and trees (llfree-c)
==========  ========  ======================================================================

The separately allocated layouts below are today's overlay structs (read from
include/linux/mm_types.h, mm/slab.h, mm/zpdesc.h, include/net/netmem.h) minus the fields
that only alias struct page (``__page_mapping``, ``__page_type``, ``__page_refcount``:
the type now lives in the memdesc), plus the ``pfn`` a descriptor needs once it is no
longer at a fixed offset from its page (Memdescs/FolioAlloc initialises ``pfn`` and
``order``), rounded up to the 16-byte slab alignment the 4-bit tag requires.  A small
folio is 80 B (reference 04 §1: "≈ 80 B"); a large one adds the page[1] mapcount block and
page[2]'s deferred-split list (128 B); a hugetlb folio adds page[3]'s hugetlb fields
(160 B).  Where the plan publishes no layout (movable, mappable vmalloc, hwpoison) the size
is a model estimate and says so in its ``source``.

Invariants (tests/test_memdesc.py): type ids and bare subtypes equal memmap.py's constants;
every separate descriptor size is a multiple of 16 and covers its fields; every layout's
fields are disjoint and inside the struct; encode/decode round-trips every field of the
bare word and every 16-byte-aligned pointer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memdesc._numba import njit
from memdesc.errors import ConfigError, InvalidOrder
from memdesc.mm import memmap as mm
from memdesc.mm.mmzone import PAGE_SIZE

# ----------------------------------------------------------------- type ids (W=1 numbering)
MD_MISC = mm.MD_MISC
MD_FILE = mm.MD_FILE
MD_ANON = mm.MD_ANON
MD_KSM = mm.MD_KSM
MD_SLAB = mm.MD_SLAB
MD_FREE = mm.MD_FREE
MD_MOVABLE = mm.MD_MOVABLE
MD_VMALLOC = mm.MD_VMALLOC
MD_BUDDY_ALLOC = mm.MD_BUDDY_ALLOC
MD_PAGETABLE = mm.MD_PAGETABLE
MD_NETPOOL = mm.MD_NETPOOL
MD_HWPOISON = mm.MD_HWPOISON
MD_ZSMALLOC = mm.MD_ZSMALLOC
MD_PERCPU = mm.MD_PERCPU
NR_MD_TYPES = 16

# bare (type 0) fields
MD_SUBTYPE_SHIFT = mm.MD_SUBTYPE_SHIFT
MD_SUBTYPE_MASK = mm.MD_SUBTYPE_MASK
MD_MAPPABLE_BIT = mm.MD_MAPPABLE_BIT
MD_ORDER_SHIFT = mm.MD_ORDER_SHIFT
MD_ORDER_MASK = mm.MD_ORDER_MASK
MD_ZONE_SHIFT = mm.ZONES_PGSHIFT
MD_ZONE_MASK = mm.ZONES_MASK
MD_NODE_SHIFT = mm.NODES_PGSHIFT
MD_NODE_MASK = mm.NODES_MASK
MD_TYPE_MASK = mm.MD_TYPE_MASK
#: a descriptor pointer must leave the 4 type bits free
MD_DESC_ALIGN = 16

# bare subtypes (wiki 0-8; 9, 10 model extensions)
SUB_RESERVED = mm.MD_SUB_RESERVED
SUB_ZERO = mm.MD_SUB_ZERO
SUB_DRIVER = mm.MD_SUB_DRIVER
SUB_VMALLOC = mm.MD_SUB_VMALLOC
SUB_GUARD = mm.MD_SUB_GUARD
SUB_OFFLINE = mm.MD_SUB_OFFLINE
SUB_KMALLOC_LARGE = 6
SUB_EXACT = 7
SUB_BRD = 8
SUB_HOLE = mm.MD_SUB_HOLE
SUB_UNINIT = mm.MD_SUB_UNINIT

CACHE_LINE = 64


# ----------------------------------------------------------------- designs
@dataclass(frozen=True)
class DesignSpec:
    """How one design stores per-page state and descriptors."""

    name: str
    struct_page_bytes: int
    separate_descriptors: bool
    layout: str
    free_state: str
    source: str


DESIGN_SPECS: dict[str, DesignSpec] = {
    "linux": DesignSpec(
        "linux", 64, False,
        "flags, 5-word union (lru/buddy_list/pcp_list, mapping, index, private | compound_info | "
        "page_pool | ZONE_DEVICE | rcu_head), page_type/_mapcount, _refcount, memcg_data",
        "free_area list heads; PageBuddy page type and order in page->private",
        "include/linux/mm_types.h (linux-mm@0199209e): struct page; FOLIO_MATCH asserts"),
    "linux:32": DesignSpec(
        "linux:32", 32, True,
        "flags; union {buddy_list; pcp_list; {memdesc; union {private; _mapcount}}}; _refcount "
        "(0 for folios)",
        "the unchanged list buddy: buddy_list in struct page; the order in flags (model: private "
        "overlaps buddy_list.prev)",
        "kernelnewbies MatthewWilcox/Memdescs/Path (later revisions); reference 04 §1"),
    "radix": DesignSpec(
        "radix", 16, True,
        "word 0: allocator state (type, order, zone, node); word 1: allocatee pointer (tagged like a "
        "memdesc: model assumption) or, free, the index onto the free list",
        "free lists as XArray deques (tree nodes of 576 B, 7 per page)",
        "Kent Overstreet, linux-mm msg274367 (Oct 2021); memdesc radix design"),
    "vmem": DesignSpec(
        "vmem", 8, True,
        "memdesc: 4-bit type + descriptor pointer, or the bare-page fields",
        "vmem segments: a 32-byte struct buddy per free segment, and one reserved by every allocation "
        "(\"we must allocate the necessary struct buddy at the time we allocate the memory\")",
        "Matthew Wilcox, linux-mm msg274271 (25 Oct 2021); memdesc vmem design"),
    "llfree": DesignSpec(
        "llfree", 8, True,
        "memdesc: 4-bit type + descriptor pointer, or the bare-page fields",
        "LLFree: a 512-bit bitfield per 2 MiB, a 16-bit child per bitfield (64-byte aligned per tree "
        "of 8), a 32-bit entry per tree, 64-byte per-CPU reservations per class",
        "luhsra/llfree-c@970bb3d1: src/bitfield.h, src/child.h, src/tree.h, src/lower.c "
        "lower_metadata_size(), src/trees.h, src/local.c"),
}
DESIGN_NAMES: tuple[str, ...] = tuple(DESIGN_SPECS)


# ----------------------------------------------------------------- descriptor layouts
@dataclass(frozen=True)
class DescriptorSpec:
    """A descriptor struct: today's overlay size and its separately allocated layout."""

    struct: str
    cache: str | None  # kmem_cache of the separately allocated descriptor (None: not allocated)
    overlay_bytes: int  # size today, overlaid on struct page (0: nothing in struct page)
    fields: tuple[tuple[str, int, int], ...]  # separate layout: (name, offset, size)
    source: str
    estimate: bool = False  # True: no published layout, a model estimate

    @property
    def bytes(self) -> int:
        """Separately allocated size: the fields, rounded up to the 16-byte slab alignment."""
        end = max((o + s for _, o, s in self.fields), default=0)
        return -(-end // MD_DESC_ALIGN) * MD_DESC_ALIGN

    def offset(self, name: str) -> tuple[int, int]:
        for n, o, s in self.fields:
            if n == name:
                return o, s
        raise ConfigError(f"struct {self.struct} has no field {name!r}")


_FOLIO0 = (("flags", 0, 8), ("lru", 8, 16), ("mapping", 24, 8), ("index", 32, 8), ("private", 40, 8),
           ("_mapcount", 48, 4), ("_refcount", 52, 4), ("memcg_data", 56, 8), ("pfn", 64, 8), ("order", 72, 1))
_FOLIO1 = (("_large_mapcount", 80, 4), ("_nr_pages_mapped", 84, 4), ("_entire_mapcount", 88, 4),
           ("_pincount", 92, 4), ("_mm_id_mapcount", 96, 8), ("_mm_ids", 104, 8), ("_deferred_list", 112, 16))
_FOLIO3 = (("_hugetlb_subpool", 128, 8), ("_hugetlb_cgroup", 136, 8), ("_hugetlb_cgroup_rsvd", 144, 8),
           ("hugetlb_hwpoison", 152, 8))
_MMTYPES = "include/linux/mm_types.h (linux-mm@0199209e)"

FOLIO = DescriptorSpec(
    "folio", "folio", 64, _FOLIO0,
    f"{_MMTYPES} struct folio page[0] fields + pfn and order (Memdescs/FolioAlloc; reference 04 §1: ≈ 80 B); "
    "overlay: page[0] (64 B)")
FOLIO_LARGE = DescriptorSpec(
    "folio", "folio_large", 256, _FOLIO0 + _FOLIO1,
    f"{_MMTYPES} struct folio page[0] + page[1] (_large_mapcount, _nr_pages_mapped, _entire_mapcount, "
    "_pincount, _mm_id_mapcount, _mm_ids) + page[2] (_deferred_list) + pfn, order; overlay: page[0..3] (256 B; "
    "an order-1 folio spans 2 struct pages)")
FOLIO_HUGETLB = DescriptorSpec(
    "folio", "folio_hugetlb", 256, _FOLIO0 + _FOLIO1 + _FOLIO3,
    f"{_MMTYPES} struct folio incl. page[3] hugetlb fields (_hugetlb_subpool, _hugetlb_cgroup, "
    "_hugetlb_cgroup_rsvd, hugetlb_hwpoison) + pfn, order")
SLAB = DescriptorSpec(
    "slab", "slab", 64,
    (("flags", 0, 8), ("slab_cache", 8, 8), ("slab_list", 16, 16), ("freelist", 32, 8), ("counters", 40, 8),
     ("obj_exts", 48, 8), ("pfn", 56, 8)),
    "mm/slab.h (linux-mm@129c35f1) struct slab (64 B overlay; static_assert(sizeof(struct slab) <= "
    "sizeof(struct page))) without __page_type/__page_refcount, + pfn; State of the Page 2022: "
    "\"struct slab = 8 words\"")
PTDESC = DescriptorSpec(
    "ptdesc", "ptdesc", 64,
    (("pt_flags", 0, 8), ("pt_list", 8, 16), ("pt_index", 24, 8), ("ptl", 32, 8), ("pt_memcg_data", 40, 8),
     ("pfn", 48, 8)),
    f"{_MMTYPES} struct ptdesc (64 B overlay, TABLE_MATCH) without __page_mapping/__page_type/"
    "__page_refcount, + pfn")
ZPDESC = DescriptorSpec(
    "zpdesc", "zpdesc", 56,
    (("flags", 0, 8), ("lru", 8, 16), ("movable_ops", 24, 8), ("next", 32, 8), ("zspage", 40, 8),
     ("first_obj_offset", 48, 4), ("_refcount", 52, 4), ("pfn", 56, 8)),
    "mm/zpdesc.h (torvalds@00c010e1) struct zpdesc (56 B overlay, ZPDESC_MATCH) + pfn")
NETMEM = DescriptorSpec(
    "netmem_desc", "netmem_desc", 48,
    (("_flags", 0, 8), ("pp_magic", 8, 8), ("pp", 16, 8), ("_pp_mapping_pad", 24, 8), ("dma_addr", 32, 8),
     ("pp_ref_count", 40, 8), ("pfn", 48, 8)),
    "include/net/netmem.h struct netmem_desc (48 B overlay: \"until struct netmem_desc has its own "
    "instance from slab\") + pfn")
MOVABLE = DescriptorSpec(
    "movable", "movable", 64,
    (("flags", 0, 8), ("movable_ops", 8, 8), ("private", 16, 8), ("_refcount", 24, 4), ("pfn", 32, 8)),
    "no published layout (model estimate): a page with movable_operations needs flags, its ops, its "
    "owner's private word, a refcount and its pfn", estimate=True)
MAPPABLE = DescriptorSpec(
    "mappable", "mappable", 64,
    (("flags", 0, 8), ("_refcount", 8, 4), ("_mapcount", 12, 4), ("pfn", 16, 8)),
    "State of the Page 2022 proposed header struct mappable {flags; _refcount; _mapcount} + pfn "
    "(model estimate: no vmalloc-mappable descriptor is published)", estimate=True)
HWPOISON = DescriptorSpec(
    "hwpoison", "hwpoison", 64,
    (("flags", 0, 8), ("pfn", 8, 8), ("old_memdesc", 16, 8), ("raw_errors", 24, 8)),
    "no published layout (model estimate): flags, pfn, the memdesc the page had, its raw error list",
    estimate=True)
PERCPU = DescriptorSpec(
    "pcpu_chunk", None, 0, (),
    "mm/percpu: the page already records its struct pcpu_chunk (pcpu_set_page_chunk); the memdesc "
    "payload can be that pointer, so no new descriptor")
#: struct buddy of the vmem design (memdesc.mm.page_alloc.vmem_arena.DESC_BYTES; Wilcox 2021:
#: {flags; list; order; page *})
BUDDY = DescriptorSpec(
    "buddy", "buddy", 0,
    (("start", 0, 8), ("size", 8, 8), ("links", 16, 16)),
    "memdesc vmem design: 32-byte struct buddy (vmem_arena.DESC_BYTES); Wilcox 2021: "
    "struct buddy {flags; list; order; page *}")


# ----------------------------------------------------------------- types and kinds
@dataclass(frozen=True)
class MemdescType:
    """One memdesc type of the W=1 numbering."""

    id: int
    name: str
    pointer: str  # what the payload points to
    state: str  # the state the type carries
    source: str


MEMDESC_TYPES: tuple[MemdescType, ...] = (
    MemdescType(MD_MISC, "misc", "nothing (bare page)",
                "subtype, mappable bit, order, zone/node in the word; no refcount, no mapcount",
                "kernelnewbies MatthewWilcox/Memdescs (type 0); lkml.iu.edu 2605.3/03483"),
    MemdescType(MD_FILE, "file", "struct folio",
                "flags, LRU links, mapping + index, private (buffer heads), refcount, mapcount (large: "
                "_large_mapcount, _entire_mapcount, _nr_pages_mapped, _pincount, _mm_ids), memcg, pfn, order, "
                "deferred-split link", "kernelnewbies Memdescs (1: File, struct folio *)"),
    MemdescType(MD_ANON, "anon", "struct folio (anon_folio)",
                "as file; mapping = anon_vma | PAGE_MAPPING_ANON, index = virtual page offset, swap entry",
                "kernelnewbies Memdescs (2: Anon, struct anon_folio *)"),
    MemdescType(MD_KSM, "ksm", "struct folio",
                "an anon folio merged by KSM; mapping = stable node | PAGE_MAPPING_KSM",
                "kernelnewbies Memdescs (3: KSM)"),
    MemdescType(MD_SLAB, "slab", "struct slab",
                "kmem_cache, slab list, freelist, inuse/objects/frozen counters, obj_exts (memcg/alloc tags)",
                "kernelnewbies Memdescs (4: Slab); mm/slab.h"),
    MemdescType(MD_FREE, "free", "struct buddy",
                "a free block: its extent and free-list links (linux/linux:32: in struct page; radix: in the "
                "two words + XArray; vmem: struct buddy; llfree: bitfields)",
                "kernelnewbies Memdescs (5: Free, struct buddy *); Wilcox 2021"),
    MemdescType(MD_MOVABLE, "movable", "movable descriptor",
                "driver pages with movable_operations (balloon): ops, owner state, refcount",
                "kernelnewbies Memdescs (6: Movable)"),
    MemdescType(MD_VMALLOC, "vmalloc", "mappable descriptor",
                "vmalloc memory mapped to userspace: refcount and mapcount (bare vmalloc pages use type 0 "
                "subtype 3)", "kernelnewbies Memdescs (7: VmallocMappable)"),
    MemdescType(MD_BUDDY_ALLOC, "buddy-alloc", "struct buddy",
                "vmem design: an allocation whose type the allocator does not know; its struct buddy, "
                "reserved for its free", "Wilcox 2021: \"perhaps we have a different type id for "
                "allocated-buddy and free-buddy\"; the wiki leaves 8 unassigned"),
    MemdescType(MD_PAGETABLE, "pagetable", "struct ptdesc",
                "page-table lock, pt_list/rcu_head, pt_mm/pt_index, pmd_huge_pte, memcg",
                "kernelnewbies Memdescs (9: PageTable, ptdesc)"),
    MemdescType(MD_NETPOOL, "netpool", "struct netmem_desc",
                "page_pool: pp_magic, pp, dma_addr, pp_ref_count", "kernelnewbies Memdescs (10: NetPool)"),
    MemdescType(MD_HWPOISON, "hwpoison", "hwpoison descriptor",
                "a poisoned page: what it was, its raw errors", "kernelnewbies Memdescs (11: HWPoison)"),
    MemdescType(MD_ZSMALLOC, "zsmalloc", "struct zpdesc",
                "zspage link, first object offset, handle, movable ops, refcount",
                "extension (the Memdescs table has no zsmalloc id); mm/zpdesc.h"),
    MemdescType(MD_PERCPU, "percpu", "struct pcpu_chunk",
                "the percpu chunk the page backs", "extension (another wiki revision: 10 PerCPU)"),
)
MEMDESC_TYPE_BY_NAME = {t.name: t for t in MEMDESC_TYPES}


@dataclass(frozen=True)
class Kind:
    """A census unit: a memdesc type, refined by bare subtype or descriptor variant.

    ``visible``: how /proc/kpageflags shows it (empty: kpageflags cannot tell it apart).
    """

    name: str
    type_id: int
    subtype: int  # bare subtype, -1 for descriptor types
    desc: DescriptorSpec | None  # separately allocated descriptor (small/order-0 variant)
    desc_large: DescriptorSpec | None  # descriptor of an order > 0 allocation (folios)
    visible: str
    doc: str = field(default="", compare=False)

    def descriptor(self, order: int) -> DescriptorSpec | None:
        return self.desc_large if order > 0 and self.desc_large is not None else self.desc


KINDS: tuple[Kind, ...] = (
    Kind("misc:hole", MD_MISC, SUB_HOLE, None, None, "outside every zone, or an all-zero section that is "
         "not present RAM", "no RAM behind the pfn"),
    Kind("misc:uninit", MD_MISC, SUB_UNINIT, None, None, "an all-zero section of present RAM (zone present "
         "> initialised)", "present RAM that reads all zero: struct pages not initialised yet (deferred "
         "struct-page init) or an offline section; its memmap exists"),
    Kind("misc:reserved", MD_MISC, SUB_RESERVED, None, None, "KPF_RESERVED", "memblock, kernel image, "
         "firmware, sub-section holes"),
    Kind("misc:zero", MD_MISC, SUB_ZERO, None, None, "KPF_ZERO_PAGE", "the shared zero page / huge zero folio"),
    Kind("misc:driver", MD_MISC, SUB_DRIVER, None, None, "allocated, no KPF flag that says more",
         "wiki subtype 2 'unknown/driver': vmalloc, kernel stacks, large kmalloc, page_pool, percpu, "
         "zsmalloc, pcp-cached free pages -- kpageflags cannot tell them apart"),
    Kind("misc:vmalloc", MD_MISC, SUB_VMALLOC, None, None, "", "bare vmalloc page"),
    Kind("misc:guard", MD_MISC, SUB_GUARD, None, None, "", "debug_pagealloc guard page"),
    Kind("misc:offline", MD_MISC, SUB_OFFLINE, None, None, "KPF_OFFLINE", "ballooned / unplugged (PageOffline)"),
    Kind("misc:kmalloc_large", MD_MISC, SUB_KMALLOC_LARGE, None, None, "", "kmalloc() above the slab sizes"),
    Kind("misc:exact", MD_MISC, SUB_EXACT, None, None, "", "alloc_pages_exact()"),
    Kind("misc:brd", MD_MISC, SUB_BRD, None, None, "", "RAM disk pages"),
    Kind("file", MD_FILE, -1, FOLIO, FOLIO_LARGE, "not anon, with a page-cache/LRU state bit (LRU, MMAP, "
         "UPTODATE, DIRTY, ...)", "page cache (and shmem, SWAPBACKED)"),
    Kind("hugetlb", MD_FILE, -1, FOLIO_HUGETLB, FOLIO_HUGETLB, "KPF_HUGE", "hugetlbfs folio (a file folio "
         "with the hugetlb fields)"),
    Kind("anon", MD_ANON, -1, FOLIO, FOLIO_LARGE, "KPF_ANON without KPF_KSM", "anonymous folio"),
    Kind("ksm", MD_KSM, -1, FOLIO, FOLIO_LARGE, "KPF_KSM (implies KPF_ANON)", "KSM-merged anonymous page"),
    Kind("slab", MD_SLAB, -1, SLAB, SLAB, "KPF_SLAB", "slab (one struct slab per slab, any order)"),
    Kind("free", MD_FREE, -1, None, None, "KPF_BUDDY", "free buddy block (pcp-cached pages read as "
         "misc:driver)"),
    Kind("movable", MD_MOVABLE, -1, MOVABLE, MOVABLE, "", "driver movable pages"),
    Kind("vmalloc", MD_VMALLOC, -1, MAPPABLE, MAPPABLE, "", "vmalloc memory mapped to userspace"),
    Kind("buddy-alloc", MD_BUDDY_ALLOC, -1, None, None, "", "vmem's untyped allocation"),
    Kind("pagetable", MD_PAGETABLE, -1, PTDESC, PTDESC, "KPF_PGTABLE", "page table"),
    Kind("netpool", MD_NETPOOL, -1, NETMEM, NETMEM, "", "page_pool page"),
    Kind("hwpoison", MD_HWPOISON, -1, HWPOISON, HWPOISON, "KPF_HWPOISON", "poisoned page"),
    Kind("zsmalloc", MD_ZSMALLOC, -1, ZPDESC, ZPDESC, "", "zsmalloc (zswap/zram) page"),
    Kind("percpu", MD_PERCPU, -1, PERCPU, PERCPU, "", "percpu chunk page"),
)
KIND_BY_NAME = {k.name: k for k in KINDS}
KIND_NAMES = tuple(k.name for k in KINDS)

#: the slab caches of separately allocated descriptors: cache name -> object bytes
DESCRIPTOR_CACHES: dict[str, int] = {}
for _k in KINDS:
    for _d in (_k.desc, _k.desc_large):
        if _d is not None and _d.cache is not None:
            DESCRIPTOR_CACHES[_d.cache] = _d.bytes
DESCRIPTOR_CACHES[BUDDY.cache] = BUDDY.bytes


def descriptor_bytes(kind: str, design: str, order: int = 0) -> int:
    """Extra bytes (beyond struct page) one allocation of ``kind`` and ``order`` costs in ``design``.

    linux overlays every descriptor on struct page: 0.  The others allocate the kind's
    descriptor separately (its 16-byte aligned size); bare kinds and ``free`` have none (the
    free-memory structures are counted per design elsewhere).
    """
    spec = design_spec(design)
    k = kind_spec(kind)
    if not spec.separate_descriptors:
        return 0
    d = k.descriptor(order)
    return 0 if d is None or d.cache is None else d.bytes


def overlay_bytes(kind: str, order: int = 0) -> int:
    """Bytes the kind's descriptor occupies inside struct pages today (linux)."""
    k = kind_spec(kind)
    d = k.descriptor(order)
    if d is None:
        return 0
    if d.cache is not None and d.cache.startswith("folio") and order > 0:
        return min(4, 1 << order) * 64
    return d.overlay_bytes


def design_spec(design: str) -> DesignSpec:
    try:
        return DESIGN_SPECS[design]
    except KeyError:
        raise ConfigError(f"unknown design {design!r} for the memdesc table; known: "
                          f"{', '.join(DESIGN_NAMES)}") from None


def kind_spec(kind: str) -> Kind:
    try:
        return KIND_BY_NAME[kind]
    except KeyError:
        raise ConfigError(f"unknown memdesc kind {kind!r}; known: {', '.join(KIND_NAMES)}") from None


def objects_per_slab(obj_bytes: int, slab_bytes: int = PAGE_SIZE) -> int:
    """Objects of a 16-byte aligned cache in one order-0 slab."""
    if obj_bytes <= 0:
        raise ConfigError(f"object size must be positive, got {obj_bytes}")
    return slab_bytes // obj_bytes


def type_table() -> list[dict]:
    """The type table as rows (docs/memdesc.md prints it): kind, type id, subtype, state,
    descriptor struct, overlay bytes today, separate bytes (small / large), cache, source."""
    rows = []
    for k in KINDS:
        t = MEMDESC_TYPES[[x.id for x in MEMDESC_TYPES].index(k.type_id)]
        d, dl = k.desc, k.desc_large
        rows.append({
            "kind": k.name, "type": k.type_id, "subtype": k.subtype, "state": t.state if k.subtype < 0 else k.doc,
            "struct": d.struct if d else None,
            "linux_bytes": overlay_bytes(k.name, 0) if d else 0,
            "linux_bytes_large": overlay_bytes(k.name, 1) if dl else 0,
            "separate_bytes": d.bytes if d and d.cache else 0,
            "separate_bytes_large": dl.bytes if dl and dl.cache else 0,
            "cache": d.cache if d else None, "estimate": bool(d and d.estimate),
            "visible": k.visible, "source": (d.source if d else t.source),
        })
    return rows


# ----------------------------------------------------------------- W=1 encode / decode kernels
@njit
def md_encode_bare(subtype, mappable, order, zone, node):
    """The memdesc word of a bare (type 0) page."""
    w = np.uint64(MD_MISC)
    w |= np.uint64(subtype & MD_SUBTYPE_MASK) << np.uint64(MD_SUBTYPE_SHIFT)
    w |= np.uint64(1 if mappable else 0) << np.uint64(MD_MAPPABLE_BIT)
    w |= np.uint64(order & MD_ORDER_MASK) << np.uint64(MD_ORDER_SHIFT)
    w |= np.uint64(zone & MD_ZONE_MASK) << np.uint64(MD_ZONE_SHIFT)
    w |= np.uint64(node & MD_NODE_MASK) << np.uint64(MD_NODE_SHIFT)
    return w


@njit
def md_encode_desc(type_id, addr):
    """The memdesc word of a page described by the 16-byte aligned descriptor at ``addr``."""
    return (np.uint64(addr) & ~np.uint64(MD_TYPE_MASK)) | np.uint64(type_id & MD_TYPE_MASK)


@njit
def md_type(w):
    return np.int64(np.uint64(w) & np.uint64(MD_TYPE_MASK))


@njit
def md_desc(w):
    """Descriptor address of a typed memdesc (0 for type 0)."""
    if (np.uint64(w) & np.uint64(MD_TYPE_MASK)) == 0:
        return np.uint64(0)
    return np.uint64(w) & ~np.uint64(MD_TYPE_MASK)


@njit
def md_subtype(w):
    return np.int64((np.uint64(w) >> np.uint64(MD_SUBTYPE_SHIFT)) & np.uint64(MD_SUBTYPE_MASK))


@njit
def md_mappable(w):
    return np.int64((np.uint64(w) >> np.uint64(MD_MAPPABLE_BIT)) & np.uint64(1))


@njit
def md_order(w):
    return np.int64((np.uint64(w) >> np.uint64(MD_ORDER_SHIFT)) & np.uint64(MD_ORDER_MASK))


@njit
def md_zone(w):
    return np.int64((np.uint64(w) >> np.uint64(MD_ZONE_SHIFT)) & np.uint64(MD_ZONE_MASK))


@njit
def md_node(w):
    return np.int64((np.uint64(w) >> np.uint64(MD_NODE_SHIFT)) & np.uint64(MD_NODE_MASK))


@njit
def md_encode_words(type_id, subtype, mappable, order, zone, node, addr, out):
    """Encode arrays (one entry per page) into memdesc words: bare when ``type_id`` is 0,
    else ``type | addr``."""
    for i in range(out.shape[0]):
        if type_id[i] == MD_MISC:
            out[i] = md_encode_bare(subtype[i], mappable[i], order[i], zone[i], node[i])
        else:
            out[i] = md_encode_desc(type_id[i], addr[i])


@njit
def md_decode_words(words, type_id, subtype, mappable, order, zone, node, addr):
    """Decode memdesc words into per-field arrays (the inverse of :func:`md_encode_words`;
    bare fields are 0 for typed words, ``addr`` is 0 for bare words)."""
    for i in range(words.shape[0]):
        w = words[i]
        t = md_type(w)
        type_id[i] = t
        if t == MD_MISC:
            subtype[i] = md_subtype(w)
            mappable[i] = md_mappable(w)
            order[i] = md_order(w)
            zone[i] = md_zone(w)
            node[i] = md_node(w)
            addr[i] = 0
        else:
            subtype[i] = 0
            mappable[i] = 0
            order[i] = 0
            zone[i] = 0
            node[i] = 0
            addr[i] = md_desc(w)


def encode_bare(subtype: int, *, mappable: bool = False, order: int = 0, zone: int = 0, node: int = 0) -> int:
    """Checked Python facade of :func:`md_encode_bare`."""
    if not 0 <= subtype <= MD_SUBTYPE_MASK:
        raise ConfigError(f"bare subtype {subtype} does not fit in 7 bits")
    if not 0 <= order <= MD_ORDER_MASK:
        raise InvalidOrder(f"order {order} does not fit in the memdesc's 6 order bits")
    if not 0 <= zone <= MD_ZONE_MASK or not 0 <= node <= MD_NODE_MASK:
        raise ConfigError(f"zone {zone} / node {node} do not fit in {mm.ZONES_WIDTH}/{mm.NODES_WIDTH} bits")
    return int(md_encode_bare(subtype, bool(mappable), order, zone, node))


def encode_descriptor(type_id: int, addr: int) -> int:
    """Checked Python facade of :func:`md_encode_desc`."""
    if not 1 <= type_id < NR_MD_TYPES:
        raise ConfigError(f"type {type_id} is not a descriptor type (1-15)")
    if addr <= 0 or addr % MD_DESC_ALIGN or addr >= 1 << 64:
        raise ConfigError(f"descriptor address {addr:#x} is not a non-null 16-byte aligned pointer")
    return int(md_encode_desc(type_id, np.uint64(addr)))


def decode(word: int) -> dict:
    """The fields of one memdesc word (names from :data:`MEMDESC_TYPES`)."""
    w = int(word)
    if not 0 <= w < 1 << 64:
        raise ConfigError(f"{word!r} is not a 64-bit memdesc word")
    w = np.uint64(w)  # numba would type a Python int >= 2**63 as an overflowing int64
    t = int(md_type(w))
    out: dict = {"type": t, "type_name": mm.MD_TYPE_NAMES[t]}
    if t == MD_MISC:
        sub = int(md_subtype(w))
        out.update(subtype=sub, subtype_name=mm.MD_SUBTYPE_NAMES.get(sub, str(sub)), mappable=bool(md_mappable(w)),
                   order=int(md_order(w)), zone=int(md_zone(w)), node=int(md_node(w)))
    else:
        out["descriptor"] = int(md_desc(w))
    return out


def lines_touched(offsets: tuple[tuple[int, int], ...], obj_bytes: int, line: int = CACHE_LINE) -> float:
    """Expected distinct cache lines read when reading the byte ranges ``(offset, size)`` of one
    object of a 16-byte aligned slab cache of ``obj_bytes`` objects, averaged over the object's
    position in its slab (objects sit at ``k * obj_bytes``; the phase ``k * obj_bytes mod 64``
    cycles with period ``64 / gcd(obj_bytes, 64)``)."""
    if not offsets:
        return 0.0
    period = line // np.gcd(obj_bytes, line)
    total = 0
    for k in range(period):
        base = k * obj_bytes
        seen = set()
        for o, s in offsets:
            for b in range((base + o) // line, (base + o + s - 1) // line + 1):
                seen.add(b)
        total += len(seen)
    return total / period
