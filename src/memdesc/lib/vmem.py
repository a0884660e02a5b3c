"""vmem: a general-purpose resource (integer range) allocator after Bonwick & Adams (2001).

Theory statement
----------------
A :class:`Vmem` arena manages a set of integers (addresses, pfns, ids...) made of
*spans*.  ``add()`` adds a span; an arena created with a ``source`` *imports* spans
from it when it runs dry and gives a span back as soon as all of it is free.
``alloc``/``xalloc`` carve *segments* out of spans; ``free``/``xfree`` give them back
and coalesce them with free neighbours, so free space is always described by maximal
free segments.  Each span and segment has an external *boundary tag* in a numpy tag
pool (:mod:`memdesc.lib._vmem_kernels` holds the numba kernels and the detailed
invariants: address-ordered arena list with span markers, power-of-two freelists with
a freemap bitmap, an allocated-segment hash).

Every request is rounded up to the arena's *quantum* (a power of two) and every
address is quantum aligned.  Policies (illumos ``vmflag``): :attr:`Policy.INSTANTFIT`
(default, constant time: the first segment of the first freelist whose members all
fit), ``BESTFIT`` (smallest fitting segment), ``FIRSTFIT`` (first fitting segment in
freelist order), ``NEXTFIT`` (the next free segment after the previous allocation,
for ids) and ``ADDRFIT`` (memdesc extension: lowest-address first fit, the policy of
the ``rmalloc()`` resource maps that vmem replaced; linear time).

*Quantum caches* (``qcache_max``): like illumos, sizes up to ``qcache_max`` are served
by one object cache per multiple of the quantum; each cache carves slabs of
``VMEM_QCACHE_SLABSIZE = max(1 << highbit(3 * qcache_max), 64)`` taken from the arena
with instant fit, so most segment-list allocations are slab sized.  ``xalloc`` and
``xfree`` bypass the caches and must be paired.

The "never allocate when freeing" rule: an operation that may need boundary tags first
makes sure the worst case (:data:`VMEM_SEGS_PER_ALLOC_MAX`) is available
(``vmem_populate``), growing the tag pool (optionally vetoed or accounted by a
``populate_fn``), and only then changes anything.  ``free`` never populates: it only
releases tags.

Mapping to Linux: vmem is what Matthew Wilcox proposed to replace the buddy
allocator's free lists with (arenas of pfns, one boundary tag per free or allocated
range, a one-word memdesc); this module is the arena, independent of what it counts.

Errors raise :class:`VmemError` subclasses; an allocation that cannot be satisfied
raises :class:`VmemExhausted`, or returns ``None`` with ``nosleep=True`` (VM_NOSLEEP).
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from memdesc._numba import JIT_DISABLED
from memdesc.errors import DoubleFree, InvariantViolation, MemdescError
from memdesc.lib import _vmem_kernels as K
from memdesc.lib._vmem_kernels import (
    E_BADFREE,
    E_BADINDEX,
    E_DOUBLEINDEX,
    E_NOSPACE,
    E_NOTAGS,
    E_OVERLAP,
    E_RELEASE,
    E_WRONGSIZE,
    T_FIRST,
    VM_ADDRFIT,
    VM_BESTFIT,
    VM_FIRSTFIT,
    VM_NEXTFIT,
    VMEM_ALLOC,
    VMEM_FREE,
    VMEM_MAXADDR,
    VMEM_MINFREE,
    VMEM_SEGS_PER_ALLOC_MAX,
    VMEM_SEGS_PER_MIDDLE_ALLOC,
    VMEM_SPAN,
    VmemState,
)

__all__ = [
    "Policy", "SegType", "Segment", "Vmem", "VmemState",
    "VmemError", "VmemInvalidRequest", "VmemConstraintError", "VmemSpanOverlap",
    "VmemBadAddress", "VmemDoubleFree", "VmemSizeMismatch", "VmemExhausted",
    "VMEM_SEGS_PER_ALLOC_MAX", "VMEM_MINFREE", "VMEM_NQCACHE_MAX", "VMEM_MAXADDR",
    "qcache_slabsize",
]

VMEM_NQCACHE_MAX = 16  # illumos: at most 16 quantum caches


# --- errors ---------------------------------------------------------------------------------
class VmemError(MemdescError):
    """Base class of the vmem arena's errors."""


class VmemInvalidRequest(VmemError, ValueError):
    """A malformed request: size <= 0 or too large, misaligned span, unknown policy..."""


class VmemConstraintError(VmemInvalidRequest):
    """xalloc constraints that are inconsistent or can never be met (illumos panics)."""


class VmemSpanOverlap(VmemInvalidRequest):
    """``add()`` of a span that overlaps a span of the arena."""


class VmemBadAddress(VmemError, ValueError):
    """Freeing (or looking up) an address where no allocation starts."""


class VmemDoubleFree(VmemBadAddress, DoubleFree):
    """Freeing an address that lies in free space: the allocation was already freed."""


