"""Line parser of kmem trace text: one numba pass over a buffer of bytes.

Theory
------
ftrace (``trace``/``trace_pipe``), ``trace-cmd report`` and ``perf script`` print an
event as one line of the same shape::

    <comm>-<pid> [(<tgid>)] [<cpu>] [<irq-flags>] <sec>.<frac>: <event>: <key>=<value> ...   ftrace
    <comm>-<pid> [<cpu>] <sec>.<usec>: <event>: <key>=<value> ...                           trace-cmd
    <comm> <tid> [<cpu>] <sec>.<usec>: kmem:<event>: <key>=<value> ...                      perf script

(``kernel/trace/trace_output.c``: ``"%16s-%-7d "``, ``"[%03d] "``, the irq-flags column
``d..1.`` since 2.6.3x, ``"%5lu.%06lu: "``; trace-cmd: ``"%16s-%-5d [%03d] %6.1000d: "``
then the name padded to 20 columns; perf: ``"%16s %5d [%03d] %lu.%06lu: "`` and
``sys:name``).  ``comm`` may contain anything, spaces and dashes included
(``Web Content-4567``, ``kworker/1:0-vir 4379``), so the header is anchored on the
CPU column: the first ``[<digits>]`` that is preceded by ``<sep><digits>`` where the
separator is ``-`` (ftrace, trace-cmd) or blank or ``/`` (perf ``tid`` or ``pid/tid``).

The payload is read as ``key=value`` words.  Fields are matched by *name*, not by
position, so extra fields of old or patched kernels (``cold=``, ``cpu=``,
``nr_free=``) are skipped, and ``pfn=`` may be hex (``0x%lx``, since 5.14) or decimal
(``%lu``, before).  A value may follow ``=`` after blanks (old kernels printed a NULL
``%p`` as ``(null)`` right-aligned in 16 columns).

One call parses every line of a buffer and writes, per line, a status and the parsed
numbers into preallocated arrays: there is no per-line Python.  Strings (gfp flags,
task names, unknown event names) are interned per buffer in open-addressing hash
tables whose entries point into the buffer; Python then decodes only the few hundred
distinct strings.  A table that fills up makes the call return ``PARSE_TABLE_FULL`` and
the caller retries with a bigger one.

Line status (``status`` array): ``ST_OK`` a kmem event; ``ST_SKIP`` blank, ``#`` comment,
trace-cmd preamble (``cpus=2``, ``version = 6``, ``CPU 3 is empty``) or a stack trace
attached to the previous event (ftrace ``<stack trace>``/`` => sym``, ``perf script -g``
``\t ffffffff81234567 sym+0x1a ([kernel.kallsyms])``); ``ST_UNKNOWN``
another tracepoint; ``ST_LOST`` a lost-events marker (``CPU:1 [LOST 12 EVENTS]``, count
in ``pfn``); the rest are malformed kinds (``events.MALFORMED_KINDS``).
"""

from __future__ import annotations

import sys

import numpy as np
from numba import types

from memdesc._numba import JIT_DISABLED, njit
from memdesc.trace.events import (
    ALLOC,
    ALLOC_ZONE_LOCKED,
    EVENT_BY_NAME,
    EXTFRAG,
    FREE,
    FREE_BATCHED,
    NR_EVENTS,
    PCPU_DRAIN,
)

ST_OK = 0
ST_SKIP = 1
ST_UNKNOWN = 2
ST_LOST = 3
ST_NOT_AN_EVENT = 4
ST_TRUNCATED = 5
ST_BAD_FIELD = 6
ST_MISSING_FIELD = 7
#: status -> malformed kind name
STATUS_KIND = {
    ST_NOT_AN_EVENT: "not_an_event",
    ST_TRUNCATED: "truncated",
    ST_BAD_FIELD: "bad_field",
    ST_MISSING_FIELD: "missing_field",
}

