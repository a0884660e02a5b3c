"""Exact and policy replay of the three full real captures (../shared/traces).

The issue's done-criterion for exact replay: the final free pages per zone within 1 % of the
free state rebuilt from ``after.kpageflags`` and within 3 % of ``after.buddyinfo``; per-order
counts for orders >= 4 within 2 %.  Measured (linux design; model vs after.buddyinfo / vs
after.kpageflags, Normal zone; DMA and DMA32 match exactly):

=========  ===============  =================  ===================================
capture    vs buddyinfo     vs kpageflags      orders >= 4, worst vs buddyinfo
=========  ===============  =================  ===================================
anon       +0.005 %         +0.49 %            0 (identical)
build      -0.04 %          +0.20 %            order 4: 3593 vs 3575 (+0.5 %)
pagecache  -0.02 %          +0.31 %            order 7: 1378 vs 1381 (-0.2 %)
=========  ===============  =================  ===================================

kpageflags is read about a second after buddyinfo (the system keeps running), which is why
the model is closer to buddyinfo.  The pagecache machine accepts memory during the trace
(224 order-10 frees of pfns whose kpageflags sections read all zero in the snapshot; zoneinfo's
managed grows by 229376 pages): exact replay must bring those pages in to meet the criterion.
"""

from __future__ import annotations

import pytest

from memdesc.sim.replay import replay

CAPTURES = ("anon", "build", "pagecache")


@pytest.fixture(scope="module", params=CAPTURES)
def exact(request, shared_traces):
    return request.param, replay(shared_traces / request.param, mode="exact")


def test_exact_meets_the_criterion(exact):
    name, r = exact
    assert r.check == "ok"
    assert r.malformed_lines == 0 and r.lost_events == 0
    f = r.final_vs_real
    for key in ("0:DMA", "0:DMA32", "0:Normal"):
        z = f[key]
        assert abs(z["kpageflags_free_pages_diff_pct"]) < 1.0, (name, key, z)
        assert abs(z["proc_free_pages_diff_pct"]) < 3.0, (name, key, z)
        for o in range(4, 11):
            assert abs(z["model"][o] - z["proc"][o]) <= max(1, 0.02 * z["proc"][o]), (name, key, o, z)


def test_exact_inconsistencies_are_few_and_explained(exact):
    """Inconsistencies come from the gap between snapshot and trace start: pages on per-CPU lists
    at snapshot time (held allocated by the import) that the trace allocates or drains, pages
    refilled into pcp lists before tracing started, multi-page non-compound allocations seen
    as single pages.  They stay a small fraction of the events."""
    name, r = exact
    total = sum(r.inconsistencies.values())
    assert total < 0.02 * r.events_replayed, (name, r.inconsistencies)
    # every event of each kind was classified once (failed allocations are not classified)
    for ev, row in r.states.items():
        failed = r.notes["failed_allocations"] if ev == "mm_page_alloc" else 0
        assert sum(row.values()) == r.events[ev] - failed
    if name == "pagecache":
        assert r.notes["pages_accepted"] == 224 * 1024


def test_policy_replay_of_the_build_capture(shared_traces):
    r = replay(shared_traces / "build", mode="policy")
    assert r.check == "ok"
    p = r.policy
    assert p["allocations"] == r.events["mm_page_alloc"] == r.model_events["mm_page_alloc"]
    assert p["frees"] == r.events["mm_page_free"]
    assert p["model_failures"] == 0 and p["model_free_errors"] == 0 and p["bad_events"] == 0
