"""The cost and time estimate of a job before it runs, and what a finished job used.

One model, used by the head node (New Job dialog, API) and by
``bench/fleet_sim.py``:

**Fleet** (``choose_fleet``), per the delivery-tier table of DESIGN.md: copy and
move jobs run 4 / 12 / 40 workers (Express / Plus / Ultra), image codec jobs 5 /
15 / 45, one instance each, in the job's working region (the destination's;
the source's for a compress job). Copy workers are m5.xlarge; m5.2xlarge when
the job holds an object over 250 MB (the product guide's "files larger than
250 MBytes": such objects move as multipart uploads, bandwidth-bound, and the
m5.2xlarge has twice the baseline network); m5.4xlarge when an object exceeds
PART_SIZE x 10,000 (625 GiB at the default 64 MiB), where the planner's parts
grow past PART_SIZE (up to 525 MiB at S3's 5 TiB object limit) and the memory
and network each in-flight part takes grow with them. Codec workers are
c5.9xlarge; c5.18xlarge when the job holds an image the codec stage processes
whole (up to CODEC_MAX_OBJECT) over 2 GiB: the stage holds 8x an image in
memory (worker.codec_stage.MEMORY_FACTOR), so the 72 GiB of a c5.9xlarge would
hold fewer than 4 such images at once for its 36 vCPUs.

**Throughput.** A job's items are its whole objects and its parts, and one
worker process moves them at ``items / items_per_s + bytes / bytes_per_s``
seconds, with both rates measured on a real worker (``throughput.json``,
written by ``bench/fleet_sim.py``; server-side copy and streamed copy apart).
In AWS each request also waits ``request_latency_s``: a process keeping
``object_threads`` whole objects (``part_threads`` parts) in flight manages
at most that many / (requests per item x latency) items per second (the
two concurrencies weighted by the job's items, or by its bytes for the
bytes rate). A server-side copy's bytes
never pass through the instance but S3 copies them at a per-request rate
(slower between regions); a streamed copy's bytes are capped by the
instance's baseline network bandwidth, a codec job's by its vCPUs times the
codec's single-thread speed. An instance runs one worker process per
``vcpus_per_worker_process`` vCPUs; the fleet scales linearly with its
instances up to S3's write-request rate per partitioned prefix.

**Duration** = boot + the measured per-job overhead + items and bytes at the
fleet's rates. **Instance-hours**: every instance runs from launch through
the copy and the idle time before it is retired, billed per second with a
60 s minimum. **S3 requests**, counted as the planner and the workers make
them (one LIST per 1,000 keys; whole objects: COPY, or GET + PUT; multipart
objects: HEAD and a GET of the tags at planning, CreateMultipartUpload, one
UploadPartCopy or ranged GET + UploadPart per part, CompleteMultipartUpload
and a HEAD to verify; a move adds a HEAD of each copy before the DELETE,
which is free; ``sync`` a HEAD per object), each charged to its bucket's
region. Whole-object copies are assumed to have plain-MD5 ETags, verified
without a HEAD. **Transfer**: the bytes that cross regions (the encoded bytes
after a compress job, at ``codec_ratio``), times the source region's
inter-region price; nothing within a region.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Iterable

from pipeline.planner import MAX_PARTS, Location, PlanSettings
from headnode.config import plan_settings
from headnode.jobshape import MAX_PAGES, PAGE_SIZE, JobShape, shape_from_listing
from headnode.pricing import GB, EstimateError, PriceTable, ThroughputModel, WorkerRate, price_table

GiB = 1 << 30
KINDS = ("copy", "move", "compress", "decompress")
TIERS = ("express", "plus", "ultra")
TIER_WORKERS = {"copy": {"express": 4, "plus": 12, "ultra": 40},
                "codec": {"express": 5, "plus": 15, "ultra": 45}}
LARGE_OBJECT = 250 * 10**6          # "files larger than 250 MBytes"
ULTRA_LARGE_IMAGE = 2 * GiB
REQUESTS_PER_ITEM = {"server_side": 1, "streamed": 2}   # COPY; GET + PUT


@dataclass(frozen=True)
class Fleet:
    instance_type: str
    count: int
    reason: str


def choose_fleet(*, kind: str, tier: str, largest_object: int, part_size: int = 64 << 20,
                 codec_max_object: int = GiB) -> Fleet:
    """The workers a job of ``kind`` in ``tier`` runs on (rules in the module docstring)."""
    _check_kind_tier(kind, tier)
    if kind in ("compress", "decompress"):
        count = TIER_WORKERS["codec"][tier]
        if min(largest_object, codec_max_object) > ULTRA_LARGE_IMAGE:
            return Fleet("c5.18xlarge", count, "an image of over 2 GiB is encoded whole (8x its size in memory)")
        return Fleet("c5.9xlarge", count, "image codec workers")
    count = TIER_WORKERS["copy"][tier]
    if largest_object > part_size * MAX_PARTS:
        return Fleet("m5.4xlarge", count, f"an object over {part_size * MAX_PARTS:,} bytes: parts larger than "
                                          f"PART_SIZE")
    if largest_object > LARGE_OBJECT:
        return Fleet("m5.2xlarge", count, "an object over 250 MB")
    return Fleet("m5.xlarge", count, "no object over 250 MB")


@dataclass
class Requests:
    """S3 requests by bucket and price class (write: PUT, COPY, POST, LIST; read: GET, HEAD)."""
    source_write: int = 0
    source_read: int = 0
    destination_write: int = 0
    destination_read: int = 0
    source_cost: float = 0.0
    destination_cost: float = 0.0

    @property
    def cost(self) -> float:
        return self.source_cost + self.destination_cost


def count_requests(shape: JobShape, *, parts: int, streamed_whole: bool, streamed_parts: bool,
                   move: bool = False, sync: bool = False) -> Requests:
    """The S3 requests a job of ``shape`` makes (see the module docstring)."""
    multipart = shape.multipart_objects
    counted = Requests(
        source_write=max(1, math.ceil(shape.objects / PAGE_SIZE)),          # LIST
        source_read=2 * multipart + (shape.whole_objects if streamed_whole else 0) + (parts if streamed_parts else 0),
        destination_write=shape.whole_objects + 2 * multipart + parts,       # COPY/PUT; create, complete; parts
        destination_read=multipart + (shape.objects if move else 0) + (shape.objects if sync else 0))
    return counted


@dataclass
class Rates:
    """Throughput: per worker process, per instance and for the fleet (items and bytes per second)."""
    mode: str                       # server_side | streamed
    processes_per_instance: int
    process_items_per_s: float
    process_bytes_per_s: float
    instance_items_per_s: float
    instance_bytes_per_s: float
    fleet_items_per_s: float
    fleet_bytes_per_s: float
    limited_by: list[str] = field(default_factory=list)


def fleet_rates(fleet: Fleet, *, table: PriceTable, shape: JobShape, parts: int, server_side: bool,
                cross_region: bool, codec: str | None = None) -> Rates:
    """What ``fleet`` moves per second of ``shape`` (the throughput model of the module docstring)."""
    model, spec = table.throughput, table.instance(fleet.instance_type)
    mode = "server_side" if server_side else "streamed"
    measured: WorkerRate = getattr(model, mode)
    in_flight_items, in_flight_bytes = _in_flight(model, shape, parts)
    limits: list[str] = []
    latency_items = in_flight_items / (REQUESTS_PER_ITEM[mode] * model.request_latency_s)
    items = _capped(measured.items_per_s, latency_items, "S3 request latency", limits)
    processes = max(1, spec.vcpus // model.vcpus_per_worker_process)
    bytes_ = measured.bytes_per_s
    if server_side:
        per_request = (model.server_copy_cross_region_bytes_per_s_per_request if cross_region
                       else model.server_copy_bytes_per_s_per_request)
        bytes_ = _capped(bytes_, in_flight_bytes * per_request, "S3 server-side copy rate", limits)
    instance_bytes = processes * bytes_
    if not server_side:
        instance_bytes = _capped(instance_bytes, spec.network_bytes_per_s, "instance network bandwidth", limits)
    if codec:
        per_vcpu = model.encode_bytes_per_s_per_vcpu if codec == "compress" else model.decode_bytes_per_s_per_vcpu
        instance_bytes = _capped(instance_bytes, spec.vcpus * per_vcpu, "image codec CPU", limits)
    fleet_items = _capped(fleet.count * processes * items, model.store_write_requests_per_s,
                          "S3 write requests per prefix", limits)
    return Rates(mode=mode, processes_per_instance=processes, process_items_per_s=items, process_bytes_per_s=bytes_,
                 instance_items_per_s=processes * items, instance_bytes_per_s=instance_bytes,
                 fleet_items_per_s=fleet_items, fleet_bytes_per_s=fleet.count * instance_bytes, limited_by=limits)


def _in_flight(model: ThroughputModel, shape: JobShape, parts: int) -> tuple[float, float]:
    """Requests one worker process keeps in flight, averaged over items and over bytes: whole
    objects go ``object_threads`` at a time, but no more than ``copy_bytes_in_flight`` of them
    by (mean) size; parts go ``part_threads`` at a time."""
    whole_bytes = shape.bytes - shape.multipart_bytes
    whole = model.object_threads
    if shape.whole_objects and whole_bytes:
        whole = max(1.0, min(whole, model.copy_bytes_in_flight * shape.whole_objects / whole_bytes))
    items = shape.whole_objects + parts
    by_items = (shape.whole_objects * whole + parts * model.part_threads) / items if items else whole
    by_bytes = ((whole_bytes * whole + shape.multipart_bytes * model.part_threads) / shape.bytes
                if shape.bytes else whole)
    return by_items, by_bytes


def _capped(value: float, cap: float, name: str, limits: list[str]) -> float:
    if cap < value:
        limits.append(name)
        return cap
    return value


@dataclass
class Estimate:
    """Every number of a job's estimate; ``to_dict()`` is what the API returns."""
    shape: JobShape
    kind: str
    tier: str
    source_region: str
    destination_region: str
    worker_region: str
    server_side: bool
    instance_type: str
    workers: int
    fleet_reason: str
    rates: Rates
    items: int                      # whole objects + parts
    transfer_s: float               # moving items and bytes at the fleet's rates
    duration_s: float               # boot + per-job overhead + transfer_s
    billed_seconds_per_instance: int
    instance_hours: float
    price_per_instance_hour: float
    instance_cost: float
    requests: Requests
    request_cost: float
    transfer_bytes: int             # bytes crossing regions
    transfer_gb: float
    transfer_price_per_gb: float
    transfer_cost: float
    total_cost: float
    price_table_as_of: str
    throughput_measured_on: str
    assumptions: list[str]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["requests"]["cost"] = self.requests.cost
        return out


