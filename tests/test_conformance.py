"""The conformance suite: every registered design held to the same checks.

Parametrised over ``DESIGNS`` (plus each design's non-default specs, e.g. radix's node
policies), so registering a design (memdesc.mm.page_alloc.base.register_design) enrols it:

* a hypothesis state machine against a reference model (live allocations, per-pfn ownership):
  allocations aligned, inside a zone the gfp allows, never overlapping a live allocation, a
  reserved page or the design's own metadata; invalid frees refused with the state unchanged;
  every managed page accounted for (free, per-CPU, allocated, the design's own); the owner
  byte and the statistics contract kept (undeclared metadata counters stay 0); ``check()``
  after every step.  CI runs it short; ``HYPOTHESIS_PROFILE=soak`` (or benchmarks/soak.py)
  runs >= 100,000 steps per design;
* ``inspect`` of a pfn in every state (free, pcp, allocated head, tail, reserved, the design's
  own page), also through the CLI;
* snapshot initialisation from the bundled sample;
* exact and policy replay of the bundled sample, checkpointed halfway and resumed: the resumed
  run ends bit-identical (every state array) to the uninterrupted one; the same for churn;
* Machine.save / Machine.load round trip, and a loaded machine continuing bit-identically;
* NUMBA_DISABLE_JIT=1 equality (subprocess).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as S
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from typer.testing import CliRunner

from memdesc.cli import app
from memdesc.errors import ConfigError, DoubleFree, FormatError, InvalidPfn, NotAllocationHead, OrderMismatch
from memdesc.mm import memmap
from memdesc.mm.machine import Machine, to_gfp
from memdesc.mm.page_alloc import DESIGNS, core, get_design
from memdesc.mm.page_alloc.base import METADATA_COUNTERS
from memdesc.sim.checkpoint import Checkpoints
from memdesc.sim.churn import Churn
from memdesc.sim.replay import replay, sample_path
from memdesc.sim.snapshot import machine_from_snapshot
from memdesc.trace.reader import read_trace
from nojit import both

#: every registered design, and every non-default option value it declares
SPECS = [name for name in DESIGNS] + [f"{name}:{key}={v}" for name, cls in DESIGNS.items()
                                      for key, values in cls.options.items() for v in values
                                      if get_design(f"{name}:{key}={v}") is not cls]
SOAK = os.environ.get("HYPOTHESIS_PROFILE") == "soak"
GFPS = ["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_COMP", "GFP_KERNEL|__GFP_RECLAIMABLE", "GFP_ATOMIC",
        "GFP_DMA32", "GFP_DMA", "GFP_NOWAIT|__GFP_NOWARN", "GFP_HIGHUSER"]


def state_digest(m: Machine) -> dict[str, str]:
    """A digest of every state array of the machine's design."""
    return {name: hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=12).hexdigest()
            for name, a in m.design.state_arrays().items()}


def assert_same_state(a: Machine, b: Machine) -> None:
    sa, sb = a.design.state_arrays(), b.design.state_arrays()
    assert sa.keys() == sb.keys()
    differ = [k for k in sa if sa[k].shape != sb[k].shape or not np.array_equal(sa[k], sb[k])]
    assert not differ, f"state arrays differ: {differ}"


# ------------------------------------------------------------------ the state machine