#: header separators accepted (``sep`` argument)
SEP_DASH = 0   # ftrace, trace-cmd: <comm>-<pid>
SEP_BLANK = 1  # perf script: <comm> <tid> or <comm> <pid>/<tid>

PARSE_TABLE_FULL = -1

#: per-line output columns of parse_buffer and their dtypes (those of the final frame;
#: ``gfp``/``comm``/``name`` hold ids into the per-buffer string tables)
LINE_COLUMNS = {
    "event": np.uint8, "cpu": np.int16, "ts_ns": np.int64, "pid": np.int32, "pfn": np.int64,
    "order": np.int8, "gfp": np.int32, "migratetype": np.int8, "percpu_refill": np.int8,
    "fallback_order": np.int8, "fallback_migratetype": np.int8, "fragmenting": np.int8,
    "change_ownership": np.int8, "comm": np.int32, "name": np.int32,
}
ID_GFP, ID_COMM, ID_NAME = 0, 1, 2

# field keys -------------------------------------------------------------------
K_PAGE = 0
K_PFN = 1
K_ORDER = 2
K_MIGRATETYPE = 3
K_GFP = 4
K_REFILL = 5
K_ALLOC_ORDER = 6
K_FALLBACK_ORDER = 7
K_PAGEBLOCK_ORDER = 8
K_ALLOC_MT = 9
K_FALLBACK_MT = 10
K_FRAGMENTING = 11
K_CHOWN = 12
NR_KEYS = 13
_KEY_NAMES = (
    "page", "pfn", "order", "migratetype", "gfp_flags", "percpu_refill", "alloc_order",
    "fallback_order", "pageblock_order", "alloc_migratetype", "fallback_migratetype",
    "fragmenting", "change_ownership",
)
#: position of each key in the kernel's print formats (all events agree on this order)
_KEY_RANK = np.array([0, 1, 2, 5, 7, 7, 2, 3, 4, 5, 6, 8, 9], dtype=np.int64)


