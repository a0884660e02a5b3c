"""``memdesc scenario``: the folio thread's claims as reproducible experiments.

Registered on the main typer app by :func:`register` (called from :mod:`memdesc.cli`).
``memdesc scenario highmem-free`` runs :func:`memdesc.sim.scenarios.highmem_free` for one
design (or ``--design all``: every design and radix node policy) on one layout (or
``--layout both``), prints what each step did and one row per run side by side, and with
``--json`` writes ``{"scenario", "params", "runs": [ScenarioResult.as_dict(), ...]}``.
``memdesc scenario thp-after-pagecache`` runs :func:`memdesc.sim.thp_scenario.thp_after_pagecache`
per design, with and without direct compaction (``--variant``), and prints the figures side by
side; ``--json`` writes ``{"scenario", "params", "runs": [ThpRun.as_dict(), ...], "check"}``.
Exit code 1 when a run's invariant check is not "ok".
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from memdesc.cli.options import (
    DEFAULT_DESIGN,
    EXIT_CHECK,
    CpusOpt,
    JsonOpt,
    ParquetOpt,
    RadixNodes,
    _write_json,
    console,
    fit_columns,
    value,
    write_parquet,
)
from memdesc.mm.page_alloc import DESIGNS
from memdesc.sim.scenarios import LAYOUTS, highmem_free, variants
from memdesc.sim.thp_scenario import SCENARIO as THP_SCENARIO
from memdesc.sim.thp_scenario import runs_for, thp_after_pagecache
from memdesc.units import format_size

ScenarioLayout = Enum("ScenarioLayout", {**{x: x for x in LAYOUTS}, "both": "both"}, type=str)
ScenarioLayout.__doc__ = "Layouts of ``memdesc scenario`` (``--layout``)."


def _verdict(r) -> str:
    where = f"{r.label} on {r.layout}"
    if r.check != "ok":
        return f"[bold red]{where}[/]: check failed: {r.check}"
    if r.stalled_frees:
        return (f"[bold red]{where}[/]: {r.stalled_frees} of {r.frees_attempted} user-page frees stalled "
                f"({r.free_stalls} insertions parked; {r.parked_after_frees} still waiting after the frees, "
                f"{r.parked_after_release} after lowmem was released) -- the wall")
    cost = []
    if r.late_user_failed_for_metadata:
        cost.append(f"{r.late_user_failed_for_metadata} of {r.late_user_attempts} later user allocations "
                    "failed for metadata")
    if r.metadata_node_bytes:
        cost.append(f"{format_size(r.metadata_node_bytes)} of node/descriptor pages")
    if r.reserve_bytes:
        cost.append(f"reserve target {format_size(r.reserve_bytes)}")
    if r.free_path_allocations:
        cost.append(f"{r.free_path_allocations} free-path allocations")
    return (f"[bold green]{where}[/]: 0 of {r.frees_attempted} frees stalled"
            + (f"; cost: {', '.join(cost)}" if cost else ""))


def phase_table(r):
    """What each step of one run did (columns: attempts, successes, failures, failures for
    metadata, stalled frees, free-path allocations, parked entries after the step).  Fits an
    80-column terminal: the step names wrap, the figures never do."""
    t = Table(title=f"{r.label} on {r.layout} {r.mem}: steps", title_justify="left", box=box.SIMPLE_HEAD,
              pad_edge=False, padding=(0, 1), collapse_padding=True)
    t.add_column("step (gfp)", min_width=12, ratio=1, overflow="fold")
    for col in ("tried", "ok", "failed", "failed\nfor\nmetadata", "stalled\nfrees", "free-\npath\nallocs",
                "parked"):
        t.add_column(col, justify="right", no_wrap=True)
    for i, p in enumerate(r.phases):
        step = (1, 2, 2, 3, 4, 5)[i] if len(r.phases) == 6 else i + 1
        name = f"{step} {p.name}" + (f"\n({p.gfp.removeprefix('GFP_')})" if p.gfp != "-" else "")
        t.add_row(name, str(p.attempts), str(p.succeeded), str(p.failed),
                  str(p.alloc_failed_for_metadata), str(p.stalled_frees), str(p.free_path_allocations),
                  str(p.parked_after))
    return t


#: rows of the side-by-side table: label, value of a ScenarioResult
ROWS = (
    ("user pages (step 1)", lambda r: str(r.user_pages)),
    ("kernel pages (step 2)", lambda r: str(r.kernel_pages)),
    ("user frees (step 3)", lambda r: str(r.frees_attempted)),
    ("stalled frees (step 3)", lambda r: str(r.stalled_frees)),
    ("free_stalls (run)", lambda r: str(r.free_stalls)),
    ("free_path_allocations (run)", lambda r: str(r.free_path_allocations)),
    ("parked after frees", lambda r: str(r.parked_after_frees)),
    ("parked after release (step 5)", lambda r: str(r.parked_after_release)),
    ("later user allocs (step 4)", lambda r: str(r.late_user_attempts)),
    ("  failed", lambda r: str(r.late_user_failed)),
    ("  failed for metadata", lambda r: str(r.late_user_failed_for_metadata)),
    ("node/descriptor pages", lambda r: format_size(r.metadata_node_bytes)),
    ("reserve target", lambda r: format_size(r.reserve_bytes) if r.policy == "reserve" else "-"),
    ("nodes per free page", lambda r: "-" if r.nodes_per_free_page is None else f"{r.nodes_per_free_page:.4f}"),
    ("check", lambda r: r.check),
)


def summary_tables(results, width: int = 80) -> list[Table]:
    """Every run side by side, one column per design/policy/layout, in as many tables as
    ``width`` needs (no figure is ever cut)."""

    def make(group: range, part: str = "") -> Table:
        t = Table(title=f"highmem-free: user pages freed after lowmem was exhausted{part}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
        t.add_column("", no_wrap=True)
        for i in group:
            r = results[i]
            t.add_column(f"{r.label.replace(' ', chr(10))}\n{r.layout}", justify="right", no_wrap=True)
        for name, get in ROWS:
            t.add_row(name, *(get(results[i]) for i in group))
        return t

    groups = fit_columns(len(results), make, width)
    return [make(g, f" ({g[0] + 1}-{g[-1] + 1} of {len(results)})" if len(groups) > 1 else "") for g in groups]


def run_rows(runs: list[dict]) -> list[dict]:
    """One flat row per run (scalars, metadata bytes by structure): the ``--parquet`` table."""
    rows = []
    for d in runs:
        row = {k: v for k, v in d.items() if isinstance(v, int | float | str | bool) or v is None}
        row.update({f"metadata_{k}": v for k, v in d["metadata_bytes"].items()})
        row.update({f"ops_{k}": v for k, v in d["ops"].items()})
        rows.append(row)
    return rows


def register(app: typer.Typer) -> None:
    """Add the ``scenario`` command group to ``app``."""
    scenario_app = typer.Typer(add_completion=False, no_args_is_help=True,
                               help="Reproducible experiments from the 2021 folio thread.")

    @scenario_app.command("highmem-free")
    def highmem_free_cmd(
        design: Annotated[str, typer.Option("--design", metavar="DESIGN", help=", ".join(DESIGNS) + ", or all "
                                            "(every design and radix node policy side by side).")] = DEFAULT_DESIGN,
        radix_nodes: Annotated[RadixNodes | None, typer.Option(
            "--radix-nodes", help="radix: consume (Kent: a freed lowmem page becomes tree nodes) or reserve "
                                  "(Wilcox's rule: nodes reserved at allocation). Default consume; with "
                                  "--design all, both.")] = None,
        layout: Annotated[ScenarioLayout, typer.Option("--layout", help="i386 (DMA/Normal/HighMem), x86_64 (all "
                                                       "memory directly mapped) or both.")] = ScenarioLayout("i386"),
        mem: Annotated[str, typer.Option("--mem", help="Machine memory, e.g. 4G (i386 needs more than 896M "
                                                        "for HighMem).")] = "4G",
        seed: Annotated[int, typer.Option("--seed", help="Seed of the free order and CPU choice.")] = 1,
        cpus: CpusOpt = None,
        user_fraction: Annotated[float, typer.Option(
            "--user-fraction", help="Fraction of the user pages allocated before the kernel exhausts lowmem "
                                    "(step 1; the rest in step 4).")] = 0.75,
        free_fraction: Annotated[float, typer.Option("--free-fraction",
                                                     help="Fraction of the user pages freed (step 3).")] = 0.5,
        release_fraction: Annotated[float, typer.Option(
            "--release-fraction", help="Fraction of the kernel pages freed afterwards (step 5).")] = 0.25,
        steps: Annotated[bool, typer.Option("--steps/--no-steps", help="Print each run's steps.")] = True,
        json_path: JsonOpt = None,
        parquet: ParquetOpt = None,
    ) -> None:
        """Kent's highmem wall: free HighMem pages when lowmem is exhausted, on any design."""
        layout = value(layout)
        radix_nodes = value(radix_nodes)
        layouts = list(LAYOUTS) if layout == "both" else [layout]
        runs = variants(design, radix_nodes)
        results = []
        for lay in layouts:
            for d, pol in runs:
                label = f"{d} {pol}" if pol else d
                with console.status(f"highmem-free: {label} on {lay} {mem} (first use compiles the kernels)..."):
                    r = highmem_free(d, pol, lay, mem, seed=seed, cpus=cpus, free_fraction=free_fraction,
                                     release_fraction=release_fraction, user_fraction=user_fraction)
                results.append(r)
                if steps:
                    console.print(phase_table(r))
                console.print(_verdict(r))
        for t in summary_tables(results, console.width):
            console.print(t)
        params = {"design": design, "radix_nodes": radix_nodes, "layout": layout, "mem": mem, "seed": seed,
                  "cpus": cpus, "user_fraction": user_fraction, "free_fraction": free_fraction,
                  "release_fraction": release_fraction}
        bad = next((f"{r.label} on {r.layout}: {r.check}" for r in results if r.check != "ok"), "ok")
        runs = [r.as_dict() for r in results]
        _write_json(json_path, {"scenario": "highmem-free", "params": params, "runs": runs, "check": bad},
                    "scenario")
        if parquet is not None:
            write_parquet(parquet, run_rows(runs))
        if bad != "ok":
            raise typer.Exit(EXIT_CHECK)

    register_thp(scenario_app)
    app.add_typer(scenario_app, name="scenario")


