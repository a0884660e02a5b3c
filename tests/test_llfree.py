"""memdesc.lib.llfree: the facade, bad input, the batch API, and llfree-c's own results.

``test_matches_llfree_c_golden`` replays request streams whose results were produced by
llfree-c HEAD 970bb3d itself (``benchmarks/llfree_vs_c.py --write-golden``): every frame,
class and error must be identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memdesc.errors import ConfigError, DoubleFree, InvalidOrder, InvalidPfn, InvariantViolation, OrderMismatch
from memdesc.lib import _llfree_kernels as K
from memdesc.lib.llfree import (
    CHILD_SIZE,
    HUGE_ORDER,
    TREE_SIZE,
    Classing,
    Init,
    LLFree,
    LLFreeBadFrame,
    LLFreeBadOrder,
    LLFreeConfigError,
    LLFreeDoubleFree,
    LLFreeInvalidRequest,
    LLFreeOrderMismatch,
    MetaSize,
    PolicyType,
    Stats,
)

GOLDEN = Path(__file__).resolve().parent / "data" / "llfree_golden.npz"


def replay(frames: int, cores: int, classing: int, ops: np.ndarray) -> np.ndarray:
    """The stream format of benchmarks/llfree_c/llc_replay.c through the model's kernels."""
    a = LLFree(frames, Classing.movable(cores) if classing else Classing.simple(cores))
    n = len(ops)
    out = np.zeros(2 * n + 4, np.int64)
    for i in range(n):
        kind, x, y, z, d = (int(v) for v in ops[i])
        if kind == 0:
            r = int(K.k_get(a.w, d, x, y, z))
            out[2 * i], out[2 * i + 1] = (r >> 3, r & 7) if r >= 0 else (r, 0)
        elif kind in (1, 3) and out[2 * x] >= 0:
            if kind == 1:
                out[2 * i] = int(K.k_put(a.w, int(out[2 * x]), int(ops[x, 1]), y, z))
            else:
                out[2 * i] = int(K.k_put(a.w, int(out[2 * x]) + d, y, z >> 8, (z & 0xFF) - 1))
        elif kind == 2:
            a.drain()
    s = a.stats()
    out[2 * n:] = (s.free_frames, s.free_huge, s.free_trees, a.tree_stats().free_frames)
    a.validate()
    return out


def test_matches_llfree_c_golden():
    g = np.load(GOLDEN)
    names = sorted({k.split("/")[0] for k in g.files})
    assert len(names) == 4
    for name in names:
        frames, cores, classing = (int(x) for x in g[f"{name}/config"])
        ops = g[f"{name}/ops"].astype(np.int64)
        expected = g[f"{name}/out"].astype(np.int64)
        got = replay(frames, cores, classing, ops)
        diff = np.flatnonzero(got != expected)
        assert len(diff) == 0, f"{name}: first difference at op {diff[0] // 2}: {ops[diff[0] // 2].tolist()}"
        # the streams exercise every path: refusals, fallbacks, huge frames, splits
        served = (expected[0:2 * len(ops):2] >= 0) & (ops[:, 0] == 0)
        assert served.sum() > 1000 and ((expected[0:2 * len(ops):2] < 0) & (ops[:, 0] == 0)).any()


# --- metadata ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("frames", "movable", "expected"), [
    # llfree_metadata_size() of llfree-c 970bb3d (simple(1) / movable(4) classing)
    (4194304, False, (128, 384, 4096, 589824)),
    (4194304, True, (128, 1024, 4096, 589824)),
    (98004, False, (128, 384, 128, 13824)),
    (1000000, True, (128, 1024, 1024, 140736)),
])
def test_metadata_size_is_llfree_c(frames, movable, expected):
    c = Classing.movable(4) if movable else Classing.simple(1)
    m = LLFree.metadata_size(c, frames)
    assert m == MetaSize(*expected)
    assert LLFree(frames, c).metadata == m
    assert m.total == sum(expected)


