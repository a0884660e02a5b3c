"""Sweeps: a grid of captures x designs x parameters run as Dask tasks, one Parquet row per cell.

Theory
------
A question over many captures, designs and parameter values ("how do the designs'
fragmentation and metadata move with the watermark scale factor, on every capture?") is
a grid of independent cells.  :func:`grid` expands it; each cell is one run:

* a capture (directory or trace file): a **policy replay** of its trace on the design,
  from the machine rebuilt from ``before.*``, with the cell's allocator tunables;
* the word ``churn`` (or ``churn:MEM``): a **synthetic churn** on an empty machine of
  ``MEM`` (default 1G) with the cell's workload parameters.

Parameters (:data:`PARAMS`) say where they apply: allocator tunables to every cell,
``fail_descriptor_alloc`` to vmem only, ``radix_nodes`` to radix only (it becomes the
design spec), workload parameters (occupancy, order mix, gfp mix, ops, seed) to churn
cells only.  In a cell where a parameter does not apply it is left out (null in the
table) and the duplicate cells this makes collapse into one; a parameter that applies to
no cell of the grid is an error.  ``percpu_pagelist_high_fraction`` (the pcp high fraction)
is an allocator tunable: 0 keeps the kernel's auto-tuning of each pcp's high, N >= 8 fixes it
at managed / N per CPU of the node.

Each cell has a stable id (a hash of its capture path, design, kind and applicable
parameters).  Cells run as Dask tasks (:func:`run`: a ``LocalCluster`` of worker
processes by default, an existing cluster with ``scheduler``); the client writes each
finished cell as its own Parquet part file under ``OUT.parts/`` the moment it arrives,
then merges every part with the rows already in ``OUT`` into ``OUT`` (written atomically).
A cell whose id is already in ``OUT`` or in a part file is not run again, so an
interrupted sweep loses only the cells that were running, and rerunning the same command
finishes the grid.  A cell that fails is a row with ``error`` set (and is retried by the
next run).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np
import polars as pl

from memdesc.errors import ConfigError
from memdesc.mm import vmstat
from memdesc.mm.machine import COUNTERS, Machine
from memdesc.mm.page_alloc import design_spec, fault_injection_designs, get_design
from memdesc.sim.churn import Churn
from memdesc.sim.compare import ORDERS, main_zone, resolve_designs
from memdesc.sim.replay import replay

CHURN = "churn"


@dataclass(frozen=True)
class Param:
    """A sweep parameter: how its values parse, which cells it applies to, where it goes."""

    name: str
    parse: Callable[[str], object]
    target: str  # "config" (AllocConfig), "design" (design spec option), "churn" (workload)
    designs: tuple[str, ...] | None = None  # designs it applies to (None: all)
    help: str = ""


def _bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {s!r}")


def _orders(s: str) -> str:
    if s == "mix":
        return s
    o = int(s)
    if not 0 <= o <= 10:
        raise ValueError(f"order {o} outside 0..10")
    return str(o)


PARAMS: dict[str, Param] = {p.name: p for p in (
    Param("watermark_scale_factor", int, "config", help="vm.watermark_scale_factor (default 10)"),
    Param("watermark_boost_factor", int, "config", help="vm.watermark_boost_factor (default 15000)"),
    Param("min_free_kbytes", int, "config", help="vm.min_free_kbytes (default: the kernel's formula)"),
    Param("pcp", _bool, "config", help="per-CPU page lists on/off"),
    Param("percpu_pagelist_high_fraction", int, "config",
          help="vm.percpu_pagelist_high_fraction: 0 auto-tunes pcp high (default), N >= 8 fixes it"),
    Param("fail_descriptor_alloc", float, "config", fault_injection_designs(),
          "fraction of descriptor allocations failed"),
    Param("radix_nodes", str, "design", ("radix",), "radix node policy: consume, reserve, host"),
    Param("occupancy", float, "churn", help="churn: target allocated fraction"),
    Param("orders", _orders, "churn", help="churn: one order 0..10, or mix"),
    Param("gfp", str, "churn", help="churn: gfp flags as ftrace prints them, or mix"),
    Param("ops", int, "churn", help="churn: measured alloc+free pairs"),
    Param("seed", int, "churn", help="churn: random seed"),
)}


def parse_params(specs: Sequence[str]) -> dict[str, list]:
    """``["NAME=V1,V2", ...]`` -> {name: [values]} (each value parsed; names checked)."""
    out: dict[str, list] = {}
    for spec in specs:
        name, eq, vals = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not vals.strip():
            raise ConfigError(f"--param {spec!r}: expected NAME=V1,V2,...")
        if name not in PARAMS:
            raise ConfigError(f"--param {name}: unknown parameter; known: {', '.join(PARAMS)}")
        if name in out:
            raise ConfigError(f"--param {name} given twice")
        p = PARAMS[name]
        try:
            out[name] = [p.parse(v.strip()) for v in vals.split(",") if v.strip()]
        except ValueError as e:
            raise ConfigError(f"--param {name}: {e}") from None
    return out


def _is_churn(capture: str) -> bool:
    return capture == CHURN or capture.startswith(CHURN + ":")


def _applies(p: Param, capture: str, design: str) -> bool:
    if p.target == "churn" and not _is_churn(capture):
        return False
    base = design.partition(":")[0]
    return p.designs is None or base in p.designs


def cell_id(cell: dict) -> str:
    key = json.dumps({k: cell[k] for k in ("capture", "design", "kind", "params")}, sort_keys=True, default=str)
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def grid(captures: Sequence[str | Path], designs: str | Sequence[str] | None,
         params: dict[str, list] | None = None) -> list[dict]:
    """Every cell of captures x designs x parameter values (see the theory statement)."""
    params = params or {}
    caps = []
    for c in captures:
        s = str(c)
        if _is_churn(s):
            caps.append(s)
            continue
        p = Path(s)
        if not p.exists():
            raise ConfigError(f"{p}: no such file or directory")
        caps.append(str(p.resolve()))
    if not caps:
        raise ConfigError("sweep: no capture given (a capture directory, a trace file, or churn[:MEM])")
    specs = resolve_designs(designs)
    for name in params:
        p = PARAMS[name]
        if not any(_applies(p, c, d) for c in caps for d in specs):
            where = "churn cells (give churn as a CAPTURE)" if p.target == "churn" else \
                f"the {' and '.join(p.designs or ())} design"
            raise ConfigError(f"--param {name} applies to {where} only: no cell of this grid")
    names = list(params)
    cells: dict[str, dict] = {}
    for cap, spec in product(caps, specs):
        for values in product(*(params[n] for n in names)):
            applied = {n: v for n, v in zip(names, values, strict=True) if _applies(PARAMS[n], cap, spec)}
            design = spec
            if "radix_nodes" in applied:
                if ":" in spec:  # the design spec already names a policy: the parameter would contradict it
                    continue
                design = design_spec(spec, radix_nodes=str(applied["radix_nodes"]))
            get_design(design)
            cell = {"capture": cap, "design": design, "kind": "churn" if _is_churn(cap) else "replay",
                    "params": applied}
            cell["id"] = cell_id(cell)
            cells.setdefault(cell["id"], cell)
    return list(cells.values())


# ---------------------------------------------------------------------- one cell


def _frag(machine: Machine) -> dict:
    zone = main_zone(machine)
    row = machine.buddyinfo().to_dict()[zone]
    nr = np.ascontiguousarray(np.array([row], np.int64))
    un = vmstat.unusable_index_table_nb(nr)[0]
    ex = vmstat.fragmentation_index_table_nb(nr)[0]
    out = {"zone": zone}
    for o in ORDERS:
        out[f"unusable_{o}"] = int(un[o])
        out[f"extfrag_{o}"] = int(ex[o])
    return out


def run_cell(cell: dict, run_id: str = "") -> dict:
    """Run one cell; its row (metrics, or ``error``).  Pure function of the cell: a Dask task."""
    t0 = time.perf_counter()
    row: dict = {"cell_id": cell["id"], "capture": cell["capture"], "design": cell["design"], "kind": cell["kind"],
                 "params": json.dumps(cell["params"], sort_keys=True), "run_id": run_id,
                 "host": socket.gethostname(), "pid": os.getpid()}
    for name in PARAMS:
        row[f"param_{name}"] = cell["params"].get(name)
    try:
        p = cell["params"]
        config = {k: v for k, v in p.items() if PARAMS[k].target == "config"}
        if cell["kind"] == "churn":
            mem = cell["capture"].partition(":")[2] or "1G"
            m = Machine.create(mem=mem, design=cell["design"], **config)
            orders = p.get("orders", "mix")
            c = Churn(m, order=0 if orders == "mix" else int(orders), orders="mix" if orders == "mix" else None,
                      gfp=p.get("gfp", "mix"), occupancy=p.get("occupancy", 0.5), seed=p.get("seed", 1))
            r = c.run(int(p.get("ops", 200_000)))
            speed = {"events_per_second": 2 * r.pairs / r.seconds if r.seconds else 0.0, "ns_per_pair": r.ns_per_pair}
            check = m.check()
        else:
            r = replay(cell["capture"], mode="policy", design=cell["design"], model_events=False, config=config,
                       typed=False)
            m = r.machine
            speed = {"events_per_second": r.events_per_second, "ns_per_pair": None}
            check = r.check
        s = m.summary()
        present = sum(z.present for z in m.zones)
        row.update({
            "struct_page_bytes": s["struct_page_bytes"], "metadata_bytes": s["metadata_bytes"]["total"],
            "metadata_bytes_per_page": s["metadata_bytes"]["total"] / max(1, present),
            "descriptor_bytes": s["metadata_bytes"]["descriptors"],
            **{k: s[k] for k in COUNTERS}, **s["ops"], **_frag(m), **speed,
            "free_pages": s["free_pages"], "check": check, "error": None,
        })
    except Exception as e:  # a failed cell is a row saying why; the next run retries it
        row.update({"check": "error", "error": f"{type(e).__name__}: {e}"})
    row["seconds"] = time.perf_counter() - t0
    row["finished_at"] = time.time()
    return row


SCHEMA = {
    "cell_id": pl.String, "capture": pl.String, "design": pl.String, "kind": pl.String, "params": pl.String,
    "run_id": pl.String, "host": pl.String, "pid": pl.Int64,
    "struct_page_bytes": pl.Int64, "metadata_bytes": pl.Int64, "metadata_bytes_per_page": pl.Float64,
    "descriptor_bytes": pl.Int64, **{k: pl.Int64 for k in COUNTERS}, "alloc": pl.Int64, "free": pl.Int64,
    "alloc_failed": pl.Int64, "zone": pl.String, **{f"{k}_{o}": pl.Int64 for o in ORDERS
                                                    for k in ("unusable", "extfrag")},
    "events_per_second": pl.Float64, "ns_per_pair": pl.Float64, "free_pages": pl.Int64, "check": pl.String,
    "error": pl.String, "seconds": pl.Float64, "finished_at": pl.Float64,
}


def _param_dtype(p: Param):
    return {int: pl.Int64, float: pl.Float64, _bool: pl.Boolean}.get(p.parse, pl.String)


def row_frame(rows: list[dict]) -> pl.DataFrame:
    schema = dict(SCHEMA)
    for name, p in PARAMS.items():
        schema[f"param_{name}"] = _param_dtype(p)
    cols = {k: [r.get(k) for r in rows] for k in schema}
    return pl.DataFrame(cols, schema=schema)


# ---------------------------------------------------------------------- the table on disk


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _atomic_parquet(df: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    df.write_parquet(tmp)
    os.replace(tmp, path)


def load_done(out: Path) -> pl.DataFrame:
    """Every finished (error-free) row in ``out`` and its part files, one per cell."""
    frames = []
    if out.is_file():
        frames.append(pl.read_parquet(out))
    d = parts_dir(out)
    if d.is_dir():
        frames += [pl.read_parquet(p) for p in sorted(d.glob("*.parquet"))]
    if not frames:
        return row_frame([])
    df = pl.concat(frames, how="diagonal_relaxed")
    df = df.filter(pl.col("error").is_null())
    return df.sort("finished_at").unique("cell_id", keep="first", maintain_order=True)


def merge(out: Path) -> pl.DataFrame:
    """Merge the part files into ``out`` (atomically), then drop the parts; the merged table."""
    d = parts_dir(out)
    frames = []
    if out.is_file():
        frames.append(pl.read_parquet(out))
    parts = sorted(d.glob("*.parquet")) if d.is_dir() else []
    frames += [pl.read_parquet(p) for p in parts]
    if not frames:
        return row_frame([])
    df = pl.concat(frames, how="diagonal_relaxed")
    # one row per cell: a finished row beats an error row; among equals the first finished
    df = (df.with_columns(pl.col("error").is_not_null().alias("_err"))
          .sort(["_err", "finished_at"]).unique("cell_id", keep="first", maintain_order=True)
          .drop("_err").sort(["capture", "design", "params"]))
    _atomic_parquet(df, out)
    for p in parts:
        p.unlink(missing_ok=True)
    if d.is_dir() and not any(d.iterdir()):
        d.rmdir()
    return df


# ---------------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    out: Path
    table: pl.DataFrame
    cells: int
    ran: int
    skipped: int
    failed: int
    seconds: float
    workers: int | None
    scheduler: str | None
    run_id: str

    def summary(self) -> dict:
        rows = self.table.to_dicts()
        bad = next((f"{r['design']} on {r['capture']}: {r['error'] or r['check']}" for r in rows
                    if r["check"] != "ok"), "ok")
        return {"out": str(self.out), "cells": self.cells, "ran": self.ran, "skipped": self.skipped,
                "failed": self.failed, "seconds": self.seconds, "workers": self.workers,
                "scheduler": self.scheduler, "run_id": self.run_id, "rows": rows, "check": bad}

    def _repr_html_(self) -> str:
        return self.table._repr_html_()


def run(cells: list[dict], out: str | Path, *, workers: int | None = None, scheduler: str | None = None,
        progress: Callable[[int, int, dict | None], None] | None = None) -> SweepResult:
    """Run the cells not already in ``out`` on Dask; merge everything into ``out``.

    ``workers``: worker processes of the LocalCluster (default: the CPUs); ``scheduler``:
    the address of an existing Dask scheduler instead.  ``progress(done, total, row)`` after
    each cell (row None for the initial call).
    """
    from dask.distributed import Client, LocalCluster, as_completed  # noqa: PLC0415 (slow import, sweep only)

    out = Path(out)
    if out.suffix != ".parquet":
        raise ConfigError(f"--out {out}: the table is Parquet (PATH.parquet)")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run_id = uuid.uuid4().hex[:12]
    done = set(load_done(out)["cell_id"].to_list())
    todo = [c for c in cells if c["id"] not in done]
    skipped = len(cells) - len(todo)
    failed = 0
    if progress:
        progress(skipped, len(cells), None)
    if todo:
        d = parts_dir(out)
        d.mkdir(parents=True, exist_ok=True)
        if scheduler:
            client, cluster = Client(scheduler), None
        else:
            n = workers or os.cpu_count() or 1
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=40)
            client = Client(cluster)
        try:
            futures = [client.submit(run_cell, c, run_id, key=f"memdesc-cell-{c['id']}-{run_id}", pure=False)
                       for c in todo]
            n_done = skipped
            for fut in as_completed(futures):
                row = fut.result()
                _atomic_parquet(row_frame([row]), d / f"{row['cell_id']}.parquet")
                failed += row["error"] is not None
                n_done += 1
                if progress:
                    progress(n_done, len(cells), row)
        except KeyboardInterrupt:
            # the finished cells are on disk; shut the cluster down without its shutdown noise
            for name in ("distributed", "tornado", "asyncio"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
            raise
        finally:
            with contextlib.suppress(Exception):
                client.close()
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.close()
    table = merge(out)
    wanted = {c["id"] for c in cells}
    table_cells = table.filter(pl.col("cell_id").is_in(list(wanted)))
    return SweepResult(out=out, table=table_cells, cells=len(cells), ran=len(todo), skipped=skipped, failed=failed,
                       seconds=time.perf_counter() - t0, workers=None if scheduler else (workers or os.cpu_count()),
                       scheduler=scheduler, run_id=run_id)


__all__ = ["CHURN", "PARAMS", "SweepResult", "cell_id", "grid", "load_done", "merge", "parse_params", "run",
           "run_cell"]
