"""The XArray: Linux's ``lib/xarray.c`` as a Python library over numba kernels.

Theory statement
----------------
An :class:`XArray` maps every index ``0 .. 2**64-1`` (an unsigned long) to an
entry, NULL (``None``) by default.  Entries are Python objects or *value
entries* (ints ``0 .. LONG_MAX``, the kernel's ``xa_mk_value``).  The tree, its
marks, multi-index entries, allocating arrays and the ``xa_state`` cursor are
those of the kernel; the algorithms are ports of ``lib/xarray.c`` in
:mod:`memdesc.lib._xarray_kernels`, whose docstring states the invariants.
This module only translates: Python objects to tagged entries (an object table
per array, swept when it outgrows the tree), Python ints to 64-bit patterns,
kernel results to Python results, and ``-ENOMEM`` into "get nodes and retry".

Nodes
-----
Nodes (576 bytes each, as ``sizeof(struct xa_node)``: 7 per 4 KiB page) live in
an :class:`XaPool`, which many arrays may share (a page allocator keeps one
XArray per free list in one pool).  Kernels never allocate: when an operation
needs nodes that the pool's free stack lacks, the kernel returns ``-ENOMEM``
without changing anything, and the pool asks its *node source* for them and
the operation is retried -- the ``xas_nomem()`` loop.  The default source grows
the pool's arrays; a pluggable source (``alloc_node() -> id | None``,
``free_node(id)``) lets a modelled slab supply every node, so every node is a
counted allocation; freed nodes are then handed back to it after each
operation.  A source that returns None makes the operation raise
:class:`XaNoMemory`.

Two API styles
--------------
Methods named after kernel functions (``store``, ``load``, ``erase``,
``insert``, ``cmpxchg``, ``reserve``, ``release``, ``alloc``,
``alloc_cyclic``, ``store_range``, ``get_order``, ``find``, ``find_after``,
``set_mark`` ...) return what the kernel returns, including negative errnos
(``insert`` returns ``-EBUSY``); out-parameters become tuple elements
(``find`` returns ``(entry, index)``, ``alloc`` returns ``(err, id)``).  The
Pythonic methods (``xa[i]``, ``del xa[i]``, ``items()``, ``len(xa)``) raise
:class:`~memdesc.errors.MemdescError` subclasses.  :class:`XaState` is the
advanced API (``xas_*``).  Nothing here is thread-safe: the caller holds the
"xa_lock".
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from memdesc._numba import JIT_DISABLED
from memdesc.errors import InvariantViolation, MemdescError
from memdesc.lib import _xarray_kernels as K
from memdesc.lib._xarray_kernels import (  # re-exported constants
    EBUSY,
    EEXIST,
    EINVAL,
    ENOMEM,
    ENOSPC,
    LONG_MAX,
    ULONG_MAX,
    XA_CHUNK_MASK,
    XA_CHUNK_SHIFT,
    XA_CHUNK_SIZE,
    XA_FLAGS_ACCOUNT,
    XA_FLAGS_ALLOC,
    XA_FLAGS_ALLOC1,
    XA_FLAGS_ALLOC_WRAPPED,
    XA_FLAGS_LOCK_BH,
    XA_FLAGS_LOCK_IRQ,
    XA_FLAGS_TRACK_FREE,
    XA_FLAGS_ZERO_BUSY,
    XA_FREE_MARK,
    XA_MARK_0,
    XA_MARK_1,
    XA_MARK_2,
    XA_MAX_MARKS,
    XA_NODE_BYTES,
    XA_PRESENT,
    XAS_BOUNDS,
    XAS_RESTART,
)

__all__ = [
    "XArray", "XaState", "XaPool", "XaNodeSource", "XaNodeView", "XaInternal",
    "XaError", "XaNoMemory", "XaInvalidEntry", "XaInvalidIndex", "XaNotPresent", "XaNodeSourceError",
    "XA_ZERO_ENTRY", "XA_RETRY_ENTRY", "XA_LIMIT", "xa_limit_32b", "xa_limit_31b", "xa_limit_16b",
    "xa_mk_value", "xa_to_value", "xa_is_value", "XA_FLAGS_MARK", "NODES_PER_PAGE",
    "EBUSY", "EEXIST", "EINVAL", "ENOMEM", "ENOSPC", "LONG_MAX", "ULONG_MAX", "UINT_MAX",
    "XA_CHUNK_MASK", "XA_CHUNK_SHIFT", "XA_CHUNK_SIZE", "XA_FLAGS_ACCOUNT", "XA_FLAGS_ALLOC",
    "XA_FLAGS_ALLOC1", "XA_FLAGS_ALLOC_WRAPPED", "XA_FLAGS_LOCK_BH", "XA_FLAGS_LOCK_IRQ",
    "XA_FLAGS_TRACK_FREE", "XA_FLAGS_ZERO_BUSY", "XA_FREE_MARK", "XA_MARK_0", "XA_MARK_1", "XA_MARK_2",
    "XA_MAX_MARKS", "XA_NODE_BYTES", "XA_PRESENT", "XAS_BOUNDS", "XAS_RESTART",
]

MASK64 = (1 << 64) - 1
UINT_MAX = (1 << 32) - 1
NODES_PER_PAGE = 4096 // XA_NODE_BYTES  # 7
_ENOMEM_ENTRY = (-ENOMEM << 2) | 2
_EINVAL_ENTRY = (-EINVAL << 2) | 2
_OLD_MISSING = -4  # a pointer-shaped entry no tree holds (tags are positive)


def _enomem_entry(r: Any) -> bool:
    return r == _ENOMEM_ENTRY


def _enomem_int(r: Any) -> bool:
    return r == -ENOMEM


def _enomem_pair(r: Any) -> bool:
    return r[0] == -ENOMEM


def _never(r: Any) -> bool:
    return False


_KNOWN_FLAGS = (K.XA_FLAGS_LOCK_IRQ | K.XA_FLAGS_LOCK_BH | K.XA_FLAGS_TRACK_FREE | K.XA_FLAGS_ZERO_BUSY
                | K.XA_FLAGS_ALLOC_WRAPPED | K.XA_FLAGS_ACCOUNT
                | sum(1 << (K.GFP_BITS_SHIFT + m) for m in range(XA_MAX_MARKS)))


def XA_FLAGS_MARK(mark: int) -> int:  # noqa: N802  (kernel macro name)
    return 1 << (K.GFP_BITS_SHIFT + _mark(mark))


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------

class XaError(MemdescError):
    """Base class of XArray errors."""


class XaNoMemory(XaError, MemoryError):
    """The node source could not supply the nodes an operation needs (-ENOMEM)."""


class XaInvalidEntry(XaError, ValueError):
    """An entry the XArray cannot store (an internal entry through the normal API)."""


class XaInvalidIndex(XaError, ValueError):
    """An index that is not an unsigned long, a bad order, mark, range or limit."""


class XaNotPresent(XaError, KeyError):
    """``xa[i]`` or ``del xa[i]`` of an index that holds no entry."""


class XaNodeSourceError(XaError):
    """A node source handed out a node id that is invalid or already in the pool."""


# ---------------------------------------------------------------------------------------------
# entries
# ---------------------------------------------------------------------------------------------

class XaInternal:
    """An internal entry the advanced API can see (``XA_ZERO_ENTRY``, ``XA_RETRY_ENTRY``,
    sibling or node entries).  Compared by value."""

    __slots__ = ("raw",)

    def __init__(self, raw: int):
        self.raw = int(raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, XaInternal) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(("XaInternal", self.raw))

    def __repr__(self) -> str:
        if self.raw == K.XA_ZERO_ENTRY:
            return "XA_ZERO_ENTRY"
        if self.raw == K.XA_RETRY_ENTRY:
            return "XA_RETRY_ENTRY"
        if self.raw > 4096:
            return f"XaInternal(node {(self.raw >> 2) - K.XA_NODE_BIAS})"
        if 0 <= self.raw < K.XA_SIBLING_LIMIT:
            return f"XaInternal(sibling {self.raw >> 2})"
        return f"XaInternal({self.raw:#x})"


XA_ZERO_ENTRY = XaInternal(K.XA_ZERO_ENTRY)
XA_RETRY_ENTRY = XaInternal(K.XA_RETRY_ENTRY)


def xa_mk_value(v: int) -> int:
    """``xa_mk_value``: value entries are the ints ``0 .. LONG_MAX`` themselves."""
    v = operator.index(v)
    if not 0 <= v <= LONG_MAX:
        raise XaInvalidEntry(f"xa_mk_value({v}): value entries hold 0 .. LONG_MAX")
    return v


def xa_to_value(entry: Any) -> int:
    if not xa_is_value(entry):
        raise XaInvalidEntry(f"{entry!r} is not a value entry")
    return int(entry)


def xa_is_value(entry: Any) -> bool:
    return _is_value_int(entry)


def _is_value_int(obj: Any) -> bool:
    return (type(obj) is int or isinstance(obj, np.integer)) and 0 <= int(obj) <= LONG_MAX


def XA_LIMIT(lo: int, hi: int) -> tuple[int, int]:  # noqa: N802  (kernel macro name)
    """``struct xa_limit`` (u32 bounds, inclusive)."""
    return (_u32(lo, "limit min"), _u32(hi, "limit max"))


xa_limit_32b = (0, UINT_MAX)
xa_limit_31b = (0, (1 << 31) - 1)
xa_limit_16b = (0, (1 << 16) - 1)


def _u32(v: Any, what: str) -> int:
    try:
        v = operator.index(v)
    except TypeError:
        raise XaInvalidIndex(f"{what} must be an integer, not {type(v).__name__}") from None
    if not 0 <= v <= UINT_MAX:
        raise XaInvalidIndex(f"{what} {v} is not a u32")
    return v


def _idx(i: Any) -> Any:
    """An unsigned long index as the int64 bit pattern the kernels take (a Python int for
    compiled kernels, an np.int64 when they run as Python)."""
    if type(i) is not int:
        try:
            i = operator.index(i)
        except TypeError:
            raise XaInvalidIndex(f"XArray index must be an integer, not {type(i).__name__}") from None
    if i > LONG_MAX:
        if i > ULONG_MAX:
            raise XaInvalidIndex(f"XArray index {i} is outside 0 .. ULONG_MAX")
        i -= 1 << 64
    elif i < 0:
        raise XaInvalidIndex(f"XArray index {i} is outside 0 .. ULONG_MAX")
    return np.int64(i) if JIT_DISABLED else i


def _uidx(raw: Any) -> int:
    return int(raw) & MASK64


def _mark(mark: Any) -> int:
    try:
        m = operator.index(mark)
    except TypeError:
        raise XaInvalidIndex(f"mark must be XA_MARK_0, XA_MARK_1 or XA_MARK_2, not {mark!r}") from None
    if not 0 <= m < XA_MAX_MARKS:
        raise XaInvalidIndex(f"mark {m} is not XA_MARK_0 .. XA_MARK_2")
    return m


def _filter(f: Any) -> Any:
    if f is None:
        return _i64(XA_PRESENT)
    try:
        v = operator.index(f)
    except TypeError:
        raise XaInvalidIndex(f"filter must be a mark or XA_PRESENT, not {f!r}") from None
    if v == XA_PRESENT:
        return _i64(v)
    return _i64(_mark(v))


def _order(order: Any) -> Any:
    """An entry order, 0 .. 63.  (An order-64 entry, the whole index space, cannot be
    stored: xas_max() wraps to 0 and the kernel would put it in the head as index 0.)"""
    try:
        o = operator.index(order)
    except TypeError:
        raise XaInvalidIndex(f"order must be an integer, not {type(order).__name__}") from None
    if not 0 <= o < 64:
        raise XaInvalidIndex(f"order {o} is outside 0 .. BITS_PER_LONG - 1")
    return _i64(o)


def _i64(v: Any) -> Any:
    """An int64 argument: a Python int for compiled kernels, np.int64 for Python ones."""
    return np.int64(v) if JIT_DISABLED else int(v)


class _Kernel:
    """A kernel called with the compiled entry point of the signature the facade uses.
    numba's dispatcher types every argument on every call, which for a pool (a tuple of
    six arrays) costs some 2 us; the facade always passes the same types, so after the
    first call the compiled code is called directly."""

    __slots__ = ("disp", "ep")

    def __init__(self, disp):
        self.disp = disp
        self.ep = None

    def __call__(self, *args):
        ep = self.ep
        if ep is not None:
            return ep(*args)
        if JIT_DISABLED:
            with np.errstate(over="ignore"):
                return self.disp(*args)
        r = self.disp(*args)
        sig = tuple(self.disp.typeof_pyval(a) for a in args)
        cres = self.disp.overloads.get(sig)
        if cres is not None:
            self.ep = cres.entry_point
        return r


class _Kernels:
    def __getattr__(self, name: str) -> _Kernel:
        k = _Kernel(getattr(K, name))
        setattr(self, name, k)
        return k


_KN = _Kernels()


# ---------------------------------------------------------------------------------------------
# the node pool
# ---------------------------------------------------------------------------------------------

class XaNodeSource(Protocol):
    """Where a pool's nodes come from (the modelled ``radix_tree_node`` slab cache)."""

    def alloc_node(self) -> int | None: ...

    def free_node(self, node_id: int) -> None: ...


