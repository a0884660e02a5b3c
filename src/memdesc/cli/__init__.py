"""The ``memdesc`` command line (typer + rich).

Every command prints a human summary and, with ``--json PATH``, writes a JSON summary
whose keys scripts rely on: ``machine`` {``zones``: [...]}, ``design``,
``struct_page_bytes``, ``metadata_bytes`` {``memmap``, ``freelists``, ``descriptors``,
``total``}, ``ops`` {``alloc``, ``free``, ``alloc_failed``}, ``seconds``, ``buddyinfo``
{"NODE:ZONE": [11 ints]}, ``unusable_index``, ``extfrag_index``, ``check``.
Errors a user can cause are reported as one line naming the problem (exit code 2),
never as a traceback.

Layout: :mod:`.options` holds what commands share; each command module has a
``register(app)`` that adds its commands; this module builds the app and runs it.
"""

from __future__ import annotations

import sys

import typer

from memdesc.cli import capture, commands, replay, scenario
from memdesc.cli.options import err
from memdesc.errors import MemdescError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="memdesc: executable models of Linux physical-memory management designs.")
for _module in (commands, replay, scenario, capture):
    _module.register(app)


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
