"""Exact and shadow replay of the seven full real captures, and policy replay of build.

One shadow replay per capture (exact replay plus the model's own decision before each event,
memdesc.sim.shadow) gives both the end state and the decision figures.  Every tolerance is
the figure measured on this code (``benchmarks/bench_shadow.py``, one run: replay is
deterministic) plus a stated margin:

* free pages of Normal against after.buddyinfo and after.kpageflags, in percent: the measured
  figure +- half of it, at least +- 0.01 percentage points (about 30-170 pages: a change of the
  model that moves a few hundred pages shows); DMA and DMA32 exactly;
* blocks of order >= 4 against after.buddyinfo: the measured largest deviation + half of it
  (at least + 2 blocks);
* inconsistencies: at most 1.5 x the measured fraction of the events;
* shadow replay: informed agreement at most 0.25 percentage points below the measured one
  (and at the issue's done-criterion: >= 95 % for pcp allocations and frees, >= 90 % over all),
  and informed decisions at least 95 % of the measured count (a change that turned decisions
  uninformed would otherwise pass).

Measured (linux design; Normal: model vs after.buddyinfo / after.kpageflags):

==========  ============  ============  ===================================================
capture     buddyinfo     kpageflags    what is outside the trace
==========  ============  ============  ===================================================
anon        +0.005 %      +0.491 %      kpageflags is read ~1 s after buddyinfo
build       -0.038 %      +0.202 %
pagecache   -0.021 %      +0.311 %      memory accepted during the trace (224 x 4 MiB)
files       -0.002 %      -0.441 %
mthp        +7.944 %      +1.581 %      free page reporting had 16384 pages (28 order-9 and
                                        2 order-10 blocks) isolated when buddyinfo was read;
                                        ~6670 pages were allocated between the snapshot and
                                        the start of tracing (docs/fidelity.md)
reclaim     +0.323 %      -7.723 %      the memcg's pages freed after buddyinfo was read
compaction  +0.001 %      +0.453 %      (+2.77 % before the free scanner was replayed)
==========  ============  ============  ===================================================
"""

from __future__ import annotations

import pytest

from memdesc.sim.replay import replay

pytestmark = pytest.mark.shared

#: per capture: (buddyinfo %, kpageflags %, largest |model - buddyinfo| of orders >= 4 in blocks,
#: inconsistencies / events, informed agreement overall / pcp_alloc / free, informed decisions)
MEASURED = {
    "anon": (0.0053, 0.4905, 0, 0.01449, 0.99538, 0.98466, 1.0, 632971),
    "build": (-0.0377, 0.2023, 18, 0.00479, 0.99972, 0.99964, 1.0, 1400648),
    "pagecache": (-0.0207, 0.3109, 6, 0.01201, 0.99995, 0.99991, 1.0, 1193166),
    "files": (-0.0019, -0.4410, 0, 0.01128, 0.99991, 0.99987, 1.0, 1017434),
    "mthp": (7.9441, 1.5808, 28, 0.04743, 0.99873, 0.99867, 0.99581, 59222),
    "reclaim": (0.3232, -7.7233, 0, 0.01842, 0.99940, 0.99871, 0.99994, 947887),
    "compaction": (0.0012, 0.4530, 2, 0.00674, 0.99994, 0.99998, 0.99986, 1218506),
}


@pytest.fixture(scope="module", params=tuple(MEASURED))
def run(request, shared_traces):
    return request.param, replay(shared_traces / request.param, mode="shadow")


def _close(value: float, measured: float) -> bool:
    return abs(value - measured) <= max(0.5 * abs(measured), 0.01)


def test_exact_end_state(run):
    name, r = run
    buddy, kpf, orders, *_ = MEASURED[name]
    assert r.check == "ok"
    assert r.malformed_lines == 0 and r.lost_events == 0
    f = r.final_vs_real
    for key in ("0:DMA", "0:DMA32"):
        assert f[key]["model"] == f[key]["proc"] == f[key]["kpageflags"], (name, key)
    z = f["0:Normal"]
    assert _close(z["proc_free_pages_diff_pct"], buddy), (name, z["proc_free_pages_diff_pct"])
    assert _close(z["kpageflags_free_pages_diff_pct"], kpf), (name, z["kpageflags_free_pages_diff_pct"])
    worst = max(abs(z["model"][o] - z["proc"][o]) for o in range(4, 11))
    assert worst <= max(orders + 2, 1.5 * orders), (name, z["model"], z["proc"])


