"""Typed replay: every allocation of a replayed trace is a typed allocation of the folio layer,
with its descriptor allocated and freed on the design (memdesc.sim.replay, issue 10 part 7)."""

from __future__ import annotations

import pytest

from memdesc.mm.gfp import parse_gfp
from memdesc.mm.machine import Machine
from memdesc.mm.memmap import MD_ANON, MD_SLAB
from memdesc.mm.page_alloc import fault_injection_designs
from memdesc.mm.page_alloc.dispatch import pa_page_memdesc
from memdesc.sim import memtypes as MT
from memdesc.sim.replay import replay
from memdesc.trace.kpageflags import KPageSnapshot
from memdesc.trace.reader import read_trace, to_numpy_columns
from test_replay import KERNEL_GFP, MOVABLE, RECLAIMABLE_GFP, UNMOVABLE, T, alloc, frame, free  # noqa: I001

#: bundled sample (anon capture, kmem events only: the classifier alone), type agreement:
#: deterministic (the trace and after.kpageflags), so pinned exactly
SAMPLE_AGREEMENT = {"pages": 22940, "agree": 22603}
#: allocation events per type the classifier gives the sample (pinned: the rules of CLASSIFIER_RULES)
SAMPLE_SOURCES = {"classifier": {"misc": 477, "file": 22117, "anon": 173508, "slab": 452, "pagetable": 4612}}


@pytest.fixture(scope="module")
def sample_policy():
    return {d: replay(None, mode="policy", design=d, compare=False, typed=True) for d in ("linux", "radix", "vmem")}


def test_sample_type_agreement_pinned(sample_policy):
    for r in sample_policy.values():
        ta = r.type_agreement
        assert {k: ta[k] for k in SAMPLE_AGREEMENT} == SAMPLE_AGREEMENT
        assert sum(sum(row.values()) for row in ta["matrix"].values()) == ta["pages"]
        # the confusion matrix: every file page the model kept is file in kpageflags; the
        # disagreement is page tables kpageflags shows flagless (freed or pcp by the dump)
        assert set(ta["matrix"]["file"]) == {"file"}
        assert ta["matrix"]["pgtable"]["other"] > 300
        assert r.typed["sources"] == SAMPLE_SOURCES


def test_sample_typed_policy_every_design(sample_policy):
    lin, rad, vm = (sample_policy[d] for d in ("linux", "radix", "vmem"))
    for r in (lin, rad, vm):
        assert r.check == "ok"
        ty = r.typed
        assert ty["descriptor_failures"] == 0
        # the same trace allocations are live at the end on every design (same demand stream)
        assert ty["live"] == lin.typed["live"] > 20000
        assert ty["types"]["anon"]["alloc"] == SAMPLE_SOURCES["classifier"]["anon"]
        assert len(ty["descriptor_bytes_over_time"]) >= 8
    # linux overlays every descriptor on struct page: nothing is allocated beside the pages
    assert lin.typed["two_part_allocations"] == 0 and lin.typed["descriptor_bytes"] == {}
    # radix and vmem: every typed allocation with a descriptor is two allocations
    for r in (rad, vm):
        ty = r.typed
        with_desc = sum(row["alloc"] for name, row in ty["types"].items() if name != "misc")
        assert ty["two_part_allocations"] == with_desc
        # live descriptors: 80 B per small folio, 128 B per large, 64 B struct slab / ptdesc
        sizes = ty["descriptor_sizes"]
        for name, row in ty["types"].items():
            if name == "misc":
                assert row["descriptors_live"] == 0
                continue
            assert sizes[name][0] <= row["descriptor_bytes"] / max(1, row["descriptors_live"]) <= sizes[name][1]
        assert ty["descriptor_bytes"]["file"] > 1_500_000
    # the vmem rule: no allocation on a free path, for any type
    assert vm.typed["free_path_allocations"] == 0
    # radix's own tree nodes are allocated on free paths; its descriptors never are
    assert rad.typed["free_path_allocations_slab"] == 0


