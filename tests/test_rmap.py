"""The anon rmap walk (memdesc.mm.rmap): migration rewrites the page tables that map a folio.

Expectations from Linux 6.18 (mm/migrate.c remove_migration_ptes / remove_migration_pte /
remove_migration_pmd, mm/rmap.c rmap_walk_anon, __folio_set_anon): after a mapped anon folio
moves, every PTE (PMD) that named page k of the source names page k of the destination with
its write bit, in every mm of the folio's anon_vma (the faulting mm and its forked child);
mapcounts and references are the source's; a later unmap frees the destination.  A split of
a PMD-mapped folio first turns each PMD mapping into a PTE table (unmap_folio with
TTU_SPLIT_HUGE_PMD).  Without the walk ``AddressSpaces.check()`` names the first stale entry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memdesc.mm import folio as F
from memdesc.mm import huge_memory as H
from memdesc.mm import migrate as M
from memdesc.mm.compaction import Compaction
from memdesc.mm.machine import Machine
from memdesc.mm.memmap import MD_ANON
from memdesc.mm.memory import PTE_PFN_MASK, PTE_ZERO, AddressSpaces

P = 4096
MB2 = 2 << 20
SETTINGS = H.ThpSettings(enabled="madvise", sizes={"64kB": "always"})


def _space(design: str) -> tuple[AddressSpaces, int, int]:
    """An mm with a PMD THP (2 MiB, MADV_HUGEPAGE), 4 order-4 mTHPs (256 KiB) and 8 order-0
    pages (MADV_NOHUGEPAGE), forked; the child wrote one page of the first mTHP (a COW copy
    faulted by the child).  (aspace, parent, child)."""
    a = AddressSpaces(Machine.create("64M", design=design, cpus=2), SETTINGS, vpages=1 << 18)
    mm = a.mm_alloc()
    thp = a.mmap(mm, MB2)
    a.madvise_hugepage(mm, thp, MB2)
    mthp = a.mmap(mm, 64 * P)
    small = a.mmap(mm, 8 * P)
    a.madvise_hugepage(mm, small, 8 * P, on=False)
    for addr, n in ((thp, MB2), (mthp, 64 * P), (small, 8 * P)):
        assert a.touch(mm, addr, n)["ok"] == n // P
    child = a.fork(mm)
    assert a.fault(child, mthp + 3 * P) == "ok"
    return a, mm, child


def _mapped_anon(a: AddressSpaces) -> list[int]:
    ms = a.folios.state
    top = int(ms.meta[F.MM_TOP])
    return [s for s in range(top) if ms.mtype[s] == MD_ANON and F.folio_mapcount(ms, s) > 0]


def _tables(a: AddressSpaces) -> dict:
    """Every present entry: (mm, "pte"/"pmd", index) -> (pfn, flag bits)."""
    st = a.st
    out = {}
    for kind, arr in (("pte", st.pte), ("pmd", st.pmd)):
        mm, idx = np.nonzero(arr)
        for m, i in zip(mm.tolist(), idx.tolist(), strict=True):
            v = int(arr[m, i])
            if not v & int(PTE_ZERO):
                out[(m, kind, i)] = ((v & int(PTE_PFN_MASK)) - 1, v & ~int(PTE_PFN_MASK))
    return out


def _counters(ms, s) -> tuple:
    return (int(ms.order[s]), int(ms.ref[s]), int(F.folio_mapcount(ms, s)), int(ms.emap[s]), int(ms.lmap[s]),
            int(ms.index[s]), int(ms.anon_vma[s]))


def _migrate_all(a: AddressSpaces, slots: list[int]) -> dict[int, int]:
    """migrate_pages() (alloc_migration_target) of the folios, each isolated with a reference:
    old slot -> new slot."""
    f = a.folios
    f.state = F.grow_memdesc_state(f.state, 4 * F.MAX_PIECES + len(slots))
    f._ensure()
    ms = f.state
    for s in slots:
        F.folio_get(ms, s)
    arr = np.array(slots, np.int64)
    out = np.full(len(slots), -1, np.int64)
    out_slot = np.full(len(slots), -1, np.int64)
    stats = np.zeros(M.NR_MS, np.int64)
    rc = int(M.migrate_pages(ms, f.slab.state, f.pa, arr, np.int64(len(slots)), np.int64(0), out, out_slot, stats))
    assert rc == 0 and (out == M.MIG_OK).all(), (rc, out)
    for ns in out_slot:
        f.put(int(ns))
    return dict(zip(slots, out_slot.tolist(), strict=True))


def _teardown(a: AddressSpaces, mms) -> dict:
    for m in mms:
        a.exit_mm(m)
    ms = a.folios.state
    return {"check": a.check(), "anon_live": int(ms.tstat[MD_ANON, F.TS_LIVE]),
            "anon_live_pages": int(ms.tstat[MD_ANON, F.TS_LIVE_PAGES]), "machine": a.machine.check()}


def scenario(design: str) -> dict:
    """The whole story on one design, JSON-ready (also run under NUMBA_DISABLE_JIT=1)."""
    a, mm, child = _space(design)
    ms = a.folios.state
    slots = _mapped_anon(a)
    before = {s: (int(ms.pfn[s]), _counters(ms, s)) for s in slots}
    tables = _tables(a)
    moved = _migrate_all(a, slots)
    ms = a.folios.state
    pfn_map = {}
    for s, ns in moved.items():
        pfn, cnt = before[s]
        assert _counters(ms, ns) == cnt, (s, ns)
        assert int(ms.pfn[ns]) != pfn
        for k in range(1 << cnt[0]):
            pfn_map[pfn + k] = int(ms.pfn[ns]) + k
    want = {key: (pfn_map[pfn], bits) for key, (pfn, bits) in tables.items()}
    got = _tables(a)
    res = {"design": design, "folios": sorted(int(ms.order[ns]) for ns in moved.values()),
           "entries": len(got), "tables_as_expected": got == want, "check_after_migrate": a.check(),
           "rmap": a.rmap_stats(), "mms": sorted({k[0] for k in got})}
    res.update(_teardown(a, (child, mm)))
    return res


DESIGNS = ["linux", "vmem"]


@pytest.mark.parametrize("design", DESIGNS)
def test_migrate_pages_rewrites_every_mapping(design):
    r = scenario(design)
    # 1 PMD THP, 4 mTHPs of order 4 (one of them with a page COW-copied away in the child),
    # 8 small pages, and the child's order-0 COW copy
    assert r["folios"] == [0] * 9 + [4] * 4 + [9]
    assert r["mms"] == [0, 1]
    assert r["tables_as_expected"] and r["check_after_migrate"] == "ok", r
    # every PTE of both mms: 2 * (64 + 8) - 1 shared pages plus the child's copy; the PMD twice
    assert r["rmap"] == {"walks": 14, "ptes_remapped": 2 * (64 + 8), "pmds_remapped": 2, "pmds_split": 0}
    assert r["entries"] == 2 * (64 + 8) + 2
    # unmapping both mms frees every destination: nothing anon is left, no leak
    assert r["check"] == "ok" and r["machine"] == "ok"
    assert r["anon_live"] == r["anon_live_pages"] == 0


def test_without_the_walk_the_tables_are_stale():
    """The check this change relies on: a migrated folio's old PTE is what check() names."""
    a, mm, child = _space("linux")
    ms = a.folios.state
    s = next(s for s in _mapped_anon(a) if ms.order[s] == 4)
    ms.anon_vma[s] = 0   # no rmap anchor: the walk cannot find the page tables
    _migrate_all(a, [s])
    assert "maps a page that is not in a live anon folio" in a.check()


