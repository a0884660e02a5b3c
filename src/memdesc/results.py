"""Typed results: the JSON every command writes, as pydantic models and a committed JSON Schema.

Theory
------
A result is data a script can rely on.  Each command's ``--json`` output is one model of
this module, validated before it is written (:func:`dump`), and the models' JSON Schemas
are committed under ``memdesc/data/schema/`` (``python -m memdesc.results --write``
regenerates them; ``tests/test_results.py`` checks the committed files equal the
generated ones and validates every command's output against them).

Names.  One name per counter everywhere (issue 13):

* ``ops`` {``alloc``, ``free``, ``alloc_failed``}: requests the machine served in its life;
* ``free_path_allocations``: metadata allocations made while freeing memory;
* ``free_stalls``: frees (or insertions) that could not complete for want of memory;
* ``alloc_failed_for_metadata``: allocations failed because the design could not obtain
  the metadata the allocation's later free will need (radix ``reserve`` nodes, vmem
  descriptors);

stand at the top level of a machine summary and nowhere else in it (``stats`` and
``design_stats`` drop them and the designs' internal aliases: see
:data:`memdesc.mm.machine.COUNTER_ALIASES`).  A churn reports its measured phase under the
same names (``churn`` {``alloc``, ``free``, ``alloc_failed``, ...}).

Every model allows keys beyond the declared ones (a command may add detail); the
declared keys are required and typed.  Commands that run several machines (``scenario``,
``compare``, ``sweep``) carry the summary keys per run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_DIR = Path(__file__).resolve().parent / "data" / "schema"


class Model(BaseModel):
    """Base of every result: typed declared keys, further keys allowed."""

    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------------- shared pieces


class ZoneDesc(Model):
    node: int
    name: str
    start_pfn: int
    spanned: int
    present: int
    managed: int
    direct_mapped: bool


class MachineDesc(Model):
    arch: str
    source: str
    nodes: int
    cpus: int
    max_pfn: int
    zones: list[ZoneDesc]


class MetadataBytes(Model):
    """Bytes of the design's own metadata (docs/architecture.md, "What is counted")."""

    memmap: int
    freelists: int
    descriptors: int
    total: int


class Ops(Model):
    alloc: int
    free: int
    alloc_failed: int


class MachineSummary(Model):
    """``Machine.summary()``: the keys every single-machine command writes."""

    machine: MachineDesc
    design: str
    struct_page_bytes: int
    metadata_bytes: MetadataBytes
    bookkeeping_bytes: dict[str, int]
    min_free_kbytes: int | None
    ops: Ops
    stats: dict[str, int] = Field(description="the allocator's other event counters (core.STAT_NAMES)")
    free_path_allocations: int
    free_stalls: int
    alloc_failed_for_metadata: int
    design_stats: dict[str, Any] = Field(description="design-specific figures (radix: tree nodes; vmem: "
                                                     "descriptors), without the top-level counters")
    buddyinfo: dict[str, list[int]] = Field(description='"NODE:ZONE" -> free blocks per order')
    unusable_index: dict[str, list[int]] = Field(description='"NODE:ZONE" -> unusable free space index x1000 '
                                                             "per order (debugfs extfrag/unusable_index)")
    extfrag_index: dict[str, list[int]] = Field(description='"NODE:ZONE" -> fragmentation index x1000 per '
                                                            "order (debugfs extfrag/extfrag_index)")
    free_pages: int


class CommandSummary(MachineSummary):
    seconds: float
    check: str = Field(description='"ok" or the first invariant violation, in words; "not run"')


# ---------------------------------------------------------------------- machine, churn, inspect, snapshot


class MachineCommand(CommandSummary):
    """``memdesc machine --json``."""


