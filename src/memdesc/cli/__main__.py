"""``python -m memdesc.cli``: the same as the ``memdesc`` command."""

from memdesc.cli import main

main()
