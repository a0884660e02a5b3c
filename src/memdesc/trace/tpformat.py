"""Kernel tracepoint format files (``events/<sys>/<name>/format``) and how to read their text back.

Theory
------
A tracepoint's ``format`` file lists the fields of its ring-buffer record and the
``print fmt``: a printf string and one C expression per conversion, over the record
(``REC->field``).  ftrace prints every event of that tracepoint with exactly that
string, so the format file is all a reader needs to turn a printed line back into the
record's fields, for any kernel version.  This module does it in two steps:

1. :func:`parse_format` reads a format file: its name, id, fields and ``print fmt``;
   the printf string is cut into a *program* of literal texts and conversions
   (:class:`Conversion`), each conversion paired with its C argument.
2. Each conversion gets a *decoder* that maps the printed token back to record
   fields.  Numeric conversions whose argument is an affine shift of one field
   (``REC->index``, ``((loff_t)REC->index) << 12``, ``((((loff_t)REC->last_index + 1)
   << 12) - 1)``) are inverted exactly; ``MAJOR(s_dev)`` / ``MINOR(s_dev)`` (``>> 20``
   and ``& ((1U << 20) - 1)``) are recombined; ``%s`` conversions of
   ``__print_symbolic``, ``__print_flags`` and ``cond ? "a" : "b"`` ternaries are
   decoded from their symbol tables (constants evaluated as C integer expressions).
   A field that no conversion prints cannot be recovered and is reported as such.

The program is what the numba scanner of :mod:`memdesc.trace.folio_events` executes
per line (literals compared byte for byte, numbers parsed in place, strings interned),
so a new event kind needs no parser code: only its name and the fields wanted.
Invariants: literals are matched exactly (ftrace prints the format verbatim); a ``%s``
is either of fixed width (a ternary of equal-length strings) or ends at the first byte
of the next literal (or at the end of the line when it is last).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from memdesc.errors import FormatError

MASK64 = (1 << 64) - 1

#: conversion kinds of the scanner program
CONV_UDEC = 1   # %u %lu %llu %zu %hu %hhu
CONV_SDEC = 2   # %d %i %ld %lld %zd %hd
CONV_HEX = 3    # %x %lx %llx (no 0x: the literal before it carries it)
CONV_STR_FIXED = 4  # %s of known width
CONV_STR_VAR = 5    # %s up to the next literal byte / end of line
CONV_PTR = 6    # %p (hashed pointer: skipped, kept as hex when it parses)
CONV_CHAR = 7   # %c

_CONV_RE = re.compile(r"%([-+ #0]*)(\d+)?(?:\.(\d+))?(hh|h|ll|l|z|j|t)?([diouxXpsc%])")


@dataclass(frozen=True)
class FieldDef:
    """One field of a tracepoint record (``field:<type> <name>; offset; size; signed``)."""

    name: str
    ctype: str
    offset: int
    size: int
    signed: bool


@dataclass
class Conversion:
    """One printf conversion of a print fmt with its C argument."""

    kind: int
    spec: str
    arg: str
    width: int = 0  # CONV_STR_FIXED only


@dataclass
class TracepointFormat:
    """A parsed format file.  ``program`` alternates literal ``bytes`` and
    :class:`Conversion` items in print order."""

    name: str
    id: int
    fields: dict[str, FieldDef]
    print_fmt: str
    args: list[str]
    program: list[bytes | Conversion] = field(default_factory=list)
    path: str | None = None

    @property
    def conversions(self) -> list[Conversion]:
        return [p for p in self.program if isinstance(p, Conversion)]


# ------------------------------------------------------------------------------------------
# format files
# ------------------------------------------------------------------------------------------
_FIELD_RE = re.compile(r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<sg>\d+);")


def parse_format(text: str, path: str | None = None) -> TracepointFormat:
    """Parse the text of a tracepoint ``format`` file."""
    name = None
    tp_id = -1
    fields: dict[str, FieldDef] = {}
    pf = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("name:"):
            name = s[5:].strip()
        elif s.startswith("ID:"):
            try:
                tp_id = int(s[3:].strip())
            except ValueError:
                raise FormatError(f"bad ID line {s!r}", path) from None
        elif s.startswith("field:"):
            m = _FIELD_RE.match(s)
            if not m:
                raise FormatError(f"bad field line {s!r}", path)
            decl = m.group("decl").strip()
            decl = re.sub(r"\[.*\]$", "", decl)
            fname = re.split(r"[\s*]+", decl)[-1]
            fields[fname] = FieldDef(fname, decl[: len(decl) - len(fname)].strip(), int(m.group("off")),
                                     int(m.group("size")), m.group("sg") == "1")
        elif s.startswith("print fmt:"):
            pf = s[len("print fmt:"):].strip()
    if name is None or pf is None:
        raise FormatError("not a tracepoint format file (no name: or print fmt: line)", path)
    fmt, args = _split_print_fmt(pf, path)
    tf = TracepointFormat(name=name, id=tp_id, fields=fields, print_fmt=fmt, args=args, path=path)
    tf.program = _program(fmt, args, path, name)
    return tf


def read_format(path: str | Path) -> TracepointFormat:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise FormatError(f"cannot read format file: {e.strerror}", str(p)) from None
    return parse_format(text, str(p))


def find_formats(directory: str | Path) -> dict[str, Path]:
    """Format files of a capture's ``formats/`` directory by event name
    (``<name>.format`` files, or a tracefs-like ``<sys>/<name>/format`` tree)."""
    d = Path(directory)
    out: dict[str, Path] = {}
    if not d.is_dir():
        return out
    for p in d.glob("*.format"):
        out[p.stem] = p
    for p in d.glob("*/*/format"):
        out.setdefault(p.parent.name, p)
    return out


def _split_print_fmt(pf: str, path: str | None) -> tuple[str, list[str]]:
    """``"fmt", arg1, arg2`` -> (fmt, [args]) with C string escapes resolved."""
    if not pf.startswith('"'):
        raise FormatError(f"print fmt does not start with a string: {pf[:60]!r}", path)
    i = 1
    out = []
    while i < len(pf):
        c = pf[i]
        if c == "\\" and i + 1 < len(pf):
            nxt = pf[i + 1]
            out.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(nxt, nxt))
            i += 2
            continue
        if c == '"':
            break
        out.append(c)
        i += 1
    else:
        raise FormatError("unterminated print fmt string", path)
    rest = pf[i + 1:].strip()
    args = _split_args(rest[1:]) if rest.startswith(",") else []
    return "".join(out), [a.strip() for a in args]


def _split_args(s: str) -> list[str]:
    """Split on commas outside (), {} and string literals."""
    args, depth, cur, q = [], 0, [], False
    i = 0
    while i < len(s):
        c = s[i]
        if q:
            cur.append(c)
            if c == "\\" and i + 1 < len(s):
                cur.append(s[i + 1])
                i += 1
            elif c == '"':
                q = False
        elif c == '"':
            q = True
            cur.append(c)
        elif c in "({[":
            depth += 1
            cur.append(c)
        elif c in ")}]":
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            args.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        args.append("".join(cur))
    return args


def _program(fmt: str, args: list[str], path: str | None, name: str) -> list[bytes | Conversion]:
    prog: list[bytes | Conversion] = []
    lit: list[str] = []
    pos = 0
    k = 0
    for m in _CONV_RE.finditer(fmt):
        lit.append(fmt[pos:m.start()])
        pos = m.end()
        conv = m.group(5)
        if conv == "%":
            lit.append("%")
            continue
        if lit and "".join(lit):
            prog.append("".join(lit).encode())
        lit = []
        if k >= len(args):
            raise FormatError(f"{name}: print fmt has more conversions than arguments", path)
        arg = args[k]
        k += 1
        if conv in "di":
            kind = CONV_SDEC
        elif conv in "ou":
            kind = CONV_UDEC
        elif conv in "xX":
            kind = CONV_HEX
        elif conv == "p":
            kind = CONV_PTR
        elif conv == "c":
            kind = CONV_CHAR
        else:
            w = _fixed_width(arg)
            kind = CONV_STR_FIXED if w else CONV_STR_VAR
            prog.append(Conversion(kind, m.group(0), arg, w or 0))
            continue
        prog.append(Conversion(kind, m.group(0), arg))
    tail = "".join(lit) + fmt[pos:]
    if tail:
        prog.append(tail.encode())
    return prog


def _fixed_width(arg: str) -> int | None:
    """Width of a ``cond ? "a" : "b"`` argument whose strings have one length."""
    t = _ternary(arg)
    if t is None:
        return None
    _, a, b = t
    return len(a) if len(a) == len(b) and len(a) > 0 else None


# ------------------------------------------------------------------------------------------
# C expressions
# ------------------------------------------------------------------------------------------
_CAST_RE = re.compile(r"\(\s*(?:const\s+)?(?:unsigned|signed|long|int|short|char|loff_t|pgoff_t|gfp_t|u8|u16|u32|u64|"
                      r"s8|s16|s32|s64|size_t|ssize_t|dev_t|bool|void|__u64|__u32|unsigned long long|"
                      r"unsigned long|unsigned int|long long)(?:\s+(?:long|int|char|short))*\s*\*?\s*\)")
_SUFFIX_RE = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b")


def _c_to_py(expr: str) -> str:
    e = _CAST_RE.sub(" ", expr)
    e = _SUFFIX_RE.sub(r"\1", e)
    return re.sub(r"REC->(\w+)", r"REC_\1", e)


def c_int(expr: str) -> int:
    """Value of a constant C integer expression (casts and suffixes dropped), as u64."""
    try:
        tree = ast.parse(_c_to_py(expr).strip(), mode="eval")
        v = _eval_const(tree.body)
    except (SyntaxError, ValueError, TypeError) as e:
        raise FormatError(f"cannot evaluate C expression {expr!r}: {e}") from None
    return v & MASK64


def _eval_const(n):
    if isinstance(n, ast.Constant) and isinstance(n.value, int):
        return n.value
    if isinstance(n, ast.UnaryOp):
        v = _eval_const(n.operand)
        if isinstance(n.op, ast.Invert):
            return ~v & MASK64
        if isinstance(n.op, ast.USub):
            return -v
        if isinstance(n.op, ast.UAdd):
            return v
    if isinstance(n, ast.BinOp):
        a, b = _eval_const(n.left), _eval_const(n.right)
        ops = {ast.BitOr: lambda: a | b, ast.BitAnd: lambda: a & b, ast.BitXor: lambda: a ^ b,
               ast.LShift: lambda: (a << b) & MASK64, ast.RShift: lambda: a >> b, ast.Add: lambda: a + b,
               ast.Sub: lambda: a - b, ast.Mult: lambda: a * b}
        f = ops.get(type(n.op))
        if f is not None:
            return f()
    raise ValueError(f"unsupported construct {ast.dump(n)[:60]}")


@dataclass(frozen=True)
class Affine:
    """value = ((field + add) << shift) + post, or a bit piece of the field
    (``shr``: value = field >> s; ``mask``: value = field & m)."""

    field: str
    add: int = 0
    shift: int = 0
    post: int = 0
    kind: str = "lin"  # lin | shr | mask
    param: int = 0

    def __add__(self, k):
        if not isinstance(k, int) or self.kind != "lin":
            raise ValueError("non-affine expression")
        if self.shift == 0 and self.post == 0:
            return Affine(self.field, self.add + k)
        return Affine(self.field, self.add, self.shift, self.post + k)

    __radd__ = __add__

    def __sub__(self, k):
        return self.__add__(-k)

    def __lshift__(self, k):
        if not isinstance(k, int) or self.kind != "lin" or self.post:
            raise ValueError("non-affine expression")
        return Affine(self.field, self.add, self.shift + k)

    def __rshift__(self, k):
        if not isinstance(k, int) or self != Affine(self.field):
            raise ValueError("non-affine expression")
        return Affine(self.field, kind="shr", param=k)

    def __and__(self, m):
        if not isinstance(m, int) or self != Affine(self.field):
            raise ValueError("non-affine expression")
        return Affine(self.field, kind="mask", param=m)

    __rand__ = __and__


def affine_of(expr: str) -> Affine:
    """The :class:`Affine` form of a numeric print argument, or FormatError."""
    try:
        tree = ast.parse(_c_to_py(expr).strip(), mode="eval")
        v = _eval_sym(tree.body)
    except (SyntaxError, ValueError, TypeError) as e:
        raise FormatError(f"print argument {expr!r} is not an invertible function of one field ({e})") from None
    if not isinstance(v, Affine):
        raise FormatError(f"print argument {expr!r} is a constant")
    return v


def _eval_sym(n):
    if isinstance(n, ast.Name) and n.id.startswith("REC_"):
        return Affine(n.id[4:])
    if isinstance(n, ast.Constant) and isinstance(n.value, int):
        return n.value
    if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.Invert)):
        v = _eval_sym(n.operand)
        if isinstance(v, int):
            return -v if isinstance(n.op, ast.USub) else ~v & MASK64
    if isinstance(n, ast.BinOp):
        a, b = _eval_sym(n.left), _eval_sym(n.right)
        if isinstance(a, int) and isinstance(b, int):
            return _eval_const(n)
        op = type(n.op)
        if op is ast.Add:
            return a + b
        if op is ast.Sub and isinstance(a, Affine):
            return a - b
        if op is ast.LShift and isinstance(a, Affine):
            return a << b
        if op is ast.RShift and isinstance(a, Affine):
            return a >> b
        if op is ast.BitAnd:
            return a & b
    raise ValueError("unsupported construct")


def _ternary(arg: str) -> tuple[str, str, str] | None:
    """``cond ? "a" : "b"`` -> (cond, a, b), else None."""
    m = re.fullmatch(r'\s*\(?(?P<c>[^?"]+?)\)?\s*\?\s*"(?P<a>[^"]*)"\s*:\s*"(?P<b>[^"]*)"\s*', arg)
    if not m:
        return None
    return m.group("c").strip(), m.group("a"), m.group("b")


# ------------------------------------------------------------------------------------------
# decoders: printed token -> field pieces
# ------------------------------------------------------------------------------------------
@dataclass
class NumDecoder:
    """A numeric conversion: the printed value is ``Affine`` of a field."""

    aff: Affine


@dataclass
class StrDecoder:
    """A ``%s`` conversion decoded into a field by a string table.

    ``table`` maps printed strings to values (symbolic); ``flags``: the string is
    ``delim``-separated names ORed together (``none`` printed when 0); ``bits``: a
    ternary contributes ``bits`` when the true string is printed.  ``field`` None: the
    string is kept as text.
    """

    field: str | None
    mode: str  # symbolic | flags | ternary | text
    table: dict[str, int] = field(default_factory=dict)
    delim: str = "|"
    none: str | None = None
    bits: int = 1
    true: str = ""
    false: str = ""


def decoder_for(conv: Conversion, name: str) -> NumDecoder | StrDecoder | None:
    """The decoder of one conversion (None for %p / %c, which carry no field we read)."""
    if conv.kind in (CONV_UDEC, CONV_SDEC, CONV_HEX):
        try:
            return NumDecoder(affine_of(conv.arg))
        except FormatError:
            return None  # e.g. a computed value; not a field we can recover
    if conv.kind in (CONV_PTR, CONV_CHAR):
        return None
    return _str_decoder(conv.arg, name)


_SYM_RE = re.compile(r"\{\s*(?P<v>[^{}]*?(?:\([^{}]*\))*[^{}]*?)\s*,\s*\"(?P<n>[^\"]*)\"\s*\}")


def _pairs(body: str) -> dict[str, int]:
    out = {}
    for part in _split_args(body):
        part = part.strip()
        if not part.startswith("{"):
            continue
        inner = part[1:part.rfind("}")]
        bits = _split_args(inner)
        if len(bits) != 2:
            continue
        v, n = bits[0].strip(), bits[1].strip()
        if not (n.startswith('"') and n.endswith('"')):
            continue
        if v in ("0", "((void *)0)") and n == "((void *)0)":
            continue
        try:
            out[n[1:-1]] = c_int(v)
        except FormatError:
            continue
    return out


def _field_of(expr: str) -> str | None:
    m = re.fullmatch(r"\s*\(*\s*REC->(\w+)\s*\)*\s*", expr)
    return m.group(1) if m else None


def _str_decoder(arg: str, name: str) -> StrDecoder:
    a = arg.strip()
    m = re.match(r"\s*__print_symbolic\s*\(", a)
    if m:
        inner = a[m.end(): a.rfind(")")]
        parts = _split_args(inner)
        return StrDecoder(_field_of(parts[0]), "symbolic", _pairs(",".join(parts[1:])))
    # (REC->x) ? __print_flags(REC->x, "|", {...}) : "NONE"
    m = re.match(r"\s*\((?P<c>[^?]*)\)\s*\?\s*__print_flags\s*\(", a)
    if m:
        inner = a[m.end():]
        close = _matching(inner)
        parts = _split_args(inner[:close])
        none = re.search(r':\s*"([^"]*)"\s*$', inner[close + 1:])
        return StrDecoder(_field_of(parts[0]), "flags", _pairs(",".join(parts[2:])), parts[1].strip().strip('"'),
                          none.group(1) if none else "")
    m = re.match(r"\s*__print_flags\s*\(", a)
    if m:
        inner = a[m.end(): a.rfind(")")]
        parts = _split_args(inner)
        return StrDecoder(_field_of(parts[0]), "flags", _pairs(",".join(parts[2:])), parts[1].strip().strip('"'), "")
    t = _ternary(a)
    if t is not None:
        cond, s_true, s_false = t
        cm = re.fullmatch(r"\(*\s*REC->(\w+)\s*(?:&\s*(?P<m>[^)]+))?\)*", cond.strip())
        if cm:
            bits = c_int(cm.group("m")) if cm.group("m") else 1
            return StrDecoder(cm.group(1), "ternary", bits=bits, true=s_true, false=s_false)
    return StrDecoder(None, "text")


def _matching(s: str) -> int:
    """Index of the ``)`` closing an already-opened parenthesis at the start of ``s``."""
    depth = 1
    q = False
    for i, c in enumerate(s):
        if q:
            if c == '"':
                q = False
            continue
        if c == '"':
            q = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(s)


def decode_string(dec: StrDecoder, s: str) -> int | None:
    """Value (or bits) a printed string contributes to ``dec.field``; None if it does not decode."""
    if dec.mode == "symbolic":
        if s in dec.table:
            return dec.table[s]
        return _hex_or_none(s)
    if dec.mode == "flags":
        if s == (dec.none or "") or s == "":
            return 0
        v = 0
        for part in s.split(dec.delim):
            if part in dec.table:
                v |= dec.table[part]
            else:
                h = _hex_or_none(part)
                if h is None:
                    return None
                v |= h
        return v
    if dec.mode == "ternary":
        if s == dec.true:
            return dec.bits
        if s == dec.false:
            return 0
        return None
    return None


def _hex_or_none(s: str) -> int | None:
    try:
        return int(s, 16) if s.lower().startswith("0x") else int(s)
    except ValueError:
        return None


def field_sources(tf: TracepointFormat) -> dict[str, list[tuple[int, NumDecoder | StrDecoder]]]:
    """For every record field a conversion prints: [(conversion number, decoder)]."""
    out: dict[str, list[tuple[int, NumDecoder | StrDecoder]]] = {}
    for j, conv in enumerate(tf.conversions):
        dec = decoder_for(conv, tf.name)
        if dec is None:
            continue
        f = dec.aff.field if isinstance(dec, NumDecoder) else dec.field
        if f is None:
            continue
        out.setdefault(f, []).append((j, dec))
    return out