class ChurnRun(Model):
    """The measured phase of a churn (after the fill)."""

    pairs: int
    operations: int
    alloc: int
    free: int
    alloc_failed: int
    free_errors: int
    fill_seconds: float
    seconds: float
    ns_per_pair: float
    occupancy_target: float
    occupancy_final: float
    live_allocations: int
    #: pairs done before the checkpoint this run resumed from (0: a run from the start)
    resumed_at: int = 0


class ChurnCommand(CommandSummary):
    """``memdesc churn --json``."""

    ns_per_pair: float
    churn: ChurnRun


class InspectCommand(CommandSummary):
    """``memdesc inspect --json``: the machine summary plus one page."""

    pfn: int
    words: list[int]
    state: str
    description: str


class SnapshotCommand(CommandSummary):
    """``memdesc snapshot --json``."""

    when: str
    buddyinfo_rebuilt: dict[str, list[int]]
    buddyinfo_proc: dict[str, list[int]] | None
    buddyinfo_diff: dict[str, Any]
    classes: dict[str, int]
    allocations: dict[str, int]
    attributes: dict[str, Any]
    import_: dict[str, Any] = Field(alias="import")


# ---------------------------------------------------------------------- replay


class TypeAgreement(Model):
    """Typed replay's types against after.kpageflags (:func:`memdesc.sim.memtypes.type_agreement`)."""

    pages: int = Field(description="pages allocated during the trace and still allocated at its end")
    agree: int
    fraction: float | None
    matrix: dict[str, dict[str, int]] = Field(description="model class (file, anon, slab, pgtable, other) -> "
                                                          "kpageflags class -> pages")
    not_free_in_dump: dict[str, Any] = Field(description="pages, agree, fraction over the pages the dump does "
                                                         "not show free (freed after tracing stopped)")


class TypedTypeRow(Model):
    alloc: int
    free: int
    live: int
    live_pages: int
    descriptors_live: int
    descriptor_bytes: int
    two_part_allocations: int
    descriptor_failures: int
    page_failures: int
    descriptor_allocations: int


class TypedSample(Model):
    event_index: int
    descriptor_bytes: dict[str, int]


class TypedReplay(Model):
    """The typed layer of a replay (:meth:`memdesc.sim.replay.TypedRun.summary`)."""

    design: str
    struct_page_bytes: int
    descriptors_separate: bool
    descriptor_sizes: dict[str, list[int]] = Field(description="type -> [small, large] descriptor bytes")
    descriptor_bytes: dict[str, int] = Field(description="type -> bytes of its live descriptors at the end")
    descriptor_slab_bytes: dict[str, int] = Field(description="descriptor cache -> bytes of its slab pages")
    two_part_allocations: int
    descriptor_failures: int
    free_path_allocations: int
    free_path_allocations_slab: int
    free_path_allocations_design: int
    live: int
    types: dict[str, TypedTypeRow]
    descriptor_bytes_over_time: list[TypedSample]
    sources: dict[str, dict[str, int]] = Field(description="type source (classifier, filemap, lru_insertion) -> "
                                                           "type -> allocation events")


class ReplayCommand(CommandSummary):
    """``memdesc replay --json`` (:meth:`memdesc.sim.replay.ReplayResult.as_dict`)."""

    mode: str
    source: str
    capture: str | None
    events: dict[str, int]
    events_replayed: int
    events_per_second: float
    load_seconds: float
    read_seconds: float
    malformed_lines: int
    lost_events: int
    inconsistencies: dict[str, int]
    notes: dict[str, int]
    states: dict[str, dict[str, int]]
    policy: dict[str, int]
    model_events: dict[str, int] | None
    replay_map_bytes: int
    final_vs_real: dict[str, Any] | None
    pcp_pages: dict[str, int]
    typed: TypedReplay | None = Field(default=None, description="typed replay (exact and policy; null: untyped)")
    type_agreement: TypeAgreement | None = Field(default=None, description="null without after.kpageflags")
    #: the event a resumed run started at (0: from the beginning; --resume)
    resumed_at: int = 0


# ---------------------------------------------------------------------- scenario


