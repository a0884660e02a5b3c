"""Conformance of memdesc.lib.llfree with the reference implementations' unit tests.

Each test ports one test of llfree-c HEAD 970bb3d (``tests/<file>.c:<test>``) or llfree-rs
HEAD 441c8d1 (``core/src/<file>.rs::<test>``, ``eval/tests/integration.rs::<test>``) to the
kernels of ``memdesc.lib._llfree_kernels`` (bitfield, child, tree, lower) or to the facade
(upper).  The constants are llfree-c's (8 children = 4096 frames per tree); tests written
for llfree-rs' 4-child trees use ``TREE_SIZE`` where they use ``TREE_FRAMES``.  Tests that
run threads in the reference run one deterministic interleaving here (the model has one
thread per call); where a port deviates from the original, the test says why.
"""

from __future__ import annotations

import numpy as np
import pytest

from memdesc.errors import InvariantViolation
from memdesc.lib import _llfree_kernels as K
from memdesc.lib.llfree import (
    CHILD_SIZE,
    HUGE_ORDER,
    TREE_CHILDREN,
    TREE_ORDER,
    TREE_SIZE,
    Classing,
    Init,
    LLFree,
    LLFreeDoubleFree,
    LLFreeOrderMismatch,
    PolicyType,
)

MAX = 0xFFFF_FFFF_FFFF_FFFF


# --- helpers ----------------------------------------------------------------------------------
def i64(x: int) -> np.int64:
    return np.int64(x - (1 << 64) if x >= 1 << 63 else x)


def u64(x) -> int:
    return int(x) & MAX


def lower_new(frames: int, init: Init = Init.FREE) -> np.ndarray:
    """``lower_new`` of tests/lower.c: a state for the lower allocator (any frame count)."""
    return K.new_state(frames, init == Init.FREE, [(0, 0)], 0, np.zeros(TREE_SIZE + 1, np.uint16))


def field(s, child: int) -> list[int]:
    return [u64(x) for x in K.region(s, "fields")[child * 8:(child + 1) * 8]]


def set_field(s, child: int, rows) -> None:
    K.region(s, "fields")[child * 8:(child + 1) * 8] = [i64(r) for r in rows]


def child(s, i: int) -> tuple[int, bool]:
    c = int(K.region(s, "children")[i])
    return c & 0x7FFF, bool(c >> 15)


def distinct(x, n: int) -> bool:
    """``x`` holds ``n`` distinct values (np.unique hashes int64 arrays: slow here)."""
    x = np.sort(np.asarray(x))
    return len(x) == n and bool((x[1:] != x[:-1]).all())


def lget(s, start_frame: int, order: int, frame: int = -1) -> int:
    """lower_get: the frame, or -1 (memory) / -2 (argument)."""
    r = int(K.lower_get(s, start_frame, order, frame))
    return r >> 3 if r >= 0 else r


def lput(s, frame: int, order: int) -> int:
    return int(K.lower_put(s, frame, order))


def lstats(s):
    return tuple(int(x) for x in K.lower_stats(s))


class WyRand:
    """llfree-rs ``util::WyRand`` (wyhash), to replay its seeded tests exactly."""

    def __init__(self, seed: int):
        self.seed = seed

    def generate(self) -> int:
        self.seed = (self.seed + 0xA076_1D64_78BD_642F) & MAX
        t = self.seed * (self.seed ^ 0xE703_7ED1_A0B4_28DB)
        return ((t >> 64) ^ t) & MAX

    def range(self, lo: int, hi: int) -> int:
        v = self.generate()
        return v % (hi - lo) + lo if lo < hi else 0

    def shuffle(self, xs: list) -> None:
        for i in range(len(xs) - 1):
            j = self.range(i, len(xs))
            xs[i], xs[j] = xs[j], xs[i]


def test_policy(req, tgt, free):
    """tests/tree.c ``test_policy``: same class matches, lower request steals, higher demotes."""
    if req == tgt:
        return PolicyType.MATCH, 255
    if req < tgt:
        return PolicyType.STEAL, 0
    return PolicyType.DEMOTE, 0


test_policy.__test__ = False  # not a pytest test


def movable(cores: int, frames: int, init: Init = Init.FREE) -> LLFree:
    """``llfree_new`` of tests/llfree.c: the movable classing."""
    return LLFree(frames, Classing.movable(cores), init)


def llreq(core: int, order: int, mov: bool = False) -> dict:
    """``llreq`` / ``llreq_mov`` of tests/llfree.c (movable classing, one slot per core)."""
    cls = 2 if order >= HUGE_ORDER else (1 if mov else 0)
    return {"order": order, "cls": cls, "local": core}


# =============================================================================================
# bitfield (tests/bitfield.c, core/src/bitfield.rs)
# =============================================================================================
FZA = [  # (v, order, expected v, expected pos or None): tests/bitfield.c:bitfield_first_zeros
    (0, 0, 0b1, 0), (0, 1, 0b11, 0), (0, 2, 0b1111, 0), (0, 3, 0xFF, 0), (0, 4, 0xFFFF, 0),
    (0, 5, 0xFFFF_FFFF, 0), (0, 6, MAX, 0),
    (1, 0, 0b11, 1), (1, 1, 0b1101, 2), (1, 2, 0xF1, 4), (1, 3, 0xFF01, 8), (1, 4, 0xFFFF_0001, 16),
    (1, 5, 0xFFFF_FFFF_0000_0001, 32), (1, 6, 1, None),
    (0b101, 0, 0b111, 1), (0b10011, 1, 0b11111, 2), (0x10F, 2, 0x1FF, 4), (0x100FF, 3, 0x1FFFF, 8),
    (0x1_0000_FFFF, 4, 0x1_FFFF_FFFF, 16), (0xFF00_FF0F, 5, 0xFFFF_FFFF_FF00_FF0F, 32),
    (0b1111_0000_1100_0011_1000_1111, 2, 0b1111_1111_1100_0011_1000_1111, 16),
    (0x7FFF_FFFF_FFFF_FFFF, 0, MAX, 63), (MAX, 0, MAX, None),
    (0x3FFF_FFFF_FFFF_FFFF, 1, MAX, 62), (0x7FFF_FFFF_FFFF_FFFF, 1, 0x7FFF_FFFF_FFFF_FFFF, None),
    (0x0FFF_FFFF_FFFF_FFFF, 2, MAX, 60), (0x1FFF_FFFF_FFFF_FFFF, 2, 0x1FFF_FFFF_FFFF_FFFF, None),
    (0x3FFF_FFFF_FFFF_FFFF, 2, 0x3FFF_FFFF_FFFF_FFFF, None),
    (0x00FF_FFFF_FFFF_FFFF, 3, MAX, 56), (0x0FFF_FFFF_FFFF_FFFF, 3, 0x0FFF_FFFF_FFFF_FFFF, None),
    (0x1FFF_FFFF_FFFF_FFFF, 3, 0x1FFF_FFFF_FFFF_FFFF, None),
    (0x0000_FFFF_FFFF_FFFF, 4, MAX, 48), (0x0001_FFFF_FFFF_FFFF, 4, 0x0001_FFFF_FFFF_FFFF, None),
    (0x00FF_FFFF_FFFF_FFFF, 4, 0x00FF_FFFF_FFFF_FFFF, None),
    (0x0000_0000_FFFF_FFFF, 5, MAX, 32), (0x0000_0001_FFFF_FFFF, 5, 0x0000_0001_FFFF_FFFF, None),
    (0x0000_FFFF_FFFF_FFFF, 5, 0x0000_FFFF_FFFF_FFFF, None),
    (0, 6, MAX, 0), (1, 6, 1, None), (0xA000_0000_0000_0000, 6, 0xA000_0000_0000_0000, None),
]