def test_linux_32_separates_descriptors_over_the_same_buddy(sample_policy):
    """linux:32: Linux's list buddy under a 32-byte struct page, descriptors from the slab --
    the same typed allocations as linux, each with a descriptor beside it."""
    r = replay(None, mode="policy", design="linux:32", compare=False, typed=True)
    lin, rad = sample_policy["linux"], sample_policy["radix"]
    assert r.check == "ok"
    d = r.machine.design
    assert d.struct_page_bytes == 32 and d.spec() == "linux:struct_page=32"
    assert d.memmap_bytes() * 2 == lin.machine.design.memmap_bytes()
    ty = r.typed
    assert ty["struct_page_bytes"] == 32 and ty["descriptors_separate"]
    assert ty["live"] == lin.typed["live"] and ty["two_part_allocations"] == rad.typed["two_part_allocations"]
    assert ty["descriptor_bytes"] == rad.typed["descriptor_bytes"]  # the plan's sizes, no extra word
    assert ty["free_path_allocations"] == 0


def test_typing_does_not_move_linux(sample_policy):
    """On linux descriptors overlay struct page: a typed replay makes exactly the allocator
    decisions of an untyped one."""
    untyped = replay(None, mode="policy", design="linux", compare=False, typed=False)
    assert untyped.typed is None and untyped.type_agreement is None
    typed = sample_policy["linux"]
    assert typed.machine.buddyinfo().to_dict() == untyped.machine.buddyinfo().to_dict()
    assert typed.policy == untyped.policy


@pytest.mark.parametrize("design", ["linux", "radix", "vmem"])
def test_sample_typed_exact(design):
    r = replay(None, mode="exact", design=design, typed=True)
    assert r.check == "ok"
    ty = r.typed
    assert ty["live"] > 20000 and ty["descriptor_failures"] == 0
    if design == "vmem":
        assert ty["free_path_allocations"] == 0
    if design == "linux":
        assert ty["two_part_allocations"] == 0
    else:
        assert ty["two_part_allocations"] > 150_000
    assert r.type_agreement["pages"] == SAMPLE_AGREEMENT["pages"]


def _split_rows():
    # an order-2 kernel allocation (classified bare driver memory: no descriptor) and a slab
    # page of order 2 (GFP_RECLAIMABLE: a struct slab), each freed in pieces (split_page)
    return [
        alloc(T, 2, KERNEL_GFP, UNMOVABLE),
        alloc(T + 64, 2, RECLAIMABLE_GFP, UNMOVABLE),
        free(T + 65, 0),
        free(T + 64, 0),
        free(T + 66, 1),
        free(T, 2),
    ]


@pytest.mark.parametrize("design", ["linux", "radix", "vmem"])
def test_split_free_of_a_typed_allocation(design):
    m = Machine.create("64M", cpus=2, design=design)
    r = replay(frame(_split_rows()), mode="policy", machine=m, typed=True)
    assert r.check == "ok" and r.policy["model_free_errors"] == 0
    ty = r.typed
    assert ty["live"] == 0 and sum(ty["descriptor_bytes"].values()) == 0
    assert ty["types"]["slab"]["alloc"] == 1
    if design == "vmem":
        # vmem cannot split in place: the slab stays whole, typed, until its last piece goes
        assert ty["typed_allocations_split"] == 0 and ty["types"]["slab"]["free"] == 1
        assert ty["free_path_allocations"] == 0
    else:
        # split_page() ends the typing: the pieces are bare pages (the descriptor is freed)
        assert ty["typed_allocations_split"] == 1 and ty["types"]["slab"]["free"] == 1


@pytest.mark.parametrize("design", fault_injection_designs())
def test_descriptor_fault_injection_in_typed_replay(design):
    """failslab on every descriptor cache: failed descriptors fail their allocations (counted as
    model failures), nothing is lost, every free still succeeds."""
    r = replay(None, mode="policy", design=design, compare=False, config={"fail_descriptor_alloc": 0.05}, typed=True)
    ty = r.typed
    assert r.check == "ok" and r.policy["model_free_errors"] == 0
    assert ty["descriptor_failures"] > 1000
    assert r.policy["model_failures"] >= ty["descriptor_failures"]
    if design == "vmem":
        assert ty["free_path_allocations"] == 0
    free = r.folios.op_stats()["free"]
    assert free["invalid"] == 0 and free["ok"] == free["calls"] > 100_000