class ScenarioPhase(Model):
    name: str
    gfp: str
    attempts: int
    succeeded: int
    failed: int
    errors: int
    stalled_frees: int
    frees_that_allocated: int
    free_path_allocations: int
    free_stalls: int
    alloc_failed_for_metadata: int
    parked_after: int
    seconds: float


class ScenarioRun(CommandSummary):
    """One run of a scenario: the machine summary at its end plus the scenario's figures.

    ``free_path_allocations``, ``free_stalls`` and ``alloc_failed_for_metadata`` are the
    run's totals (as in every summary); what one step did is in ``phases``."""

    scenario: str
    label: str
    policy: str | None
    layout: str
    mem: str
    seed: int
    cpus: int
    lowmem_managed_pages: int
    highmem_managed_pages: int
    user_pages: int
    kernel_pages: int
    late_user_attempts: int
    late_user_failed: int
    late_user_failed_for_metadata: int
    frees_attempted: int
    stalled_frees: int
    metadata_node_bytes: int
    reserve_bytes: int
    nodes_per_free_page: float | None
    parked_after_frees: int
    parked_after_release: int
    phases: list[ScenarioPhase]


class ScenarioCommand(Model):
    """``memdesc scenario NAME --json``."""

    scenario: str
    params: dict[str, Any]
    runs: list[ScenarioRun]
    check: str


class ThpPhaseResult(Model):
    name: str
    file_folios: int
    file_pages: int
    anon_pages: int
    freed_pages: int
    free_pages_after: int
    free_blocks_after: list[int] = Field(description="free blocks per order, zones summed, per-CPU lists drained")
    order9_blocks_after: int
    seconds: float


class ThpRunResult(Model):
    """One run of thp-after-pagecache (:class:`memdesc.sim.thp_scenario.ThpRun`)."""

    scenario: str
    label: str
    design: str
    variant: str = Field(description="no-compaction or compaction")
    compaction: str = Field(description="on, off, or unsupported (a design without compaction primitives)")
    layout: str
    mem: str
    seed: int
    cpus: int
    managed_pages: int
    low_wmark_pages: int
    high_wmark_pages: int
    files: int
    anon_regions: int
    file_folios_by_order: dict[str, int]
    anon_folios_by_order: dict[str, int]
    kswapd_reclaimed: int
    files_dropped: int
    regions_unmapped: int
    dontneed_zaps: int
    deferred_splits: int
    deferred_split_descriptor_allocations: int
    thp_requested: int
    thp_obtained: int
    thp_failed: int
    thp_obtained_after_compaction: int
    direct_reclaim_pages: int
    compact_stall: int
    compact_success: int
    compact_fail: int
    compact_captured: int
    pages_migrated: int
    migrate_descriptor_allocations: int = Field(description="descriptors allocated for migration destinations")
    migrate_failed_for_descriptor: int
    migrate_failed_busy: int
    folios_split: int = Field(description="large folios compaction split to migrate their pieces")
    split_descriptor_allocations: int
    descriptor_bytes: int
    free_blocks: list[int]
    order9_blocks: int
    check: str = Field(description='"ok": machine, folio layer, LRU/reclaim state, and the anon page tables '
                       'before step 3')
    page_tables_after_thp: str = Field(description='the anon page tables after step 3 checked against the folio layer '
                                       '(AddressSpaces.check()): "ok", or the first entry that disagrees (the rmap '
                                       'walk of migration points the PTEs/PMDs of migrated anon folios at their '
                                       'new pfns)')
    seconds: float
    phases: list[ThpPhaseResult]


class ThpScenarioCommand(Model):
    """``memdesc scenario thp-after-pagecache --json``."""

    scenario: str
    params: dict[str, Any]
    runs: list[ThpRunResult]
    check: str


# ---------------------------------------------------------------------- compare


