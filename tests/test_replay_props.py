"""Properties of trace replay under arbitrary input (hypothesis).

* Any event stream, however inconsistent (random pfns, orders, CPUs, events in any order),
  replays without an exception and leaves the model's invariants intact (``check() == "ok"``),
  with every event classified exactly once.
* Any churn workload's own trace, replayed exactly or as demands on an identical fresh
  machine, reproduces the machine that produced it (the linux design is deterministic).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memdesc.mm.machine import Machine
from memdesc.sim.churn import Churn
from memdesc.sim.replay import replay
from memdesc.sim.replay_io import event_log_frame
from memdesc.trace import events as E
from test_replay import frame  # tests/ is on sys.path (pytest rootdir)

NPAGES = 16384   # the 64 MiB machine's pfns


def _event():
    pfn = st.one_of(st.integers(0, NPAGES + 2048), st.integers(-1, 4), st.sampled_from([160, 4096, 12288, 13312]))
    return st.builds(
        lambda ev, pfn, order, cpu, mt, refill, fbo, fbmt, chown: {
            "event": ev, "cpu": cpu, "pid": 1, "pfn": pfn if (pfn >= 0 or ev == E.ALLOC) else 0, "order": order,
            "gfp": 0xCC0 if ev == E.ALLOC else 0, "migratetype": mt, "percpu_refill": refill,
            "fallback_order": fbo, "fallback_migratetype": fbmt, "fragmenting": int(fbo < 9),
            "change_ownership": chown},
        st.integers(0, E.NR_EVENTS - 1), pfn, st.integers(0, 11), st.integers(0, 3), st.integers(-1, 5),
        st.integers(0, 1), st.integers(0, 12), st.integers(-1, 5), st.integers(0, 1))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event(), min_size=1, max_size=120))
def test_any_event_stream_keeps_the_invariants(rows):
    df = frame(rows)
    for mode in ("exact", "policy"):
        m = Machine.create("64M", cpus=2, evlog=(1 << 12) if mode == "policy" else 0)
        r = replay(df, mode=mode, machine=m)
        assert r.check == "ok"
        if mode == "exact":
            failed = sum(1 for x in rows if x["event"] == E.ALLOC and x["pfn"] < 0)
            assert sum(sum(v.values()) for v in r.states.values()) == len(rows) - failed
        else:
            assert r.policy["model_free_errors"] == 0


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(1, 2**31), occupancy=st.floats(0.1, 0.9), mix=st.booleans(), pcp=st.booleans())
def test_a_model_trace_replays_to_the_same_machine(seed, occupancy, mix, pcp):
    kw = {"orders": "mix", "gfp": "mix"} if mix else {"order": 0, "gfp": "GFP_KERNEL"}
    src = Machine.create("64M", cpus=2, pcp=pcp, evlog=200_000)
    Churn(src, occupancy=occupancy, seed=seed, **kw).run(400)
    df = event_log_frame(src)
    for mode in ("exact", "policy"):
        m = Machine.create("64M", cpus=2, pcp=pcp, evlog=(1 << 14) if mode == "policy" else 0)
        r = replay(df, mode=mode, machine=m)
        assert r.check == "ok" and r.inconsistencies == {}
        for name in ("nr_free", "pb", "owner", "memmap", "heads"):
            assert np.array_equal(getattr(src.state, name), getattr(m.state, name)), (mode, name)