@pytest.mark.parametrize("design", DESIGNS)
def test_split_of_a_pmd_mapped_thp_splits_every_pmd_then_pieces_migrate(design):
    """try_split_folio's pieces: the split turns the PMD of both mms into PTE tables (thp_split_pmd
    counted twice), the 512 order-0 pieces migrate and their PTEs follow."""
    a, mm, child = _space(design)
    ms = a.folios.state
    (s,) = [s for s in _mapped_anon(a) if ms.order[s] == 9]
    pfn = int(ms.pfn[s])
    ev0 = a.events()["thp_split_pmd"]
    f = a.folios
    f.get(s)
    pieces = f.split(s, 0)
    assert len(pieces) == 512 and None not in pieces
    assert a.events()["thp_split_pmd"] == ev0 + 2
    assert a.rmap_stats()["pmds_split"] == 2
    assert not a.st.pmd.any()
    assert a.check() == "ok"
    f.put(pieces[0])
    moved = _migrate_all(a, pieces[:64])
    ms = f.state
    for i, ns in enumerate(moved.values()):
        for m in (mm, child):
            v = int(a.st.pte[m, (int(ms.index[ns]))])
            assert (v & int(PTE_PFN_MASK)) - 1 == int(ms.pfn[ns]) != pfn + i
    assert a.check() == "ok"
    r = _teardown(a, (mm, child))
    assert r == {"check": "ok", "anon_live": 0, "anon_live_pages": 0, "machine": "ok"}


#: (pages migrated, walks, PTEs rewritten) of the compaction test, seeded figures
COMPACTED = {"linux": (1003, 1003, 1011), "vmem": (1139, 1139, 1147)}


@pytest.mark.parametrize("design", DESIGNS)
def test_compaction_migrates_mapped_anon_folios_and_the_tables_follow(design):
    """compact_memory over a fragmented zone: the anon folios it moves (PTE- and PMD-mapped,
    shared with a child) are found by the walk; check() stays ok and the unmap frees them."""
    a, mm, child = _space(design)
    # fragment: more small anon folios, every other one unmapped
    extra = a.mmap(mm, 4096 * P)
    a.madvise_hugepage(mm, extra, 4096 * P, on=False)
    a.touch(mm, extra, 4096 * P)
    for i in range(0, 4096, 2):
        a.madvise_dontneed(mm, extra + i * P, P)
    c = Compaction(a.folios)
    c.compact_memory()
    moved = c.stats()["pages_migrated"]
    st = a.rmap_stats()
    # measured: the order-0 folios of the zone start move (one walk each); 8 of them are the
    # small pages the child shares, so 8 more PTEs than pages
    assert (moved, st["walks"], st["ptes_remapped"]) == COMPACTED[design], (moved, st)
    assert a.check() == "ok"
    r = _teardown(a, (mm, child))
    assert r == {"check": "ok", "anon_live": 0, "anon_live_pages": 0, "machine": "ok"}


def test_nojit_equals_jit():
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from test_rmap import scenario; "
            "print(json.dumps(scenario('linux')))")
    jit = scenario("linux")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    p = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == json.loads(json.dumps(jit))
    assert jit["tables_as_expected"]