class FragmentationSeries(Model):
    """Fragmentation of one zone over the replay, sampled every ``every`` events."""

    zone: str
    every: int
    orders: list[int]
    event_index: list[int]
    unusable_index: dict[str, list[int]] = Field(description="order -> unusable free space index x1000 per sample")
    extfrag_index: dict[str, list[int]] = Field(description="order -> fragmentation index x1000 per sample")


class FreeBlocks(Model):
    """Free blocks at the end of the run, all zones: count and pages per order."""

    blocks_by_order: list[int]
    pages_by_order: list[int]


class PolicyRun(Model):
    events_per_second: float
    seconds: float
    check: str
    allocations: int
    model_failures: int
    real_failures: int
    inconsistencies: int


class ExactRun(Model):
    """Exact replay: every event at its real pfn; how far the end is from the real after state."""

    events_per_second: float
    seconds: float
    check: str
    inconsistencies: int
    free_pages_diff_pct: dict[str, float | None] = Field(description='"NODE:ZONE" -> model vs after.buddyinfo, %')


class HighmemRun(Model):
    """The highmem-free scenario on the capture's layout (only where it has HighMem)."""

    layout: str
    mem: str
    frees_attempted: int
    stalled_frees: int
    free_path_allocations: int
    free_stalls: int
    late_user_attempts: int
    late_user_failed_for_metadata: int
    metadata_node_bytes: int
    check: str


class CompareDesign(Model):
    """One design on one capture (policy replay unless said otherwise)."""

    struct_page_bytes: int
    metadata_bytes: MetadataBytes
    metadata_bytes_per_page: float = Field(description="metadata_bytes.total / present pages")
    metadata_bytes_by_type: dict[str, Any] | None = Field(
        default=None, description="per memory type (the ontology), when the capture can be classified")
    free_path_allocations: int
    free_stalls: int
    alloc_failed_for_metadata: int
    ops: Ops
    unusable_index: dict[str, list[int]]
    extfrag_index: dict[str, list[int]]
    fragmentation: FragmentationSeries
    free_blocks: FreeBlocks
    events_per_second: float
    check: str = Field(description='"ok" when every run of the design checked ok, else the first failure')
    policy: PolicyRun
    exact: ExactRun | None
    exact_unsupported: str | None = None
    highmem: HighmemRun | None
    design_stats: dict[str, Any]


class CompareCapture(Model):
    name: str
    path: str
    events: int
    layout: str
    has_highmem: bool
    present_pages: int
    designs: dict[str, CompareDesign]


class CompareCommand(Model):
    """``memdesc compare --json``."""

    captures: list[CompareCapture]
    designs: list[str]
    seconds: float
    check: str
    commands: dict[str, str] = Field(description="what reproduces each part of the report")


# ---------------------------------------------------------------------- sweep


class SweepCommand(Model):
    """``memdesc sweep --json``: the run; the cells are the rows of the Parquet table."""

    out: str
    cells: int
    ran: int
    skipped: int
    failed: int
    seconds: float
    workers: int | None
    scheduler: str | None
    run_id: str
    rows: list[dict[str, Any]] = Field(description="one per cell of the grid (the Parquet table's rows)")
    check: str


# ---------------------------------------------------------------------- capture


class CaptureCommand(Model):
    """``memdesc capture --json`` (:meth:`memdesc.trace.capture.CaptureResult.as_dict`).  The
    exception to the exit codes: capture exits with the traced command's status."""

    outdir: str
    command: list[str]
    events_set: str
    events_enabled: list[str]
    events_missing: list[str]
    status: str = Field(description="complete | interrupted | aborted")
    exit_status: int | None
    returncode: int
    traced_seconds: float
    trace_bytes: int
    trace_lines: int
    events: dict[str, int]
    lost_events: int
    overruns: int
    events_lost: int
    malformed_lines: int
    machine: dict[str, Any]
    restore_problems: list[str]


# ---------------------------------------------------------------------- ontology


