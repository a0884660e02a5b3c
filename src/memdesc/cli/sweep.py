"""``memdesc sweep``: captures x designs x parameters on Dask, one Parquet row per cell.

Registered on the main typer app by :func:`register`.  Expands the grid
(:func:`memdesc.sim.sweep.grid`), runs the cells not yet in ``--out`` on a Dask
LocalCluster (``--workers``) or an existing cluster (``--scheduler``) with a progress bar,
and prints the table.  Exit code 1 when a cell failed or its check did not pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from memdesc.cli.options import EXIT_CHECK, JsonOpt, _write_json, console, err
from memdesc.mm.page_alloc import design_variants
from memdesc.sim.sweep import PARAMS, grid, parse_params, run


def result_table(rows: list[dict], params: list[str]) -> Table:
    t = Table(title="sweep", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    cols = ["capture", "design", *params, "B/page", "free-path", "stalls", "meta fail", "unus o9", "check"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("capture", "design", "check") else "right", overflow="fold")
    for r in rows:
        cap = Path(r["capture"]).name if not r["capture"].startswith("churn") else r["capture"]
        vals = [cap, r["design"], *(str(r.get(f"param_{p}")) for p in params)]
        if r.get("error"):
            vals += ["-"] * 5 + [f"[red]{r['error']}[/]"]
        else:
            vals += [f"{r['metadata_bytes_per_page']:.2f}", str(r["free_path_allocations"]), str(r["free_stalls"]),
                     str(r["alloc_failed_for_metadata"]), f"{r['unusable_9'] / 1000:.3f}", r["check"]]
        t.add_row(*vals)
    return t


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` command to ``app``."""

    @app.command("sweep")
    def sweep_cmd(
        captures: Annotated[list[str], typer.Argument(
            metavar="CAPTURE...", help="Capture directories or trace files (policy replay), or churn[:MEM] (a "
                                       "synthetic churn on an empty machine, default 1G).")],
        out: Annotated[Path, typer.Option("--out", help="The Parquet table (PATH.parquet); cells already in it "
                                                        "are not run again.")],
        designs: Annotated[str, typer.Option(
            "--designs", metavar="LIST", help="Comma-separated designs, or all: " + ", ".join(design_variants())
            + ".")] = "all",
        param: Annotated[list[str] | None, typer.Option(
            "--param", metavar="NAME=V1,V2", help="A parameter and its values (repeatable): "
            + "; ".join(f"{n}: {p.help}" for n, p in PARAMS.items()) + ".")] = None,
        scheduler: Annotated[str | None, typer.Option("--scheduler", metavar="ADDRESS",
                                                      help="An existing Dask scheduler (tcp://host:8786) "
                                                           "instead of a LocalCluster.")] = None,
        workers: Annotated[int | None, typer.Option("--workers", min=1, help="LocalCluster worker processes "
                                                                             "(default: the CPUs).")] = None,
        json_path: JsonOpt = None,
    ) -> None:
        """The grid of captures x designs x parameters as Dask tasks, resumable, into one Parquet table."""
        if scheduler and workers:
            raise typer.BadParameter("--workers sizes the LocalCluster; not with --scheduler")
        params = parse_params(param or [])
        cells = grid(captures, designs, params)
        with Progress(TextColumn("[bold]sweep[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as prog:
            task = prog.add_task("starting the cluster", total=len(cells))

            def progress(done: int, total: int, row: dict | None) -> None:
                what = "cells" if row is None else f"{row['design']} on {Path(row['capture']).name}"
                prog.update(task, completed=done, description=what)

            try:
                res = run(cells, out, workers=workers, scheduler=scheduler, progress=progress)
            except KeyboardInterrupt:
                err.print(f"[bold red]memdesc:[/] sweep interrupted; the finished cells are kept in {out}.parts: "
                          "run the same command again to finish the grid")
                raise typer.Exit(130) from None
        s = res.summary()
        console.print(result_table(s["rows"], list(params)))
        console.print(f"{res.cells} cells: {res.ran} run ({res.failed} failed), {res.skipped} already in {out}; "
                      f"{res.seconds:.1f} s on {res.scheduler or f'a LocalCluster of {res.workers} workers'}")
        _write_json(json_path, s, "sweep")
        if s["check"] != "ok":
            raise typer.Exit(EXIT_CHECK)
