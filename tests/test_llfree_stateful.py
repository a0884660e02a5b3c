"""Hypothesis state machine: LLFree against a reference model of allocated frames.

The model is a boolean array of allocated frames and the list of live allocations
``(frame, order)``.  Every get must return an aligned, in-range block that overlaps no
live allocation; a get at a frame the model holds allocated must fail; a refused order-0
get must leave no free frame that the request could have reached (all free frames are
in reserved trees' shared counters: llfree-c's only blind spot, frames other CPUs freed
into a tree one CPU holds).  Bad puts -- double, visibly wrong order, out of range --
raise the documented errors and change nothing.  After every step ``validate()`` checks
every invariant and the free counts equal the model's.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as S
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from memdesc.lib import _llfree_kernels as K
from memdesc.lib.llfree import (
    CHILD_SIZE,
    HUGE_ORDER,
    TREE_SIZE,
    Classing,
    LLFree,
    LLFreeBadFrame,
    LLFreeDoubleFree,
    LLFreeOrderMismatch,
)

ORDERS = S.sampled_from([0, 0, 0, 0, 1, 2, 3, 5, 6, 7, 8, 9, 9, 10, 11, 12])


class LLFreeMachine(RuleBasedStateMachine):
    @initialize(frames=S.sampled_from([2 * TREE_SIZE, 3 * TREE_SIZE + 700, 5 * TREE_SIZE - 300, 6 * TREE_SIZE]),
                movable=S.booleans(), cores=S.integers(1, 3), free_reserve=S.booleans())
    def setup(self, frames, movable, cores, free_reserve):
        self.classing = Classing.movable(cores) if movable else Classing.simple(cores)
        self.ncls = 3 if movable else 2
        self.cores = cores
        self.a = LLFree(frames, self.classing, free_reserve=free_reserve)
        self.used = np.zeros(frames, bool)
        self.live: list[tuple[int, int]] = []
        self.freed: list[tuple[int, int]] = []

    # --- helpers ------------------------------------------------------------------------------
    def take_model(self, frame: int, order: int) -> None:
        n = 1 << order
        assert frame % n == 0 and 0 <= frame and frame + n <= self.a.frames, (frame, order)
        assert not self.used[frame:frame + n].any(), f"overlap at {frame:#x} order {order}"
        self.used[frame:frame + n] = True
        self.live.append((frame, order))

    def request(self, data, order):
        cls = data.draw(S.integers(0, self.ncls - 1))
        local = data.draw(S.one_of(S.none(), S.integers(0, self.cores - 1)))
        return cls, local

    def no_reachable_free_frames(self) -> None:
        """After a refused order-0 get: no unreserved tree and no reservation holds a frame."""
        t = self.a.trees()
        assert not (t["free"][~t["reserved"]]).any()
        assert all(r.free == 0 for r in self.a.reservations())

    # --- rules --------------------------------------------------------------------------------
    @rule(data=S.data(), order=ORDERS, n=S.integers(1, 30))
    def get(self, data, order, n):
        cls, local = self.request(data, order)
        for _ in range(n):
            r = self.a.get_classed(order, cls, local)
            if r is None:
                if order == 0:
                    self.no_reachable_free_frames()
                break
            self.take_model(r[0], order)

    @rule(data=S.data(), order=ORDERS)
    def get_at(self, data, order):
        cls, local = self.request(data, order)
        frame = data.draw(S.integers(0, (self.a.frames >> order) - 1)) << order
        if frame + (1 << order) > self.a.frames:
            return
        busy = self.used[frame:frame + (1 << order)].any()
        got = self.a.get(order, cls, local, frame=frame)
        if busy:
            assert got is None
        elif got is not None:
            assert got == frame
            self.take_model(frame, order)

    @rule(data=S.data(), order=ORDERS)
    def take(self, data, order):
        """memdesc's take(): succeeds exactly when the model has the frames free."""
        frame = data.draw(S.integers(0, (self.a.frames >> order) - 1)) << order
        if frame + (1 << order) > self.a.frames:
            return
        free = not self.used[frame:frame + (1 << order)].any()
        assert self.a.take(frame, order) == free
        if free:
            self.take_model(frame, order)

    @precondition(lambda self: self.live)
    @rule(data=S.data(), n=S.integers(1, 30))
    def put(self, data, n):
        for _ in range(min(n, len(self.live))):
            k = data.draw(S.integers(0, len(self.live) - 1))
            frame, order = self.live.pop(k)
            cls, local = self.request(data, order)
            self.a.put(frame, order, cls, local)
            self.used[frame:frame + (1 << order)] = False
            self.freed.append((frame, order))

    @precondition(lambda self: any(o == HUGE_ORDER for _, o in self.live))
    @rule(data=S.data(), order=S.integers(0, 6))
    def partial_put_of_huge_frame(self, data, order):
        """A smaller put inside a huge frame splits it; the rest stays allocated."""
        k = next(i for i, (_, o) in enumerate(self.live) if o == HUGE_ORDER)
        frame, _ = self.live.pop(k)
        off = data.draw(S.integers(0, (CHILD_SIZE >> order) - 1)) << order
        splits = self.a.counters()["split_huge"]
        self.a.put(frame + off, order, *self.request(data, order))
        assert self.a.counters()["split_huge"] == splits + 1
        self.used[frame + off:frame + off + (1 << order)] = False
        self.live += [(f, 0) for f in range(frame, frame + CHILD_SIZE) if self.used[f]]

    @precondition(lambda self: self.freed)
    @rule(data=S.data())
    def double_put(self, data):
        frame, order = self.freed[data.draw(S.integers(0, len(self.freed) - 1))]
        if self.used[frame:frame + (1 << order)].any():
            return  # reallocated since: LLFree could not tell this put from a legal one
        before = self.a.w.copy()
        with pytest.raises(LLFreeDoubleFree):
            self.a.put(frame, order, *self.request(data, order))
        assert np.array_equal(before, self.a.w)

    @precondition(lambda self: any(o < HUGE_ORDER for _, o in self.live))
    @rule(data=S.data())
    def put_with_larger_order(self, data):
        frame, order = next((f, o) for f, o in self.live if o < HUGE_ORDER)
        big = order + 1
        lo = frame & ~((1 << big) - 1)
        rest = self.used[lo:lo + (1 << big)].sum() - (1 << order)
        if rest != 0 or lo + (1 << big) > self.a.frames:
            return  # the other half is allocated too: LLFree would free both (undetectable)
        before = self.a.w.copy()
        with pytest.raises(LLFreeOrderMismatch):
            self.a.put(lo, big, *self.request(data, big))
        assert np.array_equal(before, self.a.w)

    @rule(data=S.data())
    def put_out_of_range(self, data):
        with pytest.raises(LLFreeBadFrame):
            self.a.put(self.a.frames + data.draw(S.integers(0, 100)), 0)

    @rule()
    def drain(self):
        self.a.drain()
        assert self.a.reservations() == []

    # --- invariants ---------------------------------------------------------------------------
    @invariant()
    def consistent(self):
        if not hasattr(self, "a"):
            return
        self.a.validate()
        free = int(self.a.frames - self.used.sum())
        assert self.a.stats().free_frames == free
        assert self.a.tree_stats().free_frames == free
        nfull = self.a.frames // CHILD_SIZE
        whole = (~self.used[:nfull * CHILD_SIZE].reshape(nfull, CHILD_SIZE)).all(axis=1)
        assert self.a.stats().free_huge == int(whole.sum())
        blocks = ~self.used
        for k, count in enumerate(self.a.free_blocks()):  # /proc/buddyinfo's view
            n = len(blocks) // 2 * 2
            parent = blocks[:n:2] & blocks[1:n:2]
            assert count == blocks.sum() - (2 * parent.sum() if k < 12 else 0), k
            blocks = parent
        for f in range(7, self.a.frames, 509):
            assert bool(K.k_is_free(self.a.w, f, 0)) == (not self.used[f])


TestLLFree = LLFreeMachine.TestCase
TestLLFree.settings = settings(max_examples=30, stateful_step_count=40, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