class OntologyDesign(Model):
    struct_page_bytes: int
    descriptor_bytes: dict[str, int] = Field(description="memdesc type -> bytes of its descriptors")
    freelist_bytes: int
    total_bytes: int
    bytes_per_page: float
    percent_of_ram: float


class OntologyCommand(Model):
    """``memdesc ontology --json`` (:func:`memdesc.sim.ontology.ontology`): the census of a real
    kpageflags dump by memdesc type, folio orders per type, and the metadata per design."""

    census: dict[str, int] = Field(description="memdesc type -> pages")
    folios: dict[str, dict[str, int]] = Field(description="memdesc type -> {order: folios}")
    designs: dict[str, OntologyDesign]
    scanner: dict[str, dict[str, float]] | None = Field(
        default=None, description="design -> {scanner: distinct cache lines per pfn}")


# ---------------------------------------------------------------------- readahead


class KindAgreement(Model):
    events: int = Field(description="pairs of kernel and model events plus unpaired events of either side")
    exact: int = Field(description="pairs whose index, order, size and async_size are all equal")
    fraction: float | None = Field(description="exact / events; null when there was nothing to compare")
    kernel: int
    model: int
    missing: int = Field(description="kernel events the model did not make")
    extra: int = Field(description="model events the kernel did not make")
    differ: int = Field(description="paired events that are not equal")


class ReadaheadAgreement(Model):
    events: int
    exact: int
    fraction: float | None
    by_kind: dict[str, KindAgreement] = Field(description="page_cache_sync_ra, page_cache_async_ra, "
                                                          "page_cache_ra_order, page_cache_ra_unbounded, "
                                                          "mm_filemap_add_to_page_cache")
    requests: int
    requests_diverging: int
    divergence_classes: dict[str, int]


class ReadaheadCommand(Model):
    """``memdesc readahead --json`` (:meth:`memdesc.sim.readahead.ReadaheadValidation.summary`):
    the readahead model against a capture, event by event; ``readahead_agreement`` is the
    informed run, ``readahead_agreement_<run>`` every run made (docs/mm.md)."""

    source: str
    readahead_agreement: ReadaheadAgreement
    inputs: dict[str, Any]
    seconds: dict[str, float]
    divergences: list[dict[str, Any]]


class AnonRun(Model):
    """One design's run of the mthp workload (:func:`memdesc.sim.anon.run_workload`)."""

    design: str
    steps: dict[str, dict[str, Any]]
    checks: dict[str, str]
    check: str
    thp_stats: dict[str, dict[str, int]]
    events: dict[str, int]
    anon_allocations: dict[str, int]
    shrinker: dict[str, int] | None
    descriptor_allocations: dict[str, int]
    descriptors_separate: bool
    seconds: float


class AnonAgreement(Model):
    """One figure of the model beside the kernel's (trace window or thp_stats delta)."""

    what: str
    model: int
    kernel: int
    diff: int
    relative: float | None
    note: str


class AnonCommand(Model):
    """``memdesc anon --json``: the mthp workload on the anon model, per design, and (with a
    capture) its figures beside the capture's (docs/mm.md, "Anonymous memory and mTHP")."""

    source: str | None
    settings: dict[str, Any]
    runs: dict[str, AnonRun]
    agreement: list[AnonAgreement]
    designs_agree: bool
    check: str
    seconds: float


# ---------------------------------------------------------------------- compact


class ScanSums(Model):
    calls: int
    nr_scanned: int
    nr_taken: int


class MigrateSums(Model):
    calls: int
    nr_migrated: int
    nr_failed: int


class ModelMigrateSums(MigrateSums):
    descriptor_allocations: int
    descriptor_failures: int
    nr_split: int


class KernelMigratePages(Model):
    calls: int
    succeeded: int
    failed: int
    nr_split: int


