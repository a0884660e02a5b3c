"""LLFree: a lock- and log-free page-frame allocator (Wrenger et al., USENIX ATC'23).

Theory statement
----------------
LLFree hands out page frames of order 0..``TREE_ORDER`` (12) from ``frames`` frames
without free lists and without any per-frame state beyond one *bit*: a frame is free iff
its bit in the 512-bit bitfield of its 2 MiB *child* is clear (or its child is free as a
whole).  Above the bitfields sit counters only: one 16-bit child entry per bitfield
(free frames + a *huge* flag when the child is one order-9 allocation), one 32-bit tree
entry per 8 children (16 MiB: free frames, a *reserved* flag and an allocation *class*),
and per CPU and class one *reservation* of a tree: the CPU took the tree's whole free
counter and allocates from it without touching the shared tree entry until it runs dry.
Frames freed by other CPUs go to the tree's shared counter, which the owner steals back
when its own count is too small.  Order-9 requests take a whole free child (flag only,
the bitfield stays clear); orders 10-12 take 2/4/8 aligned free children.

Allocation classes are data: a :class:`Classing` names the classes, how many CPU slots
each has and a policy ``policy(requested, target, free) -> (PolicyType, priority)``
deciding whether a request of one class may use a tree of another: ``MATCH`` (higher
priority = better fit, 255 = take at once), ``STEAL`` (take frames, the tree keeps its
class), ``DEMOTE`` (the tree becomes the requester's class) or ``INVALID``.  The stock
classings are llfree-c's: :meth:`Classing.simple` (small 0, huge 1) and
:meth:`Classing.movable` (immovable 0, movable 1, huge 2 -- close to Linux's
migratetypes: an immovable request demotes a movable or huge tree, a movable one steals
from a huge tree without changing it).  Entirely free trees return to the default class.

Invariants (checked by :meth:`LLFree.validate`): every child counter equals the clear bits
of its bitfield, a huge child has a clear bitfield; an unreserved tree's counter equals
its children's sum; a reserved tree is held by exactly one CPU slot and the slot's
counter plus the tree's equals the children's sum; the counters sum to the free frames.

Mapping to Linux: LLFree replaces mm/page_alloc.c's buddy free lists (``free_area``,
``PageBuddy``, ``buddy_order`` in ``struct page``) with the bitfields -- 0.14 bytes of
metadata per 4 KiB frame -- and the per-CPU pcp lists with tree reservations; classes
play the migratetypes and pageblock fallbacks (``__rmqueue_fallback`` ~ Steal/Demote).
The reference is llfree-c HEAD 970bb3d (the C version llfree-linux builds on); where it
differs from llfree-rs HEAD 441c8d1 and the ATC'23 version is in docs/llfree.md and the
theory statement of :mod:`memdesc.lib._llfree_kernels`.

The model is single-threaded: each call is one CPU's whole operation (no atomics, the
decisions are the reference's: ``benchmarks/llfree_vs_c.py`` finds llfree-c returning the
same frames on every request of its streams).  The state is one int64 array (``w``),
every operation a numba kernel; :meth:`LLFree.run` runs a whole stream of gets and puts in
one kernel call.  :meth:`LLFree.free_blocks` gives the buddyinfo view (free aligned blocks
per order) and :meth:`LLFree.recover` builds an allocator from a bitmap of allocated
frames (``LLFREE_INIT_RECOVER``).

Errors raise :class:`LLFreeError` subclasses (also :mod:`memdesc.errors` classes); running
out of memory is not an error (``get`` returns ``None``).  LLFree keeps no record of
allocation orders -- a ``put`` with a smaller order than the ``get`` frees part of the
allocation, as the reference allows (a partial put of a huge frame splits it) -- so a
wrong order is reported only when it is visible: frames in the range already free, or an
order >= 9 put of frames that are not a huge allocation.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from memdesc._numba import JIT_DISABLED
from memdesc.errors import (
    ConfigError,
    DoubleFree,
    InvalidOrder,
    InvalidPfn,
    InvariantViolation,
    MemdescError,
    OrderMismatch,
)
from memdesc.lib import _llfree_kernels as K
from memdesc.lib._llfree_kernels import (
    CHILD_SIZE,
    HUGE_ORDER,
    LOCAL_STRIDE,
    MAX_CLASSES,
    MAX_FRAMES,
    MAX_ORDER,
    MIN_PAGES,
    R_ARGUMENT,
    R_MEMORY,
    TREE_CHILDREN,
    TREE_ORDER,
    TREE_SIZE,
)

__all__ = [
    "LLFree", "Classing", "PolicyType", "Init", "MetaSize", "Stats", "TreeStats", "ClassStats",
    "Request", "Reservation", "simple_policy", "movable_policy",
    "LLFreeError", "LLFreeConfigError", "LLFreeInvalidRequest", "LLFreeBadFrame", "LLFreeBadOrder",
    "LLFreeDoubleFree", "LLFreeOrderMismatch",
    "HUGE_ORDER", "TREE_ORDER", "TREE_SIZE", "TREE_CHILDREN", "CHILD_SIZE", "MAX_ORDER", "MAX_CLASSES",
]


# --- errors ---------------------------------------------------------------------------------
class LLFreeError(MemdescError):
    """Base class of the LLFree allocator's errors."""


