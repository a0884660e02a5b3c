"""``memdesc machine``, ``churn``, ``inspect`` and ``snapshot``: build a machine, run it, look inside."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from memdesc.cli.options import (
    DEFAULT_DESIGN,
    EXIT_CHECK,
    CheckpointAtOpt,
    CheckpointEveryOpt,
    CheckpointOpt,
    CpusOpt,
    DesignOpt,
    JsonOpt,
    Layout,
    LayoutOpt,
    MemOpt,
    NodesOpt,
    PcpOpt,
    RadixNodesOpt,
    ResumeOpt,
    SaveOpt,
    When,
    ZoneinfoOpt,
    _fail,
    _machine,
    _summary,
    _write_json,
    console,
    design_only,
    given_on_command_line,
    memmap_table,
    print_proc_views,
    value,
    zone_table,
)
from memdesc.mm.mmzone import MAX_PAGE_ORDER
from memdesc.mm.page_alloc import design_spec, fault_injection_designs
from memdesc.sim.checkpoint import Checkpoints
from memdesc.sim.churn import Churn
from memdesc.sim.replay_io import write_event_log
from memdesc.sim.snapshot import buddyinfo_diff, capture, machine_from_snapshot
from memdesc.units import format_size


class OrderMix(StrEnum):
    """Order distributions of ``memdesc churn --orders``."""

    mix = "mix"


def machine(mem: MemOpt = "16G", layout: LayoutOpt = Layout.x86_64, nodes: NodesOpt = 1, cpus: CpusOpt = None,
            zoneinfo: ZoneinfoOpt = None, design: DesignOpt = DEFAULT_DESIGN, radix_nodes: RadixNodesOpt = None,
            json_path: JsonOpt = None) -> None:
    """Build a machine and show its zones and memmap sizes for 8-, 2- and 1-word struct page."""
    t0 = time.perf_counter()
    design = design_spec(design, radix_nodes=value(radix_nodes))
    m = _machine(mem, layout, nodes, cpus, zoneinfo, design)
    console.print(zone_table(m))
    console.print(memmap_table(m))
    md = m.metadata_bytes()
    console.print(f"design [bold]{m.design.name}[/]: struct page {m.design.struct_page_bytes} B, metadata "
                  + ", ".join(f"{k} {format_size(v)}" for k, v in md.items()))
    check = m.check()
    console.print(f"check: [bold]{check}[/]")
    _write_json(json_path, _summary(m, {"seconds": time.perf_counter() - t0, "check": check}), "machine")
    if check != "ok":
        raise typer.Exit(EXIT_CHECK)


def churn(ctx: typer.Context, design: DesignOpt = DEFAULT_DESIGN, mem: MemOpt = "16G",
          layout: LayoutOpt = Layout.x86_64,
          nodes: NodesOpt = 1, cpus: CpusOpt = None, zoneinfo: ZoneinfoOpt = None,
          ops: Annotated[int, typer.Option("--ops", min=0,
                                           help="Measured alloc+free pairs (after the fill).")] = 1_000_000,
          order: Annotated[int, typer.Option("--order", min=0, max=MAX_PAGE_ORDER,
                                             help="Allocation order (without --orders).")] = 0,
          orders: Annotated[OrderMix | None, typer.Option("--orders", help="mix: a realistic order mix "
                                                                           "(orders 0-10).")] = None,
          gfp: Annotated[str, typer.Option("--gfp", help="gfp flags as ftrace prints them, or 'mix'.")] = "GFP_KERNEL",
          occupancy: Annotated[float, typer.Option("--occupancy", help="Target allocated fraction.")] = 0.5,
          seed: Annotated[int, typer.Option("--seed")] = 1, pcp: PcpOpt = True,
          check: Annotated[bool, typer.Option("--check/--no-check", help="Full invariant check at the end.")] = True,
          fail_descriptor_alloc: Annotated[float, typer.Option(
              "--fail-descriptor-alloc", metavar="RATE",
              help="vmem: fail this fraction of descriptor allocations (fault injection).")] = 0.0,
          trace_out: Annotated[Path | None, typer.Option("--trace-out", help="Write the run's kmem events as an "
                                                          "ftrace text trace (.zst/.gz/plain).")] = None,
          radix_nodes: RadixNodesOpt = None, json_path: JsonOpt = None,
          checkpoint: CheckpointOpt = None, checkpoint_at: CheckpointAtOpt = 0,
          checkpoint_every: CheckpointEveryOpt = 0, resume: ResumeOpt = None, save: SaveOpt = None) -> None:
    """Random alloc/free churn around a target occupancy; ns per pair, buddyinfo, fragmentation.

    --checkpoint-at/--checkpoint-every count measured alloc+free pairs."""
    ckpt = Checkpoints(checkpoint, checkpoint_at, checkpoint_every)
    if resume is not None:
        bad = given_on_command_line(ctx, "design", "mem", "layout", "nodes", "cpus", "zoneinfo", "ops", "order",
                                    "orders", "gfp", "occupancy", "seed", "pcp", "fail_descriptor_alloc",
                                    "radix_nodes", "trace_out")
        if bad:
            _fail(f"--resume continues the saved run with its own machine and workload; drop {', '.join(bad)}")
    design = design_spec(design, radix_nodes=value(radix_nodes))
    design_only(design, fail_descriptor_alloc=(fail_descriptor_alloc, 0.0, fault_injection_designs()))
    if orders is not None and order != 0:
        _fail("give either --order or --orders, not both")
    with Progress(TextColumn("[bold]churn[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as prog:
        if resume is not None:
            task = prog.add_task("resuming", total=None)
            c, r = Churn.resume(resume, progress=lambda n: prog.advance(task, n), checkpoint=ckpt)
            m = c.m
            occupancy = c.occupancy
        else:
            evlog = 0
            if trace_out is not None:
                evlog = min(16 * ops + 4_000_000, 200_000_000)
            m = _machine(mem, layout, nodes, cpus, zoneinfo, design, pcp=pcp, evlog=evlog,
                         fail_descriptor_alloc=fail_descriptor_alloc)
            c = Churn(m, order=order, orders=value(orders), gfp=gfp, occupancy=occupancy, seed=seed)
            task = prog.add_task(f"{m.design.name}", total=ops)
            r = c.run(ops, progress=lambda n: prog.advance(task, n), checkpoint=ckpt)
    if r.resumed_at:
        console.print(f"[dim]resumed from {resume} after {r.resumed_at} of {r.pairs} pairs[/]")
    console.print(f"[bold]{m.design.name}[/]: {r.pairs} alloc+free pairs in {r.seconds:.3f} s = "
                  f"[bold]{r.ns_per_pair:.1f} ns per pair[/] (fill to {occupancy:.0%}: {r.fill_seconds:.2f} s; "
                  f"allocs {r.alloc}, frees {r.free}, failed {r.alloc_failed})")
    print_proc_views(m)
    result = "not run"
    if check:
        result = m.check()
        console.print(f"check: [bold]{result}[/]")
    if trace_out is not None:
        n = write_event_log(m, trace_out)
        console.print(f"[dim]{n} kmem events written to {trace_out}[/]")
    if save is not None:
        m.save(save)
        console.print(f"[dim]machine saved to {save}[/]")
    _write_json(json_path, _summary(m, {
        "seconds": r.seconds, "ns_per_pair": r.ns_per_pair, "churn": r.as_dict(), "check": result}), "churn")
    if check and result != "ok":
        raise typer.Exit(EXIT_CHECK)


def inspect(pfn: Annotated[str, typer.Argument(help="Page frame number (decimal or 0x hex).")],
            design: DesignOpt = DEFAULT_DESIGN, mem: MemOpt = "16G", layout: LayoutOpt = Layout.x86_64,
            nodes: NodesOpt = 1, cpus: CpusOpt = None, zoneinfo: ZoneinfoOpt = None,
            churn_ops: Annotated[int, typer.Option("--churn", min=0, help="Run this many churn pairs first.")] = 0,
            radix_nodes: RadixNodesOpt = None, json_path: JsonOpt = None) -> None:
    """Decode one page's struct page / memdesc, like the kernel's dump_page()."""
    t0 = time.perf_counter()
    try:
        p = int(pfn, 0)
    except ValueError:
        _fail(f"{pfn!r} is not a pfn (use decimal or 0x hex)")
    design = design_spec(design, radix_nodes=value(radix_nodes))
    m = _machine(mem, layout, nodes, cpus, zoneinfo, design)
    if churn_ops:
        Churn(m, orders="mix", gfp="mix").run(churn_ops)
    text = m.describe_page(p)
    console.print(text, markup=False, highlight=False)
    words = [int(x) for x in m.design.page_words(p)]
    _write_json(json_path, _summary(m, {"seconds": time.perf_counter() - t0, "check": "not run", "pfn": p,
                                        "words": words, "state": m.page_state(p), "description": text}),
                "inspect")


def snapshot(directory: Annotated[Path, typer.Argument(help="Capture directory (before.*/after.* /proc files) "
                                                          "or a directory of plain /proc-named files.")],
             when: Annotated[When, typer.Option("--when", help="The snapshot taken before or after the "
                                                               "trace.")] = When.before,
             design: DesignOpt = DEFAULT_DESIGN, radix_nodes: RadixNodesOpt = None,
             json_path: JsonOpt = None) -> None:
    """Rebuild a real machine's state from its /proc snapshot (kpageflags, zoneinfo, ...)."""
    t0 = time.perf_counter()
    when = value(when)
    design = design_spec(design, radix_nodes=value(radix_nodes))
    files = capture(directory, when)
    with console.status("reading kpageflags and rebuilding the free state..."):
        m, state, snap = machine_from_snapshot(directory, when, design)
    console.print(zone_table(m))
    real_bi = files.buddyinfo()
    rebuilt = snap.buddyinfo_rebuilt()
    diff = buddyinfo_diff(rebuilt, real_bi.to_dict()) if real_bi else {}
    console.print(f"[bold]buddyinfo rebuilt from {when}.kpageflags vs {when}.buddyinfo[/]")
    lines = []
    for key, d in diff.items():
        node, zone = key.split(":", 1)
        head = f"Node {node}, zone {zone:>8s} "
        lines.append(f"rebuilt {head}" + "".join(f"{x:6d} " for x in d["model"]) + f"  {d['model_free_pages']} pages")
        lines.append(f"/proc   {head}" + "".join(f"{x:6d} " for x in d["real"]) + f"  {d['real_free_pages']} pages")
        lines.append("diff    " + " " * len(head) + "".join(f"{x:+6d} " if x else "     0 " for x in d["diff"])
                     + f"  {d['free_pages_diff_pct']:+.3f} %")
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    classes = snap.classes()
    allocs = snap.allocations()
    total = sum(classes.values())
    ct = Table(title="what every pfn is (kpageflags)", title_justify="left")
    for col in ("class", "pages", "% of pfns", "allocations"):
        ct.add_column(col, justify="right" if col != "class" else "left")
    for name, n in classes.items():
        ct.add_row(name, str(n), f"{100.0 * n / max(total, 1):.2f}", str(allocs.get(name, "")))
    console.print(ct)
    rep = state.report
    if rep.get("pagetypeinfo_match") is not None:
        console.print(f"pageblock migratetypes inferred to match pagetypeinfo's block counts; "
                      f"{100 * rep['pagetypeinfo_match']:.1f} % of /proc's free pages land on the same "
                      f"(type, order) list")
    console.print(f"pcp lists: zoneinfo counts {rep.get('pcp_pages_zoneinfo')} pages; "
                  f"flagless zero-count candidates {rep.get('pcp_candidates')} (kept allocated)")
    check = m.check()
    console.print(f"model loaded into the [bold]{m.design.name}[/] design; check: [bold]{check}[/]")
    out = _summary(m, {"seconds": time.perf_counter() - t0, "check": check, "when": when,
                       "buddyinfo_rebuilt": rebuilt, "buddyinfo_proc": real_bi.to_dict() if real_bi else None,
                       "buddyinfo_diff": diff, "classes": classes, "allocations": allocs,
                       "attributes": snap.attributes(), "import": rep})
    if snap.counts is not None:
        out["mapped"] = snap.mapped_stats()
    _write_json(json_path, out, "snapshot")
    if check != "ok":
        raise typer.Exit(EXIT_CHECK)


def register(app: typer.Typer) -> None:
    """Add the machine, churn, inspect and snapshot commands to ``app``."""
    for command in (machine, churn, inspect, snapshot):
        app.command()(command)
