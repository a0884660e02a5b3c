"""``memdesc compact``: a full compaction (vm.compact_memory) of a real snapshot, per design.

Registered on the main typer app by :func:`register`.  The capture's snapshot is rebuilt on
each design, its anon and file pages become folios, every zone is compacted (order -1,
MIGRATE_SYNC, whole zone) and the result -- pages migrated, where the scanners met, the free
area before and after, descriptor allocations -- is printed beside the kernel's own full
compaction of the capture (mm_compaction_begin/end and the events between).  ``--json``
writes :class:`memdesc.results.CompactCommand`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from memdesc.cli.options import JsonOpt, _fail, _write_json, console
from memdesc.errors import ConfigError, FormatError
from memdesc.sim.compact import compact_capture

DESIGNS = ("linux", "radix", "vmem")


def _hex(x) -> str:
    return "-" if x is None else f"{int(x):#x}"


def register(app: typer.Typer) -> None:
    """Add the ``compact`` command to ``app``."""

    @app.command("compact")
    def compact_cmd(
        capture: Annotated[Path | None, typer.Argument(help="A capture directory (before/after snapshots; "
                                                            "trace.txt.zst for the kernel's own compaction events), "
                                                            "e.g. ../shared/traces/compaction.")] = None,
        design: Annotated[str, typer.Option("--design", help="Design(s), comma-separated, or 'all' "
                                                             "(linux, radix, vmem; llfree has no "
                                                             "compaction primitives yet).")] = "linux",
        when: Annotated[str, typer.Option("--when", help="Snapshot to rebuild: before or after.")] = "before",
        json_path: JsonOpt = None,
        no_kernel: Annotated[bool, typer.Option("--no-kernel", help="Do not read the capture's trace.")] = False,
    ) -> None:
        """Full compaction (compact_memory) of a capture's snapshot on each design, beside the kernel's."""
        designs = DESIGNS if design == "all" else tuple(d.strip() for d in design.split(",") if d.strip())
        if not designs:
            _fail("--design: no design given")
        if when not in ("before", "after"):
            _fail(f"--when must be before or after, got {when!r}")
        if capture is None:
            _fail("give a capture directory (e.g. ../shared/traces/compaction)")
        if not capture.is_dir():
            _fail(f"{capture}: not a capture directory")
        runs = []
        for d in designs:
            with console.status(f"{d}: rebuilding {capture.name} {when} and compacting (first use compiles)..."):
                try:
                    runs.append(compact_capture(capture, d, when, kernel=not no_kernel))
                except (ConfigError, FormatError) as e:
                    _fail(str(e))
        t = Table(title=f"full compaction of {capture.name} ({when} snapshot)")
        for c in ("design", "adopted folios", "pages migrated", "failed", "descriptor allocs", "desc failures",
                  "order-9 before", "order-9 after", "free pages", "score before", "score after", "s", "check"):
            t.add_column(c, justify="right")
        for r in runs:
            t.add_row(r["design"], f"{r['adoption']['folios']:,}", f"{r['pages_migrated']:,}",
                      f"{r['migrate_failed_folios']:,}", f"{r['descriptor_allocations']:,}",
                      f"{r['descriptor_failures']:,}", f"{r['order9_blocks_before']:,}",
                      f"{r['order9_blocks_after']:,}", f"{r['free_pages_after']:,}",
                      str(r["fragmentation_score_node_before"]), str(r["fragmentation_score_node_after"]),
                      f"{r['seconds']:.2f}", r["check"])
        console.print(t)
        for r in runs:
            z = Table(title=f"{r['design']}: scanners per zone (model | kernel)")
            for c in ("zone", "free_pfn begin", "met at", "status", "migrate scanned", "migrate taken",
                      "free scanned", "free taken", "migrated", "failed"):
                z.add_column(c, justify="right")
            for zr in r["zones"]:
                m, k = zr["model"], zr["kernel"] or {}

                def both(fm, fk, m=m, k=k):
                    return f"{fm(m)} | {fk(k) if k else '-'}"

                z.add_row(zr["zone"], both(lambda s: _hex(s["free_pfn_begin"]), lambda s: _hex(s["free_pfn_begin"])),
                          both(lambda s: _hex(s["meeting_pfn"]), lambda s: _hex(s["meeting_pfn"])),
                          both(lambda s: s["status"], lambda s: s["status"]),
                          both(lambda s: f"{s['isolate_migratepages']['nr_scanned']:,}",
                               lambda s: f"{s['isolate_migratepages']['nr_scanned']:,}"),
                          both(lambda s: f"{s['isolate_migratepages']['nr_taken']:,}",
                               lambda s: f"{s['isolate_migratepages']['nr_taken']:,}"),
                          both(lambda s: f"{s['isolate_freepages']['nr_scanned']:,}",
                               lambda s: f"{s['isolate_freepages']['nr_scanned']:,}"),
                          both(lambda s: f"{s['isolate_freepages']['nr_taken']:,}",
                               lambda s: f"{s['isolate_freepages']['nr_taken']:,}"),
                          both(lambda s: f"{s['migratepages']['nr_migrated']:,}",
                               lambda s: f"{s['migratepages']['nr_migrated']:,}"),
                          both(lambda s: f"{s['migratepages']['nr_failed']:,}",
                               lambda s: f"{s['migratepages']['nr_failed']:,}"))
            console.print(z)
        _write_json(json_path, {"capture": str(capture), "when": when, "runs": runs}, "compact")