def test_classifier_types_reach_the_design():
    # a slab allocation on linux: PGTY_slab in its head page's page_type (the overlay)
    m = Machine.create("64M", cpus=2)
    rows = [alloc(T, 0, RECLAIMABLE_GFP, UNMOVABLE),
            alloc(T + 1, 0, parse_gfp("GFP_HIGHUSER_MOVABLE|__GFP_ZERO"), MOVABLE)]
    r = replay(frame(rows), mode="policy", machine=m, typed=True)
    fo = r.folios
    slots = [fo.page_folio(p) for p in range(m.max_pfn) if fo.page_folio(p) is not None]
    types = sorted(fo.type_name(s) for s in set(slots))
    assert types == ["anon", "slab"]
    s = next(s for s in set(slots) if fo.type_name(s) == "slab")
    assert int(pa_page_memdesc(m.state, fo.pfn(s))[0]) == MD_SLAB
    assert MD_ANON in {int(fo.state.mtype[x]) for x in set(slots)}


# ------------------------------------------------------------------ the shared captures

#: type_agreement fraction per capture, measured (docs/memdesc.md, "Type agreement on the
#: captures"); deterministic (trace + after dump), bound = measured - 0.005.  reclaim is below
#: the 0.90 target: anon folios of processes still running after tracing stopped, freed before
#: the dump (its not_free_in_dump figure is 0.9186)
CAPTURE_AGREEMENT = {"build": 0.9991, "pagecache": 0.9985, "files": 0.9996, "mthp": 0.9871, "reclaim": 0.8126,
                     "compaction": 0.9964}


def _agreement(capture):
    rr = read_trace(capture / "trace.txt.zst")
    cols = to_numpy_columns(rr.df, ("event", "pfn", "order", "gfp", "line"))
    snap = KPageSnapshot.from_capture(capture, "after")
    types, _src, holder = MT.allocation_types(cols, snap.npfn, MT.folio_type_events(capture / "trace.txt.zst"))
    return MT.type_agreement(types, holder, snap.page_class)


@pytest.mark.shared
@pytest.mark.parametrize("capture", sorted(CAPTURE_AGREEMENT))
def test_type_agreement_on_the_captures(shared_traces, capture):
    ta = _agreement(shared_traces / capture)
    assert ta["fraction"] >= CAPTURE_AGREEMENT[capture] - 0.005
    if capture == "reclaim":
        # the disagreement is pages the dump shows free (or flagless: pcp), the model's anon
        assert ta["matrix"]["anon"]["free"] > 25_000 and ta["matrix"]["anon"]["other"] > 14_000
        assert ta["not_free_in_dump"]["fraction"] >= 0.9186 - 0.005
    else:
        assert ta["fraction"] >= 0.90


@pytest.mark.shared
def test_typed_replay_of_a_capture_on_vmem(shared_traces):
    """mthp (folio-level events): typed policy replay on vmem -- check ok with descriptors, no
    allocation on a free path, the replay's agreement the one computed from the trace alone."""
    r = replay(shared_traces / "mthp", mode="policy", design="vmem", compare=False, model_events=False, typed=True)
    ty = r.typed
    assert r.check == "ok" and ty["free_path_allocations"] == 0 and ty["descriptor_failures"] == 0
    assert ty["sources"]["filemap"]["file"] > 1000 and ty["sources"]["lru_insertion"]["anon"] > 1000
    assert ty["two_part_allocations"] > 0 and ty["descriptor_bytes"]["file"] > 0
    ta = _agreement(shared_traces / "mthp")
    assert {k: r.type_agreement[k] for k in ("pages", "agree")} == {k: ta[k] for k in ("pages", "agree")}
