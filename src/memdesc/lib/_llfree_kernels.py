"""numba core of LLFree (Wrenger et al., USENIX ATC'23), after llfree-c HEAD 970bb3d.

Theory statement
----------------
LLFree allocates page frames of order 0..``TREE_ORDER`` from a flat range of ``frames``
frames.  It keeps no per-frame state outside three small packed arrays, and no free lists
at all:

* **lower** (``src/lower.c``, ``src/bitfield.c``, ``src/child.c``): one 512-bit *bitfield*
  per 2 MiB *child* (8 rows of 64 bits, bit set = frame allocated), and one 16-bit *child
  entry* per bitfield, ``{free:15, huge:1}`` (bits 0-14: free frames in the child; bit 15:
  the whole child is allocated as one huge frame, its bitfield then all zero).  Children
  are grouped by ``TREE_CHILDREN`` (8) per tree (a cache-line ``children_t`` in C).  An order < 9
  request decrements a child counter and then sets the first aligned run of ``2^order``
  zero bits (``first_zeros_aligned``: bit tricks per row up to order 6, whole rows for
  orders 7-8), scanning the rows from the row of the last allocation; an order >= 9
  request turns ``2^(order-9)`` aligned, entirely free children into huge children.
  Freeing part of a huge child (a smaller order inside it) first splits it: the bitfield
  becomes all ones, the child ``{0, huge=0}``.
* **trees** (``src/tree.c``, ``src/trees.c``): one 32-bit entry per ``TREE_SIZE`` frames
  (8 children = 16 MiB), ``{reserved:1, class:3, free:28}`` (bit 0, bits 1-3, bits 4-31).
  ``free`` counts the free frames of the tree that are *not* held by a CPU reservation.
* **locals** (``src/local.c``): per allocation class, ``count`` slots (one per CPU), each
  a 64-byte entry whose first word is the reservation ``{present:1, free:28,
  start_row:35}`` (bit 0, bits 1-28, bits 29-63): the reserved tree (identified by the
  bitfield row where the next search starts) and the free frames this CPU took from the
  tree's counter when it reserved it.  The second word is the free history of the
  optional reserve-on-free heuristic.

Invariants (``llfree_validate``, extended): a non-huge child's ``free`` equals the zero
bits of its bitfield, a huge child has an all-zero bitfield and ``free == 0``; frames past
``frames`` are set in the last bitfield and padding children are ``{0, huge}``; an
unreserved tree's ``free`` equals the sum of its children's; a reserved tree is held by
exactly one local slot, and the slot's ``free`` plus the tree's ``free`` equals the sum of
its children's; the sum of all tree and local counters equals the lower free count.

Allocation (``llfree_get``): a request ``{order, class, local}`` first decrements its
local reservation (``ll_local_get``) and allocates in the lower allocator from the
reservation's start row; when the reservation has too few frames it steals back frames
other CPUs freed into the reserved tree's global counter (``sync_with_global``); then it
reserves a new tree: a best-fit search among the ``near`` trees around the CPU's start
(``trees_search_best`` with the class policy as rating), then over all trees.  A request
without a local slot (or with more slots than trees) steals from a tree's counter
directly.  Out of memory, it steals from other CPUs' reservations (``ll_local_steal``,
classes whose policy says Match or Steal) and finally demotes a reservation of another
class (``ll_local_demote_any``, policy Demote).  Classes are plain data: the policy
``policy(requested, target, free) -> (Match(prio) | Steal | Demote | Invalid)`` is a
table here (``policy[requested, target, free]``, every ``free`` in 0..TREE_SIZE), filled
from a Python function by the facade.

Freeing (``llfree_put``): clear the bits (or the huge flags) in the lower allocator, then
add the frames to the CPU's reservation if the frame lies in its reserved tree, else to
the tree's global counter (a tree that becomes entirely free returns to the default
class).

Where this follows which reference:

* llfree-c HEAD 970bb3d (the C version used by llfree-linux) for every decision: the tree
  size (8 children), orders up to ``TREE_ORDER`` (12), the search order and the
  priority-ordered best-8 candidates of ``trees_search_best``, ``tree_steal`` on reserved
  trees (llfree-rs refuses those), the 8-candidate near search (llfree-rs: 3).
* Two undo paths of llfree-c are wrong and are modelled as intended instead (as in
  llfree-rs ``compare_exchange_all``): ``try_update_huge_n`` undoes ``base + (j - k)``
  instead of the children it changed (a failed order >= 10 attempt can leak a huge
  child), and ``field_toggle``'s multi-row undo swaps expected and desired.  Here a
  failed multi-child or multi-row update changes nothing.
* The reserve-on-free heuristic (after ``LAST_FREES`` = 4 further frees into one tree,
  reserve it) is off by default (``LLFREE_ENABLE_FREE_RESERVE false``) and its call was
  removed from ``llfree_put`` in 74e0532; ``M_FREE_RESERVE`` enables it with the logic of
  74e0532^ (``trees_put_or_reserve``).
* No atomics: every compare-and-swap loop is one read-modify-write (a model call is one
  thread); the retry loops that only serve concurrency (``RETRIES``) are gone.

The whole state is one int64 array ``w`` (see ``new_state``): the scalars and counters,
the policy table, then the local, tree, child and bitfield regions, each entry one word
holding the reference's bit layout in its low bits (a child entry's 16 bits, a tree's 32);
the reported metadata size is the reference's (``metadata_size``).  Like vmem's pool, one
array is the cheapest thing to pass between numba functions -- a struct or a tuple of
arrays is reference counted or copied on every call, which measured more than the
allocation itself -- and the kernels are compiled without NRT.

All functions also run as plain Python (``NUMBA_DISABLE_JIT=1``).  Bitfield rows and
local words are int64 bit patterns (numba promotes int64/uint64 mixes to float64);
``_wsub`` is the one wrapping subtraction.  Results are packed int64:
``(frame << 3) | class`` on success, ``-ERR_MEMORY`` / ``-ERR_ARGUMENT`` on failure.
"""

from __future__ import annotations

import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic, overload

from memdesc._numba import JIT_DISABLED, njit

# --- llfree_types.h -------------------------------------------------------------------------
FRAME_BITS = 12
HUGE_ORDER = 9
CHILD_ORDER = HUGE_ORDER
CHILD_SIZE = 1 << CHILD_ORDER  # frames per child (bitfield)
ATOMIC_ORDER = 6
ROW_BITS = 1 << ATOMIC_ORDER  # bits per bitfield row
FIELD_N = CHILD_SIZE // ROW_BITS  # rows per bitfield (8)
TREE_CHILDREN_ORDER = 3
TREE_CHILDREN = 1 << TREE_CHILDREN_ORDER
TREE_ORDER = HUGE_ORDER + TREE_CHILDREN_ORDER
TREE_SIZE = 1 << TREE_ORDER  # frames per tree (4096 = 16 MiB)
MAX_ORDER = TREE_ORDER
CLASS_BITS = 3
MAX_CLASSES = 1 << CLASS_BITS
CLASS_NONE = 255
CACHE_SIZE = 64
TREE_FREE_BITS = 32 - 1 - CLASS_BITS  # 28
ROW_FIELD_BITS = 64 - TREE_FREE_BITS - 1  # 35: start_row of a reservation
MIN_PAGES = 1 << HUGE_ORDER
MAX_FRAMES = 1 << 39  # start_row << 29 must stay inside an int64 (llfree-c: 1 << 52)
LAST_FREES = 4  # local.h
TREES_SEARCH_BEST = 8  # trees.h
LOCAL_STRIDE = CACHE_SIZE // 8  # words per local entry_t (preferred, last, padding: one cache line)

# --- policies (llfree.h) --------------------------------------------------------------------
POLICY_MATCH, POLICY_STEAL, POLICY_DEMOTE, POLICY_INVALID = 0, 1, 2, 3

# --- errors (llfree.h) ----------------------------------------------------------------------
ERR_OK, ERR_MEMORY, ERR_ARGUMENT, ERR_INIT = 0, 1, 2, 3
R_MEMORY = -ERR_MEMORY
R_ARGUMENT = -ERR_ARGUMENT
E_BADINDEX = -10  # batch: put of an op index that is not an earlier op
E_DOUBLEINDEX = -11  # batch: the same get put twice

# --- meta slots -----------------------------------------------------------------------------
(M_FRAMES, M_NCHILD, M_NTREES, M_DEFAULT, M_NCLASSES, M_FREE_RESERVE, M_NSLOTS, M_STATUS) = range(8)
M_CLS_OFF = 8  # + class: first local slot of the class
M_CLS_LEN = M_CLS_OFF + MAX_CLASSES  # + class: number of local slots, -1 if not configured
M_CIDX = M_CLS_LEN + MAX_CLASSES  # + class: row of the class in the policy table, -1 if none
# where the regions of the state array start (words)
(M_SCRATCH, M_POLICY, M_LOCAL, M_TREES, M_CHILDREN, M_FIELDS, M_WORDS) = range(M_CIDX + MAX_CLASSES,
                                                                              M_CIDX + MAX_CLASSES + 7)
