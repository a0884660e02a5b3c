"""State structs: numba StructRefs that Python code sees as ordinary objects.

Theory
------
Allocator state is a set of numpy arrays.  Passing them to numba functions as a tuple
costs an incref/decref and a dozen scalar arguments *per array per call* (~15 ns each:
with thirty arrays a trivial helper call cost 400 ns).  A StructRef is passed as one
pointer, so a helper call costs a few nanoseconds.  Each state is declared once as a
pair of classes:

.. code-block:: python

    class ZoneStateType(StructType): pass          # the numba type (module level, so
    class ZoneState(StructProxy):                   # compiled kernels can be cached)
        _fields = ("z_start", "z_end", ...)
    define_struct(ZoneState, ZoneStateType)

``ZoneState(z_start=..., ...)`` builds the struct; its fields are also plain Python
attributes holding the *same* numpy arrays, so Python code reads and writes them
directly.  Kernels never rebind a field.  Under ``NUMBA_DISABLE_JIT=1`` the class is a
plain Python object with the same attributes, and kernels run on it unchanged.

Arrays are stored in the struct *borrowed*: the same data, but without a reference
count (a null meminfo), because the Python object keeps the arrays alive for as long
as the struct exists.  Without this, every access to a field from compiled code costs
an atomic increment and decrement, which measured ~30 % of a page allocation.  Kernels
must therefore never return a state array to Python.
"""

from __future__ import annotations

from numba import njit, types
from numba.core import cgutils
from numba.experimental import structref
from numba.extending import intrinsic, overload

from memdesc._numba import JIT_DISABLED
from memdesc.errors import ConfigError


class StructType(types.StructRef):
    """Base of memdesc's numba struct types."""

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class StructProxy(structref.StructRefProxy):
    """Base of the Python side of a state struct (see the module docstring)."""

    _fields: tuple[str, ...] = ()

    def __new__(cls, *args, **kwargs):
        if kwargs:
            if args:
                raise ConfigError(f"{cls.__name__}: pass fields either by position or by name")
            missing = [f for f in cls._fields if f not in kwargs]
            extra = [k for k in kwargs if k not in cls._fields]
            if missing or extra:
                raise ConfigError(f"{cls.__name__}: missing fields {missing}, unknown fields {extra}")
            args = tuple(kwargs[f] for f in cls._fields)
        if len(args) != len(cls._fields):
            raise ConfigError(f"{cls.__name__} takes {len(cls._fields)} fields, got {len(args)}")
        if JIT_DISABLED:
            obj = object.__new__(cls)
        else:
            obj = structref.StructRefProxy.__new__(cls, *args)
        obj.__dict__.update(zip(cls._fields, args, strict=True))
        return obj

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {', '.join(self._fields)}>"


@intrinsic
def _borrow_array(typingctx, arr):
    """The same array without a reference: null meminfo and parent."""

    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, value=args[0])
        out = context.make_array(sig.return_type)(context, builder)
        for name in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(out, name, getattr(src, name))
        out.meminfo = cgutils.get_null_value(out.meminfo.type)
        out.parent = cgutils.get_null_value(out.parent.type)
        return out._getvalue()

    return arr(arr), codegen


def borrow(x):
    return x


@overload(borrow)
def _ol_borrow(x):
    if isinstance(x, types.Array):
        return lambda x: _borrow_array(x)
    return lambda x: x


def define_struct(proxy_cls: type[StructProxy], type_cls: type[StructType]) -> None:
    """Make ``proxy_cls`` the Python face of numba struct type ``type_cls``."""
    proxy_cls._numba_type_class = type_cls
    if JIT_DISABLED:
        return
    structref.register(type_cls)
    structref.define_proxy(proxy_cls, type_cls, list(proxy_cls._fields))
    # constructor storing borrowed arrays (see the module docstring)
    params = ", ".join(f"f{i}" for i in range(len(proxy_cls._fields)))
    body = ", ".join(f"borrow(f{i})" for i in range(len(proxy_cls._fields)))
    ns = {"borrow": borrow, "cls": proxy_cls}
    exec(f"def ctor({params}):\n    return cls({body})\n", ns)  # noqa: S102 - fixed template
    proxy_cls._StructRefProxy__numba_ctor = njit(ns["ctor"])
