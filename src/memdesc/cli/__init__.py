"""The ``memdesc`` command line (typer + rich).

Every command prints a human summary and, with ``--json PATH``, writes a JSON summary
whose keys scripts rely on: ``machine`` {``zones``: [...]}, ``design``,
``struct_page_bytes``, ``metadata_bytes`` {``memmap``, ``freelists``, ``descriptors``,
``total``}, ``ops`` {``alloc``, ``free``, ``alloc_failed``}, ``free_path_allocations``,
``free_stalls``, ``alloc_failed_for_metadata``, ``seconds``, ``buddyinfo``
{"NODE:ZONE": [11 ints]}, ``unusable_index``, ``extfrag_index``, ``check`` (commands that
run several machines — scenario, compare, sweep — per run).  The models and the committed
JSON Schema are in :mod:`memdesc.results`.
Exit codes: 0 ok, 1 a check (or ``--strict``) failed, 2 a usage or input error, reported
as one line naming the problem, never as a traceback.

Layout: :mod:`.options` holds what commands share; each command module has a
``register(app)`` that adds its commands; this module builds the app and runs it.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from typer.core import TyperGroup

from memdesc.cli import (
    anon,
    capture,
    commands,
    compact,
    compare,
    ontology,
    readahead,
    reclaim,
    replay,
    scenario,
    sweep,
)
from memdesc.cli.options import EXIT_USAGE, err
from memdesc.errors import MemdescError


def _report(e: BaseException) -> NoReturn:
    """A user's error as one line naming the problem, exit code 2."""
    if isinstance(e, OSError):  # missing or unreadable files named on the command line
        msg = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
    else:
        msg = str(e)
    err.print(f"[bold red]memdesc:[/] {msg}")
    raise typer.Exit(EXIT_USAGE)


class MemdescGroup(TyperGroup):
    """The app's command group: errors a user can cause end every command the same way
    (exit code 2, one line), also when the app is invoked directly (CliRunner, scripts)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (MemdescError, OSError) as e:
            _report(e)


app = typer.Typer(cls=MemdescGroup, add_completion=False, no_args_is_help=True,
                  help="memdesc: executable models of Linux physical-memory management designs.")
for _module in (commands, replay, scenario, compare, sweep, capture, ontology, readahead, anon, compact, reclaim):
    _module.register(app)


def main() -> None:
    try:
        app()
    except MemdescError as e:
        err.print(f"[bold red]memdesc:[/] {e}")
        sys.exit(EXIT_USAGE)
    except OSError as e:  # missing or unreadable files named on the command line
        msg = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
        err.print(f"[bold red]memdesc:[/] {msg}")
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        err.print("[bold red]memdesc:[/] interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
