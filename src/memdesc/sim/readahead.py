"""Readahead held against a real capture, event by event.

Theory
------
A capture's folio-level events (:mod:`memdesc.trace.folio_events`) contain the *read
requests* -- ``mm_filemap_get_pages`` (one ``filemap_get_pages`` call: pages ``index ..
last_index``), ``mm_filemap_fault`` (a page fault reaching ``filemap_fault``) and
``mm_filemap_map_pages`` (fault-around) -- and the kernel's *decisions*:
``page_cache_sync_ra`` / ``page_cache_async_ra`` (with the ``file_ra_state`` at entry),
``page_cache_ra_order``, ``page_cache_ra_unbounded`` and the folios it added,
``mm_filemap_add_to_page_cache`` (index, order).  The model (:mod:`memdesc.mm.readahead`)
is driven *only by the requests*, per open file and in trace order, and emits the same
kinds of events; the two are compared request by request.

Attribution.  A task runs one request at a time, so the kernel events of one pid are
attributed to its requests (:func:`attribute_nb`): a fault is traced when
``filemap_fault`` starts, so the readahead and adds that follow it on the same inode are
its own (one readahead call tree: the first ``sync``/``async`` root, an ``ra_order``
without one, their ``ra_unbounded`` and adds, and the ``FGP_CREAT`` add); a
``get_pages`` is traced when ``filemap_get_pages`` *ends*, so the events of the same
pid and inode since its previous request are its own -- the model runs that request
where its first event is.  Kernel events without a request (the write path's
``write_begin`` adds, block-device metadata, ``readahead(2)``) are not decisions the model
is asked to make: adds of that kind are applied as page-cache state, ra events of that
kind would be counted as misses (the captures have none).  An *open file* (``struct
file`` and its ``file_ra_state``) is a (pid, inode) pair: a task's own opens and mmaps
of a file share one; two opens in one task are merged, a file shared across fork is
split.

What the model cannot know, and what it is given instead:

* the page cache before the capture.  Folios the capture deletes without having added
  them, and pages a request found cached (a ``get_pages`` without sync readahead, a
  fault without sync readahead or ``FGP_CREAT`` add) that no earlier add explains, were
  cached before it started: they are put in the model's page cache at the start
  (``seeded``; a page found cached and never deleted gets order 0, its true order being
  unknown).  Other pre-capture folios are unknown.
* ``i_size``: the largest page the capture shows of the file (added, deleted or
  requested), as whole pages; ``ra_pages``: printed in every readahead event (it depends
  on the device and on ``fadvise``), taken from the file's first one; the VMA of a fault
  (``vm_flags``, bounds): an ordinary read-only mapping (read-around); ``bdi->io_pages``:
  not above ``ra_pages``.
* evictions by reclaim and truncation: the capture's ``mm_filemap_delete_from_page_cache``
  events are applied as they come, in both modes (a delete inside a larger model folio
  splits it, as truncation does).
* I/O completion: a folio is uptodate from the request after the one that added it.

Two runs: *informed* -- the page cache follows the capture (every add the kernel made,
with the ``PG_readahead`` mark its ra call computed; the kernel's async readahead clears
the mark), while each request's decisions and the file's ``file_ra_state`` are the
model's own (its tentative adds are undone after the request); *raw* -- the page cache
holds the model's own readahead folios (the kernel's readahead adds are not applied;
write-path adds and deletes are).  Agreement (``readahead_agreement``): per request and
event kind, the i-th kernel event is paired with the i-th model event; ``events`` counts
pairs plus unpaired events of either side, ``exact`` the pairs whose index, order, size
and async_size are all equal (adds: index and order; ``ra_unbounded``: nr_to_read and
lookahead_size as size and async_size).
"""

from __future__ import annotations

import importlib.resources
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from memdesc._numba import njit
from memdesc.errors import ConfigError, FormatError
from memdesc.lib import _xarray_kernels as K
from memdesc.mm import filemap as fm
from memdesc.mm import readahead as ra
from memdesc.mm.filemap import PG_READAHEAD, PG_UPTODATE, PageCache
from memdesc.trace.folio_events import PAGECACHE_KINDS, FolioTrace, read_folio_events

# merged-event kinds
E_GP = 0   # mm_filemap_get_pages
E_FA = 1   # mm_filemap_fault
E_MP = 2   # mm_filemap_map_pages
E_SY = 3   # page_cache_sync_ra
E_AS = 4   # page_cache_async_ra
E_RO = 5   # page_cache_ra_order
E_UN = 6   # page_cache_ra_unbounded
E_AD = 7   # mm_filemap_add_to_page_cache
E_DE = 8   # mm_filemap_delete_from_page_cache
E_NAMES = ("mm_filemap_get_pages", "mm_filemap_fault", "mm_filemap_map_pages", "page_cache_sync_ra",
           "page_cache_async_ra", "page_cache_ra_order", "page_cache_ra_unbounded", "mm_filemap_add_to_page_cache",
           "mm_filemap_delete_from_page_cache")
#: merged kind -> model effect kind
E_TO_EV = np.array([-1, -1, -1, ra.EV_SYNC_RA, ra.EV_ASYNC_RA, ra.EV_RA_ORDER, ra.EV_RA_UNBOUNDED, ra.EV_ADD, -1],
                   np.int64)

# value columns of the merged events (V[:, j])
V_INDEX = 0
V_A = 1   # last_index + 1 (GP, MP); req_count (SY, AS); order (RO, AD, DE); nr_to_read (UN)
V_B = 2   # order (SY, AS); size (RO); lookahead (UN)
V_C = 3   # size (SY, AS); async_size (RO)
V_D = 4   # async_size (SY, AS); ra_pages (RO)
V_E = 5   # ra_pages (SY, AS)
V_F = 6   # mmap_miss (SY, AS)
V_G = 7   # prev_pos (SY, AS)
NV = 8

#: validation runs: informed (page cache follows the capture), raw (the model's own
#: readahead folios), direct (informed, but pre-capture pages only from deletes and
#: requests), plain_vma (informed, every fault in an ordinary VMA: no VMA inferred)
MODES = ("informed", "raw", "direct", "plain_vma")
# where a pre-capture folio was learnt from
SEED_DELETE = 0     # the capture deletes it without having added it
SEED_REQUEST = 1    # a request found the page cached
SEED_SKIPPED = 2    # a kernel ra_unbounded window skipped the page
SEED_NAMES = ("deleted", "found_by_request", "skipped_by_readahead")
# presence evidence of a request
PRES_UNKNOWN = -1
PRES_ABSENT = 0
PRES_PRESENT = 1

#: effect kinds reported, in order
KIND_NAMES = ra.EV_NAMES