class CompactSide(Model):
    """One side (model or kernel) of a zone's full compaction."""

    migrate_pfn_begin: int
    free_pfn_begin: int
    migrate_pfn_end: int
    free_pfn_end: int
    meeting_pfn: int = Field(description="the pageblock where the scanners met (start pfn)")
    status: str
    isolate_migratepages: ScanSums
    isolate_freepages: ScanSums
    migratepages: MigrateSums


class ModelCompactSide(CompactSide):
    migratepages: ModelMigrateSums


class KernelCompactSide(CompactSide):
    zone_end: int
    migrate_pages: KernelMigratePages


class CompactZone(Model):
    zone: str
    start_pfn: int
    end_pfn: int
    model: ModelCompactSide
    kernel: KernelCompactSide | None = Field(description="the capture's own full compaction of this zone, if any")
    free_area_before: list[int]
    free_area_after: list[int]
    free_pages_before: int
    free_pages_after: int
    order9_blocks_before: int = Field(description="order-9 blocks allocatable from the free area")
    order9_blocks_after: int
    fragmentation_score_before: int
    fragmentation_score_after: int


class CompactAdoption(Model):
    """The snapshot's anon and file pages made folios of the folio layer."""

    folios: int
    pages: int
    anon_folios: int
    file_folios: int
    on_lru: int
    large_folios: int
    descriptor_allocations: int
    failed: int


class CompactRun(Model):
    """A full compaction (vm.compact_memory) of the snapshot on one design
    (:func:`memdesc.sim.compact.compact_capture`)."""

    capture: str
    when: str
    design: str
    adoption: CompactAdoption
    seconds: float
    pages_migrated: int
    folios_migrated: int
    migrate_failed_folios: int
    failed_busy: int
    descriptor_allocations: int = Field(description="destination descriptors allocated by migration (0 on linux)")
    descriptor_failures: int
    folios_split: int = Field(description="large folios split because no block of their order could be had")
    split_descriptor_allocations: int = Field(description="descriptors allocated by those splits (0 on linux)")
    compact_migrate_scanned: int
    compact_free_scanned: int
    compact_isolated: int
    order9_blocks_before: int
    order9_blocks_after: int
    free_pages_before: int
    free_pages_after: int
    fragmentation_score_node_before: int
    fragmentation_score_node_after: int
    zones: list[CompactZone]
    stats: dict[str, int]
    events_dropped: int
    check: str
    kernel_runs: int
    nr_page_orders: int


class CompactCommand(Model):
    """``memdesc compact --json``: one run per design."""

    capture: str
    when: str
    runs: list[CompactRun]


class KernelModel(Model):
    kernel: int | None
    model: int | None
    diff_pct: float | None = Field(default=None, description="100 * (model - kernel) / kernel; null if kernel is 0")


class ReclaimSide(Model):
    """One side's reclaim figures (the kernel's from its tracepoints, the model's from its log)."""

    reclaim_rounds: int = Field(description="mm_vmscan_memcg_reclaim_begin/end pairs of the cgroup's tasks")
    round_reclaimed: int = Field(description="sum of nr_reclaimed of mm_vmscan_memcg_reclaim_end")
    shrink_inactive: int = Field(description="mm_vmscan_lru_shrink_inactive events")
    pages_scanned: int
    pages_reclaimed: int
    pages_taken: int = Field(description="sum of nr_taken of mm_vmscan_lru_isolate")
    deletions: int = Field(description="page-cache deletions by reclaim (folios)")
    deleted_pages: int
    kswapd_wake: int
    kswapd_sleep: int
    direct_reclaim: int
    by_priority: dict[str, int] = Field(description="shrink_inactive events per reclaim priority")


