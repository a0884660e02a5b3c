"""Shadow replay: the model's own decision before each event (memdesc.sim.shadow).

The strongest check needs no real machine: a trace the model itself wrote (its kmem event log
while it ran a churn) replayed in shadow mode on an identical fresh machine must agree at every
decision, in every class; one event changed by hand must give exactly one disagreement, with the
model's choice beside the kernel's in the divergence record.  The read-only choices shadow
replay asks (core.rmqueue_peek, core.rmqueue_buddy_peek) are checked against the real paths on
random states.  Shadow replay of the real captures is in test_replay_shared.py.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from typer.testing import CliRunner

from memdesc.cli import app
from memdesc.errors import ConfigError
from memdesc.mm.machine import Machine
from memdesc.mm.page_alloc import core
from memdesc.sim import shadow
from memdesc.sim import shadow_kernels as SK
from memdesc.sim.churn import Churn
from memdesc.sim.replay import replay
from memdesc.sim.replay_io import event_log_frame
from memdesc.trace import events as E
from memdesc.trace.writer import write_ftrace
from nojit import both_call

MEM = "256M"


def self_trace(seed: int = 5, pairs: int = 4000, occupancy: float = 0.6) -> pl.DataFrame:
    """The kmem events of the model's own churn (mixed orders and gfps), as a trace frame."""
    src = Machine.create(MEM, cpus=2, evlog=1 << 20)
    Churn(src, orders="mix", gfp="mix", occupancy=occupancy, seed=seed, ns_per_op=0).run(pairs)
    assert int(src.state.stats[core.ST_DRAIN_ALL]) == 0  # no slow path: every drain follows a free
    return event_log_frame(src)


@pytest.fixture(scope="module")
def own():
    df = self_trace()
    r = replay(df, mode="shadow", machine=Machine.create(MEM, cpus=2), divergences=3)
    return df, r


def test_the_model_agrees_with_its_own_trace_everywhere(own):
    df, r = own
    sh = r.shadow
    assert r.check == "ok" and r.inconsistencies == {}
    assert sh["agree"] == sh["decisions"] > 15_000
    assert sh["informed_agree"] == sh["informed_decisions"]
    for name in ("pcp_alloc", "pcp_refill", "buddy_alloc", "free", "drain"):
        c = sh["by_class"][name]
        assert c["decisions"] > 0 and c["agree"] == c["decisions"], (name, c)
    # a fresh machine hides nothing but the pcp counters' first values: informed once both rows meet
    assert sh["informed_decisions"] > 0.9 * sh["decisions"]
    assert sh["drain_trigger"]["agree"] == sh["drain_trigger"]["decisions"] > 0
    assert sh["free_decisions_unresolved"] < sh["by_class"]["free"]["decisions"]
    assert r.divergences == {name: [] for name in SK.CLASS_NAMES}
    # every free decision of a page the trace uses again was resolved (and agreed)
    frees = int((df["event"] == E.FREE).sum())
    assert sh["by_class"]["free"]["decisions"] + sh["free_decisions_unresolved"] == frees


def test_fallbacks_of_the_model_match_in_kind_and_count():
    """A small machine whose unmovable demand outgrows its unmovable pageblocks: claims happen;
    shadow replay predicts each one (kind, fallback order, pageblock) and as many."""
    src = Machine.create("64M", cpus=2, evlog=1 << 20)
    Churn(src, orders="mix", gfp={"GFP_KERNEL": 0.5, "GFP_HIGHUSER_MOVABLE|__GFP_COMP": 0.5}, occupancy=0.5,
          seed=11, ns_per_op=0).run(20_000)
    df = event_log_frame(src)
    n_ext = int((df["event"] == E.EXTFRAG).sum())
    assert n_ext > 0 and int(src.state.stats[core.ST_DRAIN_ALL]) == 0
    r = replay(df, mode="shadow", machine=Machine.create("64M", cpus=2))
    fb = r.shadow["fallbacks"]
    claims = int(((df["event"] == E.EXTFRAG) & (df["change_ownership"] == 1)).sum())
    assert fb["trace"] == {"claim": claims, "steal": n_ext - claims}
    assert fb["model"] == fb["trace"]
    c = r.shadow["by_class"]["fallback"]
    assert c["decisions"] == n_ext and c["agree"] == n_ext