class Events(NamedTuple):
    """The merged events of a capture, in trace order (one row each)."""

    line: np.ndarray     # int64 source line
    kind: np.ndarray     # int64 E_*
    pid: np.ndarray      # int64 dense pid id
    mapping: np.ndarray  # int64 dense (dev, ino) id
    file: np.ndarray     # int64 dense (pid, mapping) id
    V: np.ndarray        # int64[n, NV]


class Attribution(NamedTuple):
    owner: np.ndarray     # request row of an effect, -1 none
    first: np.ndarray     # first effect row of a request, -1 none
    flags: np.ndarray     # kernel adds: PG_READAHEAD as its ra call set it
    present: np.ndarray   # requests: PRES_*
    cont: np.ndarray      # GP: continues the previous get_pages of the same read(2)


def sample_path() -> Path:
    """The bundled excerpt of the ``files`` capture (see its README)."""
    p = Path(str(importlib.resources.files("memdesc").joinpath("data", "readahead-sample", "trace.txt.zst")))
    if not p.is_file():
        raise ConfigError(f"the bundled readahead sample is missing ({p}): reinstall memdesc")
    return p


# ------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------
def _frames_to_events(trace: FolioTrace) -> tuple[Events, dict]:
    cols = []
    spec = (
        (E_GP, "mm_filemap_get_pages", ("index", "last_index")),
        (E_FA, "mm_filemap_fault", ("index",)),
        (E_MP, "mm_filemap_map_pages", ("index", "last_index")),
        (E_SY, "page_cache_sync_ra", ("index", "req_count", "order", "size", "async_size", "ra_pages", "mmap_miss",
                                      "prev_pos")),
        (E_AS, "page_cache_async_ra", ("index", "req_count", "order", "size", "async_size", "ra_pages", "mmap_miss",
                                       "prev_pos")),
        (E_RO, "page_cache_ra_order", ("index", "order", "size", "async_size", "ra_pages")),
        (E_UN, "page_cache_ra_unbounded", ("index", "nr_to_read", "lookahead_size")),
        (E_AD, "mm_filemap_add_to_page_cache", ("index", "order", "pfn")),
        (E_DE, "mm_filemap_delete_from_page_cache", ("index", "order", "pfn")),
    )
    for code, name, fields in spec:
        f = trace.events(name)
        sel = [pl.col("line").cast(pl.Int64), pl.lit(code, dtype=pl.Int64).alias("kind"),
               pl.col("pid").cast(pl.Int64), pl.col("dev"), pl.col("ino")]
        for j, c in enumerate(fields):
            e = pl.col(c)
            if c == "last_index":
                e = e + 1
            sel.append(e.alias(f"v{j}"))
        for j in range(len(fields), NV):
            sel.append(pl.lit(0, dtype=pl.Int64).alias(f"v{j}"))
        cols.append(f.select(sel))
    m = pl.concat(cols).sort("line")
    # dense ids: mappings by (dev, ino), pids, open files by (pid, mapping)
    m = m.with_columns(pl.struct("dev", "ino").rank("dense").cast(pl.Int64).alias("mid") - 1,
                       pl.col("pid").rank("dense").cast(pl.Int64).alias("pidx") - 1)
    m = m.with_columns(pl.struct("pidx", "mid").rank("dense").cast(pl.Int64).alias("fid") - 1)
    mapping = m["mid"].to_numpy()
    pidx = m["pidx"].to_numpy()
    fidx = m["fid"].to_numpy()
    maps = m.group_by("mid").agg(pl.col("dev").first(), pl.col("ino").first()).sort("mid")
    uniq_m = np.stack([maps["dev"].to_numpy(), maps["ino"].to_numpy()], axis=1).astype(np.int64) if len(m) \
        else np.zeros((0, 2), np.int64)
    uniq_p = m.group_by("pidx").agg(pl.col("pid").first()).sort("pidx")["pid"].to_numpy().astype(np.int64)
    files = m.group_by("fid").agg(pl.col("pidx").first(), pl.col("mid").first()).sort("fid")
    uniq_f = files["pidx"].to_numpy().astype(np.int64) * max(1, len(uniq_m)) + files["mid"].to_numpy()
    V = np.ascontiguousarray(np.stack([m[f"v{j}"].to_numpy() for j in range(NV)], axis=1).astype(np.int64)) \
        if len(m) else np.zeros((0, NV), np.int64)
    ev = Events(m["line"].to_numpy().astype(np.int64), m["kind"].to_numpy().astype(np.int64),
                pidx.astype(np.int64), mapping.astype(np.int64), fidx.astype(np.int64), V)
    meta = {"mappings": uniq_m, "pids": uniq_p, "files": uniq_f, "nmappings": len(uniq_m)}
    return ev, meta


# ------------------------------------------------------------------------------------------
# attribution (numba)
# ------------------------------------------------------------------------------------------
@njit
def attribute_nb(kind, pid, mapping, V, npids):
    n = kind.shape[0]
    owner = np.full(n, -1, np.int64)
    first = np.full(n, -1, np.int64)
    flags = np.zeros(n, np.int64)
    present = np.full(n, PRES_UNKNOWN, np.int64)
    cont = np.zeros(n, np.int64)
    head = np.full(npids, -1, np.int64)       # pending effects (linked, newest first)
    nxt = np.full(n, -1, np.int64)
    fault = np.full(npids, -1, np.int64)      # open fault request
    froots = np.zeros(npids, np.int64)
    last_req = np.full(npids, -1, np.int64)
    ctx_kind = np.full(npids, -1, np.int64)   # kernel ra call context for add flags
    ctx_map = np.full(npids, -1, np.int64)
    ctx_mark = np.zeros(npids, np.int64)
    for i in range(n):
        k = kind[i]
        p = pid[i]
        if k == E_DE:
            continue
        if k <= E_MP:
            if k == E_GP:
                # the pending effects of this pid on this inode from the call's first
                # sync/async readahead on are this call's (adds before it are the write
                # path's: even filemap_create_folio follows a sync readahead); the list is
                # newest first
                j = head[p]
                root = -1
                while j >= 0:
                    if mapping[j] == mapping[i] and (kind[j] == E_SY or kind[j] == E_AS):
                        root = j
                    j = nxt[j]
                j = head[p]
                last = -1
                while j >= 0:
                    if mapping[j] == mapping[i] and root >= 0 and j >= root:
                        owner[j] = i
                        last = j
                    j = nxt[j]
                first[i] = last
                r = last_req[p]
                if r >= 0 and kind[r] == E_GP and mapping[r] == mapping[i] and V[r, V_A] == V[i, V_A] \
                        and V[r, V_INDEX] < V[i, V_INDEX]:
                    cont[i] = 1
            head[p] = -1
            fault[p] = i if k == E_FA else -1
            froots[p] = 0
            last_req[p] = i
            ctx_kind[p] = -1
            continue
        # an effect
        if k == E_RO or k == E_UN:
            ctx_kind[p] = k
            ctx_map[p] = mapping[i]
            if k == E_RO:
                ctx_mark[p] = V[i, V_INDEX] + V[i, V_B] - V[i, V_C]
            elif V[i, V_B] <= V[i, V_A]:
                ctx_mark[p] = V[i, V_INDEX] + V[i, V_A] - V[i, V_B]
            else:
                ctx_mark[p] = -1
        elif k == E_AD and ctx_kind[p] >= 0 and ctx_map[p] == mapping[i]:
            idx = V[i, V_INDEX]
            o = V[i, V_A]
            if ctx_kind[p] == E_RO:
                if idx == (ctx_mark[p] & ~((np.int64(1) << o) - 1)):
                    flags[i] = PG_READAHEAD
            elif ctx_mark[p] >= 0 and idx == ctx_mark[p]:
                flags[i] = PG_READAHEAD
        f = fault[p]
        if f >= 0 and mapping[f] == mapping[i]:
            root = k == E_SY or k == E_AS or (k == E_RO and froots[p] == 0)
            if (k == E_SY or k == E_AS) and froots[p] > 0:
                fault[p] = -1          # a new call tree: a read's
            else:
                if root:
                    froots[p] += 1
                if k == E_AD and froots[p] == 0 and V[i, V_INDEX] != V[f, V_INDEX]:
                    pass  # an add of another index before any readahead: not this fault's
                else:
                    owner[i] = f
                    if first[f] < 0:
                        first[f] = i
                    continue
        nxt[i] = head[p]
        head[p] = i
    # presence evidence
    for i in range(n):
        k = kind[i]
        if k != E_GP and k != E_FA:
            continue
        present[i] = PRES_PRESENT
    for i in range(n):
        r = owner[i]
        if r < 0:
            continue
        k = kind[i]
        if kind[r] == E_GP:
            if k == E_SY:
                present[r] = PRES_ABSENT
            elif k == E_AD and present[r] == PRES_PRESENT and V[i, V_INDEX] == V[r, V_INDEX]:
                present[r] = PRES_ABSENT   # filemap_create_folio
        else:
            if k == E_RO or k == E_SY or (k == E_AD and V[i, V_INDEX] <= V[r, V_INDEX]
                                          < V[i, V_INDEX] + (np.int64(1) << V[i, V_A])):
                if k != E_AD or present[r] == PRES_PRESENT:
                    present[r] = PRES_ABSENT
    return owner, first, flags, present, cont


