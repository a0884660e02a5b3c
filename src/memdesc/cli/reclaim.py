"""``memdesc reclaim``: the LRU and reclaim model held against a capture's memcg reclaim.

Registered on the main typer app by :func:`register`.  Replays the cgroup tasks' page-cache
adds, anon LRU insertions, reads and deletions of a capture on the model
(:func:`memdesc.sim.reclaim.run_reclaim`) under the memcg limit of the workload, and prints
the model's reclaim rounds, pages scanned and reclaimed and page-cache deletions beside
the kernel's tracepoints and /proc/vmstat deltas.  ``--json`` writes the result
(:class:`memdesc.results.ReclaimCommand`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from memdesc.cli.options import JsonOpt, _fail, _write_json, console
from memdesc.errors import ConfigError, FormatError, MemdescError
from memdesc.sim.reclaim import run_reclaim


def _pct(x) -> str:
    return "-" if x is None else f"{x:+.2f} %"


def register(app: typer.Typer) -> None:
    """Add the ``reclaim`` command to ``app``."""

    @app.command("reclaim")
    def reclaim_cmd(
        capture: Annotated[Path, typer.Argument(help="A capture directory (trace.txt.zst, formats/, workload.sh, "
                                                     "before/after.vmstat) or a trace file.")]
        = Path("../shared/traces/reclaim"),
        json_path: JsonOpt = None,
        design: Annotated[str, typer.Option("--design", help="Page-allocator design of the model machine.")]
        = "linux",
        mem: Annotated[str, typer.Option("--mem", help="Memory of the model machine (the memcg limit, not the "
                                                       "machine, is what the capture's reclaim met).")] = "2G",
        limit: Annotated[int | None, typer.Option("--limit-pages", help="memcg limit in 4 KiB pages (default: "
                                                                        "the workload's memory.limit_in_bytes).")]
        = None,
        swap: Annotated[int, typer.Option("--swap-pages", help="An optional swap device of this many pages "
                                                               "(default none, as the capture).")] = 0,
        pid: Annotated[list[int] | None, typer.Option("--pid", help="The cgroup's tasks (default: the tasks of "
                                                                    "the capture's memcg reclaim events).")]
        = None,
    ) -> None:
        """Replay a capture's memcg activity on the reclaim model (mm/vmscan.c, 6.18, classic LRU)."""
        if not capture.exists():
            _fail(f"{capture}: no such file or directory")
        if swap < 0 or (limit is not None and limit <= 0):
            _fail("--swap-pages must be >= 0 and --limit-pages > 0")
        with console.status(f"replaying {capture} on the reclaim model (first use compiles the kernels)..."):
            try:
                r = run_reclaim(capture, mem=mem, design=design, limit_pages=limit, swap_pages=swap, pids=pid)
            except (FormatError, ConfigError, MemdescError) as e:
                _fail(str(e))
        ev = r["events"]
        console.print(f"[bold]{r['capture']}[/]: memcg of pid(s) {', '.join(map(str, r['pids']))}, limit "
                      f"{r['limit_pages']:,} pages; design {r['design']} ({r['mem']}); driven by {ev['adds']:,} "
                      f"page-cache adds, {ev['anon']:,} anon folios, {ev['accesses']:,} reads, {ev['deletes']:,} "
                      f"deletions ({ev['charges_forced']:,} charges forced)")
        t = Table(title="reclaim: kernel vs model", title_justify="left")
        for col in ("figure", "kernel", "model", "model - kernel"):
            t.add_column(col, justify="left" if col == "figure" else "right")
        for name, f in r["figures"].items():
            t.add_row(name, f"{f['kernel']:,}", f"{f['model']:,}", _pct(f["diff_pct"]))
        for name, f in r["vmstat"].items():
            t.add_row(f"vmstat {name}", f"{f['kernel']:,}", f"{f['model']:,}", _pct(f["diff_pct"]))
        for name, f in r["memcg"].items():
            k = "-" if f["kernel"] is None else f"{f['kernel']:,}"
            t.add_row(f"memcg {name}", k, f"{f['model']:,}", "")
        console.print(t)
        fo = r["folios"]
        console.print(f"folios reclaimed: kernel {fo['kernel_reclaimed']:,}, model {fo['model_reclaimed']:,}, both "
                      f"{fo['both']:,} (Jaccard {fo['jaccard']:.4f}); kernel rounds with a model round at the same "
                      f"event: {r['rounds_same_event']['fraction']:.2%}")
        kp, mp = r["kernel"]["by_priority"], r["model"]["by_priority"]
        console.print("shrink_inactive per priority (kernel/model): "
                      + ", ".join(f"{p}: {kp.get(p, 0)}/{mp.get(p, 0)}" for p in sorted(set(kp) | set(mp),
                                                                                     key=int, reverse=True)))
        console.print(f"check: {r['check']}")
        _write_json(json_path, r, "reclaim")