#: rows of the thp-after-pagecache table: label, value of a ThpRun
THP_ROWS = (
    ("files / anon regions", lambda r: f"{r.files}/{r.anon_regions}"),
    ("file pages (fill)", lambda r: str(r.phases[0].file_pages)),
    ("anon pages (fill)", lambda r: str(r.phases[0].anon_pages)),
    ("order-9 blocks after fill", lambda r: str(r.phases[0].order9_blocks_after)),
    ("kswapd reclaimed", lambda r: str(r.kswapd_reclaimed)),
    ("pages freed (reclaim step)", lambda r: str(r.phases[1].freed_pages)),
    ("order-9 blocks after reclaim", lambda r: str(r.phases[1].order9_blocks_after)),
    ("deferred splits", lambda r: str(r.deferred_splits)),
    ("  descriptor allocs", lambda r: str(r.deferred_split_descriptor_allocations)),
    ("THP requested", lambda r: str(r.thp_requested)),
    ("THP obtained", lambda r: str(r.thp_obtained)),
    ("  after compaction", lambda r: str(r.thp_obtained_after_compaction)),
    ("compaction stalls", lambda r: "-" if r.compaction == "unsupported" else str(r.compact_stall)),
    ("  successes", lambda r: "-" if r.compaction == "unsupported" else str(r.compact_success)),
    ("pages migrated", lambda r: str(r.pages_migrated)),
    ("migrate descriptor allocs", lambda r: str(r.migrate_descriptor_allocations)),
    ("migrations failed (desc)", lambda r: str(r.migrate_failed_for_descriptor)),
    ("migrations failed (busy)", lambda r: str(r.migrate_failed_busy)),
    ("folios split (compaction)", lambda r: str(r.folios_split)),
    ("  descriptor allocs", lambda r: str(r.split_descriptor_allocations)),
    ("free pages at end", lambda r: str(sum(c << o for o, c in enumerate(r.free_blocks)))),
    ("check", lambda r: r.check),
)


