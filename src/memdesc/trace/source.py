"""Streaming text sources: plain, gzip or zstd files cut into blocks of whole lines.

Theory
------
A trace is read once, front to back, in blocks of about ``block_size`` decompressed
bytes.  Every block handed out ends with ``\\n`` (the partial line at a block's end is
carried into the next block), so a block can be parsed on its own and its lines
numbered from a running count.  The compression is recognised by magic number, not by
file name: ``28 b5 2f fd`` zstd, ``1f 8b`` gzip, anything else plain text.
Concatenated zstd frames and gzip members are decoded in turn.

A compressed stream that stops in the middle of a frame (a capture killed, a copy cut
short) is not an I/O error: everything decoded before the cut is delivered, the partial
last line is held back in :attr:`BlockReader.tail`, and :attr:`BlockReader.stream_error`
says what went wrong.  The reader decides whether that is fatal (``strict``) or counted.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import zstandard

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"

#: decompressed bytes per block handed to the parser
DEFAULT_BLOCK = 16 << 20
_READ = 1 << 20  # compressed bytes per read()


def compression_of(head: bytes) -> str:
    """``"zstd"``, ``"gzip"`` or ``"plain"`` from the first bytes of a file."""
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    return "plain"


class _Frames:
    """Incremental decoder of concatenated zstd frames or gzip members.

    ``make`` returns a fresh decompressobj (one per frame); :meth:`finished` is false if
    the input stopped inside a frame.
    """

    def __init__(self, make):
        self._make = make
        self._obj = make()
        self._fed = False

    def feed(self, raw: bytes) -> bytes:
        out = [self._obj.decompress(raw)]
        self._fed = True
        while self._obj.eof and self._obj.unused_data:  # the next frame / member
            rest = self._obj.unused_data
            self._obj = self._make()
            out.append(self._obj.decompress(rest))
        return b"".join(out)

    def finished(self) -> bool:
        return self._obj.eof or not self._fed


def _decoder(compression: str) -> _Frames:
    if compression == "zstd":
        dctx = zstandard.ZstdDecompressor()
        return _Frames(dctx.decompressobj)
    return _Frames(lambda: zlib.decompressobj(wbits=31))


class BlockReader:
    """Iterate over blocks of whole lines of a (possibly compressed) text file.

    After iteration: :attr:`tail` holds a last line without its newline (b"" if none),
    :attr:`stream_error` is None or a message saying why the compressed stream is
    incomplete, :attr:`compression` names the container.
    """

    def __init__(self, path: str | Path, block_size: int = DEFAULT_BLOCK):
        self.path = Path(path)
        self.block_size = max(int(block_size), 1)
        self.tail = b""
        self.stream_error: str | None = None
        self.compression = "plain"

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            head = f.read(4)
            self.compression = compression_of(head)
            if self.compression == "plain":
                yield from self._lines(self._plain(f, head))
            else:
                yield from self._lines(self._decoded(f, head, _decoder(self.compression)))

    def _plain(self, f, head: bytes) -> Iterator[bytes]:
        first = head + f.read(self.block_size)
        if first:
            yield first
        while chunk := f.read(self.block_size):
            yield chunk

    def _decoded(self, f, head: bytes, dec) -> Iterator[bytes]:
        raw = head + f.read(_READ)
        while raw:
            try:
                out = dec.feed(raw)
            except (zstandard.ZstdError, zlib.error) as exc:
                self.stream_error = f"corrupt {self.compression} data: {exc}"
                return
            if out:
                yield out
            raw = f.read(_READ)
        if not dec.finished():
            self.stream_error = f"{self.compression} stream ends in the middle of a frame (file truncated)"

    def _lines(self, pieces: Iterator[bytes]) -> Iterator[bytes | memoryview]:
        """Regroup decoded pieces into blocks of whole lines.

        Pieces are gathered until they hold ``block_size`` bytes.  The partial line at the
        end is carried over; it and the first line of the next group make a small block of
        their own, so the bulk of a group is handed out as a zero-copy memoryview.
        """
        carry = b""
        pending: list[bytes] = []
        size = 0
        for piece in pieces:
            pending.append(piece)
            size += len(piece)
            if size < self.block_size:
                continue
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending, size = [], 0
            last = data.rfind(b"\n")
            if last < 0:
                carry += data
                continue
            start = 0
            if carry:
                start = data.find(b"\n") + 1
                yield carry + data[:start]
            if last + 1 > start:
                yield memoryview(data)[start: last + 1]
            carry = data[last + 1:]
        data = carry + b"".join(pending)
        cut = data.rfind(b"\n") + 1
        if cut:
            yield memoryview(data)[:cut]
        self.tail = bytes(data[cut:])


def iter_bytes_blocks(data: bytes, block_size: int = DEFAULT_BLOCK) -> tuple[list[memoryview], bytes]:
    """Cut an in-memory text into blocks of whole lines (zero-copy views); returns (blocks, tail)."""
    view = memoryview(data)
    blocks = []
    pos = 0
    n = len(data)
    while pos < n:
        end = pos + block_size
        if end >= n:
            cut = data.rfind(b"\n", pos) + 1
        else:
            cut = data.rfind(b"\n", pos, end) + 1
            if cut <= pos:
                cut = data.find(b"\n", end) + 1
        if cut <= pos:
            break
        blocks.append(view[pos:cut])
        pos = cut
    return blocks, bytes(data[pos:])
