"""Design primitives: how shared allocator code reaches a design's own data structures.

Theory
------
mm/page_alloc.c is written against a handful of operations on the zone's free memory and
on the state kept in struct page.  memdesc keeps that code in one place
(:mod:`memdesc.mm.page_alloc.core`) and lets each design supply those operations.  They
come in layers, from the workload's view down to a buddy allocator's list links:

* the **interface** (``pa_alloc``, ``pa_free``, ``pa_take``, ``pa_drain``): what workloads
  (churn, trace replay) call; a design usually registers core's entry points, wrapped
  where it keeps extra state (radix's node reserve, vmem's free-path marker);
* the **zone layer** (``pool_*``, ``pcp_add``/``pcp_pop``, ``mark_allocated``/``mark_freed``,
  ``pa_free_extent``): what core's shared zone code -- zonelists, watermarks, per-CPU
  lists, highatomic reserves, the slow path -- asks of the zone's free memory.  A design
  that is not a list buddy (vmem's segment arenas, LLFree's bitfields) implements these
  and reuses everything above them;
* the **buddy layer** (``list_*``, ``set_buddy``...): the free lists and PageBuddy state
  of a list buddy.  A design that registers all of them gets core's implementation of the
  zone layer and of exact placement for free (``core.BUDDY_DEFAULTS``): ``linux`` threads
  doubly linked lists through its 8-word struct page, ``radix`` keeps each list as a
  deque in an XArray, and results differ by the free-list structure alone;
* **exact placement** (``EXACT_PRIMITIVES``): what exact trace replay needs to put a real
  kernel's placement on a design;
* **typed memory** (``TYPED_PRIMITIVES``: ``pa_set_memdesc``, ``pa_clear_memdesc``,
  ``pa_page_memdesc``, ``pa_split_alloc``, ``pa_split_prepare``): what the descriptor layer
  (slab, folios) asks of the design's per-page words; every design has them.

The contract -- which primitives a design must register, which come by default, and the
declared attributes that go with them -- is :mod:`memdesc.mm.page_alloc.base`'s.

Each design keeps its state in a struct of numpy arrays (:mod:`memdesc._struct`).  A
primitive is a Python function ``f(state, *args)``; under numba, an ``@overload`` picks
the design's njit implementation *at compile time* from the state's struct type, so
shared kernels are specialised per design with no runtime dispatch.  Under
``NUMBA_DISABLE_JIT=1`` the same function dispatches on ``type(state)`` in Python.
"""

from __future__ import annotations

from numba.core.errors import TypingError
from numba.extending import overload

from memdesc.errors import ConfigError

#: state class (Python proxy class and numba struct type class) -> {primitive -> njit implementation}
_REGISTRY: dict[type, dict[str, object]] = {}

#: every primitive: name -> its doc (the call and what it does)
PRIMITIVES: dict[str, str] = {}
#: primitive name -> its layer ("interface", "zone", "buddy", "exact", "optional", "typed")
LAYER: dict[str, str] = {}


def forwarder(params: str, f):
    """``impl(<params>): return f(<params>)``: an overload's implementation calling ``f`` with
    the stub's exact parameters (numba matches them by name)."""
    ins: dict = {"f": f}
    exec(f"def impl({params}):\n    return f({params})\n", ins)  # noqa: S102  (fixed template)
    return ins["impl"]


def _missing(st_type, name: str):
    owner = _REGISTRY.get(st_type, {}).get("__design__", getattr(st_type, "__name__", str(st_type)))
    raise TypingError(f"design {owner} does not provide the primitive {name} ({PRIMITIVES[name]})")


