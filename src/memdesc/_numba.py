"""numba configuration shared by every kernel in memdesc.

Every hot loop in memdesc is an ``@njit`` kernel over numpy arrays.  Kernels are
compiled once and cached on disk.  numba invalidates a cached kernel only when the
kernel's *own* source file changes, but a kernel embeds the machine code of every
njit function it calls, possibly from other files.  To never run a stale kernel we
key the cache directory by a hash of the whole package's source: any edit anywhere
selects a fresh directory.  Set ``NUMBA_CACHE_DIR`` yourself to override.

Kernels must also run under ``NUMBA_DISABLE_JIT=1`` (plain Python), which the test
suite uses to check that the Python semantics and the compiled semantics agree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _source_digest() -> str:
    h = hashlib.blake2b(digest_size=8)
    for p in sorted(_PKG.rglob("*.py")):
        h.update(str(p.relative_to(_PKG)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _cache_root() -> Path:
    base = os.environ.get("MEMDESC_CACHE") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    if not os.environ.get("MEMDESC_CACHE"):
        root = root / "memdesc"
    return root


def _configure() -> None:
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    root = _cache_root() / "numba"
    digest = _source_digest()
    target = root / digest
    try:
        target.mkdir(parents=True, exist_ok=True)
        # keep the cache from growing without bound: drop all but the 4 newest trees
        trees = sorted((p for p in root.iterdir() if p.is_dir() and p != target),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        for old in trees[3:]:
            shutil.rmtree(old, ignore_errors=True)
        os.utime(target)
    except OSError:
        return  # unwritable home: numba falls back to compiling every run
    os.environ["NUMBA_CACHE_DIR"] = str(target)


_configure()

import numba  # noqa: E402

JIT_DISABLED = bool(numba.config.DISABLE_JIT)


def njit(*args, **kwargs):
    """``numba.njit`` with memdesc's defaults (on-disk cache, no GIL)."""
    kwargs.setdefault("cache", True)
    kwargs.setdefault("nogil", True)
    if args and callable(args[0]) and len(args) == 1 and not kwargs.get("_sig"):
        return numba.njit(**kwargs)(args[0])
    return numba.njit(*args, **kwargs)
