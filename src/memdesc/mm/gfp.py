"""GFP flags: the allocation-request modifiers of the Linux page allocator (Linux 6.18).

Theory
------
Every page allocation carries a ``gfp_t`` mask (include/linux/gfp_types.h).  Its bits
fall into four groups, and the page allocator reads each group differently:

* **zone modifiers** (``__GFP_DMA``, ``__GFP_HIGHMEM``, ``__GFP_DMA32``,
  ``__GFP_MOVABLE``; ``GFP_ZONEMASK``) select the *highest* zone the request may use.
  ``gfp_zone()`` indexes the 16-entry ``GFP_ZONE_TABLE`` bit-string with those four
  bits; eight of the sixteen combinations are invalid (``GFP_ZONE_BAD``).  Which zone
  an entry names depends on the configured zones (no ZONE_HIGHMEM on x86-64, so
  ``__GFP_HIGHMEM`` means Normal there).
* **mobility** (``__GFP_MOVABLE``, ``__GFP_RECLAIMABLE``) is also the migratetype:
  ``gfp_migratetype() = (gfp & GFP_MOVABLE_MASK) >> GFP_MOVABLE_SHIFT``.
* **watermark / reclaim modifiers** become ``alloc_flags`` (mm/internal.h) in
  ``gfp_to_alloc_flags()``: ``__GFP_HIGH`` is bit-identical to ``ALLOC_MIN_RESERVE``
  and ``__GFP_KSWAPD_RECLAIM`` to ``ALLOC_KSWAPD``; no ``__GFP_DIRECT_RECLAIM`` means
  ``ALLOC_NON_BLOCK``; ``__GFP_MEMALLOC`` means ``ALLOC_NO_WATERMARKS``.
* **action modifiers** (``__GFP_COMP``, ``__GFP_ZERO``, ``__GFP_NOWARN`` ...) change
  what happens to the page after it left the free lists.

Bit layout (``enum { ___GFP_DMA_BIT, ... }``) is config dependent after bit 23.  We
model a 6.18 x86-64 distribution/defconfig-like kernel: ``CONFIG_KASAN_HW_TAGS=n``
(arm64 only: ``__GFP_SKIP_ZERO = __GFP_SKIP_KASAN = 0``), ``CONFIG_LOCKDEP=n``
(``__GFP_NOLOCKDEP = 0``), ``CONFIG_SLAB_OBJ_EXT=y`` (selected by MEMCG:
``__GFP_NO_OBJ_EXT`` is bit 24), so ``__GFP_BITS_SHIFT = 25``.  This is exactly the
table the captured 6.18 machine prints (its ``events/kmem/mm_page_alloc/format``,
which the tests evaluate); :func:`gfpflag_names_from_format` reads the table of any
other kernel from its format file.

Text forms are those of ftrace's ``show_gfp_flags()``: ``__print_flags`` walks
``__def_gfpflag_names`` (include/trace/events/mmflags.h) in order, prints every entry
whose bits are all still present and removes them, prints a leftover as ``0x%lx`` and
``none`` for 0.  :func:`format_gfp` reproduces it byte for byte; :func:`parse_gfp`
inverts it.

Sources read: gfp_types.h/gfp.h/mmflags.h/mm/internal.h of linux-mm (2026 tree) and
kernel-patches/bpf, the v6.19 ``gfp_to_alloc_flags()``, and the 6.18 format file.
Numba kernels (``*_nb``) take plain ints/arrays so allocator kernels can call them.
"""

from __future__ import annotations

import enum
import functools
import operator
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from memdesc._numba import njit
from memdesc.errors import ConfigError, FormatError, InvalidOrder
from memdesc.mm.mmzone import (
    MAX_PAGE_ORDER,
    MIGRATETYPE_NAMES,
    WMARK_HIGH,
    WMARK_LOW,
    WMARK_MIN,
    ZONE_BY_NAME,
    ZoneType,
)

# ---------------------------------------------------------------------------
# enum { ___GFP_*_BIT } (include/linux/gfp_types.h), 6.18 x86-64 config (see above)
# ---------------------------------------------------------------------------
___GFP_DMA_BIT = 0
___GFP_HIGHMEM_BIT = 1
___GFP_DMA32_BIT = 2
___GFP_MOVABLE_BIT = 3
___GFP_RECLAIMABLE_BIT = 4
___GFP_HIGH_BIT = 5
___GFP_IO_BIT = 6
___GFP_FS_BIT = 7
___GFP_ZERO_BIT = 8
___GFP_UNUSED_BIT = 9  # 0x200u unused
___GFP_DIRECT_RECLAIM_BIT = 10
___GFP_KSWAPD_RECLAIM_BIT = 11
___GFP_WRITE_BIT = 12
___GFP_NOWARN_BIT = 13
___GFP_RETRY_MAYFAIL_BIT = 14
___GFP_NOFAIL_BIT = 15
___GFP_NORETRY_BIT = 16
___GFP_MEMALLOC_BIT = 17
___GFP_COMP_BIT = 18
___GFP_NOMEMALLOC_BIT = 19
___GFP_HARDWALL_BIT = 20
___GFP_THISNODE_BIT = 21
___GFP_ACCOUNT_BIT = 22
___GFP_ZEROTAGS_BIT = 23
# CONFIG_KASAN_HW_TAGS=n: no SKIP_ZERO/SKIP_KASAN bits; CONFIG_LOCKDEP=n: no NOLOCKDEP bit
___GFP_NO_OBJ_EXT_BIT = 24  # CONFIG_SLAB_OBJ_EXT=y
___GFP_LAST_BIT = 25