def test_sixteen_gib_metadata_is_a_fraction_of_a_struct_page_array():
    """0.14 bytes per 4 KiB frame against 64 for Linux's struct page."""
    m = LLFree.metadata_size(Classing.movable(8), (16 << 30) // 4096)
    assert m.total / ((16 << 30) // 4096) < 0.15


# --- requests ---------------------------------------------------------------------------------
def test_get_put_and_classes():
    a = LLFree(8 * TREE_SIZE, Classing.movable(2))
    f, cls = a.get_classed(0, 1, 0)
    assert cls == 1 and not a.is_free(f)
    h = a.get(HUGE_ORDER)  # default class for order 9: huge (2)
    assert h % CHILD_SIZE == 0 and not a.is_free(h, HUGE_ORDER)
    assert a.stats_at(h, HUGE_ORDER) == Stats(0, 0, 0)
    assert a.tree_stats().free_frames == a.frames - 1 - CHILD_SIZE == a.stats().free_frames
    a.put(f, 0, 1, 0)
    a.put(h, HUGE_ORDER)
    assert a.is_free(f) and a.is_free(h, HUGE_ORDER)
    a.validate()
    assert a.counters()["get"] == 2 and a.counters()["put"] == 2


def test_out_of_memory_returns_none():
    a = LLFree(CHILD_SIZE, Classing.simple(1))
    assert len({a.get(0) for _ in range(CHILD_SIZE)}) == CHILD_SIZE
    assert a.get(0) is None
    assert a.get(HUGE_ORDER) is None
    assert a.counters()["get_fail"] == 2
    a.validate()


def test_alloc_at_and_partial_put_of_a_huge_frame():
    a = LLFree(2 * TREE_SIZE, Classing.simple(1))
    assert a.get(HUGE_ORDER, frame=CHILD_SIZE) == CHILD_SIZE
    assert a.get(0, frame=CHILD_SIZE + 3) is None  # inside the huge frame
    a.put(CHILD_SIZE + 3, 0)  # a partial put splits it (llfree's split_huge)
    assert a.counters()["split_huge"] == 1
    assert a.is_free(CHILD_SIZE + 3) and not a.is_free(CHILD_SIZE + 4)
    with pytest.raises(LLFreeOrderMismatch, match="not a huge allocation"):
        a.put(CHILD_SIZE, HUGE_ORDER)
    a.validate()


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda a: a.get(13), LLFreeBadOrder, "outside 0..12"),
    (lambda a: a.get(-1), LLFreeBadOrder, "outside"),
    (lambda a: a.get(0, 5), LLFreeInvalidRequest, "class 5 is not configured"),
    (lambda a: a.get(0, 0, 2), LLFreeInvalidRequest, "local slot 2 out of range"),
    (lambda a: a.get(0, 0, -2), LLFreeInvalidRequest, "local slot -2"),
    (lambda a: a.get(1, frame=3), LLFreeBadFrame, "not aligned to order 1"),
    (lambda a: a.get(0, frame=1 << 20), LLFreeBadFrame, "outside the allocator"),
    (lambda a: a.put(-1), LLFreeBadFrame, "outside"),
    (lambda a: a.put(4 * TREE_SIZE), LLFreeBadFrame, "outside"),
    (lambda a: a.put(4 * TREE_SIZE - 2, 2), LLFreeBadFrame, "outside"),
    (lambda a: a.put(6, 2), LLFreeBadFrame, "not aligned"),
    (lambda a: a.put(0, 0, 9), LLFreeInvalidRequest, "class 9"),
    (lambda a: a.put("x"), LLFreeInvalidRequest, "must be an integer"),
    (lambda a: a.get(1.0), LLFreeInvalidRequest, "must be an integer"),
    (lambda a: a.is_free(4 * TREE_SIZE), LLFreeBadFrame, "outside"),
    (lambda a: a.stats_at(0, 3), LLFreeBadOrder, "stats_at takes order"),
    (lambda a: a.change_tree(99), LLFreeInvalidRequest, "tree 99 out of range"),
    (lambda a: a.change_tree(0, operation="shred"), LLFreeInvalidRequest, "operation"),
])
def test_bad_requests_raise_clear_errors(call, exc, match):
    a = LLFree(4 * TREE_SIZE, Classing.simple(2))
    before = a.w.copy()
    with pytest.raises(exc, match=match):
        call(a)
    assert np.array_equal(before, a.w)


def test_errors_are_memdesc_errors():
    assert issubclass(LLFreeBadFrame, InvalidPfn) and issubclass(LLFreeBadOrder, InvalidOrder)
    assert issubclass(LLFreeDoubleFree, DoubleFree) and issubclass(LLFreeOrderMismatch, OrderMismatch)
    assert issubclass(LLFreeConfigError, ConfigError)