class ConformanceMachine(RuleBasedStateMachine):
    """Any design against a reference model (see the module docstring)."""

    SPEC = "linux"
    MEM = "64M"
    LAYOUT = "x86_64"
    CONFIG: dict = {}
    #: steps taken by every machine of this class (benchmarks/soak.py reports it)
    steps = 0

    @initialize(pcp=S.booleans())
    def boot(self, pcp):
        self.m = Machine.create(self.MEM, design=self.SPEC, layout=self.LAYOUT, cpus=2, pcp=pcp, **self.CONFIG)
        d = self.m.design
        self.live: dict[int, int] = {}
        self.owned = np.zeros(self.m.max_pfn, np.bool_)
        self.zone_of = np.full(self.m.max_pfn, -1, np.int64)
        for i, z in enumerate(self.m.zones):
            if z.spanned:
                self.zone_of[z.start_pfn:z.end_pfn] = i
        self.managed = int(d.zs.z_managed.sum())
        self.silent = [c for c in METADATA_COUNTERS if c not in d.metadata_counters]
        self.freed: list[tuple[int, int]] = []

    def _step(self):
        type(self).steps += 1

    def _alloc(self, gfp: str, order: int, cpu: int) -> bool:
        p = self.m.alloc_pages(gfp, order, cpu)
        if p is None:
            return False
        n = 1 << order
        assert p % n == 0, f"allocation {p:#x}/{order} not naturally aligned"
        zi = int(self.zone_of[p])
        assert zi >= 0 and int(self.zone_of[p + n - 1]) == zi, "allocation outside a zone or across zones"
        zs = self.m.design.zs
        assert int(zs.z_idx[zi]) <= int(zs.gfp_zone_table[to_gfp(gfp) & 0xF]), f"{gfp} got a page from zone {zi}"
        assert not self.owned[p:p + n].any(), f"allocation {p:#x}/{order} overlaps a live one"
        owner = zs.owner
        assert int(owner[p]) not in (core.OWNER_NONE, core.OWNER_PCP, core.OWNER_RESERVED)
        assert core.owner_order(int(owner[p])) == order, "owner byte: wrong order"
        assert not (owner[p + 1:p + n] != core.OWNER_NONE).any(), "owner byte set inside an allocation"
        assert not self.m.design.is_own_page(p), "the design handed out its own metadata page"
        self.owned[p:p + n] = True
        self.live[p] = order
        return True

    @rule(gfp=S.sampled_from(GFPS), order=S.sampled_from([0, 0, 0, 1, 2, 3, 4, 8, 9, 10]), cpu=S.integers(0, 1),
          n=S.integers(1, 40))
    def alloc(self, gfp, order, cpu, n):
        self._step()
        for _ in range(n):
            self._alloc(gfp, order, cpu)

    @rule(n=S.integers(200, 3000), cpu=S.integers(0, 1))
    def fill(self, n, cpu):
        """Many order-0 user pages: pcp refills, fallbacks, watermarks."""
        self._step()
        for _ in range(n):
            if not self._alloc("GFP_HIGHUSER_MOVABLE|__GFP_COMP", 0, cpu):
                break

    @precondition(lambda self: self.live)
    @rule(data=S.data(), cpu=S.integers(0, 1), n=S.integers(1, 60))
    def free(self, data, cpu, n):
        self._step()
        keys = sorted(self.live)
        seed = data.draw(S.integers(0, 2**32 - 1))
        for i in np.random.default_rng(seed).permutation(len(keys))[:n]:
            p = keys[int(i)]
            order = self.live.pop(p)
            self.m.free_pages(p, order, cpu)  # a free of a live allocation never fails
            self.owned[p:p + (1 << order)] = False
            self.freed.append((p, order))

    def _refused(self, pfn: int, order: int, errors) -> None:
        before = state_digest(self.m)
        with pytest.raises(errors):
            self.m.free_pages(pfn, order)
        assert state_digest(self.m) == before, f"a refused free of {pfn:#x}/{order} changed the state"

    @precondition(lambda self: self.live)
    @rule(data=S.data())
    def free_invalid(self, data):
        """Wrong order, a tail page, a double free: refused, nothing changed."""
        self._step()
        p = data.draw(S.sampled_from(sorted(self.live)))
        o = self.live[p]
        self._refused(p, (o + 1) % 11, OrderMismatch)
        if o > 0:
            self._refused(p + 1, 0, (NotAllocationHead, DoubleFree))
        if self.freed:
            q, qo = self.freed[-1]
            if not self.owned[q:q + (1 << qo)].any() and q not in self.live:
                self._refused(q, qo, (DoubleFree, NotAllocationHead, OrderMismatch, InvalidPfn))

    @rule(pfn=S.integers(0, 1 << 15))
    def free_random_pfn(self, pfn):
        self._step()
        pfn = pfn % self.m.max_pfn
        if self.owned[pfn]:
            return
        self._refused(pfn, 0, (DoubleFree, NotAllocationHead, InvalidPfn, OrderMismatch))

    @rule()
    def drain(self):
        self._step()
        self.m.drain_all_pages()

    @invariant()
    def consistent(self):
        if not hasattr(self, "m"):
            return
        assert self.m.check() == "ok"
        d = self.m.design
        zs = d.zs
        pcp_pages = int(zs.pcp[:, :, core.PCP_COUNT].sum())
        live_pages = int(self.owned.sum())
        own = d.own_pages()
        assert int(zs.z_free.sum()) + pcp_pages + live_pages + own == self.managed, "a managed page is unaccounted"
        stats = self.m.stats()
        for c in self.silent:
            assert stats[c] == 0, f"{c} is not among the {d.name} design's metadata counters but is {stats[c]}"
        if d.fault_injection and not self.CONFIG.get("fail_descriptor_alloc"):
            assert stats["alloc_failed_for_metadata"] == 0


