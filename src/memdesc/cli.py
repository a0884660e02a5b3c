"""The ``memdesc`` command line (typer + rich).

Every command prints a human summary and, with ``--json PATH``, writes a JSON summary
whose keys scripts rely on: ``machine`` {``zones``: [...]}, ``design``,
``struct_page_bytes``, ``metadata_bytes`` {``memmap``, ``freelists``, ``descriptors``,
``total``}, ``ops`` {``alloc``, ``free``, ``alloc_failed``}, ``seconds``, ``buddyinfo``
{"NODE:ZONE": [11 ints]}, ``unusable_index``, ``extfrag_index``, ``check``.
Errors a user can cause are reported as one line naming the problem (exit code 2),
never as a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from memdesc.cli_replay import RadixNodesOpt
from memdesc.errors import MemdescError
from memdesc.units import format_size

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="memdesc: executable models of Linux physical-memory management designs.")
console = Console()
err = Console(stderr=True)

MemOpt = Annotated[str, typer.Option("--mem", help="Machine memory size, e.g. 16G, 896M, 1T.")]
LayoutOpt = Annotated[str, typer.Option("--layout", help="x86_64 (DMA/DMA32/Normal) or i386 (DMA/Normal/HighMem).")]
NodesOpt = Annotated[int, typer.Option("--nodes", help="NUMA nodes.")]
CpusOpt = Annotated[int | None, typer.Option("--cpus", help="Modelled CPUs (per-CPU page lists).")]
ZoneinfoOpt = Annotated[Path | None, typer.Option("--zoneinfo", help="Build the machine from a real /proc/zoneinfo.")]
DesignOpt = Annotated[str, typer.Option("--design", help="Page-allocator design: linux, radix, vmem.")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write a JSON summary to this path.")]
PcpOpt = Annotated[bool, typer.Option("--pcp/--no-pcp", help="Per-CPU page lists on or off.")]


def _fail(msg: str) -> None:
    err.print(f"[bold red]memdesc:[/] {msg}")
    raise typer.Exit(2)


def _write_json(path: Path | None, data: dict) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    except OSError as e:
        _fail(f"cannot write {path}: {e.strerror}")
    console.print(f"[dim]summary written to {path}[/]")


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _machine(mem: str, layout: str, nodes: int, cpus: int | None, zoneinfo: Path | None, design: str,
             pcp: bool = True, **kw):
    from memdesc.mm.machine import Machine

    if zoneinfo is not None and not zoneinfo.exists():
        _fail(f"{zoneinfo}: no such file")
    with console.status(f"building the {design} machine (first use compiles the kernels)..."):
        return Machine.create(mem=mem, design=design, layout=layout, nodes=nodes, cpus=cpus, zoneinfo=zoneinfo,
                              pcp=pcp, **kw)


def zone_table(m) -> Table:
    t = Table(title=f"{m.layout.source} — {m.layout.nr_nodes} node(s), {m.nr_cpus} CPUs, "
                    f"max_pfn {m.max_pfn:#x}", title_justify="left")
    for col in ("node", "zone", "start_pfn", "spanned", "present", "managed", "free", "direct mapped"):
        t.add_column(col, justify="right" if col not in ("zone", "direct mapped") else "left")
    zs = m.design.zs
    for i, z in enumerate(m.zones):
        t.add_row(str(z.node), z.name, f"{z.start_pfn:#x}" if z.spanned else "-", f"{z.spanned}", f"{z.present}",
                  f"{int(zs.z_managed[i])}", f"{int(zs.z_free[i])}", "yes" if z.direct_mapped else "no")
    return t


def memmap_table(m) -> Table:
    from memdesc.mm.mmzone import PAGE_SIZE

    spanned = sum(z.spanned for z in m.zones)
    present = sum(z.present for z in m.zones)
    t = Table(title="struct page array (memmap) per design word size", title_justify="left")
    for col in ("struct page", "design", "bytes per page", "memmap bytes", "% of memory"):
        t.add_column(col, justify="right")
    for words, who in ((8, "linux (today)"), (2, "radix (Kent)"), (1, "vmem (Wilcox memdesc)")):
        b = m.max_pfn * words * 8
        t.add_row(f"{words} word{'s' if words > 1 else ''}", who, str(words * 8), format_size(b),
                  f"{100.0 * b / (present * PAGE_SIZE):.2f} %")
    del spanned
    return t


def _summary(m, extra: dict) -> dict:
    d = m.summary()
    d.update(extra)
    return d


@app.command()
def machine(mem: MemOpt = "16G", layout: LayoutOpt = "x86_64", nodes: NodesOpt = 1, cpus: CpusOpt = None,
            zoneinfo: ZoneinfoOpt = None, design: DesignOpt = "linux", json_path: JsonOpt = None) -> None:
    """Build a machine and show its zones and memmap sizes for 8-, 2- and 1-word struct page."""
    t0 = time.perf_counter()
    m = _machine(mem, layout, nodes, cpus, zoneinfo, design)
    console.print(zone_table(m))
    console.print(memmap_table(m))
    md = m.metadata_bytes()
    console.print(f"design [bold]{m.design.name}[/]: struct page {m.design.struct_page_bytes} B, metadata "
                  + ", ".join(f"{k} {format_size(v)}" for k, v in md.items()))
    check = m.check()
    console.print(f"check: [bold]{check}[/]")
    _write_json(json_path, _summary(m, {"seconds": time.perf_counter() - t0, "check": check}))
    if check != "ok":
        raise typer.Exit(1)


def print_proc_views(m, which=("buddyinfo", "unusable_index", "extfrag_index")) -> None:
    """Print views in the kernel's exact text formats (/proc/buddyinfo, debugfs extfrag/*)."""
    files = m.proc_files()
    titles = {"buddyinfo": "/proc/buddyinfo", "pagetypeinfo": "/proc/pagetypeinfo", "zoneinfo": "/proc/zoneinfo",
              "unusable_index": "/sys/kernel/debug/extfrag/unusable_index",
              "extfrag_index": "/sys/kernel/debug/extfrag/extfrag_index"}
    for k in which:
        console.print(f"[bold]{titles[k]}[/]")
        console.print(files[k].rstrip("\n"), markup=False, highlight=False, soft_wrap=True)