#: bit numbers by flag name (without the ``__GFP_`` prefix), in kernel enum order
GFP_BITS: dict[str, int] = {
    "DMA": ___GFP_DMA_BIT, "HIGHMEM": ___GFP_HIGHMEM_BIT, "DMA32": ___GFP_DMA32_BIT,
    "MOVABLE": ___GFP_MOVABLE_BIT, "RECLAIMABLE": ___GFP_RECLAIMABLE_BIT, "HIGH": ___GFP_HIGH_BIT,
    "IO": ___GFP_IO_BIT, "FS": ___GFP_FS_BIT, "ZERO": ___GFP_ZERO_BIT,
    "DIRECT_RECLAIM": ___GFP_DIRECT_RECLAIM_BIT, "KSWAPD_RECLAIM": ___GFP_KSWAPD_RECLAIM_BIT,
    "WRITE": ___GFP_WRITE_BIT, "NOWARN": ___GFP_NOWARN_BIT, "RETRY_MAYFAIL": ___GFP_RETRY_MAYFAIL_BIT,
    "NOFAIL": ___GFP_NOFAIL_BIT, "NORETRY": ___GFP_NORETRY_BIT, "MEMALLOC": ___GFP_MEMALLOC_BIT,
    "COMP": ___GFP_COMP_BIT, "NOMEMALLOC": ___GFP_NOMEMALLOC_BIT, "HARDWALL": ___GFP_HARDWALL_BIT,
    "THISNODE": ___GFP_THISNODE_BIT, "ACCOUNT": ___GFP_ACCOUNT_BIT, "ZEROTAGS": ___GFP_ZEROTAGS_BIT,
    "NO_OBJ_EXT": ___GFP_NO_OBJ_EXT_BIT,
}

# __GFP_* masks.  (Module-level names with two leading underscores are fine here; inside a
# class body Python would mangle them -- use GFP.COMP or GFP_FLAGS["__GFP_COMP"] there.)
__GFP_DMA = 1 << ___GFP_DMA_BIT
__GFP_HIGHMEM = 1 << ___GFP_HIGHMEM_BIT
__GFP_DMA32 = 1 << ___GFP_DMA32_BIT
__GFP_MOVABLE = 1 << ___GFP_MOVABLE_BIT
__GFP_RECLAIMABLE = 1 << ___GFP_RECLAIMABLE_BIT
__GFP_HIGH = 1 << ___GFP_HIGH_BIT
__GFP_IO = 1 << ___GFP_IO_BIT
__GFP_FS = 1 << ___GFP_FS_BIT
__GFP_ZERO = 1 << ___GFP_ZERO_BIT
__GFP_DIRECT_RECLAIM = 1 << ___GFP_DIRECT_RECLAIM_BIT
__GFP_KSWAPD_RECLAIM = 1 << ___GFP_KSWAPD_RECLAIM_BIT
__GFP_WRITE = 1 << ___GFP_WRITE_BIT
__GFP_NOWARN = 1 << ___GFP_NOWARN_BIT
__GFP_RETRY_MAYFAIL = 1 << ___GFP_RETRY_MAYFAIL_BIT
__GFP_NOFAIL = 1 << ___GFP_NOFAIL_BIT
__GFP_NORETRY = 1 << ___GFP_NORETRY_BIT
__GFP_MEMALLOC = 1 << ___GFP_MEMALLOC_BIT
__GFP_COMP = 1 << ___GFP_COMP_BIT
__GFP_NOMEMALLOC = 1 << ___GFP_NOMEMALLOC_BIT
__GFP_HARDWALL = 1 << ___GFP_HARDWALL_BIT
__GFP_THISNODE = 1 << ___GFP_THISNODE_BIT
__GFP_ACCOUNT = 1 << ___GFP_ACCOUNT_BIT
__GFP_ZEROTAGS = 1 << ___GFP_ZEROTAGS_BIT
__GFP_NO_OBJ_EXT = 1 << ___GFP_NO_OBJ_EXT_BIT
__GFP_SKIP_ZERO = 0  # CONFIG_KASAN_HW_TAGS=n
__GFP_SKIP_KASAN = 0  # CONFIG_KASAN_HW_TAGS=n
__GFP_NOLOCKDEP = 0  # CONFIG_LOCKDEP=n
__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM
__GFP_BITS_SHIFT = ___GFP_LAST_BIT
__GFP_BITS_MASK = (1 << __GFP_BITS_SHIFT) - 1

