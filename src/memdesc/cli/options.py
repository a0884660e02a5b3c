"""Shared pieces of the ``memdesc`` command line: consoles, options, error and JSON output.

Every command module imports from here (never from :mod:`memdesc.cli` itself), so the
command modules and the app that registers them form no import cycle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from memdesc.mm.machine import Machine
from memdesc.mm.mmzone import PAGE_SIZE
from memdesc.mm.page_alloc import DESIGNS
from memdesc.units import format_size

console = Console()
err = Console(stderr=True)

MemOpt = Annotated[str, typer.Option("--mem", help="Machine memory size, e.g. 16G, 896M, 1T.")]
LayoutOpt = Annotated[str, typer.Option("--layout", help="x86_64 (DMA/DMA32/Normal) or i386 (DMA/Normal/HighMem).")]
NodesOpt = Annotated[int, typer.Option("--nodes", help="NUMA nodes.")]
CpusOpt = Annotated[int | None, typer.Option("--cpus", help="Modelled CPUs (per-CPU page lists).")]
ZoneinfoOpt = Annotated[Path | None, typer.Option("--zoneinfo", help="Build the machine from a real /proc/zoneinfo.")]
#: the registered designs (registering a design enrols it here)
DESIGN_HELP = f"Page-allocator design: {', '.join(DESIGNS)} (NAME[:OPTIONS], e.g. radix:reserve)."
DesignOpt = Annotated[str, typer.Option("--design", help=DESIGN_HELP)]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write a JSON summary to this path.")]
PcpOpt = Annotated[bool, typer.Option("--pcp/--no-pcp", help="Per-CPU page lists on or off.")]


def given_on_command_line(ctx: typer.Context, *params: str) -> list[str]:
    """The options among ``params`` (parameter names) that the user gave, as ``--flag`` names."""
    out = []
    for name in params:
        src = ctx.get_parameter_source(name)
        if src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP"):
            out.append("--" + name.replace("_", "-"))
    return out


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
    spanned = sum(z.spanned for z in m.zones)
    present = sum(z.present for z in m.zones)
    t = Table(title="struct page array (memmap) per design word size", title_justify="left")
    for col in ("struct page", "design", "bytes per page", "memmap bytes", "% of memory"):
        t.add_column(col, justify="right")
    for name, cls in DESIGNS.items():
        words = cls.words
        b = m.max_pfn * words * 8
        t.add_row(f"{words} word{'s' if words > 1 else ''}", f"{name} ({cls.page_layout})", str(words * 8),
                  format_size(b), f"{100.0 * b / (present * PAGE_SIZE):.2f} %")
    del spanned
    return t


def _summary(m, extra: dict) -> dict:
    d = m.summary()
    d.update(extra)
    return d


def print_proc_views(m, which=("buddyinfo", "unusable_index", "extfrag_index")) -> None:
    """Print views in the kernel's exact text formats (/proc/buddyinfo, debugfs extfrag/*)."""
    files = m.proc_files()
    titles = {"buddyinfo": "/proc/buddyinfo", "pagetypeinfo": "/proc/pagetypeinfo", "zoneinfo": "/proc/zoneinfo",
              "unusable_index": "/sys/kernel/debug/extfrag/unusable_index",
              "extfrag_index": "/sys/kernel/debug/extfrag/extfrag_index"}
    for k in which:
        console.print(f"[bold]{titles[k]}[/]")
        console.print(files[k].rstrip("\n"), markup=False, highlight=False, soft_wrap=True)



CheckpointOpt = Annotated[Path | None, typer.Option(
    "--checkpoint", metavar="PATH", help="Save the machine and the run's state here (with --checkpoint-at or "
    "--checkpoint-every; rewritten atomically); --resume PATH continues it.")]
CheckpointAtOpt = Annotated[int, typer.Option("--checkpoint-at", metavar="N", help="Checkpoint once, after N.")]
CheckpointEveryOpt = Annotated[int, typer.Option("--checkpoint-every", metavar="N",
                                                 help="Checkpoint after every N.")]
ResumeOpt = Annotated[Path | None, typer.Option(
    "--resume", metavar="PATH", help="Continue the run saved in this checkpoint (machine, workload or trace "
    "position, options: all from the checkpoint); it ends bit-identical to an uninterrupted run.")]
SaveOpt = Annotated[Path | None, typer.Option("--save", metavar="PATH",
                                              help="Write the final machine (Machine.save) to this file.")]


RadixNodesOpt = Annotated[str | None, typer.Option(
    "--radix-nodes", metavar="POLICY", help="radix: where tree nodes come from: consume (default; Kent's path, "
    "a free may need memory), reserve (reserved at allocation time; frees never allocate), host (not modelled).")]