class VmemSizeMismatch(VmemError, ValueError):
    """Freeing an allocation with a size other than the one it was allocated with."""


class VmemExhausted(VmemError):
    """No resource can satisfy the allocation (VM_SLEEP would wait forever here)."""


# --- public enums ---------------------------------------------------------------------------
class Policy(enum.IntEnum):
    """Allocation policy (illumos vmflag bits; ADDRFIT is memdesc's)."""

    INSTANTFIT = 0
    BESTFIT = VM_BESTFIT
    FIRSTFIT = VM_FIRSTFIT
    NEXTFIT = VM_NEXTFIT
    ADDRFIT = VM_ADDRFIT


_FLAGS: dict = {int(p): int(p) for p in Policy}
_INSTANTFIT = Policy.INSTANTFIT
_MAXADDR = VMEM_MAXADDR


def _policy_flags(policy) -> int:
    """The plain-int vmflag of a Policy (or of its int value); raises on anything else.

    (numba compiles a separate, slow-to-dispatch specialization for IntEnum arguments.)
    """
    try:
        flags = _FLAGS.get(operator.index(policy))
    except TypeError:
        flags = None
    if flags is None:
        raise VmemInvalidRequest(f"unknown allocation policy {policy!r}; use a memdesc.lib.vmem.Policy")
    return flags


class SegType(enum.IntFlag):
    """Segment types for :meth:`Vmem.walk` and :meth:`Vmem.size` (illumos VMEM_ALLOC...)."""

    ALLOC = VMEM_ALLOC
    FREE = VMEM_FREE
    SPAN = VMEM_SPAN


class Segment(NamedTuple):
    """One entry of :meth:`Vmem.walk`."""

    start: int
    size: int
    type: SegType

    @property
    def end(self) -> int:
        return self.start + self.size


def qcache_slabsize(qcache_max: int) -> int:
    """illumos ``VMEM_QCACHE_SLABSIZE``: the next power of two above ``3 * qcache_max``, >= 64."""
    return max(1 << (3 * qcache_max).bit_length(), 64)


# The per-call hot paths call the compiled entry points directly: numba's dispatcher spends
# more time matching argument types than the kernels spend allocating.  That is safe because
# the facade only ever passes its own int64 pool and integers it has range-checked.
def _k_alloc(*a):  # rebound by _bind_entry_points()
    return int(K.k_alloc(*a))


def _k_free(*a):
    return int(K.k_free(*a))


def _k_xalloc(*a):
    return int(K.k_xalloc(*a))


_bound = False


def _bind_entry_points() -> None:
    global _k_alloc, _k_free, _k_xalloc, _bound
    _bound = True
    if JIT_DISABLED:  # plain-Python kernels return numpy scalars: keep the int() wrappers
        return
    from numba import types

    pool, i64 = types.Array(types.int64, 2, "C"), types.int64
    _k_alloc = K.k_alloc.compile((pool, i64, i64))
    _k_free = K.k_free.compile((pool, i64, i64))
    _k_xalloc = K.k_xalloc.compile((pool,) + (i64,) * 8)


def _as_int(x, what: str) -> int:
    try:
        return operator.index(x)
    except TypeError:
        raise VmemInvalidRequest(f"{what} must be an integer, not {type(x).__name__}") from None


def _p2roundup(x: int, align: int) -> int:
    return -(-x & -align)


# --- quantum caches (kmem caches with KMC_QCACHE) -------------------------------------------
class _Slab:
    __slots__ = ("base", "free", "refcnt", "listed", "cache")

    def __init__(self, base: int, cache: _QCache):
        self.base = base
        self.cache = cache
        # lowest address handed out first
        self.free = list(range(base + (cache.nobj - 1) * cache.objsize, base - 1, -cache.objsize))
        self.refcnt = 0
        self.listed = True


class _QCache:
    __slots__ = ("name", "objsize", "nobj", "partial", "slabs", "nempty", "alloc", "free",
                 "slab_create", "slab_destroy", "fail")

    def __init__(self, name: str, objsize: int, slabsize: int):
        self.name = name
        self.objsize = objsize
        self.nobj = slabsize // objsize
        self.partial: list[_Slab] = []  # slabs with free objects, lazily pruned
        self.slabs: dict[int, _Slab] = {}
        self.nempty = 0
        self.alloc = self.free = self.slab_create = self.slab_destroy = self.fail = 0


# --- the arena ------------------------------------------------------------------------------
ImportFn = Callable[[object, int], "int | None"]
ReleaseFn = Callable[[object, int, int], None]
PopulateFn = Callable[["Vmem", int], bool]