class LLFreeConfigError(LLFreeError, ConfigError):
    """An invalid allocator configuration (frame count, classing, policy)."""


class LLFreeInvalidRequest(LLFreeError, ValueError):
    """A request naming a class or CPU slot that is not configured, or a malformed stream."""


class LLFreeBadFrame(LLFreeError, InvalidPfn):
    """A frame outside the allocator or not aligned to the request's order."""


class LLFreeBadOrder(LLFreeError, InvalidOrder):
    """An order outside 0..TREE_ORDER (or larger than the allocator)."""


class LLFreeDoubleFree(LLFreeError, DoubleFree):
    """``put`` of frames that are all free already."""


class LLFreeOrderMismatch(LLFreeError, OrderMismatch):
    """``put`` with an order the frames were visibly not allocated with."""


# --- classes and policies -------------------------------------------------------------------
class PolicyType(enum.IntEnum):
    """``llfree_policy_type_t``: how a request of one class may use a tree of another."""

    MATCH = K.POLICY_MATCH
    STEAL = K.POLICY_STEAL
    DEMOTE = K.POLICY_DEMOTE
    INVALID = K.POLICY_INVALID


PolicyFn = Callable[[int, int, int], "tuple[PolicyType, int] | PolicyType"]


def simple_policy(requested: int, target: int, free: int) -> tuple[PolicyType, int]:
    """``llfree_simple_policy`` (llfree.h): classes small 0 and huge 1."""
    if requested > target:
        return PolicyType.STEAL, 0
    if requested < target:
        return PolicyType.DEMOTE, 0
    if free >= TREE_SIZE // 2:
        return PolicyType.MATCH, 1
    if free >= TREE_SIZE // 64:
        return PolicyType.MATCH, 255
    return PolicyType.MATCH, 0


def movable_policy(requested: int, target: int, free: int) -> tuple[PolicyType, int]:
    """``llfree_movable_policy`` (llfree.h): immovable 0, movable 1, huge 2."""
    if requested > target:
        return PolicyType.STEAL, 0
    if requested < target:
        return PolicyType.DEMOTE, 0
    if free >= TREE_SIZE // 2:
        return PolicyType.MATCH, 1
    if free >= TREE_SIZE // 64:
        return PolicyType.MATCH, 255
    return PolicyType.MATCH, 2


class Request(NamedTuple):
    """``llfree_request_t``: order, class and CPU slot (``None``: global allocation)."""

    order: int
    cls: int
    local: int | None