def primitive(name: str, doc: str, layer: str):
    """Declare a design primitive of ``layer``; returns the function shared kernels call.

    ``doc`` starts with the call, e.g. ``"list_add(st, lid, pfn, tail): ..."``; the
    parameter names are taken from it, so the stub has the exact signature.
    """
    params = doc[doc.index("(") + 1:doc.index(")")].replace(" ", "")
    ns: dict = {"_REGISTRY": _REGISTRY, "name": name, "missing": _missing}
    # fixed templates: the Python stub, the overload typer, and the inlined implementation
    exec(f"def stub({params}):\n"  # noqa: S102
         f"    impl = _REGISTRY.get(type(st), {{}}).get(name)\n"
         f"    if impl is None:\n"
         f"        missing(type(st), name)\n"
         f"    return impl({params})\n"
         f"def typer({params}):\n"
         f"    impls = _REGISTRY.get(type(st))\n"
         f"    if impls is None:\n"
         f"        return None\n"
         f"    if name not in impls:\n"
         f"        missing(type(st), name)\n"
         f"    return make_impl(impls[name])\n", ns)

    ns["make_impl"] = lambda f: forwarder(params, f)
    stub = ns["stub"]
    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = doc
    overload(stub, prefer_literal=False)(ns["typer"])
    PRIMITIVES[name] = doc
    LAYER[name] = layer
    return stub


def layer(name: str) -> tuple[str, ...]:
    """The primitives of one layer, in declaration order."""
    return tuple(n for n, lay in LAYER.items() if lay == name)


def register(state_cls: type, impls: dict[str, object], design: str = "") -> None:
    """Register implementations of the primitives for a design's state struct class.

    Called by :func:`memdesc.mm.page_alloc.base.register_design`, which first fills in
    the defaults and checks the contract; unknown names are an error here."""
    unknown = sorted(set(impls) - set(PRIMITIVES))
    if unknown:
        raise ConfigError(f"{state_cls.__name__} registers unknown primitives: {', '.join(unknown)}")
    table = dict(impls)
    table["__design__"] = design or state_cls.__name__
    _REGISTRY[state_cls] = table
    _REGISTRY[state_cls._numba_type_class] = table


def impl(state_type: type, name: str):
    """The implementation of primitive ``name`` the design whose state class is ``state_type``
    runs (registered or by default), or None."""
    return _REGISTRY.get(state_type, {}).get(name)


def has(state_type: type, *names: str) -> bool:
    """Whether the design whose state class (or numba struct type class) is ``state_type``
    has all these primitives (registered or by default)."""
    impls = _REGISTRY.get(state_type)
    return impls is not None and all(n in impls for n in names)


# ----------------------------------------------------------------- the interface
# What workloads (churn, trace replay) call; every design provides these.

pa_alloc = primitive("pa_alloc", "pa_alloc(st, gfp, order, cpu) -> pfn, or -1 if the allocation fails.",
                     "interface")
pa_free = primitive("pa_free", "pa_free(st, pfn, order, cpu) -> 0, or a negative error code (state unchanged).",
                    "interface")
pa_take = primitive("pa_take", "pa_take(st, pfn, order) -> 0, or E_BUSY: take this exact free block "
                    "(take_page_off_buddy).", "interface")
pa_drain = primitive("pa_drain", "pa_drain(st): drain every per-cpu list back to the allocator.", "interface")

# ----------------------------------------------------------------- the zone layer
# What core's shared zone code (zonelist walk, watermarks, pcp lists, highatomic, slow path)
# asks of a zone's free memory.  Pages handed between these calls are in *no state* (off
# every list, not yet an allocation) or allocations; ``owner`` is kept by the caller.

pool_prepare = primitive(
    "pool_prepare", "pool_prepare(st, z, order) -> 0, or E_META: before taking one block from zone z, "
    "reserve the metadata the taking may need (vmem: descriptors); E_META fails the whole allocation at once, "
    "nothing changed.", "zone")
pool_rmqueue = primitive(
    "pool_rmqueue", "pool_rmqueue(st, z, order, mt, alloc_flags, mode, cpu) -> (pfn, mode): __rmqueue(): "
    "a block of 2^order pages for migratetype mt from zone z's free memory, fallbacks (CMA, claim, steal) "
    "included; pfn -1 when none.  ``mode`` is the fallback level a bulk refill reached (enum rmqueue_mode; "
    "a design may ignore it and return it unchanged).", "zone")