@pytest.mark.parametrize(("v", "order", "ev", "epos"), FZA)
def test_bitfield_first_zeros(v, order, ev, epos):
    """tests/bitfield.c:bitfield_first_zeros (= core/src/bitfield.rs::first_zeros_aligned)."""
    nv, pos = K.first_zeros_aligned(i64(v), order)
    assert u64(nv) == ev
    assert (int(pos) if pos < 64 else None) == epos


def test_bitfield_set_bit():
    """tests/bitfield.c:bitfield_set_bit: field_set_next from frame 0, order 0."""
    s = lower_new(CHILD_SIZE)
    cases = [
        ([0] * 8, [1] + [0] * 7, 0),
        ([1] + [0] * 7, [3] + [0] * 7, 1),
        ([MAX, 0xF] + [0] * 6, [MAX, 0x1F] + [0] * 6, 68),
        ([MAX, MAX, MAX, 0xFABD_EADB_EEFF_FFFF, 0, 0xDEAD_BEEF_DEAD_BEEF, 0, 0x8000_0000_0000_0000],
         [MAX, MAX, MAX, 0xFABD_EADB_EFFF_FFFF, 0, 0xDEAD_BEEF_DEAD_BEEF, 0, 0x8000_0000_0000_0000], 216),
        ([MAX] * 8, [MAX] * 8, -1),  # "call should fail", "no change"
    ]
    for before, after, pos in cases:
        set_field(s, 0, before)
        assert K.field_set_next(s, 0, 0, 0) == pos
        assert field(s, 0) == after


def test_bitfield_reset_bit():
    """tests/bitfield.c:bitfield_reset_bit: field_toggle(expected = set)."""
    s = lower_new(CHILD_SIZE)
    cases = [
        ([0] * 8, 0, [0] * 8, False),  # no change if the bit was already 0
        ([1] + [0] * 7, 0, [0] * 8, True),
        ([1, 0xFACB_8FFA_BF00_0000, 0xBADC007CD, 0, 0, 0, 0, 0xFFFF_FACB_FE97_5530], 7 * 64 + 63,
         [1, 0xFACB_8FFA_BF00_0000, 0xBADC007CD, 0, 0, 0, 0, 0x7FFF_FACB_FE97_5530], True),
        ([1, 0xFACB_8FFA_BF00_0000, 0xBADC007CD, 0, 0, 0, 0, 0x7FFF_FACB_FE97_5530], 2 * 64 + 32,
         [1, 0xFACB_8FFA_BF00_0000, 0xAADC007CD, 0, 0, 0, 0, 0x7FFF_FACB_FE97_5530], True),
        ([1, 0xFACB_8FFA_BF00_0000, 0xB2DC007CD, 0, 0, 0, 0, 0x7FFF_FACB_FE97_5530], 4 * 64 + 62,
         [1, 0xFACB_8FFA_BF00_0000, 0xB2DC007CD, 0, 0, 0, 0, 0x7FFF_FACB_FE97_5530], False),
    ]
    for before, pos, after, ok in cases:
        set_field(s, 0, before)
        assert bool(K.field_toggle(s, 0, pos, 0, True)) is ok
        assert field(s, 0) == after


def test_bitfield_count_bits():
    """tests/bitfield.c:bitfield_count_bits."""
    s = lower_new(CHILD_SIZE)
    for rows, n in [([0] * 8, 0), ([1, 0, 0, 0, 0, 0, 0, 0x8000_0000_0000_0000], 2),
                    ([1, 0, 0, 0x0FFF_DEAD_BEEF_4531, 0, 0, 0, 0x8000_0000_F000_0000], 48), ([MAX] * 8, 512)]:
        set_field(s, 0, rows)
        assert K.field_count_ones(s, 0) == n
        assert field(s, 0) == rows


def test_bitfield_free_bit():
    """tests/bitfield.c:bitfield_free_bit."""
    s = lower_new(CHILD_SIZE)
    set_field(s, 0, [0] * 8)
    assert K.field_is_free(s, 0, 0) and K.field_is_free(s, 0, 511)
    set_field(s, 0, [0x618F_66AC_6DEA_D122, MAX, 0, 0, 0, 0, 0, 0])
    assert K.field_is_free(s, 0, 43)
    assert not K.field_is_free(s, 0, 42)
    assert not K.field_is_free(s, 0, 84)


def test_bitfield_bit_toggle():
    """core/src/bitfield.rs::bit_toggle (with ``is_zero``)."""
    s = lower_new(CHILD_SIZE)
    assert K.field_is_zero(s, 0, 8, 3)
    assert K.field_toggle(s, 0, 8, 3, False)
    assert field(s, 0)[:2] == [0xFF00, 0]
    assert not K.field_is_zero(s, 0, 8, 3)
    assert K.field_is_zero(s, 0, 16, 2)
    assert K.field_toggle(s, 0, 16, 2, False)
    assert field(s, 0)[:2] == [0xF_FF00, 0]
    assert K.field_toggle(s, 0, 20, 2, False)
    assert field(s, 0)[:2] == [0xFF_FF00, 0]
    assert not K.field_is_zero(s, 0, 16, 2)
    assert not K.field_toggle(s, 0, 8, 3, False)
    assert K.field_toggle(s, 0, 8, 3, True)
    assert K.field_toggle(s, 0, 16, 3, True)
    assert field(s, 0)[:2] == [0, 0]
    assert K.field_is_zero(s, 0, 0, HUGE_ORDER)
    assert K.field_toggle(s, 0, 0, 6, False)
    assert field(s, 0)[:2] == [MAX, 0]
    assert K.field_toggle(s, 0, 64, 6, False)
    assert field(s, 0)[:2] == [MAX, MAX]
    assert K.field_toggle(s, 0, 0, 7, True)
    assert field(s, 0)[:2] == [0, 0]


def test_bitfield_first_zero_rows():
    """core/src/bitfield.rs::first_zero_rows (orders 7-8 take whole rows).  The order-9
    allocation is ``field_toggle`` here: llfree-c's field_set_next stops below a child
    (lower_get takes order 9 as a child flag)."""
    s = lower_new(CHILD_SIZE)
    assert K.field_toggle(s, 0, 0, HUGE_ORDER, False)
    assert field(s, 0) == [MAX] * 8
    assert K.field_toggle(s, 0, 0, HUGE_ORDER, True)
    assert field(s, 0) == [0] * 8
    assert K.field_set_next(s, 0, 0, 7) == 0
    assert field(s, 0)[:2] == [MAX, MAX]
    assert K.field_set_next(s, 0, 0, 8) == 4 * 64
    assert field(s, 0)[4:] == [MAX] * 4
    assert K.field_set_next(s, 0, 0, 6) == 2 * 64
    assert K.field_set_next(s, 0, 0, 6) == 3 * 64
    for order in (8, 7, 6):
        assert K.field_set_next(s, 0, 0, order) == -1