def estimate(shape: JobShape, *, kind: str, tier: str, source_region: str, destination_region: str,
             table: PriceTable, server_side: bool = True, plan: PlanSettings = PlanSettings(),
             sync: bool = False, codec_ratio: float = 1.0, idle_s: float | None = None) -> Estimate:
    """The estimate of a job moving ``shape`` (``plan``: its plan settings; for a codec job,
    ``plan.whole_object_limit`` is CODEC_MAX_OBJECT). ``server_side``: whether the stores allow
    server-side copies (same endpoint and credentials); ``codec_ratio``: the compression expected
    of a compress job (1.0, none, is the cautious default); ``idle_s``: the fleet's idle time
    before it retires workers (EC2_IDLE_SECONDS; default the throughput table's)."""
    _check_kind_tier(kind, tier)
    if codec_ratio < 1.0:
        raise EstimateError("codec_ratio is original / encoded size, at least 1.0")
    codec = kind if kind in ("compress", "decompress") else None
    worker_region = source_region if kind == "compress" else destination_region
    fleet = choose_fleet(kind=kind, tier=tier, largest_object=shape.largest_object, part_size=plan.part_size,
                         codec_max_object=plan.whole_object_limit or GiB)
    hourly = table.instance_hour(region=worker_region, instance_type=fleet.instance_type)
    assumptions = _assumptions(table, shape, idle_s=_idle(table, idle_s))
    parts = shape.parts
    if shape.multipart_objects and not parts:
        parts = max(shape.multipart_objects, math.ceil(shape.multipart_bytes / plan.part_size))
        assumptions.append(f"parts estimated from multipart bytes / PART_SIZE: {parts}")
    streamed_whole = codec is not None or not server_side   # the codec stage reads every whole object
    requests = count_requests(shape, parts=parts, streamed_whole=streamed_whole, streamed_parts=not server_side,
                              move=kind == "move", sync=sync)
    _price_requests(requests, table=table, source_region=source_region, destination_region=destination_region)
    cross = source_region != destination_region
    rates = fleet_rates(fleet, table=table, shape=shape, parts=parts, server_side=not streamed_whole,
                        cross_region=cross, codec=codec)
    model = table.throughput
    items = shape.whole_objects + parts
    transfer_s = items / rates.fleet_items_per_s + shape.bytes / rates.fleet_bytes_per_s
    idle = _idle(table, idle_s)
    billed = max(table.minimum_billed_seconds, math.ceil(model.boot_s + transfer_s + idle))
    instance_hours = fleet.count * billed / 3600
    crossing = round(shape.bytes / codec_ratio) if kind == "compress" else shape.bytes
    per_gb = table.transfer_per_gb(source_region=source_region, destination_region=destination_region)
    transfer_gb = crossing / GB if cross else 0.0
    return Estimate(
        shape=shape, kind=kind, tier=tier, source_region=source_region, destination_region=destination_region,
        worker_region=worker_region, server_side=not streamed_whole, instance_type=fleet.instance_type,
        workers=fleet.count, fleet_reason=fleet.reason, rates=rates, items=items, transfer_s=transfer_s,
        duration_s=model.boot_s + model.job_overhead_s + transfer_s, billed_seconds_per_instance=billed,
        instance_hours=instance_hours, price_per_instance_hour=hourly, instance_cost=instance_hours * hourly,
        requests=requests, request_cost=requests.cost, transfer_bytes=crossing if cross else 0,
        transfer_gb=transfer_gb, transfer_price_per_gb=per_gb, transfer_cost=transfer_gb * per_gb,
        total_cost=instance_hours * hourly + requests.cost + transfer_gb * per_gb,
        price_table_as_of=table.as_of, throughput_measured_on=model.measured_on, assumptions=assumptions)


