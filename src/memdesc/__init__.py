"""memdesc — executable models of Linux physical-memory management designs.

Three page-allocator designs behind one interface, on a modelled machine:

* ``linux``  — today's list buddy allocator, 64-byte ``struct page`` (8 words);
* ``radix``  — Kent Overstreet's radix-tree free lists, 2-word ``struct page``;
* ``vmem``   — Matthew Wilcox's vmem-based allocator, 1-word memdesc.

Importing this package configures numba's on-disk compile cache (see
:mod:`memdesc._numba`) before numba itself is imported.
"""

from memdesc import _numba  # noqa: F401  (must run before any numba import)

__version__ = "0.1.0"