def machine_for(spec: str, layout: str = "x86_64", mem: str = "64M", config: dict | None = None):
    """The state machine class of one design spec (benchmarks/soak.py uses it too)."""
    return type(f"Conformance_{spec.replace(':', '_').replace('=', '_')}_{layout}", (ConformanceMachine,),
                {"SPEC": spec, "LAYOUT": layout, "MEM": mem, "CONFIG": dict(config or {}), "steps": 0})


_HC = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                  HealthCheck.filter_too_much])
#: CI: short; soak: >= 100,000 steps per design (examples x steps)
CI_X86 = settings(max_examples=12, stateful_step_count=25, **_HC)
CI_I386 = settings(max_examples=4, stateful_step_count=15, **_HC)
SOAK_SETTINGS = settings(max_examples=2000, stateful_step_count=60, **_HC)


@pytest.mark.parametrize("spec", SPECS)
def test_state_machine(spec):
    cls = machine_for(spec)
    cls.TestCase.settings = SOAK_SETTINGS if SOAK else CI_X86
    cls.TestCase("runTest").runTest()


@pytest.mark.parametrize("spec", list(DESIGNS))
def test_state_machine_i386(spec):
    """HighMem (not directly mapped): no design may put its metadata there."""
    cls = machine_for(spec, "i386", "1G")
    cls.TestCase.settings = SOAK_SETTINGS if SOAK else CI_I386
    cls.TestCase("runTest").runTest()


def test_fault_injection_state_machine():
    """Designs with fault injection: a 20 % descriptor failure rate changes nothing but failures."""
    for name, cls in DESIGNS.items():
        if cls.fault_injection:
            mc = machine_for(name, config={"fail_descriptor_alloc": 0.2})
            mc.TestCase.settings = SOAK_SETTINGS if SOAK else CI_I386
            mc.TestCase("runTest").runTest()


# ------------------------------------------------------------------ registry and contract


def test_registering_enrols_everywhere():
    from memdesc.cli.options import DESIGN_HELP

    assert list(DESIGNS) == ["linux", "radix", "vmem"] or len(DESIGNS) > 3
    for name, cls in DESIGNS.items():
        assert name in DESIGN_HELP
        assert cls.page_layout in memmap.LAYOUTS and memmap.LAYOUTS[cls.page_layout].words == cls.words
        assert cls.memmap_field in cls.state_cls._fields
        assert get_design(cls.spec()) is cls
    r = CliRunner().invoke(app, ["churn", "--help"])
    assert all(name in r.output for name in DESIGNS)


# ------------------------------------------------------------------ inspect