def test_bitfield_multi_row_toggle_failure_changes_nothing():
    """llfree-c's field_toggle undo for orders 7-8 CASes in the wrong direction (970bb3d);
    modelled as intended: a refused multi-row put leaves the rows as they were."""
    s = lower_new(CHILD_SIZE)
    set_field(s, 0, [MAX, 0x1, 0, 0, 0, 0, 0, 0])
    assert not K.field_toggle(s, 0, 0, 7, True)
    assert field(s, 0)[:2] == [MAX, 1]


# =============================================================================================
# child (tests/child.c)
# =============================================================================================
def test_child_counter_inc():
    """tests/child.c:child_counter_inc."""
    assert not K.child_inc(K.child_new(0x200, 0), 0)[0]  # out of range
    ok, c = K.child_inc(K.child_new(5, 0), 0)
    assert ok and c == K.child_new(6, 0)
    assert not K.child_inc(K.child_new(0, 1), 0)[0]  # is huge
    ok, c = K.child_inc(K.child_new(0x1FF, 0), 0)
    assert ok and c == K.child_new(0x200, 0)


def test_child_counter_dec():
    """tests/child.c:child_counter_dec."""
    assert not K.child_dec(K.child_new(0, 0), 0)[0]
    ok, c = K.child_dec(K.child_new(9, 0), 0)
    assert ok and c == K.child_new(8, 0)
    ok, c = K.child_dec(K.child_new(CHILD_SIZE, 0), 0)
    assert ok and c == K.child_new(CHILD_SIZE - 1, 0)
    assert not K.child_dec(K.child_new(0, 1), 0)[0]  # invalid state


def test_child_layout():
    """src/child.h: ``{free:15, huge:1}`` in 16 bits; children_t is one cache line
    (tests/child.c:child_atomic checks ``sizeof(children_t) % LLFREE_CACHE_SIZE == 0``)."""
    assert K.child_new(512, 0) == 0x200 and K.child_new(0, 1) == 0x8000
    assert K.lower_metadata_size(TREE_SIZE) == TREE_CHILDREN * 64 + 64  # bitfields + one children_t


# =============================================================================================
# tree (tests/tree.c)
# =============================================================================================
@pytest.fixture(scope="module")
def tree_state():
    return LLFree(TREE_SIZE, Classing([(0, 1), (1, 1)], 0, test_policy)).w


def tree(s):
    t = int(K.region(s, "trees")[0])
    return bool(t & 1), (t >> 1) & 7, t >> 4


def test_tree_init():
    """tests/tree.c:tree_init (layout ``{reserved:1, class:3, free:28}``)."""
    for reserved, free in ((0, 498), (0, TREE_SIZE), (1, 0)):
        t = K.tree_new(reserved, 0, free)
        assert (K.tree_free(t), K.tree_reserved(t), K.tree_class(t)) == (free, reserved, 0)
    assert K.tree_new(1, 5, 7) == 1 | 5 << 1 | 7 << 4
    assert K.TREE_FREE_BITS == 28 and (1 << K.TREE_FREE_BITS) > TREE_SIZE


def test_tree_reserve(tree_state):
    """tests/tree.c:tree_reserve: Match reserves (free -> 0), a reserved tree refuses,
    Steal only takes the frames and keeps the class."""
    s = tree_state
    K.region(s, "trees")[0] = K.tree_new(0, 0, 764)
    ok, reserved, old_free, cls = K.trees_reserve_or_steal(s, 0, 1, 0)
    assert ok and reserved and old_free == 764 and cls == 0
    assert tree(s) == (True, 0, 0)
    K.region(s, "trees")[0] = K.tree_new(1, 0, 456)
    assert not K.trees_reserve_or_steal(s, 0, 1, 0)[0]
    assert tree(s) == (True, 0, 456)
    K.region(s, "trees")[0] = K.tree_new(0, 0, TREE_SIZE)
    ok, reserved, _, _ = K.trees_reserve_or_steal(s, 0, 1, 0)
    assert ok and reserved and tree(s) == (True, 0, 0)
    K.region(s, "trees")[0] = K.tree_new(0, 1, 764)
    ok, reserved, _, cls = K.trees_reserve_or_steal(s, 0, 4, 0)
    assert ok and not reserved and cls == 1
    assert tree(s) == (False, 1, 760)


def test_tree_unreserve(tree_state):
    """tests/tree.c:tree_unreserve."""
    s = tree_state
    for free, frees in ((0, 987), (453, 987)):
        K.region(s, "trees")[0] = K.tree_new(1, 0, free)
        assert K.trees_unreserve(s, 0, frees, 0)
        assert tree(s) == (False, 0, free + frees)


def test_tree_inc(tree_state):
    """tests/tree.c:tree_inc: put adds frames (the reserved flag does not matter); a tree
    that becomes entirely free takes the default class."""
    s = tree_state
    cases = [((0, 0, 0), 0, (0, 0, 1)), ((0, 0, TREE_SIZE - 1), 0, (0, 0, TREE_SIZE)),
             ((1, 0, 3456), 0, (1, 0, 3457)), ((1, 0, 3456), HUGE_ORDER, (1, 0, 3456 + 512)),
             ((1, 1, TREE_SIZE - 512), HUGE_ORDER, (1, 0, TREE_SIZE))]
    for before, order, after in cases:
        t = K.tree_put(s, np.int64(K.tree_new(*before)), 1 << order)
        assert (K.tree_reserved(t), K.tree_class(t), K.tree_free(t)) == after


# =============================================================================================
# lower (tests/lower.c, core/src/lower.rs)
# =============================================================================================
def test_lower_init():
    """tests/lower.c:lower_init."""
    s = lower_new(1024)
    assert s[K.M_NCHILD] == 2 and field(s, 0) == [0] * 8 and lstats(s)[0] == 1024
    s = lower_new(1023)
    assert field(s, 1) == [0] * 7 + [0x8000_0000_0000_0000] and lstats(s)[0] == 1023
    s = lower_new(632, Init.ALLOC)
    assert s[K.M_NCHILD] == 2 and lstats(s)[0] == 0
    s = lower_new(685161)
    assert s[K.M_NCHILD] == 1339
    assert all(field(s, i) == [0] * 8 for i in range(1338))
    assert field(s, 1338) == [0, 0xFFFF_FE00_0000_0000] + [MAX] * 6
    assert lstats(s)[0] == 685161