def test_double_free_and_wrong_order():
    """What LLFree can see of a bad put: frames free already (double free), some free and
    some not (an order larger than allocated), or no huge flag for an order >= 9 put."""
    a = LLFree(4 * TREE_SIZE, Classing.simple(1))
    assert a.get(2, frame=0) == 0  # frames 0..3
    assert a.get(HUGE_ORDER, 1, frame=CHILD_SIZE) == CHILD_SIZE
    a.put(0, 2)
    assert a.get(0, frame=4) == 4
    before = a.w.copy()
    with pytest.raises(LLFreeDoubleFree, match=r"put\(frame=0x0, order=2\): the frames are free already"):
        a.put(0, 2)
    with pytest.raises(LLFreeDoubleFree):
        a.put(1, 0)
    with pytest.raises(LLFreeDoubleFree, match="double free"):
        a.put(2 * CHILD_SIZE, HUGE_ORDER, 1)
    with pytest.raises(LLFreeOrderMismatch, match="1 of the 2 frames are free already"):
        a.put(4, 1)
    with pytest.raises(LLFreeOrderMismatch, match="child 0 .* is not a huge allocation"):
        a.put(0, HUGE_ORDER + 1, 1)
    assert np.array_equal(before, a.w)  # refused puts change nothing, counters included
    a.put(4, 0)
    a.put(CHILD_SIZE, HUGE_ORDER, 1)
    a.validate()
    assert a.stats().free_frames == a.frames


@pytest.mark.parametrize(("args", "match"), [
    ((100,), "manages 512"),
    ((1 << 40,), "manages 512"),
    ((1 << 20, "simple"), "must be a Classing"),
    ((1 << 20, None, 7), "unknown init mode"),
])
def test_bad_configuration(args, match):
    with pytest.raises(LLFreeConfigError, match=match):
        LLFree(*args)


def test_bad_classing():
    with pytest.raises(LLFreeConfigError, match="distinct"):
        Classing([(0, 1), (0, 2)], 0, lambda r, t, f: PolicyType.MATCH)
    with pytest.raises(LLFreeConfigError, match="default class 3"):
        Classing([(0, 1)], 3, lambda r, t, f: PolicyType.MATCH)
    with pytest.raises(LLFreeConfigError, match="1..8 classes"):
        Classing([(i, 1) for i in range(9)], 0, lambda r, t, f: PolicyType.MATCH)
    with pytest.raises(LLFreeConfigError, match="not a PolicyType"):
        LLFree(TREE_SIZE, Classing([(0, 1)], 0, lambda r, t, f: 7))
    with pytest.raises(LLFreeConfigError, match="priority 300"):
        LLFree(TREE_SIZE, Classing([(0, 1)], 0, lambda r, t, f: (PolicyType.MATCH, 300)))


def test_invalid_policy_keeps_classes_apart():
    """A policy that never lets class 0 use a class-1 tree: class-0 requests fail once
    their trees are gone, although class-1 trees have room."""
    def apart(req, tgt, free):
        return (PolicyType.MATCH, 255) if req == tgt else PolicyType.INVALID
    a = LLFree(2 * TREE_SIZE, Classing([(0, 1), (1, 1)], 1, apart))
    assert a.get(0, 0, 0) is None  # every tree starts in the default class 1
    assert a.get(0, 1, 0) is not None
    assert a.change_tree(0, 1, TREE_SIZE, cls=0)
    assert a.get(0, 0, 0) == 0  # CPU 0's class-0 reservation holds tree 0
    assert a.get(0, 1, 0, frame=5) is None  # a class-1 request may not touch it...
    assert a.take(5) and not a.is_free(5)  # ...memdesc's take() may (exact replay)
    assert not a.take(5)
    assert a.reservations()[0].free == TREE_SIZE - 2  # taken from the reservation's count
    a.validate()


def test_drain_and_reservations():
    a = LLFree(16 * TREE_SIZE, Classing.movable(2))
    a.get(0, 0, 0)
    a.get(0, 1, 1)
    a.get(HUGE_ORDER, 2, 0)
    res = a.reservations()
    assert sorted((r.cls, r.local) for r in res) == [(0, 0), (1, 1), (2, 0)]
    assert len({r.tree for r in res}) == 3
    t = a.trees()
    assert all(t["reserved"][r.tree] for r in res)
    a.drain()
    assert a.reservations() == [] and not a.trees()["reserved"].any()
    assert a.counters()["drain"] == 3
    a.validate()


def test_validate_finds_corruption():
    a = LLFree(4 * TREE_SIZE, Classing.simple(1))
    a.get(0)
    a.validate()
    K.region(a.w, "fields")[8 * 20] ^= 1  # a bit flipped behind the child counter's back
    with pytest.raises(InvariantViolation, match="free bits of its bitfield"):
        a.validate()


# --- batch ------------------------------------------------------------------------------------
def stream(n: int, seed: int, max_order: int = HUGE_ORDER) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ops, live = [], []
    for i in range(n):
        if live and rng.random() < 0.5:
            k = int(rng.integers(len(live)))
            live[k], live[-1] = live[-1], live[k]
            ops.append(-(live.pop() + 1))
        else:
            ops.append(int(rng.choice([0, 0, 0, 0, 1, 2, 3, max_order])))
            live.append(i)
    return np.array(ops, np.int64)


