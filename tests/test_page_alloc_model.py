"""The page allocator model: churn reproducibility and the churn's sampling tables.

The stateful property tests against a reference (aligned, in-zone, non-overlapping
allocations; invalid frees refused without a state change; check() after every step;
every managed page accounted for) and the equality of results with and without numba
are in the conformance suite (tests/test_conformance.py), for every design.
"""

from __future__ import annotations

import numpy as np

from memdesc.mm.machine import Machine


def test_churn_is_reproducible_and_keeps_occupancy():
    from memdesc.sim.churn import Churn

    results = []
    for _ in range(2):
        m = Machine.create("256M")
        c = Churn(m, order=0, occupancy=0.5, seed=11)
        r = c.run(20000)
        results.append((m.buddyinfo().to_dict(), r.alloc, r.free))
        assert abs(r.occupancy_final - 0.5) < 0.01
        assert r.free_errors == 0 and m.check() == "ok"
        assert c.free_all() == 0
        m.drain_all_pages()
        assert m.check() == "ok"
    assert results[0] == results[1]


def test_sampling_table_follows_distribution():
    from memdesc.sim.churn import sampling_table

    t = sampling_table({0: 0.5, 3: 0.25, 9: 0.25})
    assert len(t) == 1024
    assert list(np.bincount(t, minlength=10)[[0, 3, 9]]) == [512, 256, 256]
