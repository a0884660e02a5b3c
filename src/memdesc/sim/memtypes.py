"""What every allocation of a replayed trace *is*: its memdesc type, and how well that agrees
with the real machine.

Theory
------
A kmem trace says where pages were allocated and with which gfp, not what they became.
Typed replay gives each ``mm_page_alloc`` a memdesc type from the best source there is:

1. **Folio-level events** of the same pages (the ``files``, ``mthp``, ``reclaim`` and
   ``compaction`` captures): ``mm_filemap_add_to_page_cache`` / ``_delete_`` name a file
   folio by its pfn (with inode, index and order); ``mm_lru_insertion``'s flags tell an anon
   folio (``a``) from a file one (``f``).  An event applies to the allocation live at its pfn
   when it happens (the allocation precedes it in the trace: the page is allocated, then
   added to the page cache or the LRU); a page-cache add wins over an LRU insertion.
2. Otherwise **the gfp/order classifier** (:func:`memdesc.mm.folio.classify_allocation`,
   rules in ``CLASSIFIER_RULES``): how the kernel's callers build their gfp masks.

:func:`allocation_types` makes both passes over the events in trace order (one numba
loop: the kmem and folio-level events merged by line number) and also returns, per pfn,
the allocation event that holds the page at the end of the trace (-1: none).

**Measuring the types** (:func:`type_agreement`).  For every page allocated during the
capture and still allocated at its end, the model's type (mapped to the classes
/proc/kpageflags can show: file, anon, slab, pgtable, other -- bare pages, netmem, zsmalloc
and percpu read as flagless ``other``) is set against the class of that pfn in
``after.kpageflags`` (:class:`memdesc.trace.kpage.PageClass`): a confusion matrix over pages.
The dumps are read about a second after tracing stops, so pages freed in between read as
free or other (pcp): those disagreements are the kernel's, not the classifier's, and show in
the matrix's ``free`` column (``not_free_in_dump`` gives the figures without the pages the
dump shows free; pcp pages cannot be told from other flagless pages).  On the ``reclaim``
capture they are most of the disagreement: anon folios of processes that kept running
(another pytest, a tokio runtime) allocated in the last second of the trace -- their
``mm_lru_insertion`` says anon -- and freed before the dump.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from memdesc._numba import njit
from memdesc.mm import folio as F
from memdesc.mm.memmap import MD_ANON, MD_FILE, MD_KSM, MD_PAGETABLE, MD_SLAB, MD_TYPE_MASK
from memdesc.trace import events as E
from memdesc.trace import folio_events as fe
from memdesc.trace.kpage import CLASS_NAMES, PageClass

#: folio-level event codes of :func:`allocation_types`' folio arrays
FE_FILEMAP_ADD, FE_FILEMAP_DELETE, FE_LRU_INSERTION = range(3)
#: mm_lru_insertion flag bit: the folio is anon (include/trace/events/pagemap.h PAGEMAP_ANONYMOUS)
PAGEMAP_ANONYMOUS = 0x0002
#: mm_lru_insertion (pagemap.h): pfn, lru list and the PAGEMAP_* flags (printed as six letters)
LRU_INSERTION = fe.EventKind("mm_lru_insertion", (("pfn", "pfn"), ("lru", "lru"), ("flags", "flags")))
#: the folio-level events that type allocations, in FE_* order
TYPE_EVENT_KINDS = (fe.EVENT_KINDS[fe.KIND_BY_NAME["mm_filemap_add_to_page_cache"]],
                    fe.EVENT_KINDS[fe.KIND_BY_NAME["mm_filemap_delete_from_page_cache"]], LRU_INSERTION)
#: where a type came from
SRC_CLASSIFIER, SRC_FILEMAP, SRC_LRU = range(3)
SOURCE_NAMES = ("classifier", "filemap", "lru_insertion")


@njit
def _types_pass(ev, pfn, order, gfp, line, fkind, fpfn, fflags, fline, npages, types, source, holder):
    """types[i] / source[i] for every alloc event i; holder[p]: the alloc event holding page p
    at the end (-1).  Events are merged by line number (kmem first on a tie)."""
    n = ev.shape[0]
    m = fkind.shape[0]
    for i in range(n):
        if ev[i] == E.ALLOC:
            types[i] = F.classify_allocation(np.int64(gfp[i]), np.int64(order[i]))
            source[i] = SRC_CLASSIFIER
        else:
            types[i] = -1
            source[i] = -1
    i = 0
    j = 0
    while i < n or j < m:
        if j >= m or (i < n and line[i] <= fline[j]):
            p = np.int64(pfn[i])
            o = np.int64(order[i])
            if p >= 0 and 0 <= o <= 20 and p + (np.int64(1) << o) <= npages:
                e = ev[i]
                if e == E.ALLOC:
                    for q in range(p, p + (np.int64(1) << o)):
                        holder[q] = i
                elif e == E.FREE:
                    for q in range(p, p + (np.int64(1) << o)):
                        holder[q] = -1
            i += 1
        else:
            p = np.int64(fpfn[j])
            if 0 <= p < npages:
                h = holder[p]
                if h >= 0:
                    k = fkind[j]
                    if k == FE_FILEMAP_ADD or k == FE_FILEMAP_DELETE:
                        types[h] = MD_FILE
                        source[h] = SRC_FILEMAP
                    elif k == FE_LRU_INSERTION and source[h] != SRC_FILEMAP:
                        types[h] = MD_ANON if (fflags[j] & PAGEMAP_ANONYMOUS) else MD_FILE
                        source[h] = SRC_LRU
            j += 1


def allocation_types(cols: dict[str, np.ndarray], npages: int,
                     folio: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per event: memdesc type (alloc events; -1 others) and its source; per pfn (< npages): the
    alloc event holding it at the end of the trace (-1).

    ``cols``: the kmem columns (event, pfn, order, gfp, line); ``folio``: folio-level events
    (``kind`` FE_*, ``pfn``, ``flags``, ``line``) or None."""
    n = cols["event"].shape[0]
    empty = np.zeros(0, np.int64)
    fk = folio["kind"].astype(np.int64) if folio else empty
    fp = folio["pfn"].astype(np.int64) if folio else empty
    ff = folio["flags"].astype(np.int64) if folio else empty
    fl = folio["line"].astype(np.int64) if folio else empty
    if fl.shape[0] > 1 and (np.diff(fl) < 0).any():
        o = np.argsort(fl, kind="stable")
        fk, fp, ff, fl = fk[o], fp[o], ff[o], fl[o]
    types = np.empty(n, np.int64)
    source = np.empty(n, np.int8)
    holder = np.full(max(int(npages), 1), -1, np.int64)
    _types_pass(cols["event"], cols["pfn"], cols["order"], cols["gfp"], cols["line"].astype(np.int64), fk, fp, ff,
                fl, np.int64(npages), types, source, holder)
    return types, source, holder