GFP_ZONEMASK = __GFP_DMA | __GFP_HIGHMEM | __GFP_DMA32 | __GFP_MOVABLE
GFP_MOVABLE_MASK = __GFP_RECLAIMABLE | __GFP_MOVABLE
GFP_MOVABLE_SHIFT = 3

# Useful combinations (gfp_types.h, 6.18: GFP_NOWAIT includes __GFP_NOWARN)
GFP_ATOMIC = __GFP_HIGH | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | __GFP_ACCOUNT
GFP_NOWAIT = __GFP_KSWAPD_RECLAIM | __GFP_NOWARN
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | __GFP_IO
GFP_USER = __GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL
GFP_DMA = __GFP_DMA
GFP_DMA32 = __GFP_DMA32
GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | __GFP_MOVABLE | __GFP_SKIP_KASAN
GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC | __GFP_NOWARN) & ~__GFP_RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM

#: mm/internal.h
GFP_RECLAIM_MASK = (__GFP_RECLAIM | __GFP_HIGH | __GFP_IO | __GFP_FS | __GFP_NOWARN | __GFP_RETRY_MAYFAIL
                    | __GFP_NOFAIL | __GFP_NORETRY | __GFP_MEMALLOC | __GFP_NOMEMALLOC | __GFP_NOLOCKDEP)
GFP_BOOT_MASK = __GFP_BITS_MASK & ~(__GFP_RECLAIM | __GFP_IO | __GFP_FS)
GFP_CONSTRAINT_MASK = __GFP_HARDWALL | __GFP_THISNODE

_COMPOSITES = {
    "GFP_TRANSHUGE": GFP_TRANSHUGE, "GFP_TRANSHUGE_LIGHT": GFP_TRANSHUGE_LIGHT,
    "GFP_HIGHUSER_MOVABLE": GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER": GFP_HIGHUSER, "GFP_USER": GFP_USER,
    "GFP_KERNEL_ACCOUNT": GFP_KERNEL_ACCOUNT, "GFP_KERNEL": GFP_KERNEL, "GFP_NOFS": GFP_NOFS,
    "GFP_ATOMIC": GFP_ATOMIC, "GFP_NOIO": GFP_NOIO, "GFP_NOWAIT": GFP_NOWAIT, "GFP_DMA": GFP_DMA,
    "GFP_DMA32": GFP_DMA32,
}

#: ``__def_gfpflag_names`` of include/trace/events/mmflags.h in print order, for this config:
#: composites (most bits first), ``__GFP_RECLAIM``, then every flag bit in enum order
#: (TRACE_GFP_FLAGS incl. the SLAB_OBJ_EXT entry).
GFPFLAG_NAMES: tuple[tuple[int, str], ...] = (
    *((v, k) for k, v in _COMPOSITES.items()),
    (__GFP_RECLAIM, "__GFP_RECLAIM"),
    *((1 << b, "__GFP_" + n) for n, b in GFP_BITS.items()),
)

#: every mask by its kernel name (``__GFP_*`` flags, ``__GFP_RECLAIM`` and ``GFP_*`` combinations)
GFP_FLAGS: dict[str, int] = {name: mask for mask, name in GFPFLAG_NAMES}


#: The same masks as an IntFlag, names without the ``__GFP_`` / ``GFP_`` prefix
#: (``GFP.COMP``, ``GFP.KERNEL``); safe inside class bodies, where Python would mangle
#: ``__GFP_COMP``.  ``GFP.NOIO`` is an alias of ``GFP.RECLAIM`` (same value), ``GFP.DMA``
#: and ``GFP.DMA32`` are both the flag and the ``GFP_DMA``/``GFP_DMA32`` combination.
GFP = enum.IntFlag("GFP", [
    *((n, 1 << b) for n, b in GFP_BITS.items()),
    ("RECLAIM", __GFP_RECLAIM),
    *((k[4:], v) for k, v in _COMPOSITES.items() if k not in ("GFP_DMA", "GFP_DMA32")),
], module=__name__)


# ---------------------------------------------------------------------------
# alloc_flags (mm/internal.h, 6.18)
# ---------------------------------------------------------------------------
ALLOC_WMARK_MIN = WMARK_MIN
ALLOC_WMARK_LOW = WMARK_LOW
ALLOC_WMARK_HIGH = WMARK_HIGH
ALLOC_NO_WATERMARKS = 0x04
ALLOC_WMARK_MASK = ALLOC_NO_WATERMARKS - 1
ALLOC_OOM = 0x08  # CONFIG_MMU
ALLOC_NON_BLOCK = 0x10
ALLOC_MIN_RESERVE = 0x20
ALLOC_CPUSET = 0x40
ALLOC_CMA = 0x80
ALLOC_NOFRAGMENT = 0x100  # CONFIG_ZONE_DMA32 (0 without it)
ALLOC_HIGHATOMIC = 0x200
ALLOC_TRYLOCK = 0x400
ALLOC_KSWAPD = 0x800
ALLOC_RESERVES = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM

