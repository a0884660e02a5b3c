"""On-disk cache of parsed traces (Parquet).

Theory
------
Parsing a multi-million-line trace costs about a second; reading its columns back from
Parquet costs a few tens of milliseconds.  A parsed trace is therefore stored once per
(source file, parser) pair:

* the key is a hash of the source's absolute path, size and ``st_mtime_ns``, the
  parser version :data:`PARSER_VERSION` and the read options that change the result
  (format override, ``comm``, gfp table).  Editing, replacing or touching the source,
  or changing the parser, selects a new key; a stale entry is simply never read again
  (the directory keeps at most :data:`MAX_ENTRIES` entries, oldest dropped first);
* the entry is one Parquet file whose schema metadata carries the rest of the
  :class:`~memdesc.trace.reader.TraceReadResult` (counts, format, line total) as JSON;
* writes go to a temporary file renamed into place, so a reader never sees half an
  entry; an unreadable entry is ignored (and rewritten by the next parse).

Directory: ``$MEMDESC_CACHE/traces`` if set, else ``$XDG_CACHE_HOME/memdesc/traces``
or ``~/.cache/memdesc/traces`` (the same root as the numba cache, see
:mod:`memdesc._numba`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import polars as pl

from memdesc._numba import _cache_root

#: bump whenever the parser's output for the same input can change
PARSER_VERSION = 1
MAX_ENTRIES = 32
_META_KEY = "memdesc.trace"


def cache_dir() -> Path:
    return _cache_root() / "traces"


def cache_key(path: str | Path, options: dict) -> str | None:
    """Key of a source file's parse, or None if the file cannot be stat()ed."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError:
        return None
    ident = {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
             "parser": PARSER_VERSION, **options}
    return hashlib.blake2b(json.dumps(ident, sort_keys=True).encode(), digest_size=16).hexdigest()


def entry_path(key: str) -> Path:
    return cache_dir() / f"{key}.parquet"


def load(key: str) -> tuple[pl.DataFrame, dict] | None:
    """The cached (frame, metadata) of a key, or None if absent or unreadable."""
    path = entry_path(key)
    if not path.is_file():
        return None
    try:
        meta = json.loads(pl.read_parquet_metadata(path)[_META_KEY])
        df = pl.read_parquet(path)
    except (OSError, KeyError, ValueError, pl.exceptions.PolarsError):
        return None
    try:
        os.utime(path)  # recently used entries survive _prune
    except OSError:
        pass
    return df, meta


def store(key: str, df: pl.DataFrame, meta: dict) -> Path | None:
    """Write an entry atomically; returns its path, or None if the cache is unwritable."""
    root = cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".tmp")
        os.close(fd)
        try:
            df.write_parquet(tmp, compression="zstd", compression_level=1,
                             metadata={_META_KEY: json.dumps(meta)})
            os.replace(tmp, entry_path(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _prune(root)
    except (OSError, pl.exceptions.PolarsError):
        return None
    return entry_path(key)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:  # removed meanwhile by another process
        return 0.0


def _prune(root: Path) -> None:
    entries = sorted(root.glob("*.parquet"), key=_mtime, reverse=True)
    for old in entries[MAX_ENTRIES:]:
        try:
            old.unlink()
        except OSError:
            pass


def clear() -> int:
    """Delete every cached trace; returns how many entries were removed."""
    n = 0
    for p in cache_dir().glob("*.parquet"):
        try:
            p.unlink()
            n += 1
        except OSError:
            pass
    return n