class Classing:
    """``llfree_classing_t``: ``classes`` is a sequence of ``(class id, slots)`` (ids 0..7,
    usually one slot per CPU), ``default`` the class of entirely free trees, ``policy`` the
    policy function.  ``huge_class`` (optional) is the class :meth:`request` and the
    facade's defaults give orders >= HUGE_ORDER; smaller orders get class 0, or
    ``movable_class`` for a movable request."""

    def __init__(self, classes: Sequence[tuple[int, int]], default: int, policy: PolicyFn, *,
                 huge_class: int | None = None, movable_class: int | None = None, name: str = "custom"):
        classes = [(_as_int(c, "class id"), _as_int(n, "slot count")) for c, n in classes]
        if not 1 <= len(classes) <= MAX_CLASSES:
            raise LLFreeConfigError(f"a classing has 1..{MAX_CLASSES} classes, got {len(classes)}")
        ids = [c for c, _ in classes]
        if len(set(ids)) != len(ids) or not all(0 <= c < MAX_CLASSES for c in ids):
            raise LLFreeConfigError(f"class ids must be distinct and in 0..{MAX_CLASSES - 1}, got {ids}")
        if any(n < 0 for _, n in classes):
            raise LLFreeConfigError("slot counts must be >= 0")
        if default not in ids:
            raise LLFreeConfigError(f"the default class {default} is not one of the classes {ids}")
        for extra, what in ((huge_class, "huge_class"), (movable_class, "movable_class")):
            if extra is not None and extra not in ids:
                raise LLFreeConfigError(f"{what} {extra} is not one of the classes {ids}")
        if not callable(policy):
            raise LLFreeConfigError("policy must be a function (requested, target, free) -> policy")
        self.classes = tuple(classes)
        self.default = default
        self.policy = policy
        self.huge_class = huge_class
        self.movable_class = movable_class
        self.name = name

    @classmethod
    def simple(cls, cores: int) -> Classing:
        """``llfree_classing_simple``: class 0 small, class 1 huge (default), ``cores`` slots each."""
        return cls([(0, cores), (1, cores)], 1, simple_policy, huge_class=1, name="simple")

    @classmethod
    def movable(cls, cores: int) -> Classing:
        """``llfree_classing_movable``: 0 immovable, 1 movable, 2 huge (default)."""
        return cls([(0, cores), (1, cores), (2, cores)], 2, movable_policy, huge_class=2, movable_class=1,
                   name="movable")

    @property
    def slots(self) -> int:
        return sum(n for _, n in self.classes)

    def count(self, cls: int) -> int | None:
        """Slots of class ``cls`` (``None`` if it is not configured)."""
        return next((n for c, n in self.classes if c == cls), None)

    def request_class(self, order: int, movable: bool = False) -> int:
        if self.huge_class is not None and order >= HUGE_ORDER:
            return self.huge_class
        if movable and self.movable_class is not None:
            return self.movable_class
        return 0

    def request(self, order: int, core: int, movable: bool = False) -> Request:
        """``llfree_simple_request`` / ``llfree_movable_request``: class by order (and
        movability), slot ``core % slots``."""
        cls = self.request_class(order, movable)
        n = self.count(cls) or 0
        return Request(order, cls, core % n if n else None)

    def __repr__(self) -> str:
        return f"Classing({self.name}: classes={list(self.classes)}, default={self.default})"


_POLICY_TABLES: dict = {}


def _policy_table(classing: Classing) -> np.ndarray:
    """The policy evaluated for every (requested, target, free 0..TREE_SIZE): uint16
    ``type | priority << 8``, rows in classing order."""
    ids = tuple(c for c, _ in classing.classes)
    key = (classing.policy, ids)
    table = _POLICY_TABLES.get(key)
    if table is not None:
        return table
    n = len(ids)
    table = np.empty((n, n, TREE_SIZE + 1), np.uint16)
    for i, req in enumerate(ids):
        for j, tgt in enumerate(ids):
            row = table[i, j]
            for free in range(TREE_SIZE + 1):
                p = classing.policy(req, tgt, free)
                if isinstance(p, tuple):
                    ty, prio = p
                else:
                    ty, prio = p, 0
                try:
                    ty = PolicyType(ty)
                except ValueError:
                    raise LLFreeConfigError(f"policy({req}, {tgt}, {free}) returned {p!r}: not a PolicyType") \
                        from None
                if not 0 <= prio <= 255:
                    raise LLFreeConfigError(f"policy({req}, {tgt}, {free}) priority {prio} not in 0..255")
                row[free] = int(ty) | (int(prio) << 8)
    table = table.reshape(-1)
    if len(_POLICY_TABLES) < 64:
        _POLICY_TABLES[key] = table
    return table


