"""``memdesc anon``: the anonymous-memory model (mm/memory.py, mm/huge_memory.py) run with the
``mthp`` capture's workload and held against the capture.

Registered on the main typer app by :func:`register`.  With a capture directory: the THP
settings the workload ran under, the workload's steps 1-4 on every design asked for, the
model's figures beside the trace's step windows and the per-size ``thp_stats`` deltas
(:func:`memdesc.sim.anon.validate_mthp`).  Without one: the model alone under the
workload's settings.  ``--shrink`` runs the deferred split shrinker after step 2 and
reports the splits and the descriptor allocations they needed per design.  ``--json``
writes the result (:class:`memdesc.results.AnonCommand`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from memdesc.cli.options import EXIT_CHECK, JsonOpt, MemOpt, _fail, _write_json, console
from memdesc.mm.page_alloc import DESIGNS
from memdesc.sim.anon import run_workload, validate_mthp

CaptureArg = Annotated[Path | None, typer.Argument(
    help="The mthp capture directory (trace.txt.zst, before/after.thp_stats, workload.sh). Without it the "
         "workload runs on the model alone.")]


def _designs(spec: str) -> tuple[str, ...]:
    out = tuple(d.strip() for d in spec.split(",") if d.strip())
    bad = [d for d in out if d not in DESIGNS]
    if bad or not out:
        _fail(f"unknown design(s) {', '.join(bad) or '(none)'}: choose from {', '.join(DESIGNS)}")
    return out


def _runs_table(runs: dict) -> Table:
    t = Table(title="model runs (steps 1-4 of workload.sh, then munmap)", title_justify="left")
    for col in ("design", "order-4", "order-9", "COW copies", "page tables", "split_deferred", "splits",
                "split descriptors", "check", "s"):
        t.add_column(col, justify="left" if col in ("design", "check") else "right")
    for d, r in runs.items():
        a = r["anon_allocations"]
        sd = sum(v.get("split_deferred", 0) for v in r["thp_stats"].values())
        sh = r["shrinker"] or {}
        t.add_row(d, f"{a.get('4', 0):,}", f"{a.get('9', 0):,}", f"{a['cow_copies']:,}",
                  f"{r['events']['pgtable_allocs']:,}", f"{sd:,}", f"{sh.get('split', 0):,}",
                  f"{r['descriptor_allocations']['split']:,}", r["check"], f"{r['seconds']:.1f}")
    return t


def register(app: typer.Typer) -> None:
    """Add the ``anon`` command to ``app``."""

    @app.command("anon")
    def anon_cmd(
        capture: CaptureArg = None,
        json_path: JsonOpt = None,
        designs: Annotated[str, typer.Option("--designs", help="Comma-separated designs to run.")]
        = ",".join(DESIGNS),
        mem: MemOpt = "2G",
        shrink: Annotated[bool, typer.Option("--shrink", help="Run the deferred split shrinker after step 2 "
                                                              "(splits and their descriptor allocations).")]
        = False,
        scale: Annotated[int, typer.Option("--scale", min=1, help="Divide the workload's mapping sizes by this "
                                                                  "(model alone; 1 = as captured).")] = 1,
        no_cache: Annotated[bool, typer.Option("--no-cache", help="Parse the trace again.")] = False,
    ) -> None:
        """Anonymous memory and mTHP: the mthp workload on the model, against the capture."""
        ds = _designs(designs)
        if capture is not None:
            if scale != 1:
                _fail("--scale applies without a capture only (the comparison needs the captured sizes)")
            if not capture.exists():
                _fail(f"{capture}: no such file or directory")
            with console.status(f"running the mthp workload on {', '.join(ds)} (first use compiles the kernels)..."):
                out = validate_mthp(capture, ds, mem, shrink=shrink, cache=not no_cache)
        else:
            with console.status(f"running the mthp workload on {', '.join(ds)} (first use compiles the kernels)..."):
                runs = {d: run_workload(d, mem, shrink=shrink, scale=scale) for d in ds}
            ok = all(r["check"] == "ok" and all(v == "ok" for v in r["checks"].values()) for r in runs.values())
            out = {"source": None, "settings": runs[ds[0]]["settings"], "runs": runs, "agreement": [],
                   "designs_agree": all(r["steps"] == runs[ds[0]]["steps"] for r in runs.values()),
                   "check": "ok" if ok else "failed", "seconds": round(sum(r["seconds"] for r in runs.values()), 3)}
        s = out["settings"]
        console.print(f"[bold]THP settings[/]: enabled={s['enabled']} defrag={s['defrag']}; "
                      + ", ".join(f"{k} {v}" for k, v in s["sizes"].items() if v != "never"))
        console.print(_runs_table(out["runs"]))
        if out["agreement"]:
            tw = out["trace"]
            console.print(f"[dim]workload pid {tw['workload_pid']}, fork child {tw['child_pid']}; trace windows "
                          f"cut at lines {tw['landmarks']}[/]")
            t = Table(title=f"model ({ds[0]}) beside the kernel", title_justify="left")
            for col in ("figure", "model", "kernel", "diff", "note"):
                t.add_column(col, justify="right" if col in ("model", "kernel", "diff") else "left")
            for r in out["agreement"]:
                if r["model"] == 0 and r["kernel"] == 0:
                    continue
                t.add_row(r["what"], f"{r['model']:,}", f"{r['kernel']:,}", f"{r['diff']:+,}", r["note"])
            console.print(t)
        console.print(f"designs agree on every step: {out['designs_agree']}; check: {out['check']}")
        _write_json(json_path, out, "anon")
        if out["check"] != "ok":
            raise typer.Exit(EXIT_CHECK)