def estimate_copy(source: Location, destination: Location, *, source_store, kind: str, tier: str, config: dict,
                  recursive: bool = True, sync: bool = False, max_pages: int = MAX_PAGES) -> Estimate:
    """The estimate of a job from ``source`` (opened as ``source_store``) to ``destination`` on a
    head node with ``config``: the listing (or a sample of it) with the job's plan settings, the
    regions of the two stores (``REGION`` when a bucket names none), server-side when the stores
    allow it, the ``PRICE_TABLE`` and, with the ec2 fleet, its ``EC2_IDLE_SECONDS``."""
    if source.spec.kind != "s3" or destination.spec.kind != "s3":
        raise EstimateError("a cost estimate is for jobs between S3 buckets (AWS prices); "
                            "a local directory has no region")
    plan = plan_settings(config, codec=kind if kind in ("compress", "decompress") else "none")
    shape = shape_from_listing(source_store, source.prefix, recursive=recursive, settings=plan, max_pages=max_pages)
    idle = config.get("EC2_IDLE_SECONDS") if config.get("FLEET") == "ec2" else None
    return estimate(shape, kind=kind, tier=tier, source_region=source.spec.region or config["REGION"],
                    destination_region=destination.spec.region or config["REGION"], table=price_table(config),
                    server_side=source.spec.same_endpoint(destination.spec), plan=plan, sync=sync, idle_s=idle)


