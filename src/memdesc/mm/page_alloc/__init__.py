"""Page-allocator designs behind one interface (see :mod:`memdesc.mm.page_alloc.base`).

``DESIGNS`` maps a design name to its class; :func:`get_design` looks one up with a
clear error.  Adding a design = a module with a state struct, a :class:`~.base.Design`
subclass with the declared attributes of the contract, and a call of
:func:`~.base.register_design` with its primitives; then its import below.  Registering
enrols it everywhere: ``DESIGNS``, the CLI's ``--design``, the conformance suite.

Design specs
------------
Wherever a design is named (``Machine.create(design=...)``, ``--design``, snapshots,
replay) a *spec* ``NAME[:OPTIONS]`` is accepted.  ``OPTIONS`` is a comma-separated list of
``key=value`` pairs, or a bare value for the design's main option; the design class turns
them into a configured subclass with its ``with_options(**options)`` classmethod (its
``spec_key`` names the main option).  Only ``radix`` has options today::

    get_design("radix")                  # node policy consume (Kent's path)
    get_design("radix:reserve")          # the same as "radix:radix_nodes=reserve"
    Machine.create("4G", layout="i386", design="radix:reserve")
"""

from __future__ import annotations

from memdesc.errors import ConfigError
from memdesc.mm.page_alloc.base import DESIGNS, BuddyDesign, Design, register_design
from memdesc.mm.page_alloc.linux import LinuxDesign
from memdesc.mm.page_alloc.radix import RadixDesign
from memdesc.mm.page_alloc.setup import AllocConfig
from memdesc.mm.page_alloc.vmem import VmemDesign

# isort: split
# registered last: DESIGNS lists the designs in the order they were added to memdesc
from memdesc.mm.page_alloc.llfree import LLFreeDesign


def parse_design_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"radix:reserve"`` -> ``("radix", {"": "reserve"})``; ``"a:k=v,x=y"`` -> ``("a", {k: v, x: y})``."""
    name, sep, rest = str(spec).partition(":")
    opts: dict[str, str] = {}
    if sep:
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq:
                key, value = "", key
            key, value = key.strip(), value.strip()
            if not value or key in opts:
                raise ConfigError(f"design spec {spec!r}: expected NAME:VALUE or NAME:KEY=VALUE[,KEY=VALUE...]")
            opts[key] = value
    return name.strip(), opts


def get_design(name: str | type[Design]) -> type[Design]:
    """The design class for a class, a name or a spec ``NAME[:OPTIONS]`` (see the module doc)."""
    if isinstance(name, type) and issubclass(name, Design):
        return name
    base, opts = parse_design_spec(name)
    try:
        cls = DESIGNS[base]
    except KeyError:
        raise ConfigError(f"unknown design {base!r}; known designs: {', '.join(DESIGNS)}") from None
    if not opts:
        return cls
    with_options = getattr(cls, "with_options", None)
    if with_options is None:
        raise ConfigError(f"design {base!r} takes no options (got {name!r})")
    if "" in opts:
        opts[cls.spec_key] = opts.pop("")
    return with_options(**opts)


def design_variants() -> list[str]:
    """Every registered design, once per value of its main option (a design class lists them in
    ``spec_values``; ``spec_plain``: the value the bare name stands for): ``["linux", "linux:32",
    "radix:consume", "radix:reserve", "radix:host", "vmem"]`` today.
    What ``memdesc compare`` and ``memdesc sweep`` run by default, so a design added to
    ``DESIGNS`` appears there without further change."""
    out = []
    for name, cls in DESIGNS.items():
        values = tuple(getattr(cls, "spec_values", ()) or ())
        plain = getattr(cls, "spec_plain", None)  # the value the bare name stands for (linux: 64)
        out += [name if v == plain else f"{name}:{v}" for v in values] if values else [name]
    return out


def fault_injection_designs() -> tuple[str, ...]:
    """The registered designs that declare ``fault_injection`` (``--fail-descriptor-alloc``)."""
    return tuple(n for n, c in DESIGNS.items() if c.fault_injection)


def design_spec(design: str, **options: str | None) -> str:
    """A spec from a design name and options given separately (CLI flags such as
    ``--radix-nodes``); options that are None are left out.  An option the design does not
    take is an error naming the flag's design."""
    given = {k: v for k, v in options.items() if v is not None}
    if not given:
        return design
    base, opts = parse_design_spec(design)
    cls = get_design(base)
    for k in given:
        owner = k.split("_", 1)[0]
        if owner != base:
            raise ConfigError(f"--{k.replace('_', '-')} applies to the {owner} design only, not {base!r}")
    merged = {(k or getattr(cls, "spec_key", "")): v for k, v in opts.items()}
    for k, v in given.items():
        if k in merged:
            raise ConfigError(f"--{k.replace('_', '-')} given twice (also in the design spec {design!r})")
        merged[k] = v
    return f"{base}:{','.join(f'{k}={v}' for k, v in merged.items())}"


__all__ = ["AllocConfig", "BuddyDesign", "DESIGNS", "Design", "LLFreeDesign", "LinuxDesign", "RadixDesign",
           "VmemDesign", "design_spec", "design_variants", "fault_injection_designs", "get_design", "parse_design_spec",
           "register_design"]