pool_rmqueue_smallest = primitive(
    "pool_rmqueue_smallest", "pool_rmqueue_smallest(st, z, order, mt, cpu) -> pfn or -1: "
    "__rmqueue_smallest(): a block from exactly mt's free memory, no fallback (highatomic reserves).", "zone")
pool_free = primitive(
    "pool_free", "pool_free(st, z, pfn, order, fpi): the block [pfn, 2^order), an allocation or taken off a "
    "pcp list, returns to zone z's free memory, merging (split_large_buddy / __free_one_page; fpi FPI_TO_TAIL "
    "asks for the tail of the lists).", "zone")
pool_first_free = primitive(
    "pool_first_free", "pool_first_free(st, z, order, mt) -> pfn or -1: get_page_from_free_area(): a free "
    "block of this order (size class) for mt, as the watermark test and highatomic unreserve look for one "
    "(nr_free[z, order] must count them).", "zone")
pool_move_freepages_block = primitive(
    "pool_move_freepages_block", "pool_move_freepages_block(st, z, pfn, old_mt, new_mt) -> free pages moved, "
    "or -1 (nothing changed): move_freepages_block(): retype pfn's pageblock, its free pages with it.", "zone")
pool_retype_block = primitive(
    "pool_retype_block", "pool_retype_block(st, z, pfn, order, old_mt, new_mt) -> True, or False if the "
    "design cannot (nothing changed): retype the pageblocks of the block of order >= pageblock_order at pfn, "
    "allocated or free (a free one moves to new_mt's free memory).", "zone")
pcp_add = primitive(
    "pcp_add", "pcp_add(st, cpu, z, pindex, pfn, tail): list_add() of the block at pfn (an allocation, or "
    "just taken from the pool) to the head or tail of cpu's pcp list pindex of zone z.", "zone")
pcp_pop = primitive(
    "pcp_pop", "pcp_pop(st, cpu, z, pindex, tail) -> pfn or -1: take the head (allocation) or the tail "
    "(free_pcppages_bulk) of that pcp list; -1 if it is empty.", "zone")
mark_allocated = primitive(
    "mark_allocated", "mark_allocated(st, pfn, order, gfp): post_alloc_hook/prep_new_page: per-page state of "
    "a new allocation (a no-op for a design whose pool already wrote it).", "zone")
mark_freed = primitive(
    "mark_freed", "mark_freed(st, pfn, order): free_pages_prepare(): clear an allocation's per-page state "
    "before it goes to a pcp list or the pool (a no-op where the pool rewrites it).", "zone")
pa_free_extent = primitive(
    "pa_free_extent", "pa_free_extent(st, pfn) -> (start, end) of the free block holding pfn, or (-1, -1): "
    "find_free_block_containing() (double-free checks, inspect, exact replay).", "zone")

# ----------------------------------------------------------------- optional, with defaults for every design
pcp_free_bulk = primitive(
    "pcp_free_bulk", "pcp_free_bulk(st, z, count, cpu, pindex): free_pcppages_bulk() from outside a free (the pcp "
    "high decay of vmstat_update); default core.free_pcppages_bulk.", "optional")
pa_own_page = primitive(
    "pa_own_page", "pa_own_page(st, pfn) -> True if the allocation at pfn is the design's own metadata (radix "
    "tree-node pages, vmem descriptor pages): frees of it are refused, replay never touches it; default False.",
    "optional")
pa_zone_free_area = primitive(
    "pa_zone_free_area", "pa_zone_free_area(st, z) -> int64[NR_PAGE_ORDERS]: zone z's free blocks per order as "
    "/proc/buddyinfo counts them (free_area[order].nr_free), what fill_contig_page_info() reads for the "
    "fragmentation index and score; default the row nr_free[z] (a design whose nr_free counts something else, "
    "LLFree's child size classes, scans its own state).", "optional")

# ----------------------------------------------------------------- the buddy layer
# Lists are identified by a list id (see core.buddy_lid / core.pcp_lid); pfns are int64.