def _pfn_in_state(m: Machine) -> dict[str, int]:
    """One pfn per state: free, pcp, allocated head, tail, reserved (and the design's own page)."""
    out = {}
    head = m.alloc_pages("GFP_KERNEL|__GFP_COMP", 3)
    out["allocated head"], out["allocated (tail)"] = head, head + 2
    p = m.alloc_pages("GFP_KERNEL", 0, cpu=1)
    m.free_pages(p, 0, cpu=1)
    out["pcp"] = p
    owner = m.design.zs.owner
    for q in range(m.max_pfn):
        if owner[q] == core.OWNER_NONE and m.design.free_extent(q)[0] >= 0:
            out["free"] = q
            break
    out["reserved"] = int(np.flatnonzero(owner == core.OWNER_RESERVED)[0])
    heads = np.flatnonzero((owner != core.OWNER_NONE) & (owner != core.OWNER_PCP) & (owner != core.OWNER_RESERVED))
    own = [int(q) for q in heads if m.design.is_own_page(int(q))]
    if own:
        out["the design's own metadata page"] = own[0]
    return out


@pytest.mark.parametrize("design", list(DESIGNS))
def test_inspect_every_state(design):
    m = Machine.create("64M", design=design, cpus=2)
    for state, pfn in _pfn_in_state(m).items():
        text = m.describe_page(pfn)
        assert m.page_state(pfn).startswith(state), (state, m.page_state(pfn))
        assert f"pfn:{pfn:#x}" in text and f"state: {state}" in text
        info = memmap.describe_page(m.design.page_words(pfn), m.design.page_layout)
        assert info["layout"] == m.design.page_layout and info["words"] == m.design.words
    assert m.check() == "ok"