K_FIRST = M_WORDS + 1
(K_GET, K_GET_FAIL, K_PUT, K_RESERVE, K_SYNC, K_TREE_STEAL, K_GLOBAL_STEAL, K_STEAL_LOCAL,
 K_DEMOTE_LOCAL, K_SPLIT_HUGE, K_DRAIN, K_FREE_RESERVE) = range(K_FIRST, K_FIRST + 12)
NMETA = K_FIRST + 12
COUNTERS = {"get": K_GET, "get_fail": K_GET_FAIL, "put": K_PUT, "reserve": K_RESERVE,
            "sync": K_SYNC, "tree_steal": K_TREE_STEAL, "global_steal": K_GLOBAL_STEAL,
            "steal_local": K_STEAL_LOCAL, "demote_local": K_DEMOTE_LOCAL,
            "split_huge": K_SPLIT_HUGE, "drain": K_DRAIN, "free_reserve": K_FREE_RESERVE}

# search kinds: trees_rate_fn / trees_access_fn of llfree.c
RATE_NEAR, RATE_RESERVE_GLOBAL, RATE_GLOBAL = 0, 1, 2
ACCESS_RESERVE_OR_STEAL, ACCESS_STEAL = 0, 1


def _i64(x: int) -> np.int64:
    """An unsigned 64-bit constant as its int64 bit pattern."""
    return np.int64(x - (1 << 64) if x >= 1 << 63 else x)


M_ONE = np.int64(1)
M_ALL = np.int64(-1)
M_AA = _i64(0xAAAA_AAAA_AAAA_AAAA)
M_11 = _i64(0x1111_1111_1111_1111)
M_0101 = _i64(0x0101_0101_0101_0101)
M_0001 = _i64(0x0001_0001_0001_0001)
M_LOW32 = np.int64(0xFFFF_FFFF)
M_HIGH32 = _i64(0xFFFF_FFFF_0000_0000)


def hot(fn):
    """``njit`` without NRT: the kernels take one int64 array and allocate nothing, so
    there is no reference counting at all on their calls."""
    return njit(_nrt=False)(fn)


# =============================================================================================
# bit helpers (utils.h)
# =============================================================================================
def _ctz(x):
    """Trailing zeros of an int64 bit pattern; 64 for 0 (``trailing_zeros``)."""
    x = int(x) & 0xFFFF_FFFF_FFFF_FFFF
    if x == 0:
        return 64
    return (x & -x).bit_length() - 1


@overload(_ctz)
def _ctz_jit(x):
    def impl(x):
        if x == 0:
            return 64
        return trailing_zeros(x)
    return impl


def _wsub(a, b):
    """``a - b`` wrapping like uint64 arithmetic (plain Python would warn on overflow)."""
    r = (int(a) - int(b)) & 0xFFFF_FFFF_FFFF_FFFF
    return np.int64(r - (1 << 64) if r >= 1 << 63 else r)


@overload(_wsub)
def _wsub_jit(a, b):
    def impl(a, b):
        return a - b
    return impl


if JIT_DISABLED:
    def popcount(x):
        """Number of set bits of an int64 bit pattern (``count_ones``)."""
        return bin(int(x) & 0xFFFF_FFFF_FFFF_FFFF).count("1")
else:
    from numba import types

    @intrinsic
    def _ctpop(typingctx, x):
        if not isinstance(x, types.Integer) or x.bitwidth != 64:
            return None

        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])

        return types.int64(x), codegen

    @njit(_nrt=False)
    def popcount(x):
        """Number of set bits of an int64 bit pattern (LLVM ctpop)."""
        return _ctpop(x)


@hot
def next_pow2(v):
    if v <= 1:
        return 1
    p = 1
    while p < v:
        p <<= 1
    return p


# =============================================================================================
# bitfield.c
# =============================================================================================
@hot
def first_zeros_aligned(v, order):
    """Set the first aligned ``2^order`` zero bits of row ``v`` (order <= 6).

    Returns ``(new_v, pos)``; ``pos`` is 64 (and ``v`` unchanged) when there is no such run.
    See https://graphics.stanford.edu/~seander/bithacks.html#ZeroInWord.
    """
    p = 64
    if order == 0:
        p = _ctz(~v)
        if p < 64:
            v = v | (M_ONE << p)
    elif order == 1:
        p = _ctz(~((v | (v >> 1)) | M_AA))
        if p < 64:
            v = v | (np.int64(3) << p)
    elif order == 2:
        p = _ctz(((_wsub(v, M_11) & ~v) >> 3) & M_11)
        if p < 64:
            v = v | (np.int64(0xF) << p)
    elif order == 3:
        p = _ctz(((_wsub(v, M_0101) & ~v) >> 7) & M_0101)
        if p < 64:
            v = v | (np.int64(0xFF) << p)
    elif order == 4:
        p = _ctz(((_wsub(v, M_0001) & ~v) >> 15) & M_0001)
        if p < 64:
            v = v | (np.int64(0xFFFF) << p)
    elif order == 5:
        if v & M_LOW32 == 0:
            p = 0
            v = v | M_LOW32
        elif (v >> 32) & M_LOW32 == 0:
            p = 32
            v = v | M_HIGH32
    elif order == 6:
        if v == 0:
            p = 0
            v = M_ALL
    return v, p


@hot
def field_set_next(w, child, start_row, order):
    """Set the first free aligned ``2^order`` bits of ``child``'s bitfield, starting the
    search at row ``start_row % FIELD_N``; returns the bit index or -1 (``field_set_next``)."""
    base = w[M_FIELDS] + child * FIELD_N
    row = start_row & (FIELD_N - 1)
    num_frames = 1 << order
    if num_frames <= ROW_BITS:
        for k in range(FIELD_N):  # for_offsetted(row, FIELD_N)
            i = (row + k) & (FIELD_N - 1)
            nv, p = first_zeros_aligned(w[base + i], order)
            if p < 64:
                w[base + i] = nv
                return i * ROW_BITS + p
        return -1
    entries = num_frames // ROW_BITS
    n = FIELD_N // entries
    start = row // entries
    for k in range(n):  # for_offsetted(row / entries, FIELD_N / entries)
        cur = (start + k) % n
        free = True
        for e in range(entries):
            if w[base + cur * entries + e] != 0:
                free = False
                break
        if free:
            for e in range(entries):
                w[base + cur * entries + e] = M_ALL
            return cur * entries * ROW_BITS
    return -1


@hot
def field_toggle(w, child, index, order, expected):
    """Flip the ``2^order`` bits at ``index`` if they all equal ``expected`` (True = set);
    returns success (``field_toggle``; a failed multi-row toggle changes nothing)."""
    bit = index & (CHILD_SIZE - 1)
    wi = w[M_FIELDS] + child * FIELD_N + bit // ROW_BITS
    num_frames = 1 << order
    if num_frames > ROW_BITS:
        entries = num_frames // ROW_BITS
        want = M_ALL if expected else np.int64(0)
        for i in range(entries):
            if w[wi + i] != want:
                return False
        for i in range(entries):
            w[wi + i] = ~want
        return True
    if num_frames == ROW_BITS:
        mask = M_ALL
    else:
        mask = ((M_ONE << num_frames) - 1) << (bit & (ROW_BITS - 1))
    row = w[wi]
    if expected:
        if row & mask != mask:
            return False
        w[wi] = row & ~mask
    else:
        if row & mask != 0:
            return False
        w[wi] = row | mask
    return True


@hot
def field_count_ones(w, child):
    n = 0
    base = w[M_FIELDS] + child * FIELD_N
    for i in range(FIELD_N):
        n += popcount(w[base + i])
    return n