list_add = primitive("list_add", "list_add(st, lid, pfn, tail): put pfn on list lid (head or tail).", "buddy")
list_del = primitive("list_del", "list_del(st, lid, pfn): take pfn off list lid.", "buddy")
list_first = primitive("list_first", "list_first(st, lid) -> first pfn on lid or -1.", "buddy")
list_last = primitive("list_last", "list_last(st, lid) -> last pfn on lid or -1.", "buddy")
list_next = primitive("list_next", "list_next(st, lid, pfn) -> pfn after pfn on lid or -1.", "buddy")
set_buddy = primitive("set_buddy", "set_buddy(st, pfn, order): mark pfn head of a free block (PageBuddy).", "buddy")
clear_buddy = primitive("clear_buddy", "clear_buddy(st, pfn): clear PageBuddy and the order.", "buddy")
is_buddy = primitive("is_buddy", "is_buddy(st, pfn) -> PageBuddy(pfn).", "buddy")
buddy_order = primitive("buddy_order", "buddy_order(st, pfn) -> order of the free block at pfn.", "buddy")
mark_reserved = primitive("mark_reserved", "mark_reserved(st, pfn, kind): a reserved page or a hole.", "buddy")


# ----------------------------------------------------------------- exact placement
# What exact trace replay (memdesc.sim.replay_kernels) needs to put a real kernel's placement on a
# design.  Pages in *no state* have been taken out of the pool, off a pcp list or out of an
# allocation and wait for the state the event gives them; a design may keep what it needs for them
# (vmem keeps the allocation's descriptor).  A buddy design gets core's implementations.

pa_free_range = primitive("pa_free_range", "pa_free_range(st, start, end, fpi) -> 0 or a negative error: free the "
                          "pages [start, end), in no state, to the pool at their pfns, merging (free_one_page / "
                          "__free_pages_memory).", "exact")
pa_set_pageblock_type = primitive("pa_set_pageblock_type", "pa_set_pageblock_type(st, z, pfn, old_mt, new_mt) -> "
                                  "free pages moved: retype pfn's pageblock with its free pages "
                                  "(__move_freepages_block).", "exact")
pa_mark_allocated = primitive("pa_mark_allocated", "pa_mark_allocated(st, pfn, order, gfp): the pages "
                              "[pfn, 2^order), in no state, become one allocation (prep_new_page).", "exact")
pa_mark_unallocated = primitive("pa_mark_unallocated", "pa_mark_unallocated(st, pfn, order): the allocation at "
                                "pfn goes to no state without joining the pool (free_pages_prepare).", "exact")
pa_split = primitive("pa_split", "pa_split(st, head, horder, pfn, order) -> True, or False if the design cannot: "
                     "split_page(): the allocation [head, 2^horder) becomes buddy pieces, [pfn, 2^order) one of "
                     "them (the caller keeps the page_owner entries).", "exact")
pa_pcp_link = primitive("pa_pcp_link", "pa_pcp_link(st, cpu, z, pindex, pfn, tail): put the block at pfn (in no "
                        "state) on pcp list pindex of cpu, head or tail.", "exact")
pa_pcp_unlink = primitive("pa_pcp_unlink", "pa_pcp_unlink(st, cpu, z, pindex, pfn): take the block at pfn off "
                          "its pcp list, to no state.", "exact")
pa_online_range = primitive("pa_online_range", "pa_online_range(st, start, end) -> 0 or a negative error: pages "
                            "that were not there (unaccepted, offline) join the pool free (__free_pages_core, "
                            "accept_page).", "exact")


# ----------------------------------------------------------------- typed memory (memory descriptors)
# What the descriptor layer (memdesc.mm.slab for slab pages, memdesc.mm.folio for folios and every
# other typed allocation) needs from a design: how the design's per-page words say "these pages are
# memory of type T described by descriptor D", and how an allocation is split in place.  Every
# design has them: a design registers pa_set_memdesc/pa_clear_memdesc/pa_page_memdesc (the
# implementations of the three designs are in memdesc.mm.page_alloc.typed); a list buddy gets
# pa_split_alloc/pa_split_prepare from core.BUDDY_DEFAULTS.