def thp_tables(results, width: int = 80) -> list[Table]:
    """Every run side by side, one column per design and variant (as many tables as ``width`` needs)."""

    def make(group: range, part: str = "") -> Table:
        t = Table(title=f"{THP_SCENARIO}: order-9 folios after page cache and anon filled memory{part}",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
        t.add_column("", no_wrap=True)
        for i in group:
            r = results[i]
            v = "unsupported" if r.compaction == "unsupported" else r.variant
            t.add_column(f"{r.design}\n{v.replace('-', chr(10))}", justify="right", no_wrap=True)
        for name, get in THP_ROWS:
            t.add_row(name, *(get(results[i]) for i in group))
        return t

    groups = fit_columns(len(results), make, width)
    return [make(g, f" ({g[0] + 1}-{g[-1] + 1} of {len(results)})" if len(groups) > 1 else "") for g in groups]


def free_blocks_table(results) -> Table:
    """Free blocks per order (zones summed, per-CPU lists drained) at the end of each run."""
    t = Table(title="free blocks per order at the end", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
              padding=(0, 1), collapse_padding=True)
    t.add_column("run", no_wrap=True)
    for o in range(len(results[0].free_blocks)):
        t.add_column(str(o), justify="right", no_wrap=True)
    for r in results:
        t.add_row(r.label, *(str(c) for c in r.free_blocks))
    return t


class ThpVariant(StrEnum):
    """``--variant`` of thp-after-pagecache."""

    no_compaction = "no-compaction"
    compaction = "compaction"
    both = "both"


def register_thp(scenario_app: typer.Typer) -> None:
    """Add ``scenario thp-after-pagecache``."""

    @scenario_app.command(THP_SCENARIO)
    def thp_cmd(
        design: Annotated[str, typer.Option("--design", metavar="DESIGN", help=", ".join(DESIGNS) + " (a spec "
                                            "such as linux:32), or all (linux, linux:32, radix, vmem, llfree).")]
        = "all",
        variant: Annotated[ThpVariant, typer.Option(
            "--variant", help="no-compaction (direct reclaim only), compaction (direct compaction after a failed "
                              "request) or both (each from the same seeded state).")] = ThpVariant.both,
        mem: Annotated[str, typer.Option("--mem", help="Machine memory (x86_64 layout), e.g. 512M.")] = "512M",
        seed: Annotated[int, typer.Option("--seed", help="Seed of the file/anon sizes and what is dropped.")] = 1,
        cpus: CpusOpt = None,
        file_share: Annotated[float, typer.Option(
            "--file-share", help="Share of the fill that is page cache (the rest anon).")] = 0.5,
        drop_fraction: Annotated[float, typer.Option(
            "--drop-fraction", help="Fraction of the files deleted and of the anon regions unmapped "
                                    "(step 2).")] = 0.5,
        max_chunk: Annotated[str, typer.Option(
            "--max-chunk", help="Largest file / anon region of the fill (a multiple of 16K).")] = "8M",
        max_failures: Annotated[int, typer.Option(
            "--max-failures", help="THP requests stop after this many consecutive failures.")] = 1,
        json_path: JsonOpt = None,
    ) -> None:
        """Fill memory with page cache and anon folios, reclaim some, then ask for order-9 folios."""
        variant = value(variant)
        runs = runs_for(design, variant)
        results = []
        for d, comp in runs:
            with console.status(f"{THP_SCENARIO}: {d} {'with' if comp else 'without'} compaction on {mem} "
                                "(first use compiles the kernels)..."):
                r = thp_after_pagecache(d, mem, seed=seed, compaction=comp, cpus=cpus, file_share=file_share,
                                        drop_fraction=drop_fraction, max_chunk=max_chunk,
                                        max_failures=max_failures)
            results.append(r)
        for t in thp_tables(results, console.width):
            console.print(t)
        console.print(free_blocks_table(results))
        params = {"design": design, "variant": variant, "mem": mem, "seed": seed, "cpus": cpus,
                  "file_share": file_share, "drop_fraction": drop_fraction, "max_chunk": max_chunk,
                  "max_failures": max_failures}
        bad = next((f"{r.label}: {r.check}" for r in results if r.check != "ok"), "ok")
        _write_json(json_path, {"scenario": THP_SCENARIO, "params": params, "runs": [r.as_dict() for r in results],
                                "check": bad}, "scenario-thp")
        if bad != "ok":
            raise typer.Exit(EXIT_CHECK)
