"""The ``radix`` design (Kent Overstreet's buddy allocator with XArray-deque free lists).

What is checked, and against what:

* the 2-word struct page: word 0 zone/node bits, type and order; word 1 of a free page is
  the index of its slot, which an independent ``xa_load`` of that slot confirms;
* ``metadata_bytes``: 16 B per pfn of memmap plus the tree-node pages;
* node policy ``host`` (nodes outside the model) makes exactly the placement decisions of
  ``linux`` (doubly linked lists) on the same operation stream: the deques keep list order;
* ``consume`` never stalls on x86-64 (every zone directly mapped); on i386 with lowmem
  exhausted, HighMem frees stall, the pages are parked (not lost) and inserted later;
* ``reserve``: no free-path allocation and no stall in the same experiment; its cost is
  allocations failing with ``alloc_failed_for_reserve``;
* misuse raises memdesc errors and leaves the state unchanged;
* freeing everything merges the zones back to max-order blocks;
* design specs (``radix:reserve``) and the ``--radix-nodes`` option.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from memdesc.cli import app
from memdesc.errors import ConfigError, DoubleFree, InvalidPfn, MemdescError, OrderMismatch
from memdesc.lib import _xarray_kernels as kx
from memdesc.mm import memmap as mmap
from memdesc.mm.machine import Machine
from memdesc.mm.mm_init import i386_layout, x86_64_layout
from memdesc.mm.mmzone import MAX_PAGE_ORDER, NR_PAGE_ORDERS, PAGE_SIZE
from memdesc.mm.page_alloc import DESIGNS, RadixDesign, design_spec, get_design
from memdesc.mm.page_alloc import radix as rx
from memdesc.sim.churn import Churn

GFPS = ["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_COMP", "GFP_KERNEL|__GFP_RECLAIMABLE", "GFP_ATOMIC",
        "GFP_DMA32", "GFP_USER"]


def _state_digest(m: Machine) -> str:
    h = hashlib.sha1()
    st = m.design.state
    for f in type(st)._fields:
        a = getattr(st, f)
        if isinstance(a, np.ndarray):
            h.update(f.encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _lowmem_exhausted(mem: str, design: str, nhigh: int):
    """An i386 machine with ``nhigh`` HighMem pages allocated, then lowmem allocated with
    GFP_KERNEL and GFP_ATOMIC until both fail (kernel allocations eat lowmem)."""
    m = Machine.create(mem, layout="i386", design=design, cpus=2)
    high = [m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0) for _ in range(nhigh)]
    assert None not in high
    low = []
    for g in ("GFP_KERNEL", "GFP_ATOMIC"):
        for order in range(MAX_PAGE_ORDER, -1, -1):
            while (p := m.alloc_pages(g, order)) is not None:
                low.append((p, order))
    return m, high, low


def _accounted(m: Machine, live_pages: int) -> bool:
    """Every managed page is free, on a pcp list, allocated by the caller, or node memory."""
    zs = m.design.zs
    from memdesc.mm.page_alloc import core

    total = int(zs.z_free.sum() + zs.pcp[:, :, core.PCP_COUNT].sum()) + live_pages + m.design.node_pages()
    return total == int(zs.z_managed.sum())


# ------------------------------------------------------------------ layout


def test_two_word_struct_page_and_word_layout():
    m = Machine.create("256M", design="radix", cpus=2)
    d = m.design
    assert d.struct_page_bytes == 16 and d.words == 2
    assert d.state.memmap.shape == (m.max_pfn, 2)
    # a free block: word 0 type free + order, word 1 = its slot in its list's XArray
    blk = d.free_blocks()
    pfn, order = int(blk[-1, 0]), int(blk[-1, 1])
    w0, w1 = (int(x) for x in d.page_words(pfn))
    zi = m.layout.zone_of_pfn(pfn)
    z = m.zones[zi]
    assert w0 >> mmap.ZONES_PGSHIFT == mmap.zone_node_bits(z.node, m.layout.zone_types.index(z.ztype)) \
        >> mmap.ZONES_PGSHIFT
    assert w0 & mmap.R2_TYPE_MASK == mmap.R2_FREE
    assert (w0 >> mmap.R2_ORDER_SHIFT) & mmap.R2_ORDER_MASK == order
    assert w1 & rx.W1_ON_LIST and not w1 & rx.W1_PARKED
    idx, side = w1 >> rx.W1_SHIFT, (w1 >> 1) & 1
    lids = [lid for lid in range(d.state.dq.shape[0]) if d.state.dq[lid, rx.DQ_COUNT] > 0]
    pool = kx.XaPool(d.state.xa_slots, d.state.xa_marks, d.state.xa_meta, d.state.xa_free, d.state.xa_ctl,
                     d.state.xa_xas)
    holders = [lid for lid in lids if kx.xa_load_nb(pool, d.state.xa_heads, 2 * lid + side, idx) == (pfn << 1) | 1]
    assert len(holders) == 1
    # allocated compound page: head type allocated + order, word 1 0; tails point at the head
    p = m.alloc_pages("GFP_KERNEL|__GFP_COMP", 3)
    w0, w1 = (int(x) for x in d.page_words(p))
    assert w0 & mmap.R2_TYPE_MASK == mmap.R2_ALLOC and (w0 >> mmap.R2_ORDER_SHIFT) & mmap.R2_ORDER_MASK == 3
    assert w1 == 0
    for i in range(1, 8):
        t0, t1 = (int(x) for x in d.page_words(p + i))
        assert t0 & mmap.R2_TYPE_MASK == mmap.R2_TAIL and t1 == p
    # an order-0 page freed to a pcp list: type pcp, the list's cpu in word 0
    q = m.alloc_pages("GFP_KERNEL", 0, cpu=1)
    m.free_pages(q, 0, cpu=1)
    w0 = int(d.page_words(q)[0])
    assert w0 & mmap.R2_TYPE_MASK == mmap.R2_PCP and (w0 >> mmap.R2_CPU_SHIFT) & mmap.R2_CPU_MASK == 1
    assert m.check() == "ok"


def test_metadata_bytes_include_tree_nodes():
    m = Machine.create("512M", design="radix", cpus=2)
    Churn(m, order=0, gfp="GFP_KERNEL", occupancy=0.5, seed=3).run(20_000)
    md = m.metadata_bytes()
    ns = m.design.node_stats()
    assert md["memmap"] == 16 * m.max_pfn
    assert ns["node_pages"] > 0 and md["descriptors"] == ns["node_pages"] * PAGE_SIZE == ns["tree_node_bytes"]
    assert md["total"] == sum(v for k, v in md.items() if k != "total")
    # the nodes in the trees fit in the node pages (7 x 576-byte nodes per page)
    assert ns["nodes_live"] + ns["nodes_spare"] <= ns["node_pages"] * (PAGE_SIZE // 576)
    s = m.summary()
    assert s["struct_page_bytes"] == 16 and s["design_stats"]["tree_node_bytes"] == md["descriptors"]
    assert s["free_stalls"] == m.design.design_stats()["free_stalls"] == 0 and "free_stalls" not in s["design_stats"]
    json.dumps(s, default=int)
    # linux: 64-byte struct page, no tree nodes
    lm = Machine.create("512M", design="linux", cpus=2)
    assert lm.metadata_bytes()["memmap"] == 4 * md["memmap"]


# ------------------------------------------------------------------ same decisions as linux


def _op_stream(m: Machine, seed: int, n: int) -> list[int]:
    rng = np.random.default_rng(seed)
    live: list[tuple[int, int]] = []
    out = []
    for i in range(n):
        if live and rng.random() < 0.47:
            p, o = live.pop(int(rng.integers(len(live))))
            m.free_pages(p, o, cpu=int(rng.integers(2)))
        else:
            o = int(rng.choice([0, 0, 0, 1, 2, 3, 4, 9, 10]))
            p = m.alloc_pages(GFPS[int(rng.integers(len(GFPS)))], o, cpu=int(rng.integers(2)))
            out.append(-1 if p is None else p)
            if p is not None:
                live.append((p, o))
        if i % 997 == 0:
            m.drain_all_pages()
    for p, o in live:
        m.free_pages(p, o)
    m.drain_all_pages()
    return out


@pytest.mark.parametrize("mem,layout", [("96M", "x86_64"), ("1000M", "i386")])
def test_host_nodes_make_linux_decisions(mem, layout):
    # one layout for both (the memmap's size, hence the reserved pages, depends on the words)
    lay = (x86_64_layout if layout == "x86_64" else i386_layout)(mem).with_cpus(2)
    lin = Machine(lay, "linux")
    rad = Machine(lay, "radix:host")
    np.testing.assert_array_equal(lin.design.free_blocks(), rad.design.free_blocks())
    a = _op_stream(lin, 11, 4000)
    b = _op_stream(rad, 11, 4000)
    assert a == b
    assert len(set(a)) > 200  # the stream is not trivial
    np.testing.assert_array_equal(lin.design.nr_free, rad.design.nr_free)
    np.testing.assert_array_equal(lin.design.free_blocks(), rad.design.free_blocks())
    assert rad.check() == "ok" and rad.design.node_pages() == 0


# ------------------------------------------------------------------ the wall


def test_consume_on_x86_64_never_stalls():
    m = Machine.create("1G", design="radix:consume", cpus=2)
    Churn(m, orders="mix", gfp="mix", occupancy=0.9, seed=5).run(40_000)
    ns = m.design.node_stats()
    assert m.check() == "ok"
    assert ns["free_stalls"] == 0 and ns["parked_on_free_path"] == 0
    # Kent's path: frees that needed nodes consumed the page being freed
    assert ns["free_path_allocations"] == ns["freed_pages_consumed_for_nodes"] + ns["node_pages_taken_while_freeing"]
    assert ns["freed_pages_consumed_for_nodes"] > 0


@pytest.fixture(scope="module")
def i386_consume():
    m, high, low = _lowmem_exhausted("1200M", "radix:consume", 20_000)
    rng = np.random.default_rng(2)
    freed = [high[i] for i in rng.permutation(len(high))]
    for p in freed:
        m.free_pages(p, 0, cpu=int(rng.integers(2)))
    return m, freed, low


def test_consume_on_i386_stalls_highmem_frees_without_losing_pages(i386_consume):
    m, freed, low = i386_consume
    ns = m.design.node_stats()
    assert ns["free_stalls"] > 0 and ns["parked_now"] > 0
    assert ns["free_stalls"] <= len(freed) + ns["parked_on_free_path"]
    assert m.check() == "ok"
    live = sum(1 << o for _, o in low)
    assert _accounted(m, live)
    # every freed HighMem page is on a free list (parked or in a tree), none allocated
    st = m.design.state
    types = st.memmap[np.array(freed), 0] & np.uint64(mmap.R2_TYPE_MASK)
    assert set(np.unique(types).tolist()) <= {mmap.R2_FREE, mmap.R2_PCP, mmap.R2_NONE}
    assert mmap.R2_ALLOC not in set(np.unique(types).tolist())


def test_parked_entries_are_inserted_when_lowmem_returns(i386_consume):
    m, freed, low = i386_consume
    before = m.design.node_stats()
    assert before["parked_now"] > 0
    for p, o in low[-300:]:  # lowmem comes back (these frees are consumed for nodes)
        m.free_pages(p, o)
    m.drain_all_pages()
    ns = m.design.node_stats()
    assert ns["parked_now"] == 0
    assert ns["parked_entries_inserted_later"] >= before["parked_now"]
    assert m.check() == "ok"
    # the HighMem pages are allocatable again: all of them
    got = 0
    while m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0) is not None:
        got += 1
    assert got >= len(freed)


def test_reserve_never_allocates_while_freeing():
    m, high, low = _lowmem_exhausted("1200M", "radix:reserve", 20_000)
    for p in high:
        m.free_pages(p, 0)
    m.drain_all_pages()
    ns = m.design.node_stats()
    assert ns["free_path_allocations"] == 0 and ns["free_stalls"] == 0 and ns["parked_now"] == 0
    assert ns["reserve_target_bytes"] <= ns["tree_node_bytes"]
    assert m.check() == "ok"
    # the cost: with lowmem gone, HighMem allocations fail because nodes cannot be reserved
    ok = fail = 0
    for _ in range(40_000):  # more than were freed: the spare those frees left runs out
        if m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0) is None:
            fail += 1
        else:
            ok += 1
    ns = m.design.node_stats()
    assert fail > 0 and ns["alloc_failed_for_reserve"] == fail
    assert m.stats()["alloc_failed_for_metadata"] == fail
    assert m.design.zs.z_free[[i for i, z in enumerate(m.zones) if z.name == "HighMem"][0]] > 0
    assert ns["free_path_allocations"] == 0 and m.check() == "ok"


# ------------------------------------------------------------------ misuse


def test_invalid_calls_raise_and_change_nothing():
    m = Machine.create("128M", design="radix", cpus=2)
    p = m.alloc_pages("GFP_KERNEL", 2)
    q = m.alloc_pages("GFP_KERNEL", 0)
    m.free_pages(q, 0)
    node_pfn = int(m.design.state.nb_pfn[0])
    before = _state_digest(m)
    with pytest.raises(OrderMismatch):
        m.free_pages(p, 1)
    with pytest.raises(DoubleFree):
        m.free_pages(q, 0)
    with pytest.raises(InvalidPfn):
        m.free_pages(m.max_pfn + 5, 0)
    with pytest.raises(InvalidPfn):
        m.free_pages(node_pfn, 0)  # the allocator's own tree-node memory
    with pytest.raises(MemdescError):
        m.free_pages(p + 1, 0)
    with pytest.raises(MemdescError):
        m.alloc_pages("GFP_KERNEL", NR_PAGE_ORDERS)
    assert _state_digest(m) == before
    assert m.check() == "ok"


@pytest.mark.parametrize("policy", ["consume", "reserve", "host"])
def test_free_everything_merges_back(policy):
    m = Machine.create("256M", design=f"radix:{policy}", cpus=2)
    boot_small = int(m.design.nr_free[:, :MAX_PAGE_ORDER].sum())
    boot_blocks = m.design.node_stats()["node_pages"]
    _op_stream(m, 3, 3000)
    ns = m.design.node_stats()
    assert m.check() == "ok" and _accounted(m, 0)
    # each node block taken after boot broke at most one max-order block into at most
    # MAX_PAGE_ORDER smaller free blocks
    small = int(m.design.nr_free[:, :MAX_PAGE_ORDER].sum())
    assert small <= boot_small + MAX_PAGE_ORDER * (int(m.design.state.rx[rx.RX_NBLOCKS]) - min(boot_blocks, 1))
    if policy == "host":
        lm = Machine.create("256M", design="radix:host", cpus=2)
        # the same free extents as at boot (pageblock types may have changed by fallback stealing)
        def extents(mm):
            return sorted(map(tuple, mm.design.free_blocks()[:, :2].tolist()))
        assert extents(m) == extents(lm)
    assert ns["parked_now"] == 0


# ------------------------------------------------------------------ specs and CLI


def test_design_specs():
    assert get_design("radix") is RadixDesign and DESIGNS["radix"] is RadixDesign
    r = get_design("radix:reserve")
    assert r is get_design("radix:radix_nodes=reserve") is RadixDesign.with_options(radix_nodes="reserve")
    assert r.node_policy == "reserve" and r.name == "radix" and issubclass(r, RadixDesign)
    assert get_design("radix:consume") is RadixDesign
    for bad in ("radix:bogus", "radix:colour=red", "linux:reserve", "radix:", "nosuch:x", "radix:a=b,a=c"):
        with pytest.raises(ConfigError):
            get_design(bad)
    assert design_spec("radix", radix_nodes=None) == "radix"
    assert design_spec("radix", radix_nodes="host") == "radix:radix_nodes=host"
    with pytest.raises(ConfigError, match="radix design only"):
        design_spec("vmem", radix_nodes="reserve")
    with pytest.raises(ConfigError, match="twice"):
        design_spec("radix:reserve", radix_nodes="consume")
    m = Machine.create("1000M", layout="i386", design="radix:reserve", cpus=2)
    assert m.design.node_policy == "reserve" and m.summary()["design_stats"]["policy"] == "reserve"


def test_cli_radix_nodes(tmp_path):
    runner = CliRunner()
    out = tmp_path / "s.json"
    r = runner.invoke(app, ["churn", "--design", "radix", "--radix-nodes", "reserve", "--mem", "256M",
                            "--ops", "3000", "--json", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert d["check"] == "ok" and d["struct_page_bytes"] == 16
    assert d["design_stats"]["policy"] == "reserve" and d["free_path_allocations"] == 0
    r = runner.invoke(app, ["churn", "--design", "linux", "--radix-nodes", "reserve", "--mem", "256M",
                            "--ops", "10"])
    assert r.exit_code != 0
    assert "radix design only" in str(r.exception) + r.output


def test_parked_tail_entries_on_a_second_cpu():
    """rmqueue_bulk refills a per-CPU list at its tail: on CPU 1 with no node to be had, those
    insertions park on the tail chain, and a failed retry must leave the chain intact (word 0
    holds both the list's CPU and the chain link of a parked pcp page)."""
    m, high, low = _lowmem_exhausted("1200M", "radix:consume", 20_000)
    rng = np.random.default_rng(4)
    for i in rng.permutation(len(high)):
        m.free_pages(high[i], 0, cpu=0)
    assert m.design.node_stats()["parked_now"] > 0
    st = m.design.state
    nbl = int(st.rx[rx.RX_NBL])
    got = []
    seen_tail_parked_cpu1 = False
    for _ in range(3000):
        p = m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0, cpu=1)
        if p is not None:
            got.append(p)
        pw = st.dq[nbl:, rx.DQ_PCPW]
        cpu1 = ((pw >> mmap.R2_CPU_SHIFT) & mmap.R2_CPU_MASK) == 1
        seen_tail_parked_cpu1 |= bool((st.dq[nbl:, rx.DQ_TOV_OLD][cpu1] >= 0).any())
        if len(got) % 500 == 0:
            assert m.check() == "ok"
    assert seen_tail_parked_cpu1
    assert m.check() == "ok"
    for p, o in low:
        m.free_pages(p, o)
    for p in got:
        m.free_pages(p, 0, cpu=1)
    m.drain_all_pages()
    assert m.check() == "ok" and m.design.node_stats()["parked_now"] == 0
    assert _accounted(m, 0)