# ------------------------------------------------------------------------------------------
# page-cache state updates shared by the runs
# ------------------------------------------------------------------------------------------
@njit
def _remove_range(P, H, S, mapping, index, order):
    """Take the pages [index, index + 2**order) out of the model's page cache: folios inside
    go, a larger folio holding the range is split (non-uniformly) and its piece goes."""
    end = index + (np.int64(1) << order)
    xa = S.m_xa[mapping]
    fid = fm.entry_folio(K.xa_load_nb(P, H, xa, index))
    if fid >= 0 and S.f_order[fid] > order and S.f_index[fid] <= index \
            and S.f_index[fid] + (np.int64(1) << S.f_order[fid]) >= end:
        if fm.folio_split_nb(P, H, S, fid, order, index, False) != 0:
            fm.filemap_remove_folio_nb(P, H, S, fid, np.int64(0))
            return
        fid = fm.entry_folio(K.xa_load_nb(P, H, xa, index))
        if fid >= 0:
            fm.filemap_remove_folio_nb(P, H, S, fid, np.int64(0))
        return
    i = index
    while i < end:
        e, j = K.xa_find_nb(P, H, xa, i, end - 1, K.XA_PRESENT)
        if e == 0:
            break
        f2 = fm.entry_folio(e)
        if f2 < 0:
            o = K.xa_get_order_nb(P, H, xa, j)
            i = (j | ((np.int64(1) << o) - 1)) + 1
            continue
        i = S.f_index[f2] + (np.int64(1) << S.f_order[f2])
        fm.filemap_remove_folio_nb(P, H, S, f2, np.int64(0))
    # a folio starting before index and reaching into the range
    fid = fm.entry_folio(K.xa_load_nb(P, H, xa, index))
    if fid >= 0:
        fm.filemap_remove_folio_nb(P, H, S, fid, np.int64(0))


@njit
def _overlaps(P, H, S, mapping, index, order):
    """Does any folio overlap the pages [index, index + 2**order)?"""
    if fm.filemap_get_folio_nb(P, H, S, mapping, index) >= 0:
        return True
    end = index + (np.int64(1) << order)
    xa = S.m_xa[mapping]
    i = index
    while i < end:
        e, j = K.xa_find_nb(P, H, xa, i, end - 1, K.XA_PRESENT)
        if e == 0:
            return False
        if fm.entry_folio(e) >= 0:
            return True
        i = (j | ((np.int64(1) << K.xa_get_order_nb(P, H, xa, j)) - 1)) + 1
    return False


@njit
def _apply_add(P, H, S, mapping, index, order, flags):
    r = fm.filemap_add_folio_nb(P, H, S, mapping, index, order, np.int64(-1), flags)
    if r == -fm.EEXIST:
        _remove_range(P, H, S, mapping, index, order)
        r = fm.filemap_add_folio_nb(P, H, S, mapping, index, order, np.int64(-1), flags)
    return r


# ------------------------------------------------------------------------------------------
# the prescan: what was cached before the capture
# ------------------------------------------------------------------------------------------
@njit
def _seed_present(P, H, S, m, idx, seeds, nseed, src):
    """Page ``idx`` was cached: if the replay has no folio there, it was cached before the
    capture (order unknown)."""
    if fm.filemap_get_folio_nb(P, H, S, m, idx) >= 0:
        return nseed
    if nseed < seeds.shape[0]:
        seeds[nseed, 0] = m
        seeds[nseed, 1] = idx
        seeds[nseed, 2] = -1
        seeds[nseed, 3] = src
    nseed += 1
    _apply_add(P, H, S, m, idx, np.int64(0), np.int64(PG_UPTODATE))
    return nseed