@app.command()
def churn(design: DesignOpt = "linux", mem: MemOpt = "16G", layout: LayoutOpt = "x86_64", nodes: NodesOpt = 1,
          cpus: CpusOpt = None, zoneinfo: ZoneinfoOpt = None,
          ops: Annotated[int, typer.Option("--ops", help="Measured alloc+free pairs (after the fill).")] = 1_000_000,
          order: Annotated[int, typer.Option("--order", help="Allocation order (without --orders).")] = 0,
          orders: Annotated[str | None, typer.Option("--orders", help="'mix': a realistic order mix.")] = None,
          gfp: Annotated[str, typer.Option("--gfp", help="gfp flags as ftrace prints them, or 'mix'.")] = "GFP_KERNEL",
          occupancy: Annotated[float, typer.Option("--occupancy", help="Target allocated fraction.")] = 0.5,
          seed: Annotated[int, typer.Option("--seed")] = 1, pcp: PcpOpt = True,
          check: Annotated[bool, typer.Option("--check/--no-check", help="Full invariant check at the end.")] = True,
          fail_descriptor_alloc: Annotated[float, typer.Option(
              "--fail-descriptor-alloc", metavar="RATE",
              help="vmem: fail this fraction of descriptor allocations (fault injection).")] = 0.0,
          trace_out: Annotated[Path | None, typer.Option("--trace-out", help="Write the run's kmem events as an "
                                                          "ftrace text trace (.zst/.gz/plain).")] = None,
          radix_nodes: RadixNodesOpt = None, json_path: JsonOpt = None) -> None:
    """Random alloc/free churn around a target occupancy; ns per pair, buddyinfo, fragmentation."""
    from memdesc.churn import Churn
    from memdesc.mm.page_alloc import design_spec

    design = design_spec(design, radix_nodes=radix_nodes)

    evlog = 0
    if trace_out is not None:
        evlog = min(16 * ops + 4_000_000, 200_000_000)
    m = _machine(mem, layout, nodes, cpus, zoneinfo, design, pcp=pcp, evlog=evlog,
                 fail_descriptor_alloc=fail_descriptor_alloc)
    c = Churn(m, order=order, orders=orders, gfp=gfp, occupancy=occupancy, seed=seed)
    with Progress(TextColumn("[bold]churn[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as prog:
        task = prog.add_task(f"{m.design.name}", total=ops)
        r = c.run(ops, progress=lambda n: prog.advance(task, n))
    console.print(f"[bold]{m.design.name}[/]: {r.pairs} alloc+free pairs in {r.seconds:.3f} s = "
                  f"[bold]{r.ns_per_pair:.1f} ns per pair[/] (fill to {occupancy:.0%}: {r.fill_seconds:.2f} s; "
                  f"allocs {r.allocs}, frees {r.frees}, failed {r.alloc_failed})")
    print_proc_views(m)
    result = "not run"
    if check:
        result = m.check()
        console.print(f"check: [bold]{result}[/]")
    if trace_out is not None:
        from memdesc.trace.replay_io import write_event_log

        n = write_event_log(m, trace_out)
        console.print(f"[dim]{n} kmem events written to {trace_out}[/]")
    _write_json(json_path, _summary(m, {
        "seconds": r.seconds, "ns_per_pair": r.ns_per_pair, "churn": r.as_dict(), "check": result}))
    if check and result != "ok":
        raise typer.Exit(1)


@app.command()
def inspect(pfn: Annotated[str, typer.Argument(help="Page frame number (decimal or 0x hex).")],
            design: DesignOpt = "linux", mem: MemOpt = "16G", layout: LayoutOpt = "x86_64",
            nodes: NodesOpt = 1, cpus: CpusOpt = None, zoneinfo: ZoneinfoOpt = None,
            churn_ops: Annotated[int, typer.Option("--churn", help="Run this many churn pairs first.")] = 0,
            json_path: JsonOpt = None) -> None:
    """Decode one page's struct page / memdesc, like the kernel's dump_page()."""
    try:
        p = int(pfn, 0)
    except ValueError:
        _fail(f"{pfn!r} is not a pfn (use decimal or 0x hex)")
    m = _machine(mem, layout, nodes, cpus, zoneinfo, design)
    if churn_ops:
        from memdesc.churn import Churn

        Churn(m, orders="mix", gfp="mix").run(churn_ops)
    console.print(m.describe_page(p), markup=False, highlight=False)
    words = [int(x) for x in m.design.page_words(p)]
    _write_json(json_path, {"pfn": p, "design": m.design.name, "words": words, "state": m.page_state(p),
                            "struct_page_bytes": m.design.struct_page_bytes})


@app.command()
def snapshot(directory: Annotated[Path, typer.Argument(help="Capture directory (before.*/after.* /proc files) "
                                                          "or a directory of plain /proc-named files.")],
             when: Annotated[str, typer.Option("--when", help="before or after.")] = "before",
             design: DesignOpt = "linux", json_path: JsonOpt = None) -> None:
    """Rebuild a real machine's state from its /proc snapshot (kpageflags, zoneinfo, ...)."""
    from memdesc.snapshot import buddyinfo_diff, capture, machine_from_snapshot

    t0 = time.perf_counter()
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
    _write_json(json_path, out)


from memdesc.cli_replay import register as _register_replay  # noqa: E402

_register_replay(app)

from memdesc.cli_scenario import register as _register_scenario  # noqa: E402

_register_scenario(app)


def main() -> None:
    try:
        app()
    except MemdescError as e:
        err.print(f"[bold red]memdesc:[/] {e}")
        sys.exit(2)
    except OSError as e:  # missing or unreadable files named on the command line
        msg = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
        err.print(f"[bold red]memdesc:[/] {msg}")
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("[bold red]memdesc:[/] interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