def _price_requests(requests: Requests, *, table: PriceTable, source_region: str, destination_region: str) -> None:
    source, destination = table.request_prices(source_region), table.request_prices(destination_region)
    requests.source_cost = (requests.source_write * source.write_per_1000
                            + requests.source_read * source.read_per_1000) / 1000
    requests.destination_cost = (requests.destination_write * destination.write_per_1000
                                 + requests.destination_read * destination.read_per_1000) / 1000


def _idle(table: PriceTable, idle_s: float | None) -> float:
    return table.throughput.idle_s if idle_s is None else float(idle_s)


def _assumptions(table: PriceTable, shape: JobShape, *, idle_s: float) -> list[str]:
    model = table.throughput
    notes = [f"on-demand list prices of {table.as_of} (PRICE_TABLE overrides them)",
             f"worker throughput measured on {model.measured_on}; real EC2 and S3 figures differ",
             f"{model.request_latency_s * 1000:.0f} ms per S3 request, {model.object_threads} objects and "
             f"{model.part_threads} parts in flight per worker process, one process per "
             f"{model.vcpus_per_worker_process} vCPUs",
             f"instances boot in {model.boot_s:.0f} s and are retired {idle_s:.0f} s after the queue empties",
             f"at most {model.store_write_requests_per_s:,.0f} S3 write requests per second (one partitioned prefix)",
             "whole objects have plain-MD5 ETags (verified without a HEAD); the head node's own cost is not included"]
    if not shape.exact:
        notes.append(f"objects and bytes extrapolated from {shape.sampled_objects:,} listed objects "
                     f"({shape.method}); the largest object is the largest seen")
    return notes