@njit
def prescan_nb(P, H, S, kind, pid, mapping, V, owner, present, seeds, gen, ngen, win, windows, pos, nseed,
               low_nodes, low_rows):
    """Replay the kernel's adds and deletes to learn what the capture does not show directly.

    Pre-capture folios (``seeds``: mapping, index, order or -1 when unknown): a delete of
    pages the replay does not hold; a request that found its page cached; the pages a
    kernel ``ra_unbounded`` window skipped (they were cached: the kernel adds every hole).
    File generations (``gen``, per event; ``ngen`` per mapping): a write-path add at index 0
    into an empty mapping starts a new one (the file was truncated and rewritten).  ``win``
    (per pid: mapping, next index, end) is the open ra_unbounded window.  Returns (next row,
    seeds found); stops early when the pool runs low so the caller can grow it."""
    n = kind.shape[0]
    i = pos
    while i < n:
        if K.pool_free_count(P) < low_nodes or S.f_pfn.shape[0] - S.ctl[fm.C_LIVE] < low_rows \
                or nseed >= seeds.shape[0]:
            return i, nseed
        k = kind[i]
        m = mapping[i]
        p = pid[i]
        idx = V[i, V_INDEX]
        # the pid's open ra_unbounded window ends at anything but one of its adds
        if win[p, 0] >= 0 and not (k == E_AD and m == win[p, 0] and win[p, 1] <= idx < win[p, 2]):
            for j in range(win[p, 1], win[p, 2]):
                nseed = _seed_present(P, H, S, win[p, 0], j, seeds, nseed, SEED_SKIPPED)
            win[p, 0] = -1
        if k == E_AD:
            if owner[i] < 0 and idx == 0 and S.m_nrfolios[m] == 0:
                ngen[m] += 1
            if win[p, 0] >= 0:
                for j in range(win[p, 1], idx):
                    nseed = _seed_present(P, H, S, m, j, seeds, nseed, SEED_SKIPPED)
                win[p, 1] = idx + (np.int64(1) << V[i, V_A])
            _apply_add(P, H, S, m, idx, V[i, V_A], np.int64(PG_UPTODATE))
        elif k == E_DE:
            o = V[i, V_A]
            if not _overlaps(P, H, S, m, idx, o):
                if nseed < seeds.shape[0]:
                    seeds[nseed, 0] = m
                    seeds[nseed, 1] = idx
                    seeds[nseed, 2] = o
                    seeds[nseed, 3] = SEED_DELETE
                nseed += 1
            _remove_range(P, H, S, m, idx, o)
        elif k == E_UN and windows:
            win[p, 0] = m
            win[p, 1] = idx
            win[p, 2] = idx + V[i, V_A]
        elif (k == E_GP or k == E_FA) and present[i] == PRES_PRESENT:
            nseed = _seed_present(P, H, S, m, idx, seeds, nseed, SEED_REQUEST)
        gen[i] = ngen[m]
        i += 1
    return i, nseed


def _resolve_seeds(seeds: np.ndarray) -> np.ndarray:
    """Pre-capture folios from the prescan's findings (mapping, index, order, source): a
    deleted folio (known order) wins over pages of unknown order it covers, which
    otherwise become order-0 folios; overlapping known folios keep the first found."""
    if seeds.shape[0] == 0:
        return seeds.reshape(0, 4)
    known = seeds[seeds[:, 2] >= 0]
    unknown = seeds[seeds[:, 2] < 0]
    cover: dict[int, list[tuple[int, int, int]]] = {}
    for m, idx, o, src in known.tolist():
        cover.setdefault(m, []).append((idx, idx + (1 << o), src))
    for m in list(cover):
        keep = []
        end = -1
        for a, b, src in sorted(cover[m]):
            if a >= end:
                keep.append((a, b, src))
                end = b
        cover[m] = keep
    res = {(m, a, (b - a).bit_length() - 1): src for m, iv in cover.items() for a, b, src in iv}
    starts = {m: np.array([a for a, _, _ in iv], np.int64) for m, iv in cover.items()}
    ends = {m: np.array([b for _, b, _ in iv], np.int64) for m, iv in cover.items()}
    for m, idx, _, src in unknown.tolist():
        s = starts.get(m)
        if s is not None and s.size:
            j = int(np.searchsorted(s, idx, side="right")) - 1
            if j >= 0 and idx < ends[m][j]:
                continue
        res.setdefault((m, idx, 0), src)
    out = np.array([(m, i, o, src) for (m, i, o), src in sorted(res.items())], np.int64)
    return out.reshape(-1, 4)


# ------------------------------------------------------------------------------------------
# the main run
# ------------------------------------------------------------------------------------------
@njit
def _end_request(P, H, S, ctx, informed):
    nu = ctx.ctl[ra.CT_NUNDO]
    if informed:
        for u in range(nu - 1, -1, -1):
            fid = ctx.undo[u, 0]
            old = ctx.undo[u, 1]
            if old < 0:
                if S.f_order[fid] >= 0:
                    fm.filemap_remove_folio_nb(P, H, S, fid, np.int64(0))
            elif S.f_order[fid] >= 0:
                S.f_flags[fid] = old
    ctx.ctl[ra.CT_NUNDO] = 0


@njit
def run_nb(P, H, S, R, ctx, order, kind, pid, mapping, file, V, owner, aflags, cont, isize_set, vma, waited,
           pend_file, pend_end, pos, informed, low_nodes, low_rows, low_out):
    """Run the model over the merged events in ``order`` from ``pos``; returns the next
    position (== len(order) when done), earlier when the pool, the folio rows or the
    effect log run low."""
    n = order.shape[0]
    while pos < n:
        if K.pool_free_count(P) < low_nodes or S.f_pfn.shape[0] - S.ctl[fm.C_LIVE] < low_rows \
                or ctx.out.shape[0] - ctx.ctl[ra.CT_N] < low_out:
            return pos
        i = order[pos]
        k = kind[i]
        m = mapping[i]
        if isize_set[i] >= 0:
            S.m_isize[m] = isize_set[i]
        if k == E_GP or k == E_FA or k == E_MP:
            p = pid[i]
            f = file[i]
            # the previous read(2) of this task ends unless this call continues it
            pf = pend_file[p]
            if pf >= 0 and not (k == E_GP and cont[i] == 1 and pf == f):
                ra.filemap_read_end_nb(S, R, pf, pend_end[p])
                pend_file[p] = -1
            ctx.ctl[ra.CT_REQID] = i
            waits = ctx.ctl[ra.CT_WAITS]
            if k == E_GP:
                if V[i, V_INDEX] == 0 and cont[i] == 0 and S.m_isize[m] > 0 and R.prev_pos[f] >= S.m_isize[m]:
                    # reading from 0 again after reaching EOF: taken as a new open(2)
                    R.start[f] = 0
                    R.size[f] = 0
                    R.async_size[f] = 0
                    R.order[f] = 0
                    R.mmap_miss[f] = 0
                    R.prev_pos[f] = -1
                ra.filemap_get_pages_nb(P, H, S, R, ctx, f, V[i, V_INDEX], V[i, V_A])
                pend_file[p] = f
                pend_end[p] = V[i, V_A] << ra.PAGE_SHIFT
            elif k == E_FA:
                ra.filemap_fault_nb(P, H, S, R, ctx, f, V[i, V_INDEX], vma[i, 0], vma[i, 1], vma[i, 2],
                                    np.int64(0))
            else:
                ra.filemap_map_pages_nb(P, H, S, R, f, V[i, V_INDEX], V[i, V_A] - 1)
            waited[i] = ctx.ctl[ra.CT_WAITS] > waits
            _end_request(P, H, S, ctx, informed)
        elif k == E_AD:
            if owner[i] < 0:
                _apply_add(P, H, S, m, V[i, V_INDEX], V[i, V_A], aflags[i] | PG_UPTODATE)
            elif informed:
                # the kernel's readahead folio: under I/O, unless the model's run of its
                # request waited (which completes the file's reads, these included)
                if waited[owner[i]]:
                    _apply_add(P, H, S, m, V[i, V_INDEX], V[i, V_A], aflags[i] | PG_UPTODATE)
                else:
                    fid = _apply_add(P, H, S, m, V[i, V_INDEX], V[i, V_A], aflags[i])
                    if fid >= 0:
                        ra.folio_start_read(S, ctx, fid)
        elif k == E_DE:
            _remove_range(P, H, S, m, V[i, V_INDEX], V[i, V_A])
        elif k == E_AS and informed:
            fid = fm.filemap_get_folio_nb(P, H, S, m, V[i, V_INDEX])
            if fid >= 0:
                S.f_flags[fid] &= ~PG_READAHEAD
        pos += 1
    return pos


