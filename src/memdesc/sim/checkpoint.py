"""Checkpoints of long runs (replay, churn): where and when a run saves itself.

Theory
------
A run is a numba loop over events (replay) or operations (churn) whose every step depends
only on the machine's state arrays and the loop's own arrays (page locations, the replay
map, counters, the workload's random-number state).  Saving both at an event boundary
(:meth:`memdesc.mm.machine.Machine.save`, the loop's arrays as ``extra_arrays``) and
loading them later continues the run exactly: the loops do not depend on how they are cut
into chunks, so a resumed run ends bit-identical to an uninterrupted one (the conformance
suite checks it for every design, tests/test_conformance.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from memdesc.errors import ConfigError


@dataclass
class Checkpoints:
    """Where a long run saves itself: ``path``, once after ``at`` events (or operations)
    and/or after every ``every`` of them (the file is rewritten atomically each time).
    Shared by replay and churn."""

    path: Path | None = None
    at: int = 0
    every: int = 0

    def __post_init__(self) -> None:
        if self.at < 0 or self.every < 0:
            raise ConfigError(f"--checkpoint-at and --checkpoint-every must be >= 0, got {self.at}, {self.every}")
        if (self.at or self.every) and self.path is None:
            raise ConfigError("--checkpoint-at/--checkpoint-every need --checkpoint PATH")
        if self.path is not None and not (self.at or self.every):
            raise ConfigError("--checkpoint PATH needs --checkpoint-at N or --checkpoint-every N (when to save)")
        if self.path is not None:
            self.path = Path(self.path)

    @property
    def active(self) -> bool:
        return self.path is not None and (self.at > 0 or self.every > 0)

    def next_stop(self, i: int, n: int) -> int:
        """The first checkpoint position after i, or n."""
        stops = [n]
        if self.at > i:
            stops.append(self.at)
        if self.every:
            stops.append((i // self.every + 1) * self.every)
        return min(stops)


__all__ = ["Checkpoints"]