pa_set_memdesc = primitive("pa_set_memdesc", "pa_set_memdesc(st, pfn, order, mdtype, desc) -> cookie: the "
                           "allocation [pfn, 2^order) becomes typed memory of memdesc type mdtype described by "
                           "the descriptor at physical address desc (-1: none, the design overlays it on struct "
                           "page or the type needs none); writes the design's per-page words and returns what "
                           "pa_clear_memdesc will need (>= 0).", "typed")
pa_clear_memdesc = primitive("pa_clear_memdesc", "pa_clear_memdesc(st, pfn, order, cookie): undo pa_set_memdesc "
                             "before the allocation is freed or split (never allocates).", "typed")
pa_page_memdesc = primitive("pa_page_memdesc", "pa_page_memdesc(st, pfn) -> (mdtype, desc): what a pfn walker "
                            "reads from the design's words of page pfn: the memdesc type (-1: untyped) and the "
                            "descriptor address (-1: none or overlaid).", "typed")
pa_split_alloc = primitive("pa_split_alloc", "pa_split_alloc(st, head, horder, pfn, order, gfp) -> True, or False "
                           "(nothing changed) if the design cannot: split_page(): the allocation [head, 2^horder) "
                           "becomes allocations of decreasing order (buddy halves, __GFP_COMP ones if gfp has it), "
                           "[pfn, 2^order) one of them; page_owner entries included.", "typed")
pa_split_prepare = primitive("pa_split_prepare", "pa_split_prepare(st, pieces) -> True, or False if the design "
                             "cannot have what splitting allocations into ``pieces`` more allocations needs (vmem: "
                             "one struct buddy each, reserved with fault injection): after True, the pa_split_alloc "
                             "calls of that split do not fail.", "typed")

# ----------------------------------------------------------------- compaction's free scanner
# What mm/compaction.py needs to take free pages as migration targets.  Not required of every
# design: linux, radix and vmem register them (memdesc.mm.page_alloc.typed), llfree its own
# (memdesc.mm.page_alloc.llfree_zone); a design without them cannot be compacted (memdesc compact
# refuses it by name).

pa_free_block = primitive("pa_free_block", "pa_free_block(st, pfn) -> order of the free block that starts at pfn "
                          "and can be taken whole (buddy designs: PageBuddy's buddy_order; vmem: the largest "
                          "aligned block at pfn inside its free segment; llfree: the largest aligned block at pfn "
                          "whose frames are free in the bitfields), or -1: what isolate_freepages_block() and the "
                          "migrate scanner read at a pfn.", "compaction")
pa_isolate_free = primitive("pa_isolate_free", "pa_isolate_free(st, pfn, order) -> 0, or a negative error (nothing "
                            "changed): __isolate_free_page() + post_alloc_hook(): the free block [pfn, 2^order) "
                            "leaves the free lists and becomes one movable allocation of that order, which the "
                            "caller splits (pa_split_alloc), types (pa_set_memdesc) or frees (pa_free).",
                            "compaction")

#: the layers, by name
INTERFACE = layer("interface")
ZONE_PRIMITIVES = layer("zone")
OPTIONAL = layer("optional")
#: the typed-memory primitives (every design has all of them)
TYPED_PRIMITIVES = layer("typed")
BUDDY_PRIMITIVES = layer("buddy")
#: the exact-placement primitives (exact replay needs all of them; pa_free_extent is a zone primitive)
EXACT_PRIMITIVES = ("pa_free_extent", *layer("exact"))
#: the compaction primitives (a design that registers them can be compacted)
COMPACTION_PRIMITIVES = layer("compaction")
#: what every design must end up with (registered or by default)
REQUIRED = (*INTERFACE, *ZONE_PRIMITIVES, *OPTIONAL, *TYPED_PRIMITIVES)