# ------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------
@dataclass
class KindAgreement:
    events: int = 0
    exact: int = 0
    kernel: int = 0
    model: int = 0
    missing: int = 0    # kernel events the model did not make
    extra: int = 0      # model events the kernel did not make
    differ: int = 0     # paired, not equal

    @property
    def fraction(self) -> float | None:
        return self.exact / self.events if self.events else None

    def as_dict(self) -> dict:
        f = self.fraction
        return {"events": self.events, "exact": self.exact, "fraction": None if f is None else round(f, 6),
                "kernel": self.kernel, "model": self.model, "missing": self.missing, "extra": self.extra,
                "differ": self.differ}


@dataclass
class Agreement:
    by_kind: dict[str, KindAgreement]
    classes: Counter = field(default_factory=Counter)
    requests: int = 0
    requests_diverging: int = 0

    @property
    def events(self) -> int:
        return sum(k.events for k in self.by_kind.values())

    @property
    def exact(self) -> int:
        return sum(k.exact for k in self.by_kind.values())

    @property
    def fraction(self) -> float | None:
        """exact / events; None when there was nothing to compare."""
        return self.exact / self.events if self.events else None

    def as_dict(self) -> dict:
        f = self.fraction
        return {"events": self.events, "exact": self.exact, "fraction": None if f is None else round(f, 6),
                "by_kind": {k: v.as_dict() for k, v in self.by_kind.items()},
                "requests": self.requests, "requests_diverging": self.requests_diverging,
                "divergence_classes": dict(self.classes.most_common())}


@dataclass
class ReadaheadRun:
    """One validation run of a capture."""

    source: str
    mode: str
    agreement: Agreement
    kernel_effects: pl.DataFrame   # reqid, kind, seq, index, order, size, async_size, ...
    model_effects: pl.DataFrame
    divergent: list[int]          # request rows whose effects differ (first ones, in order)
    stats: dict
    seconds: float


@dataclass
class ReadaheadValidation:
    """Both runs over one capture, and what was read."""

    source: str
    runs: dict[str, ReadaheadRun]
    events: Events
    attribution: Attribution
    meta: dict
    trace: FolioTrace
    stats: dict
    seconds: dict

    @property
    def informed(self) -> ReadaheadRun:
        return self.runs["informed"]

    def summary(self) -> dict:
        out = {"source": self.source, "readahead_agreement": self.informed.agreement.as_dict()}
        for mode, r in self.runs.items():
            out[f"readahead_agreement_{mode}"] = r.agreement.as_dict()
        out["inputs"] = self.stats
        out["seconds"] = {k: round(v, 3) for k, v in self.seconds.items()}
        return out

    def divergences(self, mode: str = "informed", n: int = 10) -> list[dict]:
        """The first ``n`` diverging requests of a run: the request, and the kernel's and
        the model's events (adds merged into runs of consecutive folios of one order;
        sync/async events carry the ``file_ra_state`` they found)."""
        r = self.runs[mode]
        out = []
        for rid in r.divergent[:n]:
            k = r.kernel_effects.filter(pl.col("reqid") == rid).sort("line")
            m = r.model_effects.filter(pl.col("reqid") == rid)
            out.append({"request": self.request(rid), "kernel": describe_effects(k), "model": describe_effects(m)})
        return out

    def request(self, row: int) -> dict:
        ev = self.events
        k = int(ev.kind[row])
        d = {"line": int(ev.line[row]), "kind": E_NAMES[k], "pid": int(self.meta["pids"][ev.pid[row]]),
             "ino": int(self.meta["mappings"][ev.mapping[row], 1]), "index": int(ev.V[row, V_INDEX])}
        if k in (E_GP, E_MP):
            d["last_index"] = int(ev.V[row, V_A]) - 1
        return d


def describe_effects(df: pl.DataFrame) -> list[str]:
    """One line per event of an effect frame, consecutive adds of one order merged."""
    lines: list[str] = []
    run = None
    for r in df.iter_rows(named=True):
        k = int(r["kind"])
        if k == ra.EV_ADD:
            if run and run[2] == r["order"] and run[1] == r["index"]:
                run[1] = r["index"] + r["size"]
                run[3] += 1
                continue
            if run:
                lines.append(_add_line(run))
            run = [r["index"], r["index"] + r["size"], r["order"], 1]
            continue
        if run:
            lines.append(_add_line(run))
            run = None
        name = KIND_NAMES[k].removeprefix("page_cache_")
        if k in (ra.EV_SYNC_RA, ra.EV_ASYNC_RA):
            lines.append(f"{name} index={r['index']} req_count={r['req_count']} | found ra: order={r['order']} "
                         f"size={r['size']} async_size={r['async_size']} mmap_miss={r['mmap_miss']} "
                         f"prev_pos={r['prev_pos']}")
        elif k == ra.EV_RA_ORDER:
            lines.append(f"{name} index={r['index']} order={r['order']} size={r['size']} async_size={r['async_size']}")
        else:
            lines.append(f"{name} index={r['index']} nr_to_read={r['size']} lookahead_size={r['async_size']}")
    if run:
        lines.append(_add_line(run))
    return lines


def _add_line(run: list) -> str:
    a, b, o, n = run
    what = f"{n} folio{'s' if n > 1 else ''} of order {o}"
    return f"add [{a}, {b}) {what}" if b - a > 1 else f"add {a} order {o}"


