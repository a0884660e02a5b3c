"""memdesc sweep: the grid, Dask on a LocalCluster, one Parquet row per cell, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest

from memdesc.errors import ConfigError
from memdesc.sim.replay import sample_path
from memdesc.sim.sweep import grid, load_done, parse_params, parts_dir, run
from schema_check import check


def test_grid_applies_each_parameter_where_it_belongs():
    p = parse_params(["radix_nodes=consume,reserve", "fail_descriptor_alloc=0,0.01", "occupancy=0.3,0.6"])
    cells = grid(["churn:256M", str(sample_path())], "linux,radix,vmem", p)
    by = {(c["capture"].split("/")[-1], c["design"]): [] for c in cells}
    for c in cells:
        by[c["capture"].split("/")[-1], c["design"]].append(c["params"])
    # linux: only occupancy (churn cells); radix: node policy in the spec; vmem: fault rate
    assert by["churn:256M", "linux"] == [{"occupancy": 0.3}, {"occupancy": 0.6}]
    assert by["sample", "linux"] == [{}]
    assert by["sample", "radix:radix_nodes=consume"] == [{"radix_nodes": "consume"}]
    assert len(by["churn:256M", "radix:radix_nodes=reserve"]) == 2
    assert sorted(x["fail_descriptor_alloc"] for x in by["sample", "vmem"]) == [0.0, 0.01]
    assert len(cells) == len({c["id"] for c in cells}) == 2 + 1 + 4 + 2 + 4 + 2
    # the same cell has the same id in every run
    same = grid(["churn:256M", str(sample_path())], "linux,radix,vmem", p)
    assert [c["id"] for c in same] == [c["id"] for c in cells]


def test_grid_errors():
    with pytest.raises(ConfigError, match="occupancy applies to churn cells"):
        grid([str(sample_path())], "linux", parse_params(["occupancy=0.5"]))
    with pytest.raises(ConfigError, match="fail_descriptor_alloc applies to the vmem design"):
        grid(["churn"], "linux,radix", parse_params(["fail_descriptor_alloc=0.1"]))
    with pytest.raises(ConfigError, match="unknown parameter"):
        parse_params(["pcp_high_fraction=8"])
    with pytest.raises(ConfigError, match="expected NAME=V1"):
        parse_params(["occupancy"])
    with pytest.raises(ConfigError, match="no such file"):
        grid(["/nonexistent/capture"], "linux", {})


SWEEP = ["churn:128M", "--designs", "linux,vmem", "--param", "occupancy=0.2,0.4,0.6", "--param", "ops=2000000",
         "--workers", "1"]


def _cli(*args):
    return [sys.executable, "-m", "memdesc.cli", "sweep", *args]


def test_sweep_resumes_after_a_kill_without_redoing_finished_cells(tmp_path):
    out = tmp_path / "sweep.parquet"
    cells = grid(["churn:128M"], "linux,vmem", parse_params(["occupancy=0.2,0.4,0.6", "ops=2000000"]))
    env = dict(os.environ, COLUMNS="120")
    p = subprocess.Popen(_cli(*SWEEP, "--out", str(out)), env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    parts = parts_dir(out)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and p.poll() is None:
            if parts.is_dir() and any(parts.glob("*.parquet")):
                break
            time.sleep(0.02)
    finally:
        os.killpg(p.pid, signal.SIGKILL)  # the client, the scheduler and the workers
        p.wait(timeout=60)
    first = load_done(out)
    assert not out.exists(), "killed before the merge"
    assert 1 <= first.height < len(cells), "the kill must interrupt the sweep"
    assert first["run_id"].n_unique() == 1
    killed_run = first["run_id"][0]

    # run the same grid again, in process: only the cells not finished run
    res = run(cells, out, workers=1)
    assert res.skipped == first.height and res.ran == len(cells) - first.height and res.failed == 0
    table = pl.read_parquet(out)
    assert table.height == len(cells) and table["cell_id"].n_unique() == len(cells)
    assert not parts.exists()
    again = table.filter(pl.col("cell_id").is_in(first["cell_id"].to_list()))
    assert again["run_id"].to_list() == [killed_run] * first.height
    assert again["finished_at"].sort().to_list() == first["finished_at"].sort().to_list()
    assert set(table["check"]) == {"ok"} and table["error"].null_count() == len(cells)
    assert sorted(table["param_occupancy"].unique().to_list()) == [0.2, 0.4, 0.6]
    assert (table.filter(pl.col("design") == "vmem")["free_path_allocations"] == 0).all()

    # and once more through the CLI: nothing left to run; its JSON fits the committed schema
    js = tmp_path / "sweep.json"
    r = subprocess.run(_cli(*SWEEP, "--out", str(out), "--json", str(js)), env=env, capture_output=True,
                       text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    d = check("sweep", json.loads(js.read_text()))
    assert d["ran"] == 0 and d["skipped"] == len(cells) and len(d["rows"]) == len(cells) and d["check"] == "ok"
    assert pl.read_parquet(out).equals(table)


def test_pcp_high_fraction_is_a_parameter_of_every_cell():
    p = parse_params(["percpu_pagelist_high_fraction=0,8"])
    cells = grid([str(sample_path())], "linux,vmem", p)
    assert sorted((c["design"], c["params"]["percpu_pagelist_high_fraction"]) for c in cells) == [
        ("linux", 0), ("linux", 8), ("vmem", 0), ("vmem", 8)]
