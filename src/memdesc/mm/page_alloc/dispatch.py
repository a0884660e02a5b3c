"""Design primitives: how shared allocator code reaches a design's own data structures.

Theory
------
mm/page_alloc.c is written against a handful of operations on free lists and on the
state kept in struct page (``list_add``/``list_del`` on ``buddy_list`` and ``pcp_list``,
``set_buddy_order``, ``PageBuddy``, ``buddy_order``...).  memdesc keeps that code in one
place (:mod:`memdesc.mm.page_alloc.core`) and lets each design supply those operations:
``linux`` threads doubly linked lists through its 8-word struct page, ``radix`` keeps each
list as a deque in an XArray, and so on.  Differences in results then come from the
free-list structure alone.

Each design keeps its state in a struct of numpy arrays (:mod:`memdesc._struct`).  A
primitive is a Python function ``f(state, *args)``; under numba, an ``@overload`` picks
the design's njit implementation *at compile time* from the state's struct type, so
shared kernels are specialised per design with no runtime dispatch.  Under
``NUMBA_DISABLE_JIT=1`` the same function dispatches on ``type(state)`` in Python.
"""

from __future__ import annotations

from numba.extending import overload

from memdesc.errors import ConfigError

#: state class (Python proxy class and numba struct type class) -> {primitive -> njit implementation}
_REGISTRY: dict[type, dict[str, object]] = {}

#: every primitive, and those every design must provide (checked by :func:`register`);
#: the others are needed only by designs built on the shared buddy code of core.py
PRIMITIVES: dict[str, str] = {}
REQUIRED: set[str] = set()


def forwarder(params: str, f):
    """``impl(<params>): return f(<params>)``: an overload's implementation calling ``f`` with
    the stub's exact parameters (numba matches them by name)."""
    ins: dict = {"f": f}
    exec(f"def impl({params}):\n    return f({params})\n", ins)  # noqa: S102  (fixed template)
    return ins["impl"]


def primitive(name: str, doc: str, required: bool = False):
    """Declare a design primitive; returns the function shared kernels call.

    ``doc`` starts with the call, e.g. ``"list_add(st, lid, pfn, tail): ..."``; the
    parameter names are taken from it, so the stub has the exact signature.
    """
    params = doc[doc.index("(") + 1:doc.index(")")].replace(" ", "")
    ns: dict = {"_REGISTRY": _REGISTRY, "name": name}
    # fixed templates: the Python stub, the overload typer, and the inlined implementation
    exec(f"def stub({params}):\n    return _REGISTRY[type(st)][name]({params})\n"  # noqa: S102
         f"def typer({params}):\n"
         f"    impls = _REGISTRY.get(type(st))\n"
         f"    if impls is None:\n"
         f"        return None\n"
         f"    return make_impl(impls[name])\n", ns)

    ns["make_impl"] = lambda f: forwarder(params, f)
    stub = ns["stub"]
    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = doc
    overload(stub, prefer_literal=False)(ns["typer"])
    PRIMITIVES[name] = doc
    if required:
        REQUIRED.add(name)
    return stub


def register(state_cls: type, impls: dict[str, object]) -> None:
    """Register a design's implementations of the primitives for its state struct class."""
    missing = sorted(REQUIRED - set(impls))
    if missing:
        raise ConfigError(f"{state_cls.__name__} lacks primitives: {', '.join(missing)}")
    _REGISTRY[state_cls] = dict(impls)
    _REGISTRY[state_cls._numba_type_class] = dict(impls)


# ----------------------------------------------------------------- the design interface
# What workloads (churn, trace replay) call; every design provides these.

pa_alloc = primitive("pa_alloc", "pa_alloc(st, gfp, order, cpu) -> pfn, or -1 if the allocation fails.",
                     required=True)
pa_free = primitive("pa_free", "pa_free(st, pfn, order, cpu) -> 0, or a negative error code (state unchanged).",
                    required=True)
pa_take = primitive("pa_take", "pa_take(st, pfn, order) -> 0, or E_BUSY: take this exact free block "
                    "(take_page_off_buddy).", required=True)
pa_drain = primitive("pa_drain", "pa_drain(st): drain every per-cpu list back to the allocator.",
                     required=True)