def _kernel_effects(ev: Events, att: Attribution) -> pl.DataFrame:
    k = ev.kind
    sel = (k >= E_SY) & (k <= E_AD) & ((k != E_AD) | (att.owner >= 0))
    rows = np.flatnonzero(sel)
    kk = k[rows]
    V = ev.V[rows]
    idx = V[:, V_INDEX]
    order = np.select([kk == E_SY, kk == E_AS, kk == E_RO, kk == E_UN, kk == E_AD],
                      [V[:, V_B], V[:, V_B], V[:, V_A], np.zeros_like(idx), V[:, V_A]])
    size = np.select([kk == E_SY, kk == E_AS, kk == E_RO, kk == E_UN, kk == E_AD],
                     [V[:, V_C], V[:, V_C], V[:, V_B], V[:, V_A], np.left_shift(1, V[:, V_A])])
    asz = np.select([kk == E_SY, kk == E_AS, kk == E_RO, kk == E_UN, kk == E_AD],
                    [V[:, V_D], V[:, V_D], V[:, V_C], V[:, V_B], np.zeros_like(idx)])
    req = np.where((kk == E_SY) | (kk == E_AS), V[:, V_A], 0)
    mm = np.where((kk == E_SY) | (kk == E_AS), V[:, V_F], -1)
    pp = np.where((kk == E_SY) | (kk == E_AS), V[:, V_G], -1)
    rp = np.select([kk == E_SY, kk == E_AS, kk == E_RO], [V[:, V_E], V[:, V_E], V[:, V_D]], -1)
    owner = att.owner[rows]
    reqid = np.where(owner >= 0, owner, -1 - rows)   # an ra event without a request is its own group
    return pl.DataFrame({"reqid": reqid, "kind": E_TO_EV[kk], "index": idx, "order": order, "size": size,
                         "async_size": asz, "req_count": req, "ra_pages": rp, "mmap_miss": mm, "prev_pos": pp,
                         "line": ev.line[rows], "row": rows})


def _model_effects(out: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"reqid": out[:, ra.O_REQID], "kind": out[:, ra.O_KIND], "index": out[:, ra.O_INDEX],
                         "order": out[:, ra.O_ORDER], "size": out[:, ra.O_SIZE], "async_size": out[:, ra.O_ASYNC],
                         "req_count": out[:, ra.O_REQ], "ra_pages": out[:, ra.O_RA_PAGES],
                         "mmap_miss": out[:, ra.O_MMAP_MISS], "prev_pos": out[:, ra.O_PREV_POS],
                         "flags": out[:, ra.O_FLAGS]})


def compare(kernel: pl.DataFrame, model: pl.DataFrame) -> tuple[Agreement, pl.DataFrame]:
    """Pair the i-th kernel and model events of each (request, kind); count agreement."""
    key = ["reqid", "kind", "seq"]
    vals = ["index", "order", "size", "async_size"]
    kz = kernel.with_columns(pl.int_range(pl.len()).over(["reqid", "kind"]).alias("seq"))
    mz = model.with_columns(pl.int_range(pl.len()).over(["reqid", "kind"]).alias("seq"))
    j = kz.select(key + vals + ["line"]).join(mz.select(key + vals), on=key, how="full", coalesce=True,
                                              suffix="_m")
    has_k = pl.col("index").is_not_null()
    has_m = pl.col("index_m").is_not_null()
    eq = pl.lit(True)
    for v in vals:
        eq = eq & (pl.col(v) == pl.col(f"{v}_m"))
    j = j.with_columns(has_k.alias("has_k"), has_m.alias("has_m"),
                       (has_k & has_m & eq).fill_null(False).alias("exact"))
    by_kind = {}
    g = j.group_by("kind").agg(pl.len().alias("events"), pl.col("exact").sum().alias("exact"),
                               pl.col("has_k").sum().alias("kernel"), pl.col("has_m").sum().alias("model"),
                               (pl.col("has_k") & ~pl.col("has_m")).sum().alias("missing"),
                               (~pl.col("has_k") & pl.col("has_m")).sum().alias("extra"),
                               (pl.col("has_k") & pl.col("has_m") & ~pl.col("exact")).sum().alias("differ"))
    got = {int(r["kind"]): r for r in g.iter_rows(named=True)}
    for code, name in enumerate(KIND_NAMES):
        r = got.get(code)
        by_kind[name] = KindAgreement(**{c: int(r[c]) for c in ("events", "exact", "kernel", "model", "missing",
                                                                 "extra", "differ")}) if r else KindAgreement()
    return Agreement(by_kind), j


def _classes(j: pl.DataFrame, ev: Events) -> tuple[Counter, list[int], int]:
    """Divergence classes: per diverging request, its kind, the first event that differs
    (by kind) and how (missing / extra / which fields differ)."""
    bad = j.filter(~pl.col("exact")).sort(["reqid", "kind", "seq"])
    if bad.height == 0:
        return Counter(), [], 0
    first = bad.group_by("reqid", maintain_order=True).first()
    cls: Counter = Counter()
    rows = []
    for r in first.iter_rows(named=True):
        rid = int(r["reqid"])
        rk = E_NAMES[int(ev.kind[rid])].removeprefix("mm_filemap_") if rid >= 0 else "no request"
        kname = KIND_NAMES[int(r["kind"])].removeprefix("page_cache_").removeprefix("mm_filemap_")
        if not r["has_m"]:
            how = "missing"
        elif not r["has_k"]:
            how = "extra"
        else:
            diff = [v for v in ("index", "order", "size", "async_size") if r[v] != r[f"{v}_m"]]
            how = "differs:" + ",".join(diff)
        cls[f"{rk}: {kname} {how}"] += 1
        if rid >= 0:
            rows.append(rid)
    return cls, sorted(rows), first.height


# ------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------
def _grow_pool(pc: PageCache, nodes: int) -> None:
    pc.pool.supply(max(nodes, 2 * pc.pool.free_count))


def _ctx_for(n_expected: int) -> ra.RaCtx:
    return ra.new_ctx(max(1 << 16, int(1.5 * n_expected) + 8192), 1 << 15)


def _setup_files(ev: Events, meta: dict, S: fm.PageCacheArrays, default_ra_pages: int) -> ra.RaArrays:
    nfiles = len(meta["files"])
    R = ra.new_ra_arrays(nfiles)
    R.prev_pos[:] = -1
    nm = max(1, meta["nmappings"])
    R.mapping[:nfiles] = meta["files"] % nm
    # ra_pages: the file's first readahead event; else the device's most common value
    k = ev.kind
    has = (k == E_SY) | (k == E_AS) | (k == E_RO)
    rp = np.where(k == E_RO, ev.V[:, V_D], ev.V[:, V_E])
    rows = np.flatnonzero(has)
    dev_of_map = meta["mappings"][:, 0] if nm else np.zeros(0, np.int64)
    dev_default: dict[int, int] = {}
    if rows.size:
        vals, cnt = np.unique(np.stack([dev_of_map[ev.mapping[rows]], rp[rows]], axis=1), axis=0, return_counts=True)
        for (d, v), _c in sorted(zip(map(tuple, vals), cnt, strict=True), key=lambda t: -t[1]):
            dev_default.setdefault(int(d), int(v))
    R.ra_pages[:nfiles] = [dev_default.get(int(dev_of_map[m]), default_ra_pages) for m in R.mapping[:nfiles]]
    if rows.size:
        f_rows = ev.file[rows]
        uniq, first_pos = np.unique(f_rows, return_index=True)
        R.ra_pages[uniq] = rp[rows[first_pos]]
    return R