def _check_kind_tier(kind: str, tier: str) -> None:
    if kind not in KINDS:
        raise EstimateError(f"unknown job kind {kind!r}; choose {', '.join(KINDS)}")
    if tier not in TIERS:
        raise EstimateError(f"unknown delivery tier {tier!r}; choose express, plus or ultra")


# -- what a job actually used -----------------------------------------------------------------------

@dataclass
class UsageLine:
    instance_type: str
    instances: int
    billed_seconds: int
    instance_hours: float
    price_per_hour: float
    cost: float


@dataclass
class Usage:
    """The instance-hours a job's workers used and what they cost at the price table."""
    region: str
    lines: list[UsageLine]
    instance_hours: float
    cost: float
    still_running: int              # instances without a stop time, counted up to ``now``
    price_table_as_of: str

    def to_dict(self) -> dict:
        return asdict(self)


def actual_usage(runs: Iterable[tuple], *, region: str, table: PriceTable, now: datetime | None = None) -> Usage:
    """Instance-hours and cost from the fleet's records: one ``(instance_type, started_at,
    stopped_at)`` per instance launched for the job in ``region`` (datetimes, or epoch seconds;
    ``stopped_at`` None while it runs). Each instance is billed per second, at least
    ``billing.minimum_seconds``."""
    now = now or datetime.now(timezone.utc)
    by_type: dict[str, list[int]] = {}
    running = 0
    for instance_type, started_at, stopped_at in runs:
        running += stopped_at is None
        seconds = _seconds(stopped_at if stopped_at is not None else now) - _seconds(started_at)
        if seconds < 0:
            raise EstimateError(f"an instance of type {instance_type} stopped before it started")
        by_type.setdefault(instance_type, []).append(max(table.minimum_billed_seconds, math.ceil(seconds)))
    lines = []
    for instance_type in sorted(by_type):
        price = table.instance_hour(region=region, instance_type=instance_type)
        billed = sum(by_type[instance_type])
        lines.append(UsageLine(instance_type=instance_type, instances=len(by_type[instance_type]),
                               billed_seconds=billed, instance_hours=billed / 3600, price_per_hour=price,
                               cost=billed / 3600 * price))
    return Usage(region=region, lines=lines, instance_hours=sum(line.instance_hours for line in lines),
                 cost=sum(line.cost for line in lines), still_running=running, price_table_as_of=table.as_of)


def _seconds(moment) -> float:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:   # the head node stores naive UTC timestamps
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    return float(moment)
