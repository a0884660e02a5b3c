"""Page-allocator designs behind one interface (see :mod:`memdesc.mm.page_alloc.base`).

``DESIGNS`` maps a design name to its class; :func:`get_design` looks one up with a
clear error.  Adding a design = a module with a state NamedTuple, its primitives
registered in :mod:`~memdesc.mm.page_alloc.dispatch`, a :class:`~.base.Design`
subclass, and an entry here.
"""

from __future__ import annotations

from memdesc.errors import ConfigError
from memdesc.mm.page_alloc.base import BuddyDesign, Design
from memdesc.mm.page_alloc.linux import LinuxDesign
from memdesc.mm.page_alloc.setup import AllocConfig
from memdesc.mm.page_alloc.vmem import VmemDesign

DESIGNS: dict[str, type[Design]] = {
    "linux": LinuxDesign,
    "vmem": VmemDesign,
}


def get_design(name: str | type[Design]) -> type[Design]:
    if isinstance(name, type) and issubclass(name, Design):
        return name
    try:
        return DESIGNS[str(name)]
    except KeyError:
        raise ConfigError(f"unknown design {name!r}; known designs: {', '.join(DESIGNS)}") from None


__all__ = ["AllocConfig", "BuddyDesign", "DESIGNS", "Design", "LinuxDesign", "get_design"]