class ReclaimCommand(Model):
    """``memdesc reclaim --json`` (:func:`memdesc.sim.reclaim.run_reclaim`): the cgroup's
    page-cache and anon activity of a capture replayed on the reclaim model, its reclaim
    beside the kernel's (docs/mm.md, "LRU and reclaim")."""

    capture: str
    design: str
    limit_pages: int
    events: dict[str, int]
    kernel: ReclaimSide
    model: ReclaimSide
    figures: dict[str, KernelModel] = Field(description="reclaim_rounds, round_reclaimed, shrink_inactive, "
                                                        "pages_scanned, pages_reclaimed, pages_taken, deletions, "
                                                        "deleted_pages")
    vmstat: dict[str, KernelModel] = Field(description="after - before /proc/vmstat of the capture vs the model")
    folios: dict[str, float] = Field(description="folios reclaimed by the kernel, the model, both; jaccard")
    rounds_same_event: dict[str, float]
    memcg: dict[str, KernelModel]
    check: str


class MmCompaction(Model):
    """The mm replay's compaction: the model's (direct, and compact_memory where the capture ran
    one) beside the kernel's events and vmstat."""

    available: bool = Field(description="false: no compaction primitives, or compaction off: run without")
    note: str
    compact_memory_runs: KernelModel
    compact_stall: KernelModel
    pages_migrated: KernelModel
    isolate_freepages: KernelModel


class MmReplay(Model):
    """``memdesc replay CAPTURE --mode mm``: the capture's folio-level events through the MM
    models (:func:`memdesc.sim.mm_replay.mm_replay`; docs/mm.md, "The whole MM as a replay")."""

    capture: str
    design: str
    events: dict[str, int] = Field(description="driver events by kind")
    events_replayed: int
    events_per_second: float = Field(description="driver events per second of the replay loop")
    seconds: float
    applied: dict[str, int]
    anomalies: dict[str, int] = Field(description="events the model could not attribute (counted, not errors)")
    adoption: CompactAdoption
    folios_made: dict[str, dict[str, int]] = Field(description="type -> order -> folios made")
    reclaim: dict[str, KernelModel]
    compaction: MmCompaction
    final_vs_real: dict[str, Any] | None = Field(description="free lists per zone beside after.buddyinfo and "
                                                             "after.kpageflags (as replay's)")
    census: dict[str, KernelModel] = Field(description="pages: anon, file, free, other; kernel = after.kpageflags")
    check: str


class ReplayMmCommand(Model):
    """``memdesc replay CAPTURE --mode mm --json``."""

    mode: str
    source: str
    mm: MmReplay


#: command name -> the model of its ``--json`` output
COMMANDS: dict[str, type[Model]] = {
    "machine": MachineCommand,
    "churn": ChurnCommand,
    "inspect": InspectCommand,
    "snapshot": SnapshotCommand,
    "replay": ReplayCommand,
    "scenario": ScenarioCommand,
    "scenario-thp": ThpScenarioCommand,
    "compare": CompareCommand,
    "sweep": SweepCommand,
    "capture": CaptureCommand,
    "ontology": OntologyCommand,
    "readahead": ReadaheadCommand,
    "anon": AnonCommand,
    "compact": CompactCommand,
    "reclaim": ReclaimCommand,
    "replay_mm": ReplayMmCommand,
}


def _plain(data: Any) -> Any:
    """JSON types only (numpy scalars and arrays, paths -> int/float/list/str)."""
    def default(o):
        if hasattr(o, "tolist"):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    return json.loads(json.dumps(data, default=default))


def validate(command: str, data: Any) -> dict:
    """``data`` as plain JSON types, checked against the command's model (pydantic's
    ValidationError names the offending key); keys keep their order."""
    plain = _plain(data)
    COMMANDS[command].model_validate(plain)
    return plain


def schema(command: str) -> dict:
    return COMMANDS[command].model_json_schema(by_alias=True, mode="serialization")


def schema_text(command: str) -> str:
    return json.dumps(schema(command), indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name in COMMANDS:
        p = directory / f"{name}.json"
        p.write_text(schema_text(name))
        out.append(p)
    return out


if __name__ == "__main__":  # python -m memdesc.results --write
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m memdesc.results --write   (regenerates memdesc/data/schema/*.json)")
    for p in write_schemas():
        print(p)