def test_one_changed_pick_is_one_disagreement(own):
    """Two consecutive allocations from the same pcp list with their pages swapped: the model
    would take the first page first, so exactly the first of them disagrees, informed."""
    df, _ = own
    ev, cpu, pfn, order, gfp = (df[c].to_numpy() for c in ("event", "cpu", "pfn", "order", "gfp"))
    ev = ev.astype(np.int64)
    pair = None
    last = {}
    for i in range(ev.shape[0]):
        if ev[i] == E.ALLOC and order[i] == 0:
            j = last.get((cpu[i], gfp[i]))
            if j is not None and not ((ev[j + 1:i] != E.ALLOC) & (cpu[j + 1:i] == cpu[i])).any():
                pair = (j, i)
                break
            last[(cpu[i], gfp[i])] = i
        elif cpu[i] in [k[0] for k in last]:
            last = {k: v for k, v in last.items() if k[0] != cpu[i]}
    assert pair is not None
    j, i = pair
    p = pfn.copy()
    p[j], p[i] = pfn[i], pfn[j]
    r = replay(df.with_columns(pl.Series("pfn", p)), mode="shadow", machine=Machine.create(MEM, cpus=2),
               divergences=5)
    sh = r.shadow
    assert sh["decisions"] - sh["agree"] == 1
    assert sh["by_class"]["pcp_alloc"]["decisions"] - sh["by_class"]["pcp_alloc"]["agree"] == 1
    (d,) = r.divergences["pcp_alloc"]
    assert (d["kernel_pfn"], d["model_pfn"], d["line"], d["informed"]) == (int(pfn[i]), int(pfn[j]), j + 1, True)
    assert d["kernel_pfn_state"] == "pcp" and d["list_head"] == int(pfn[j])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=hs.integers(0, 10_000), occ=hs.floats(0.3, 0.9), order=hs.integers(0, 10), mt=hs.integers(0, 2),
       nofrag=hs.booleans(), mode=hs.integers(0, 3))
def test_peek_is_what_the_real_path_takes(seed, occ, order, mt, nofrag, mode):
    """rmqueue_peek()/rmqueue_buddy_peek() give the block __rmqueue()/rmqueue_buddy() take from the
    same state (two machines brought to it by the same seeded churn)."""
    def machine():
        m = Machine.create("64M", cpus=1, pcp=False)
        Churn(m, orders="mix", gfp="mix", occupancy=occ, seed=seed, ns_per_op=0).run(300)
        return m
    a, b = machine(), machine()
    sa, sb = a.state, b.state
    z = int(np.flatnonzero(sa.z_managed > 0)[-1])
    flags = core.ALLOC_WMARK_LOW | (core.ALLOC_NOFRAGMENT if nofrag else 0)
    pfn, kind, co, fmt = core.rmqueue_peek(sa, z, order, mt, flags, mode)
    real, _m = getattr(core, "__rmqueue")(sb, z, order, mt, flags, mode, 0)
    assert int(pfn) == int(real)
    assert (kind == core.PEEK_NONE) == (real < 0)
    pfn2, _k, _c, _f = core.rmqueue_buddy_peek(sa, z, order, flags, mt)
    c = machine()
    assert int(pfn2) == int(core.rmqueue_buddy(c.state, z, order, flags, mt, 0))


def test_shadow_needs_core_buddy_code_and_sane_options(own):
    df, _ = own
    with pytest.raises(ConfigError, match="shadow replay"):
        replay(df.head(100), mode="shadow", machine=Machine.create("64M", cpus=2, design="vmem"))
    with pytest.raises(ConfigError, match="divergences"):
        replay(df.head(100), mode="shadow", divergences=-1)


def test_vmstat_phase_from_the_trace_drains():
    """The phase of vmstat_update() in the second, from pcpu_drain batches no free started."""
    ev = np.array([E.FREE, E.PCPU_DRAIN, E.ALLOC, E.PCPU_DRAIN, E.PCPU_DRAIN, E.ALLOC, E.PCPU_DRAIN], np.uint8)
    cpu = np.zeros(7, np.int16)
    ts = np.array([5_000, 5_100, 1_100_000_000, 1_112_000_000, 1_112_000_100, 2_000_000_000, 2_114_000_000])
    assert shadow.vmstat_phase({"event": ev, "cpu": cpu, "ts_ns": ts}) == 113_000_000
    assert shadow.vmstat_phase({"event": ev[:1], "cpu": cpu[:1], "ts_ns": ts[:1]}) == -1


