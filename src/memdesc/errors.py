"""Exceptions raised by memdesc.

Every error a user can provoke (bad pfn, bad order, double free, malformed trace,
wrong file) is a :class:`MemdescError` subclass with a message that names the
problem.  Allocation failure is *not* an error: it is a normal result (-1 / None).
"""

from __future__ import annotations


class MemdescError(Exception):
    """Base class of every memdesc error."""


class ConfigError(MemdescError, ValueError):
    """An invalid machine, design or command configuration."""


class InvalidPfn(MemdescError, ValueError):
    """A pfn outside the machine, in a hole, or not what the call requires."""


class InvalidOrder(MemdescError, ValueError):
    """An order outside 0..MAX_PAGE_ORDER, or not matching the allocation."""


class DoubleFree(MemdescError):
    """Freeing a block that is already free."""


class NotAllocationHead(InvalidPfn):
    """Freeing a pfn that is not the first page of an allocation."""


class OrderMismatch(InvalidOrder):
    """Freeing an allocation with an order other than the one it was allocated with."""


class InvariantViolation(MemdescError):
    """``check()`` found the allocator state inconsistent."""


class FormatError(MemdescError, ValueError):
    """Input text or binary data that is not in the expected format.

    ``path`` and ``lineno`` (1-based) locate the problem when known.
    """

    def __init__(self, message: str, path: str | None = None, lineno: int | None = None,
                 line: str | None = None):
        self.path, self.lineno, self.line = path, lineno, line
        where = ""
        if path is not None:
            where = f"{path}:{lineno}: " if lineno is not None else f"{path}: "
        text = f"{where}{message}"
        if line is not None:
            text += f"\n    {line.rstrip()}"
        super().__init__(text)


class CaptureError(MemdescError):
    """``memdesc capture`` cannot trace here: not root, no tracefs, a missing event, a bad OUTDIR."""