def _table(names):
    width = max(len(n) for n in names)
    tab = np.zeros((len(names), width), dtype=np.uint8)
    lens = np.zeros(len(names), dtype=np.int64)
    for i, n in enumerate(names):
        b = n.encode()
        tab[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
        lens[i] = len(b)
    return tab, lens


_KEY_TAB, _KEY_LEN = _table(_KEY_NAMES)
_EV_NAMES = tuple(EVENT_BY_NAME)
_EV_TAB, _EV_LEN = _table(_EV_NAMES)
_EV_CODE = np.array([EVENT_BY_NAME[n] for n in _EV_NAMES], dtype=np.int64)


def _mask(*keys):
    m = 0
    for k in keys:
        m |= 1 << k
    return m


#: fields an event line must carry, per event code
_REQUIRED = np.zeros(NR_EVENTS, dtype=np.int64)
_REQUIRED[ALLOC] = _mask(K_PFN, K_ORDER, K_MIGRATETYPE, K_GFP)
_REQUIRED[ALLOC_ZONE_LOCKED] = _mask(K_PFN, K_ORDER, K_MIGRATETYPE, K_REFILL)
_REQUIRED[FREE] = _mask(K_PFN, K_ORDER)
_REQUIRED[FREE_BATCHED] = _mask(K_PFN)
_REQUIRED[PCPU_DRAIN] = _mask(K_PFN, K_ORDER, K_MIGRATETYPE)
_REQUIRED[EXTFRAG] = _mask(K_PFN, K_ALLOC_ORDER, K_FALLBACK_ORDER, K_ALLOC_MT, K_FALLBACK_MT,
                           K_FRAGMENTING, K_CHOWN)

_LIT_KMEM = np.frombuffer(b"kmem:", dtype=np.uint8).copy()
_LIT_CPUS = np.frombuffer(b"cpus=", dtype=np.uint8).copy()
_LIT_VERSION = np.frombuffer(b"version = ", dtype=np.uint8).copy()
_LIT_CPU_SP = np.frombuffer(b"CPU ", dtype=np.uint8).copy()
_LIT_IS_EMPTY = np.frombuffer(b" is empty", dtype=np.uint8).copy()
_LIT_CPU_COLON = np.frombuffer(b"CPU:", dtype=np.uint8).copy()
_LIT_LOST = np.frombuffer(b"[LOST ", dtype=np.uint8).copy()
_LIT_EVENTS = np.frombuffer(b" EVENTS]", dtype=np.uint8).copy()
_LIT_DROPPED = np.frombuffer(b"EVENTS DROPPED]", dtype=np.uint8).copy()
_LIT_STACK = np.frombuffer(b"<stack trace>", dtype=np.uint8).copy()
_LIT_USTACK = np.frombuffer(b"<user stack trace>", dtype=np.uint8).copy()
_LIT_ARROW = np.frombuffer(b"=> ", dtype=np.uint8).copy()
_LIT_NULL = np.frombuffer(b"(null)", dtype=np.uint8).copy()
_LIT_NIL = np.frombuffer(b"(nil)", dtype=np.uint8).copy()

_POW10 = np.array([10 ** k for k in range(10)], dtype=np.int64)


# ------------------------------------------------------------------------------
# small byte helpers (all valid as plain Python too)
# ------------------------------------------------------------------------------
@njit
def _is_blank(c):
    return c == 32 or c == 9


@njit
def _is_digit(c):
    return 48 <= c <= 57


@njit
def _match_at(buf, a, e, lit):
    """buf[a:a+len(lit)] == lit, within [a, e)."""
    n = lit.shape[0]
    if a + n > e:
        return False
    for k in range(n):
        if buf[a + k] != lit[k]:
            return False
    return True


@njit
def _ends_with(buf, a, e, lit):
    n = lit.shape[0]
    if e - a < n:
        return False
    return _match_at(buf, e - n, e, lit)


@njit
def _lookup(buf, a, b, tab, lens):
    """Index of buf[a:b] in a name table, -1 if absent."""
    n = b - a
    for i in range(lens.shape[0]):
        if lens[i] != n:
            continue
        ok = True
        for k in range(n):
            if buf[a + k] != tab[i, k]:
                ok = False
                break
        if ok:
            return i
    return -1


@njit
def _parse_uint(buf, a, b):
    """Decimal digits buf[a:b] -> value, -1 if not all digits / empty / over 18 digits."""
    if b <= a or b - a > 18:
        return -1
    v = 0
    for k in range(a, b):
        c = int(buf[k])
        if not _is_digit(c):
            return -1
        v = v * 10 + (c - 48)
    return v


@njit
def _parse_int(buf, a, b):
    """Optionally negative decimal int; returns (ok, value)."""
    neg = False
    if a < b and buf[a] == 45:
        neg = True
        a += 1
    v = _parse_uint(buf, a, b)
    if v < 0:
        return False, 0
    return True, -v if neg else v


@njit
def _hex_digit(c):
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


@njit
def _parse_hex(buf, a, b):
    """Hex digits buf[a:b] (no prefix) -> value < 2**63, -1 if invalid."""
    while a < b - 1 and buf[a] == 48:
        a += 1
    if b <= a or b - a > 16:
        return -1
    if b - a == 16 and _hex_digit(int(buf[a])) >= 8:
        return -1
    v = 0
    for k in range(a, b):
        d = _hex_digit(int(buf[k]))
        if d < 0:
            return -1
        v = v * 16 + d
    return v


@njit
def _parse_pfn(buf, a, b):
    """``0x%lx`` or ``%lu``; -1 if invalid."""
    if b - a > 2 and buf[a] == 48 and (buf[a + 1] == 120 or buf[a + 1] == 88):
        return _parse_hex(buf, a + 2, b)
    return _parse_uint(buf, a, b)


@njit
def _is_null_ptr(buf, a, b):
    """``%p`` of NULL: ``(null)`` (before 4.20), ``0000000000000000`` (since), ``(nil)``/``0x0``."""
    if _match_at(buf, a, b, _LIT_NULL) and b - a == 6:
        return True
    if _match_at(buf, a, b, _LIT_NIL) and b - a == 5:
        return True
    if b - a > 2 and buf[a] == 48 and (buf[a + 1] == 120 or buf[a + 1] == 88):
        a += 2
    if b <= a:
        return False
    for k in range(a, b):
        if buf[k] != 48:
            return False
    return True


@njit
def _parse_ts(buf, a, b):
    """``<sec>[.<frac>]`` (frac: 1..9 digits) -> ns, -1 if invalid."""
    dot = -1
    for k in range(a, b):
        if buf[k] == 46:
            dot = k
            break
    if dot < 0:
        return _parse_uint(buf, a, b)
    sec = _parse_uint(buf, a, dot)
    nd = b - dot - 1
    if sec < 0 or sec > 9_000_000_000 or nd < 1 or nd > 9:
        return -1
    frac = _parse_uint(buf, dot + 1, b)
    if frac < 0:
        return -1
    return sec * 1_000_000_000 + frac * _POW10[9 - nd]


if JIT_DISABLED or sys.platform == "win32":
    @njit
    def _find_newline(buf, pos, n):
        """Index of the first ``\\n`` in buf[pos:n], or n."""
        while pos < n and buf[pos] != 10:
            pos += 1
        return pos
else:
    # libc memchr (vectorised) through its symbol: 5x faster than a byte loop, and
    # unlike a ctypes pointer it keeps the kernel cacheable
    _memchr = types.ExternalFunction("memchr", types.uintp(types.uintp, types.intc, types.uintp))

    @njit
    def _find_newline(buf, pos, n):
        """Index of the first ``\\n`` in buf[pos:n], or n."""
        if pos >= n:
            return n
        base = buf.ctypes.data
        r = _memchr(np.uint64(base + pos), np.int32(10), np.uint64(n - pos))
        if r == 0:
            return n
        return np.int64(r) - base


@njit
def _intern(buf, a, b, slots, ents, counts, which):
    """Id of the string buf[a:b] in a per-buffer table; -2 when the table is full.

    ``slots`` is the open-addressing index (-1 empty), ``ents[i] = (hash, start, len)``
    and ``counts[which]`` the number of entries.
    """
    h = 2166136261
    for k in range(a, b):
        h = ((h ^ int(buf[k])) * 16777619) & 0xFFFFFFFF
    mask = slots.shape[0] - 1
    s = h & mask
    n = b - a
    while True:
        i = slots[s]
        if i < 0:
            c = counts[which]
            if c >= ents.shape[0]:
                return -2
            slots[s] = c
            ents[c, 0] = h
            ents[c, 1] = a
            ents[c, 2] = n
            counts[which] = c + 1
            return c
        if ents[i, 0] == h and ents[i, 2] == n:
            st = ents[i, 1]
            same = True
            for k in range(n):
                if buf[st + k] != buf[a + k]:
                    same = False
                    break
            if same:
                return i
        s = (s + 1) & mask


@njit
def _key_id(buf, a, b):
    """Index of the field name buf[a:b] in _KEY_NAMES, -1 if it is not one of ours.

    The candidate is picked by length (and first letter where lengths collide), then
    compared byte by byte: one comparison per field instead of a table scan.
    """
    n = b - a
    k = -1
    if n == 3:
        k = K_PFN
    elif n == 4:
        k = K_PAGE
    elif n == 5:
        k = K_ORDER
    elif n == 9:
        k = K_GFP
    elif n == 11:
        c = buf[a]
        if c == 109:  # m
            k = K_MIGRATETYPE
        elif c == 97:  # a
            k = K_ALLOC_ORDER
        else:
            k = K_FRAGMENTING
    elif n == 13:
        k = K_REFILL
    elif n == 14:
        k = K_FALLBACK_ORDER
    elif n == 15:
        k = K_PAGEBLOCK_ORDER
    elif n == 16:
        k = K_CHOWN
    elif n == 17:
        k = K_ALLOC_MT
    elif n == 20:
        k = K_FALLBACK_MT
    if k < 0:
        return -1
    for j in range(n):
        if buf[a + j] != _KEY_TAB[k, j]:
            return -1
    return k


# ------------------------------------------------------------------------------
# the line parser
# ------------------------------------------------------------------------------
@njit
def _find_header(buf, p, e, sep):
    """Locate ``<comm><sep><pid> [<cpu>]``.

    Returns (comm_end, pid, cpu, after) with after = index just past ``]``; comm_end < 0
    if the line has no such header.
    """
    q = p
    while q < e:
        if buf[q] != 91:  # '['
            q += 1
            continue
        # digits then ']'
        r = q + 1
        while r < e and _is_digit(buf[r]):
            r += 1
        if r == q + 1 or r >= e or buf[r] != 93 or r - q - 1 > 5:
            q += 1
            continue
        cpu = _parse_uint(buf, q + 1, r)
        if cpu > 32767:  # not a CPU number (the cpu column is an int16)
            q += 1
            continue
        # walk back: blanks, optional "(tgid)", blanks, digits
        t = q - 1
        while t >= p and _is_blank(buf[t]):
            t -= 1
        if t >= p and buf[t] == 41:  # ')'
            while t >= p and buf[t] != 40:
                t -= 1
            t -= 1
            while t >= p and _is_blank(buf[t]):
                t -= 1
        dend = t + 1
        while t >= p and _is_digit(buf[t]):
            t -= 1
        dstart = t + 1
        if dend == dstart or dend - dstart > 9 or t < p:
            q += 1
            continue
        pid = _parse_uint(buf, dstart, dend)
        c = buf[t]
        if sep == SEP_DASH:
            if c == 45:  # '-'
                return t, pid, cpu, r + 1
        else:
            if c == 47:  # '/': pid/tid, keep the tid
                t -= 1
                while t >= p and _is_digit(buf[t]):
                    t -= 1
                if t >= p and _is_blank(buf[t]):
                    while t >= p and _is_blank(buf[t]):
                        t -= 1
                    return t + 1, pid, cpu, r + 1
            elif _is_blank(c):
                while t >= p and _is_blank(buf[t]):
                    t -= 1
                return t + 1, pid, cpu, r + 1
        q += 1
    return -1, 0, 0, 0


@njit
def _non_event_status(buf, indented, p, e, li, o_pfn):
    """Status of a line without an event header.

    Skipped: trace-cmd's preamble, ftrace stack traces (``<stack trace>``, `` => sym``)
    and ``perf script -g`` call chains (an indented ``<hex address> <symbol>``).  A
    lost-events marker is ST_LOST with its count in ``o_pfn[li]``.  Anything else is
    not an event.
    """
    if _match_at(buf, p, e, _LIT_STACK) or _match_at(buf, p, e, _LIT_USTACK):
        return ST_SKIP
    if indented:
        if _match_at(buf, p, e, _LIT_ARROW):
            return ST_SKIP
        k = p
        while k < e and _hex_digit(int(buf[k])) >= 0:
            k += 1
        if k > p and k < e and _is_blank(buf[k]):
            return ST_SKIP
    if _match_at(buf, p, e, _LIT_CPUS) and _parse_uint(buf, p + 5, e) >= 0:
        return ST_SKIP
    if _match_at(buf, p, e, _LIT_VERSION) and _parse_uint(buf, p + 10, e) >= 0:
        return ST_SKIP
    if _match_at(buf, p, e, _LIT_CPU_SP) and _ends_with(buf, p, e, _LIT_IS_EMPTY):
        if _parse_uint(buf, p + 4, e - 9) >= 0:
            return ST_SKIP
    if _match_at(buf, p, e, _LIT_CPU_COLON):
        k = p + 4
        while k < e and _is_digit(buf[k]):
            k += 1
        if k > p + 4 and k + 1 < e and buf[k] == 32:
            k += 1
            if _match_at(buf, k, e, _LIT_LOST) and _ends_with(buf, k, e, _LIT_EVENTS):
                n = _parse_uint(buf, k + 6, e - 8)
                if n >= 0:
                    o_pfn[li] = n
                    return ST_LOST
            if _ends_with(buf, k, e, _LIT_DROPPED) and buf[k] == 91:
                # "[%lld EVENTS DROPPED]" or "[EVENTS DROPPED]" (count unknown)
                if e - k == 16:
                    o_pfn[li] = 0
                    return ST_LOST
                n = _parse_uint(buf, k + 1, e - 16)
                if n >= 0 and buf[e - 16] == 32:
                    o_pfn[li] = n
                    return ST_LOST
    return ST_NOT_AN_EVENT


@njit
def parse_buffer(buf, pos, li, sep, want_comm, out_status, o_event, o_cpu, o_ts, o_pid, o_pfn, o_order,
                 o_gfp, o_mt, o_refill, o_fbo, o_fbmt, o_frag, o_chown, o_comm, o_name,
                 gfp_slots, gfp_ents, comm_slots, comm_ents, name_slots, name_ents, counts):
    """Parse the lines of ``buf`` from byte ``pos`` on, writing rows from ``li`` on.

    Stops at the end of ``buf`` or when the output arrays are full; returns the next
    row index (``counts[3]`` = the next byte position) or PARSE_TABLE_FULL.  Output rows
    go to the ``o_*`` arrays (:data:`LINE_COLUMNS`); a row holds meaningful values only
    as far as its status says (an ``ST_OK`` row all of them).  A trailing ``\\r`` is
    ignored.  The whole
    line grammar is written inline in this one loop (no function call per line).
    """
    n = buf.shape[0]
    cap = out_status.shape[0]
    while pos < n and li < cap:
        e = _find_newline(buf, pos, n)
        nxt = e + 1
        if e > pos and buf[e - 1] == 13:
            e -= 1
        st = ST_OK
        p = pos
        while True:  # one pass; every "break" ends the line with status st
            while p < e and _is_blank(buf[p]):
                p += 1
            if p == e or buf[p] == 35:  # blank or '#'
                st = ST_SKIP
                break
            comm_end, pid, cpu, q = _find_header(buf, p, e, sep)
            if comm_end < 0:
                st = _non_event_status(buf, p > pos, p, e, li, o_pfn)
                break
            o_cpu[li] = cpu
            o_pid[li] = pid
            if want_comm:
                cid = _intern(buf, p, comm_end, comm_slots, comm_ents, counts, 1)
                if cid == -2:
                    return PARSE_TABLE_FULL
                o_comm[li] = cid
            # [irq-flags] then "<ts>:"
            ts = -1
            for _ in range(2):
                while q < e and _is_blank(buf[q]):
                    q += 1
                a = q
                while q < e and not _is_blank(buf[q]):
                    q += 1
                if q == a:
                    st = ST_TRUNCATED
                    break
                if buf[q - 1] == 58:  # ':'
                    ts = _parse_ts(buf, a, q - 1)
                    if ts >= 0:
                        break
                if q == e:
                    st = ST_TRUNCATED
                    break
            if st != ST_OK:
                break
            if ts < 0:
                st = ST_BAD_FIELD
                break
            o_ts[li] = ts
            # "<event>:" (perf: "<sys>:<event>:")
            while q < e and _is_blank(buf[q]):
                q += 1
            if _match_at(buf, q, e, _LIT_STACK) or _match_at(buf, q, e, _LIT_USTACK):
                st = ST_SKIP  # ftrace's stacktrace entry; its " => sym" lines follow
                break
            a = q
            while q < e and not _is_blank(buf[q]):
                q += 1
            if q == a or buf[q - 1] != 58:
                st = ST_TRUNCATED if q == e else ST_BAD_FIELD
                break
            na = a
            if _match_at(buf, a, q - 1, _LIT_KMEM):
                na = a + 5
            idx = _lookup(buf, na, q - 1, _EV_TAB, _EV_LEN)
            if idx < 0:
                nid = _intern(buf, a, q - 1, name_slots, name_ents, counts, 2)
                if nid == -2:
                    return PARSE_TABLE_FULL
                o_name[li] = nid
                st = ST_UNKNOWN
                break
            code = _EV_CODE[idx]
            o_event[li] = code
            # key=value fields
            seen = 0
            last_rank = -1
            page_null = False
            pfn = -1
            order = 0
            mt = -1
            refill = -1
            fbo = -1
            fbmt = -1
            frag = -1
            chown = -1
            gid = -1
            while True:
                while q < e and _is_blank(buf[q]):
                    q += 1
                if q >= e:
                    break
                ka = q
                while q < e and buf[q] != 61 and not _is_blank(buf[q]):  # '='
                    q += 1
                if q >= e:
                    st = ST_TRUNCATED  # a key cut short
                    break
                if buf[q] != 61:
                    st = ST_BAD_FIELD  # a word that is not key=value
                    break
                kb = q
                q += 1
                while q < e and _is_blank(buf[q]):
                    q += 1
                va = q
                while q < e and not _is_blank(buf[q]):
                    q += 1
                vb = q
                if va == vb:
                    st = ST_TRUNCATED
                    break
                key = _key_id(buf, ka, kb)
                if key < 0:
                    continue
                seen |= 1 << key
                if _KEY_RANK[key] > last_rank:
                    last_rank = _KEY_RANK[key]
                if key == K_PAGE:
                    page_null = _is_null_ptr(buf, va, vb)
                elif key == K_PFN:
                    pfn = _parse_pfn(buf, va, vb)
                    if pfn < 0:
                        st = ST_BAD_FIELD
                        break
                elif key == K_GFP:
                    gid = _intern(buf, va, vb, gfp_slots, gfp_ents, counts, 0)
                    if gid == -2:
                        return PARSE_TABLE_FULL
                elif key != K_PAGEBLOCK_ORDER:
                    ok, v = _parse_int(buf, va, vb)
                    if not ok or v < -128 or v > 127:
                        st = ST_BAD_FIELD
                        break
                    if key == K_ORDER or key == K_ALLOC_ORDER:
                        if v < 0 or v > 63:
                            st = ST_BAD_FIELD
                            break
                        order = v
                    elif key == K_MIGRATETYPE or key == K_ALLOC_MT:
                        mt = v
                    elif key == K_REFILL:
                        refill = v
                    elif key == K_FALLBACK_ORDER:
                        fbo = v
                    elif key == K_FALLBACK_MT:
                        fbmt = v
                    elif key == K_FRAGMENTING:
                        frag = v
                    elif key == K_CHOWN:
                        chown = v
            if st != ST_OK:
                break
            req = _REQUIRED[code]
            if seen & req != req:
                # required fields missing: if they would all come after the last field
                # present, the line is a prefix of an event line (cut short)
                st = ST_TRUNCATED
                for k in range(NR_KEYS):
                    if (req >> k) & 1 and not (seen >> k) & 1 and _KEY_RANK[k] < last_rank:
                        st = ST_MISSING_FIELD
                break
            if (code == ALLOC or code == ALLOC_ZONE_LOCKED) and pfn == 0 and (page_null or not (seen & 1)):
                pfn = -1  # failed allocation: page=NULL pfn=0
            o_pfn[li] = pfn
            o_order[li] = order
            o_mt[li] = mt
            o_refill[li] = refill
            o_fbo[li] = fbo
            o_fbmt[li] = fbmt
            o_frag[li] = frag
            o_chown[li] = chown
            o_gfp[li] = gid
            break
        out_status[li] = st
        li += 1
        pos = nxt
    counts[3] = pos
    return li


class InternTable:
    """Arrays of one per-buffer string table (see :func:`_intern`)."""

    __slots__ = ("slots", "ents")

    def __init__(self, capacity: int):
        size = 1
        while size < 2 * capacity:
            size *= 2
        self.slots = np.full(size, -1, dtype=np.int64)
        self.ents = np.zeros((capacity, 3), dtype=np.int64)

    def strings(self, data: bytes | memoryview, count: int) -> list[str]:
        """The ``count`` interned strings, in id order, decoded from the buffer they point into."""
        return [bytes(data[s: s + ln]).decode("utf-8", "replace")
                for s, ln in self.ents[:count, 1:3].tolist()]


class ParsedBuffer:
    """Per-line output of :func:`parse_buffer` for one buffer of complete lines.

    ``status`` and every array of ``cols`` (:data:`LINE_COLUMNS`) have one entry per line.
    """

    def __init__(self, data: bytes | memoryview, n: int, status: np.ndarray, cols: dict[str, np.ndarray],
                 tables: list[InternTable], counts: np.ndarray):
        self.data = data
        self.n = n
        self.status = status[:n]
        self.cols = {k: v[:n] for k, v in cols.items()}
        self.gfp_strings = tables[ID_GFP].strings(data, int(counts[ID_GFP]))
        self.comm_strings = tables[ID_COMM].strings(data, int(counts[ID_COMM]))
        self.name_strings = tables[ID_NAME].strings(data, int(counts[ID_NAME]))
        self._starts: np.ndarray | None = None

    def line_text(self, i: int) -> str:
        """Text of line ``i`` (0-based within the buffer), without its newline."""
        if self._starts is None:  # only needed to report malformed lines
            nl = np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == 10)
            self._starts = np.concatenate(([0], nl + 1))
        a = int(self._starts[i])
        b = int(self._starts[i + 1]) - 1 if i + 1 < self._starts.shape[0] else len(self.data)
        return bytes(self.data[a:b]).rstrip(b"\r").decode("utf-8", "replace")