ALLOC_FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (ALLOC_NO_WATERMARKS, "ALLOC_NO_WATERMARKS"), (ALLOC_OOM, "ALLOC_OOM"),
    (ALLOC_NON_BLOCK, "ALLOC_NON_BLOCK"), (ALLOC_MIN_RESERVE, "ALLOC_MIN_RESERVE"),
    (ALLOC_CPUSET, "ALLOC_CPUSET"), (ALLOC_CMA, "ALLOC_CMA"), (ALLOC_NOFRAGMENT, "ALLOC_NOFRAGMENT"),
    (ALLOC_HIGHATOMIC, "ALLOC_HIGHATOMIC"), (ALLOC_TRYLOCK, "ALLOC_TRYLOCK"), (ALLOC_KSWAPD, "ALLOC_KSWAPD"),
)
_WMARK_NAMES = ("ALLOC_WMARK_MIN", "ALLOC_WMARK_LOW", "ALLOC_WMARK_HIGH", "ALLOC_WMARK_3")

#: GFP_ZONE_BAD: one bit per invalid combination of the four zone modifier bits
GFP_ZONE_BAD = (
    1 << (__GFP_DMA | __GFP_HIGHMEM)
    | 1 << (__GFP_DMA | __GFP_DMA32)
    | 1 << (__GFP_DMA32 | __GFP_HIGHMEM)
    | 1 << (__GFP_DMA | __GFP_DMA32 | __GFP_HIGHMEM)
    | 1 << (__GFP_MOVABLE | __GFP_HIGHMEM | __GFP_DMA)
    | 1 << (__GFP_MOVABLE | __GFP_DMA32 | __GFP_DMA)
    | 1 << (__GFP_MOVABLE | __GFP_DMA32 | __GFP_HIGHMEM)
    | 1 << (__GFP_MOVABLE | __GFP_DMA32 | __GFP_DMA | __GFP_HIGHMEM)
)

_GFP_MAX = (1 << 64) - 1  # the trace field is an unsigned long
_GFP_T_MAX = (1 << 32) - 1  # gfp_t is an unsigned int


def _check_gfp(gfp, limit: int = _GFP_T_MAX) -> int:
    if isinstance(gfp, bool) or not isinstance(gfp, int | np.integer):
        raise ConfigError(f"gfp mask must be an integer, got {gfp!r}")
    value = int(gfp)
    if not 0 <= value <= limit:
        raise ConfigError(f"gfp mask must be in 0..0x{limit:x}, got {gfp!r}")
    return value


# ---------------------------------------------------------------------------
# show_gfp_flags() and its inverse
# ---------------------------------------------------------------------------
def format_gfp(gfp: int, names: Sequence[tuple[int, str]] | None = None) -> str:
    """``show_gfp_flags(gfp)``: the string ftrace prints for ``gfp_flags=``.

    ``names`` is a ``__def_gfpflag_names`` table (default: :data:`GFPFLAG_NAMES`).
    Walks the table in order (``trace_print_flags_seq``): each entry whose bits are all
    still set is printed and its bits removed; leftover bits print as ``0x%lx``; 0 is
    ``none``.
    """
    flags = _check_gfp(gfp, _GFP_MAX)
    if names is None:
        return _format_default(flags)
    return _show_flags(flags, names)


@functools.lru_cache(maxsize=4096)
def _format_default(flags: int) -> str:
    return _show_flags(flags, GFPFLAG_NAMES)


def _show_flags(flags: int, table: Sequence[tuple[int, str]]) -> str:
    """trace_print_flags_seq() with show_gfp_flags()'s "none" for 0."""
    if flags == 0:
        return "none"
    out = []
    for mask, name in table:
        if not flags:
            break
        if flags & mask == mask:
            out.append(name)
            flags &= ~mask
    if flags:
        out.append(f"0x{flags:x}")
    return "|".join(out)


_HEX_RE = re.compile(r"0[xX][0-9a-fA-F]+\Z")


def parse_gfp(text: str, names: Sequence[tuple[int, str]] | None = None) -> int:
    """Parse a ``gfp_flags=`` value as ftrace or perf print it.

    Accepts ``GFP_HIGHUSER_MOVABLE|__GFP_COMP``, raw hex (``0x140cca``; printed by
    kernels whose trace enums were broken), mixtures with a trailing ``|0x...`` and
    ``none``.  Names must be in ``names`` (default :data:`GFPFLAG_NAMES`); anything else
    raises :class:`~memdesc.errors.FormatError` naming the bad token.
    """
    if not isinstance(text, str):
        raise FormatError(f"gfp flags must be a string, got {type(text).__name__}")
    if names is None:
        return _parse_default(text)
    return _parse_flags(text, {name: mask for mask, name in names})


@functools.lru_cache(maxsize=4096)
def _parse_default(text: str) -> int:
    return _parse_flags(text, GFP_FLAGS)