pcp_free_bulk = primitive("pcp_free_bulk", "pcp_free_bulk(st, z, count, cpu, pindex): free_pcppages_bulk() - "
                          "return count pages of cpu's pcp lists of zone z to the allocator (optional).")


def has(state_type: type, *names: str) -> bool:
    """Whether the design whose state class (or numba struct type class) is ``state_type``
    registered all these primitives."""
    impls = _REGISTRY.get(state_type)
    return impls is not None and all(n in impls for n in names)


# ----------------------------------------------------------------- buddy primitives
# Lists are identified by a list id (see core.buddy_lid / core.pcp_lid); pfns are int64.

list_add = primitive("list_add", "list_add(st, lid, pfn, tail): put pfn on list lid (head or tail).")
list_del = primitive("list_del", "list_del(st, lid, pfn): take pfn off list lid.")
list_first = primitive("list_first", "list_first(st, lid) -> first pfn on lid or -1.")
list_last = primitive("list_last", "list_last(st, lid) -> last pfn on lid or -1.")
list_next = primitive("list_next", "list_next(st, lid, pfn) -> pfn after pfn on lid or -1.")
set_buddy = primitive("set_buddy", "set_buddy(st, pfn, order): mark pfn head of a free block (PageBuddy).")
clear_buddy = primitive("clear_buddy", "clear_buddy(st, pfn): clear PageBuddy and the order.")
is_buddy = primitive("is_buddy", "is_buddy(st, pfn) -> PageBuddy(pfn).")
buddy_order = primitive("buddy_order", "buddy_order(st, pfn) -> order of the free block at pfn.")
mark_allocated = primitive(
    "mark_allocated",
    "mark_allocated(st, pfn, order, gfp): post_alloc_hook/prep_new_page state of a new allocation.")
mark_freed = primitive("mark_freed", "mark_freed(st, pfn, order): free_pages_prepare: clear allocation state.")
mark_reserved = primitive("mark_reserved", "mark_reserved(st, pfn, kind): a reserved page or a hole.")


# ----------------------------------------------------------------- exact placement (optional)
# What exact trace replay (memdesc.sim.replay_kernels) needs to put a real kernel's placement on a
# design.  Pages in *no state* have been taken out of the pool, off a pcp list or out of an
# allocation and wait for the state the event gives them; a design may keep what it needs for them
# (vmem keeps the allocation's descriptor).  Designs built on the buddy lists of core.py need not
# register these: replay_kernels then uses core.py's buddy code (chosen at compile time).

pa_free_extent = primitive("pa_free_extent", "pa_free_extent(st, pfn) -> (start, end) of the free block holding "
                           "pfn, or (-1, -1): find_free_block_containing() (optional).")
pa_free_range = primitive("pa_free_range", "pa_free_range(st, start, end, fpi) -> 0 or a negative error: free the "
                          "pages [start, end), in no state, to the pool at their pfns, merging (free_one_page / "
                          "__free_pages_memory; optional).")
pa_set_pageblock_type = primitive("pa_set_pageblock_type", "pa_set_pageblock_type(st, z, pfn, old_mt, new_mt) -> "
                                  "free pages moved: retype pfn's pageblock with its free pages "
                                  "(__move_freepages_block; optional).")
pa_mark_allocated = primitive("pa_mark_allocated", "pa_mark_allocated(st, pfn, order, gfp): the pages "
                              "[pfn, 2^order), in no state, become one allocation (prep_new_page; optional).")
pa_mark_unallocated = primitive("pa_mark_unallocated", "pa_mark_unallocated(st, pfn, order): the allocation at "
                                "pfn goes to no state without joining the pool (free_pages_prepare; optional).")
pa_split = primitive("pa_split", "pa_split(st, head, horder, pfn, order) -> True, or False if the design cannot: "
                     "split_page(): the allocation [head, 2^horder) becomes buddy pieces, [pfn, 2^order) one of "
                     "them (the caller keeps the page_owner entries; optional).")
pa_pcp_link = primitive("pa_pcp_link", "pa_pcp_link(st, cpu, z, pindex, pfn, tail): put the block at pfn (in no "
                        "state) on pcp list pindex of cpu, head or tail (optional).")
pa_pcp_unlink = primitive("pa_pcp_unlink", "pa_pcp_unlink(st, cpu, z, pindex, pfn): take the block at pfn off "
                          "its pcp list, to no state (optional).")
