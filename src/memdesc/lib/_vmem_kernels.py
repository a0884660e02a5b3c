"""numba core of the vmem arena (Bonwick & Adams, USENIX 2001; illumos ``vmem.c``).

Theory statement
----------------
An *arena* is a set of integers ``[0, 2**62)`` made of *spans* (added with
``vmem_add`` or imported from a source arena).  Spans are divided into
*segments*, each allocated or free; segments never cross span boundaries and two
free segments are never adjacent (they are coalesced on free).  Every segment
and every span is described by an external *boundary tag*: one row of the tag
pool ``seg`` (fields ``start``, ``size``, ``type``, ``anext``/``aprev``,
``knext``/``kprev``, ``user``, ...; see ``VmemState``).  Every kernel takes that
one int64 array: the arena's scalars (``meta``) and its hash (``htab``) are its
last two columns.

* The *arena list* (``anext``/``aprev``) links span markers and segments in
  increasing address order, starting and ending at the sentinel tag ``T_SEG0``.
  Unlike illumos, which appends a new span at the tail, spans are inserted at
  their address position, so the whole list is address ordered.  The NEXTFIT
  *rotor* (``T_ROTOR``, type ``VMEM_ROTOR``) is a marker in this list; like
  illumos, a free segment on each side of the rotor is the only case where two
  free segments are neighbours (``vmem_advance`` coalesces them when the rotor
  moves).
* The *next-of-kin list* (``knext``/``kprev``) holds, for a free segment, its
  power-of-two freelist: ``freelist[n]`` has the free segments with sizes in
  ``[2**n, 2**(n+1))``; the heads are sentinel tags ``T_FREELIST + n``; bit ``n``
  of ``meta[M_FREEMAP]`` is set iff ``freelist[n]`` is non-empty.  For an
  allocated segment ``knext`` is its chain in the allocated-segment hash table
  ``htab`` (hashed by address with illumos' ``VMEM_HASH_INDEX``; one bucket per
  tag, so the load factor stays <= 1 and the table grows with the pool instead of
  illumos' periodic ``vmem_hash_rescale``).  For a span marker it is the
  address-ordered span list that starts at ``T_SEG0``.
* Instant fit (the default) takes the first segment of the first freelist whose
  members *all* fit (an aligned ``xalloc`` walks the lists from there until a segment
  holds an aligned block: ``_search_aligned`` is the cheap loop for align-only
  requests); best fit, first fit (freelist order) and next fit (rotor) are those of
  illumos; ``VM_ADDRFIT`` (a memdesc extension) is the
  address-ordered first fit of the old ``rmalloc()`` resource maps that vmem
  replaced, O(segments), kept to compare with allocators that use it.

Tags and the "never allocate when freeing" rule
-----------------------------------------------
Tags come only from a free-tag stack (``stack[:meta[M_NFREE]]``).  Every
operation that may need tags first checks that the worst case is available
(``vmem_populate`` semantics: ``VMEM_MINFREE`` = ``VMEM_SEGS_PER_ALLOC_MAX`` = 4,
i.e. span create + middle allocation) and otherwise returns ``E_NOTAGS``
*without mutating anything*; the Python facade then grows the pool and retries.
``vmem_xfree`` never takes a tag: it only coalesces and releases tags.  Freeing
the last segment of an imported span queues the span on the pending-release
list (``meta[M_RELN]``) for the facade to hand back to the source arena.

Sizes are rounded up to the quantum (NetBSD ``vmem_roundup_size``) and the
free-size check compares rounded sizes.  All functions here are plain Python
on numpy arrays as well (``NUMBA_DISABLE_JIT=1``).

Why kernels take the bare pool array and not the ``VmemState`` NamedTuple: numba
reference-counts each array of a tuple every time the tuple crosses a call, and that
cost a third of the batch kernel's time (47 -> 32 ns per operation, measured).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from memdesc._numba import JIT_DISABLED, njit

# --- segment types (illumos sys/vmem_impl.h, sys/vmem.h) ----------------------------------------
VMEM_ALLOC = 0x01
VMEM_FREE = 0x02
VMEM_SPAN = 0x10
VMEM_ROTOR = 0x20
VMEM_MARKER = 0x80  # memdesc: freelist head sentinels (illumos' vmem_freelist_t "pegs")

# --- vmflag bits (illumos sys/vmem.h; VM_ADDRFIT is memdesc's) --------------------------------
VM_SLEEP = 0x0
VM_NOSLEEP = 0x1
VM_BESTFIT = 0x100
VM_FIRSTFIT = 0x200
VM_NEXTFIT = 0x400
VM_ADDRFIT = 0x10000
VM_POLICY = VM_BESTFIT | VM_FIRSTFIT | VM_NEXTFIT | VM_ADDRFIT

# --- tag budget (illumos vmem.c) ----------------------------------------------------------------
VMEM_SEGS_PER_SPAN_CREATE = 2
VMEM_SEGS_PER_EXACT_ALLOC = 0
VMEM_SEGS_PER_LEFT_ALLOC = 1
VMEM_SEGS_PER_RIGHT_ALLOC = 1
VMEM_SEGS_PER_MIDDLE_ALLOC = 2
VMEM_SEGS_PER_ALLOC_MAX = VMEM_SEGS_PER_SPAN_CREATE + VMEM_SEGS_PER_MIDDLE_ALLOC
# illumos adds VMEM_POPULATE_RESERVE (12) for up to 4 threads populating vmem_seg_arena
# recursively; one thread and no recursion here, so the reserve is the worst case itself.
VMEM_MINFREE = VMEM_SEGS_PER_ALLOC_MAX

VMEM_FREELISTS = 63  # classes 0..62: sizes < 2**62
VMEM_MAXADDR = 1 << 62  # exclusive upper bound of every address and size

# --- tag pool layout ----------------------------------------------------------------------------
F_START, F_SIZE, F_TYPE, F_ANEXT, F_APREV, F_KNEXT, F_KPREV, F_USER, F_IMPORT, F_STACK = range(10)
NFIELDS = 10  # per-tag fields; two more columns of the pool hold the arena's scalars and hash
F_META = 10  # meta column: M_* / K_* slots in its first NMETA rows
F_HASH = 11  # hash column: one bucket per tag (capacity is a power of two), -1 = empty
NCOLS = 12
T_SEG0 = 0  # arena list sentinel (type VMEM_SPAN like illumos' vm_seg0); knext: span list
T_ROTOR = 1
T_FREELIST = 2  # T_FREELIST + n is the head of freelist[n]
T_FIRST = T_FREELIST + VMEM_FREELISTS  # first tag that can describe a span or segment

# --- meta slots ---------------------------------------------------------------------------------
(M_QUANTUM, M_FREEMAP, M_NFREE, M_CAP, M_NBUSY, M_INUSE, M_TOTAL, M_IMPORT, M_NSPANS,
 M_HSHIFT, M_QSHIFT, M_CANRELEASE, M_LASTSEG, M_STATUS, M_RELN,
 K_ALLOC, K_FREE, K_FAIL, K_LOOKUP, K_SEARCH, K_POPULATE, K_POPULATE_FAIL, K_CONTAINS,
 K_CONTAINS_SEARCH, K_IMPORT, K_RELEASE, M_RELQ) = range(27)
VMEM_RELQ = 4  # pending releases one operation can produce (nextfit: at most 2)
NMETA = M_RELQ + 2 * VMEM_RELQ

# --- return codes -------------------------------------------------------------------------------
E_NOSPACE = -1  # no segment satisfies the request (caller may import, then fails)
E_NOTAGS = -2  # fewer than the needed free tags: nothing was changed, populate and retry
E_BADFREE = -3  # no allocated segment starts at that address
E_WRONGSIZE = -4  # the allocated segment there has another (rounded) size
E_OVERLAP = -5  # vmem_add of a span overlapping an existing span
E_BADINDEX = -6  # batch: free of an op index that is not an earlier op
E_DOUBLEINDEX = -7  # batch: the same allocation freed twice
E_RELEASE = -8  # batch: stopped so the facade can release pending spans
B_BADOP, B_BADALIGN, B_BIGALIGN, B_ALIGNED = 1, 2, 4, 8  # vmem_batch_check's findings


class VmemState(NamedTuple):
    """The arena's state: the tag pool ``seg`` and two control arrays (all int64).

    ``seg`` has one row per tag and one column per field (``seg[t, F_SIZE]``: the fields of
    a tag share a cache line), named by the ``F_*`` constants:
    ``start`` (first address), ``size`` (length, rounded to the quantum), ``type``
    (VMEM_ALLOC / VMEM_FREE / VMEM_SPAN / VMEM_ROTOR / VMEM_MARKER, 0 when unused),
    ``anext``/``aprev`` (arena list, address order), ``knext``/``kprev`` (freelist, hash
    chain or span list), ``user`` (a spare word for users of the arena, 0 on creation),
    ``imp`` (span markers: imported from the source) and ``stack`` (the free-tag stack,
    ``stack[:meta[M_NFREE]]``).  In Python the columns are also properties (``st.start``...).
    ``meta`` and ``htab`` are the two last columns of ``seg`` (``F_META``, ``F_HASH``): the
    whole state is one array, so a kernel call from Python passes a single array (the
    cheapest numba dispatch), and growing the pool grows the hash with it.  The kernels
    take ``st.seg`` (``seg[M_NFREE, F_META]`` is ``st.meta[M_NFREE]``).
    """

    seg: np.ndarray  # (capacity, NCOLS) tag pool, capacity a power of two
    meta: np.ndarray  # seg[:, F_META]: scalars and counters (M_* and K_* slots)
    htab: np.ndarray  # seg[:, F_HASH]: hash buckets, first tag of the chain or -1

    start = property(lambda self: self.seg[:, F_START])
    size = property(lambda self: self.seg[:, F_SIZE])
    type = property(lambda self: self.seg[:, F_TYPE])
    anext = property(lambda self: self.seg[:, F_ANEXT])
    aprev = property(lambda self: self.seg[:, F_APREV])
    knext = property(lambda self: self.seg[:, F_KNEXT])
    kprev = property(lambda self: self.seg[:, F_KPREV])
    user = property(lambda self: self.seg[:, F_USER])
    imp = property(lambda self: self.seg[:, F_IMPORT])
    stack = property(lambda self: self.seg[:, F_STACK])


def vmem_state(seg) -> VmemState:
    """The ``VmemState`` of a pool array (column views, no copy)."""
    return VmemState(seg, seg[:, F_META], seg[:, F_HASH])


# --- bit helpers (illumos sys/sysmacros.h) -------------------------------------------------------
if JIT_DISABLED:
    def highbit(x):
        """1 + index of the highest set bit of ``x`` > 0; 0 for 0."""
        return int(x).bit_length()

    def lowbit(x):
        """1 + index of the lowest set bit of ``x``; 0 for 0."""
        return int(x & -x).bit_length()
else:
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def _ctlz(typingctx, x):
        if not isinstance(x, types.Integer) or x.bitwidth != 64:
            return None

        def codegen(context, builder, signature, args):
            return builder.ctlz(args[0], context.get_constant(types.boolean, False))

        return types.int64(x), codegen

    @intrinsic
    def _cttz(typingctx, x):
        if not isinstance(x, types.Integer) or x.bitwidth != 64:
            return None

        def codegen(context, builder, signature, args):
            return builder.cttz(args[0], context.get_constant(types.boolean, False))

        return types.int64(x), codegen

    @njit
    def highbit(x):
        """1 + index of the highest set bit of ``x`` > 0; 0 for 0 (LLVM ctlz)."""
        return 64 - _ctlz(x)

    @njit
    def lowbit(x):
        """1 + index of the lowest set bit of ``x``; 0 for 0 (LLVM cttz)."""
        return 0 if x == 0 else _cttz(x) + 1


@njit
def p2roundup(x, align):
    return -(-x & -align)


@njit
def vmem_hash_index(seg, addr):
    """illumos ``VMEM_HASH_INDEX(a, s, q, m)``."""
    s = seg[M_HSHIFT, F_META]
    return ((addr + (addr >> s) + (addr >> (s << 1))) >> seg[M_QSHIFT, F_META]) & (seg.shape[0] - 1)


# --- list primitives (VMEM_INSERT / VMEM_DELETE) ------------------------------------------------
@njit
def _ainsert(seg, vprev, t):
    vnext = seg[vprev, F_ANEXT]
    seg[t, F_ANEXT] = vnext
    seg[t, F_APREV] = vprev
    seg[vprev, F_ANEXT] = t
    seg[vnext, F_APREV] = t


@njit
def _adelete(seg, t):
    vprev = seg[t, F_APREV]
    vnext = seg[t, F_ANEXT]
    seg[vprev, F_ANEXT] = vnext
    seg[vnext, F_APREV] = vprev


@njit
def _kinsert(seg, vprev, t):
    vnext = seg[vprev, F_KNEXT]
    seg[t, F_KNEXT] = vnext
    seg[t, F_KPREV] = vprev
    seg[vprev, F_KNEXT] = t
    seg[vnext, F_KPREV] = t


@njit
def _kdelete(seg, t):
    vprev = seg[t, F_KPREV]
    vnext = seg[t, F_KNEXT]
    seg[vprev, F_KNEXT] = vnext
    seg[vnext, F_KPREV] = vprev


# --- tag supply ---------------------------------------------------------------------------------
@njit
def vmem_getseg(seg):
    """Pop a tag from the free-tag stack (callers checked ``meta[M_NFREE]`` beforehand)."""
    n = seg[M_NFREE, F_META] - 1
    seg[M_NFREE, F_META] = n
    return seg[n, F_STACK]


@njit
def vmem_putseg(seg, t):
    n = seg[M_NFREE, F_META]
    seg[n, F_STACK] = t
    seg[M_NFREE, F_META] = n + 1
    seg[t, F_TYPE] = 0


# --- freelists and hash -------------------------------------------------------------------------
@njit
def vmem_freelist_insert(seg, t):
    c = highbit(seg[t, F_SIZE]) - 1
    seg[t, F_TYPE] = VMEM_FREE
    seg[M_FREEMAP, F_META] |= 1 << c
    _kinsert(seg, T_FREELIST + c, t)


@njit
def vmem_freelist_delete(seg, t):
    if seg[t, F_KNEXT] == seg[t, F_KPREV]:  # both neighbours are the list head: the list empties
        seg[M_FREEMAP, F_META] &= ~(1 << (seg[t, F_KNEXT] - T_FREELIST))
    _kdelete(seg, t)


@njit
def vmem_hash_insert(seg, t):
    seg[t, F_TYPE] = VMEM_ALLOC
    seg[t, F_USER] = 0
    b = vmem_hash_index(seg, seg[t, F_START])
    seg[t, F_KNEXT] = seg[b, F_HASH]
    seg[t, F_KPREV] = -1
    seg[b, F_HASH] = t
    seg[K_ALLOC, F_META] += 1
    seg[M_INUSE, F_META] += seg[t, F_SIZE]
    seg[M_NBUSY, F_META] += 1


@njit
def vmem_hash_lookup(seg, addr):
    """Tag of the allocated segment starting at ``addr``, or -1."""
    t = seg[vmem_hash_index(seg, addr), F_HASH]
    while t >= 0:
        if seg[t, F_START] == addr:
            return t
        t = seg[t, F_KNEXT]
    return -1


@njit
def vmem_hash_delete(seg, addr, size):
    """Unhash the allocated segment ``[addr, addr+size)``; checks before changing anything."""
    b = vmem_hash_index(seg, addr)
    prev = -1
    t = seg[b, F_HASH]
    while t >= 0:
        if seg[t, F_START] == addr:
            break
        seg[K_LOOKUP, F_META] += 1
        prev = t
        t = seg[t, F_KNEXT]
    if t < 0:
        return E_BADFREE
    if seg[t, F_SIZE] != size:
        return E_WRONGSIZE
    if prev < 0:
        seg[b, F_HASH] = seg[t, F_KNEXT]
    else:
        seg[prev, F_KNEXT] = seg[t, F_KNEXT]
    seg[K_FREE, F_META] += 1
    seg[M_INUSE, F_META] -= size
    seg[M_NBUSY, F_META] -= 1
    return t


@njit
def vmem_hash_rebuild(seg):
    """Rehash every allocated segment into the hash column (after the pool, and the hash, grew)."""
    seg[:, F_HASH] = -1
    seg[M_HSHIFT, F_META] = highbit(seg.shape[0] - 1)
    t = seg[T_SEG0, F_ANEXT]
    while t != T_SEG0:
        if seg[t, F_TYPE] == VMEM_ALLOC:
            b = vmem_hash_index(seg, seg[t, F_START])
            seg[t, F_KNEXT] = seg[b, F_HASH]
            seg[b, F_HASH] = t
        t = seg[t, F_ANEXT]


# --- segments and spans -------------------------------------------------------------------------
@njit
def vmem_seg_create(seg, vprev, start, size):
    t = vmem_getseg(seg)
    seg[t, F_START] = start
    seg[t, F_SIZE] = size
    seg[t, F_TYPE] = 0
    seg[t, F_IMPORT] = 0
    seg[t, F_USER] = 0
    _ainsert(seg, vprev, t)
    return t


@njit
def vmem_seg_destroy(seg, t):
    _adelete(seg, t)
    vmem_putseg(seg, t)


@njit
def vmem_span_create(seg, addr, size, imp):
    """Add span ``[addr, addr+size)`` and its free segment; returns the segment or E_*.

    Needs ``VMEM_SEGS_PER_SPAN_CREATE`` tags; refuses an overlapping span.
    """
    if seg[M_NFREE, F_META] < VMEM_SEGS_PER_SPAN_CREATE:
        return E_NOTAGS
    nxt = seg[T_SEG0, F_KNEXT]  # first span starting after addr (span list is address ordered)
    while nxt != T_SEG0 and seg[nxt, F_START] < addr:
        nxt = seg[nxt, F_KNEXT]
    prv = seg[nxt, F_KPREV]
    if prv != T_SEG0 and seg[prv, F_START] + seg[prv, F_SIZE] > addr:
        return E_OVERLAP
    if nxt != T_SEG0 and seg[nxt, F_START] < addr + size:
        return E_OVERLAP
    span = vmem_seg_create(seg, seg[nxt, F_APREV], addr, size)
    seg[span, F_TYPE] = VMEM_SPAN
    seg[span, F_IMPORT] = imp
    _kinsert(seg, prv, span)
    t = vmem_seg_create(seg, span, addr, size)
    vmem_freelist_insert(seg, t)
    seg[M_TOTAL, F_META] += size
    if imp:
        seg[M_IMPORT, F_META] += size
    seg[M_NSPANS, F_META] += 1
    return t


@njit
def vmem_span_destroy(seg, t):
    """Remove the free segment ``t`` (off its freelist) that covers its whole span."""
    span = seg[t, F_APREV]
    size = seg[t, F_SIZE]
    if seg[span, F_IMPORT]:
        seg[M_IMPORT, F_META] -= size
    seg[M_TOTAL, F_META] -= size
    seg[M_NSPANS, F_META] -= 1
    _kdelete(seg, span)
    vmem_seg_destroy(seg, t)
    vmem_seg_destroy(seg, span)


@njit
def _span_is_free(seg, t):
    """Free segment ``t`` is a whole imported span that the arena hands back to its source."""
    span = seg[t, F_APREV]
    return (seg[M_CANRELEASE, F_META] != 0 and seg[span, F_TYPE] == VMEM_SPAN and seg[span, F_IMPORT] != 0
            and seg[seg[t, F_ANEXT], F_TYPE] == VMEM_SPAN)


@njit
def _release_span(seg, t):
    """Destroy the free (off-freelist) whole-span segment ``t`` and queue the span for release."""
    n = seg[M_RELN, F_META]
    seg[M_RELQ + 2 * n, F_META] = seg[t, F_START]
    seg[M_RELQ + 2 * n + 1, F_META] = seg[t, F_SIZE]
    seg[M_RELN, F_META] = n + 1
    seg[K_RELEASE, F_META] += 1
    vmem_span_destroy(seg, t)


@njit
def vmem_seg_alloc(seg, t, addr, size):
    """Allocate ``[addr, addr+size)`` from free segment ``t``; leftovers go back on freelists."""
    vs_start = seg[t, F_START]
    vs_size = seg[t, F_SIZE]
    vs_end = vs_start + vs_size
    addr_end = addr + size
    rest = vs_size - size
    # Allocating from the start, the remainder staying on the same freelist: P2SAMEHIGHBIT.
    if addr == vs_start and (vs_size ^ rest) < (vs_size & rest):
        seg[t, F_START] = addr_end
        seg[t, F_SIZE] = rest
        n = vmem_seg_create(seg, seg[t, F_APREV], addr, size)
        vmem_hash_insert(seg, n)
        return n
    vmem_freelist_delete(seg, t)
    if vs_end != addr_end:
        vmem_freelist_insert(seg, vmem_seg_create(seg, t, addr_end, vs_end - addr_end))
    if vs_start != addr:
        vmem_freelist_insert(seg, vmem_seg_create(seg, seg[t, F_APREV], vs_start, addr - vs_start))
    seg[t, F_START] = addr
    seg[t, F_SIZE] = size
    vmem_hash_insert(seg, t)
    return t


# --- allocation ---------------------------------------------------------------------------------
@njit
def vmem_fit(vs_start, vs_size, size, align, phase, nocross, minaddr, maxaddr):
    """Lowest address in segment ``[vs_start, vs_start+vs_size)`` for the constraints, or -1."""
    vs_end = vs_start + vs_size
    if vs_end <= minaddr or vs_start >= maxaddr:
        return -1
    start = max(vs_start, minaddr)
    end = min(vs_end, maxaddr)
    taddr = phase - ((phase - start) & -align)  # P2PHASEUP
    if nocross != 0 and ((taddr ^ (taddr + size - 1)) & -nocross) != 0:  # P2BOUNDARY
        taddr += p2roundup(-taddr & (nocross - 1), align)  # up to the boundary, keep the phase
    if (taddr - start) + size > end - start:
        return -1
    return taddr


@njit
def _search_freelists(seg, c, size, align, phase, nocross, minaddr, maxaddr, vmflag, one_list):
    """Walk freelist ``c`` and (unless ``one_list``) the larger non-empty ones; illumos'
    vmem_xalloc loop.  Returns ``(tag, addr)``, tag -1 if nothing fits."""
    vbest = -1
    addr = -1
    while c >= 0:
        head = T_FREELIST + c
        t = seg[head, F_KNEXT]
        while t != head:
            seg[K_SEARCH, F_META] += 1
            a = vmem_fit(seg[t, F_START], seg[t, F_SIZE], size, align, phase, nocross,
                         minaddr, maxaddr)
            if a >= 0 and (vbest < 0 or seg[t, F_SIZE] < seg[vbest, F_SIZE]):
                vbest = t
                addr = a
                if (vmflag & VM_BESTFIT) == 0 or seg[t, F_SIZE] == size:
                    break
            t = seg[t, F_KNEXT]
        if vbest >= 0 or one_list or c + 1 >= VMEM_FREELISTS:
            break
        c = lowbit(seg[M_FREEMAP, F_META] & -(1 << (c + 1))) - 1
    return vbest, addr


@njit
def _search_aligned(seg, c, size, align, one_list):
    """``_search_freelists`` for the common constraint ``xalloc(size, align)`` without
    ``VM_BESTFIT`` (phase 0, no nocross, no address bounds): the first segment, in the same
    order, that holds an ``align``-aligned block of ``size``, freelist ``c`` first.
    ``vmem_fit`` reduces to one mask and one compare, ``P2ROUNDUP(start, align) + size <=
    end``, and the search counter is written once.  A list whose members are all at least
    ``size + align - quantum`` long fits at its head, so past the first list a miss costs one
    check.  Same tag, address and ``K_SEARCH`` count as the general loop (tested)."""
    searched = 0
    vbest = -1
    addr = -1
    mask = align - 1
    while c >= 0:
        head = T_FREELIST + c
        t = seg[head, F_KNEXT]
        while t != head:
            searched += 1
            start = seg[t, F_START]
            a = (start + mask) & ~mask
            if a - start + size <= seg[t, F_SIZE]:
                vbest = t
                addr = a
                break
            t = seg[t, F_KNEXT]
        if vbest >= 0 or one_list or c + 1 >= VMEM_FREELISTS:
            break
        c = lowbit(seg[M_FREEMAP, F_META] & -(1 << (c + 1))) - 1
    seg[K_SEARCH, F_META] += searched
    return vbest, addr


@njit
def _start_freelists(seg, size, vmflag):
    """First freelist to search for ``size`` and the list instant fit skips (-1: none)."""
    freemap = seg[M_FREEMAP, F_META]
    if size & (size - 1) == 0:
        return lowbit(freemap & -size) - 1, -1
    hb = highbit(size)
    skipped = -1
    if hb >= VMEM_FREELISTS or (freemap >> hb) == 0 or (vmflag & (VM_BESTFIT | VM_FIRSTFIT)):
        hb -= 1
    elif (freemap >> (hb - 1)) & 1:
        skipped = hb - 1  # instant fit skips the list that only *might* fit
    return lowbit(freemap & -(1 << hb)) - 1, skipped


@njit
def vmem_xalloc_aligned(seg, size, align, vmflag):
    """``vmem_xalloc(size, align)`` with phase 0, no nocross, no address bounds, the default
    tag reserve and neither ``VM_BESTFIT`` nor ``VM_ADDRFIT`` (e.g. the batch kernel's and
    ``Vmem.xalloc``'s aligned instant-fit requests): ``vmem_xalloc``'s search and result,
    through ``_search_aligned``."""
    if seg[M_NFREE, F_META] < VMEM_MINFREE:
        return E_NOTAGS
    c, skipped = _start_freelists(seg, size, vmflag)
    vbest, addr = _search_aligned(seg, c, size, align, False)
    if vbest < 0 and skipped >= 0:
        # NetBSD: an instant-fit miss is retried on the skipped list (illumos would wait)
        vbest, addr = _search_aligned(seg, skipped, size, align, True)
    if vbest < 0:
        return E_NOSPACE
    seg[M_LASTSEG, F_META] = vmem_seg_alloc(seg, vbest, addr, size)
    return addr


@njit
def vmem_xalloc(seg, size, align, phase, nocross, minaddr, maxaddr, vmflag, minfree):
    """Constrained allocation (``size`` rounded, parameters checked by the caller).

    Returns the address (tag in ``meta[M_LASTSEG]``), ``E_NOSPACE`` or ``E_NOTAGS``.
    """
    if (phase == 0 and nocross == 0 and minaddr == 0 and maxaddr == VMEM_MAXADDR
            and minfree == VMEM_MINFREE and (vmflag & (VM_BESTFIT | VM_ADDRFIT)) == 0):
        return vmem_xalloc_aligned(seg, size, align, vmflag)
    if seg[M_NFREE, F_META] < minfree:
        return E_NOTAGS
    vbest = -1
    addr = -1
    if vmflag & VM_ADDRFIT:
        t = seg[T_SEG0, F_ANEXT]
        while t != T_SEG0:
            seg[K_SEARCH, F_META] += 1
            if seg[t, F_TYPE] == VMEM_FREE and seg[t, F_SIZE] >= size:
                a = vmem_fit(seg[t, F_START], seg[t, F_SIZE], size, align, phase, nocross,
                             minaddr, maxaddr)
                if a >= 0:
                    vbest = t
                    addr = a
                    break
            t = seg[t, F_ANEXT]
    else:
        c, skipped = _start_freelists(seg, size, vmflag)
        vbest, addr = _search_freelists(seg, c, size, align, phase, nocross, minaddr, maxaddr,
                                        vmflag, False)
        if vbest < 0 and skipped >= 0:
            # NetBSD: an instant-fit miss is retried on the skipped list (illumos would wait)
            vbest, addr = _search_freelists(seg, skipped, size, align, phase, nocross, minaddr, maxaddr,
                                            vmflag, True)
    if vbest < 0:
        return E_NOSPACE
    seg[M_LASTSEG, F_META] = vmem_seg_alloc(seg, vbest, addr, size)
    return addr


@njit
def vmem_advance(seg, walker, afterme):
    """Move marker ``walker`` after ``afterme`` (-1: unlink); coalesce what it separated."""
    vprev = seg[walker, F_APREV]
    vnext = seg[walker, F_ANEXT]
    _adelete(seg, walker)
    if afterme >= 0:
        _ainsert(seg, afterme, walker)
    vsp = -1
    if seg[vprev, F_TYPE] == VMEM_FREE:
        if seg[vnext, F_TYPE] == VMEM_FREE:
            vmem_freelist_delete(seg, vnext)
            vmem_freelist_delete(seg, vprev)
            seg[vprev, F_SIZE] += seg[vnext, F_SIZE]
            vmem_freelist_insert(seg, vprev)
            vmem_seg_destroy(seg, vnext)
        vsp = vprev
    elif seg[vnext, F_TYPE] == VMEM_FREE:
        vsp = vnext
    if vsp >= 0 and _span_is_free(seg, vsp):
        vmem_freelist_delete(seg, vsp)
        _release_span(seg, vsp)


@njit
def vmem_nextfit_alloc(seg, size, vmflag):
    """VM_NEXTFIT: the first free segment at or after the rotor (cycles through the arena)."""
    if seg[M_NFREE, F_META] < VMEM_MINFREE:
        return E_NOTAGS
    rotor = T_ROTOR
    vsp = seg[rotor, F_ANEXT]
    if seg[vsp, F_TYPE] == VMEM_FREE:
        vs_size = seg[vsp, F_SIZE]
        rest = vs_size - size
        if rest > 0 and (vs_size ^ rest) < (vs_size & rest):
            addr = seg[vsp, F_START]
            seg[vsp, F_START] = addr + size
            seg[vsp, F_SIZE] = rest
            t = vmem_seg_create(seg, seg[rotor, F_APREV], addr, size)  # behind the rotor
            vmem_hash_insert(seg, t)
            seg[M_LASTSEG, F_META] = t
            return addr
    while True:
        seg[K_SEARCH, F_META] += 1
        if seg[vsp, F_TYPE] == VMEM_FREE and seg[vsp, F_SIZE] >= size:
            break
        vsp = seg[vsp, F_ANEXT]
        if vsp == rotor:
            # Full circle: the rotor may be what keeps two free segments apart.
            vmem_advance(seg, rotor, seg[rotor, F_ANEXT])
            vsp = seg[rotor, F_APREV]
            if seg[vsp, F_TYPE] == VMEM_FREE and seg[vsp, F_SIZE] >= size:
                break
            return vmem_xalloc(seg, size, seg[M_QUANTUM, F_META], 0, 0, 0, VMEM_MAXADDR,
                               vmflag & ~VM_POLICY, VMEM_MINFREE)
    addr = seg[vsp, F_START]
    t = vmem_seg_alloc(seg, vsp, addr, size)
    seg[M_LASTSEG, F_META] = t
    vmem_advance(seg, rotor, t)
    return addr


@njit
def vmem_alloc(seg, size, vmflag):
    """``vmem_alloc`` below the quantum caches: ``size`` > 0 (rounded here)."""
    q = seg[M_QUANTUM, F_META]
    size = p2roundup(size, q)
    if vmflag & VM_NEXTFIT:
        return vmem_nextfit_alloc(seg, size, vmflag)
    if vmflag & (VM_BESTFIT | VM_FIRSTFIT | VM_ADDRFIT):
        return vmem_xalloc(seg, size, q, 0, 0, 0, VMEM_MAXADDR, vmflag, VMEM_MINFREE)
    if seg[M_NFREE, F_META] < VMEM_MINFREE:
        return E_NOTAGS
    flist = 0
    freemap = seg[M_FREEMAP, F_META]
    if size & (size - 1) == 0:
        flist = lowbit(freemap & -size)
    else:
        hb = highbit(size)
        if hb < VMEM_FREELISTS:
            flist = lowbit(freemap & -(1 << hb))
    if flist == 0:
        return vmem_xalloc(seg, size, q, 0, 0, 0, VMEM_MAXADDR, vmflag, VMEM_MINFREE)
    t = seg[T_FREELIST + flist - 1, F_KNEXT]
    addr = seg[t, F_START]
    seg[M_LASTSEG, F_META] = vmem_seg_alloc(seg, t, addr, size)
    return addr


# --- free ---------------------------------------------------------------------------------------
@njit
def vmem_xfree(seg, addr, size):
    """Free ``[addr, addr+size)``: 0, or E_BADFREE / E_WRONGSIZE with nothing changed.

    Takes no tag: coalescing only returns tags to the stack.
    """
    size = p2roundup(size, seg[M_QUANTUM, F_META])
    t = vmem_hash_delete(seg, addr, size)
    if t < 0:
        return t
    vnext = seg[t, F_ANEXT]
    if seg[vnext, F_TYPE] == VMEM_FREE:
        vmem_freelist_delete(seg, vnext)
        seg[t, F_SIZE] += seg[vnext, F_SIZE]
        vmem_seg_destroy(seg, vnext)
    vprev = seg[t, F_APREV]
    if seg[vprev, F_TYPE] == VMEM_FREE:
        vmem_freelist_delete(seg, vprev)
        seg[vprev, F_SIZE] += seg[t, F_SIZE]
        vmem_seg_destroy(seg, t)
        t = vprev
    if _span_is_free(seg, t):
        _release_span(seg, t)
    else:
        vmem_freelist_insert(seg, t)
    return 0


# --- queries ------------------------------------------------------------------------------------
@njit
def vmem_contains(seg, addr, size):
    seg[K_CONTAINS, F_META] += 1
    end = addr + size
    sp = seg[T_SEG0, F_KNEXT]
    while sp != T_SEG0:
        seg[K_CONTAINS_SEARCH, F_META] += 1
        if addr >= seg[sp, F_START] and end <= seg[sp, F_START] + seg[sp, F_SIZE]:
            return True
        if seg[sp, F_START] >= end:
            break
        sp = seg[sp, F_KNEXT]
    return False


@njit
def vmem_walk(seg, typemask):
    """Arrays (start, size, type, tag) of the arena-list entries whose type is in ``typemask``."""
    n = 0
    t = seg[T_SEG0, F_ANEXT]
    while t != T_SEG0:
        if seg[t, F_TYPE] & typemask:
            n += 1
        t = seg[t, F_ANEXT]
    starts = np.empty(n, np.int64)
    sizes = np.empty(n, np.int64)
    types = np.empty(n, np.int64)
    tags = np.empty(n, np.int64)
    i = 0
    t = seg[T_SEG0, F_ANEXT]
    while t != T_SEG0:
        if seg[t, F_TYPE] & typemask:
            starts[i] = seg[t, F_START]
            sizes[i] = seg[t, F_SIZE]
            types[i] = seg[t, F_TYPE]
            tags[i] = t
            i += 1
        t = seg[t, F_ANEXT]
    return starts, sizes, types, tags


@njit
def vmem_locate(seg, addr):
    """Tag of the segment (ALLOC or FREE) containing ``addr``, or -1 (diagnostics; O(n))."""
    t = seg[T_SEG0, F_ANEXT]
    while t != T_SEG0:
        ty = seg[t, F_TYPE]
        s = seg[t, F_START]
        if (ty == VMEM_ALLOC or ty == VMEM_FREE) and s <= addr < s + seg[t, F_SIZE]:
            return t
        t = seg[t, F_ANEXT]
    return -1


# --- batch --------------------------------------------------------------------------------------
@njit
def vmem_batch(seg, ops, aligns, vmflag, out, done, pos, stop_on_nospace):
    """Run ``ops[pos:]`` entirely in the kernel; returns the index reached.

    ``ops[i] > 0`` allocates ``ops[i]`` (address to ``out[i]``, -1 on failure);
    ``ops[i] < 0`` frees the allocation made by op ``-ops[i] - 1`` (``out[i]`` = its
    address).  ``aligns`` is empty or gives each allocation's alignment (xalloc).  Stops
    early with ``meta[M_STATUS]`` = E_NOTAGS (populate, retry i), E_NOSPACE (if
    ``stop_on_nospace``: import, retry i), E_RELEASE (release spans, go on at i) or a
    free error; 0 when done.
    """
    q = seg[M_QUANTUM, F_META]
    n = len(ops)
    i = pos
    seg[M_STATUS, F_META] = 0
    while i < n:
        op = ops[i]
        if op > 0:
            size = p2roundup(op, q)
            if len(aligns) != 0 and aligns[i] > q:
                # straight to the fast path: through vmem_xalloc's nine arguments the buddy-like
                # stream ran ~20 % slower (benchmarks/bench_vmem_peers.py, measured)
                if vmflag & (VM_BESTFIT | VM_ADDRFIT):
                    r = vmem_xalloc(seg, size, aligns[i], 0, 0, 0, VMEM_MAXADDR, vmflag, VMEM_MINFREE)
                else:
                    r = vmem_xalloc_aligned(seg, size, aligns[i], vmflag)
            else:
                r = vmem_alloc(seg, size, vmflag)
            if r == E_NOTAGS:
                seg[M_STATUS, F_META] = E_NOTAGS
                return i
            if r == E_NOSPACE:
                if stop_on_nospace:
                    seg[M_STATUS, F_META] = E_NOSPACE
                    return i
                seg[K_FAIL, F_META] += 1
            out[i] = r
        else:
            j = -op - 1
            if j < 0 or j >= i:
                seg[M_STATUS, F_META] = E_BADINDEX
                return i
            if done[j]:
                seg[M_STATUS, F_META] = E_DOUBLEINDEX
                return i
            if out[j] >= 0:
                r = vmem_xfree(seg, out[j], ops[j])
                if r < 0:
                    seg[M_STATUS, F_META] = r
                    return i
            done[j] = 1
            out[i] = out[j]
        i += 1
        if seg[M_RELN, F_META] != 0:
            seg[M_STATUS, F_META] = E_RELEASE
            return i
    return n


@njit
def vmem_batch_check(ops, aligns, quantum):
    """One pass over a batch stream before ``vmem_batch`` runs it: a bitmask of what is wrong.

    ``B_BADOP``: an op is 0 or ``>= VMEM_MAXADDR``; ``B_BADALIGN``: an allocation's alignment
    is negative, not a power of two or (non-zero and) not a multiple of ``quantum``;
    ``B_BIGALIGN``: an alignment ``>= VMEM_MAXADDR``; ``B_ALIGNED`` (not an error by itself:
    NEXTFIT refuses it): some allocation asks for an alignment above the quantum.  ``aligns``
    is empty or as long as ``ops``.  (It replaces six numpy passes in ``Vmem.run``.)
    """
    bits = 0
    has_al = len(aligns) != 0
    for i in range(len(ops)):
        op = ops[i]
        if op == 0 or op >= VMEM_MAXADDR:
            bits |= B_BADOP
        if has_al:
            al = aligns[i]
            if al >= VMEM_MAXADDR:
                bits |= B_BIGALIGN
            if op > 0:
                if al < 0 or (al & (al - 1)) != 0 or ((al & (quantum - 1)) != 0 and al != 0):
                    bits |= B_BADALIGN
                if al > quantum:
                    bits |= B_ALIGNED
    return bits


# --- per-call entry points (one array + scalars: the cheapest numba dispatch) ----------------
# (They are the kernels themselves; the k_* names are what the facade binds.)
@njit
def k_alloc(seg, size, vmflag):
    return vmem_alloc(seg, size, vmflag)


@njit
def k_xalloc(seg, size, align, phase, nocross, minaddr, maxaddr, vmflag, minfree):
    return vmem_xalloc(seg, size, align, phase, nocross, minaddr, maxaddr, vmflag, minfree)


@njit
def k_free(seg, addr, size):
    return vmem_xfree(seg, addr, size)


@njit
def k_span_create(seg, addr, size, imp):
    return vmem_span_create(seg, addr, size, imp)


@njit
def k_contains(seg, addr, size):
    return vmem_contains(seg, addr, size)


@njit
def k_walk(seg, typemask):
    return vmem_walk(seg, typemask)


@njit
def k_lookup(seg, addr):
    return vmem_hash_lookup(seg, addr)


@njit
def k_locate(seg, addr):
    return vmem_locate(seg, addr)


@njit
def k_hash_rebuild(seg):
    vmem_hash_rebuild(seg)


@njit
def k_batch(seg, ops, aligns, vmflag, out, done, pos, stop_on_nospace):
    return vmem_batch(seg, ops, aligns, vmflag, out, done, pos, stop_on_nospace)


@njit
def k_batch_check(ops, aligns, quantum):
    return vmem_batch_check(ops, aligns, quantum)


@njit
def k_check(seg):
    return vmem_check(seg)


# --- state construction (plain numpy; the facade grows the pool) -------------------------------
def _pow2_at_least(n: int) -> int:
    return 1 << max(n - 1, 1).bit_length()


def new_state(capacity: int, quantum: int) -> VmemState:
    """The state of an empty arena whose pool has ``capacity`` tags in total (sentinels
    included), rounded up to a power of two."""
    capacity = _pow2_at_least(max(capacity, T_FIRST + VMEM_MINFREE, NMETA))
    seg = np.zeros((capacity, NCOLS), np.int64)
    st = VmemState(seg, seg[:, F_META], seg[:, F_HASH])
    meta = st.meta
    st.htab[:] = -1
    meta[M_QUANTUM] = quantum
    meta[M_QSHIFT] = quantum.bit_length() - 1
    meta[M_HSHIFT] = (capacity - 1).bit_length()
    meta[M_CAP] = capacity
    # arena list sentinel and rotor; the span list starts and ends at T_SEG0
    seg[T_SEG0, F_TYPE] = VMEM_SPAN
    seg[T_SEG0, F_ANEXT] = seg[T_SEG0, F_APREV] = T_ROTOR
    seg[T_ROTOR, F_ANEXT] = seg[T_ROTOR, F_APREV] = T_SEG0
    seg[T_SEG0, F_KNEXT] = seg[T_SEG0, F_KPREV] = T_SEG0
    seg[T_ROTOR, F_TYPE] = VMEM_ROTOR
    seg[T_ROTOR, F_KNEXT] = seg[T_ROTOR, F_KPREV] = -1
    heads = np.arange(T_FREELIST, T_FIRST)
    seg[heads, F_TYPE] = VMEM_MARKER
    seg[heads, F_SIZE] = 1 << np.arange(VMEM_FREELISTS, dtype=np.int64)
    seg[heads, F_KNEXT] = seg[heads, F_KPREV] = heads
    seg[heads, F_ANEXT] = seg[heads, F_APREV] = -1
    _push_new_tags(st, T_FIRST, capacity)
    return st


def _push_new_tags(st: VmemState, lo: int, hi: int) -> None:
    n = int(st.meta[M_NFREE])
    k = hi - lo
    st.seg[n:n + k, F_STACK] = np.arange(hi - 1, lo - 1, -1)  # lowest tag on top
    st.meta[M_NFREE] = n + k


def grow_state(st: VmemState, new_capacity: int) -> VmemState:
    """A copy of ``st`` with a pool of ``new_capacity`` (a larger power of two) tags: the new
    tags go on the free-tag stack and the hash, one bucket per tag, is rebuilt."""
    cap = st.seg.shape[0]
    if new_capacity <= cap or new_capacity & (new_capacity - 1):
        raise ValueError(f"new capacity {new_capacity} must be a power of two above {cap}")
    seg = np.zeros((new_capacity, NCOLS), np.int64)
    seg[:cap, :F_META] = st.seg[:, :F_META]
    seg[:NMETA, F_META] = st.meta[:NMETA]
    nst = VmemState(seg, seg[:, F_META], seg[:, F_HASH])
    _push_new_tags(nst, cap, new_capacity)
    nst.meta[M_CAP] = new_capacity
    k_hash_rebuild(seg)
    return nst


# --- invariant checker --------------------------------------------------------------------------
CHECK_MESSAGES = {
    1: "arena list link broken (anext/aprev disagree or out of range)",
    2: "tag appears twice in the arena list (loop)",
    3: "unknown tag type in the arena list",
    4: "segments do not tile their span exactly (gap, overlap or overrun)",
    5: "spans are not in increasing address order or overlap",
    6: "segment outside any span",
    7: "start or size not a positive multiple of the quantum",
    8: "two free segments are adjacent (not coalesced)",
    9: "rotor missing or duplicated",
    10: "span accounting (mem_total / mem_import / span count) disagrees with the spans",
    11: "mem_inuse or busy count disagrees with the allocated segments",
    12: "span list (knext from seg0) differs from the span markers",
    13: "freelist member is not a free segment of the arena list",
    14: "free segment on the wrong freelist for its size",
    15: "freelist link broken",
    16: "freemap bit does not match freelist emptiness",
    17: "free segments missing from the freelists",
    18: "hash chain holds a non-allocated or foreign tag",
    19: "allocated segment hashed into the wrong bucket",
    20: "allocated segments missing from the hash table",
    21: "free-tag stack holds an invalid or in-use tag",
    22: "tags leaked: in-use + free != capacity",
}


@njit
def vmem_check(seg):
    """Check every invariant; returns ``(code, tag)`` with code 0 when consistent."""
    cap = seg[M_CAP, F_META]
    q = seg[M_QUANTUM, F_META]
    mark = np.zeros(cap, np.int8)
    prev = T_SEG0
    t = seg[T_SEG0, F_ANEXT]
    steps = 0
    nrotor = 0
    cur_end = -1
    expect = -1
    in_span = False
    prevtype = VMEM_SPAN
    nfree = 0
    nalloc = 0
    inuse = 0
    total = 0
    imported = 0
    nspans = 0
    nreal = 0
    while t != T_SEG0:
        steps += 1
        if t < 0 or t >= cap or seg[t, F_APREV] != prev:
            return 1, prev
        if steps > cap or mark[t] != 0:
            return 2, t
        mark[t] = 1
        ty = seg[t, F_TYPE]
        if ty == VMEM_ROTOR:
            nrotor += 1
            if t != T_ROTOR:
                return 9, t
            prevtype = VMEM_ROTOR
        elif ty == VMEM_SPAN:
            if t < T_FIRST:
                return 3, t
            if in_span and expect != cur_end:
                return 4, t
            if seg[t, F_SIZE] <= 0 or seg[t, F_START] < 0:
                return 7, t
            if seg[t, F_START] % q != 0 or seg[t, F_SIZE] % q != 0:
                return 7, t
            if seg[t, F_START] < cur_end:
                return 5, t
            in_span = True
            expect = seg[t, F_START]
            cur_end = seg[t, F_START] + seg[t, F_SIZE]
            nspans += 1
            nreal += 1
            total += seg[t, F_SIZE]
            if seg[t, F_IMPORT] != 0:
                imported += seg[t, F_SIZE]
            prevtype = VMEM_SPAN
        elif ty == VMEM_ALLOC or ty == VMEM_FREE:
            if t < T_FIRST:
                return 3, t
            nreal += 1
            if not in_span:
                return 6, t
            if seg[t, F_SIZE] <= 0 or seg[t, F_START] % q != 0 or seg[t, F_SIZE] % q != 0:
                return 7, t
            if seg[t, F_START] != expect:
                return 4, t
            expect += seg[t, F_SIZE]
            if expect > cur_end:
                return 4, t
            if ty == VMEM_FREE:
                nfree += 1
                if prevtype == VMEM_FREE:
                    return 8, t
            else:
                nalloc += 1
                inuse += seg[t, F_SIZE]
            prevtype = ty
        else:
            return 3, t
        prev = t
        t = seg[t, F_ANEXT]
    if seg[T_SEG0, F_APREV] != prev:
        return 1, T_SEG0
    if in_span and expect != cur_end:
        return 4, prev
    if nrotor != 1:
        return 9, T_ROTOR
    if total != seg[M_TOTAL, F_META] or imported != seg[M_IMPORT, F_META] or nspans != seg[M_NSPANS, F_META]:
        return 10, -1
    if inuse != seg[M_INUSE, F_META] or nalloc != seg[M_NBUSY, F_META]:
        return 11, -1
    # span list: the span markers, in address order
    sp = seg[T_SEG0, F_KNEXT]
    pv = T_SEG0
    n = 0
    last = -1
    while sp != T_SEG0:
        n += 1
        if sp < T_FIRST or sp >= cap or n > nspans or seg[sp, F_TYPE] != VMEM_SPAN or mark[sp] != 1:
            return 12, sp
        if seg[sp, F_KPREV] != pv or seg[sp, F_START] <= last:
            return 12, sp
        last = seg[sp, F_START]
        pv = sp
        sp = seg[sp, F_KNEXT]
    if n != nspans or seg[T_SEG0, F_KPREV] != pv:
        return 12, T_SEG0
    # freelists and freemap
    nlisted = 0
    for c in range(VMEM_FREELISTS):
        head = T_FREELIST + c
        pv = head
        f = seg[head, F_KNEXT]
        k = 0
        while f != head:
            k += 1
            if f < T_FIRST or f >= cap or k > nfree or seg[f, F_KPREV] != pv:
                return 15, f
            if seg[f, F_TYPE] != VMEM_FREE or mark[f] != 1:
                return 13, f
            if highbit(seg[f, F_SIZE]) - 1 != c:
                return 14, f
            mark[f] = 2
            pv = f
            f = seg[f, F_KNEXT]
        if seg[head, F_KPREV] != pv:
            return 15, head
        if ((seg[M_FREEMAP, F_META] >> c) & 1) != (1 if k > 0 else 0):
            return 16, head
        nlisted += k
    if (seg[M_FREEMAP, F_META] >> VMEM_FREELISTS) != 0:
        return 16, -1
    if nlisted != nfree:
        return 17, -1
    # hash: exactly the allocated segments, each in its bucket
    nhashed = 0
    for b in range(seg.shape[0]):
        h = seg[b, F_HASH]
        while h >= 0:
            nhashed += 1
            if h < T_FIRST or h >= cap or nhashed > nalloc or seg[h, F_TYPE] != VMEM_ALLOC or mark[h] != 1:
                return 18, h
            if vmem_hash_index(seg, seg[h, F_START]) != b:
                return 19, h
            mark[h] = 3
            h = seg[h, F_KNEXT]
    if nhashed != nalloc:
        return 20, -1
    # tag accounting
    nf = seg[M_NFREE, F_META]
    if nf < 0 or nf > cap:
        return 21, -1
    for k in range(nf):
        f = seg[k, F_STACK]
        if f < T_FIRST or f >= cap or mark[f] != 0:
            return 21, f
        mark[f] = 4
    if nreal + nf != cap - T_FIRST:
        return 22, -1
    return 0, -1