def test_lower_get():
    """tests/lower.c:lower_get.  The original returns after its first check; the rest is
    ported too, with the ``frames = 2`` bitfield corrected from 0x0fff...ff to 0xff...fd
    (the bits past the end are set, and frame 0 was taken)."""
    s = lower_new(1360)
    assert lget(s, 0, 0) == 0 and field(s, 0) == [1] + [0] * 7
    assert lget(s, 0, 0) == 1 and field(s, 0) == [3] + [0] * 7
    assert lget(s, 320, 0) == 320 and field(s, 0) == [3, 0, 0, 0, 0, 1, 0, 0]
    for i in range(954):
        assert lget(s, 0, 0) == i + (2 if i < 318 else 3)
    assert field(s, 0) == [MAX] * 8
    assert field(s, 1) == [MAX] * 6 + [0x1FFF_FFFF_FFFF_FFFF, 0]

    s = lower_new(2)
    assert lget(s, 0, 0) == 0 and field(s, 0) == [0xFFFF_FFFF_FFFF_FFFD] + [MAX] * 7
    assert lget(s, 0, 0) == 1 and field(s, 0) == [MAX] * 8
    assert lget(s, 0, 0) == K.R_MEMORY and field(s, 0) == [MAX] * 8

    s = lower_new(166120)
    assert lget(s, 0, 0) == 0
    assert lget(s, 0, HUGE_ORDER) == 512
    assert child(s, 1) == (0, True) and field(s, 1) == [0] * 8


def test_lower_put():
    """tests/lower.c:lower_put: a double put, a put of a free frame, a put outside."""
    s = lower_new(1360)
    for _ in range(957):
        assert lget(s, 0, 0) >= 0
    f1 = [MAX] * 6 + [0x1FFF_FFFF_FFFF_FFFF, 0]
    assert field(s, 0) == [MAX] * 8 and field(s, 1) == f1
    assert lput(s, 0, 0) == 0
    assert field(s, 0) == [0xFFFF_FFFF_FFFF_FFFE] + [MAX] * 7 and field(s, 1) == f1
    assert lput(s, 0, 0) == K.R_MEMORY  # repeat the same address
    assert lput(s, 957, 0) == K.R_MEMORY
    assert field(s, 0) == [0xFFFF_FFFF_FFFF_FFFE] + [MAX] * 7 and field(s, 1) == f1
    assert lput(s, 561, 0) == 0
    assert field(s, 1) == [0xFFFD_FFFF_FFFF_FFFF] + [MAX] * 5 + [0x1FFF_FFFF_FFFF_FFFF, 0]
    assert lput(s, 1361, 0) == K.R_ARGUMENT  # outside the range
    assert field(s, 1) == [0xFFFD_FFFF_FFFF_FFFF] + [MAX] * 5 + [0x1FFF_FFFF_FFFF_FFFF, 0]


def test_lower_is_free():
    """tests/lower.c:lower_is_free (``lower_stats_at`` order 0)."""
    s = lower_new(1360)
    assert K.lower_stats_at(s, 0, 0)[0] == 1 and K.lower_stats_at(s, 910, 0)[0] == 1
    s = lower_new(1360, Init.ALLOC)
    for f in (0, 513, 511):
        assert K.lower_stats_at(s, f, 0)[0] == 0
    assert lput(s, 513, 0) == 0 and lput(s, 511, 0) == 0
    assert K.lower_stats_at(s, 513, 0)[0] == 1 and K.lower_stats_at(s, 511, 0)[0] == 1
    assert K.lower_stats_at(s, 512, 0)[0] == 0


def test_lower_large():
    """tests/lower.c:lower_large: one allocation of every order 0..TREE_ORDER."""
    s = lower_new((TREE_ORDER + 1) * TREE_SIZE)
    frames = []
    for o in range(TREE_ORDER + 1):
        f = lget(s, o * TREE_SIZE, o)
        assert f >= 0 and f % (1 << o) == 0
        frames.append(f)
    for o, f in enumerate(frames):
        assert lput(s, f, o) == 0
    assert lstats(s)[0] == (TREE_ORDER + 1) * TREE_SIZE