def test_cli_prints_the_table_and_writes_the_json(own, tmp_path):
    df, r = own
    trace = tmp_path / "own.txt.zst"
    write_ftrace(df.head(6000), trace)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["replay", str(trace), "--mode", "shadow", "--mem", MEM, "--cpus", "2",
                                   "--divergences", "2", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "shadow replay: the model's decision beside the kernel's" in res.output and "pcp_refill" in res.output
    d = json.loads(out.read_text())
    assert d["mode"] == "shadow"
    s = d["shadow"]
    for key in ("decisions", "agree", "fraction", "informed_decisions", "informed_agree", "informed_fraction",
                "by_class"):
        assert key in s, key
    assert set(s["by_class"]) == set(SK.CLASS_NAMES)
    for c in s["by_class"].values():
        assert set(c) == {"decisions", "agree", "informed_decisions", "informed_agree"}
    assert s["fraction"] == s["agree"] / s["decisions"]


def nojit_workload() -> dict:
    df = self_trace(seed=2, pairs=300, occupancy=0.5)
    r = replay(df, mode="shadow", machine=Machine.create(MEM, cpus=2), divergences=2)
    from memdesc._numba import JIT_DISABLED
    return {"jit_disabled": JIT_DISABLED, "shadow": r.shadow, "divergences": r.divergences,
            "buddyinfo": r.machine.buddyinfo().to_dict()}


def test_plain_python_shadow_agrees_with_numba():
    nojit, jit = both_call("test_shadow", "nojit_workload", timeout=900)
    assert nojit.pop("jit_disabled") is True and jit.pop("jit_disabled") is False
    assert nojit == jit and jit["shadow"]["decisions"] > 1000


def test_batched_frees_pair_with_their_mm_page_free():
    """free_unref_folios() prints mm_page_free in its prepare loop and mm_page_free_batched when
    the page goes on the pcp list: exact replay applies the free at the second (batched_pairs)."""
    from memdesc.sim.replay import batched_pairs
    ev = np.array([E.FREE, E.FREE, E.FREE_BATCHED, E.FREE, E.FREE_BATCHED, E.FREE_BATCHED, E.FREE], np.uint8)
    pfn = np.array([10, 20, 10, 30, 20, 40, 512], np.int64)
    order = np.array([0, 2, 0, 4, 0, 0, 9], np.int8)
    # 10 and 20 pair (20 of order 2: the batched line prints order 0); 30 (order 4, not a pcp order)
    # is freed in the prepare loop, 40 has no mm_page_free before it, 512 (order 9) none after
    assert batched_pairs(ev, pfn, order).tolist() == [1, 1, 0, 0, 2, -1, 0]


def test_pageblock_types_first_shown_by_the_trace():
    """A pageblock's type at the start is the one the first event naming it prints; a claim's
    zone_locked prints the new type, its extfrag the old one (fallback_migratetype)."""
    from memdesc.sim.replay import first_revealed_types
    ev = np.array([E.PCPU_DRAIN, E.ALLOC_ZONE_LOCKED, E.ALLOC_ZONE_LOCKED, E.EXTFRAG, E.ALLOC_ZONE_LOCKED,
                   E.EXTFRAG], np.uint8)
    pfn = np.array([512 * 3 + 7, 512 * 3, 512 * 5 + 4, 512 * 5 + 4, 512 * 8, 1024 * 6], np.int64)
    cols = {"event": ev, "pfn": pfn, "order": np.array([0, 0, 0, 0, 10, 0], np.int8),
            "mt": np.array([2, 1, 0, 0, 1, 0], np.int8), "fbmt": np.array([-1, -1, -1, 1, -1, 2], np.int8),
            "change_ownership": np.array([-1, -1, -1, 1, -1, 1], np.int8),
            "fallback_order": np.array([-1, -1, -1, 3, -1, 10], np.int8)}
    pb, t = first_revealed_types(cols)
    assert dict(zip(pb.tolist(), t.tolist(), strict=True)) == {
        3: 2,            # the drain came first (Reclaimable); the zone_locked after it is not the start
        5: 1,            # claimed below pageblock_order: Movable before the claim
        8: 1, 9: 1,      # an order-10 block: both pageblocks
        12: 2, 13: 2,    # a whole order-10 claim: the fallback block's two pageblocks were Reclaimable
    }
