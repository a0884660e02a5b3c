"""Shared pieces of the ``memdesc`` command line: consoles, options, error and JSON output.

Every command module imports from here (never from :mod:`memdesc.cli` itself), so the
command modules and the app that registers them form no import cycle.

Conventions every command follows:

* choices are enums, so ``--help`` lists them (:class:`Layout`, :class:`Mode`,
  :class:`When`, :class:`Highmem`; designs are listed from the registry);
* a flag that applies to one design only is an error on any other
  (:func:`memdesc.mm.page_alloc.design_spec`, :func:`design_only`);
* ``--json PATH`` on every command, validated against the command's model in
  :mod:`memdesc.results` before it is written;
* exit codes: 0 ok, 1 a check or ``--strict`` failed (:data:`EXIT_CHECK`), 2 a usage or
  input error (:data:`EXIT_USAGE`: one line naming the problem, never a traceback).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated

import numpy as np
import polars as pl
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from memdesc.errors import ConfigError
from memdesc.mm.machine import Machine
from memdesc.mm.mmzone import PAGE_SIZE
from memdesc.mm.page_alloc import DESIGNS, design_variants
from memdesc.mm.page_alloc.radix import POLICIES as RADIX_POLICIES
from memdesc.results import validate
from memdesc.sim.replay import MODES as REPLAY_MODES
from memdesc.units import format_size

console = Console()
err = Console(stderr=True)

#: exit codes of every command
EXIT_OK, EXIT_CHECK, EXIT_USAGE = 0, 1, 2


class Layout(StrEnum):
    """Machine layouts (``--layout``)."""

    x86_64 = "x86_64"
    i386 = "i386"
    i386_nopae = "i386-nopae"


#: replay modes (``--mode``): every mode memdesc.sim.replay knows
Mode = Enum("Mode", {m: m for m in REPLAY_MODES}, type=str)
Mode.__doc__ = "Replay modes (``--mode``)."


class When(StrEnum):
    """Snapshot sides (``--when``)."""

    before = "before"
    after = "after"


class Highmem(StrEnum):
    """When ``memdesc compare`` runs the highmem-free scenario (``--highmem``)."""

    auto = "auto"
    always = "always"
    never = "never"


DESIGN_HELP = ("Page-allocator design NAME[:OPTIONS]: " + ", ".join(DESIGNS) + " (variants: "
               + ", ".join(design_variants()) + ").")

MemOpt = Annotated[str, typer.Option("--mem", help="Machine memory size, e.g. 16G, 896M, 1T.")]
LayoutOpt = Annotated[Layout, typer.Option("--layout", help="x86_64 (DMA/DMA32/Normal) or i386 "
                                                            "(DMA/Normal/HighMem).")]
NodesOpt = Annotated[int, typer.Option("--nodes", min=1, help="NUMA nodes.")]
CpusOpt = Annotated[int | None, typer.Option("--cpus", min=1, help="Modelled CPUs (per-CPU page lists).")]
ZoneinfoOpt = Annotated[Path | None, typer.Option("--zoneinfo", help="Build the machine from a real /proc/zoneinfo.")]
DesignOpt = Annotated[str, typer.Option("--design", metavar="DESIGN", help=DESIGN_HELP)]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write a JSON summary to this path.")]
ParquetOpt = Annotated[Path | None, typer.Option("--parquet", help="Write the results as Parquet table(s) here.")]
PcpOpt = Annotated[bool, typer.Option("--pcp/--no-pcp", help="Per-CPU page lists on or off.")]

#: the default design of every command that runs one design
DEFAULT_DESIGN = "linux"


def table_width(table: Table) -> int:
    """The width ``table`` needs to print without wrapping or cutting a cell."""
    from rich.measure import Measurement  # noqa: PLC0415

    return Measurement.get(console, console.options.update(width=10_000), table).maximum


def fit_columns(n: int, make: Callable[[range], Table], width: int) -> list[range]:
    """Split ``n`` value columns into consecutive groups such that ``make(group)`` (a table of
    a label column and the group's columns) fits ``width`` terminal columns; a column too
    wide for the terminal gets a group of its own."""
    groups, start = [], 0
    while start < n:
        end = start + 1
        while end < n and table_width(make(range(start, end + 1))) <= width:
            end += 1
        groups.append(range(start, end))
        start = end
    return groups


def design_only(design: str, **flags) -> None:
    """Error naming the flag when a design-specific flag is given for another design.

    ``flags``: flag name -> (value, default, designs it applies to)."""
    base = str(design).partition(":")[0]
    for name, (value, default, owners) in flags.items():
        if value != default and base not in owners:
            raise ConfigError(f"--{name.replace('_', '-')} applies to the {' and '.join(owners)} design"
                              f"{'s' if len(owners) > 1 else ''} only, not {base!r}")


def value(v):
    """An enum option's value (None stays None)."""
    return v.value if isinstance(v, Enum) else v


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
    raise typer.Exit(EXIT_USAGE)


def _write_json(path: Path | None, data: dict, command: str | None = None) -> None:
    """Write ``data`` (checked against ``command``'s model of memdesc.results) as JSON."""
    if path is None:
        return
    if command is not None:
        data = validate(command, data)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    except OSError as e:
        _fail(f"cannot write {path}: {e.strerror}")
    console.print(f"[dim]summary written to {path}[/]")


def write_parquet(path: Path, rows: list[dict]) -> None:
    """Rows as one Parquet table (``--parquet``)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame(rows, infer_schema_length=None).write_parquet(path)
    except OSError as e:
        _fail(f"cannot write {path}: {e.strerror}")
    console.print(f"[dim]{len(rows)} rows written to {path}[/]")


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


def _machine(mem: str, layout: Layout | str, nodes: int, cpus: int | None, zoneinfo: Path | None, design: str,
             pcp: bool = True, **kw):
    if zoneinfo is not None and not zoneinfo.exists():
        _fail(f"{zoneinfo}: no such file")
    with console.status(f"building the {design} machine (first use compiles the kernels)..."):
        return Machine.create(mem=mem, design=design, layout=Layout(layout).value, nodes=nodes, cpus=cpus,
                              zoneinfo=zoneinfo, pcp=pcp, **kw)


def zone_table(m) -> Table:
    t = Table(title=f"{m.layout.source} — {m.layout.nr_nodes} node(s), {m.nr_cpus} CPUs, "
                    f"max_pfn {m.max_pfn:#x}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("node", "zone", "start_pfn", "spanned", "present", "managed", "free", "direct\nmapped"):
        t.add_column(col, justify="right" if col not in ("zone", "direct\nmapped") else "left", no_wrap=True)
    zs = m.design.zs
    for i, z in enumerate(m.zones):
        t.add_row(str(z.node), z.name, f"{z.start_pfn:#x}" if z.spanned else "-", f"{z.spanned}", f"{z.present}",
                  f"{int(zs.z_managed[i])}", f"{int(zs.z_free[i])}", "yes" if z.direct_mapped else "no")
    return t


def memmap_table(m) -> Table:
    spanned = sum(z.spanned for z in m.zones)
    present = sum(z.present for z in m.zones)
    t = Table(title="struct page array (memmap) per design word size", title_justify="left", box=box.SIMPLE_HEAD,
              pad_edge=False)
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


RadixNodes = Enum("RadixNodes", {p: p for p in RADIX_POLICIES}, type=str)
RadixNodes.__doc__ = "radix node policies (``--radix-nodes``)."
RadixNodesOpt = Annotated[RadixNodes | None, typer.Option(
    "--radix-nodes", help="radix: where tree nodes come from: consume (default; Kent's path, "
    "a free may need memory), reserve (reserved at allocation time; frees never allocate), host (not modelled).")]