def test_lower_huge():
    """tests/lower.c:lower_huge: huge frames, a regular frame in their way, a partial put
    that splits a huge frame."""
    s = lower_new(CHILD_SIZE * 60)
    f1 = lget(s, 0, HUGE_ORDER)
    f2 = lget(s, 0, HUGE_ORDER)
    assert f1 % CHILD_SIZE == 0 and f2 % CHILD_SIZE == 0 and f1 != f2
    assert CHILD_SIZE * 60 - lstats(s)[0] == 2 * CHILD_SIZE
    regular = lget(s, 0, 0)
    assert regular >= 0
    assert lput(s, regular, HUGE_ORDER) != 0  # a regular frame cannot be returned as huge
    f3 = lget(s, 10 * 64, HUGE_ORDER)  # frame_from_row(10)
    assert f3 == 3 * CHILD_SIZE
    assert lput(s, regular, 0) == 0
    assert lget(s, 0, HUGE_ORDER) == regular  # the child is entirely free again
    assert lput(s, f2, HUGE_ORDER) == 0
    for i in range(3, 60):
        assert lget(s, (i // TREE_CHILDREN) * TREE_SIZE, HUGE_ORDER) >= 0
    assert lstats(s)[0] == 0
    assert lget(s, 0, HUGE_ORDER) == K.R_MEMORY
    assert lput(s, f2, 0) == 0  # a huge frame returned as a regular frame
    assert lput(s, f2, HUGE_ORDER) == K.R_ARGUMENT  # ...is no huge frame any more
    assert lput(s, f1, HUGE_ORDER) == 0
    assert lstats(s)[0] == CHILD_SIZE + 1
    assert lget(s, 0, HUGE_ORDER) == f1


def test_lower_max():
    """tests/lower.c:lower_max: whole trees (order TREE_ORDER)."""
    s = lower_new(TREE_SIZE * 8)
    for i in range(8):
        assert lget(s, i * TREE_SIZE, TREE_ORDER) >= 0
    assert lstats(s)[0] == 0
    for i in range(8):
        assert lput(s, i * TREE_SIZE, TREE_ORDER) == 0
    assert lstats(s)[0] == TREE_SIZE * 8


def test_lower_free_all():
    """tests/lower.c:lower_free_all: from LLFREE_INIT_ALLOC, free huge frames, then the last
    huge frame and the 35 frames past it one by one."""
    n = (1 << 13) + 35
    s = lower_new(n, Init.ALLOC)
    assert lstats(s)[0] == 0
    for i in range(15):
        assert lput(s, i * 512, HUGE_ORDER) == 0
    assert lstats(s)[0] == n - (512 + 35)
    for i in range(512 + 35):
        assert lput(s, 15 * 512 + i, 0) == 0
    assert lstats(s)[0] == n


def test_lower_rs_alloc_free_normal():
    """core/src/lower.rs::alloc_normal, alloc_first, alloc_last, free_normal, free_last,
    realloc_last (their two threads run one after the other)."""
    s = lower_new(TREE_SIZE)
    for _ in range(3):
        lget(s, 0, 0)
    assert child(s, 0)[0] == 509 and 512 - K.field_count_ones(s, 0) == 509
    s = lower_new(TREE_SIZE)
    for _ in range(511):
        lget(s, 0, 0)
    lget(s, 0, 0)
    lget(s, 0, 0)
    assert child(s, 0)[0] == 0 and child(s, 1)[0] == 511 and 512 - K.field_count_ones(s, 1) == 511
    s = lower_new(TREE_SIZE)
    frames = [lget(s, 0, 0) for _ in range(512)]
    assert lput(s, frames[0], 0) == 0 and lput(s, frames[1], 0) == 0
    assert child(s, 0)[0] == 2 and 512 - K.field_count_ones(s, 0) == 2
    s = lower_new(TREE_SIZE)
    frames = [lget(s, 0, 0) for _ in range(511)]
    lget(s, 0, 0)
    assert lput(s, frames[0], 0) == 0
    assert child(s, 0)[0] == 1 and 512 - K.field_count_ones(s, 0) == 1


def test_lower_rs_normal_large():
    """core/src/lower.rs::alloc_normal_large and free_normal_large."""
    s = lower_new(TREE_SIZE)
    lget(s, 0, 0)
    assert lget(s, 0, 1) >= 0 and lget(s, 0, 2) >= 0
    assert child(s, 0)[0] == 512 - 7 and 512 - K.field_count_ones(s, 0) == 512 - 7
    s = lower_new(TREE_SIZE)
    f1, f2 = lget(s, 0, 1), lget(s, 0, 2)
    assert child(s, 0)[0] == 512 - 6
    assert lput(s, f1, 1) == 0 and lput(s, f2, 2) == 0
    assert child(s, 0)[0] == 512


def test_lower_rs_different_orders():
    """core/src/lower.rs::different_orders: a WyRand(42)-shuffled mix of orders 0..10."""
    max_order = HUGE_ORDER + 1
    nframes = (max_order + 2) << max_order
    s = lower_new(nframes)
    allocs = [o for o in range(max_order + 1) for _ in range(1 << (max_order - o))]
    WyRand(42).shuffle(allocs)
    ntrees = -(-nframes // TREE_SIZE)
    tree_idx = 0
    got = []
    for order in allocs:
        for i in range(ntrees):
            t = (i + tree_idx) % ntrees
            f = lget(s, t * TREE_SIZE, order)
            if f >= 0:
                got.append((f, order))
                tree_idx = f // TREE_SIZE
                break
            assert f == K.R_MEMORY
        else:
            pytest.fail("fragmented")
    assert nframes - lstats(s)[0] == sum(1 << o for o in allocs)
    for f, o in got:
        assert lput(s, f, o) == 0
    assert lstats(s)[0] == nframes


def test_lower_rs_init_reserved_max_order_and_partial_put_huge():
    """core/src/lower.rs::init_reserved_max_order and partial_put_huge."""
    s = lower_new(24 * TREE_SIZE, Init.ALLOC)
    assert lstats(s)[0] == 0
    for i in range(24):
        assert lput(s, i * TREE_SIZE, TREE_ORDER) == 0
    assert lstats(s)[0] == 24 * TREE_SIZE
    s = lower_new(TREE_SIZE - 1, Init.ALLOC)
    assert lput(s, 0, 0) == 0
    assert lstats(s)[0] == 1


def test_lower_rs_alloc_large_orders():
    """core/src/lower.rs::alloc_large_orders: orders 9, 10, 11 (TREE_ORDER skipped)."""
    nframes = 4 * TREE_SIZE
    s = lower_new(nframes)
    tree_id, allocated, allocs = 0, 0, []
    for order in (HUGE_ORDER, HUGE_ORDER + 1, HUGE_ORDER + 2, TREE_ORDER):
        if order >= TREE_ORDER:
            continue
        f = lget(s, tree_id * TREE_SIZE, order)
        if f == K.R_MEMORY:
            tree_id += 1
            f = lget(s, tree_id * TREE_SIZE, order)
        assert f >= 0 and f % (1 << order) == 0
        allocs.append((f, order))
        allocated += 1 << order
        assert lstats(s)[0] == nframes - allocated
    for f, order in allocs:
        assert lput(s, f, order) == 0
        allocated -= 1 << order
        assert lstats(s)[0] == nframes - allocated
    assert lstats(s)[:2] == (nframes, nframes // CHILD_SIZE)


def test_lower_rs_alloc_stress_huge():
    """core/src/lower.rs::alloc_stress_huge, one thread, a fixed WyRand seed."""
    s = lower_new(TREE_SIZE)
    rng = WyRand(7)
    frames: list[int] = []
    for _ in range(50):
        target = rng.range(0, 2 * TREE_SIZE // 4)
        while len(frames) != target:
            if target < len(frames):
                assert lput(s, frames.pop(), 0) == 0
            else:
                f = lget(s, 0, 0)
                if f == K.R_MEMORY:
                    break
                frames.append(f)
        rng.shuffle(frames)
    for f in frames:
        assert lput(s, f, 0) == 0
    assert lstats(s)[:2] == (TREE_SIZE, TREE_CHILDREN)


def test_lower_huge_n_failure_changes_nothing():
    """llfree-c's try_update_huge_n undoes ``base + (j - k)`` instead of the children it
    changed (970bb3d), so a failed order-10 attempt next to a taken child leaks a huge
    child; modelled as intended (llfree-rs compare_exchange_all): nothing changes."""
    s = lower_new(TREE_SIZE)
    assert lget(s, 0, HUGE_ORDER, frame=512) == 512  # child 1 taken
    before = K.region(s, "children").copy()
    assert lget(s, 0, HUGE_ORDER + 1, frame=0) == K.R_MEMORY
    assert np.array_equal(K.region(s, "children"), before)
    assert lget(s, 0, HUGE_ORDER + 1) == 1024  # the next aligned pair


# =============================================================================================
# upper (tests/llfree.c, tests/movable.c, tests/local.c, tests/change_tree.c)
# =============================================================================================
def test_llfree_init():
    """tests/llfree.c:llfree_init."""
    a = movable(4, 1 << 20)
    assert a.frames == 1 << 20 and a.tree_stats().free_frames == 1 << 20
    a.validate()


def test_llfree_init_alloc():
    """tests/llfree.c:llfree_init_alloc: free everything of an all-allocated allocator as
    huge frames and base frames, then allocate again."""
    n = (1 << 30) // 4096
    a = movable(4, n, Init.ALLOC)
    assert a.tree_stats().free_frames == 0
    for hp in range((n >> HUGE_ORDER) - 1):
        a.put(hp << HUGE_ORDER, **llreq(0, HUGE_ORDER))
    for page in range(n - (1 << HUGE_ORDER), n):
        a.put(page, **llreq(0, 0))
    assert a.tree_stats().free_frames == n
    a.validate()
    assert a.get(**llreq(0, 0, True)) is not None
    assert a.get(**llreq(0, 0)) is not None
    assert a.get(**llreq(0, 0, True)) is not None
    a.validate()


def test_llfree_alloc_s():
    """tests/llfree.c:llfree_alloc_s: tree counters agree with the children."""
    a = movable(4, (1 << 30) // 4096)
    for _ in range(128):
        assert a.get(**llreq(0, 0)) is not None
        assert a.get(**llreq(0, HUGE_ORDER)) is not None
    used = 128 + (128 << HUGE_ORDER)
    assert a.frames - a.tree_stats().free_frames == used
    assert a.frames - a.stats().free_frames == used
    t = a.trees()
    for i in range(a.ntrees):
        if not t["reserved"][i]:
            assert t["free"][i] == a.stats_at(i * TREE_SIZE, TREE_ORDER).free_frames
    a.validate()


def test_llfree_general_function():
    """tests/llfree.c:llfree_general_function."""
    n = 16 * TREE_SIZE
    a = movable(2, n)
    a.validate()
    assert a.ntrees == 16 and a.frames == n and a.tree_stats().free_frames == n
    f = a.get(**llreq(0, 0))
    a.validate()
    assert f is not None and a.tree_stats().free_frames == n - 1
    f2 = a.get(**llreq(0, 0))
    assert f2 is not None and f2 != f and a.tree_stats().free_frames == n - 2
    a.put(f, **llreq(0, 0))
    a.validate()
    a.put(f2, **llreq(0, 0))
    a.validate()
    assert a.tree_stats().free_frames == n
    for _ in range(TREE_SIZE):  # the whole first tree
        assert a.get(**llreq(0, 0)) is not None
    a.validate()
    g = a.get(**llreq(0, 0))
    assert g // TREE_SIZE != f // TREE_SIZE  # "second tree must be allocated"
    free = a.tree_stats().free_frames
    h = a.get(**llreq(0, HUGE_ORDER))
    assert h is not None and a.tree_stats().free_frames == free - CHILD_SIZE
    a.put(h, **llreq(0, HUGE_ORDER))
    assert a.tree_stats().free_frames == free
    a.validate()


def test_llfree_put():
    """tests/llfree.c:llfree_put: frees of another core go to the tree's global counter."""
    a = movable(2, TREE_SIZE * 12)
    reserved = [a.get(**llreq(0, 0)) for _ in range(TREE_SIZE + 5)]
    assert None not in reserved
    assert reserved[0] // TREE_SIZE == reserved[TREE_SIZE - 1] // TREE_SIZE
    assert reserved[0] // TREE_SIZE != reserved[TREE_SIZE] // TREE_SIZE
    f = a.get(**llreq(1, 0))
    assert f // TREE_SIZE != reserved[TREE_SIZE] // TREE_SIZE  # "second get must be in different tree"
    a.validate()
    for i in range(TREE_SIZE // 2):
        a.put(reserved[i], **llreq(1, 0))
    a.validate()
    assert a.trees()["free"][reserved[0] // TREE_SIZE] == TREE_SIZE // 2


@pytest.mark.parametrize("kinds", [False, True])
def test_llfree_alloc_all(kinds):
    """tests/llfree.c:llfree_alloc_all_fixed (2 cores) and llfree_alloc_all_kinds (1 core,
    every third request movable): every frame can be allocated, then none."""
    n = 16 * TREE_SIZE
    cores = 1 if kinds else 2
    a = movable(cores, n)
    for i in range(n):
        assert a.get(**llreq(i % cores, 0, kinds and i % 3 == 0)) is not None, i
    assert a.get(**llreq(0, 0)) is None
    assert a.tree_stats().free_frames == 0 == a.stats().free_frames
    a.validate()


def test_llfree_parallel_alloc():
    """tests/llfree.c:llfree_parallel_alloc, its 4 threads interleaved round robin: each
    core frees a random one of its frames 3 times in 8 (always when it holds TREE_SIZE +
    500) and allocates otherwise, 40000 allocations each; no frame is handed out twice."""
    cores, n = 4, 16 << 14
    a = movable(cores, n)
    rng = np.random.default_rng(9)
    ops, locs = [], []
    held: list[list[int]] = [[] for _ in range(cores)]
    todo = [40000] * cores
    while any(todo):
        for c in range(cores):
            if not todo[c]:
                continue
            if len(held[c]) == TREE_SIZE + 500 or (held[c] and rng.integers(8) > 4):
                k = int(rng.integers(len(held[c])))
                held[c][k], held[c][-1] = held[c][-1], held[c][k]
                ops.append(-(held[c].pop() + 1))
            else:
                held[c].append(len(ops))
                ops.append(0)
                todo[c] -= 1
            locs.append(c)
    out = a.run(np.array(ops), classes=0, locals=np.array(locs))
    assert (out >= 0).all()
    live = np.array([out[i] for h in held for i in h])
    assert distinct(live, len(live))
    assert a.frames - a.tree_stats().free_frames == len(live)
    assert a.tree_stats().free_frames == a.stats().free_frames
    a.validate()


def test_llfree_get_huge():
    """tests/llfree.c:llfree_get_huge: one tree, one core (no reservations: as many slots
    as trees), two huge frames."""
    a = movable(1, TREE_SIZE)
    assert a.get(**llreq(0, HUGE_ORDER)) is not None
    assert a.get(**llreq(0, HUGE_ORDER)) is not None
    a.validate()


def test_llfree_less_mem():
    """tests/llfree.c:llfree_less_mem (4 cores share 4 trees, interleaved round robin; a
    get may be retried once, as there) and eval/tests/integration.rs::less_mem (4 cores,
    one tree: global allocation)."""
    for ntrees in (4, 1):
        n = ntrees * TREE_SIZE
        a = movable(4, n)
        per_core = n // 4 - (4 if ntrees == 1 else 0)
        got = []
        for i in range(per_core * 4):
            f = a.get(**llreq(i % 4, 0))
            if f is None:
                f = a.get(**llreq(i % 4, 0))
            assert f is not None
            got.append((f, i % 4))
        assert len({f for f, _ in got}) == len(got)
        a.validate()
        for f, c in got:
            a.put(f, **llreq(c, 0))
        assert a.tree_stats().free_frames == n
        a.validate()


def test_llfree_alloc_at():
    """tests/llfree.c:llfree_alloc_at: specific frames, then steal and demote."""
    a = movable(4, 1 << 20)
    assert a.get(frame=0, **llreq(0, 0)) == 0
    a.put(0, **llreq(0, 0))
    assert a.get(frame=1, **llreq(0, 0)) == 1
    assert a.get(frame=1, **llreq(0, 0)) is None
    a.put(1, **llreq(0, 0))
    a.validate()
    r = a.get(**llreq(0, 0, True))
    assert r is not None
    assert a.get(frame=r + 1, **llreq(0, 0, True)) == r + 1
    assert a.get(frame=r + 2, **llreq(0, 0)) == r + 2  # "steal + demote"
    a.validate()
    for f in (r, r + 1, r + 2):
        a.put(f, **llreq(0, 0))
    a.validate()


def test_alloc_movable():
    """tests/movable.c:alloc_movable."""
    n = (1 << 30) // 4096
    a = movable(4, n)
    m = a.get(**llreq(0, 0, True))
    norm = a.get(**llreq(0, 0))
    assert m is not None and norm is not None
    ln = 4 * TREE_SIZE
    frames = [a.get(**llreq(0, 0, bool(i % 2))) for i in range(ln)]
    assert None not in frames
    assert a.tree_stats().free_frames == n - ln - 2
    a.put(m, **llreq(0, 0))
    a.put(norm, **llreq(0, 0))
    for f in frames:
        a.put(f, **llreq(0, 0))
    assert a.tree_stats().free_frames == n
    a.validate()


def test_local_last_free_inc():
    """tests/local.c:local_last_free_inc (compiled only with LLFREE_ENABLE_FREE_RESERVE).
    Its last check is one call early: after a reset to tree 1 it takes LAST_FREES + 1
    further frees to reach the threshold, as in its first half; ported with that count."""
    s = LLFree(TREE_SIZE, Classing.simple(1)).w
    for _ in range(K.LAST_FREES):
        assert not K.ll_local_free_inc(s, 0, 0, 0)
    assert K.ll_local_free_inc(s, 0, 0, 0)
    assert K.ll_local_free_inc(s, 0, 0, 0)
    assert not K.ll_local_free_inc(s, 0, 0, 1)
    assert not K.ll_local_free_inc(s, 0, 0, 0)
    for _ in range(K.LAST_FREES + 1):
        assert not K.ll_local_free_inc(s, 0, 0, 1)
    assert K.ll_local_free_inc(s, 0, 0, 1)


def test_free_reserve_heuristic():
    """74e0532^ llfree_put with LLFREE_ENABLE_FREE_RESERVE: after LAST_FREES + 1 frees into
    one unreserved tree of its class (with more than TREE_SIZE / 16 free), the freeing core
    reserves that tree."""
    a = LLFree(8 * TREE_SIZE, Classing.simple(2), free_reserve=True)
    frames = [a.get(0, 0, 0) for _ in range(TREE_SIZE)]  # core 0 fills its tree
    t0 = frames[0] // TREE_SIZE
    assert all(f // TREE_SIZE == t0 for f in frames)
    a.drain()  # core 0's tree is now unreserved (class 0, full)
    for f in frames[:TREE_SIZE // 16 + K.LAST_FREES + 2]:
        a.put(f, 0, 0, 1)  # core 1 frees into it
    assert a.counters()["free_reserve"] == 1
    assert [(r.cls, r.local, r.tree) for r in a.reservations()] == [(0, 1, t0)]
    a.validate()


def test_change_tree():
    """tests/change_tree.c:change_tree_promotion_demotion, change_tree_offline,
    change_tree_offline_online."""
    a = movable(2, 4 * TREE_SIZE)
    t = a.trees()
    assert not t["reserved"][0] and t["cls"][0] == 2 and t["free"][0] == TREE_SIZE
    assert a.change_tree(0, 2, TREE_SIZE, cls=0)
    assert a.trees()["cls"][0] == 0
    assert a.change_tree(0, 0, TREE_SIZE, cls=2)
    assert a.trees()["cls"][0] == 2 and a.trees()["free"][0] == TREE_SIZE
    a.validate()
    before = a.tree_stats().free_frames
    assert a.change_tree(0, None, TREE_SIZE, operation="offline")
    assert a.trees()["free"][0] == 0 and a.tree_stats().free_frames == before - TREE_SIZE
    with pytest.raises(InvariantViolation):
        a.validate()  # as in the reference: the offline tree's counter disagrees with its children
    assert a.get(frame=0, **llreq(0, 0)) is None  # offline tree rejects direct allocation
    assert a.get(frame=TREE_SIZE, **llreq(0, 0)) == TREE_SIZE
    assert a.change_tree(0, None, 0, operation="online")
    assert a.trees()["free"][0] == TREE_SIZE
    a.put(TREE_SIZE, **llreq(0, 0))
    a.validate()


# --- llfree-rs integration tests ---------------------------------------------------------------
def simple(cores: int, frames: int, init: Init = Init.FREE) -> LLFree:
    """``Allocator::create`` of eval/tests/integration.rs: Classing::simple(cores)."""
    return LLFree(frames, Classing.simple(cores), init)


def test_rs_minimal():
    """core/src/lib.rs::minimal and eval/tests/integration.rs::minimal."""
    a = simple(1, (1 << 30) // 4096)
    assert a.tree_stats().free_frames == a.frames
    f1, f2 = a.get(0, 0, 0), a.get(0, 0, 0)
    assert a.stats().free_frames == a.frames - 2
    a.validate()
    a.put(f2, 0, 0, 0)
    a.put(f1, 0, 0, 0)
    a.validate()


def test_rs_simple():
    """eval/tests/integration.rs::simple: one small frame, then everything until out of
    memory; free the HUGE_FRAMES - 10 lowest frames and allocate them again; free all.  As
    batch streams (the allocator is deterministic: a fresh one replays the first stage),
    over 2 GiB instead of 8 to keep CI short."""
    n = (2 << 30) // 4096
    a = simple(1, n)
    out = a.run(np.zeros(n + 1, np.int64))
    assert out[n] == -1 and (out[:n] >= 0).all() and distinct(out[:n], n)
    a.validate()
    k = CHILD_SIZE - 10
    lowest = np.argsort(out[:n])[:k]
    ops = np.concatenate([np.zeros(n + 1, np.int64), -(lowest + 1), np.zeros(k, np.int64)])
    live = np.concatenate([np.setdiff1d(np.arange(n), lowest), np.arange(n + 1 + k, n + 1 + 2 * k)])
    b = simple(1, n)
    outb = b.run(ops)
    assert np.array_equal(outb[:n + 1], out)
    assert b.frames - b.tree_stats().free_frames == n
    assert distinct(outb[live], n)
    b.validate()
    c = simple(1, n)
    c.run(np.concatenate([ops, -(live + 1)]))
    assert c.tree_stats().free_frames == n
    c.validate()


def test_rs_alloc_at():
    """eval/tests/integration.rs::alloc_at."""
    a = simple(1, (1 << 30) // 4096)
    assert a.get(0, 0, 0, frame=1) == 1
    assert a.get(0, 0, 0, frame=2) == 2
    assert a.get(HUGE_ORDER, 1, 0, frame=CHILD_SIZE) == CHILD_SIZE
    f = a.get(0, 0, 0)
    assert f not in (1, 2, CHILD_SIZE)
    assert a.frames - a.tree_stats().free_frames == 3 + CHILD_SIZE
    a.validate()
    a.put(CHILD_SIZE, HUGE_ORDER, 1, 0)
    for g in (2, 1, f):
        a.put(g, 0, 0, 0)
    assert a.tree_stats().free_frames == a.frames
    a.validate()


def test_rs_rand():
    """eval/tests/integration.rs::rand: half of the frames, then as many random put/get
    pairs (WyRand 100 picks the victims), then free all; 1 GiB instead of 4 (CI time)."""
    n = (1 << 30) // 4096
    half = n // 2
    rng = WyRand(100)
    live = list(range(half))  # slot -> the op whose frame the slot holds
    rng.shuffle(live)
    ops = [0] * half
    for _ in range(half):
        i = rng.range(0, half)
        ops.append(-(live[i] + 1))
        live[i] = len(ops)
        ops.append(0)
    a = simple(1, n)
    out = a.run(np.array(ops))
    assert (out >= 0).all()
    assert distinct(out[live], half) and a.frames - a.tree_stats().free_frames == half
    a.validate()
    b = simple(1, n)
    b.run(np.array(ops + [-(i + 1) for i in live]))
    assert b.tree_stats().free_frames == n
    b.validate()


def test_rs_alloc_all_and_tree_all():
    """eval/tests/integration.rs::alloc_all (2 * 512 * 512 frames, order 0) and
    alloc_tree_all (1024 trees, order TREE_ORDER)."""
    n = 2 * CHILD_SIZE * CHILD_SIZE
    a = simple(1, n)
    out = a.run(np.zeros(n + 1, np.int64))
    assert out[-1] == -1 and distinct(out[:-1], n)
    assert a.tree_stats().free_frames == 0 and a.stats().free_huge == 0
    a.validate()
    a = simple(1, 1024 * TREE_SIZE)
    out = a.run(np.full(1025, TREE_ORDER))
    assert out[-1] == -1 and distinct(out[:-1], 1024)
    assert (out[:-1] % TREE_SIZE == 0).all() and a.tree_stats().free_frames == 0
    a.validate()


def test_rs_init_reserved():
    """eval/tests/integration.rs::init_reserved (two cores one after the other)."""
    n = 8 << 18
    a = simple(2, n, Init.ALLOC)
    assert a.frames - a.tree_stats().free_frames == n
    for f in range(0, n, CHILD_SIZE):
        a.put(f, HUGE_ORDER, 1, 0)
    assert a.tree_stats().free_frames == n
    for core in (0, 1):
        out = a.run(np.full(n // 2 // CHILD_SIZE, HUGE_ORDER), locals=core)
        assert (out >= 0).all()
    assert a.tree_stats().free_frames == 0
    a.validate()


def test_rs_fragmentation_retry():
    """eval/tests/integration.rs::fragmentation_retry: a tree with every second frame free,
    then a huge frame."""
    a = simple(1, TREE_SIZE * 2)
    frames = [a.get(0, 0, 0) for _ in range(TREE_SIZE)]
    for f in frames[::2]:
        a.put(f, 0, 0, 0)
    assert a.get(HUGE_ORDER, 0, 0) is not None
    a.validate()


def test_rs_demote_local():
    """eval/tests/integration.rs::demote_local: global class-0 requests use up every tree,
    the last frames come from demoting the class-1 reservation."""
    n = TREE_SIZE * 2
    a = simple(1, n)
    assert a.get(HUGE_ORDER, 1, 0) is not None
    for _ in range(n - CHILD_SIZE):
        assert a.get(0, 0, None) is not None, a
    assert a.counters()["demote_local"] >= 1
    assert a.tree_stats().free_frames == 0
    a.validate()


def test_rs_drain():
    """eval/tests/integration.rs::drain: core 0 takes everything but core 1's tree, the next
    get steals from core 1's reservation."""
    n = TREE_SIZE * 8
    a = simple(2, n)
    a.drain()
    assert a.get(0, 0, 1) is not None
    for _ in range(n - TREE_SIZE):
        assert a.get(0, 0, 0) is not None
    assert a.get(0, 0, 0) is not None
    assert a.counters()["steal_local"] == 1
    a.validate()
    a.drain()
    assert a.reservations() == []
    a.validate()


def test_rs_movable_classes():
    """eval/tests/integration.rs::movable_classes."""
    n = 16 * TREE_SIZE
    a = movable(1, n)
    for i in range(n):
        assert a.get(**llreq(0, 0, i % 3 == 0)) is not None
    assert a.get(**llreq(0, 0)) is None
    assert a.frames - a.tree_stats().free_frames == n
    a.validate()


def test_rs_parallel_free_and_alloc_free():
    """eval/tests/integration.rs::parallel_free (4 cores allocate, interleaved, then free
    their frames in a seeded random order, interleaved) and alloc_free (core 0 allocates;
    then core 1 frees those frames while core 0 allocates as many again, alternating)."""
    cores, per = 4, CHILD_SIZE * (CHILD_SIZE - 8)
    a = simple(cores, 2 * cores * CHILD_SIZE * CHILD_SIZE)
    rng = np.random.default_rng(4)
    gets = np.zeros(per * cores, np.int64)
    frees = np.stack([-(rng.permutation(per) * cores + t + 1) for t in range(cores)], axis=1).reshape(-1)
    locs = np.tile(np.arange(cores), 2 * per)
    out = a.run(np.concatenate([gets, frees]), locals=locs)
    assert (out >= 0).all()
    assert a.tree_stats().free_frames == a.frames
    a.validate()
    n = 4 * CHILD_SIZE * CHILD_SIZE
    per = CHILD_SIZE * (CHILD_SIZE - 10) // 2
    a = simple(2, n)
    ops = np.concatenate([np.zeros(per, np.int64), np.stack([-(np.arange(per) + 1), np.zeros(per, np.int64)],
                                                             axis=1).reshape(-1)])
    locs = np.concatenate([np.zeros(per, np.int64), np.tile([1, 0], per)])
    out = a.run(ops, locals=locs)
    assert (out >= 0).all()
    assert a.frames - a.tree_stats().free_frames == per
    a.validate()


def zeroed_policy(requested, target, free):
    """eval/tests/integration.rs::zeroed_steals_from_huge's policy (small 0, huge 1, zeroed 2)."""
    if requested > target:
        return PolicyType.STEAL, 0
    if requested < target:
        return PolicyType.DEMOTE, 0
    if free >= TREE_SIZE // 2:
        return PolicyType.MATCH, 1
    if free >= TREE_SIZE // 64:
        return PolicyType.MATCH, 255
    return PolicyType.MATCH, 0


def test_rs_zeroed_steals_from_huge():
    """eval/tests/integration.rs::zeroed_steals_from_huge: a tree changed to the zeroed
    class serves zeroed huge requests until it is exhausted, then they steal from huge."""
    a = LLFree(12 * TREE_SIZE, Classing([(0, 1), (1, 1), (2, 1)], 1, zeroed_policy))
    a.validate()
    assert a.change_tree(None, 1, TREE_SIZE, operation="offline")
    assert a.change_tree(None, 1, 0, cls=2, operation="online")
    a.validate()
    assert a.tree_stats().classes[2].free_frames == TREE_SIZE
    for _ in range(TREE_SIZE // CHILD_SIZE):
        assert a.get_classed(HUGE_ORDER, 2, 0)[1] == 2
    f, cls = a.get_classed(HUGE_ORDER, 2, 0)
    assert cls == 1  # "steal from huge should return class 1"
    a.put(f, HUGE_ORDER, 2, 0)
    a.validate()


def test_put_errors_leave_state_unchanged():
    """Double puts and visibly wrong orders are refused before anything changes."""
    a = movable(2, 4 * TREE_SIZE)
    assert a.get(**llreq(0, 1), frame=0) == 0
    h = 2 * CHILD_SIZE
    assert a.get(**llreq(0, HUGE_ORDER), frame=h) == h
    snap = a.w.copy()
    with pytest.raises(LLFreeOrderMismatch, match="2 of the 4 frames are free"):
        a.put(0, **llreq(0, 2))
    with pytest.raises(LLFreeOrderMismatch, match="not a huge"):
        a.put(0, **llreq(0, HUGE_ORDER))
    with pytest.raises(LLFreeOrderMismatch, match="child 3"):
        a.put(h, **llreq(0, HUGE_ORDER + 1))
    with pytest.raises(LLFreeDoubleFree):
        a.put(2, **llreq(0, 0))
    with pytest.raises(LLFreeDoubleFree):
        a.put(4 * CHILD_SIZE, **llreq(0, HUGE_ORDER))
    assert np.array_equal(snap, a.w)
    a.validate()