@pytest.mark.parametrize("cores", [1, 3])
def test_batch_equals_per_call(cores):
    ops = stream(6000, cores)
    locs = np.random.default_rng(9).integers(-1, cores, len(ops))
    a = LLFree(6 * TREE_SIZE - 100, Classing.movable(cores))
    out, cls = a.run(ops, locals=locs, return_classes=True)
    b = LLFree(6 * TREE_SIZE - 100, Classing.movable(cores))
    got = np.full(len(ops), -1, np.int64)
    gotcls = np.full(len(ops), -1, np.int64)
    for i, op in enumerate(ops):
        loc = None if locs[i] < 0 else int(locs[i])
        if op >= 0:
            r = b.get_classed(int(op), 2 if op >= HUGE_ORDER else 0, loc)
            if r is not None:
                got[i], gotcls[i] = r
        else:
            j = -int(op) - 1
            if got[j] >= 0:
                b.put(int(got[j]), int(ops[j]), int(gotcls[j]), loc)
            got[i] = got[j]
    assert np.array_equal(out, got) and np.array_equal(cls, gotcls)
    assert np.array_equal(a.w, b.w)
    assert (out[ops >= 0] >= 0).mean() > 0.95
    a.validate()


@pytest.mark.parametrize(("ops", "kw", "exc", "match"), [
    ([0, -3], {}, LLFreeInvalidRequest, "op 1: put of op 2, which is not an earlier get"),
    ([0, -1, -1], {}, LLFreeInvalidRequest, "which was put already"),
    ([0, -1, -2], {}, LLFreeInvalidRequest, "not an earlier get"),
    ([0, 13], {}, LLFreeBadOrder, "op 1: order 13"),
    ([0, 0], {"classes": 4}, LLFreeInvalidRequest, "class 4 is not configured"),
    ([0, 0], {"locals": 5}, LLFreeInvalidRequest, "local slot 5"),
    ([[0, 1]], {}, LLFreeInvalidRequest, "one-dimensional"),
])
def test_batch_bad_streams(ops, kw, exc, match):
    a = LLFree(4 * TREE_SIZE, Classing.simple(2))
    with pytest.raises(exc, match=match):
        a.run(ops, **kw)


def test_init_alloc():
    a = LLFree(3 * TREE_SIZE + 700, Classing.simple(1), Init.ALLOC)
    assert a.stats().free_frames == 0 and a.get(0) is None
    for f in range(0, 3 * TREE_SIZE + 512, CHILD_SIZE):
        a.put(f, HUGE_ORDER)
    for f in range(3 * TREE_SIZE + 512, 3 * TREE_SIZE + 700):
        a.put(f)
    assert a.stats().free_frames == a.frames
    a.validate()


def free_mask(a: LLFree) -> np.ndarray:
    return np.array([a.is_free(f) for f in range(a.frames)])


def brute_free_blocks(free: np.ndarray) -> np.ndarray:
    """Maximal free aligned blocks per order, from a free-frame mask."""
    out = np.zeros(13, np.int64)
    blocks = free
    for k in range(13):
        n = len(blocks) // 2 * 2
        parent = blocks[:n:2] & blocks[1:n:2]
        out[k] = blocks.sum() - (2 * parent.sum() if k < 12 else 0)
        blocks = parent
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_free_blocks_and_recover(seed):
    """free_blocks() equals the brute-force count over the free mask; recover() from the
    allocated mask and the huge flags rebuilds the drained allocator exactly."""
    a = LLFree(6 * TREE_SIZE - 300, Classing.movable(3))
    a.run(stream(4000, seed), locals=np.random.default_rng(seed).integers(-1, 3, 4000))
    a.put(int(np.flatnonzero(a.children()["huge"])[0]) * CHILD_SIZE + 64, 6)  # a split huge frame
    free = free_mask(a)
    assert np.array_equal(a.free_blocks(), brute_free_blocks(free))
    assert (a.free_blocks() * (1 << np.arange(13))).sum() == a.stats().free_frames
    a.drain()
    b = LLFree.recover(~free, Classing.movable(3), a.children()["huge"])
    b.validate()
    for name in ("fields", "children"):
        assert np.array_equal(K.region(a.w, name), K.region(b.w, name)), name
    assert np.array_equal(a.trees()["free"], b.trees()["free"])  # classes restart at the default,
    assert (b.trees()["cls"] == 2).all()  # as llfree-c's trees_init does on recovery
    with pytest.raises(LLFreeConfigError, match="huge child has free frames"):
        LLFree.recover(~free, Classing.movable(3), ~a.children()["huge"])
