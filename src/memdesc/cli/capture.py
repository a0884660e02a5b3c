"""``memdesc capture``: trace a command on this machine into a capture directory (root, tracefs).

Registered on the main typer app by :func:`register`.  The work is
:func:`memdesc.trace.capture.capture`; this module parses the options, prints progress to
stderr and a summary to stdout, writes ``--json`` and exits with the command's exit
status (128+N if a signal N killed it, 130 if the capture was aborted, 2 for an error
that prevented the capture).
"""

from __future__ import annotations

import shlex
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from memdesc.cli.options import JsonOpt, _write_json, console, err
from memdesc.trace.capture import capture
from memdesc.units import format_size


class EventSet(StrEnum):
    """Which tracepoints a capture enables."""

    kmem = "kmem"
    folio = "folio"


def register(app: typer.Typer) -> None:
    """Add the ``capture`` command to ``app``."""

    @app.command("capture")
    def capture_cmd(
        outdir: Annotated[Path, typer.Argument(
            metavar="OUTDIR", help="Directory to write the capture into (created; must be empty unless --force).")],
        command: Annotated[list[str] | None, typer.Argument(
            metavar="COMMAND", help="The command to trace, after --: -- dd if=/dev/zero of=/tmp/z bs=1M count=256.",
            show_default=False)] = None,
        events: Annotated[EventSet, typer.Option(
            "--events", help="kmem: the six page-allocator events; folio: also filemap, readahead, pagemap, vmscan, "
                             "compaction, migrate and THP events.")] = EventSet.kmem,
        buffer_kb: Annotated[int | None, typer.Option(
            "--buffer-kb", metavar="N", help="Ring buffer per CPU in KiB (default: 65536, at most 1/64 of "
                                             "MemAvailable over all CPUs).")] = None,
        duration: Annotated[float | None, typer.Option(
            "--duration", metavar="S", help="Stop the command after S seconds; without a COMMAND, trace the "
                                            "machine for S seconds.")] = None,
        force: Annotated[bool, typer.Option("--force", help="Write into a non-empty OUTDIR (its capture files "
                                                            "are replaced).")] = False,
        top_level: Annotated[bool, typer.Option(
            "--top-level", help="Use the top-level tracefs buffer (saved and restored) instead of a private "
                                "instance.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not echo the command's output (it still "
                                                                   "goes to workload.log).")] = False,
        json_path: JsonOpt = None,
    ) -> None:
        """Trace COMMAND with tracefs and snapshot /proc before and after: a capture for replay and compare.

        Needs root.  Mounts tracefs at /sys/kernel/tracing when it is not mounted.  The tracing
        state is left as it was, also on Ctrl-C (the first stops the command and finishes the
        capture; a third aborts).  Exits with the command's exit status.
        """
        def log(msg: str) -> None:
            err.print(f"[dim]capture:[/] {msg}", highlight=False)

        res = capture(outdir, command or [], events=events.value, buffer_kb=buffer_kb, duration=duration,
                      force=force, top_level=top_level, echo=not quiet, log=log)
        t = Table(title=f"capture {res.outdir} ({res.status})", title_justify="left", show_header=False)
        t.add_column("what")
        t.add_column("value", overflow="fold")
        t.add_row("command", shlex.join(res.command))
        t.add_row("exit status", "-" if res.exit_status is None else str(res.exit_status)
                  + (f" ({res.stop_reason})" if res.stop_reason else ""))
        t.add_row("wall time", f"{res.command_seconds:.3f} s")
        t.add_row("kernel", res.machine.get("release", "?"))
        t.add_row("events enabled", f"{len(res.events_enabled)} ({res.events_set})"
                  + (f"; missing {len(res.events_missing)}" if res.events_missing else ""))
        t.add_row("trace", f"{res.trace_lines} lines, {format_size(res.trace_bytes)} text, "
                           f"{format_size(res.compressed_bytes)} compressed")
        t.add_row("ring buffer", f"{res.buffer_kb} KiB per CPU ({res.mode})")
        t.add_row("overruns", str(res.overruns))
        t.add_row("events lost", f"{res.events_lost} (dropped {res.loss.get('dropped events', 0)}, "
                                 f"LOST lines {res.lost_markers}, unread {res.loss.get('unread entries', 0)})")
        console.print(t)
        if res.events:
            et = Table(title="events in the trace", title_justify="left")
            et.add_column("event")
            et.add_column("count", justify="right")
            for k, v in res.events.items():
                et.add_row(k, str(v))
            console.print(et)
        if res.events_lost:
            err.print(f"[bold yellow]warning:[/] {res.events_lost} events lost: raise --buffer-kb "
                      f"(now {res.buffer_kb}) or trace fewer events")
        for p in res.restore_problems:
            err.print(f"[bold red]problem while finishing the capture:[/] {p}")
        _write_json(json_path, res.as_dict(), "capture")
        raise typer.Exit(res.returncode)