@hot
def field_is_free(w, child, index):
    bit = index & (CHILD_SIZE - 1)
    return (w[w[M_FIELDS] + child * FIELD_N + bit // ROW_BITS] >> (bit & (ROW_BITS - 1))) & 1 == 0


@hot
def field_is_zero(w, child, index, order):
    """All ``2^order`` bits at ``index`` are free (llfree-rs ``Bitfield::is_zero``)."""
    bit = index & (CHILD_SIZE - 1)
    wi = w[M_FIELDS] + child * FIELD_N + bit // ROW_BITS
    num_frames = 1 << order
    if num_frames >= ROW_BITS:
        for i in range(num_frames // ROW_BITS):
            if w[wi + i] != 0:
                return False
        return True
    mask = ((M_ONE << num_frames) - 1) << (bit & (ROW_BITS - 1))
    return w[wi] & mask == 0


# =============================================================================================
# child.h / child.c: {free:15, huge:1}
# =============================================================================================
@hot
def child_free(c):
    return c & 0x7FFF


@hot
def child_huge(c):
    return (c >> 15) & 1


@hot
def child_new(free, huge):
    return free | (huge << 15)


@hot
def cw(w, child):
    """Index of child entry ``child`` in the state (8 per tree: one 64-byte children_t)."""
    return w[M_CHILDREN] + child


@hot
def child_inc(c, order):
    """Returns ``(ok, new)``: the counter plus ``2^order`` (``child_inc``)."""
    n = 1 << order
    if child_huge(c) == 1 or child_free(c) + n > CHILD_SIZE:
        return False, c
    return True, c + n


@hot
def child_dec(c, order):
    """Returns ``(ok, new)``: the counter minus ``2^order`` (``child_dec``)."""
    n = 1 << order
    if child_huge(c) == 0 and child_free(c) >= n:
        return True, c - n
    return False, c


# =============================================================================================
# lower.c
# =============================================================================================
@hot
def try_update_huge_n(w, base_idx, h_num, expected, desired):
    """Change ``h_num`` children from ``expected`` to ``desired``, all or none."""
    c0 = cw(w, base_idx)
    for j in range(h_num):
        if w[c0 + j] != expected:
            return False
    for j in range(h_num):
        w[c0 + j] = desired
    return True


@hot
def lower_get_at(w, frame, order):
    """Allocate exactly ``frame`` (``lower_get_at``)."""
    if frame + (1 << order) > w[M_FRAMES] or frame & ((1 << order) - 1) != 0:
        return R_ARGUMENT
    child_idx = frame >> CHILD_ORDER
    if order >= HUGE_ORDER:
        h_num = 1 << (order - HUGE_ORDER)
        if try_update_huge_n(w, child_idx, h_num, child_new(CHILD_SIZE, 0), child_new(0, 1)):
            return frame << 3
        return R_MEMORY
    ci = cw(w, child_idx)
    ok, nc = child_dec(w[ci], order)
    if ok:
        w[ci] = nc
        if field_toggle(w, child_idx, frame, order, False):
            return frame << 3
        w[ci] = child_inc(nc, order)[1]  # undo
    return R_MEMORY


@hot
def lower_get(w, start_frame, order, frame):
    """Allocate ``2^order`` frames in the tree of ``start_frame``, searching from its child
    and row; ``frame >= 0`` allocates that frame instead (``lower_get``)."""
    if frame >= 0:
        return lower_get_at(w, frame, order)
    idx = start_frame >> CHILD_ORDER
    first = idx & ~(TREE_CHILDREN - 1)
    if order >= HUGE_ORDER:
        h_num = 1 << (order - HUGE_ORDER)
        n = TREE_CHILDREN // h_num
        start = (idx & (TREE_CHILDREN - 1)) // h_num
        free = child_new(CHILD_SIZE, 0)
        huge = child_new(0, 1)
        for k in range(n):  # for_offsetted(idx / h_num, TREE_CHILDREN / h_num)
            i = first + ((start + k) % n) * h_num
            if try_update_huge_n(w, i, h_num, free, huge):
                return (i << CHILD_ORDER) << 3
        return R_MEMORY
    start_row = start_frame >> ATOMIC_ORDER
    c0 = cw(w, first)
    for k in range(TREE_CHILDREN):  # for_offsetted(idx, TREE_CHILDREN)
        j = (idx + k) & (TREE_CHILDREN - 1)
        ok, nc = child_dec(w[c0 + j], order)
        if ok:
            w[c0 + j] = nc
            pos = field_set_next(w, first + j, start_row, order)
            if pos >= 0:
                return (((first + j) << CHILD_ORDER) + pos) << 3
            w[c0 + j] = child_inc(nc, order)[1]  # undo
    return R_MEMORY


@hot
def split_huge(w, child_idx):
    """Turn a huge child into 512 allocated base frames (``split_huge``)."""
    if field_toggle(w, child_idx, 0, CHILD_ORDER, False):
        w[cw(w, child_idx)] = child_new(0, 0)
        w[K_SPLIT_HUGE] += 1
        return True
    return False


@hot
def lower_put(w, frame, order):
    """Free ``2^order`` frames at ``frame`` (``lower_put``): 0, R_MEMORY (bits already
    free: double free) or R_ARGUMENT (range/alignment, or not a huge allocation)."""
    if frame + (1 << order) > w[M_FRAMES] or frame & ((1 << order) - 1) != 0:
        return R_ARGUMENT
    child_idx = frame >> CHILD_ORDER
    if order >= HUGE_ORDER:
        h_num = 1 << (order - HUGE_ORDER)
        if child_idx & (h_num - 1) != 0:
            return R_ARGUMENT
        if try_update_huge_n(w, child_idx, h_num, child_new(0, 1), child_new(CHILD_SIZE, 0)):
            return 0
        return R_ARGUMENT
    ci = cw(w, child_idx)
    if child_huge(w[ci]) == 1:
        if not split_huge(w, child_idx):
            return R_MEMORY
    if not field_toggle(w, child_idx, frame, order, True):
        return R_MEMORY
    w[ci] = child_inc(w[ci], order)[1]
    return 0


@hot
def lower_tree_free(w, tree):
    n = 0
    c0 = cw(w, tree * TREE_CHILDREN)
    for j in range(TREE_CHILDREN):
        n += child_free(w[c0 + j])
    return n


@hot
def lower_stats(w):
    """``(free_frames, free_huge, free_trees)`` counted over the child entries."""
    frames = 0
    huge = 0
    trees = 0
    c0 = cw(w, 0)
    for t in range(w[M_NTREES]):
        tf = 0
        for j in range(TREE_CHILDREN):
            f = child_free(w[c0 + t * TREE_CHILDREN + j])
            tf += f
            if f == CHILD_SIZE:
                huge += 1
        frames += tf
        if tf == TREE_SIZE:
            trees += 1
    return frames, huge, trees


@hot
def lower_stats_at(w, frame, order):
    """``lower_stats_at`` for order 0, HUGE_ORDER or TREE_ORDER; zeros otherwise."""
    if frame < 0 or frame >= w[M_FRAMES]:
        return 0, 0, 0
    if order == 0:
        i = frame >> CHILD_ORDER
        c = w[cw(w, i)]
        if child_free(c) == CHILD_SIZE:
            return 1, 0, 0
        if child_free(c) > 0:
            return (1 if field_is_free(w, i, frame) else 0), 0, 0
        return 0, 0, 0
    if order == HUGE_ORDER:
        f = child_free(w[cw(w, frame >> CHILD_ORDER)])
        return f, (1 if f == CHILD_SIZE else 0), 0
    if order == TREE_ORDER:
        c0 = cw(w, (frame >> TREE_ORDER) * TREE_CHILDREN)
        frames = 0
        huge = 0
        for j in range(TREE_CHILDREN):
            f = child_free(w[c0 + j])
            frames += f
            if f == CHILD_SIZE:
                huge += 1
        return frames, huge, (1 if frames == TREE_SIZE else 0)
    return 0, 0, 0


@hot
def lower_is_free(w, frame, order):
    """All ``2^order`` frames at ``frame`` are free (llfree-rs ``Lower::is_free``)."""
    i = frame >> CHILD_ORDER
    if order >= HUGE_ORDER:
        c0 = cw(w, i)
        for j in range(1 << (order - HUGE_ORDER)):
            if child_free(w[c0 + j]) != CHILD_SIZE:
                return False
        return True
    c = w[cw(w, i)]
    if child_free(c) < (1 << order):
        return False
    if child_free(c) == CHILD_SIZE:
        return True
    return field_is_zero(w, i, frame, order)


M_5555 = _i64(0x5555_5555_5555_5555)
M_0000_0001 = np.int64(0x0000_0001_0000_0001)


@hot
def lower_free_blocks(w, out):
    """Free blocks per order like /proc/buddyinfo: ``out[k]`` counts the maximal free
    aligned ``2^k``-frame blocks (free, and their aligned ``2^(k+1)`` parent not entirely
    free), orders 0..TREE_ORDER.  LLFree keeps no such lists; this scans the lower
    allocator (rows with bit tricks, entirely free rows and children by masks)."""
    for k in range(MAX_ORDER + 1):
        out[k] = 0
    for t in range(w[M_NTREES]):
        c0 = cw(w, t * TREE_CHILDREN)
        whole = 0  # entirely free children of the tree
        for j in range(TREE_CHILDREN):
            c = w[c0 + j]
            if child_free(c) == CHILD_SIZE:
                whole |= 1 << j
            elif child_free(c) > 0:  # partly free (a huge child has free 0)
                f0 = w[M_FIELDS] + (t * TREE_CHILDREN + j) * FIELD_N
                rows = 0
                for r in range(FIELD_N):
                    m0 = ~w[f0 + r]
                    m1 = m0 & (m0 >> 1) & M_5555
                    m2 = m1 & (m1 >> 2) & M_11
                    m3 = m2 & (m2 >> 4) & M_0101
                    m4 = m3 & (m3 >> 8) & M_0001
                    m5 = m4 & (m4 >> 16) & M_0000_0001
                    m6 = m5 & (m5 >> 32) & 1
                    out[0] += popcount(m0) - 2 * popcount(m1)
                    out[1] += popcount(m1) - 2 * popcount(m2)
                    out[2] += popcount(m2) - 2 * popcount(m3)
                    out[3] += popcount(m3) - 2 * popcount(m4)
                    out[4] += popcount(m4) - 2 * popcount(m5)
                    out[5] += popcount(m5) - 2 * m6
                    rows |= m6 << r
                r7 = rows & (rows >> 1) & 0x55
                r8 = r7 & (r7 >> 2) & 0x11
                out[6] += popcount(np.int64(rows)) - 2 * popcount(np.int64(r7))
                out[7] += popcount(np.int64(r7)) - 2 * popcount(np.int64(r8))
                out[8] += popcount(np.int64(r8))
        w10 = whole & (whole >> 1) & 0x55
        w11 = w10 & (w10 >> 2) & 0x11
        w12 = w11 & (w11 >> 4) & 0x01
        out[9] += popcount(np.int64(whole)) - 2 * popcount(np.int64(w10))
        out[10] += popcount(np.int64(w10)) - 2 * popcount(np.int64(w11))
        out[11] += popcount(np.int64(w11)) - 2 * popcount(np.int64(w12))
        out[12] += popcount(np.int64(w12))


# =============================================================================================
# tree.h / tree.c: {reserved:1, class:3, free:28}
# =============================================================================================
@hot
def tree_reserved(t):
    return t & 1


@hot
def tree_class(t):
    return (t >> 1) & (MAX_CLASSES - 1)


@hot
def tree_free(t):
    return t >> (1 + CLASS_BITS)


@hot
def tree_new(reserved, cls, free):
    return reserved | (cls << 1) | (free << (1 + CLASS_BITS))


@hot
def tw(w, idx):
    """Index of tree entry ``idx`` in the state."""
    return w[M_TREES] + idx


@hot
def policy(w, requested, target, free):
    """The class policy: ``type | priority << 8`` (POLICY_*); the table packs four 16-bit
    entries per word."""
    ri = w[M_CIDX + requested]
    ti = w[M_CIDX + target]
    if ri < 0 or ti < 0:
        return np.int64(POLICY_INVALID)
    i = (ri * w[M_NCLASSES] + ti) * (TREE_SIZE + 1) + free
    return (w[w[M_POLICY] + (i >> 2)] >> ((i & 3) * 16)) & 0xFFFF


@hot
def tree_put(w, t, frames):
    """Return frames to tree word ``t``; a tree that becomes entirely free takes the
    default class if the policy allows (``tree_put``)."""
    free = tree_free(t) + frames
    cls = tree_class(t)
    default = w[M_DEFAULT]
    if free == TREE_SIZE and policy(w, cls, default, free) & 0xFF != POLICY_INVALID:
        cls = default
    return tree_new(tree_reserved(t), cls, free)


@hot
def trees_put(w, idx, frames):
    ti = tw(w, idx)
    w[ti] = tree_put(w, w[ti], frames)


@hot
def trees_steal(w, idx, frames, cls):
    """``tree_steal``: take ``frames`` from the tree's counter; Match/Demote give the tree
    the requested class, Steal keeps its class.  Returns ``(ok, class of the frames)``."""
    ti = tw(w, idx)
    t = w[ti]
    if tree_free(t) < frames:
        return False, cls
    p = policy(w, cls, tree_class(t), tree_free(t)) & 0xFF
    if p == POLICY_MATCH or p == POLICY_DEMOTE:
        new_class = cls
    elif p == POLICY_STEAL:
        new_class = tree_class(t)
    else:
        return False, cls
    w[ti] = tree_new(tree_reserved(t), new_class, tree_free(t) - frames)
    return True, new_class


@hot
def trees_reserve_or_steal(w, idx, frames, cls):
    """``tree_reserve_or_steal``: Match/Demote reserve the whole tree (free -> 0, class ->
    requested), Steal only takes ``frames``.  Returns ``(ok, reserved, old_free, class)``."""
    ti = tw(w, idx)
    t = w[ti]
    free = tree_free(t)
    if tree_reserved(t) == 1 or free < frames:
        return False, False, free, cls
    p = policy(w, cls, tree_class(t), free) & 0xFF
    if p == POLICY_MATCH or p == POLICY_DEMOTE:
        w[ti] = tree_new(1, cls, 0)
        return True, True, free, cls
    if p == POLICY_STEAL:
        w[ti] = tree_new(0, tree_class(t), free - frames)
        return True, False, free, tree_class(t)
    return False, False, free, cls


@hot
def trees_unreserve(w, idx, frames, cls):
    """``tree_unreserve_add``: clear the reservation, demote the tree to ``cls`` if the
    policy says Demote, and add the reservation's ``frames`` back."""
    ti = tw(w, idx)
    t = w[ti]
    if tree_reserved(t) == 0:
        return False
    new_class = tree_class(t)
    if policy(w, cls, tree_class(t), frames) & 0xFF == POLICY_DEMOTE:
        new_class = cls
    w[ti] = tree_put(w, tree_new(0, new_class, tree_free(t)), frames)
    return True


@hot
def trees_sync_steal(w, idx, min_free):
    """``tree_sync_steal``: a reserved tree's counter goes to its reservation if it holds
    more than ``min_free``.  Returns ``(ok, stolen)``."""
    ti = tw(w, idx)
    t = w[ti]
    if tree_reserved(t) == 1 and tree_free(t) > min_free:
        w[ti] = tree_new(1, tree_class(t), 0)
        return True, tree_free(t)
    return False, np.int64(0)


@hot
def trees_put_or_reserve(w, idx, frames, cls, reserve):
    """74e0532^ ``tree_put_or_reserve``: put, then reserve the tree if asked and it is an
    unreserved tree of ``cls`` with more than ``TREE_SIZE / 16`` free.  Returns
    ``(reserved, old_free)``."""
    ti = tw(w, idx)
    old_free = tree_free(w[ti])
    t = tree_put(w, w[ti], frames)
    if reserve and tree_reserved(t) == 0 and tree_class(t) == cls and tree_free(t) > TREE_SIZE // 16:
        w[ti] = tree_new(1, tree_class(t), 0)
        return True, old_free
    w[ti] = t
    return False, old_free


# =============================================================================================
# local.c: reservations {present:1, free:28, start_row:35}
# =============================================================================================
@hot
def res_present(r):
    return r & 1


@hot
def res_free(r):
    return (r >> 1) & ((1 << TREE_FREE_BITS) - 1)


@hot
def res_row(r):
    return (r >> (1 + TREE_FREE_BITS)) & ((np.int64(1) << ROW_FIELD_BITS) - 1)


@hot
def res_new(present, free, row):
    return present | (free << 1) | (row << (1 + TREE_FREE_BITS))


@hot
def row_tree(row):
    return row >> (TREE_ORDER - ATOMIC_ORDER)


@hot
def tree_row(tree):
    return tree << (TREE_ORDER - ATOMIC_ORDER)


@hot
def slot_word(w, cls, index):
    """Index of slot ``(cls, index)``'s reservation word in the state."""
    return w[M_LOCAL] + (w[M_CLS_OFF + cls] + index) * LOCAL_STRIDE


@hot
def ll_reserved_dec(r, tree, frames):
    """Returns ``(ok, new)``: the reservation minus ``frames`` (in ``tree`` if >= 0)."""
    if res_present(r) == 0:
        return False, r
    if tree >= 0 and row_tree(res_row(r)) != tree:
        return False, r
    if res_free(r) < frames:
        return False, r
    return True, r - (frames << 1)


@hot
def ll_local_get(w, cls, index, tree, frames):
    """Decrement the reservation of slot ``(cls, index)``; returns ``(ok, old word)``."""
    li = slot_word(w, cls, index)
    old = w[li]
    ok, new = ll_reserved_dec(old, tree, frames)
    if ok:
        w[li] = new
    return ok, old


@hot
def ll_local_put(w, cls, index, tree, frames):
    """Add ``frames`` to the slot's reservation if it holds ``tree``."""
    li = slot_word(w, cls, index)
    r = w[li]
    if res_present(r) == 0 or row_tree(res_row(r)) != tree:
        return False
    w[li] = r + (frames << 1)
    return True


@hot
def ll_local_set_start(w, cls, index, start_row):
    li = slot_word(w, cls, index)
    r = w[li]
    if res_present(r) == 1 and row_tree(res_row(r)) == row_tree(start_row):
        w[li] = res_new(1, res_free(r), start_row)


@hot
def ll_local_swap(w, cls, index, tree, free):
    """Reserve ``tree`` with ``free`` frames in the slot; returns the old word."""
    li = slot_word(w, cls, index)
    old = w[li]
    w[li] = res_new(1, free, tree_row(tree))
    return old


@hot
def ll_local_steal(w, cls, index, tree, frames):
    """Take ``frames`` from any slot of a class the policy lets ``cls`` Match or Steal,
    starting with ``cls`` and slot ``index``.  Returns ``(ok, class, old word)``."""
    for i in range(MAX_CLASSES):
        tc = (i + cls) & (MAX_CLASSES - 1)
        n = w[M_CLS_LEN + tc]
        if n <= 0:
            continue
        p = policy(w, cls, tc, frames) & 0xFF
        if p != POLICY_MATCH and p != POLICY_STEAL:
            continue
        for j in range(n):
            jj = (index + j) % n
            ok, old = ll_local_get(w, tc, jj, tree, frames)
            if ok:
                return True, tc, old
    return False, cls, np.int64(0)


@hot
def ll_local_demote_any(w, cls, local, tree, frames):
    """Take the reservation of another class the policy lets ``cls`` Demote, swap it
    (minus ``frames``) into slot ``(cls, local)``.  Returns ``(found, row to allocate
    from, unreserve?, its row, its class, its free)`` (``ll_local_demote_any``)."""
    for i in range(1, MAX_CLASSES):
        tc = (i + cls) & (MAX_CLASSES - 1)
        n = w[M_CLS_LEN + tc]
        if n <= 0:
            continue
        if policy(w, cls, tc, frames) & 0xFF != POLICY_DEMOTE:
            continue
        idx = local if local >= 0 else 0
        for j in range(n):
            li = slot_word(w, tc, (idx + j) % n)
            old = w[li]
            ok, new = ll_reserved_dec(old, tree, frames)
            if not ok:
                continue
            w[li] = 0  # taken
            req_len = w[M_CLS_LEN + cls]
            if local >= 0 and req_len > 0 and idx < req_len:
                ri = slot_word(w, cls, idx)
                prev = w[ri]
                w[ri] = new
                return True, res_row(new), res_present(prev) == 1, res_row(prev), cls, res_free(prev)
            return True, res_row(new), True, res_row(new), cls, res_free(new)
    return False, np.int64(0), False, np.int64(0), cls, np.int64(0)


@hot
def ll_local_free_inc(w, cls, index, tree):
    """The reserve-on-free history (``frees_inc``): True when ``LAST_FREES`` frees in a row
    went to ``tree`` before this one."""
    hi = slot_word(w, cls, index) + 1
    h = w[hi]
    last = h & ((np.int64(1) << 48) - 1)
    frees = (h >> 48) & 0xFFFF
    if last != tree:
        w[hi] = tree
        return False
    if frees < LAST_FREES:
        w[hi] = tree | ((frees + 1) << 48)
        return False
    return True


@hot
def ll_local_drain(w, cls, index):
    li = slot_word(w, cls, index)
    old = w[li]
    w[li] = 0
    return old


# =============================================================================================
# trees.c: search
# =============================================================================================
@hot
def rate(w, kind, cls, frames, tree_cls, free):
    """The rate callbacks of llfree.c: ``rate_reserve_near_tree`` (RATE_NEAR),
    ``rate_reserve_global_tree`` (RATE_RESERVE_GLOBAL), ``rate_global_tree``."""
    if free < frames:
        return np.int64(POLICY_INVALID)
    p = policy(w, cls, tree_cls, free)
    ty = p & 0xFF
    if kind == RATE_NEAR:
        if ty == POLICY_MATCH:
            return p
        if ty == POLICY_DEMOTE and free == TREE_SIZE:
            return np.int64(POLICY_MATCH | (255 << 8))
        return np.int64(POLICY_INVALID)
    if kind == RATE_RESERVE_GLOBAL:
        if ty == POLICY_MATCH:
            return np.int64(POLICY_MATCH | (255 << 8))
        if ty == POLICY_DEMOTE and free == TREE_SIZE:
            return np.int64(POLICY_MATCH | (255 << 8))
    return p


@hot
def access(w, kind, idx, order, cls, local):
    if kind == ACCESS_RESERVE_OR_STEAL:
        return reserve_or_steal_cb(w, idx, order, cls, local)
    return steal_cb(w, idx, order, cls)


@hot
def trees_search_best(w, start, offset, length, rate_kind, access_kind, order, cls, local):
    """``trees_search_best``: walk the trees alternating after and before ``start``, try
    perfect matches (Match 255) at once, keep the best ``TREES_SEARCH_BEST`` others by
    priority (ties in walk order) and try them afterwards."""
    ntrees = w[M_NTREES]
    frames = 1 << order
    best = w[M_SCRATCH]  # TREES_SEARCH_BEST priorities, then as many tree indices
    last = best + TREES_SEARCH_BEST - 1
    for k in range(TREES_SEARCH_BEST):
        w[best + k] = 0
    base = start + ntrees
    t0 = tw(w, 0)
    for i in range(offset, length):
        off = (i >> 1) if i & 1 == 0 else -((i + 1) >> 1)
        idx = base + off  # (base + off) % ntrees, without a division per tree
        while idx >= ntrees:
            idx -= ntrees
        while idx < 0:  # only with one tree (llfree-c's size_t wrap gives 0 there too)
            idx += ntrees
        t = w[t0 + idx]
        if tree_reserved(t) == 1:
            continue
        p = rate(w, rate_kind, cls, frames, tree_class(t), tree_free(t))
        ty = p & 0xFF
        if ty == POLICY_INVALID:
            continue
        if ty == POLICY_MATCH and (p >> 8) == 255:
            r = access(w, access_kind, idx, order, cls, local)
            if r != R_MEMORY:
                return r
            continue
        prio = ((p >> 8) + 1) & 0xFF  # uint8 priority + 1: 0 means "no candidate"
        if prio <= w[last]:
            continue  # not better than the worst kept candidate (the insertion would end there)
        pos = 0
        while pos < TREES_SEARCH_BEST and prio <= w[best + pos]:
            pos += 1
        if pos < TREES_SEARCH_BEST:
            for j in range(TREES_SEARCH_BEST - 1, pos, -1):
                w[best + j] = w[best + j - 1]
                w[best + TREES_SEARCH_BEST + j] = w[best + TREES_SEARCH_BEST + j - 1]
            w[best + pos] = prio
            w[best + TREES_SEARCH_BEST + pos] = idx
    for k in range(TREES_SEARCH_BEST):
        if w[best + k] == 0:
            break
        r = access(w, access_kind, w[best + TREES_SEARCH_BEST + k], order, cls, local)
        if r != R_MEMORY:
            return r
    return R_MEMORY


# =============================================================================================
# llfree.c
# =============================================================================================
@hot
def swap_reserved(w, cls, local, tree, free):
    """Reserve ``tree`` in the slot and unreserve the slot's former tree."""
    old = ll_local_swap(w, cls, local, tree, free)
    if res_present(old) == 1:
        trees_unreserve(w, row_tree(res_row(old)), res_free(old), cls)


@hot
def reserve_or_steal_cb(w, idx, order, cls, local):
    """Reserve (Match/Demote) or steal from (Steal) tree ``idx`` and allocate in it."""
    frames = 1 << order
    ok, reserved, old_free, target = trees_reserve_or_steal(w, idx, frames, cls)
    if not ok:
        return R_MEMORY
    n = w[M_CLS_LEN + target]
    if n <= 0:  # no locals for the target class
        if reserved:
            trees_unreserve(w, idx, old_free, target)
        else:
            trees_put(w, idx, frames)
        return R_MEMORY
    r = lower_get(w, idx << TREE_ORDER, order, -1)
    if r >= 0:
        if reserved:
            swap_reserved(w, target, local % n, idx, old_free - frames)
            w[K_RESERVE] += 1
        else:
            w[K_TREE_STEAL] += 1
        return (r & ~7) | target
    if reserved:
        trees_unreserve(w, idx, old_free, target)
    else:
        trees_put(w, idx, frames)
    return r


@hot
def steal_cb(w, idx, order, cls):
    """Take frames from tree ``idx``'s counter and allocate in it (global allocation)."""
    frames = 1 << order
    ok, new_class = trees_steal(w, idx, frames, cls)
    if not ok:
        return R_MEMORY
    r = lower_get(w, idx << TREE_ORDER, order, -1)
    if r >= 0:
        w[K_GLOBAL_STEAL] += 1
        return (r & ~7) | new_class
    trees_put(w, idx, frames)
    return r


@hot
def search_and_reserve(w, cls, local, order, start):
    """Reserve a new tree for slot ``(cls, local)``: best fit among the ``near`` trees
    around ``start`` (orders below HUGE_ORDER), then over all trees."""
    ntrees = w[M_NTREES]
    cl_trees = CACHE_SIZE // 4  # tree entries per cache line
    near = max(ntrees // 16, cl_trees // 4)
    first = start & ~(next_pow2(2 * near) - 1)
    if order < HUGE_ORDER:
        r = trees_search_best(w, first, 1, near, RATE_NEAR, ACCESS_RESERVE_OR_STEAL, order, cls, local)
        if r != R_MEMORY:
            return r
    return trees_search_best(w, first, 0, ntrees, RATE_RESERVE_GLOBAL, ACCESS_RESERVE_OR_STEAL,
                             order, cls, local)


@hot
def sync_with_global(w, cls, index, needed, old):
    """Steal the frames others freed into the reserved tree's global counter."""
    if res_free(old) >= needed:
        return False
    tree = row_tree(res_row(old))
    ok, stolen = trees_sync_steal(w, tree, needed - res_free(old))
    if not ok:
        return False
    if not ll_local_put(w, cls, index, tree, stolen):
        trees_put(w, tree, stolen)
        return False
    w[K_SYNC] += 1
    return True


@hot
def get_local(w, cls, index, order, frame, sync):
    """Allocate from slot ``(cls, index)``'s reservation.  Returns ``(result, tree of the
    reservation or -1)``."""
    frames = 1 << order
    tree = (frame >> TREE_ORDER) if frame >= 0 else -1
    again = sync
    while True:  # llfree-c recurses once (sync = false) after a successful sync
        ok, old = ll_local_get(w, cls, index, tree, frames)
        if ok:
            row = res_row(old)
            r = lower_get(w, row << ATOMIC_ORDER, order, frame)
            if r >= 0:
                new_row = r >> (3 + ATOMIC_ORDER)
                if new_row != row:
                    ll_local_set_start(w, cls, index, new_row)
                return (r & ~7) | cls, row_tree(row)
            trees_put(w, row_tree(row), frames)
            return r, row_tree(row)
        if again and res_present(old) == 1 and sync_with_global(w, cls, index, frames, old):
            again = False
            continue
        if res_present(old) == 1:
            return np.int64(R_MEMORY), row_tree(res_row(old))
        return np.int64(R_MEMORY), np.int64(-1)


@hot
def steal_local(w, order, cls, local, frame):
    frames = 1 << order
    tree = (frame >> TREE_ORDER) if frame >= 0 else -1
    index = local if local >= 0 else 0
    ok, tc, old = ll_local_steal(w, cls, index, tree, frames)
    if ok:
        r = lower_get(w, res_row(old) << ATOMIC_ORDER, order, frame)
        if r >= 0:
            w[K_STEAL_LOCAL] += 1
            return (r & ~7) | tc
        trees_put(w, row_tree(res_row(old)), frames)
        if r != R_MEMORY:
            return r
    return R_MEMORY


@hot
def demote_local(w, order, cls, local, frame):
    frames = 1 << order
    tree = (frame >> TREE_ORDER) if frame >= 0 else -1
    found, row, unreserve, unres_row, unres_class, unres_free = ll_local_demote_any(
        w, cls, local, tree, frames)
    if found:
        if unreserve:
            trees_unreserve(w, row_tree(unres_row), unres_free, unres_class)
        r = lower_get(w, row << ATOMIC_ORDER, order, frame)
        if r >= 0:
            w[K_DEMOTE_LOCAL] += 1
            return (r & ~7) | cls
        trees_put(w, row_tree(row), frames)
        if r != R_MEMORY:
            return r
    return R_MEMORY


@hot
def llfree_get_at(w, frame, order, cls, local):
    frames = 1 << order
    tree = frame >> TREE_ORDER
    if local >= 0:
        r, _ = get_local(w, cls, local, order, frame, True)
        if r != R_MEMORY:
            return r
    ok, new_class = trees_steal(w, tree, frames, cls)
    if ok:
        r = lower_get(w, frame, order, frame)
        if r >= 0:
            return (r & ~7) | new_class
        trees_put(w, tree, frames)
        return r
    r = steal_local(w, order, cls, local, frame)
    if r != R_MEMORY:
        return r
    return demote_local(w, order, cls, local, frame)


@hot
def validate_request(w, order, cls, local, frame):
    """``validate_request``: order, class, local index, size and (if >= 0) frame."""
    if order < 0 or order > TREE_ORDER:
        return False
    if cls < 0 or cls >= MAX_CLASSES:
        return False
    n = w[M_CLS_LEN + cls]
    if n < 0:
        return False
    if local >= n or local < -1:
        return False
    size = 1 << order
    frames = w[M_FRAMES]
    if size > frames:
        return False
    if frame < 0:
        return frame == -1
    return frame <= frames - size and frame & (size - 1) == 0


@hot
def llfree_get(w, frame, order, cls, local):
    """``llfree_get``: a result ``(frame << 3) | class``, R_MEMORY or R_ARGUMENT.  ``frame``
    -1 = anywhere; ``local`` -1 = no local slot (global allocation)."""
    if not validate_request(w, order, cls, local, frame):
        return np.int64(R_ARGUMENT)
    w[K_GET] += 1
    if frame >= 0:
        r = llfree_get_at(w, frame, order, cls, local)
        if r == R_MEMORY:
            w[K_GET_FAIL] += 1
        return r
    ntrees = w[M_NTREES]
    count = w[M_CLS_LEN + cls]
    if local >= 0 and 0 < count < ntrees:
        r, t = get_local(w, cls, local, order, -1, True)
        if r != R_MEMORY:
            return r
        # different starting points for each core (computed here, after the fast path: a
        # division per get is a measurable share of it)
        start = t if t >= 0 else ntrees // count * local
        r = search_and_reserve(w, cls, local, order, start)
        if r != R_MEMORY:
            return r
    else:
        start = ntrees // count * local if count > 0 and local >= 0 else np.int64(0)
        r = trees_search_best(w, start, 0, ntrees, RATE_GLOBAL, ACCESS_STEAL, order, cls, 0)
        if r != R_MEMORY:
            return r
    r = steal_local(w, order, cls, local, -1)
    if r != R_MEMORY:
        return r
    r = demote_local(w, order, cls, local, -1)
    if r == R_MEMORY:
        w[K_GET_FAIL] += 1
    return r


@hot
def llfree_put(w, frame, order, cls, local):
    """``llfree_put``: 0, R_MEMORY (frames already free) or R_ARGUMENT."""
    if frame < 0 or not validate_request(w, order, cls, local, frame):
        return np.int64(R_ARGUMENT)
    r = lower_put(w, frame, order)
    if r != 0:
        return r
    w[K_PUT] += 1
    tree = frame >> TREE_ORDER
    frames = 1 << order
    if w[M_FREE_RESERVE] != 0 and local >= 0:  # 74e0532^ with LLFREE_ENABLE_FREE_RESERVE
        reserve = ll_local_free_inc(w, cls, local, tree)
        if ll_local_put(w, cls, local, tree, frames):
            return np.int64(0)
        reserved, old_free = trees_put_or_reserve(w, tree, frames, cls, reserve)
        if reserved:
            swap_reserved(w, cls, local, tree, old_free + frames)
            w[K_FREE_RESERVE] += 1
        return np.int64(0)
    if local >= 0 and ll_local_put(w, cls, local, tree, frames):
        return np.int64(0)
    trees_put(w, tree, frames)
    return np.int64(0)


@hot
def llfree_drain(w):
    """Give every local reservation back to its tree."""
    for c in range(MAX_CLASSES):
        for i in range(w[M_CLS_LEN + c]):
            old = ll_local_drain(w, c, i)
            if res_present(old) == 1:
                trees_unreserve(w, row_tree(res_row(old)), res_free(old), c)
                w[K_DRAIN] += 1


@hot
def llfree_take(w, frame, order):
    """Allocate exactly these free frames whatever counter holds them (memdesc's extension
    for exact replay, like Linux's take_page_off_buddy; not an LLFree operation): the
    frames come out of the holding CPU's reservation first, then out of the tree's shared
    counter.  Returns 0, R_MEMORY (some frame is allocated) or R_ARGUMENT."""
    if frame < 0 or frame + (1 << order) > w[M_FRAMES] or frame & ((1 << order) - 1) != 0 \
            or order > TREE_ORDER:
        return np.int64(R_ARGUMENT)
    if not lower_is_free(w, frame, order):
        return np.int64(R_MEMORY)
    tree = frame >> TREE_ORDER
    frames = np.int64(1 << order)
    ti = tw(w, tree)
    t = w[ti]
    if tree_reserved(t) == 1:
        for c in range(MAX_CLASSES):
            for i in range(w[M_CLS_LEN + c]):
                li = slot_word(w, c, i)
                r = w[li]
                if res_present(r) == 1 and row_tree(res_row(r)) == tree:
                    k = min(frames, res_free(r))
                    w[li] = r - (k << 1)
                    frames -= k
    w[ti] = tree_new(tree_reserved(t), tree_class(t), tree_free(t) - frames)
    return np.int64(0) if lower_get_at(w, frame, order) >= 0 else np.int64(R_MEMORY)


TREE_OP_NONE, TREE_OP_ONLINE, TREE_OP_OFFLINE = 0, 1, 2


@hot
def trees_change_at(w, idx, match_class, min_free, change_class, operation):
    """``tree_change``: if tree ``idx`` is unreserved, of ``match_class`` (CLASS_NONE: any)
    and has ``min_free`` free frames, set its class (unless CLASS_NONE) and offline it
    (free -> 0) or online it (free 0 -> the lower allocator's count)."""
    ti = tw(w, idx)
    t = w[ti]
    if tree_reserved(t) == 1:
        return False
    if match_class != CLASS_NONE and tree_class(t) != match_class:
        return False
    if tree_free(t) < min_free:
        return False
    cls = tree_class(t) if change_class == CLASS_NONE else change_class
    free = tree_free(t)
    if operation == TREE_OP_OFFLINE:
        free = 0
    elif operation == TREE_OP_ONLINE:
        if free != 0:
            return False
        free = lower_tree_free(w, idx)
    w[ti] = tree_new(0, cls, free)
    return True


@hot
def llfree_change_tree(w, tree, match_class, min_free, change_class, operation):
    """``llfree_change_tree`` / ``trees_change``: the tree ``tree`` (or, for -1, the first
    matching one walking alternately from tree 0).  Returns 0 or R_MEMORY."""
    if min_free > TREE_SIZE:
        return R_MEMORY
    ntrees = w[M_NTREES]
    if tree >= 0:
        if tree >= ntrees:
            return R_MEMORY
        return 0 if trees_change_at(w, tree, match_class, min_free, change_class, operation) else R_MEMORY
    for i in range(ntrees):  # trees_search(0, 0, len)
        off = i // 2 if i % 2 == 0 else -((i + 1) // 2)
        if trees_change_at(w, (ntrees + off) % ntrees, match_class, min_free, change_class, operation):
            return 0
    return R_MEMORY


@hot
def tree_stats(w, out):
    """``llfree_tree_stats``: ``out[0]`` free frames, ``out[1]`` free trees, then per class
    ``out[2 + 2c]`` free and ``out[3 + 2c]`` allocated frames (trees + local counters)."""
    out[:] = 0
    for c in range(MAX_CLASSES):
        for i in range(w[M_CLS_LEN + c]):
            r = w[slot_word(w, c, i)]
            if res_present(r) == 1:
                f = res_free(r)
                out[0] += f
                if f == TREE_SIZE:
                    out[1] += 1
                out[2 + 2 * c] += f
    for idx in range(w[M_NTREES]):
        t = w[tw(w, idx)]
        f = tree_free(t)
        out[0] += f
        if f == TREE_SIZE:
            out[1] += 1
        out[2 + 2 * tree_class(t)] += f
        out[3 + 2 * tree_class(t)] += TREE_SIZE - f


# =============================================================================================
# validation
# =============================================================================================
CHECK_MESSAGES = {
    1: "child entry's free counter exceeds the child size, or is not 0 for a huge child",
    2: "huge child's bitfield is not all zero",
    3: "child's free counter differs from the free bits of its bitfield",
    4: "frames past the end are not marked allocated in the last bitfield",
    5: "padding child (past the last frame) is not {free 0, huge}",
    6: "tree's free counter exceeds the tree size",
    7: "tree has a class that is not configured",
    8: "unreserved tree's free counter differs from the sum of its children",
    9: "local reservation's free counter exceeds the tree size",
    10: "local reservation names a tree that does not exist",
    11: "local reservation's tree is not marked reserved",
    12: "reserved tree's global + local counters differ from the sum of its children",
    13: "two local slots reserve the same tree",
    14: "reserved tree held by no local slot",
    15: "fast (tree + local) free count differs from the lower free count",
    16: "a child, tree or reservation word has bits outside its layout",
}


@njit
def llfree_validate(w):
    """Check every invariant (``llfree_validate`` plus the lower allocator's and llfree-rs'
    reservation count).  Returns ``(code, index)``, code 0 when consistent."""
    frames = w[M_FRAMES]
    nchild = w[M_NCHILD]
    ntrees = w[M_NTREES]
    for c in range(ntrees * TREE_CHILDREN):
        ce = w[cw(w, c)]
        if ce < 0 or ce > 0xFFFF:
            return 16, c
        if c >= nchild:
            if ce != child_new(0, 1):
                return 5, c
            continue
        if child_free(ce) > CHILD_SIZE or (child_huge(ce) == 1 and child_free(ce) != 0):
            return 1, c
        if child_huge(ce) == 1:
            for r in range(FIELD_N):
                if w[w[M_FIELDS] + c * FIELD_N + r] != 0:
                    return 2, c
            continue
        if CHILD_SIZE - field_count_ones(w, c) != child_free(ce):
            return 3, c
        end = frames - c * CHILD_SIZE
        if end < CHILD_SIZE:
            for b in range(end, CHILD_SIZE):
                if field_is_free(w, c, b):
                    return 4, c
    held = np.zeros(ntrees, np.int8)
    fast = 0
    for cls in range(MAX_CLASSES):
        for i in range(w[M_CLS_LEN + cls]):
            slot = w[M_CLS_OFF + cls] + i
            r = w[slot_word(w, cls, i)]
            if res_free(r) > TREE_SIZE:
                return 9, slot
            if res_present(r) == 0:
                if r != 0:
                    return 16, slot
                continue
            tree = row_tree(res_row(r))
            if tree >= ntrees:
                return 10, slot
            t = w[tw(w, tree)]
            if tree_reserved(t) == 0:
                return 11, tree
            if tree_free(t) + res_free(r) != lower_tree_free(w, tree):
                return 12, tree
            if held[tree] != 0:
                return 13, tree
            held[tree] = 1
            fast += res_free(r)
    for idx in range(ntrees):
        t = w[tw(w, idx)]
        if t < 0 or t > 0xFFFF_FFFF:
            return 16, idx
        if tree_free(t) > TREE_SIZE:
            return 6, idx
        if w[M_CIDX + tree_class(t)] < 0:
            return 7, idx
        if tree_reserved(t) == 0:
            if tree_free(t) != lower_tree_free(w, idx):
                return 8, idx
        elif held[idx] == 0:
            return 14, idx
        fast += tree_free(t)
    if fast != lower_stats(w)[0]:
        return 15, -1
    return 0, -1


# =============================================================================================
# batch
# =============================================================================================
@hot
def llfree_batch(w, ops, classes, locals_, out, outcls, done, pos):
    """Run ``ops[pos:]``; returns the index reached (``w[M_STATUS]`` 0 when done).

    ``ops[i] >= 0`` gets order ``ops[i]`` with class ``classes[i]`` and local ``locals_[i]``
    (-1: global): ``out[i]`` the frame or -1, ``outcls[i]`` its class.  ``ops[i] < 0`` puts
    the frames of op ``j = -ops[i] - 1`` (order ``ops[j]``) with class ``classes[i]`` (-1:
    the class op ``j`` got) and local ``locals_[i]``; ``out[i]`` repeats the frame.  Stops
    with the status in ``w[M_STATUS]`` on a bad request or a put that fails.
    """
    n = len(ops)
    w[M_STATUS] = 0
    i = pos
    while i < n:
        op = ops[i]
        if op >= 0:
            r = llfree_get(w, -1, op, classes[i], locals_[i])
            if r >= 0:
                out[i] = r >> 3
                outcls[i] = r & 7
            elif r == R_MEMORY:
                out[i] = -1
            else:
                w[M_STATUS] = r
                return i
        else:
            j = -op - 1
            if j >= i or ops[j] < 0:
                w[M_STATUS] = E_BADINDEX
                return i
            if done[j] != 0:
                w[M_STATUS] = E_DOUBLEINDEX
                return i
            if out[j] >= 0:
                c = classes[i] if classes[i] >= 0 else outcls[j]
                r = llfree_put(w, out[j], ops[j], c, locals_[i])
                if r != 0:
                    w[M_STATUS] = r
                    return i
            done[j] = 1
            out[i] = out[j]
        i += 1
    return n


# =============================================================================================
# construction (lower_init / trees_init / ll_local_init; plain numpy)
# =============================================================================================
def lower_metadata_size(frames: int) -> int:
    """``lower_metadata_size``: bitfields (64 B per child) + children_t (64 B per tree)."""
    children = -(-frames // CHILD_SIZE)
    trees = -(-children // TREE_CHILDREN)
    return children * FIELD_N * 8 + trees * CACHE_SIZE


def trees_metadata_size(frames: int) -> int:
    trees = -(-frames // TREE_SIZE)
    return -(-(4 * trees) // CACHE_SIZE) * CACHE_SIZE


LOCAL_HEADER = 256  # sizeof(local_t) (num_classes + 8 x class_locals_t), cache aligned
LLFREE_STRUCT = 128  # sizeof(llfree_t): lower_t, local*, trees_t, policy, num_classes; aligned 64


def local_metadata_size(slots: int) -> int:
    """``ll_local_size``: the local_t header plus one 64-byte entry per slot."""
    return LOCAL_HEADER + CACHE_SIZE * slots


def new_state(frames: int, free_all: bool, classes, default: int, policy_table: np.ndarray,
              free_reserve: bool = False) -> np.ndarray:
    """The state array of a new allocator (``llfree_init`` with LLFREE_INIT_FREE for
    ``free_all``, else LLFREE_INIT_ALLOC): ``classes`` is a sequence of ``(class, slots)``,
    ``policy_table`` the uint16 policy of every (requested, target, free) in classes order.

    Layout (int64 words): the M_*/K_* slots, the search scratch, the policy table (four
    16-bit entries per word), one 8-word entry per local slot, one word per tree entry,
    one word per child entry (8 per tree), 8 words per bitfield.  The entries keep the
    reference's bit layouts in their low 16, 32 and 64 bits.
    """
    nchild = -(-frames // CHILD_SIZE)
    ntrees = -(-nchild // TREE_CHILDREN)
    slots = sum(n for _, n in classes)
    npol = -(-len(policy_table) // 4)
    off_scratch = NMETA
    off_policy = off_scratch + 2 * TREES_SEARCH_BEST
    off_local = off_policy + npol
    off_trees = off_local + slots * LOCAL_STRIDE
    off_children = off_trees + ntrees
    off_fields = off_children + ntrees * TREE_CHILDREN
    nwords = off_fields + nchild * FIELD_N
    w = np.zeros(nwords, np.int64)
    meta = w[:NMETA]
    meta[M_FRAMES] = frames
    meta[M_NCHILD] = nchild
    meta[M_NTREES] = ntrees
    meta[M_DEFAULT] = default
    meta[M_NCLASSES] = len(classes)
    meta[M_FREE_RESERVE] = int(bool(free_reserve))
    meta[M_NSLOTS] = slots
    meta[M_CLS_LEN:M_CLS_LEN + MAX_CLASSES] = -1
    meta[M_CIDX:M_CIDX + MAX_CLASSES] = -1
    off = 0
    for i, (c, n) in enumerate(classes):
        meta[M_CLS_OFF + c] = off
        meta[M_CLS_LEN + c] = n
        meta[M_CIDX + c] = i
        off += n
    meta[M_SCRATCH], meta[M_POLICY], meta[M_LOCAL] = off_scratch, off_policy, off_local
    meta[M_TREES], meta[M_CHILDREN], meta[M_FIELDS], meta[M_WORDS] = off_trees, off_children, off_fields, nwords
    packed = np.zeros(npol * 4, np.int64)
    packed[:len(policy_table)] = policy_table
    w[off_policy:off_local] = (packed[0::4] | packed[1::4] << 16 | packed[2::4] << 32
                               | packed[3::4] << 48)  # entry i: bits 16 (i & 3) of word i >> 2
    # lower_clear: children, then the bitfield of a partial last child
    idx = np.arange(ntrees * TREE_CHILDREN)
    free = np.clip(frames - idx * CHILD_SIZE, 0, CHILD_SIZE) if free_all else np.zeros(len(idx), np.int64)
    w[off_children:off_fields] = np.where(free == 0, 1 << 15, free)
    if free_all:
        last = frames - (nchild - 1) * CHILD_SIZE  # init_field of a partial last child
        if last < CHILD_SIZE:
            rows = w[off_fields + (nchild - 1) * FIELD_N:]
            rows[:] = -1
            rows[:last // ROW_BITS] = 0
            if last % ROW_BITS:
                rows[last // ROW_BITS] = np.int64(-1) << np.int64(last % ROW_BITS)
    # trees_init with init_tree_cb: each tree's free counter from its children
    ch = w[off_children:off_fields].reshape(ntrees, TREE_CHILDREN)
    tfree = np.where(ch >> 15 != 0, 0, ch & 0x7FFF).sum(axis=1)
    w[off_trees:off_children] = tfree << (1 + CLASS_BITS) | (default << 1)
    return w


def recover_state(w: np.ndarray, allocated: np.ndarray, huge: np.ndarray) -> None:
    """``lower_recover`` + ``trees_init`` on a state built by ``new_state``: the bitfields
    from ``allocated`` (one bool per frame), huge children (``huge``, one bool per child:
    their bitfields cleared, ``{0, huge}``), every other child's counter from its bitfield,
    the trees' counters from their children, no reservations (llfree-c's
    LLFREE_INIT_RECOVER: the volatile part is rebuilt)."""
    frames = int(w[M_FRAMES])
    nchild = int(w[M_NCHILD])
    bits = np.ones(nchild * CHILD_SIZE, bool)  # past the end: allocated
    bits[:frames] = allocated
    bits[np.repeat(huge, CHILD_SIZE)] = False
    region(w, "fields")[:] = np.packbits(bits, bitorder="little").view("<i8").astype(np.int64)
    free = CHILD_SIZE - bits.reshape(nchild, CHILD_SIZE).sum(axis=1)
    ch = region(w, "children")
    ch[:] = 1 << 15  # padding children
    ch[:nchild] = np.where(huge, 1 << 15, free)
    ntrees = int(w[M_NTREES])
    tfree = np.where(ch >> 15 != 0, 0, ch & 0x7FFF).reshape(ntrees, TREE_CHILDREN).sum(axis=1)
    region(w, "trees")[:] = tfree << (1 + CLASS_BITS) | (int(w[M_DEFAULT]) << 1)
    region(w, "local")[:] = 0


def region(w: np.ndarray, name: str) -> np.ndarray:
    """A view of one region of a state array: ``fields``, ``children``, ``trees`` or
    ``local`` (8 words per slot)."""
    lo, hi = {"local": (M_LOCAL, M_TREES), "trees": (M_TREES, M_CHILDREN),
              "children": (M_CHILDREN, M_FIELDS), "fields": (M_FIELDS, M_WORDS)}[name]
    return w[int(w[lo]):int(w[hi])]


# =============================================================================================
# per-call entry points (one array + scalars: the cheapest numba dispatch)
# =============================================================================================
@hot
def k_get(w, frame, order, cls, local):
    return llfree_get(w, frame, order, cls, local)


@hot
def k_put(w, frame, order, cls, local):
    return llfree_put(w, frame, order, cls, local)


@hot
def k_batch(w, ops, classes, locals_, out, outcls, done, pos):
    return llfree_batch(w, ops, classes, locals_, out, outcls, done, pos)


@hot
def k_take(w, frame, order):
    return llfree_take(w, frame, order)


@hot
def k_drain(w):
    llfree_drain(w)


@njit
def k_validate(w):
    return llfree_validate(w)


@hot
def k_lower_stats(w):
    return lower_stats(w)


@hot
def k_stats_at(w, frame, order):
    return lower_stats_at(w, frame, order)


@hot
def k_is_free(w, frame, order):
    return lower_is_free(w, frame, order)


@hot
def k_free_blocks(w, out):
    lower_free_blocks(w, out)


@hot
def k_tree_stats(w, out):
    tree_stats(w, out)


@hot
def k_change_tree(w, tree, match_class, min_free, change_class, operation):
    return llfree_change_tree(w, tree, match_class, min_free, change_class, operation)
