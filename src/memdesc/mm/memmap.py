"""The memmap: per-page metadata as a numpy uint64 array of shape (pages, W).

Theory
------
W is the design's ``struct page`` size in 64-bit words:

* **W = 8** (``linux``, 64 bytes, struct page of Linux 6.18 on x86-64);
* **W = 2** (``radix``, 16 bytes, Kent Overstreet's proposal: an allocator-state word and
  a word that is "a pointer to allocatee state for allocated pages, but for free pages an
  index onto the freelist");
* **W = 1** (``vmem``, 8 bytes, Matthew Wilcox's memdesc: a 4-bit type and a 60-bit
  payload, usually a pointer to a separately allocated descriptor).

A design keeps per-page state *only* in its W words.  Everything else it needs (free
list heads, pageblock bits, tree nodes, descriptors) lives in structures whose bytes are
counted.  The bit layouts are defined once, here, as :class:`Field` tables; numba kernels
use the module-level integer constants (compile-time constants to numba), and
:func:`describe_page` / :func:`dump_page` decode a page's words the way the kernel's
``dump_page()`` prints a page.  Layouts are registered by name (:data:`LAYOUTS`:
``struct_page``, ``radix2``, ``memdesc``): each design names the one its words are in, so a
second design with the same word count is never decoded as another's.  docs/architecture.md carries the same tables.

Encodings used inside words
---------------------------
* list links (W=8 words 1-2, ``buddy_list``/``pcp_list``): 0 = not on a list;
  ``(pfn + 1) << 2`` = another page; ``(list_id << 2) | 2`` = the list head itself (the
  model's stand-in for a pointer into ``zone->free_area`` or ``pcp->lists``);
* ``compound_head`` (W=8 word 1 of a tail page): ``(head_pfn << 2) | 1`` (bit 0 = PageTail,
  as in Linux);
* page_type (W=8 word 6, low 32 bits): ``0xffffffff`` = no type (``_mapcount == -1``);
  ``PGTY << 24`` for typed pages (6.12+: buddy 0xf0, offline 0xf1, table 0xf2, guard 0xf3,
  hugetlb 0xf4, slab 0xf5, zsmalloc 0xf6, unaccepted 0xf7, large_kmalloc 0xf8);
* ``_refcount`` (W=8 word 6, high 32 bits, signed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from memdesc.mm.mmzone import ZONE_NAMES, ZoneType

# ----------------------------------------------------------------- page->flags (word 0, W=8)
PG_locked = 0
PG_writeback = 1
PG_referenced = 2
PG_uptodate = 3
PG_dirty = 4
PG_lru = 5
PG_head = 6
PG_waiters = 7
PG_active = 8
PG_workingset = 9
PG_owner_priv_1 = 10
PG_owner_2 = 11
PG_arch_1 = 12
PG_reserved = 13
PG_private = 14
PG_private_2 = 15
PG_readahead = 16
PG_swapbacked = 17
PG_unevictable = 18
PG_dropbehind = 19
PG_mlocked = 20
PG_hwpoison = 21
NR_PAGEFLAGS = 22
PAGEFLAG_NAMES = (
    "locked", "writeback", "referenced", "uptodate", "dirty", "lru", "head", "waiters", "active",
    "workingset", "owner_priv_1", "owner_2", "arch_1", "reserved", "private", "private_2",
    "readahead", "swapbacked", "unevictable", "dropbehind", "mlocked", "hwpoison",
)
# | NODE (10) | ZONE (3) | ... | FLAGS |   (SPARSEMEM_VMEMMAP: no section bits)
NODES_WIDTH = 10
ZONES_WIDTH = 3
NODES_PGSHIFT = 64 - NODES_WIDTH
ZONES_PGSHIFT = NODES_PGSHIFT - ZONES_WIDTH
NODES_MASK = (1 << NODES_WIDTH) - 1
ZONES_MASK = (1 << ZONES_WIDTH) - 1

# ----------------------------------------------------------------- word indices (W=8)
W8_FLAGS = 0
W8_NEXT = 1  # lru.next / buddy_list.next / pcp_list.next / compound_head
W8_PREV = 2  # lru.prev / buddy_list.prev / pcp_list.prev
W8_MAPPING = 3
W8_INDEX = 4
W8_PRIVATE = 5  # buddy order when PageBuddy
W8_TYPE_REF = 6  # low 32: page_type / _mapcount; high 32: _refcount
W8_MEMCG = 7

LINK_PAGE = 0
LINK_TAIL = 1
LINK_HEAD = 2

PAGE_TYPE_NONE = 0xFFFFFFFF
PGTY_buddy = 0xF0
PGTY_offline = 0xF1
PGTY_table = 0xF2
PGTY_guard = 0xF3
PGTY_hugetlb = 0xF4
PGTY_slab = 0xF5
PGTY_zsmalloc = 0xF6
PGTY_unaccepted = 0xF7
PGTY_large_kmalloc = 0xF8
PGTY_NAMES = {
    PGTY_buddy: "buddy", PGTY_offline: "offline", PGTY_table: "table", PGTY_guard: "guard",
    PGTY_hugetlb: "hugetlb", PGTY_slab: "slab", PGTY_zsmalloc: "zsmalloc",
    PGTY_unaccepted: "unaccepted", PGTY_large_kmalloc: "large_kmalloc",
}
PAGE_TYPE_BUDDY = PGTY_buddy << 24

# ----------------------------------------------------------------- W=2 (radix) word 0
# | NODE (10) | ZONE (3) | ... | CPU (16, pcp pages) | ORDER (6) | TYPE (4) |
R2_TYPE_SHIFT = 0
R2_TYPE_MASK = 0xF
R2_ORDER_SHIFT = 4
R2_ORDER_MASK = 0x3F
R2_CPU_SHIFT = 10
R2_CPU_MASK = 0xFFFF
R2_NONE, R2_RESERVED, R2_FREE, R2_PCP, R2_ALLOC, R2_TAIL = 0, 1, 2, 3, 4, 5
R2_TYPE_NAMES = ("none", "reserved", "free", "pcp", "allocated", "tail")

# ----------------------------------------------------------------- W=1 (vmem) memdesc
# bits 0-3 type; payload bits 4-63.  Type table: kernelnewbies MatthewWilcox/Memdescs.
MD_TYPE_MASK = 0xF
MD_MISC, MD_FILE, MD_ANON, MD_KSM, MD_SLAB, MD_FREE, MD_MOVABLE, MD_VMALLOC = 0, 1, 2, 3, 4, 5, 6, 7
MD_BUDDY_ALLOC = 8  # "perhaps a different type id for allocated-buddy and free-buddy" (Wilcox)
MD_PAGETABLE, MD_NETPOOL, MD_HWPOISON = 9, 10, 11
# the Memdescs table has no id for zsmalloc or percpu: extended here (memdesc.mm.memdesc explains)
MD_ZSMALLOC, MD_PERCPU = 12, 13
MD_TYPE_NAMES = ("misc", "file", "anon", "ksm", "slab", "free", "movable", "vmalloc",
                 "buddy-alloc", "pagetable", "netpool", "hwpoison", "zsmalloc", "percpu", "14", "15")
# type 0 ("misc"/bare): bits 4-10 subtype, bit 11 mappable, bits 12-17 order, high bits zone/node
MD_SUBTYPE_SHIFT = 4
MD_SUBTYPE_MASK = 0x7F
MD_MAPPABLE_BIT = 11
MD_ORDER_SHIFT = 12
MD_ORDER_MASK = 0x3F
MD_SUB_RESERVED, MD_SUB_ZERO, MD_SUB_DRIVER, MD_SUB_VMALLOC, MD_SUB_GUARD, MD_SUB_OFFLINE = 0, 1, 2, 3, 4, 5
MD_SUB_HOLE = 9  # memdesc: pfn with no RAM behind it (model extension of the subtype table)
MD_SUB_UNINIT = 10  # RAM whose struct page is not initialised yet (deferred init; model extension)
MD_SUBTYPE_NAMES = {0: "reserved", 1: "zero", 2: "driver", 3: "vmalloc", 4: "guard", 5: "offline",
                    6: "kmalloc_large", 7: "exact", 8: "brd", 9: "hole", 10: "uninit"}


@dataclass(frozen=True)
class Field:
    name: str
    word: int
    lsb: int
    width: int
    doc: str

    def get(self, words) -> int:
        return (int(words[self.word]) >> self.lsb) & ((1 << self.width) - 1)


def zone_node_bits(node: int, zone_idx: int) -> int:
    return (node << NODES_PGSHIFT) | (zone_idx << ZONES_PGSHIFT)


def _link_str(v: int) -> str:
    if v == 0:
        return "0"
    kind = v & 3
    if kind == LINK_TAIL:
        return f"tail(head pfn {v >> 2:#x})"
    if kind == LINK_HEAD:
        return f"list_head({v >> 2})"
    return f"pfn {(v >> 2) - 1:#x}"


@dataclass(frozen=True)
class PageLayout:
    """One per-page word layout: its fields, and how its words are decoded and printed.

    ``decode(w, out)`` adds derived entries to the dict of raw field values; ``dump(pfn, w, d)``
    returns the lines of dump_page() before the extra ones.  A design names its layout
    (``Design.page_layout``); layouts are told apart by name, never by their word count."""

    name: str
    words: int
    doc: str
    fields: tuple[Field, ...]
    decode: Callable[[list[int], dict], None]
    dump: Callable[[int, list[int], dict], list[str]]


def _decode_struct_page(w: list[int], out: dict) -> None:
    out["flag_names"] = [PAGEFLAG_NAMES[i] for i in range(NR_PAGEFLAGS) if out["flags"] >> i & 1]
    pt = out["page_type"]
    out["type"] = PGTY_NAMES.get(pt >> 24, "?") if pt != PAGE_TYPE_NONE and (pt >> 24) >= 0xF0 else None
    rc = out["refcount"]
    out["refcount"] = rc - (1 << 32) if rc >= 1 << 31 else rc
    out["mapcount"] = (pt - (1 << 32) + 1) if (pt >= 1 << 31 and out["type"] is None) else 0
    out["next"] = _link_str(out["next"])
    out["prev"] = _link_str(out["prev"])


def _dump_struct_page(pfn: int, w: list[int], d: dict) -> list[str]:
    zname = d.get("zone_name", str(d["zone"]))
    names = "|".join(d["flag_names"] + [f"node={d['node']}", f"zone={d['zone']}"])
    lines = [f"page: refcount:{d['refcount']} mapcount:{d['mapcount']} "
             f"mapping:{d['mapping']:016x} index:{d['index']:#x} pfn:{pfn:#x}",
             f"flags: {w[0]:#x}({names})"]
    if d["type"]:
        lines.append(f"page_type: {d['page_type'] >> 24:x}({d['type']})")
    lines.append(f"buddy_list/pcp_list: next {d['next']} prev {d['prev']}  private:{d['private']:#x}"
                 f"  zone:{zname}")
    lines.append("raw: " + " ".join(f"{x:016x}" for x in w[:4]))
    lines.append("raw: " + " ".join(f"{x:016x}" for x in w[4:]))
    return lines


def _decode_radix2(w: list[int], out: dict) -> None:
    out["type"] = R2_TYPE_NAMES[out["type"]] if out["type"] < len(R2_TYPE_NAMES) else str(out["type"])


def _dump_radix2(pfn: int, w: list[int], d: dict) -> list[str]:
    return [f"page: type:{d['type']} order:{d['order']} pfn:{pfn:#x} node:{d['node']} "
            f"zone:{d.get('zone_name', d['zone'])}",
            f"word1: {w[1]:#x}",
            "raw: " + " ".join(f"{x:016x}" for x in w)]


def _decode_memdesc(w: list[int], out: dict) -> None:
    t = out["type"]
    out["type"] = MD_TYPE_NAMES[t]
    if t == MD_MISC:
        p = w[0]
        out["subtype"] = MD_SUBTYPE_NAMES.get((p >> MD_SUBTYPE_SHIFT) & MD_SUBTYPE_MASK, "?")
        out["mappable"] = bool(p >> MD_MAPPABLE_BIT & 1)
        out["order"] = (p >> MD_ORDER_SHIFT) & MD_ORDER_MASK
        out["zone"] = (p >> ZONES_PGSHIFT) & ZONES_MASK
        out["node"] = (p >> NODES_PGSHIFT) & NODES_MASK
    else:
        out["descriptor"] = w[0] & ~MD_TYPE_MASK


def _dump_memdesc(pfn: int, w: list[int], d: dict) -> list[str]:
    if d["type"] == "misc":
        first = (f"page: memdesc type:misc subtype:{d['subtype']} order:{d['order']} "
                 f"mappable:{int(d['mappable'])} pfn:{pfn:#x} node:{d['node']} "
                 f"zone:{d.get('zone_name', d['zone'])}")
    else:
        first = f"page: memdesc type:{d['type']} descriptor:{d['descriptor']:#x} pfn:{pfn:#x}"
    return [first, f"raw: {w[0]:016x}"]


#: the per-page word layouts, by name (a design names its own: Design.page_layout)
LAYOUTS: dict[str, PageLayout] = {}


def register_layout(layout: PageLayout) -> PageLayout:
    """Add a layout to LAYOUTS (a new design's module may define its own)."""
    if layout.name in LAYOUTS and LAYOUTS[layout.name] != layout:
        raise ValueError(f"page layout {layout.name!r} is already defined")
    if any(f.word >= layout.words for f in layout.fields):
        raise ValueError(f"page layout {layout.name!r}: a field lies beyond its {layout.words} words")
    LAYOUTS[layout.name] = layout
    return layout


register_layout(PageLayout("struct_page", 8, "Linux 6.18 struct page (64 bytes)", (
    Field("flags", 0, 0, NR_PAGEFLAGS, "PG_* bits (enum pageflags, 6.18 order)"),
    Field("zone", 0, ZONES_PGSHIFT, ZONES_WIDTH, "zone_idx within the node"),
    Field("node", 0, NODES_PGSHIFT, NODES_WIDTH, "NUMA node"),
    Field("next", 1, 0, 64, "buddy_list/pcp_list/lru .next, or compound_head|1 on tail pages"),
    Field("prev", 2, 0, 64, "buddy_list/pcp_list/lru .prev"),
    Field("mapping", 3, 0, 64, "address_space / anon_vma"),
    Field("index", 4, 0, 64, "page offset in mapping"),
    Field("private", 5, 0, 64, "buddy order when PageBuddy"),
    Field("page_type", 6, 0, 32, "page_type / _mapcount (0xffffffff = -1 = none)"),
    Field("refcount", 6, 32, 32, "_refcount"),
    Field("memcg_data", 7, 0, 64, "memcg pointer"),
), _decode_struct_page, _dump_struct_page))

register_layout(PageLayout("radix2", 2, "Kent Overstreet's two-word struct page", (
    Field("type", 0, R2_TYPE_SHIFT, 4, "none/reserved/free/pcp/allocated/tail"),
    Field("order", 0, R2_ORDER_SHIFT, 6, "block order (free, pcp, allocated head)"),
    Field("cpu", 0, R2_CPU_SHIFT, 16, "cpu of a pcp page"),
    Field("zone", 0, ZONES_PGSHIFT, ZONES_WIDTH, "zone_idx within the node"),
    Field("node", 0, NODES_PGSHIFT, NODES_WIDTH, "NUMA node"),
    Field("word1", 1, 0, 64, "free/pcp: index in the free-list deque; allocated: allocatee state; "
                             "tail: head pfn"),
), _decode_radix2, _dump_radix2))

register_layout(PageLayout("memdesc", 1, "Matthew Wilcox's one-word memdesc", (
    Field("type", 0, 0, 4, "memdesc type"),
    Field("payload", 0, 4, 60, "descriptor pointer (>> 4) or, for type 0, the bare-page fields"),
), _decode_memdesc, _dump_memdesc))


def _layout(layout: str | PageLayout) -> PageLayout:
    if isinstance(layout, PageLayout):
        return layout
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise ValueError(f"unknown page layout {layout!r} (known: {', '.join(LAYOUTS)})") from None


def describe_page(words, layout: str | PageLayout, zone_names: tuple[str, ...] | None = None) -> dict:
    """Decode one page's words (in ``layout``, a LAYOUTS name) into a dict of named fields."""
    lay = _layout(layout)
    w = [int(x) for x in np.atleast_1d(np.asarray(words, dtype=np.uint64))]
    if len(w) != lay.words:
        raise ValueError(f"page layout {lay.name!r} has {lay.words} words, got {len(w)}")
    out: dict = {"words": lay.words, "layout": lay.name}
    for f in lay.fields:
        out[f.name] = f.get(w)
    lay.decode(w, out)
    if zone_names is not None and "zone" in out and out["zone"] < len(zone_names):
        out["zone_name"] = zone_names[out["zone"]]
    return out


def dump_page(pfn: int, words, layout: str | PageLayout, zone_names: tuple[str, ...] | None = None,
              extra: dict | None = None) -> str:
    """Format a page like the kernel's dump_page() (mm/debug.c)."""
    lay = _layout(layout)
    d = describe_page(words, lay, zone_names)
    w = [int(x) for x in np.atleast_1d(np.asarray(words, dtype=np.uint64))]
    lines = lay.dump(pfn, w, d)
    for k, v in (extra or {}).items():
        lines.append(f"{k}: {v}")
    return "\n".join(lines)


def zone_names_for(zone_types: tuple[ZoneType, ...]) -> tuple[str, ...]:
    return tuple(ZONE_NAMES[z] for z in zone_types)
