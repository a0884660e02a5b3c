"""``memdesc compare``: every design on real captures, side by side.

Registered on the main typer app by :func:`register`.  Runs
:func:`memdesc.sim.compare.compare`, prints one table per capture (designs as columns,
split into several tables when the terminal is too narrow for all of them), and writes
the HTML report (:mod:`memdesc.report`), the JSON (``CompareCommand``) and Parquet tables
on request.  Exit code 1 when a design's check failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from memdesc.cli.options import (
    EXIT_CHECK,
    Highmem,
    JsonOpt,
    ParquetOpt,
    _fail,
    _write_json,
    console,
    fit_columns,
)
from memdesc.mm.page_alloc import design_variants
from memdesc.report import table_rows, write_html
from memdesc.sim.compare import compare, resolve_designs


def design_tables(cap: dict, width: int) -> list[Table]:
    """The capture's side-by-side rows as tables of as many design columns as ``width`` holds
    (no figure is ever cut: tables split by design instead)."""
    names = list(cap["designs"])
    rows = table_rows(cap)

    def make(chunk: range, part: str = "") -> Table:
        t = Table(title=f"{cap['name']}: {cap['events']:,} events{part}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
        t.add_column("", no_wrap=True)
        for i in chunk:
            t.add_column(names[i].replace(":", "\n"), justify="right", no_wrap=True)
        for label, cells, flags in rows:
            vals = []
            for i in chunk:
                c, f = cells[i], flags[i]
                vals.append(f"[green]{c}[/]" if f else f"[bold red]{c}[/]" if f is False else c)
            t.add_row(label, *vals)
        return t

    groups = fit_columns(len(names), make, width)
    return [make(g, f" ({g[0] + 1}-{g[-1] + 1} of {len(names)})" if len(groups) > 1 else "") for g in groups]


def parquet_paths(path: Path) -> dict[str, Path]:
    """``r.parquet`` -> the headline table there, ``r.series.parquet``, ``r.free_blocks.parquet``."""
    stem = path.name[: -len(".parquet")] if path.name.endswith(".parquet") else path.name
    return {"designs": path, "series": path.with_name(f"{stem}.series.parquet"),
            "free_blocks": path.with_name(f"{stem}.free_blocks.parquet")}


def register(app: typer.Typer) -> None:
    """Add the ``compare`` command to ``app``."""

    @app.command("compare")
    def compare_cmd(
        captures: Annotated[list[Path] | None, typer.Argument(
            help="Capture directories (trace.txt.zst + before.*/after.*) or trace files. Default: the bundled "
                 "sample.", show_default=False)] = None,
        designs: Annotated[str, typer.Option(
            "--designs", metavar="LIST",
            help="Comma-separated designs, or all: " + ", ".join(design_variants()) + ".")] = "all",
        every: Annotated[int | None, typer.Option(
            "--every", min=1, help="Sample the free lists every N events (default: ~200 samples per run).")] = None,
        exact: Annotated[bool, typer.Option("--exact/--no-exact", help="Also run exact replay where the design "
                                                                       "supports it.")] = True,
        highmem: Annotated[Highmem, typer.Option(
            "--highmem", help="The highmem-free scenario: auto (where the layout has HighMem), always, never.")
        ] = Highmem.auto,
        highmem_mem: Annotated[str, typer.Option("--highmem-mem", help="Memory of the i386 machine of "
                                                                       "--highmem always.")] = "4G",
        html_path: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
        json_path: JsonOpt = None,
        parquet: ParquetOpt = None,
    ) -> None:
        """Every design on each capture, side by side: metadata, free-path allocations, fragmentation, speed."""
        specs = resolve_designs(designs)
        caps = list(captures or [])
        for c in caps:
            if not c.exists():
                _fail(f"{c}: no such file or directory")
        steps_per = 1 + int(exact)
        total = max(1, len(caps) or 1) * len(specs) * steps_per
        with Progress(TextColumn("[bold]compare[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as prog:
            task = prog.add_task("reading (first use compiles the kernels)", total=total)
            seen = {"n": 0}

            def progress(what: str) -> None:
                if "replay" in what and seen["n"]:
                    prog.advance(task)
                if "replay" in what:
                    seen["n"] += 1
                prog.update(task, description=what)

            result = compare(caps or None, specs, every=every, exact=exact, highmem=highmem.value,
                             highmem_mem=highmem_mem, progress=progress)
            prog.advance(task)
        s = result.summary
        for cap in s["captures"]:
            for t in design_tables(cap, console.width):
                console.print(t)
        console.print(f"{len(s['captures'])} capture(s) x {len(specs)} designs in {s['seconds']:.1f} s; "
                      f"check: [bold]{s['check']}[/]")
        if html_path is not None:
            try:
                write_html(result, html_path)
            except OSError as e:
                _fail(f"cannot write {html_path}: {e.strerror}")
            console.print(f"[dim]report written to {html_path}[/]")
        if parquet is not None:
            paths = parquet_paths(parquet)
            try:
                parquet.parent.mkdir(parents=True, exist_ok=True)
                result.table().write_parquet(paths["designs"])
                result.series.write_parquet(paths["series"])
                result.free_blocks_table().write_parquet(paths["free_blocks"])
            except OSError as e:
                _fail(f"cannot write {parquet}: {e.strerror}")
            console.print(f"[dim]tables written to {', '.join(str(p) for p in paths.values())}[/]")
        _write_json(json_path, s, "compare")
        if s["check"] != "ok":
            raise typer.Exit(EXIT_CHECK)