def test_mthp_excess_is_page_reporting_and_the_gap(shared_traces):
    """mthp ends 7.9 % above after.buddyinfo: at orders 9 and 10 exactly 16384 pages (the blocks
    free page reporting had isolated while buddyinfo was read: the model matches
    after.kpageflags there exactly); the rest are pages allocated before tracing began."""
    r = replay(shared_traces / "mthp", mode="exact")
    z = r.final_vs_real["0:Normal"]
    hi = sum((z["model"][o] - z["proc"][o]) << o for o in (9, 10))
    assert hi == 16384
    assert z["model"][9:] == z["kpageflags"][9:]
    rest = z["model_free_pages"] - z["proc_free_pages"] - hi
    assert 100.0 * rest / z["proc_free_pages"] < 2.4          # measured 2.30 % (6666 pages)


def test_exact_inconsistencies_are_few_and_explained(run):
    """Inconsistencies come from the gap between snapshot and trace start: pages on per-CPU lists
    at snapshot time (held allocated by the import) that the trace allocates or drains, pages
    refilled into pcp lists before tracing started, multi-page non-compound allocations seen
    as single pages."""
    name, r = run
    total = sum(r.inconsistencies.values())
    assert total <= 1.5 * MEASURED[name][3] * r.events_replayed, (name, r.inconsistencies)
    # every event of each kind was classified once (failed allocations are not classified)
    for ev, row in r.states.items():
        failed = r.notes["failed_allocations"] if ev == "mm_page_alloc" else 0
        assert sum(row.values()) == r.events[ev] - failed, (name, ev)
    if name == "pagecache":
        assert r.notes["pages_accepted"] == 224 * 1024
    if name == "compaction":
        # compaction's free scanner: 51665 pages taken per the trace, all but 4 free in the model
        assert r.notes["pages_isolated_by_compaction"] == 51661
        assert r.notes["isolated_pages_not_free_in_model"] == 4


def test_shadow_decisions_meet_the_criterion(run):
    name, r = run
    *_, inf_all, inf_pcp, inf_free, n_inf = MEASURED[name]
    sh = r.shadow
    c = sh["by_class"]

    def frac(k):
        return c[k]["informed_agree"] / c[k]["informed_decisions"]

    assert sh["informed_fraction"] >= max(0.90, inf_all - 0.0025), (name, sh)
    assert frac("pcp_alloc") >= max(0.95, inf_pcp - 0.0025), (name, c["pcp_alloc"])
    assert frac("free") >= max(0.95, inf_free - 0.0025), (name, c["free"])
    assert sh["informed_decisions"] >= 0.95 * n_inf, (name, sh["informed_decisions"])
    assert sh["decisions"] == sum(v["decisions"] for v in c.values())


#: per capture with fallbacks: the trace's claims and the model's own (shadow replay: before each
#: block the kernel took, the model's __rmqueue(); no capture has a steal)
CLAIMS = {"build": (5, 0), "pagecache": (13, 12), "files": (2, 4), "reclaim": (4, 3), "compaction": (3, 3)}


def test_fallbacks_match_the_trace_in_kind_and_count(run):
    """The kernel's fallbacks are all claims (no steal) and so are the model's; where the model's
    inputs are informed it chooses the same claim (fallback order and pageblock).  Counts: the
    model's differ where its free lists hold blocks the kernel no longer had (build: stale
    unmovable blocks of unknown position; files: two more claims on lists the kernel had
    already refilled) -- pinned as measured."""
    name, r = run
    fb = r.shadow["fallbacks"]
    trace, model = CLAIMS.get(name, (0, 0))
    assert fb["trace"] == {"claim": trace, "steal": 0} and r.events["mm_page_alloc_extfrag"] == trace
    assert fb["model"] == {"claim": model, "steal": 0}
    c = r.shadow["by_class"]["fallback"]
    assert c["decisions"] == trace and c["informed_agree"] == c["informed_decisions"]


def test_policy_replay_of_the_build_capture(shared_traces):
    r = replay(shared_traces / "build", mode="policy")
    assert r.check == "ok"
    p = r.policy
    assert p["allocations"] == r.events["mm_page_alloc"] == r.model_events["mm_page_alloc"]
    assert p["frees"] == r.events["mm_page_free"]
    assert p["model_failures"] == 0 and p["model_free_errors"] == 0 and p["bad_events"] == 0
    # the model serving the build trace's demand claims 3 pageblocks where the kernel claimed 5
    # (its state drifts from the kernel's after the first choices), and never steals
    assert r.model_events["mm_page_alloc_extfrag"] == 3 and r.machine.stats()["steal"] == 0