# --- results --------------------------------------------------------------------------------
class Init(enum.IntEnum):
    """Initialisation modes (``LLFREE_INIT_FREE`` / ``LLFREE_INIT_ALLOC``)."""

    FREE = 0
    ALLOC = 1


class MetaSize(NamedTuple):
    """``llfree_meta_size_t``: bytes of each metadata buffer, as llfree-c lays them out."""

    llfree: int
    local: int
    trees: int
    lower: int

    @property
    def total(self) -> int:
        return self.llfree + self.local + self.trees + self.lower


class Stats(NamedTuple):
    """``ll_stats_t``: free frames, entirely free children (huge frames), free trees."""

    free_frames: int
    free_huge: int
    free_trees: int


class ClassStats(NamedTuple):
    free_frames: int
    alloc_frames: int


class TreeStats(NamedTuple):
    """``ll_tree_stats_t`` (the counters only: fast, no scan of the lower allocator)."""

    free_frames: int
    free_trees: int
    classes: dict


class Reservation(NamedTuple):
    """One CPU slot's reservation: the tree, its free frames and the row to search from."""

    cls: int
    local: int
    tree: int
    free: int
    start_row: int


def _as_int(x, what: str) -> int:
    try:
        return operator.index(x)
    except TypeError:
        raise LLFreeInvalidRequest(f"{what} must be an integer, not {type(x).__name__}") from None


# Per-call entry points compiled for the state array: numba's dispatcher spends more time
# matching argument types than the kernels spend allocating.  Safe because the facade only
# passes its own int64 state and Python ints (range-checked by the kernel's validate_request).
_k_get = K.k_get
_k_put = K.k_put
_bound = False


def _bind_entry_points() -> None:
    global _k_get, _k_put, _bound
    _bound = True
    if JIT_DISABLED:
        return
    from numba import types

    sig = (types.Array(types.int64, 1, "C"),) + (types.int64,) * 4
    _k_get = K.k_get.compile(sig)
    _k_put = K.k_put.compile(sig)