@dataclass(frozen=True)
class XaNodeView:
    """A snapshot of one ``struct xa_node`` (raw entries)."""

    id: int
    shift: int
    offset: int
    count: int
    nr_values: int
    parent: int | None
    array: int | None
    slots: tuple[int, ...]
    marks: tuple[int, int, int]


class XaPool:
    """A pool of XArray nodes shared by many arrays.

    ``capacity`` is the initial number of node rows.  With no ``source`` the pool grows
    its arrays (doubling) whenever nodes are needed, and keeps freed nodes on its free
    stack for reuse.  With a ``source`` every node comes from ``source.alloc_node()``
    (an id the pool grows to hold) and freed nodes go back through ``free_node``.
    """

    def __init__(self, capacity: int = 64, *, source: XaNodeSource | None = None, max_xarrays: int = 4):
        capacity = max(1, operator.index(capacity))
        self.arrays: K.XaPool = K.new_pool_arrays(capacity)
        self.heads = K.new_heads(max(1, operator.index(max_xarrays)))
        self.source = source
        self._hwm = 0  # node ids the built-in source has handed out
        self._reserved = 0  # nodes xas_split_alloc() set aside for a coming xas_split()
        self._free_xa: list[int] = []
        self._next_xa = 0

    # --- accounting -------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return int(self.arrays.slots.shape[0])

    @property
    def free_count(self) -> int:
        """Nodes on the free stack (preloaded, not in any tree)."""
        return int(self.arrays.ctl[K.C_FREE_TOP])

    @property
    def live_nodes(self) -> int:
        """Nodes in trees now."""
        return int(self.arrays.ctl[K.C_LIVE])

    @property
    def nr_allocated(self) -> int:
        """Nodes taken off the free stack into trees, ever."""
        return int(self.arrays.ctl[K.C_NR_ALLOC])

    @property
    def nr_freed(self) -> int:
        """Nodes freed from trees (shrink, delete, destroy), ever."""
        return int(self.arrays.ctl[K.C_NR_FREED])

    @property
    def memory_bytes(self) -> int:
        """Bytes of the nodes in trees (576 each)."""
        return self.live_nodes * XA_NODE_BYTES

    @property
    def want(self) -> int:
        """Nodes the last -ENOMEM asked for."""
        return int(self.arrays.ctl[K.C_WANT])

    # --- nodes ------------------------------------------------------------------------
    def _ensure_capacity(self, n: int) -> None:
        if n > self.capacity:
            self.arrays = K.grow_pool_arrays(self.arrays, max(2 * self.capacity, n))

    def supply(self, n: int) -> None:
        """Make sure at least ``n`` nodes are on the free stack (``xas_nomem``)."""
        missing = n - self.free_count
        if missing <= 0:
            return
        if self.source is None:
            self._ensure_capacity(self._hwm + missing)
            _KN.pool_give_range_nb(self.arrays, _i64(self._hwm), _i64(missing))
            self._hwm += missing
            return
        for _ in range(missing):
            nid = self.source.alloc_node()
            if nid is None:
                raise XaNoMemory(f"the node source has no node for the XArray ({n} needed, "
                                 f"{self.free_count} on the free stack)")
            try:
                nid = operator.index(nid)
            except TypeError:
                raise XaNodeSourceError(f"node source returned {nid!r}, not a node id") from None
            if nid < 0:
                raise XaNodeSourceError(f"node source returned negative node id {nid}")
            self._ensure_capacity(nid + 1)
            if _KN.pool_give_node_nb(self.arrays, _i64(nid)) != 0:
                raise XaNodeSourceError(f"node source returned node {nid}, which the pool already holds")

    def reclaim(self) -> int:
        """Hand the free stack (beyond reserved nodes) back to a pluggable source; returns
        how many nodes went back.  A no-op for the built-in source."""
        if self.source is None:
            return 0
        n = 0
        while self.free_count > self._reserved:
            nid = int(_KN.pool_take_free_nb(self.arrays))
            self.source.free_node(nid)
            n += 1
        return n

    def node(self, node_id: int) -> XaNodeView:
        """A snapshot of node ``node_id``."""
        n = operator.index(node_id)
        if not 0 <= n < self.capacity:
            raise XaInvalidIndex(f"node {n} is outside the pool (capacity {self.capacity})")
        m = self.arrays.meta[n]
        parent = int(m[K.M_PARENT])
        array = int(m[K.M_ARRAY])
        return XaNodeView(n, int(m[K.M_SHIFT]), int(m[K.M_OFFSET]), int(m[K.M_COUNT]), int(m[K.M_NRVAL]),
                          parent if parent >= 0 else None, array if array >= 0 else None,
                          tuple(int(x) for x in self.arrays.slots[n]),
                          tuple(int(x) for x in self.arrays.marks[n]))  # type: ignore[arg-type]

    # --- arrays -----------------------------------------------------------------------
    def _new_xa(self, flags: int) -> int:
        if self._free_xa:
            xid = self._free_xa.pop()
        else:
            xid = self._next_xa
            self._next_xa += 1
            if xid >= self.heads.shape[0]:
                heads = K.new_heads(2 * self.heads.shape[0])
                heads[: self.heads.shape[0]] = self.heads
                self.heads = heads
        self.heads[xid] = 0
        self.heads[xid, K.H_FLAGS] = flags
        self.heads[xid, K.H_INUSE] = 1
        return xid

    def _release_xa(self, xid: int) -> None:
        _KN.xa_destroy_nb(self.arrays, self.heads, _i64(xid))
        self.heads[xid] = 0
        self._free_xa.append(xid)
        self.reclaim()


