"""Software prefetch for numba kernels: ``prefetch(array, index)``, ``prefetch_page(state, pfn)``.

A modelled machine's metadata is far larger than the host's caches (a 16 GiB machine has a
256 MiB 8-word memmap), and a workload that frees random pages misses DRAM on almost every
struct page it touches.  A real kernel rarely pays those misses on the free path: the caller
of ``put_page()`` has just used the page, so its struct page is hot.  Where memdesc knows an
address ahead of use (the next victim of a churn, the next pages a pcp drain will merge) it
issues a prefetch, as mm/page_alloc.c's ``prefetch_buddy()`` did in free_pcppages_bulk
(added in 2018, dropped in 2022).  A prefetch is a hint: results are identical with and without it; under
``NUMBA_DISABLE_JIT=1`` both functions do nothing.

Which array holds a design's per-page words is part of the design contract: the design
declares it (``Design.memmap_field``) and registering the design records it on the state's
struct type, where :func:`prefetch_page` reads it.  A state without it is a typing error
naming the design, never a silently lost prefetch.
"""

from __future__ import annotations

from memdesc._numba import JIT_DISABLED

if JIT_DISABLED:

    def prefetch(arr, idx):
        """No-op without the JIT."""

    def prefetch_page(st, pfn):
        """No-op without the JIT."""

else:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.core.errors import TypingError
    from numba.extending import intrinsic, overload

    @intrinsic
    def prefetch(typingctx, arr, idx):
        """Prefetch the cache line of ``arr[idx]`` (row ``idx`` of a 2-D array) for writing."""
        if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
            return None
        sig = types.void(arr, idx)

        def codegen(context, builder, signature, args):
            arrty, idxty = signature.args
            ary = context.make_array(arrty)(context, builder, args[0])
            i = context.cast(builder, args[1], idxty, types.intp)
            zero = ir.Constant(i.type, 0)
            ptr = cgutils.get_item_pointer2(context, builder, ary.data, cgutils.unpack_tuple(builder, ary.shape),
                                            cgutils.unpack_tuple(builder, ary.strides), arrty.layout,
                                            [i] + [zero] * (arrty.ndim - 1), wraparound=False, boundscheck=False)
            i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            # rw = 1 (write: the kernels update the line), locality 3 (keep in all levels), data cache
            builder.call(fn, [i8p, ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen

    def prefetch_page(st, pfn):
        """Prefetch the struct page (memmap row) of ``pfn`` in any design's state."""

    @overload(prefetch_page)
    def _prefetch_page_impl(st, pfn):
        name = getattr(type(st), "memmap_field", None)
        fields = dict(getattr(st, "field_dict", {}) or {})
        if name is None or name not in fields:
            raise TypingError(f"prefetch_page: {type(st).__name__} declares no memmap_field (Design.memmap_field, "
                              f"recorded by register_design) naming one of its fields")
        src = f"def impl(st, pfn):\n    if 0 <= pfn < st.{name}.shape[0]:\n        prefetch(st.{name}, pfn)\n"
        ns = {"prefetch": prefetch}
        exec(src, ns)  # noqa: S102  (fixed template; name is a declared field)
        return ns["impl"]
