"""Human sizes ("16G", "896M", "1T") to bytes and back, with kernel units (K = 1024)."""

from __future__ import annotations

import re

from memdesc.errors import ConfigError

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Parse a size such as ``16G``, ``896M``, ``4GiB`` or a plain byte count."""
    if isinstance(text, int):
        if text <= 0:
            raise ConfigError(f"size must be positive, got {text}")
        return text
    m = _RE.match(str(text))
    if not m:
        raise ConfigError(f"cannot parse size {text!r}: expected e.g. 16G, 896M, 1T")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if value <= 0:
        raise ConfigError(f"size must be positive, got {text!r}")
    return int(value)


def format_size(nbytes: int | float) -> str:
    """Format bytes the way people write memory sizes: ``16.0 GiB``, ``576 B``."""
    n = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