class Vmem:
    """A vmem arena (``vmem_create``).

    Parameters follow ``vmem_create(name, base, size, quantum, afunc, ffunc, source,
    qcache_max, vmflag)``: ``base``/``size`` give an initial span (none if ``size`` is 0);
    ``source`` is the arena spans are imported from, with ``import_fn(source, size) ->
    addr | None`` and ``release_fn(source, addr, size)`` (by default ``source.alloc(size,
    nosleep=True)`` and ``source.free``).  ``min_import`` is the smallest import.
    ``populate_fn(arena, ntags) -> bool`` is called before the tag pool grows by
    ``ntags`` tags; returning False makes that allocation fail (``populate_fail``).
    ``tags`` is the initial number of usable boundary tags (at least: the pool, sentinels
    included, is a power of two).
    """

    def __init__(self, name: str = "vmem", base: int = 0, size: int = 0, quantum: int = 1, *,
                 source: object | None = None, import_fn: ImportFn | None = None,
                 release_fn: ReleaseFn | None = None, qcache_max: int = 0, min_import: int = 0,
                 populate_fn: PopulateFn | None = None, tags: int = 256):
        if not _bound:
            _bind_entry_points()
        quantum = _as_int(quantum, "quantum")
        if quantum <= 0 or quantum & (quantum - 1) or quantum >= VMEM_MAXADDR:
            raise VmemInvalidRequest(f"quantum must be a power of two below 2**62, got {quantum}")
        tags = _as_int(tags, "tags")
        if tags < VMEM_MINFREE:
            raise VmemInvalidRequest(f"tags must be >= {VMEM_MINFREE}, got {tags}")
        self.name = str(name)
        self.quantum = quantum
        self._qshift = quantum.bit_length() - 1
        self._set_state(K.new_state(T_FIRST + tags, quantum))
        if source is not None and import_fn is None:
            if not isinstance(source, Vmem):
                raise VmemInvalidRequest("a source that is not a Vmem needs import_fn and release_fn")
            import_fn = _default_import
            if release_fn is None:
                release_fn = _default_release
        if release_fn is not None and import_fn is None:
            raise VmemInvalidRequest("release_fn without import_fn")
        self.source = source
        self._import_fn = import_fn
        self._release_fn = release_fn
        self._can_release = release_fn is not None
        self._meta[K.M_CANRELEASE] = int(self._can_release)
        src_q = source.quantum if isinstance(source, Vmem) else quantum
        self._aquantum = max(quantum, src_q)
        self.min_import = _as_int(min_import, "min_import")
        self._populate_fn = populate_fn
        # quantum caches
        qcache_max = _as_int(qcache_max, "qcache_max")
        if qcache_max < 0:
            raise VmemInvalidRequest(f"qcache_max must be >= 0, got {qcache_max}")
        nq = min(qcache_max >> self._qshift, VMEM_NQCACHE_MAX)
        self.qcache_max = nq << self._qshift
        self._qcache_max = self.qcache_max  # hot-path copy
        self.qcache_slabsize = qcache_slabsize(self.qcache_max) if nq else 0
        self._qcaches = [_QCache(f"{self.name}_{(i + 1) * quantum}", (i + 1) * quantum,
                                 self.qcache_slabsize) for i in range(nq)]
        self._qobj: dict[int, _Slab] = {}
        if size:
            self.add(base, size)

    # --- introspection ----------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"Vmem({self.name!r}, quantum={self.quantum}, total={self.size()}, "
                f"inuse={self.size(SegType.ALLOC)}, spans={int(self._meta[K.M_NSPANS])})")

    def _set_state(self, st: VmemState) -> None:
        self._seg, self._meta, self._htab = st.seg, st.meta, st.htab

    @property
    def state(self) -> VmemState:
        """The kernels' state (the live arrays; replaced when the pool or the hash grows)."""
        return VmemState(self._seg, self._meta, self._htab)

    @property
    def tags_capacity(self) -> int:
        """Usable boundary tags in the pool (sentinels excluded); the pool is a power of two."""
        return self._seg.shape[0] - T_FIRST

    @property
    def tags_free(self) -> int:
        return int(self._meta[K.M_NFREE])

    @property
    def tags_in_use(self) -> int:
        """Tags describing spans and segments."""
        return self.tags_capacity - self.tags_free

    def size(self, types: int = SegType.ALLOC | SegType.FREE) -> int:
        """``vmem_size``: bytes allocated (ALLOC), free (FREE) or in total (both)."""
        types = _as_int(types, "types")
        if types & ~(VMEM_ALLOC | VMEM_FREE) or not types:
            raise VmemInvalidRequest(f"size() takes SegType.ALLOC and/or SegType.FREE, got {types:#x}")
        inuse = int(self._meta[K.M_INUSE])
        total = int(self._meta[K.M_TOTAL])
        return (inuse if types & VMEM_ALLOC else 0) + (total - inuse if types & VMEM_FREE else 0)

    def stats(self) -> dict:
        """illumos-style kstats of the arena (plus tag-pool and quantum-cache figures)."""
        m = self._meta
        d = {
            "mem_inuse": int(m[K.M_INUSE]), "mem_import": int(m[K.M_IMPORT]),
            "mem_total": int(m[K.M_TOTAL]), "alloc": int(m[K.K_ALLOC]), "free": int(m[K.K_FREE]),
            "fail": int(m[K.K_FAIL]), "lookup": int(m[K.K_LOOKUP]), "search": int(m[K.K_SEARCH]),
            "populate": int(m[K.K_POPULATE]), "populate_fail": int(m[K.K_POPULATE_FAIL]),
            "contains": int(m[K.K_CONTAINS]), "contains_search": int(m[K.K_CONTAINS_SEARCH]),
            "import": int(m[K.K_IMPORT]), "release": int(m[K.K_RELEASE]),
            "spans": int(m[K.M_NSPANS]), "segments_alloc": int(m[K.M_NBUSY]),
            "tags_in_use": self.tags_in_use, "tags_free": self.tags_free,
            "tags_capacity": self.tags_capacity, "hash_buckets": len(self._htab),
        }
        d["qcache"] = {qc.name: {"objsize": qc.objsize, "slabs": len(qc.slabs),
                                 "buf_inuse": sum(s.refcnt for s in qc.slabs.values()),
                                 "alloc": qc.alloc, "free": qc.free, "fail": qc.fail,
                                 "slab_create": qc.slab_create, "slab_destroy": qc.slab_destroy}
                       for qc in self._qcaches}
        return d

    def roundup_size(self, size: int) -> int:
        """``vmem_roundup_size``: ``size`` rounded up to the quantum."""
        return _p2roundup(_as_int(size, "size"), self.quantum)

    # --- spans --------------------------------------------------------------------------------
    def add(self, addr: int, size: int) -> int:
        """``vmem_add``: add the span ``[addr, addr + size)``; returns ``addr``."""
        addr = _as_int(addr, "addr")
        size = _as_int(size, "size")
        q = self.quantum
        if size <= 0 or addr < 0 or addr + size > VMEM_MAXADDR:
            raise VmemInvalidRequest(f"span [{addr:#x}, {addr + size:#x}) is empty or outside [0, 2**62)")
        if (addr | size) & (q - 1):
            raise VmemInvalidRequest(f"span [{addr:#x}, {addr + size:#x}) is not aligned to the quantum {q}")
        self._span_create(addr, size, 0)
        return addr

    def _span_create(self, addr: int, size: int, imp: int) -> None:
        while True:
            r = int(K.k_span_create(self._seg, addr, size, imp))
            if r >= 0:
                return
            if r == E_OVERLAP:
                raise VmemSpanOverlap(f"{self.name}: span [{addr:#x}, {addr + size:#x}) overlaps a span "
                                      f"of the arena")
            if not self._populate():
                raise VmemExhausted(f"{self.name}: no boundary tags to add span [{addr:#x}, "
                                    f"{addr + size:#x}) (populate failed)")

    def contains(self, addr: int, size: int) -> bool:
        """``vmem_contains``: is ``[addr, addr + size)`` inside one span of the arena?"""
        addr = _as_int(addr, "addr")
        size = _as_int(size, "size")
        if addr < 0 or size <= 0 or addr + size > VMEM_MAXADDR:
            return False
        return bool(K.k_contains(self._seg, addr, size))

    def walk(self, types: int = SegType.ALLOC | SegType.FREE) -> list[Segment]:
        """``vmem_walk``: the segments (and/or span markers) of ``types``, in address order."""
        types = _as_int(types, "types")
        if types & ~(VMEM_ALLOC | VMEM_FREE | VMEM_SPAN) or not types:
            raise VmemInvalidRequest(f"walk() takes a mask of SegType.ALLOC/FREE/SPAN, got {types:#x}")
        starts, sizes, kinds, _ = K.k_walk(self._seg, types)
        return [Segment(int(a), int(s), SegType(int(k)))
                for a, s, k in zip(starts.tolist(), sizes.tolist(), kinds.tolist(), strict=True)]

    # --- allocation ---------------------------------------------------------------------------
    def alloc(self, size: int, policy: Policy = Policy.INSTANTFIT, *, nosleep: bool = False):
        """``vmem_alloc``: allocate ``size`` (rounded to the quantum); returns the address.

        Sizes up to ``qcache_max`` come from the quantum caches.  When nothing fits (after
        importing from the source, if any) raises :class:`VmemExhausted`, or returns None if
        ``nosleep``.
        """
        flags = 0 if policy is _INSTANTFIT else _policy_flags(policy)
        if size.__class__ is int and self._qcache_max < size < _MAXADDR:  # the hot path
            r = _k_alloc(self._seg, size, flags)
            if r < 0 or self._can_release:
                return self._alloc_slow(r, size, 0, 0, flags, nosleep)
            return r
        size = _as_int(size, "size")
        if 0 < size <= self._qcache_max:
            return self._qc_alloc(size, nosleep)
        if not 0 < size < VMEM_MAXADDR:
            raise self._bad_request(size, policy)
        return self.alloc(size, flags, nosleep=nosleep)

    def xalloc(self, size: int, align: int = 0, phase: int = 0, nocross: int = 0,
               minaddr: int | None = None, maxaddr: int | None = None,
               policy: Policy = Policy.INSTANTFIT, *, nosleep: bool = False):
        """``vmem_xalloc``: ``size`` at offset ``phase`` from an ``align`` boundary, inside
        ``[minaddr, maxaddr)``, not crossing a ``nocross`` boundary (0 / None: no constraint).

        Bypasses the quantum caches: free with :meth:`xfree`.
        """
        if size.__class__ is not int:
            size = _as_int(size, "size")
        q = self.quantum
        if align.__class__ is not int or phase.__class__ is not int or nocross.__class__ is not int:
            align, phase, nocross = (_as_int(align, "align"), _as_int(phase, "phase"),
                                     _as_int(nocross, "nocross"))
        align = align or q
        lo = 0 if minaddr is None else _as_int(minaddr, "minaddr")
        hi = _MAXADDR if maxaddr is None else _as_int(maxaddr, "maxaddr")
        flags = 0 if policy is _INSTANTFIT else _policy_flags(policy)
        if flags & VM_NEXTFIT:
            raise VmemConstraintError("xalloc does not support Policy.NEXTFIT (use alloc)")
        if not 0 < size < _MAXADDR:
            raise self._bad_request(size, policy)
        rsize = -(-size & -q)
        why = None
        if align < 0 or phase < 0 or nocross < 0 or (align | phase | nocross) & (q - 1):
            why = f"parameters not aligned to the quantum {q}"
        elif phase >= align or align & (align - 1) or nocross & (nocross - 1) or align >= _MAXADDR:
            why = ("parameters inconsistent or invalid (align and nocross must be powers of two, "
                   "phase < align)")
        elif nocross and (align > nocross or _p2roundup(phase + rsize, align) > nocross):
            why = "overconstrained allocation"
        elif lo < 0 or hi > _MAXADDR or lo >= hi or hi - lo < rsize:
            why = "the range [minaddr, maxaddr) cannot hold the size"
        if why is not None:
            raise VmemConstraintError(f"xalloc(size={size}, align={align}, phase={phase}, nocross={nocross}, "
                                      f"minaddr={minaddr}, maxaddr={maxaddr}): {why}")
        r = _k_xalloc(self._seg, rsize, align, phase, nocross, lo, hi, flags, VMEM_MINFREE)
        if r < 0 or self._can_release:
            return self._alloc_slow(r, rsize, align, phase, flags, nosleep,
                                    constrained=bool(nocross or minaddr is not None or maxaddr is not None),
                                    xargs=(align, phase, nocross, lo, hi))
        return r

    def _bad_request(self, size, policy) -> VmemInvalidRequest:
        return VmemInvalidRequest(f"{self.name}: size must be in [1, 2**62), got {size}")

    def _alloc_slow(self, r: int, size: int, align: int, phase: int, flags: int, nosleep: bool,
                    constrained: bool = False, xargs: tuple | None = None):
        while r < 0:
            if r == E_NOTAGS:
                if not self._populate():
                    return self._fail(size, nosleep, "no boundary tags (populate failed)")
            elif r == E_NOSPACE:
                if constrained or self._import_fn is None:
                    return self._fail(size, nosleep, "no free segment satisfies the request")
                span = self._import(_p2roundup(size, self.quantum), align, phase)
                if span is None:
                    return self._fail(size, nosleep, "the source could not supply a span")
                # allocate from the new span (illumos: addr = P2PHASEUP(span start, align, phase))
                r = _k_xalloc(self._seg, _p2roundup(size, self.quantum),
                              align or self.quantum, phase, 0, span[0], span[0] + span[1], VM_FIRSTFIT,
                              VMEM_SEGS_PER_MIDDLE_ALLOC)
                if r == E_NOSPACE:  # the import function returned less than asked for
                    self._drain_releases()
                    return self._fail(size, nosleep, "the imported span cannot hold the request")
                continue
            else:  # pragma: no cover - the kernels return no other code here
                raise VmemError(f"{self.name}: unexpected kernel status {r}")
            if xargs is None:
                r = _k_alloc(self._seg, size, flags)
            else:
                r = _k_xalloc(self._seg, size, *xargs, flags, VMEM_MINFREE)
        if self._can_release:
            self._drain_releases()
        return r

    def _fail(self, size: int, nosleep: bool, why: str):
        self._meta[K.K_FAIL] += 1
        if nosleep:
            return None
        raise VmemExhausted(f"{self.name}: cannot allocate {size} ({why}); "
                            f"{self.size(SegType.FREE)} free of {self.size()}")

    def _import(self, size: int, align: int, phase: int):
        """vmem_xalloc's import step; returns (addr, size) of the new span or None."""
        aq = self._aquantum
        aphase = phase
        if align > aq:
            aphase = align - self.quantum if phase & (aq - 1) else align - aq
        asize = _p2roundup(max(size + aphase, self.min_import), aq)
        addr = self._import_fn(self.source, asize)
        if addr is None:
            return None
        addr = _as_int(addr, "imported address")
        if addr < 0 or addr + asize > VMEM_MAXADDR or addr & (self.quantum - 1):
            raise VmemError(f"{self.name}: import returned an invalid span [{addr:#x}, +{asize:#x})")
        self._meta[K.K_IMPORT] += 1
        try:
            self._span_create(addr, asize, 1)
        except VmemError as e:
            if self._release_fn is not None:
                self._release_fn(self.source, addr, asize)
            if isinstance(e, VmemExhausted):
                return None
            raise
        return addr, asize

    def _drain_releases(self) -> None:
        m = self._meta
        n = int(m[K.M_RELN])
        if n:
            spans = [(int(m[K.M_RELQ + 2 * i]), int(m[K.M_RELQ + 2 * i + 1])) for i in range(n)]
            m[K.M_RELN] = 0
            for addr, size in spans:
                self._release_fn(self.source, addr, size)

    def _populate(self) -> bool:
        """``vmem_populate``: double the tag pool (after asking ``populate_fn``)."""
        cap = self._seg.shape[0]
        ntags = cap
        if self._populate_fn is not None and not self._populate_fn(self, ntags):
            self._meta[K.K_POPULATE_FAIL] += 1
            return False
        self._set_state(K.grow_state(self.state, cap + ntags))
        self._meta[K.K_POPULATE] += 1
        return True

    # --- free ---------------------------------------------------------------------------------
    def free(self, addr: int, size: int) -> None:
        """``vmem_free``: free ``[addr, addr + size)`` allocated by :meth:`alloc`."""
        if (size.__class__ is int and addr.__class__ is int and self._qcache_max < size < _MAXADDR
                and 0 <= addr < _MAXADDR):  # the hot path
            r = _k_free(self._seg, addr, size)
            if r or self._can_release:
                self._free_slow(r, addr, size)
            return
        addr = _as_int(addr, "addr")
        size = _as_int(size, "size")
        if 0 < size <= self._qcache_max:
            return self._qc_free(addr, size)
        if not (0 <= addr < VMEM_MAXADDR and 0 < size < VMEM_MAXADDR):
            raise VmemBadAddress(f"{self.name}: free({addr:#x}, {size}) outside the arena's range")
        self.free(addr, size)

    def xfree(self, addr: int, size: int) -> None:
        """``vmem_xfree``: free a segment from :meth:`xalloc` (bypasses the quantum caches)."""
        if addr.__class__ is not int or size.__class__ is not int:
            addr, size = _as_int(addr, "addr"), _as_int(size, "size")
        if not (0 <= addr < _MAXADDR and 0 < size < _MAXADDR):
            raise VmemBadAddress(f"{self.name}: xfree({addr:#x}, {size}) outside the arena's range")
        r = _k_free(self._seg, addr, size)
        if r or self._can_release:
            self._free_slow(r, addr, size)

    def _free_slow(self, r: int, addr: int, size: int) -> None:
        if r == E_BADFREE:
            raise self._diagnose_bad_free(addr, size)
        if r == E_WRONGSIZE:
            t = int(K.k_lookup(self._seg, addr))
            raise VmemSizeMismatch(f"{self.name}: free({addr:#x}, {size}): the allocation at {addr:#x} "
                                   f"has size {int(self._seg[t, K.F_SIZE])} (sizes are compared "
                                   f"after rounding to the quantum {self.quantum})")
        self._drain_releases()

    def _diagnose_bad_free(self, addr: int, size: int) -> VmemBadAddress:
        t = int(K.k_locate(self._seg, addr))
        what = f"{self.name}: free({addr:#x}, {size})"
        if t < 0:
            return VmemBadAddress(f"{what}: address not in any span of the arena")
        s, n, ty = (int(self._seg[t, f]) for f in (K.F_START, K.F_SIZE, K.F_TYPE))
        if ty == VMEM_FREE:
            return VmemDoubleFree(f"{what}: address lies in free segment [{s:#x}, {s + n:#x}): "
                                  "double free")
        slab = self._qcache_slab_at(addr)
        if slab is not None:
            return VmemBadAddress(f"{what}: address belongs to quantum-cache slab {slab.cache.name}; "
                                  f"free it with a size <= qcache_max ({self.qcache_max})")
        return VmemBadAddress(f"{what}: address is inside allocation [{s:#x}, {s + n:#x}) but not at "
                              "its start")

    # --- quantum caches -----------------------------------------------------------------------
    def _qc_alloc(self, size: int, nosleep: bool):
        qc = self._qcaches[(size - 1) >> self._qshift]
        partial = qc.partial
        while partial and not partial[-1].free:
            partial.pop().listed = False
        if partial:
            slab = partial[-1]
            if slab.refcnt == 0:
                qc.nempty -= 1
        else:
            base = self.alloc(self.qcache_slabsize, nosleep=True)
            if base is None:
                qc.fail += 1
                return self._fail(size, nosleep, f"quantum cache {qc.name} cannot get a slab")
            slab = _Slab(base, qc)
            qc.slabs[base] = slab
            qc.slab_create += 1
            partial.append(slab)
        addr = slab.free.pop()
        slab.refcnt += 1
        self._qobj[addr] = slab
        qc.alloc += 1
        return addr

    def _qc_free(self, addr: int, size: int) -> None:
        qc = self._qcaches[(size - 1) >> self._qshift]
        slab = self._qobj.get(addr)
        if slab is None or slab.cache is not qc:
            raise self._diagnose_qc_free(addr, size, slab)
        del self._qobj[addr]
        slab.free.append(addr)
        slab.refcnt -= 1
        qc.free += 1
        if not slab.listed:
            slab.listed = True
            qc.partial.append(slab)
        if slab.refcnt == 0:
            if qc.nempty >= 1:  # keep one empty slab per cache, give the others back
                self._qc_slab_destroy(qc, slab)
            else:
                qc.nempty += 1

    def _qc_slab_destroy(self, qc: _QCache, slab: _Slab) -> None:
        slab.free = []  # lazily dropped from the partial list
        del qc.slabs[slab.base]
        qc.slab_destroy += 1
        self.free(slab.base, self.qcache_slabsize)

    def reap(self) -> None:
        """``kmem_reap`` for the quantum caches: give every empty slab back to the arena."""
        for qc in self._qcaches:
            for slab in [s for s in qc.slabs.values() if s.refcnt == 0]:
                self._qc_slab_destroy(qc, slab)
            qc.nempty = 0
            qc.partial = [s for s in qc.partial if s.free]
            for s in qc.slabs.values():
                s.listed = s in qc.partial

    def _qcache_slab_at(self, addr: int) -> _Slab | None:
        for qc in self._qcaches:
            for slab in qc.slabs.values():
                if slab.base <= addr < slab.base + self.qcache_slabsize:
                    return slab
        return None

    def _diagnose_qc_free(self, addr: int, size: int, slab: _Slab | None) -> VmemError:
        what = f"{self.name}: free({addr:#x}, {size})"
        if slab is not None:
            return VmemSizeMismatch(f"{what}: the buffer belongs to quantum cache {slab.cache.name} "
                                    f"(sizes {slab.cache.objsize - self.quantum + 1}.."
                                    f"{slab.cache.objsize})")
        slab = self._qcache_slab_at(addr)
        if slab is not None:
            off = addr - slab.base
            if off % slab.cache.objsize == 0 and off // slab.cache.objsize < slab.cache.nobj:
                return VmemDoubleFree(f"{what}: buffer of {slab.cache.name} is already free: double free")
            return VmemBadAddress(f"{what}: address is inside a {slab.cache.name} slab but not a buffer")
        t = int(K.k_lookup(self._seg, addr))
        if t >= 0:
            return VmemBadAddress(f"{what}: this is a segment-layer allocation of size "
                                  f"{int(self._seg[t, K.F_SIZE])} (from xalloc?): use xfree")
        return VmemBadAddress(f"{what}: no quantum-cache buffer at this address")

    # --- per-allocation user word -------------------------------------------------------------
    def _tag(self, addr: int) -> int:
        addr = _as_int(addr, "addr")
        t = int(K.k_lookup(self._seg, addr)) if 0 <= addr < VMEM_MAXADDR else -1
        if t < 0:
            raise VmemBadAddress(f"{self.name}: no segment-layer allocation starts at {addr:#x}")
        return t

    def tag_of(self, addr: int) -> int:
        """Index in the tag pool of the allocated segment starting at ``addr``."""
        return self._tag(addr)

    def user(self, addr: int) -> int:
        """The spare word of the allocation's boundary tag (0 when allocated)."""
        return int(self._seg[self._tag(addr), K.F_USER])

    def set_user(self, addr: int, value: int) -> None:
        self._seg[self._tag(addr), K.F_USER] = _as_int(value, "value")

    # --- batch --------------------------------------------------------------------------------
    def run(self, ops, policy: Policy = Policy.INSTANTFIT, aligns=None) -> np.ndarray:
        """Run a stream of operations in one kernel call; returns one int64 per op.

        ``ops[i] > 0`` allocates ``ops[i]`` (result: the address, -1 if it failed);
        ``ops[i] < 0`` frees the allocation of op ``-ops[i] - 1`` (result: its address; a
        failed allocation is skipped).  ``aligns`` (optional, one per op) gives each
        allocation a power-of-two alignment (``xalloc(size, align)``).  Like ``xalloc``, the
        stream bypasses the quantum caches.  Failures never raise (they count in ``fail``).
        """
        ops = np.ascontiguousarray(ops, dtype=np.int64)
        if ops.ndim != 1:
            raise VmemInvalidRequest("ops must be one-dimensional")
        n = len(ops)
        flags = _policy_flags(policy)
        if aligns is None:
            al = np.empty(0, np.int64)
        else:
            al = np.ascontiguousarray(aligns, dtype=np.int64)
        bits = int(K.k_batch_check(ops, al if al.shape == ops.shape else np.empty(0, np.int64),
                                   self.quantum))
        if bits & K.B_BADOP:
            raise VmemInvalidRequest("ops must be sizes in [1, 2**62) or -(index + 1) of an earlier op")
        if aligns is not None:
            if al.shape != ops.shape:
                raise VmemInvalidRequest("aligns must have one entry per op")
            if bits & K.B_BADALIGN:
                raise VmemConstraintError("aligns must be 0 or powers of two that are multiples of the "
                                          f"quantum {self.quantum}")
            if bits & K.B_BIGALIGN:
                raise VmemConstraintError("aligns must be below 2**62")
            if flags & VM_NEXTFIT and bits & K.B_ALIGNED:
                raise VmemConstraintError("Policy.NEXTFIT does not take alignments")
        out = np.full(n, -1, np.int64)
        done = np.zeros(n, np.int8)
        stop_on_nospace = self._import_fn is not None
        pos = 0
        while True:
            pos = int(K.k_batch(self._seg, ops, al, flags, out, done, pos, stop_on_nospace))
            status = int(self._meta[K.M_STATUS])
            if status == 0:
                break
            if status == E_NOTAGS:
                if not self._populate():
                    self._meta[K.K_FAIL] += 1
                    pos += 1
            elif status == E_NOSPACE:
                size = _p2roundup(int(ops[pos]), self.quantum)
                align = int(al[pos]) if len(al) and al[pos] > self.quantum else 0
                r = self._alloc_slow(E_NOSPACE, size, align, 0, flags, nosleep=True, xargs=None)
                out[pos] = -1 if r is None else r
                pos += 1
            elif status == E_RELEASE:
                self._drain_releases()
            elif status in (E_BADINDEX, E_DOUBLEINDEX):
                why = "is not an earlier op" if status == E_BADINDEX else "was already freed"
                raise VmemInvalidRequest(f"op {pos}: free of op {-int(ops[pos]) - 1}, which {why}")
            else:
                j = -int(ops[pos]) - 1
                raise VmemError(f"op {pos}: freeing op {j} at {int(out[j]):#x} failed (status {status})")
        self._drain_releases()
        return out

    # --- consistency --------------------------------------------------------------------------
    def check(self) -> None:
        """Check every invariant of the arena and its quantum caches; raise InvariantViolation."""
        code, t = (int(x) for x in K.k_check(self._seg))
        if code:
            where = ""
            if 0 <= t < self._seg.shape[0]:
                where = (f" (tag {t}: start={int(self._seg[t, K.F_START]):#x}, "
                         f"size={int(self._seg[t, K.F_SIZE]):#x}, type={int(self._seg[t, K.F_TYPE]):#x})")
            raise InvariantViolation(f"{self.name}: {K.CHECK_MESSAGES[code]}{where}")
        if int(self._meta[K.M_RELN]):
            raise InvariantViolation(f"{self.name}: spans left on the pending-release queue")
        outstanding: dict[int, int] = {}
        for qc in self._qcaches:
            nempty = 0
            for base, slab in qc.slabs.items():
                t = int(K.k_lookup(self._seg, base))
                if t < 0 or int(self._seg[t, K.F_SIZE]) != self.qcache_slabsize:
                    raise InvariantViolation(f"{qc.name}: slab {base:#x} is not an allocated segment "
                                             f"of {self.qcache_slabsize}")
                objs = set(slab.free)
                if len(objs) != len(slab.free) or len(objs) + slab.refcnt != qc.nobj:
                    raise InvariantViolation(f"{qc.name}: slab {base:#x} buffer count is wrong")
                if any((a - base) % qc.objsize or not 0 <= a - base < qc.nobj * qc.objsize for a in objs):
                    raise InvariantViolation(f"{qc.name}: slab {base:#x} holds a foreign buffer")
                nempty += slab.refcnt == 0
                outstanding[id(qc)] = outstanding.get(id(qc), 0) + slab.refcnt
            if nempty != qc.nempty or nempty > 1:
                raise InvariantViolation(f"{qc.name}: {nempty} empty slabs, nempty={qc.nempty}")
        for addr, slab in self._qobj.items():
            outstanding[id(slab.cache)] = outstanding.get(id(slab.cache), 0) - 1
            if addr in slab.free or slab.cache.slabs.get(slab.base) is not slab:
                raise InvariantViolation(f"{slab.cache.name}: buffer {addr:#x} both allocated and free")
        if any(outstanding.values()):
            raise InvariantViolation(f"{self.name}: quantum-cache reference counts disagree with "
                                     "the allocated buffers")


def _default_import(source: Vmem, size: int):
    return source.alloc(size, nosleep=True)


def _default_release(source: Vmem, addr: int, size: int) -> None:
    source.free(addr, size)