def _parse_flags(text: str, lookup: Mapping[str, int]) -> int:
    s = text.strip()
    if s == "none":
        return 0
    if not s:
        raise FormatError("empty gfp flags string")
    value = 0
    for token in s.split("|"):
        tok = token.strip()
        mask = lookup.get(tok)
        if mask is None:
            if _HEX_RE.match(tok):
                mask = int(tok, 16)
                if mask > _GFP_MAX:
                    raise FormatError(f"gfp value {tok} does not fit an unsigned long in {text!r}")
            elif not tok:
                raise FormatError(f"empty flag name in gfp flags {text!r}")
            elif tok == "none":
                raise FormatError(f"'none' can only stand alone, got {text!r}")
            else:
                raise FormatError(f"unknown gfp flag {tok!r} in {text!r}")
        value |= mask
    return value


# ---------------------------------------------------------------------------
# Reading __def_gfpflag_names out of a tracefs event format file
# ---------------------------------------------------------------------------
_ENTRY_RE = re.compile(r'\{\s*([^{}"]*?)\s*,\s*"([^"]*)"\s*\}')
_END_RE = re.compile(r"\{\s*0\s*,\s*(?:\(\s*\(\s*void\s*\*\s*\)\s*0\s*\)|NULL)\s*\}")
_TOKEN_RE = re.compile(r"\s*(?:(0[xX][0-9a-fA-F]+|\d+)[uUlL]*|([A-Za-z_]\w*)|(<<|>>|[()|&^~+\-*]))")
_C_BINOPS = {"|": operator.or_, "^": operator.xor, "&": operator.and_, "<<": operator.lshift,
             ">>": operator.rshift, "+": operator.add, "-": operator.sub, "*": operator.mul}
_CAST_WORDS = {"unsigned", "signed", "long", "int", "short", "char", "gfp_t", "__force", "const"}


