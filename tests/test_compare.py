"""memdesc compare: every design of the registry, side by side (sim/compare.py, cli/compare.py)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from conftest import SAMPLE_COMPARE_DESIGNS
from memdesc.cli import app, options
from memdesc.errors import ConfigError
from memdesc.mm import vmstat
from memdesc.mm.machine import Machine
from memdesc.mm.page_alloc import DESIGNS, LinuxDesign, core, design_variants
from memdesc.mm.page_alloc.radix import POLICIES
from memdesc.sim.churn import Churn
from memdesc.sim.compare import (
    MAP_FREE,
    MAP_MOVABLE,
    MAP_OTHER,
    MAP_PCP,
    MAP_RECLAIMABLE,
    MAP_UNMOVABLE,
    downsample,
    fragmentation_frame,
    page_states,
    resolve_designs,
)
from memdesc.sim.replay import replay


def test_variants_come_from_the_registry(monkeypatch):
    assert design_variants() == ["linux", "linux:32", *(f"radix:{p}" for p in POLICIES), "vmem", "llfree"]
    assert resolve_designs("all") == resolve_designs(None) == design_variants()

    class Later(LinuxDesign):  # a design registered later appears without any change to compare
        name = "later"
        spec_values = ("a", "b")

    monkeypatch.setitem(DESIGNS, "later", Later)
    assert design_variants()[-2:] == ["later:a", "later:b"]
    with pytest.raises(ConfigError, match="unknown design 'nope'"):
        resolve_designs("linux,nope")
    with pytest.raises(ConfigError, match="twice"):
        resolve_designs("vmem,vmem")


def test_page_states_count_every_page():
    m = Machine.create("256M", design="linux")
    Churn(m, orders="mix", gfp="mix", occupancy=0.4, seed=5).run(20_000)
    st = page_states(m)
    zs = m.design.zs
    assert np.count_nonzero(st == MAP_FREE) == int(zs.z_free.sum())
    owner = zs.owner[: m.max_pfn]
    assert np.count_nonzero(st == MAP_PCP) == np.count_nonzero(owner == core.OWNER_PCP) > 0
    heads = np.flatnonzero((owner != core.OWNER_NONE) & (owner != core.OWNER_RESERVED) & (owner != core.OWNER_PCP))
    allocated = int(sum(1 << ((int(v) >> 1) & 0xF) for v in owner[heads]))
    typed = np.isin(st, [MAP_UNMOVABLE, MAP_MOVABLE, MAP_RECLAIMABLE])
    assert np.count_nonzero(typed) == allocated
    assert np.count_nonzero(st == MAP_MOVABLE) > 0 and np.count_nonzero(st == MAP_UNMOVABLE) > 0
    assert not np.any(st[heads] == MAP_OTHER)


def test_downsample_takes_the_majority():
    s = np.array([2, 2, 5, 5, 5, 1, 1, 1, 1, 3], np.uint8)
    grid, per = downsample(s, width=2, rows=2)
    assert per == 3 and grid.tolist() == [[2, 5], [1, 3]]


def test_comparison_of_the_sample(sample_comparison):
    c = sample_comparison
    s = c.summary
    assert s["designs"] == SAMPLE_COMPARE_DESIGNS.split(",") and s["check"] == "ok"
    (cap,) = s["captures"]
    assert cap["name"] == "sample" and cap["layout"] == "x86_64" and not cap["has_highmem"]
    d = cap["designs"]
    assert [d[x]["struct_page_bytes"] for x in s["designs"]] == [64, 16, 8]
    # Wilcox's rule: neither radix:reserve nor vmem nor linux allocates on the free path
    for x in s["designs"]:
        r = d[x]
        assert r["free_path_allocations"] == 0 and r["free_stalls"] == 0 and r["check"] == "ok"
        assert r["exact"]["check"] == "ok" and r["highmem"] is None
        assert r["metadata_bytes_per_page"] == pytest.approx(r["metadata_bytes"]["total"] / cap["present_pages"])
        f = r["fragmentation"]
        ev = f["event_index"]
        assert len(ev) >= 150 and all(b - a == f["every"] for a, b in zip(ev, ev[1:], strict=False))
        for o in ("4", "9"):
            assert all(0 <= v <= 1000 for v in f["unusable_index"][o])
            assert all(-1000 <= v <= 1000 for v in f["extfrag_index"][o])
        fb = r["free_blocks"]
        assert fb["pages_by_order"] == [b << o for o, b in enumerate(fb["blocks_by_order"])]
    assert d["vmem"]["metadata_bytes"]["descriptors"] > 0 and d["linux"]["metadata_bytes"]["descriptors"] == 0
    assert set(c.maps) == {("sample", x) for x in s["designs"]}
    assert c.series.filter(pl.col("design") == "vmem").height > 0


def test_compare_figures_equal_a_plain_policy_replay(sample_comparison):
    """The comparison (one snapshot rebuilt for all designs, the trace read once) gives the
    figures a plain policy replay gives."""
    d = sample_comparison.summary["captures"][0]["designs"]["radix:reserve"]
    r = replay(None, mode="policy", design="radix:reserve", every=d["fragmentation"]["every"], model_events=False,
               typed=True)  # compare types every replay
    s = r.machine.summary()
    for k in ("metadata_bytes", "free_path_allocations", "free_stalls", "alloc_failed_for_metadata", "ops",
              "unusable_index", "extfrag_index"):
        assert d[k] == s[k], k
    fr = fragmentation_frame(r.samples).filter(pl.col("zone") == d["fragmentation"]["zone"])
    assert fr["unusable_9"].to_list() == d["fragmentation"]["unusable_index"]["9"]
    bi = r.machine.buddyinfo().to_dict()
    nr = np.array([bi[d["fragmentation"]["zone"]]], np.int64)
    assert vmstat.unusable_index_table_nb(nr)[0].tolist() == d["unusable_index"][d["fragmentation"]["zone"]]
    assert d["free_blocks"]["blocks_by_order"] == [sum(z[o] for z in bi.values()) for o in range(11)]


def test_repr_html(sample_comparison):
    h = sample_comparison._repr_html_()
    assert "<table" in h and "radix:reserve" in h and "metadata_bytes_per_page" in h
    m = Machine.create("64M")
    assert "/proc/buddyinfo" in m._repr_html_() and "free_path_allocations" in m._repr_html_()


def test_cli_compare_fits_80_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(options.console, "width", 80)
    out = tmp_path / "c.json"
    res = CliRunner().invoke(app, ["compare", "--designs", "linux,vmem", "--no-exact", "--json", str(out),
                                   "--parquet", str(tmp_path / "c.parquet")])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(x) for x in lines) <= 80 and "…" not in res.output
    assert "free-path allocs" in res.output and "vmem" in res.output
    d = json.loads(out.read_text())
    assert list(d["captures"][0]["designs"]) == ["linux", "vmem"]
    t = pl.read_parquet(tmp_path / "c.parquet")
    assert t["design"].to_list() == ["linux", "vmem"] and t["check"].to_list() == ["ok", "ok"]
    assert pl.read_parquet(tmp_path / "c.series.parquet").height > 0
    assert pl.read_parquet(tmp_path / "c.free_blocks.parquet").height == 22


def test_cli_compare_usage_errors(tmp_path):
    r = CliRunner().invoke(app, ["compare", "--designs", "linux,bogus"])
    assert r.exit_code == 2 and "unknown design 'bogus'" in r.output
    r = CliRunner().invoke(app, ["compare", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "no such file" in r.output
    r = CliRunner().invoke(app, ["compare", "--highmem", "sometimes"])
    assert r.exit_code == 2 and "auto" in r.output