pa_online_range = primitive("pa_online_range", "pa_online_range(st, start, end) -> 0 or a negative error: pages "
                            "that were not there (unaccepted, offline) join the pool free (__free_pages_core, "
                            "accept_page; optional).")

#: the exact-placement primitives (a design registers all of them or none)
EXACT_PRIMITIVES = ("pa_free_extent", "pa_free_range", "pa_set_pageblock_type", "pa_mark_allocated",
                    "pa_mark_unallocated", "pa_split", "pa_pcp_link", "pa_pcp_unlink", "pa_online_range")


# ----------------------------------------------------------------- typed memory (memory descriptors)
# What the descriptor layer (memdesc.mm.slab for slab pages, memdesc.mm.folio for folios and every
# other typed allocation) needs from a design: how the design's per-page words say "these pages are
# memory of type T described by descriptor D", and how an allocation is split in place.  Every
# design registers them (memdesc.mm.page_alloc.typed until the designs carry them themselves).

pa_set_memdesc = primitive("pa_set_memdesc", "pa_set_memdesc(st, pfn, order, mdtype, desc) -> cookie: the "
                           "allocation [pfn, 2^order) becomes typed memory of memdesc type mdtype described by "
                           "the descriptor at physical address desc (-1: none, the design overlays it on struct "
                           "page or the type needs none); writes the design's per-page words and returns what "
                           "pa_clear_memdesc will need (>= 0).")
pa_clear_memdesc = primitive("pa_clear_memdesc", "pa_clear_memdesc(st, pfn, order, cookie): undo pa_set_memdesc "
                             "before the allocation is freed or split (never allocates).")
pa_page_memdesc = primitive("pa_page_memdesc", "pa_page_memdesc(st, pfn) -> (mdtype, desc): what a pfn walker "
                            "reads from the design's words of page pfn: the memdesc type (-1: untyped) and the "
                            "descriptor address (-1: none or overlaid).")
pa_split_alloc = primitive("pa_split_alloc", "pa_split_alloc(st, head, horder, pfn, order, gfp) -> True, or False "
                           "(nothing changed) if the design cannot: split_page(): the allocation [head, 2^horder) "
                           "becomes allocations of decreasing order (buddy halves, __GFP_COMP ones if gfp has it), "
                           "[pfn, 2^order) one of them; page_owner entries included.")

pa_split_prepare = primitive("pa_split_prepare", "pa_split_prepare(st, pieces) -> True, or False if the design "
                             "cannot have what splitting allocations into ``pieces`` more allocations needs (vmem: "
                             "one struct buddy each, reserved with fault injection): after True, the pa_split_alloc "
                             "calls of that split do not fail.")

#: the typed-memory primitives (every design registers all of them)
TYPED_PRIMITIVES = ("pa_set_memdesc", "pa_clear_memdesc", "pa_page_memdesc", "pa_split_alloc", "pa_split_prepare")

# ----------------------------------------------------------------- compaction's free scanner
# What mm/compaction.py needs to take free pages as migration targets on any design
# (registered by memdesc.mm.page_alloc.typed for linux, radix and vmem).

pa_free_block = primitive("pa_free_block", "pa_free_block(st, pfn) -> order of the free block that starts at pfn "
                          "and can be taken whole (buddy designs: PageBuddy's buddy_order; vmem: the largest "
                          "aligned block at pfn inside its free segment), or -1: what isolate_freepages_block() "
                          "and the migrate scanner read at a pfn.")
pa_isolate_free = primitive("pa_isolate_free", "pa_isolate_free(st, pfn, order) -> 0, or a negative error (nothing "
                            "changed): __isolate_free_page() + post_alloc_hook(): the free block [pfn, 2^order) "
                            "leaves the free lists and becomes one movable allocation of that order, which the "
                            "caller splits (pa_split_alloc), types (pa_set_memdesc) or frees (pa_free).")
#: the compaction primitives
COMPACTION_PRIMITIVES = ("pa_free_block", "pa_isolate_free")


def extend(state_cls: type, impls: dict[str, object]) -> None:
    """Add primitives to a design registered before (for primitives implemented outside the
    design's module)."""
    for key in (state_cls, state_cls._numba_type_class):
        if key not in _REGISTRY:
            raise ConfigError(f"{state_cls.__name__} is not a registered design state")
        _REGISTRY[key].update(impls)
