"""The memdesc type table (mm/memdesc.py): numbering, layouts, sizes, W=1 encode/decode."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memdesc.errors import ConfigError, InvalidOrder
from memdesc.mm import memdesc as md
from memdesc.mm import memmap as mm
from memdesc.mm.page_alloc import LinuxDesign, RadixDesign, VmemDesign, vmem_arena
from memdesc.sim.ontology import pack_descriptors

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_type_ids_are_the_one_word_layout_of_memmap():
    assert len({t.id for t in md.MEMDESC_TYPES}) == len(md.MEMDESC_TYPES)
    for t in md.MEMDESC_TYPES:
        assert mm.MD_TYPE_NAMES[t.id] == t.name
    # the constants the vmem design writes into its memdesc words are the table's
    assert (mm.MD_FREE, mm.MD_BUDDY_ALLOC, mm.MD_SLAB) == (md.MD_FREE, md.MD_BUDDY_ALLOC, md.MD_SLAB) == (5, 8, 4)
    assert (md.MD_ZSMALLOC, md.MD_PERCPU) == (12, 13)  # the extension
    assert all(0 <= t.id < md.NR_MD_TYPES for t in md.MEMDESC_TYPES)


def test_kinds_refine_types_and_bare_subtypes_are_memmaps():
    ids = {t.id for t in md.MEMDESC_TYPES}
    for k in md.KINDS:
        assert k.type_id in ids
        if k.subtype >= 0:
            assert k.type_id == md.MD_MISC and k.desc is None
            assert k.name == f"misc:{mm.MD_SUBTYPE_NAMES[k.subtype]}"
        else:
            assert k.type_id != md.MD_MISC
    assert set(mm.MD_SUBTYPE_NAMES) == {k.subtype for k in md.KINDS if k.subtype >= 0}


def test_architecture_doc_w1_table_lists_the_numbering():
    text = (DOCS / "architecture.md").read_text()
    line = next(s for s in text.splitlines() if s.startswith("| 0-3 |") and "type" in s)
    pairs: dict[int, str] = {}
    for a, b in re.findall(r"(\d+) ([a-z][a-z-]*)", line):
        pairs.setdefault(int(a), b)
    for t in md.MEMDESC_TYPES:
        assert pairs.get(t.id) == t.name, (t.id, t.name, pairs)


def test_struct_page_sizes_are_the_designs():
    assert md.DESIGN_SPECS["linux"].struct_page_bytes == LinuxDesign.words * 8 == 64
    assert md.DESIGN_SPECS["radix"].struct_page_bytes == RadixDesign.words * 8 == 16
    assert md.DESIGN_SPECS["vmem"].struct_page_bytes == VmemDesign.words * 8 == 8
    assert md.DESIGN_SPECS["linux:32"].struct_page_bytes == 32
    assert md.DESIGN_SPECS["llfree"].struct_page_bytes == 8
    assert [d for d in md.DESIGN_NAMES if not md.DESIGN_SPECS[d].separate_descriptors] == ["linux"]


def test_descriptor_layouts_are_disjoint_aligned_and_pinned():
    specs = {d.cache: d for k in md.KINDS for d in (k.desc, k.desc_large) if d is not None and d.cache}
    for d in specs.values():
        spans = sorted((o, o + s) for _, o, s in d.fields)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), d.struct
        assert d.bytes % md.MD_DESC_ALIGN == 0 and d.bytes >= spans[-1][1]
    # sizes from the sources (mm_types.h, slab.h, zpdesc.h, netmem.h) + pfn, 16-byte aligned
    assert {c: specs[c].bytes for c in specs} == {
        "folio": 80, "folio_large": 128, "folio_hugetlb": 160, "slab": 64, "ptdesc": 64, "zpdesc": 64,
        "netmem_desc": 64, "movable": 48, "mappable": 32, "hwpoison": 32}
    assert md.BUDDY.bytes == vmem_arena.DESC_BYTES == 32
    # today's overlays fit struct page, a large folio its first four
    assert md.overlay_bytes("file", 0) == 64 and md.overlay_bytes("file", 9) == 256
    assert md.overlay_bytes("file", 1) == 128  # an order-1 folio has two struct pages
    assert md.ZPDESC.overlay_bytes == 56 and md.NETMEM.overlay_bytes == 48


def test_descriptor_bytes_per_design():
    for kind in ("file", "anon", "slab", "pagetable", "free", "misc:driver"):
        assert md.descriptor_bytes(kind, "linux", 0) == 0
    for d in ("linux:32", "radix", "vmem", "llfree"):
        assert md.descriptor_bytes("file", d, 0) == 80
        assert md.descriptor_bytes("anon", d, 3) == 128
        assert md.descriptor_bytes("slab", d, 3) == 64
        assert md.descriptor_bytes("free", d, 5) == 0
        assert md.descriptor_bytes("misc:reserved", d) == 0
        assert md.descriptor_bytes("percpu", d) == 0
    with pytest.raises(ConfigError, match="unknown design"):
        md.descriptor_bytes("file", "solaris")
    with pytest.raises(ConfigError, match="unknown memdesc kind"):
        md.descriptor_bytes("folio", "vmem")


def test_descriptor_caches_table():
    assert md.DESCRIPTOR_CACHES["folio"] == 80 and md.DESCRIPTOR_CACHES["buddy"] == 32
    assert md.objects_per_slab(80) == 51 and md.objects_per_slab(128) == 32 and md.objects_per_slab(64) == 64
    rows = md.type_table()
    assert [r["kind"] for r in rows] == list(md.KIND_NAMES)


def test_lines_touched_hand_computed():
    # a 64-byte object is always line aligned: one field, one line
    assert md.lines_touched(((0, 8),), 64) == 1.0
    # 80-byte objects at phases 0, 16, 32, 48: bytes 0 and 72 always straddle two lines
    assert md.lines_touched(((0, 8), (72, 1)), 80) == 2.0
    # 32-byte objects at phases 0, 32: the first 16 bytes are one line
    assert md.lines_touched(((0, 16),), 32) == 1.0
    # 48-byte objects at 0, 48, 96, 144: 1, 2, 2, 1 lines
    assert md.lines_touched(((0, 48),), 48) == 1.5
    assert md.lines_touched((), 80) == 0.0


def test_descriptor_slab_recursion_hand_computed():
    by_kind, caches = pack_descriptors({"file": {"folio": 51}})
    # one folio slab page; it and the slab cache's own page need struct slabs: 2 objects, 1 page
    assert caches["folio"]["slab_pages"] == 1 and caches["slab"] == {
        "objects": 2, "object_bytes": 64, "objects_per_slab": 64, "slab_pages": 1}
    assert by_kind["file"] == 51 * 80
    assert by_kind["descriptor_slabs"] == 2 * 4096 - 51 * 80
    by_kind, caches = pack_descriptors({"slab": {"slab": 64}, "file": {"folio": 52}})
    # 64 census slabs fill a page; 2 folio pages + the slab pages' own struct slabs spill a second
    assert caches["folio"]["slab_pages"] == 2
    assert caches["slab"]["objects"] == 64 + 2 + 2 and caches["slab"]["slab_pages"] == 2
    assert sum(by_kind.values()) == 4 * 4096


@settings(max_examples=300, deadline=None)
@given(sub=st.integers(0, 127), mappable=st.booleans(), order=st.integers(0, 63), zone=st.integers(0, 7),
       node=st.integers(0, 1023))
def test_bare_word_round_trip(sub, mappable, order, zone, node):
    w = md.encode_bare(sub, mappable=mappable, order=order, zone=zone, node=node)
    d = md.decode(w)
    assert d == {"type": 0, "type_name": "misc", "subtype": sub, "subtype_name": mm.MD_SUBTYPE_NAMES.get(sub, str(sub)),
                 "mappable": mappable, "order": order, "zone": zone, "node": node}
    # the bare layout is memmap's W=1 Field table (describe_page decodes it the same way)
    pd = mm.describe_page([w], "memdesc")
    assert (pd["order"], pd["zone"], pd["node"], pd["mappable"]) == (order, zone, node, mappable)


@settings(max_examples=300, deadline=None)
@given(t=st.integers(1, 15), slot=st.integers(1, (1 << 60) - 1))
def test_descriptor_word_round_trip(t, slot):
    addr = slot << 4
    w = md.encode_descriptor(t, addr)
    assert md.decode(w) == {"type": t, "type_name": mm.MD_TYPE_NAMES[t], "descriptor": addr}
    assert mm.describe_page([w], "memdesc")["descriptor"] == addr


def test_array_kernels_round_trip():
    rng = np.random.default_rng(7)
    n = 5000
    typ = rng.integers(0, 16, n)
    sub = rng.integers(0, 128, n)
    mp = rng.integers(0, 2, n)
    order = rng.integers(0, 64, n)
    zone = rng.integers(0, 8, n)
    node = rng.integers(0, 1024, n)
    addr = rng.integers(1, 1 << 40, n) << 4
    words = np.empty(n, np.uint64)
    md.md_encode_words(typ, sub, mp, order, zone, node, addr.astype(np.uint64), words)
    out = [np.empty(n, np.int64) for _ in range(6)] + [np.empty(n, np.uint64)]
    md.md_decode_words(words, *out)
    bare = typ == 0
    assert (out[0] == typ).all()
    for got, want in zip(out[1:6], (sub, mp, order, zone, node), strict=True):
        assert (got[bare] == want[bare]).all() and (got[~bare] == 0).all()
    assert (out[6][~bare] == addr[~bare]).all() and (out[6][bare] == 0).all()
    assert all(md.decode(int(w))["type"] == t for w, t in zip(words[:200], typ[:200], strict=True))


def test_encode_rejects_what_does_not_fit():
    with pytest.raises(ConfigError, match="7 bits"):
        md.encode_bare(128)
    with pytest.raises(InvalidOrder, match="6 order bits"):
        md.encode_bare(0, order=64)
    with pytest.raises(ConfigError, match="do not fit"):
        md.encode_bare(0, node=1024)
    with pytest.raises(ConfigError, match="16-byte aligned"):
        md.encode_descriptor(1, 0x1008)
    with pytest.raises(ConfigError, match="not a descriptor type"):
        md.encode_descriptor(0, 0x1000)
    with pytest.raises(ConfigError, match="64-bit"):
        md.decode(1 << 64)