def folio_type_events(trace: str | Path, formats_dir: str | Path | None = None) -> dict[str, np.ndarray] | None:
    """The folio-level events that type allocations (page-cache add/delete, LRU insertion) of a
    trace, as :func:`allocation_types` takes them; None when the capture recorded none (no
    ``formats/`` with their format files: a kmem-only capture)."""
    p = Path(trace)
    fdir = Path(formats_dir) if formats_dir is not None else p.parent / "formats"
    if not all((fdir / f"{k.name}.format").is_file() for k in TYPE_EVENT_KINDS):
        return None
    res = fe.read_folio_events(p, kinds=list(TYPE_EVENT_KINDS), formats_dir=fdir)
    parts = []
    for code, k in enumerate(TYPE_EVENT_KINDS):
        df = res.events(k.name)
        flags = df["flags"] if "flags" in df.columns else pl.Series("flags", [0] * df.height, pl.Int64)
        parts.append(pl.DataFrame({"line": df["line"].cast(pl.Int64), "pfn": df["pfn"].cast(pl.Int64),
                                   "flags": flags.cast(pl.Int64),
                                   "kind": pl.Series("kind", [code] * df.height, pl.Int64)}))
    allf = pl.concat(parts).sort("line")
    if allf.height == 0:
        return None
    return {c: allf[c].to_numpy() for c in ("kind", "pfn", "flags", "line")}


# ------------------------------------------------------------------ agreement with kpageflags

#: the kpageflags class a memdesc type shows as (everything else: a flagless page, ``other``)
TYPE_CLASS = {MD_FILE: PageClass.FILE, MD_ANON: PageClass.ANON, MD_KSM: PageClass.ANON, MD_SLAB: PageClass.SLAB,
              MD_PAGETABLE: PageClass.PGTABLE}
#: the model's side of the matrix
MODEL_CLASSES = ("file", "anon", "slab", "pgtable", "other")


def _model_class(t: np.ndarray) -> np.ndarray:
    base = t & MD_TYPE_MASK
    out = np.full(t.shape, int(PageClass.OTHER), np.int64)
    for mt, pc in TYPE_CLASS.items():
        out[base == mt] = int(pc)
    return out


def type_agreement(types: np.ndarray, holder: np.ndarray, after_class: np.ndarray) -> dict:
    """The model's type of every page allocated during the capture and still allocated at its end,
    against its class in after.kpageflags: ``{pages, agree, fraction, matrix}`` with
    ``matrix[model class][kpageflags class] = pages`` (JSON ``type_agreement``)."""
    n = min(holder.shape[0], after_class.shape[0])
    h = holder[:n]
    live = np.flatnonzero(h >= 0)
    model = _model_class(types[h[live]])
    real = after_class[live].astype(np.int64)
    pages = int(live.shape[0])
    agree = int((model == real).sum())
    matrix: dict[str, dict[str, int]] = {}
    for name in MODEL_CLASSES:
        pc = int(PageClass[name.upper()])
        sel = real[model == pc]
        if sel.size:
            counts = np.bincount(sel, minlength=len(CLASS_NAMES))
            matrix[name] = {CLASS_NAMES[k]: int(c) for k, c in enumerate(counts) if c}
    # pages the dump shows free were freed between the end of tracing and the dump (the trace
    # holds them allocated): the same figures over the pages the dump still shows allocated
    held = real != int(PageClass.FREE)
    nh = int(held.sum())
    ah = int((model[held] == real[held]).sum())
    return {"pages": pages, "agree": agree, "fraction": agree / pages if pages else None, "matrix": matrix,
            "not_free_in_dump": {"pages": nh, "agree": ah, "fraction": ah / nh if nh else None}}


def type_sources(types: np.ndarray, source: np.ndarray) -> dict[str, dict[str, int]]:
    """Allocation events per type name and source (classifier, filemap, lru_insertion)."""
    out: dict[str, dict[str, int]] = {}
    alloc = source >= 0
    for s_id, s_name in enumerate(SOURCE_NAMES):
        sel = types[alloc & (source == s_id)]
        if not sel.size:
            continue
        names, counts = np.unique(sel & MD_TYPE_MASK, return_counts=True)
        out[s_name] = {F.TYPE_NAMES.get(int(t), str(int(t))): int(c) for t, c in zip(names, counts, strict=True)}
    return out


__all__ = ["FE_FILEMAP_ADD", "FE_FILEMAP_DELETE", "FE_LRU_INSERTION", "LRU_INSERTION", "MODEL_CLASSES",
           "PAGEMAP_ANONYMOUS", "allocation_types", "folio_type_events", "type_agreement", "type_sources"]