class _CExpr:
    """Evaluate the constant integer C expressions of a ``print fmt`` (casts, | & ^ ~ << >> + - *)."""

    def __init__(self, text: str):
        self.text = text
        self.toks: list[tuple[str, str]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN_RE.match(text, pos)
            if not m:
                raise FormatError(f"cannot parse C expression {self.text!r} at {text[pos:pos + 20]!r}")
            if m.group(1):
                self.toks.append(("num", m.group(1)))
            elif m.group(2):
                self.toks.append(("id", m.group(2)))
            else:
                self.toks.append(("op", m.group(3)))
            pos = m.end()
        self.i = 0

    def value(self) -> int:
        v = self._binary(0)
        if self.i != len(self.toks):
            raise FormatError(f"trailing tokens in C expression {self.text!r}")
        return v & _GFP_MAX

    _LEVELS = (("|",), ("^",), ("&",), ("<<", ">>"), ("+", "-"), ("*",))

    def _peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", "")

    def _binary(self, level: int) -> int:
        if level == len(self._LEVELS):
            return self._unary()
        v = self._binary(level + 1)
        while self._peek()[0] == "op" and self._peek()[1] in self._LEVELS[level]:
            op = self.toks[self.i][1]
            self.i += 1
            r = self._binary(level + 1)
            if op in ("<<", ">>") and r < 0:
                raise FormatError(f"negative shift in C expression {self.text!r}")
            v = _C_BINOPS[op](v, r)
        return v

    def _unary(self) -> int:
        kind, tok = self._peek()
        if kind == "op" and tok in "~-":
            self.i += 1
            v = self._unary()
            return ~v if tok == "~" else -v
        if kind == "op" and tok == "(":
            j = self.i + 1
            while j < len(self.toks) and self.toks[j][0] == "id" and self.toks[j][1] in _CAST_WORDS:
                j += 1
            if j > self.i + 1 and j < len(self.toks) and self.toks[j] == ("op", ")"):
                self.i = j + 1  # a cast: value unchanged (all masks fit unsigned long)
                return self._unary()
            self.i += 1
            v = self._binary(0)
            if self._peek() != ("op", ")"):
                raise FormatError(f"unbalanced parentheses in C expression {self.text!r}")
            self.i += 1
            return v
        if kind == "num":
            self.i += 1
            if tok[:2] in ("0x", "0X"):
                return int(tok, 16)
            return int(tok, 8) if tok.startswith("0") else int(tok)
        raise FormatError(f"unexpected token {tok!r} in C expression {self.text!r}")


def gfpflag_names_from_format(format_text: str, field: str = "gfp_flags") -> tuple[tuple[int, str], ...]:
    """The ``__def_gfpflag_names`` table a kernel prints, read from an event format file.

    ``format_text`` is ``/sys/kernel/tracing/events/kmem/mm_page_alloc/format`` (any
    event printing ``field`` with ``__print_flags``).  The C mask expressions are
    evaluated, so the result is exact for that kernel's configuration.
    """
    start = format_text.find(f"__print_flags(REC->{field},")
    if start < 0:
        raise FormatError(f"no __print_flags(REC->{field}, ...) in the event format")
    end = _END_RE.search(format_text, start)
    if end is None:
        raise FormatError("unterminated __print_flags table (no { 0, NULL } entry)")
    body = format_text[start:end.start()]
    entries = tuple((_CExpr(expr).value(), name) for expr, name in _ENTRY_RE.findall(body))
    if not entries:
        raise FormatError("empty __print_flags table in the event format")
    return entries


# ---------------------------------------------------------------------------
# gfp -> zone (GFP_ZONE_TABLE)
# ---------------------------------------------------------------------------
def _zone_config(zone_types: Iterable) -> tuple[ZoneType, ...]:
    zones = []
    for z in zone_types:
        if isinstance(z, str):
            if z not in ZONE_BY_NAME:
                raise ConfigError(f"unknown zone name {z!r}; known: {', '.join(ZONE_BY_NAME)}")
            z = ZONE_BY_NAME[z]
        try:
            zones.append(ZoneType(z))
        except ValueError:
            raise ConfigError(f"unknown zone type {z!r}") from None
    cfg = tuple(sorted(set(zones)))
    if ZoneType.NORMAL not in cfg or ZoneType.MOVABLE not in cfg:
        raise ConfigError(f"every kernel configures ZONE_NORMAL and ZONE_MOVABLE; got {cfg}")
    return cfg


def gfp_zone_table_word(zone_types: Iterable) -> tuple[int, int]:
    """``(GFP_ZONE_TABLE, GFP_ZONES_SHIFT)`` exactly as include/linux/gfp.h builds them.

    Entries hold the *kernel's* zone index (position in the configured ``enum
    zone_type``, e.g. x86-64: DMA=0, DMA32=1, Normal=2, Movable=3, Device=4).
    """
    cfg = _zone_config(zone_types)
    kidx = {z: i for i, z in enumerate(cfg)}
    max_nr_zones = len(cfg)
    zones_shift = 0 if max_nr_zones <= 1 else 1 if max_nr_zones <= 2 else 2 if max_nr_zones <= 4 else 3
    # "ZONE_DEVICE is not a valid GFP zone specifier"
    shift = 2 if ZoneType.DEVICE in cfg and max_nr_zones - 1 <= 4 else zones_shift
    normal = kidx[ZoneType.NORMAL]
    opt_dma = kidx.get(ZoneType.DMA, normal)
    opt_dma32 = kidx.get(ZoneType.DMA32, normal)
    opt_highmem = kidx.get(ZoneType.HIGHMEM, normal)
    word = (
        (normal << 0 * shift)
        | (opt_dma << __GFP_DMA * shift)
        | (opt_highmem << __GFP_HIGHMEM * shift)
        | (opt_dma32 << __GFP_DMA32 * shift)
        | (normal << __GFP_MOVABLE * shift)
        | (opt_dma << (__GFP_MOVABLE | __GFP_DMA) * shift)
        | (kidx[ZoneType.MOVABLE] << (__GFP_MOVABLE | __GFP_HIGHMEM) * shift)
        | (opt_dma32 << (__GFP_MOVABLE | __GFP_DMA32) * shift)
    )
    return word, shift


@functools.lru_cache(maxsize=32)
def _zone_table(cfg: tuple[ZoneType, ...]) -> tuple[int, ...]:
    word, shift = gfp_zone_table_word(cfg)
    return tuple(-1 if (GFP_ZONE_BAD >> bits) & 1 else int(cfg[(word >> (bits * shift)) & ((1 << shift) - 1)])
                 for bits in range(16))


def gfp_zone_table(zone_types: Iterable) -> np.ndarray:
    """The 16-entry zone table for :func:`gfp_zone_nb`: our ZoneType value per zone-bit
    combination, -1 where ``GFP_ZONE_BAD`` (decoded from :func:`gfp_zone_table_word`)."""
    return np.array(_zone_table(_zone_config(zone_types)), dtype=np.int64)


def gfp_zone(gfp: int, zone_types: Iterable) -> ZoneType:
    """``gfp_zone()``: the highest zone the request may allocate from on a machine with
    ``zone_types`` configured.  Invalid zone-modifier combinations (the kernel's
    ``VM_BUG_ON(GFP_ZONE_BAD)``) raise ConfigError."""
    g = _check_gfp(gfp)
    z = _zone_table(_zone_config(zone_types))[g & GFP_ZONEMASK]
    if z < 0:
        raise ConfigError(f"invalid zone modifiers in gfp {format_gfp(g)} "
                          f"(GFP_ZONE_BAD combination 0x{g & GFP_ZONEMASK:x})")
    return ZoneType(z)


def is_highmem_idx(zone: ZoneType | int, zone_types: Iterable,
                   movable_zone: ZoneType | int | None = None) -> bool:
    """``is_highmem_idx()``: HighMem, or Movable when ZONE_MOVABLE takes its memory from
    HighMem (``movable_zone``; default: HighMem if configured).  False without CONFIG_HIGHMEM."""
    cfg = _zone_config(zone_types)
    if ZoneType.HIGHMEM not in cfg:
        return False
    z = ZoneType(zone)
    if movable_zone is None:
        movable_zone = ZoneType.HIGHMEM
    return z == ZoneType.HIGHMEM or (z == ZoneType.MOVABLE and ZoneType(movable_zone) == ZoneType.HIGHMEM)


# ---------------------------------------------------------------------------
# numba kernels (plain ints; run as Python under NUMBA_DISABLE_JIT=1)
# ---------------------------------------------------------------------------
@njit
def gfp_zone_nb(gfp, zone_table):
    """gfp_zone() on a table from :func:`gfp_zone_table` (-1 for a bad combination)."""
    return zone_table[gfp & GFP_ZONEMASK]


@njit
def gfp_migratetype_nb(gfp):
    """gfp_migratetype() (mobility grouping on): MOVABLE|RECLAIMABLE gives 3 as in the kernel."""
    return (gfp & GFP_MOVABLE_MASK) >> GFP_MOVABLE_SHIFT


@njit
def gfp_compound_nb(gfp, order):
    """prep_new_page(): the block becomes a compound page (folio) iff order && __GFP_COMP."""
    return order > 0 and (gfp & __GFP_COMP) != 0


@njit
def gfp_to_alloc_flags_cma_nb(gfp, alloc_flags, cma_enabled):
    if cma_enabled and gfp_migratetype_nb(gfp) == 1:  # MIGRATE_MOVABLE
        alloc_flags |= ALLOC_CMA
    return alloc_flags


@njit
def gfp_to_alloc_flags_nb(gfp, order, cma_enabled, rt_task, defrag_mode):
    """gfp_to_alloc_flags(): the slow path's alloc_flags (``rt_task``: rt_or_dl_task &&
    in_task; ``defrag_mode``: vm.defrag_mode sysctl)."""
    alloc_flags = ALLOC_WMARK_MIN | ALLOC_CPUSET
    # __GFP_HIGH == ALLOC_MIN_RESERVE and __GFP_KSWAPD_RECLAIM == ALLOC_KSWAPD
    alloc_flags |= gfp & (__GFP_HIGH | __GFP_KSWAPD_RECLAIM)
    if not (gfp & __GFP_DIRECT_RECLAIM):
        if not (gfp & __GFP_NOMEMALLOC):
            alloc_flags |= ALLOC_NON_BLOCK
            if order > 0 and (alloc_flags & ALLOC_MIN_RESERVE):
                alloc_flags |= ALLOC_HIGHATOMIC
        # ignore cpuset mems for non-blocking __GFP_HIGH
        if alloc_flags & ALLOC_MIN_RESERVE:
            alloc_flags &= ~ALLOC_CPUSET
    elif rt_task:
        alloc_flags |= ALLOC_MIN_RESERVE
    alloc_flags = gfp_to_alloc_flags_cma_nb(gfp, alloc_flags, cma_enabled)
    if defrag_mode:
        alloc_flags |= ALLOC_NOFRAGMENT
    return alloc_flags


@njit
def alloc_flags_nofragment_nb(gfp, preferred_zone, has_dma32, dma32_populated, nr_online_nodes, defrag_mode):
    """alloc_flags_nofragment(): ALLOC_KSWAPD from gfp, plus ALLOC_NOFRAGMENT when the
    preferred zone is Normal on a kernel with ZONE_DMA32 (unless a NUMA node's DMA32 is
    empty) or when vm.defrag_mode is set.  ``preferred_zone`` is a ZoneType value."""
    alloc_flags = gfp & __GFP_KSWAPD_RECLAIM
    if defrag_mode:
        return alloc_flags | ALLOC_NOFRAGMENT
    if not has_dma32 or preferred_zone != 2:  # ZoneType.NORMAL
        return alloc_flags
    if nr_online_nodes > 1 and not dma32_populated:
        return alloc_flags
    return alloc_flags | ALLOC_NOFRAGMENT


@njit
def fastpath_alloc_flags_nb(gfp, preferred_zone, has_dma32, cma_enabled, defrag_mode):
    """alloc_flags of the first get_page_from_freelist() attempt in __alloc_frozen_pages():
    ALLOC_WMARK_LOW | CMA (prepare_alloc_pages) | alloc_flags_nofragment() (UMA, no cpusets)."""
    alloc_flags = gfp_to_alloc_flags_cma_nb(gfp, ALLOC_WMARK_LOW, cma_enabled)
    return alloc_flags | alloc_flags_nofragment_nb(gfp, preferred_zone, has_dma32, True, 1, defrag_mode)


@njit
def gfp_pfmemalloc_flags_nb(gfp, pf_memalloc, in_interrupt, in_serving_softirq, oom_reserves_allowed):
    """__gfp_pfmemalloc_flags(): access to reserves below the min watermark."""
    if gfp & __GFP_NOMEMALLOC:
        return 0
    if gfp & __GFP_MEMALLOC:
        return ALLOC_NO_WATERMARKS
    if in_serving_softirq and pf_memalloc:
        return ALLOC_NO_WATERMARKS
    if not in_interrupt:
        if pf_memalloc:
            return ALLOC_NO_WATERMARKS
        if oom_reserves_allowed:
            return ALLOC_OOM
    return 0


# ---------------------------------------------------------------------------
# Python API over the kernels (validated arguments)
# ---------------------------------------------------------------------------
def _check_order(order) -> int:
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or not 0 <= order <= MAX_PAGE_ORDER:
        raise InvalidOrder(f"order must be an integer in 0..{MAX_PAGE_ORDER}, got {order!r}")
    return int(order)


def gfp_migratetype(gfp: int, mobility_disabled: bool = False) -> int:
    """``gfp_migratetype()``: MIGRATE_UNMOVABLE/MOVABLE/RECLAIMABLE from the mobility bits.

    ``mobility_disabled`` models ``page_group_by_mobility_disabled`` (tiny machines).
    Both mobility bits at once is a caller bug (the kernel VM_WARNs and would return
    MIGRATE_HIGHATOMIC); here it raises ConfigError.
    """
    g = _check_gfp(gfp)
    if g & GFP_MOVABLE_MASK == GFP_MOVABLE_MASK:
        raise ConfigError(f"gfp {format_gfp(g)} sets both __GFP_MOVABLE and __GFP_RECLAIMABLE")
    if mobility_disabled:
        return 0
    return int(gfp_migratetype_nb(g))


def gfp_to_migratetype_name(gfp: int, names: Sequence[str] = MIGRATETYPE_NAMES) -> str:
    """The /proc/pagetypeinfo name of the request's migratetype (``Movable`` ...)."""
    return names[gfp_migratetype(gfp)]


def gfp_compound(gfp: int, order: int) -> bool:
    """True if an allocation of ``order`` with ``gfp`` is prepared as a compound page."""
    return bool(gfp_compound_nb(_check_gfp(gfp), _check_order(order)))


def gfpflags_allow_blocking(gfp: int) -> bool:
    """``gfpflags_allow_blocking()``: the caller may sleep in direct reclaim."""
    return bool(_check_gfp(gfp) & __GFP_DIRECT_RECLAIM)


def gfp_to_alloc_flags(gfp: int, order: int = 0, *, cma: bool = False, rt_task: bool = False,
                       defrag_mode: bool = False) -> int:
    """``gfp_to_alloc_flags()`` (mm/page_alloc.c, 6.18): alloc_flags of the slow path.

    ``cma``: CONFIG_CMA (movable requests get ALLOC_CMA); ``rt_task``: the caller is an
    RT/deadline task in process context; ``defrag_mode``: ``vm.defrag_mode=1``.
    """
    return int(gfp_to_alloc_flags_nb(_check_gfp(gfp), _check_order(order), bool(cma), bool(rt_task),
                                     bool(defrag_mode)))


def alloc_flags_nofragment(gfp: int, preferred_zone: ZoneType | int, zone_types: Iterable, *,
                           dma32_populated: bool = True, nr_online_nodes: int = 1,
                           defrag_mode: bool = False) -> int:
    """``alloc_flags_nofragment()`` for the preferred zone on a machine with ``zone_types``."""
    cfg = _zone_config(zone_types)
    return int(alloc_flags_nofragment_nb(_check_gfp(gfp), int(ZoneType(preferred_zone)),
                                         ZoneType.DMA32 in cfg, bool(dma32_populated), int(nr_online_nodes),
                                         bool(defrag_mode)))


def fastpath_alloc_flags(gfp: int, preferred_zone: ZoneType | int, zone_types: Iterable, *,
                         cma: bool = False, defrag_mode: bool = False) -> int:
    """alloc_flags of the fast-path attempt (``ALLOC_WMARK_LOW`` ...), see :func:`fastpath_alloc_flags_nb`."""
    cfg = _zone_config(zone_types)
    return int(fastpath_alloc_flags_nb(_check_gfp(gfp), int(ZoneType(preferred_zone)), ZoneType.DMA32 in cfg,
                                       bool(cma), bool(defrag_mode)))


def gfp_pfmemalloc_flags(gfp: int, *, pf_memalloc: bool = False, in_interrupt: bool = False,
                         in_serving_softirq: bool = False, oom_reserves_allowed: bool = False) -> int:
    """``__gfp_pfmemalloc_flags()``: ALLOC_NO_WATERMARKS, ALLOC_OOM or 0."""
    return int(gfp_pfmemalloc_flags_nb(_check_gfp(gfp), bool(pf_memalloc), bool(in_interrupt),
                                       bool(in_serving_softirq), bool(oom_reserves_allowed)))


def format_alloc_flags(alloc_flags: int) -> str:
    """Human-readable alloc_flags: ``ALLOC_WMARK_MIN|ALLOC_CPUSET|ALLOC_KSWAPD``."""
    if isinstance(alloc_flags, bool) or not isinstance(alloc_flags, int | np.integer) or alloc_flags < 0:
        raise ConfigError(f"alloc_flags must be a non-negative integer, got {alloc_flags!r}")
    flags = int(alloc_flags)
    out = [_WMARK_NAMES[flags & ALLOC_WMARK_MASK]]
    flags &= ~ALLOC_WMARK_MASK
    for mask, name in ALLOC_FLAG_NAMES:
        if flags & mask:
            out.append(name)
            flags &= ~mask
    if flags:
        out.append(f"0x{flags:x}")
    return "|".join(out)