def parse_bytes(data: bytes | memoryview, sep: int, want_comm: bool) -> ParsedBuffer:
    """Parse a buffer of lines (the last one may lack its newline)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    nbytes = len(data)
    cap = nbytes // 96 + 16  # rows; grown if the lines are shorter than that on average
    status = np.empty(cap, dtype=np.uint8)
    cols = {k: np.empty(cap, dtype=dt) for k, dt in LINE_COLUMNS.items()}
    caps = [1024, 4096 if want_comm else 1, 256]
    while True:
        tables = [InternTable(c) for c in caps]
        counts = np.zeros(4, dtype=np.int64)
        li = 0
        while True:
            li = parse_buffer(buf, counts[3], li, sep, want_comm, status, *cols.values(),
                              tables[0].slots, tables[0].ents, tables[1].slots, tables[1].ents,
                              tables[2].slots, tables[2].ents, counts)
            if li == PARSE_TABLE_FULL or counts[3] >= nbytes:
                break
            cap *= 2
            status = np.resize(status, cap)
            cols = {k: np.resize(v, cap) for k, v in cols.items()}
        if li != PARSE_TABLE_FULL:
            return ParsedBuffer(data, int(li), status, cols, tables, counts)
        # a string table filled up: grow the full one(s) and parse the buffer again
        for i in range(3):
            if counts[i] >= caps[i]:
                caps[i] *= 8