def _isize_pages(ev: Events, nmappings: int) -> np.ndarray:
    k = ev.kind
    end = np.zeros(len(k), np.int64)
    ad = (k == E_AD) | (k == E_DE)
    end[ad] = ev.V[ad, V_INDEX] + np.left_shift(1, ev.V[ad, V_A])
    rq = (k == E_GP) | (k == E_FA)
    end[rq] = ev.V[rq, V_INDEX] + 1
    mp = k == E_MP
    end[mp] = ev.V[mp, V_A]
    un = k == E_UN   # do_page_cache_ra clamps its window to EOF
    end[un] = ev.V[un, V_INDEX] + ev.V[un, V_A]
    out = np.zeros(max(1, nmappings), np.int64)
    np.maximum.at(out, ev.mapping, end)
    return out


def _prescan(ev: Events, att: Attribution, nmap: int, isize: np.ndarray, max_order: int, npids: int,
             windows: bool) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Run :func:`prescan_nb` to the end (growing the pool as needed); ``windows`` False
    ignores what kernel readahead windows skipped.  Returns (seeds, generation of each
    event, pages of unknown order, extra generations per mapping)."""
    pc = _new_cache(nmap, isize, max_order)
    seeds = np.zeros((1 << 14, 4), np.int64)
    pos = 0
    nseed = 0
    n = len(ev.kind)
    gen = np.zeros(n, np.int64)
    ngen = np.zeros(max(1, nmap), np.int64)
    win = np.full((npids, 3), -1, np.int64)
    while pos < n:
        pos, nseed = prescan_nb(pc.pool.arrays, pc.pool.heads, pc.S, ev.kind, ev.pid, ev.mapping, ev.V, att.owner,
                                att.present, seeds, gen, ngen, win, bool(windows), np.int64(pos), np.int64(nseed),
                                np.int64(1024), np.int64(4096))
        if pos < n:
            _grow_pool(pc, 4096)
            pc.reserve(4096, 1 << 14)
            if nseed >= seeds.shape[0]:
                seeds = np.concatenate([seeds, np.zeros_like(seeds)])
    n_unknown = int((seeds[:nseed, 2] < 0).sum())
    return _resolve_seeds(seeds[:nseed]), gen, n_unknown, ngen


def _vma_inputs(ev: Events, att: Attribution, meta: dict) -> np.ndarray:
    """(vm_flags, vm_start, vm_end) of each fault's VMA, as far as the capture shows it.

    The trace names no VMA.  A fault whose sync readahead the kernel ran through the
    VM_EXEC branch (``ra_order`` at the fault index with ``async_size`` 0) was in an
    executable mapping; if that window was cut short of ``ra_pages``, it ended at the VMA's
    end.  ``VM_HUGEPAGE`` shows as an ``ra_order`` of PMD order at the PMD-aligned index,
    ``VM_SEQ_READ`` as a sync readahead of ``ra_pages``.  Every other fault: an ordinary
    read-only mapping, bounds unknown (unbounded)."""
    n = len(ev.kind)
    vma = np.zeros((n, 3), np.int64)
    vma[:, 2] = 1 << 50
    k = ev.kind
    rows = np.flatnonzero(((k == E_RO) | (k == E_SY)) & (att.owner >= 0))
    if rows.size == 0:
        return vma
    req = att.owner[rows]
    isf = ev.kind[req] == E_FA
    rows, req = rows[isf], req[isf]
    # the first readahead root of each fault
    _, first = np.unique(req, return_index=True)
    rows, req = rows[first], req[first]
    fidx = ev.V[req, V_INDEX]
    V = ev.V[rows]
    ro = ev.kind[rows] == E_RO
    hp = ro & (V[:, V_A] == ra.HPAGE_PMD_ORDER) & (V[:, V_INDEX] == (fidx & ~((1 << ra.HPAGE_PMD_ORDER) - 1)))
    ex = ro & ~hp & (V[:, V_C] == 0) & (V[:, V_INDEX] <= fidx)
    sq = ev.kind[rows] == E_SY
    vma[req[hp], 0] = ra.VM_HUGEPAGE
    vma[req[sq], 0] = ra.VM_SEQ_READ
    vma[req[ex], 0] = ra.VM_EXEC
    # the exec window starts at max(fault index, vm_start) and ends at min(start + ra_pages, vm_end)
    start = V[:, V_INDEX]
    vma[req[ex], 1] = np.where(start[ex] > fidx[ex], start[ex], 0)
    cut = ex & (V[:, V_B] < V[:, V_D])
    vma[req[cut], 2] = start[cut] + V[cut, V_B]
    return vma


def _isize_by_generation(ev: Events, gen: np.ndarray, nmappings: int) -> tuple[np.ndarray, np.ndarray]:
    """i_size of each file generation: the largest page any of its events shows.  Returns
    (pages of every mapping's first generation, i_size in bytes to set at each event that
    starts a generation, -1 elsewhere)."""
    k = ev.kind
    end = np.zeros(len(k), np.int64)
    ad = (k == E_AD) | (k == E_DE)
    end[ad] = ev.V[ad, V_INDEX] + np.left_shift(1, ev.V[ad, V_A])
    rq = (k == E_GP) | (k == E_FA)
    end[rq] = ev.V[rq, V_INDEX] + 1
    mp = k == E_MP
    end[mp] = ev.V[mp, V_A]
    un = k == E_UN   # do_page_cache_ra clamps its window to EOF
    end[un] = ev.V[un, V_INDEX] + ev.V[un, V_A]
    key = ev.mapping * (int(gen.max(initial=0)) + 1) + gen
    uk, inv = np.unique(key, return_inverse=True)
    size = np.zeros(len(uk), np.int64)
    np.maximum.at(size, inv, end)
    pages = size[inv]
    first = np.full(max(1, nmappings), 0, np.int64)
    g0 = gen == 0
    np.maximum.at(first, ev.mapping[g0], pages[g0])
    isize_set = np.full(len(k), -1, np.int64)
    _, first_rows = np.unique(key, return_index=True)
    later = first_rows[gen[first_rows] > 0]
    isize_set[later] = pages[later] << ra.PAGE_SHIFT
    return first, isize_set


def _new_cache(nmappings: int, isize_pages: np.ndarray, max_order: int) -> PageCache:
    pc = PageCache(folios=1 << 16, mappings=max(1, nmappings))
    for m in range(nmappings):
        pc.new_mapping(i_size=int(isize_pages[m]) << ra.PAGE_SHIFT, max_order=max_order)
    pc.reserve(4096, 1 << 14)
    return pc


def validate_readahead(path: str | Path, *, modes: tuple[str, ...] = MODES, max_order: int = fm.MAX_PAGECACHE_ORDER,
                       default_ra_pages: int = 32, divergences: int = 20, cache: bool = True,
                       trace: FolioTrace | None = None) -> ReadaheadValidation:
    """Run the readahead model over a capture's read requests and compare (see the module doc).

    ``path``: a trace file (a capture's ``trace.txt.zst``, its ``formats/`` beside it) or a
    capture directory.  ``max_order``: the mappings' max folio order (ext4 regular files in
    6.18: MAX_PAGECACHE_ORDER = 9; 0 = no large folios).  ``divergences``: how many diverging
    requests to keep for display."""
    for mode in modes:
        if mode not in MODES:
            raise FormatError(f"unknown validation mode {mode!r} (modes: {', '.join(MODES)})")
    t0 = time.perf_counter()
    p = Path(path)
    if p.is_dir():
        p = p / "trace.txt.zst"
    if trace is None:
        trace = read_folio_events(p, kinds=PAGECACHE_KINDS, cache=cache)
    t_read = time.perf_counter() - t0
    t1 = time.perf_counter()
    ev, meta = _frames_to_events(trace)
    npids = max(1, len(meta["pids"]))
    att = Attribution(*attribute_nb(ev.kind, ev.pid, ev.mapping, ev.V, npids))
    nmap = meta["nmappings"]
    isize = _isize_pages(ev, nmap)   # the prescan's replay needs no exact size
    # processing order: a get_pages runs where its first kernel event is
    key = ev.line * 2
    gp = np.flatnonzero((ev.kind == E_GP) & (att.first >= 0))
    key[gp] = ev.line[att.first[gp]] * 2 - 1
    order = np.argsort(key, kind="stable").astype(np.int64)
    t_attr = time.perf_counter() - t1
    # prescan: pre-capture folios and file generations
    t2 = time.perf_counter()
    seeds, gen, n_unknown, ngen = _prescan(ev, att, nmap, isize, max_order, npids, True)
    seeds_direct = _prescan(ev, att, nmap, isize, max_order, npids, False)[0] if "direct" in modes else seeds
    isize_init, isize_set = _isize_by_generation(ev, gen, nmap)
    vma = _vma_inputs(ev, att, meta)
    n = len(ev.kind)
    t_pre = time.perf_counter() - t2
    stats = {"lines": trace.lines, "requests": {E_NAMES[c]: int((ev.kind == c).sum()) for c in (E_GP, E_FA, E_MP)},
             "kernel_events": {E_NAMES[c]: int((ev.kind == c).sum()) for c in range(E_SY, E_DE + 1)},
             "kernel_adds_without_request": int(((ev.kind == E_AD) & (att.owner < 0)).sum()),
             "kernel_ra_events_without_request": int(((ev.kind >= E_SY) & (ev.kind <= E_UN) & (att.owner < 0)).sum()),
             "mappings": nmap, "files": len(meta["files"]), "seeded_folios": int(seeds.shape[0]),
             "seeded_by_source": {SEED_NAMES[k]: int((seeds[:, 3] == k).sum()) for k in range(3)},
             "seeded_folios_direct": int(seeds_direct.shape[0]),
             "seeded_pages_order_unknown": n_unknown,
             "file_generations": int(ngen.sum()) + nmap,
             "max_folio_order": max_order}
    stats["exec_vma_faults"] = int((vma[:, 0] & ra.VM_EXEC != 0).sum())
    stats["vma_end_known"] = int(((vma[:, 0] & ra.VM_EXEC != 0) & (vma[:, 2] < (1 << 50))).sum())
    vma0 = np.zeros_like(vma)
    vma0[:, 2] = 1 << 50
    kernel = _kernel_effects(ev, att)
    runs = {}
    secs = {"read": t_read, "attribute": t_attr, "prescan": t_pre}
    for mode in modes:
        t3 = time.perf_counter()
        pc = _new_cache(nmap, isize_init, max_order)
        S0 = pc.S
        use = seeds if mode != "direct" else seeds_direct
        for m, idx, o, _src in use:
            fm.filemap_add_folio_nb(pc.pool.arrays, pc.pool.heads, S0, np.int64(m), np.int64(idx), np.int64(o),
                                    np.int64(-1), np.int64(PG_UPTODATE))
            if pc.pool.free_count < 256:
                _grow_pool(pc, 4096)
            if pc.free_folio_rows() < 64:
                pc.reserve(4096, 1 << 14)
                S0 = pc.S
        R = _setup_files(ev, meta, pc.S, default_ra_pages)
        ctx = _ctx_for(kernel.height)
        pend_file = np.full(npids, -1, np.int64)
        waited = np.zeros(n, np.bool_)
        pend_end = np.zeros(npids, np.int64)
        pos = 0
        outs = []
        while pos < n:
            pos = run_nb(pc.pool.arrays, pc.pool.heads, pc.S, R, ctx, order, ev.kind, ev.pid, ev.mapping, ev.file,
                         ev.V, att.owner, att.flags, att.cont, isize_set, vma if mode != "plain_vma" else vma0,
                         waited, pend_file, pend_end, np.int64(pos),
                         mode != "raw", np.int64(1024), np.int64(8192), np.int64(16384))
            if ctx.ctl[ra.CT_NOMEM] or ctx.ctl[ra.CT_OVERFLOW]:
                raise FormatError("readahead validation: the page-cache model ran out of room (internal error)")
            if pos < n:
                if ctx.out.shape[0] - ctx.ctl[ra.CT_N] < 16384:
                    outs.append(ctx.out[: ctx.ctl[ra.CT_N]].copy())
                    ctx.ctl[ra.CT_N] = 0
                if pc.pool.free_count < 1024:
                    _grow_pool(pc, 4096)
                if pc.free_folio_rows() < 8192:
                    pc.reserve(1024, 1 << 15)
        outs.append(ctx.out[: ctx.ctl[ra.CT_N]].copy())
        model = _model_effects(np.concatenate(outs) if outs else np.zeros((0, ra.O_LEN), np.int64))
        t_run = time.perf_counter() - t3
        t4 = time.perf_counter()
        agree, joined = compare(kernel, model)
        cls, rows, ndiv = _classes(joined, ev)
        agree.classes = cls
        agree.requests = int(((ev.kind == E_GP) | (ev.kind == E_FA)).sum())
        agree.requests_diverging = ndiv
        st = {"folios_end": pc.nr_folios, "xa_nodes_end": pc.xa_nodes,
              "check": pc.check() if nmap < 20000 else "skipped"}
        runs[mode] = ReadaheadRun(str(p), mode, agree, kernel, model, rows[:max(0, divergences)], st, t_run)
        secs[f"run_{mode}"] = t_run
        secs[f"compare_{mode}"] = time.perf_counter() - t4
    return ReadaheadValidation(str(p), runs, ev, att, meta, trace, stats, secs)