class LLFree:
    """An LLFree allocator over ``frames`` frames (``llfree_init``).

    ``classing`` (default :meth:`Classing.simple` with one CPU) configures the classes,
    CPU slots and policy; ``init`` marks everything free or allocated; ``free_reserve``
    enables the reserve-on-free heuristic llfree-c had behind
    ``LLFREE_ENABLE_FREE_RESERVE`` (off there too).
    """

    def __init__(self, frames: int, classing: Classing | None = None, init: Init = Init.FREE, *,
                 free_reserve: bool = False):
        frames = _as_int(frames, "frames")
        if not MIN_PAGES <= frames <= MAX_FRAMES:
            raise LLFreeConfigError(f"LLFree manages {MIN_PAGES}..{MAX_FRAMES} frames, got {frames}")
        if classing is None:
            classing = Classing.simple(1)
        if not isinstance(classing, Classing):
            raise LLFreeConfigError(f"classing must be a Classing, not {type(classing).__name__}")
        try:
            init = Init(init)
        except ValueError:
            raise LLFreeConfigError(f"unknown init mode {init!r}") from None
        self.classing = classing
        self.init = init
        self._frames = frames
        self.free_reserve = bool(free_reserve)
        #: the state: one int64 array (layout in :func:`memdesc.lib._llfree_kernels.new_state`)
        self.w = K.new_state(frames, init == Init.FREE, classing.classes, classing.default,
                             _policy_table(classing), free_reserve)
        if not _bound:
            _bind_entry_points()

    @classmethod
    def recover(cls, allocated, classing: Classing | None = None, huge=None, *,
                free_reserve: bool = False) -> LLFree:
        """An allocator rebuilt from which frames are allocated (llfree-c's
        ``LLFREE_INIT_RECOVER``: bitfields kept, counters recomputed, no reservations, every
        tree in the default class).
        ``allocated`` has one bool per frame; ``huge`` (one bool per 2 MiB child, optional)
        marks children allocated as one huge frame (they must be entirely allocated)."""
        allocated = np.asarray(allocated, dtype=bool)
        if allocated.ndim != 1:
            raise LLFreeConfigError("allocated must be one bool per frame")
        a = cls(len(allocated), classing, Init.FREE, free_reserve=free_reserve)
        nchild = int(a.w[K.M_NCHILD])
        huge = np.zeros(nchild, bool) if huge is None else np.asarray(huge, dtype=bool)
        if huge.shape != (nchild,):
            raise LLFreeConfigError(f"huge must be one bool per child ({nchild})")
        full = np.ones(nchild * CHILD_SIZE, bool)
        full[:len(allocated)] = allocated
        if (huge & ~full.reshape(nchild, CHILD_SIZE).all(axis=1)).any():
            raise LLFreeConfigError("a huge child has free frames")
        K.recover_state(a.w, allocated, huge)
        return a

    # --- sizes --------------------------------------------------------------------------------
    @staticmethod
    def metadata_size(classing: Classing, frames: int) -> MetaSize:
        """``llfree_metadata_size``: what an allocator of ``frames`` frames needs, before
        it is built (llfree-c's buffers: the struct, the local, tree and lower arrays)."""
        frames = _as_int(frames, "frames")
        return MetaSize(K.LLFREE_STRUCT, K.local_metadata_size(classing.slots),
                        K.trees_metadata_size(frames), K.lower_metadata_size(frames))

    @property
    def metadata(self) -> MetaSize:
        """This allocator's :meth:`metadata_size`."""
        return self.metadata_size(self.classing, self._frames)

    @property
    def nbytes(self) -> int:
        """Bytes of the model's state array (entries are stored one per int64 word; the
        reference's sizes are :attr:`metadata`)."""
        return self.w.nbytes

    @property
    def frames(self) -> int:
        """``llfree_frames``: the number of frames managed."""
        return self._frames

    @property
    def ntrees(self) -> int:
        return int(self.w[K.M_NTREES])

    def __repr__(self) -> str:
        f, h, t = self.stats()
        return (f"LLFree(frames={self._frames}, free={f}, free_huge={h}, free_trees={t}/{self.ntrees}, "
                f"{self.classing!r})")

    # --- requests -----------------------------------------------------------------------------
    def _request(self, order, cls, local):
        if cls is None:
            cls = self.classing.request_class(order if order.__class__ is int else 0)
        return cls, (-1 if local is None else local)

    def get(self, order: int = 0, cls: int | None = None, local: int | None = 0, *,
            frame: int | None = None) -> int | None:
        """``llfree_get``: allocate ``2^order`` frames for class ``cls`` on CPU slot
        ``local`` (``None``: global, no reservation), or exactly ``frame``.  Returns the
        first frame, or ``None`` when no memory is left.  ``cls`` defaults to the
        classing's class for the order (huge for orders >= 9, else 0)."""
        r = self._get(order, cls, local, frame)
        return r >> 3 if r >= 0 else None

    def get_classed(self, order: int = 0, cls: int | None = None, local: int | None = 0, *,
                    frame: int | None = None) -> tuple[int, int] | None:
        """:meth:`get`, returning ``(frame, class)``: the class the frames belong to now
        (the tree's class after a Steal, the requested class otherwise)."""
        r = self._get(order, cls, local, frame)
        return (r >> 3, r & 7) if r >= 0 else None

    def _get(self, order, cls, local, frame) -> int:
        if cls is None or local is None:
            cls, local = self._request(order, cls, local)
        f = -1 if frame is None else frame
        if order.__class__ is int and cls.__class__ is int and local.__class__ is int and f.__class__ is int:
            r = int(_k_get(self.w, f, order, cls, local))
            if r >= R_MEMORY:
                return r
        self._check_request(order, cls, local, frame)
        raise LLFreeInvalidRequest(f"get(order={order}, cls={cls}, local={local}, frame={frame}) refused")

    def put(self, frame: int, order: int = 0, cls: int | None = None, local: int | None = 0) -> None:
        """``llfree_put``: free the ``2^order`` frames at ``frame``, on CPU slot ``local``
        (the frames go to its reservation if they lie in its tree) for class ``cls``."""
        if cls is None or local is None:
            cls, local = self._request(order, cls, local)
        if frame.__class__ is int and order.__class__ is int and cls.__class__ is int and local.__class__ is int:
            r = int(_k_put(self.w, frame, order, cls, local))
            if r == 0:
                return
        else:
            r = R_ARGUMENT
        self._check_request(order, cls, local, frame)
        raise self._diagnose_put(frame, order, r)

    def _check_request(self, order, cls, local, frame) -> None:
        """Raise the error ``validate_request`` stands for."""
        order = _as_int(order, "order")
        if not 0 <= order <= MAX_ORDER:
            raise LLFreeBadOrder(f"order {order} outside 0..{MAX_ORDER}")
        if 1 << order > self._frames:
            raise LLFreeBadOrder(f"order {order} is larger than the allocator ({self._frames} frames)")
        cls = _as_int(cls, "class")
        n = self.classing.count(cls)
        if n is None:
            raise LLFreeInvalidRequest(f"class {cls} is not configured ({self.classing!r})")
        local = _as_int(local, "local")
        if not -1 <= local < n:
            raise LLFreeInvalidRequest(f"local slot {local} out of range for class {cls} ({n} slots; "
                                       "None for a global request)")
        if frame is not None:
            frame = _as_int(frame, "frame")
            if not 0 <= frame <= self._frames - (1 << order):
                raise LLFreeBadFrame(f"frame {frame:#x} (order {order}) outside the allocator's "
                                     f"{self._frames:#x} frames")
            if frame & ((1 << order) - 1):
                raise LLFreeBadFrame(f"frame {frame:#x} is not aligned to order {order}")

    def _diagnose_put(self, frame: int, order: int, r: int) -> LLFreeError:
        what = f"put(frame={frame:#x}, order={order})"
        n = 1 << order
        if order >= HUGE_ORDER:
            first = frame // CHILD_SIZE
            kids = [int(x) for x in K.region(self.w, "children")[first:first + n // CHILD_SIZE]]
            if all(c == CHILD_SIZE for c in kids):
                return LLFreeDoubleFree(f"{what}: the frames are free already: double free")
            bad = next(j for j, c in enumerate(kids) if c != 1 << 15)
            c = kids[bad]
            return LLFreeOrderMismatch(
                f"{what}: child {first + bad} (frames {(first + bad) * CHILD_SIZE:#x}+512) is not a huge "
                f"allocation ({c & 0x7fff} of 512 frames free): allocated with a smaller order, split "
                "by a partial put, or freed already")
        nfree = sum(self.is_free(f) for f in range(frame, frame + n))
        if nfree == n:
            return LLFreeDoubleFree(f"{what}: the frames are free already: double free")
        return LLFreeOrderMismatch(f"{what}: {nfree} of the {n} frames are free already: an order larger "
                                   "than allocated, or a double free of part of the allocation")

    def take(self, frame: int, order: int = 0) -> bool:
        """Allocate exactly these frames if they are free, whichever CPU reservation or
        tree counter holds them (memdesc's extension for exact trace replay, like Linux's
        ``take_page_off_buddy``; LLFree's own ``get(frame=...)`` can refuse free frames
        another class or CPU holds).  Returns whether the frames were free."""
        frame, order = _as_int(frame, "frame"), _as_int(order, "order")
        self._check_request(order, self.classing.default, -1, frame)
        return int(K.k_take(self.w, frame, order)) == 0

    def is_free(self, frame: int, order: int = 0) -> bool:
        """Whether all ``2^order`` frames at ``frame`` are free (llfree-rs ``is_free``)."""
        frame, order = _as_int(frame, "frame"), _as_int(order, "order")
        self._check_request(order, self.classing.default, -1, frame)
        return bool(K.k_is_free(self.w, frame, order))

    # --- statistics ---------------------------------------------------------------------------
    def stats(self) -> Stats:
        """``llfree_stats``: counted over the child entries."""
        return Stats(*(int(x) for x in K.k_lower_stats(self.w)))

    def stats_at(self, frame: int, order: int) -> Stats:
        """``llfree_stats_at``: the frame (order 0), its child (HUGE_ORDER) or its tree
        (TREE_ORDER)."""
        frame, order = _as_int(frame, "frame"), _as_int(order, "order")
        if order not in (0, HUGE_ORDER, TREE_ORDER):
            raise LLFreeBadOrder(f"stats_at takes order 0, {HUGE_ORDER} or {TREE_ORDER}, got {order}")
        if not 0 <= frame < self._frames:
            raise LLFreeBadFrame(f"frame {frame:#x} outside the allocator's {self._frames:#x} frames")
        return Stats(*(int(x) for x in K.k_stats_at(self.w, frame, order)))

    def free_blocks(self) -> np.ndarray:
        """Maximal free aligned blocks per order 0..TREE_ORDER, as /proc/buddyinfo counts
        them (a scan of the lower allocator: LLFree itself keeps no per-order state)."""
        out = np.zeros(MAX_ORDER + 1, np.int64)
        K.k_free_blocks(self.w, out)
        return out

    def tree_stats(self) -> TreeStats:
        """``llfree_tree_stats``: free frames and trees from the tree and local counters,
        and per configured class ``ClassStats(free_frames, alloc_frames)``."""
        out = np.zeros(2 + 2 * MAX_CLASSES, np.int64)
        K.k_tree_stats(self.w, out)
        classes = {c: ClassStats(int(out[2 + 2 * c]), int(out[3 + 2 * c])) for c, _ in self.classing.classes}
        return TreeStats(int(out[0]), int(out[1]), classes)

    def trees(self) -> dict:
        """Every tree entry decoded: arrays ``reserved``, ``cls``, ``free``."""
        t = K.region(self.w, "trees")
        return {"reserved": (t & 1).astype(bool), "cls": (t >> 1) & 7, "free": t >> 4}

    def children(self) -> dict:
        """Every child entry decoded: arrays ``free`` and ``huge`` (real children only)."""
        c = K.region(self.w, "children")[:int(self.w[K.M_NCHILD])]
        return {"free": c & 0x7FFF, "huge": (c >> 15).astype(bool)}

    def reservations(self) -> list[Reservation]:
        """The present CPU reservations."""
        out = []
        for c, n in self.classing.classes:
            for i in range(n):
                r = int(K.region(self.w, "local")[(int(self.w[K.M_CLS_OFF + c]) + i) * LOCAL_STRIDE])
                if r & 1:
                    row = (r >> 29) & ((1 << 35) - 1)
                    out.append(Reservation(c, i, row >> (TREE_ORDER - 6), (r >> 1) & ((1 << 28) - 1), row))
        return out

    def counters(self) -> dict:
        """Event counters of the model (not LLFree metadata): gets, puts, failures,
        reservations, syncs and every fallback taken."""
        return {k: int(self.w[i]) for k, i in K.COUNTERS.items()}

    # --- maintenance --------------------------------------------------------------------------
    def drain(self) -> None:
        """``llfree_drain``: give every CPU reservation back to its tree."""
        K.k_drain(self.w)

    def change_tree(self, tree: int | None = None, match_class: int | None = None, min_free: int = 0, *,
                    cls: int | None = None, operation: str | None = None) -> bool:
        """``llfree_change_tree``: the tree ``tree`` (``None``: the first match walking from
        tree 0) if it is unreserved, of ``match_class`` and has ``min_free`` free frames,
        gets class ``cls`` and ``operation`` ``"offline"`` (its counter drops to 0: nothing
        is allocated from it; ``validate`` reports it until it is onlined, as in the
        reference) or ``"online"`` (counter back from the lower allocator).  Returns
        whether a tree matched."""
        ops = {None: K.TREE_OP_NONE, "online": K.TREE_OP_ONLINE, "offline": K.TREE_OP_OFFLINE}
        if operation not in ops:
            raise LLFreeInvalidRequest(f"operation must be 'online', 'offline' or None, not {operation!r}")
        for c in (match_class, cls):
            if c is not None and self.classing.count(_as_int(c, "class")) is None:
                raise LLFreeInvalidRequest(f"class {c} is not configured ({self.classing!r})")
        t = -1 if tree is None else _as_int(tree, "tree")
        if not -1 <= t < self.ntrees:
            raise LLFreeInvalidRequest(f"tree {t} out of range (0..{self.ntrees - 1})")
        none = K.CLASS_NONE
        r = K.k_change_tree(self.w, t, none if match_class is None else match_class,
                            _as_int(min_free, "min_free"), none if cls is None else cls, ops[operation])
        return int(r) == 0

    def validate(self) -> None:
        """``llfree_validate`` and more (see the theory statement); raises InvariantViolation."""
        code, where = (int(x) for x in K.k_validate(self.w))
        if code:
            raise InvariantViolation(f"llfree: {K.CHECK_MESSAGES[code]} (index {where})")

    # --- batch --------------------------------------------------------------------------------
    def run(self, ops, classes=None, locals=0, *, return_classes: bool = False):  # noqa: A002
        """Run a stream of gets and puts in one kernel call; returns one int64 per op.

        ``ops[i] >= 0`` gets order ``ops[i]`` (result: the frame, -1 when out of memory);
        ``ops[i] < 0`` puts the frames of get op ``-ops[i] - 1`` (result: that frame; a
        failed get is skipped).  ``classes`` (scalar or per op; default: the classing's
        class for the order, and for a put the class its get returned) and ``locals``
        (scalar or per op; -1 = global) complete each request.  With ``return_classes``
        also returns the class of each get's frames (-1 for puts and failed gets).
        """
        ops = np.ascontiguousarray(ops, dtype=np.int64)
        if ops.ndim != 1:
            raise LLFreeInvalidRequest("ops must be one-dimensional")
        n = len(ops)
        gets = ops >= 0
        if np.any(ops[gets] > MAX_ORDER):
            i = int(np.flatnonzero(gets & (ops > MAX_ORDER))[0])
            raise LLFreeBadOrder(f"op {i}: order {int(ops[i])} outside 0..{MAX_ORDER}")
        if classes is None:
            cl = np.full(n, -1, np.int64)
            if self.classing.huge_class is not None:
                cl[gets] = np.where(ops[gets] >= HUGE_ORDER, self.classing.huge_class, 0)
            else:
                cl[gets] = 0
        else:
            cl = np.ascontiguousarray(np.broadcast_to(np.asarray(classes, dtype=np.int64), (n,)))
        lo = np.ascontiguousarray(np.broadcast_to(np.asarray(-1 if locals is None else locals,
                                                             dtype=np.int64), (n,)))
        out = np.full(n, -1, np.int64)
        outcls = np.zeros(n, np.int64)
        done = np.zeros(n, np.int8)
        pos = int(K.k_batch(self.w, ops, cl, lo, out, outcls, done, 0))
        if pos < n:
            status = int(self.w[K.M_STATUS])
            if status == K.E_BADINDEX:
                raise LLFreeInvalidRequest(f"op {pos}: put of op {-int(ops[pos]) - 1}, which is not an "
                                           "earlier get")
            if status == K.E_DOUBLEINDEX:
                raise LLFreeInvalidRequest(f"op {pos}: put of op {-int(ops[pos]) - 1}, which was put already")
            if ops[pos] >= 0:
                self._check_request(int(ops[pos]), int(cl[pos]), int(lo[pos]), None)
                raise LLFreeInvalidRequest(f"op {pos}: get refused")
            j = -int(ops[pos]) - 1
            c = int(cl[pos]) if cl[pos] >= 0 else int(outcls[j])
            self._check_request(int(ops[j]), c, int(lo[pos]), int(out[j]))
            raise self._diagnose_put(int(out[j]), int(ops[j]), status)
        if return_classes:
            return out, np.where((out >= 0) & gets, outcls, -1)
        return out
