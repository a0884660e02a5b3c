"""Reference-count-free access to the arrays of a state struct, for the ``radix`` hot paths.

Theory
------
A state struct (:mod:`memdesc._struct`) stores its arrays *borrowed* (null meminfo), so
reference counting them is pointless -- but numba still emits a call of ``NRT_incref``
when an array field is read and of ``NRT_decref`` when it goes out of scope, and a
function compiled without NRT (``_nrt=False``) cannot read a struct field at all.  A
``radix`` list operation reads six arrays; those calls made it several times slower
than its actual work.

:func:`field_getter` makes an intrinsic that loads one field from the struct's payload
(the payload pointer is field 3 of the ``NRT_MemInfo``, as ``NRT_MemInfo_data_fast``
reads it) and returns it *untracked*.  Functions compiled with ``_nrt=False`` use these
getters and never touch a reference count.  Correct only because the arrays are borrowed
and the Python object keeps them alive (see memdesc._struct); never use a getter in a
function that stores the array elsewhere or returns it.  Without the JIT a getter is
plain ``getattr``.
"""

from __future__ import annotations

from memdesc._numba import JIT_DISABLED


def field_getter(name: str):
    """An njit-callable ``get(st) -> st.<name>`` that does no reference counting."""
    if JIT_DISABLED:
        def get(st):
            return getattr(st, name)
        return get

    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    meminfo_ty = ir.LiteralStructType([cgutils.intp_t, cgutils.voidptr_t, cgutils.voidptr_t, cgutils.voidptr_t,
                                       cgutils.intp_t])

    @intrinsic
    def get(typingctx, st):
        if not isinstance(st, types.StructRef) or name not in st.field_dict:
            return None
        fty = st.field_dict[name]

        def codegen(context, builder, sig, args):
            sty = sig.args[0]
            ref = cgutils.create_struct_proxy(sty)(context, builder, value=args[0])
            mi = builder.bitcast(ref.meminfo, meminfo_ty.as_pointer())
            data = builder.load(cgutils.gep_inbounds(builder, mi, 0, 3))
            valtype = sty.get_data_type()
            alloc_type = context.data_model_manager[valtype].get_value_type()
            payload = cgutils.create_struct_proxy(valtype)(context, builder,
                                                          ref=builder.bitcast(data, alloc_type.as_pointer()))
            return getattr(payload, name)

        return fty(st), codegen

    get.__name__ = f"field_{name}"
    return get
