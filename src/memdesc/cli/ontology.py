"""``memdesc ontology``: a real machine's memdesc census, metadata per design, scanner cost.

JSON keys (relied on by scripts): ``census`` {kind: pages}, ``folios`` {kind: {order:
allocations}}, ``designs`` {design: {``struct_page_bytes``, ``descriptor_bytes`` {kind:
bytes}, ``freelist_bytes``, ``total_bytes``, ``bytes_per_page``, ``percent_of_ram``}},
``scanner`` {design: {scanner: cache_lines_per_pfn}}; also ``thp``, ``allocations``,
``anomalies``, ``design_detail``, ``scanner_detail``, ``ram_pages``, ``memmap_pfns``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from memdesc.cli.options import JsonOpt, _fail, _write_json, console
from memdesc.mm import memdesc as md
from memdesc.sim.ontology import ontology as run_ontology
from memdesc.sim.ontology import ontology_of_proc
from memdesc.units import format_size


def _census_table(r: dict) -> Table:
    ram = r["ram_pages"]
    t = Table(title=f"memdesc census of {r['capture']} ({r['when']}): {r['pfns']} pfns, "
                    f"{format_size(r['ram_bytes'])} present RAM", title_justify="left")
    for col in ("kind", "type", "pages", "% of RAM", "allocations"):
        t.add_column(col, justify="left" if col == "kind" else "right")
    for k, n in r["census"].items():
        spec = md.KIND_BY_NAME[k]
        typ = f"{spec.type_id}" + (f"/{spec.subtype}" if spec.subtype >= 0 else "")
        t.add_row(k, typ, str(n), f"{100.0 * n / ram:.2f}" if ram else "-",
                  str(r["allocations"].get(k, 0)) if k not in ("misc:hole", "misc:uninit") else "")
    return t


def _folio_table(r: dict) -> Table:
    hist = {k: v for k, v in r["folios"].items() if v}
    cols = list(hist.items()) + [(f"{k} THP", v) for k, v in r.get("thp", {}).items()]
    top = max((int(o) for _, v in cols for o in v), default=0)
    t = Table(title="allocations by order (a compound head and its tails count once; free: buddy blocks; "
                    "THP: KPF_THP heads)", title_justify="left")
    t.add_column("order", justify="right")
    for k, _ in cols:
        t.add_column(k.removeprefix("misc:"), justify="right")
    for o in range(top + 1):
        t.add_row(str(o), *[str(v.get(str(o), "")) for _, v in cols])
    return t


def _design_table(r: dict) -> Table:
    t = Table(title="metadata per design: struct pages + descriptors + free-memory structures "
                    "(* = free structures by formula, else the design's own metadata_bytes())", title_justify="left")
    for col in ("design", "page", "memmap", "descriptors", "free", "total", "B/page", "% RAM"):
        t.add_column(col, justify="left" if col == "design" else "right")
    for d, v in r["designs"].items():
        det = r["design_detail"][d]
        star = "" if det["freelist_source"].startswith("design") else "*"
        t.add_row(d, f"{det['struct_page']}", format_size(v["struct_page_bytes"]),
                  format_size(sum(v["descriptor_bytes"].values())), format_size(v["freelist_bytes"]) + star,
                  format_size(v["total_bytes"]), f"{v['bytes_per_page']:.2f}", f"{v['percent_of_ram']:.3f}")
    return t


def _descriptor_table(r: dict) -> Table:
    designs = [d for d in r["designs"] if md.DESIGN_SPECS[d].separate_descriptors]
    kinds = sorted({k for d in designs for k, v in r["designs"][d]["descriptor_bytes"].items() if v},
                   key=lambda k: (k not in md.KIND_BY_NAME, k))
    t = Table(title="descriptor bytes by kind (separately allocated; linux overlays them on struct page)",
              title_justify="left")
    t.add_column("kind")
    for d in designs:
        t.add_column(d, justify="right")
    for k in kinds:
        t.add_row(k, *[format_size(r["designs"][d]["descriptor_bytes"].get(k, 0)) for d in designs])
    return t


def _scanner_table(r: dict) -> Table:
    scanners = list(next(iter(r["scanner"].values())))
    t = Table(title="physical-memory scanners: distinct 64-byte cache lines per pfn "
                    "(RAM pfns with initialised struct pages)", title_justify="left")
    t.add_column("design")
    for s in scanners:
        t.add_column(s, justify="right")
    for d, row in r["scanner"].items():
        t.add_row(d, *[f"{row[s]:.3f}" for s in scanners])
    return t


def ontology(capture: Annotated[str | None, typer.Argument(
                 help="Capture directory ({when}.kpageflags[.zst], kpagecount, zoneinfo, ...), or /proc for the "
                      "running machine.")] = None,
             when: Annotated[str, typer.Option("--when", help="before or after.")] = "before",
             proc: Annotated[bool, typer.Option("--proc", help="Read the running machine's /proc (needs root).")]
             = False,
             keep: Annotated[Path | None, typer.Option("--keep", help="--proc: keep the copied /proc files in "
                                                       "this directory (a capture other commands read).")] = None,
             formula: Annotated[bool, typer.Option("--formula", help="Do not load the snapshot into the designs: "
                                                   "free-memory structures by formula only (faster).")] = False,
             scanner: Annotated[bool, typer.Option("--scanner/--no-scanner", help="Scanner cache-line model.")] = True,
             json_path: JsonOpt = None) -> None:
    """What every pfn of a real machine is (memdesc types), and what its metadata costs per design."""
    if proc or capture in ("/proc", "/proc/"):
        with console.status("copying /proc/kpageflags, kpagecount, zoneinfo..."
                            + ("" if formula else " and loading the snapshot into the designs")):
            r = ontology_of_proc("/proc", keep=keep, load=not formula, scanners=scanner)
    else:
        if capture is None:
            _fail("give a capture directory, or --proc for the running machine")
        if keep is not None:
            _fail("--keep applies to --proc only")
        with console.status("reading kpageflags" + ("" if formula else " and loading the snapshot into the designs")
                            + " (first use compiles the kernels)..."):
            r = run_ontology(capture, when, load=not formula, scanners=scanner)
    console.print(_census_table(r))
    an = {k: v for k, v in r["anomalies"].items() if v}
    if an:
        console.print(f"[yellow]compound anomalies (the dump is not atomic):[/] {an}")
    console.print(_folio_table(r))
    console.print(_design_table(r))
    console.print(_descriptor_table(r))
    if scanner:
        console.print(_scanner_table(r))
    console.print(f"[dim]census in {r['seconds']['census']:.2f} s, all in {r['seconds']['total']:.2f} s; "
                  f"{r['memmap_pfns']} pfns have struct pages[/]")
    _write_json(json_path, r, "ontology")


def register(app: typer.Typer) -> None:
    """Add the ontology command to ``app``."""
    app.command()(ontology)