# ---------------------------------------------------------------------------------------------
# the XArray
# ---------------------------------------------------------------------------------------------

class XArray:
    """An XArray (``DEFINE_XARRAY_FLAGS``).  ``flags`` are ``XA_FLAGS_*``; use
    ``XA_FLAGS_ALLOC`` / ``XA_FLAGS_ALLOC1`` for an allocating array.  Arrays made with
    the same ``pool`` share its nodes."""

    def __init__(self, flags: int = 0, *, pool: XaPool | None = None):
        try:
            flags = operator.index(flags)
        except TypeError:
            raise XaInvalidIndex(f"XArray flags must be an integer, not {type(flags).__name__}") from None
        if flags < 0 or flags & ~_KNOWN_FLAGS:
            raise XaInvalidIndex(f"unknown XArray flags {flags:#x}")
        self.pool = pool if pool is not None else XaPool()
        self.id = self.pool._new_xa(flags)
        self._xid = _i64(self.id)
        self._objs: dict[int, Any] = {}  # tag -> object
        self._tags: dict[int, int] = {}  # id(object) -> tag
        self._next_tag = 1
        self._sweep_at = 1024
        self._mods = 0  # changes made through this facade (items() watches it)
        self._finalizer = weakref.finalize(self, self.pool._release_xa, self.id)

    # --- entry translation ------------------------------------------------------------
    def _encode(self, obj: Any) -> Any:
        if obj is None:
            return _i64(0)
        if _is_value_int(obj):
            return _i64(((int(obj) << 1) | 1) - ((1 << 64) if int(obj) >= (1 << 62) else 0))
        if isinstance(obj, XaInternal):
            if obj.raw not in (K.XA_ZERO_ENTRY, K.XA_RETRY_ENTRY):
                raise XaInvalidEntry(f"{obj!r} cannot be stored: only XA_ZERO_ENTRY and XA_RETRY_ENTRY "
                                     "are storable internal entries")
            return _i64(obj.raw)
        tag = self._tags.get(id(obj))
        if tag is None:
            tag = self._next_tag
            self._next_tag += 1
            self._objs[tag] = obj
            self._tags[id(obj)] = tag
        return _i64(tag << 2)

    def _encode_old(self, obj: Any) -> Any:
        """Encode without adding to the object table (an object not in it is in no slot)."""
        if obj is None or _is_value_int(obj) or isinstance(obj, XaInternal):
            return self._encode(obj)
        tag = self._tags.get(id(obj))
        return _i64(_OLD_MISSING) if tag is None else _i64(tag << 2)

    def _decode(self, raw: Any) -> Any:
        e = int(raw)
        if e == 0:
            return None
        if e & 1:
            return (e & MASK64) >> 1
        if e & 3 == 2:
            return XA_ZERO_ENTRY if e == K.XA_ZERO_ENTRY else (
                XA_RETRY_ENTRY if e == K.XA_RETRY_ENTRY else XaInternal(e))
        return self._objs[e >> 2]

    def _maybe_sweep(self) -> None:
        if len(self._objs) > self._sweep_at:
            self._sweep()

    def _sweep(self) -> None:
        """Drop objects no slot refers to any more."""
        out = np.zeros(len(self._objs) + 16, np.int64)
        n = int(_KN.xa_collect_pointers_nb(self.pool.arrays, self.pool.heads, self._xid, out))
        if n > out.shape[0]:
            out = np.zeros(n, np.int64)
            n = int(_KN.xa_collect_pointers_nb(self.pool.arrays, self.pool.heads, self._xid, out))
        live = {int(t) >> 2 for t in out[:n]}
        self._objs = {t: o for t, o in self._objs.items() if t in live}
        self._tags = {id(o): t for t, o in self._objs.items()}
        self._sweep_at = max(1024, 2 * len(self._objs))

    # --- running kernels --------------------------------------------------------------
    def _run(self, fn, *args, nomem=_enomem_entry):
        """Call a kernel; on -ENOMEM get the nodes it wants and call it again."""
        pool = self.pool
        self._mods += 1
        try:
            r = fn(pool.arrays, pool.heads, self._xid, *args)
            while nomem(r):
                pool.supply(max(pool.want, 1))
                r = fn(pool.arrays, pool.heads, self._xid, *args)
            return r
        finally:
            if pool.source is not None:
                pool.reclaim()

    def _entry_result(self, r: Any, what: str) -> Any:
        r = int(r)
        if r == _EINVAL_ENTRY:
            raise XaInvalidEntry(f"{what}: the entry cannot be stored in an XArray (internal entry)")
        out = self._decode(r)
        self._maybe_sweep()
        return out

    # --- properties -------------------------------------------------------------------
    @property
    def flags(self) -> int:
        return int(self.pool.heads[self.id, K.H_FLAGS])

    @property
    def empty(self) -> bool:
        """``xa_empty``: no entry at all (a reserved entry makes the array non-empty)."""
        return int(self.pool.heads[self.id, K.H_HEAD]) == 0

    @property
    def nodes(self) -> int:
        """Live nodes of this array."""
        return int(self.pool.heads[self.id, K.H_NODES])

    @property
    def memory_bytes(self) -> int:
        """Bytes of this array's nodes (576 per node)."""
        return self.nodes * XA_NODE_BYTES

    @property
    def head(self) -> int:
        """The raw ``xa_head`` entry (see the kernels module for the encoding)."""
        return int(self.pool.heads[self.id, K.H_HEAD])

    @property
    def head_node(self) -> int | None:
        """The id of the top node, or None if the head is not a node."""
        h = self.head
        return (h >> 2) - K.XA_NODE_BIAS if (h & 3) == 2 and h > 4096 else None

    def marked(self, mark: int) -> bool:
        """``xa_marked``: some entry has ``mark``."""
        return bool(self.pool.heads[self.id, K.H_FLAGS] & (1 << (K.GFP_BITS_SHIFT + _mark(mark))))

    # --- normal API (kernel names, kernel results) --------------------------------------
    def load(self, index: int) -> Any:
        """``xa_load``: the entry at ``index`` or None."""
        r = _KN.xa_load_nb(self.pool.arrays, self.pool.heads, self._xid, _idx(index))
        return self._decode(r)

    def store(self, index: int, entry: Any) -> Any:
        """``xa_store``: store ``entry`` (None erases); returns the old entry."""
        i = _idx(index)
        return self._entry_result(self._run(_KN.xa_store_nb, i, self._encode(entry)), "xa_store")

    def store_order(self, index: int, order: int, entry: Any) -> Any:
        """Store ``entry`` as an order-``order`` (multi-index) entry covering the aligned
        ``2**order`` indices around ``index`` (``xa_store_order`` of test_xarray.c).  Like
        ``xas_store``, returns the last entry replaced."""
        i, o = _idx(index), _order(order)
        e = self._encode(entry)
        return self._entry_result(self._run(_KN.xa_store_order_nb, i, o, e), "store_order")

    def erase(self, index: int) -> Any:
        """``xa_erase``: returns the entry that was at ``index``."""
        return self._entry_result(self._run(_KN.xa_erase_nb, _idx(index)), "xa_erase")

    def cmpxchg(self, index: int, old: Any, entry: Any) -> Any:
        """``xa_cmpxchg``: replace the entry at ``index`` by ``entry`` if it is ``old``
        (``is``-identical, or equal for value entries); returns the entry that was there."""
        i = _idx(index)
        o = self._encode_old(old)
        return self._entry_result(self._run(_KN.xa_cmpxchg_nb, i, o, self._encode(entry)), "xa_cmpxchg")

    def insert(self, index: int, entry: Any) -> int:
        """``xa_insert``: 0, or -EBUSY if ``index`` holds an entry (or is reserved)."""
        i = _idx(index)
        r = int(self._run(_KN.xa_insert_nb, i, self._encode(entry), nomem=_enomem_int))
        self._maybe_sweep()
        return r

    def reserve(self, index: int) -> int:
        """``xa_reserve``: make ``index`` non-empty (it loads as None); 0."""
        return int(self._run(_KN.xa_reserve_nb, _idx(index), nomem=_enomem_int))

    def release(self, index: int) -> None:
        """``xa_release``: undo ``reserve`` unless the index has been stored to since."""
        self._run(_KN.xa_release_nb, _idx(index), nomem=_never)

    def store_range(self, first: int, last: int, entry: Any) -> None:
        """``xa_store_range``: every index ``first .. last`` loads ``entry`` afterwards."""
        f, la = _idx(first), _idx(last)
        if _uidx(la) < _uidx(f):
            raise XaInvalidIndex(f"xa_store_range: last {_uidx(la)} < first {_uidx(f)}")
        if _uidx(f) == 0 and _uidx(la) == ULONG_MAX:
            raise XaInvalidIndex("xa_store_range over the whole index space 0 .. ULONG_MAX: the kernel "
                                 "cannot store it (an order-64 entry; its piece size wraps to 0)")
        r = self._run(_KN.xa_store_range_nb, f, la, self._encode(entry))
        self._entry_result(r, "xa_store_range")

    def get_order(self, index: int) -> int:
        """``xa_get_order``: the order of the entry at ``index`` (0 if none)."""
        return int(_KN.xa_get_order_nb(self.pool.arrays, self.pool.heads, self._xid, _idx(index)))

    def alloc(self, entry: Any, limit: tuple[int, int] = xa_limit_32b) -> tuple[int, int | None]:
        """``xa_alloc``: store ``entry`` at a free index within ``limit``; returns
        ``(0, id)``, ``(-EBUSY, None)`` when the limit is full, ``(-EINVAL, None)`` for an
        array without XA_FLAGS_TRACK_FREE."""
        lo, hi = XA_LIMIT(*limit)
        e = self._encode(entry)
        err, ident = self._run(_KN.xa_alloc_nb, _i64(lo), _i64(hi), e,
                               nomem=_enomem_pair)
        self._maybe_sweep()
        return (0, int(ident)) if err == 0 else (int(err), None)

    def alloc_cyclic(self, entry: Any, limit: tuple[int, int], next: int) -> tuple[int, int | None, int]:  # noqa: A002
        """``__xa_alloc_cyclic``: search from ``next``, wrapping to ``limit.min``; returns
        ``(ret, id, next)`` with ret 1 if the search wrapped (``xa_alloc_cyclic`` reports
        that as 0), -EBUSY if the limit is full."""
        lo, hi = XA_LIMIT(*limit)
        nxt = _u32(next, "next")
        ret, ident, nxt2 = self._run(_KN.xa_alloc_cyclic_nb, _i64(lo), _i64(hi), _i64(nxt),
                                     self._encode(entry), nomem=_enomem_pair)
        self._maybe_sweep()
        return int(ret), (int(ident) if ret >= 0 else None), int(nxt2)

    def set_mark(self, index: int, mark: int) -> None:
        """``xa_set_mark`` (no effect on a NULL entry)."""
        self._mods += 1
        _KN.xa_set_mark_nb(self.pool.arrays, self.pool.heads, self._xid, _idx(index), _i64(_mark(mark)))

    def clear_mark(self, index: int, mark: int) -> None:
        self._mods += 1
        _KN.xa_clear_mark_nb(self.pool.arrays, self.pool.heads, self._xid, _idx(index), _i64(_mark(mark)))

    def get_mark(self, index: int, mark: int) -> bool:
        return bool(_KN.xa_get_mark_nb(self.pool.arrays, self.pool.heads, self._xid, _idx(index),
                                     _i64(_mark(mark))))

    def find(self, index: int = 0, max: int = ULONG_MAX, filter: int = XA_PRESENT) -> tuple[Any, int]:  # noqa: A002
        """``xa_find``: ``(entry, index)`` of the first entry at index >= ``index`` and
        <= ``max`` matching ``filter`` (a mark or XA_PRESENT); ``(None, index)`` if none."""
        e, i = _KN.xa_find_nb(self.pool.arrays, self.pool.heads, self._xid, _idx(index), _idx(max),
                            _filter(filter))
        return self._decode(e), _uidx(i)

    def find_after(self, index: int, max: int = ULONG_MAX, filter: int = XA_PRESENT) -> tuple[Any, int]:  # noqa: A002
        """``xa_find_after``: like :meth:`find` for entries above ``index`` (a multi-index
        entry that ``index`` is part of is not found again)."""
        e, i = _KN.xa_find_after_nb(self.pool.arrays, self.pool.heads, self._xid, _idx(index), _idx(max),
                                  _filter(filter))
        return self._decode(e), _uidx(i)

    def extract(self, start: int = 0, max: int = ULONG_MAX, n: int = 1 << 62,  # noqa: A002
                filter: int = XA_PRESENT) -> list[Any]:
        """``xa_extract``: up to ``n`` entries from ``start .. max`` matching ``filter``."""
        return [e for _, e in self._pairs(start, max, filter, n)]

    def destroy(self) -> None:
        """``xa_destroy``: free every node; the array is empty afterwards."""
        self._mods += 1
        _KN.xa_destroy_nb(self.pool.arrays, self.pool.heads, self._xid)
        self.pool.reclaim()
        self._objs.clear()
        self._tags.clear()

    def nodes_needed(self, index: int, order: int = 0) -> int:
        """Nodes a store at ``index`` could need now (for preloading, cf. radix_tree_preload)."""
        return int(_KN.xa_nodes_needed_nb(self.pool.arrays, self.pool.heads, self._xid, _idx(index),
                                        _order(order)))

    def check(self, allow_empty_nodes: bool = False, shrunk: bool = False) -> None:
        """Check the tree's invariants; raise InvariantViolation naming the first broken one.
        ``shrunk`` also requires that the top node could not be shrunk (see xa_check_nb)."""
        code, node, off, mark = _KN.xa_check_nb(self.pool.arrays, self.pool.heads, self._xid,
                                                bool(allow_empty_nodes), bool(shrunk))
        if code != K.CHK_OK:
            what = _CHECK_MESSAGES.get(int(code), f"check code {int(code)}")
            raise InvariantViolation(f"XArray {self.id}: {what} (node {int(node)}, slot {int(off)}, "
                                     f"mark {int(mark)})")

    # --- Pythonic API -------------------------------------------------------------------
    def _pairs(self, start: int, mx: int, filt: Any, limit: int = 1 << 62) -> Iterator[tuple[int, Any]]:
        """xa_for_each_range: batches of xa_find_after results; if the array is changed
        through this facade while a batch is being consumed, the rest of the batch is
        dropped and the walk resumes after the last index yielded, as a fresh
        xa_find_after would."""
        i, m, f = _idx(start), _idx(mx), _filter(filt)
        after = False
        idx_buf = np.zeros(256, np.int64)
        ent_buf = np.zeros(256, np.int64)
        done = 0
        while done < limit:
            mods = self._mods
            n = int(_KN.xa_extract_nb(self.pool.arrays, self.pool.heads, self._xid, i, m, f, after,
                                      idx_buf, ent_buf))
            batch = [(int(idx_buf[k]), self._decode(ent_buf[k])) for k in range(n)]
            for raw, entry in batch:
                yield _uidx(raw), entry
                done += 1
                i = _i64(raw)
                if done >= limit or self._mods != mods:
                    break
            else:
                if n < idx_buf.shape[0]:
                    return
            after = True

    def items(self, start: int = 0, max: int = ULONG_MAX, mark: int | None = None) -> Iterator[tuple[int, Any]]:  # noqa: A002
        """``xa_for_each_range`` / ``xa_for_each_marked``: (index, entry) pairs in index
        order; a multi-index entry appears once.  Safe against stores during iteration
        (each step is a fresh ``xa_find_after``)."""
        return self._pairs(start, max, XA_PRESENT if mark is None else _mark(mark))

    def keys(self, start: int = 0, max: int = ULONG_MAX, mark: int | None = None) -> Iterator[int]:  # noqa: A002
        return (i for i, _ in self.items(start, max, mark))

    def values(self, start: int = 0, max: int = ULONG_MAX, mark: int | None = None) -> Iterator[Any]:  # noqa: A002
        return (e for _, e in self.items(start, max, mark))

    def __iter__(self) -> Iterator[int]:
        return self.keys()

    def __len__(self) -> int:
        """The number of entries ``xa_for_each`` visits (O(n))."""
        return int(_KN.xa_count_nb(self.pool.arrays, self.pool.heads, self._xid))

    def __bool__(self) -> bool:
        return self.find()[0] is not None

    def __getitem__(self, index: int) -> Any:
        e = self.load(index)
        if e is None:
            raise XaNotPresent(f"XArray index {index} holds no entry")
        return e

    def get(self, index: int, default: Any = None) -> Any:
        e = self.load(index)
        return default if e is None else e

    def __setitem__(self, index: int, entry: Any) -> None:
        self.store(index, entry)

    def __delitem__(self, index: int) -> None:
        if self.erase(index) is None:
            raise XaNotPresent(f"XArray index {index} holds no entry")

    def __contains__(self, index: object) -> bool:
        try:
            return self.load(index) is not None  # type: ignore[arg-type]
        except XaInvalidIndex:
            return False

    def __repr__(self) -> str:
        return f"XArray(id={self.id}, flags={self.flags:#x}, nodes={self.nodes}, empty={self.empty})"


