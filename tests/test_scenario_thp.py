"""``memdesc scenario thp-after-pagecache``: order-9 folios after page cache and anon filled memory.

Expectations from the designs' rules (memdesc.sim.thp_scenario's theory statement): linux's
descriptor is the struct page of the destination, so migration and split allocate no
descriptor; radix, vmem and linux:32 allocate one per migrated folio (and per new folio of
a split); so does llfree, whose one-word memmap separates descriptors too.  Direct
compaction after a failed request can only add order-9 folios, never take any away (both
variants start from the same seeded state, which the test checks).  Seeded figures are
pinned at 256M so that a change in any layer moves them.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from memdesc.cli import app
from memdesc.errors import ConfigError
from memdesc.sim.scenarios import SCENARIOS
from memdesc.sim.thp_scenario import ALL_DESIGNS, runs_for, thp_after_pagecache
from nojit import jsonable, run_json
from schema_check import check

MEM = "256M"
_cache: dict = {}


def run(design: str, compaction: bool):
    key = (design, compaction)
    if key not in _cache:
        _cache[key] = thp_after_pagecache(design, MEM, seed=1, compaction=compaction)
    return _cache[key]


def _before_thp(r) -> dict:
    """What steps 1-2 determined (equal in both variants of a seed)."""
    d = r.counts()
    return {"phases": d["phases"][:2], **{k: d[k] for k in (
        "files", "anon_regions", "file_folios_by_order", "anon_folios_by_order", "kswapd_reclaimed", "files_dropped",
        "regions_unmapped", "dontneed_zaps", "deferred_splits", "deferred_split_descriptor_allocations")}}


@pytest.mark.parametrize("design", ALL_DESIGNS)
def test_invariants(design):
    off, on = run(design, False), run(design, True)
    for r in (off, on):
        assert r.check == "ok", r.check
        # the fill went down to the low watermark (counted without the per-CPU lists, which the
        # figure after the step includes: drained, they add their pages -- measured at most
        # 1051 pages, vmem; bound 1100)
        fill = r.phases[0]
        assert r.low_wmark_pages <= fill.free_pages_after <= r.low_wmark_pages + 1100
        assert fill.file_pages > 0 and fill.anon_pages > 0
        # page cache has large folios (readahead), anon mTHPs of order 4 (the policy's highest)
        assert max(map(int, r.file_folios_by_order)) >= 4
        assert max(map(int, r.anon_folios_by_order)) == 4
        assert r.thp_obtained + r.thp_failed == r.thp_requested
        assert r.thp_failed >= 1 or r.thp_requested == r.managed_pages >> 9
    assert _before_thp(off) == _before_thp(on)
    assert off.compact_stall == off.pages_migrated == 0
    # the anon page tables stay exact: with compaction, the rmap walk of migration points the
    # PTEs/PMDs of every migrated anon folio at its new pfns
    assert off.page_tables_after_thp == on.page_tables_after_thp == "ok"
    assert on.thp_obtained >= off.thp_obtained
    assert (off.compaction, on.compaction) == ("off", "on")
    assert on.compact_stall >= 1


@pytest.mark.parametrize("design", ["linux", "linux:32", "radix", "vmem", "llfree"])
def test_descriptor_allocations_per_design(design):
    """linux: struct page is the descriptor, nothing allocated to migrate or split; the others
    allocate one descriptor per migrated folio and one per new folio of a split."""
    r = run(design, True)
    split = r.deferred_splits
    if design == "linux":
        assert r.migrate_descriptor_allocations == r.split_descriptor_allocations == 0
        assert r.deferred_split_descriptor_allocations == 0
    else:
        if r.pages_migrated:
            assert r.migrate_descriptor_allocations > 0
        if split:
            assert r.deferred_split_descriptor_allocations >= split
    assert r.migrate_descriptor_allocations <= r.pages_migrated


#: seeded figures at 256M, seed 1 (thp_requested, thp_obtained, pages_migrated,
#: migrate_descriptor_allocations, deferred_splits, deferred_split_descriptor_allocations) per
#: (design, compaction)
PINNED: dict = {
    ("linux", False): (36, 35, 0, 0, 193, 0),
    ("linux", True): (47, 46, 3853, 0, 193, 0),
    ("linux:32", False): (36, 35, 0, 0, 193, 3048),
    ("linux:32", True): (47, 46, 3066, 384, 193, 3048),
    ("radix", False): (39, 38, 0, 0, 200, 3160),
    ("radix", True): (44, 43, 4546, 535, 200, 3160),
    ("vmem", False): (41, 40, 0, 0, 199, 3144),
    ("vmem", True): (50, 49, 3290, 468, 199, 3144),
    ("llfree", False): (27, 26, 0, 0, 208, 3316),
    ("llfree", True): (27, 26, 0, 0, 208, 3316),
}


@pytest.mark.parametrize("key", sorted(PINNED))
def test_pinned_figures(key):
    design, comp = key
    r = run(design, comp)
    got = (r.thp_requested, r.thp_obtained, r.pages_migrated, r.migrate_descriptor_allocations, r.deferred_splits,
           r.deferred_split_descriptor_allocations)
    assert got == PINNED[key]


def test_registered_and_deterministic():
    assert "thp-after-pagecache" in SCENARIOS and "highmem-free" in SCENARIOS
    a = run("linux", True).counts()
    b = thp_after_pagecache("linux", MEM, seed=1, compaction=True).counts()
    assert a == b
    c = thp_after_pagecache("linux", MEM, seed=2, compaction=False)
    assert c.check == "ok" and c.seed == 2 and c.counts() != run("linux", False).counts()


def test_bad_arguments():
    with pytest.raises(ConfigError, match="--file-share"):
        thp_after_pagecache("linux", MEM, file_share=1.5)
    with pytest.raises(ConfigError, match="--max-chunk"):
        thp_after_pagecache("linux", MEM, max_chunk="10K")
    with pytest.raises(ConfigError, match="--max-failures"):
        thp_after_pagecache("linux", MEM, max_failures=0)
    with pytest.raises(ConfigError, match="--mem"):
        thp_after_pagecache("linux", "32M")
    with pytest.raises(ConfigError, match="unknown design"):
        runs_for("sparc", "both")
    with pytest.raises(ConfigError, match="--variant"):
        runs_for("linux", "sometimes")
    assert runs_for("all", "both")[:2] == [("linux", False), ("linux", True)]


def test_cli_json_validates(tmp_path):
    p = tmp_path / "thp.json"
    r = CliRunner().invoke(app, ["scenario", "thp-after-pagecache", "--design", "vmem", "--mem", MEM,
                                 "--json", str(p)])
    assert r.exit_code == 0, r.output
    assert "THP obtained" in r.output and "free blocks per order" in r.output
    data = check("scenario-thp", p)
    assert [x["variant"] for x in data["runs"]] == ["no-compaction", "compaction"]
    assert data["check"] == "ok"
    # the same figures as the library call (the CLI adds nothing of its own)
    assert data["runs"][1]["thp_obtained"] == thp_after_pagecache("vmem", MEM, compaction=True).thp_obtained


def test_cli_bad_options():
    runner = CliRunner()
    r = runner.invoke(app, ["scenario", "thp-after-pagecache", "--design", "sparc"])
    assert r.exit_code == 2 and "unknown design" in r.output
    r = runner.invoke(app, ["scenario", "thp-after-pagecache", "--drop-fraction", "2"])
    assert r.exit_code == 2 and "--drop-fraction" in r.output
    r = runner.invoke(app, ["scenario", "thp-after-pagecache", "--variant", "maybe"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["scenario", "--help"])
    assert r.exit_code == 0 and "thp-after-pagecache" in r.output


def test_nojit_equal():
    """The kernels give the same figures interpreted (NUMBA_DISABLE_JIT=1), on a small run."""
    code = ("import json; from memdesc.sim.thp_scenario import thp_after_pagecache as t; "
            "r = t('vmem', '64M', seed=3, compaction=True, max_chunk='1M'); print(json.dumps(r.counts()))")
    nojit = run_json(code, jit=False, timeout=600)
    jit = thp_after_pagecache("vmem", "64M", seed=3, compaction=True, max_chunk="1M").counts()
    assert nojit == jsonable(jit)