@pytest.mark.parametrize("design", list(DESIGNS))
def test_inspect_cli_free_page(design, tmp_path):
    """Issue 9 bug: ``memdesc inspect PFN --design vmem`` of a free page ended in a numba
    traceback (KeyError: 'is_buddy'): every design answers through pa_free_extent."""
    m = Machine.create("64M", design=design)
    pfn = _pfn_in_state(m)["free"]
    out = tmp_path / "i.json"
    r = CliRunner().invoke(app, ["inspect", hex(pfn), "--design", design, "--mem", "64M", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "state: free" in r.output
    assert json.loads(out.read_text())["state"].startswith("free")


# ------------------------------------------------------------------ snapshot, replay, checkpoints


@pytest.mark.parametrize("design", list(DESIGNS))
def test_snapshot_initialisation(design):
    m, state, _snap = machine_from_snapshot(sample_path(), "before", design)
    assert m.check() == "ok"
    free = int((np.int64(1) << state.free_order.astype(np.int64)).sum())
    # the design's own metadata pages come out of the snapshot's free memory
    assert int(m.design.zs.z_free.sum()) + m.design.own_pages() == free
    heads = state.alloc_pfn.astype(np.int64)
    assert (m.design.zs.owner[heads] != core.OWNER_NONE).all()



@pytest.mark.parametrize("mode", ["exact", "policy"])
@pytest.mark.parametrize("design", list(DESIGNS))
def test_replay_sample_checkpoint_resume_bit_identical(design, mode, tmp_path):
    """Replay of the bundled sample (from its before snapshot), run through in chunks with a
    checkpoint halfway; resumed from the checkpoint: both end in the same state arrays and
    the same loop arrays (replay map / page locations, counters, samples)."""
    ck = tmp_path / "half.ckpt"
    n = read_trace(sample_path() / "trace.txt.zst").df.height
    half = n // 2
    full = replay(None, mode=mode, design=design, checkpoint=ck, checkpoint_at=half, chunk=n // 7, every=n // 5)
    assert full.check == "ok" and full.events_replayed == n
    if mode == "policy":
        assert full.policy["model_free_errors"] == 0 and full.policy["allocations"] > 0
    else:
        n = full.final_vs_real["0:Normal"]
        assert abs(n["proc_free_pages_diff_pct"]) < 3.0
    resumed = replay(resume=ck, compare=False)
    assert resumed.resumed_at == half and resumed.events_replayed == full.events_replayed - half
    assert_same_state(full.machine, resumed.machine)
    for k, a in full.loop_state.items():
        assert np.array_equal(a, resumed.loop_state[k]), k
    assert (resumed.policy, resumed.notes, resumed.inconsistencies) == (full.policy, full.notes,
                                                                           full.inconsistencies)
    assert resumed.samples.equals(full.samples)
    with pytest.raises(ConfigError, match="another trace"):
        replay(sample_path() / "before.buddyinfo", resume=ck)


@pytest.mark.parametrize("design", list(DESIGNS))
def test_churn_checkpoint_resume_bit_identical(design, tmp_path):
    def make():
        m = Machine.create("128M", design=design, cpus=2)
        return Churn(m, orders="mix", gfp="mix", occupancy=0.6, seed=5)

    plain = make()
    r0 = plain.run(20_000)
    ck = tmp_path / "churn.ckpt"
    run = make()
    r1 = run.run(20_000, chunk=3001, checkpoint=Checkpoints(ck, at=8_000))
    resumed, r2 = Churn.resume(ck)
    assert r2.resumed_at == 8_000 and r2.pairs == 20_000
    for c, r in ((run, r1), (resumed, r2)):
        assert_same_state(plain.m, c.m)
        assert (r.alloc, r.free, r.alloc_failed) == (r0.alloc, r0.free, r0.alloc_failed)
        for k, a in plain.arrays().items():
            assert np.array_equal(a, c.arrays()[k]), k


@pytest.mark.parametrize("spec", SPECS)
def test_save_load_roundtrip(spec, tmp_path):
    m = Machine.create("128M", design=spec, cpus=2)
    Churn(m, orders="mix", gfp="mix", occupancy=0.5, seed=2).run(5000)
    path = m.save(tmp_path / "m.npz")
    m2 = Machine.load(path)
    assert m2.design.spec() == m.design.spec() and type(m2.design) is type(m.design)
    assert_same_state(m, m2)
    assert m2.summary() == m.summary() and m2.check() == "ok"
    # both continue identically
    for x in (m, m2):
        c = Churn(x, orders="mix", gfp="mix", occupancy=0.7, seed=9)
        c.run(3000)
        x.drain_all_pages()
    assert_same_state(m, m2)


def test_save_load_snapshot_machine_and_errors(tmp_path):
    m, _state, _snap = machine_from_snapshot(sample_path(), "before", "vmem")
    m2 = Machine.load(m.save(tmp_path / "s.npz"))
    assert_same_state(m, m2)
    assert m2.pagetypeinfo() == m.pagetypeinfo()  # the online sections are Python-side state
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(FormatError, match="saved machine"):
        Machine.load(bad)


# ------------------------------------------------------------------ without the JIT

_NOJIT = r"""
import hashlib, json, sys
import numpy as np
from memdesc._numba import JIT_DISABLED
from memdesc.mm.machine import Machine
from memdesc.sim.checkpoint import Checkpoints
from memdesc.sim.churn import Churn
design = sys.argv[1]
m = Machine.create("32M", design=design, cpus=2)
c = Churn(m, orders="mix", gfp="mix", occupancy=0.6, seed=3)
r = c.run(1500)
states = {}
for p in (int(c.live[0] >> 4), int(c.live[1] >> 4)):
    states[p] = m.page_state(p)
print(json.dumps({"jit_disabled": JIT_DISABLED, "check": m.check(), "stats": m.stats(),
                  "buddyinfo": m.buddyinfo().to_dict(), "states": states,
                  "arrays": {k: hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()
                             for k, a in m.design.state_arrays().items()}}))
"""


@pytest.mark.parametrize("design", list(DESIGNS))
def test_same_results_without_jit(design):
    nojit, jit = both(_NOJIT, args=[design], timeout=900)
    assert nojit.pop("jit_disabled") is True and jit.pop("jit_disabled") is False
    assert nojit["check"] == "ok"
    assert nojit == jit