_CHECK_MESSAGES = {
    K.CHK_COUNT: "node count differs from its non-NULL slots",
    K.CHK_NR_VALUES: "node nr_values differs from its value slots",
    K.CHK_PARENT: "child's parent/offset does not point back to its slot",
    K.CHK_SHIFT: "child's shift is not its parent's minus 6",
    K.CHK_ARRAY: "node belongs to another array",
    K.CHK_EMPTY_NODE: "empty node left in the tree",
    K.CHK_SHRINKABLE: "top node holds only slot 0 but was not shrunk",
    K.CHK_SIBLING: "sibling entry does not name a canonical slot before it",
    K.CHK_MARK_PROPAGATION: "mark on a child slot differs from any-mark of the child",
    K.CHK_MARK_ON_NULL: "mark set on a NULL or sibling slot",
    K.CHK_ROOT_MARK: "xa_marked() differs from the top level's marks",
    K.CHK_NODE_COUNT: "array's node count differs from the nodes in its tree",
    K.CHK_STATE: "tree holds a node that is not live",
    K.CHK_HEAD: "head holds an entry that may not be there",
}


# ---------------------------------------------------------------------------------------------
# the advanced API
# ---------------------------------------------------------------------------------------------

class XaState:
    """An ``xa_state`` cursor (``XA_STATE`` / ``XA_STATE_ORDER``).  Methods are the
    ``xas_*`` functions without the prefix; entries they return may be
    :data:`XA_ZERO_ENTRY`, :data:`XA_RETRY_ENTRY` or other :class:`XaInternal`.
    ``store``, ``create_range`` and ``split`` do the ``xas_nomem()`` loop themselves."""

    def __init__(self, xa: XArray, index: int = 0, order: int | None = None):
        self.xa = xa
        self.s = np.zeros(K.X_LEN, np.int64)
        _KN.xas_init(self.s, xa._xid, _idx(index))
        if order is not None:
            self.set_order(index, order)

    # --- fields -----------------------------------------------------------------------
    @property
    def index(self) -> int:
        return _uidx(self.s[K.X_INDEX])

    @property
    def shift(self) -> int:
        return int(self.s[K.X_SHIFT])

    @property
    def sibs(self) -> int:
        return int(self.s[K.X_SIBS])

    @property
    def offset(self) -> int:
        return int(self.s[K.X_OFFSET])

    @property
    def node(self) -> int:
        """``xa_node``: a node id, -1 (NULL: the head), XAS_BOUNDS, XAS_RESTART or an error."""
        return int(self.s[K.X_NODE])

    @property
    def error(self) -> int:
        """``xas_error``: 0 or a negative errno."""
        return int(_KN.xas_error(self.s))

    def _call(self, fn, *args):
        p = self.xa.pool
        return fn(p.arrays, p.heads, self.s, *args)

    def _ret(self, raw: Any) -> Any:
        return self.xa._decode(raw)

    def _mutate(self, fn, *args):
        """Run a kernel that may need nodes; on -ENOMEM restore the state, get nodes, retry."""
        p = self.xa.pool
        self.xa._mods += 1
        try:
            while True:
                saved = self.s.copy()
                r = self._call(fn, *args)
                if self.error != -ENOMEM:
                    return r
                self.s[:] = saved
                p.supply(max(p.want, 1))
        finally:
            p.reclaim()

    # --- positioning ------------------------------------------------------------------
    def set(self, index: int) -> None:
        _KN.xas_set(self.s, _idx(index))

    def set_order(self, index: int, order: int) -> None:
        _KN.xas_set_order(self.s, _idx(index), _order(order))

    def reset(self) -> None:
        self.s[K.X_NODE] = K.XAS_RESTART

    def set_err(self, err: int) -> None:
        if not -4095 <= err < 0:
            raise XaInvalidIndex(f"xas_set_err({err}): errors are negative errnos")
        _KN.xas_set_err(self.s, _i64(err))

    def advance(self, index: int) -> None:
        """``xas_advance``: move to ``index`` (the last sibling of the current entry)."""
        i = _idx(index)
        node = self.node
        shift = int(self.xa.pool.arrays.meta[node, K.M_SHIFT]) if node >= 0 else 0
        self.s[K.X_INDEX] = i
        self.s[K.X_OFFSET] = (_uidx(i) >> shift) & XA_CHUNK_MASK

    # --- reading ----------------------------------------------------------------------
    def load(self) -> Any:
        return self._ret(self._call(_KN.xas_load))

    def reload(self) -> Any:
        return self._ret(self._call(_KN.xas_reload))

    def next(self) -> Any:
        return self._ret(self._call(_KN.xas_next))

    def prev(self) -> Any:
        return self._ret(self._call(_KN.xas_prev))

    def find(self, max: int = ULONG_MAX) -> Any:  # noqa: A002
        return self._ret(self._call(_KN.xas_find, _idx(max)))

    def next_entry(self, max: int = ULONG_MAX) -> Any:  # noqa: A002
        return self._ret(self._call(_KN.xas_next_entry, _idx(max)))

    def find_marked(self, max: int, mark: int) -> Any:  # noqa: A002
        return self._ret(self._call(_KN.xas_find_marked, _idx(max), _i64(_mark(mark))))

    def next_marked(self, max: int, mark: int) -> Any:  # noqa: A002
        return self._ret(self._call(_KN.xas_next_marked, _idx(max), _i64(_mark(mark))))

    def find_conflict(self) -> Any:
        return self._ret(self._call(_KN.xas_find_conflict))

    def pause(self) -> None:
        p = self.xa.pool
        _KN.xas_pause(p.arrays, self.s)

    def get_order(self) -> int:
        p = self.xa.pool
        return int(_KN.xas_get_order(p.arrays, self.s))

    def retry(self, entry: Any) -> bool:
        """``xas_retry``: True for a zero entry; for a retry entry also reset the walk."""
        if entry == XA_ZERO_ENTRY:
            return True
        if entry != XA_RETRY_ENTRY:
            return False
        self.reset()
        return True

    def for_each(self, max: int = ULONG_MAX) -> Iterator[Any]:  # noqa: A002
        """``xas_for_each``: entries from the current position to ``max`` (retry and zero
        entries included, as in the kernel); the body may store through this state."""
        entry = self.find(max)
        while entry is not None:
            yield entry
            entry = self.next_entry(max)

    def for_each_marked(self, max: int, mark: int) -> Iterator[Any]:  # noqa: A002
        entry = self.find_marked(max, mark)
        while entry is not None:
            yield entry
            entry = self.next_marked(max, mark)

    def for_each_conflict(self) -> Iterator[Any]:
        while (entry := self.find_conflict()) is not None:
            yield entry

    # --- marks ------------------------------------------------------------------------
    def get_mark(self, mark: int) -> bool:
        return bool(self._call(_KN.xas_get_mark, _i64(_mark(mark))))

    def set_mark(self, mark: int) -> None:
        self.xa._mods += 1
        self._call(_KN.xas_set_mark, _i64(_mark(mark)))

    def clear_mark(self, mark: int) -> None:
        self.xa._mods += 1
        self._call(_KN.xas_clear_mark, _i64(_mark(mark)))

    def init_marks(self) -> None:
        self.xa._mods += 1
        self._call(_KN.xas_init_marks)

    # --- writing ----------------------------------------------------------------------
    def store(self, entry: Any) -> Any:
        """``xas_store`` (with the ``xas_nomem`` retry); returns the old entry."""
        r = self._mutate(_KN.xas_store, self.xa._encode(entry))
        out = self._ret(r)
        self.xa._maybe_sweep()
        return out

    def create_range(self) -> None:
        """``xas_create_range``: create every slot of the range of this state."""
        self._mutate(_KN.xas_create_range)

    def nomem(self) -> bool:
        """``xas_nomem``: if the last operation failed for want of nodes, get them from the
        pool's source and reset the state for a retry."""
        if self.error != -ENOMEM:
            return False
        p = self.xa.pool
        p.supply(max(p.want, 1))
        self.reset()
        return True

    def destroy(self) -> None:
        """``xas_destroy``: give back nodes set aside by ``split_alloc``."""
        p = self.xa.pool
        p._reserved = 0
        p.reclaim()

    def split_alloc(self, entry: Any, order: int) -> None:
        """``xas_split_alloc``: set aside the nodes ``split(entry, order)`` will need."""
        need = int(_KN.xas_split_need(self.s, _order(order)))
        if need < 0:
            _KN.xas_set_err(self.s, _i64(-ENOMEM))
            return
        p = self.xa.pool
        p._reserved = need
        p.supply(need)

    def split(self, entry: Any, order: int) -> None:
        """``xas_split``: split the ``order`` entry at this state into entries of this
        state's order, each ``entry``."""
        e, o = self.xa._encode(entry), _order(order)
        try:
            self._mutate(_KN.xas_split, e, o)
        finally:
            self.xa.pool._reserved = 0
            self.xa.pool.reclaim()

    def try_split(self, entry: Any, order: int) -> None:
        """``xas_try_split``: split using at most one new node; -EINVAL if more are needed."""
        e, o = self.xa._encode(entry), _order(order)
        try:
            self._mutate(_KN.xas_try_split, e, o)
        finally:
            self.xa.pool._reserved = 0
            self.xa.pool.reclaim()

    def __repr__(self) -> str:
        return (f"XaState(xa={self.xa.id}, index={self.index}, shift={self.shift}, sibs={self.sibs}, "
                f"offset={self.offset}, node={self.node})")
