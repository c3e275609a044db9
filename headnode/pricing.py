"""The price table and the measured worker throughput a cost estimate works from.

Two files ship with CloudMover: ``prices.json`` (dated AWS list prices: EC2
on-demand per hour, S3 requests per 1000, inter-region transfer per GB, and
the instance types' vCPUs and network bandwidth) and ``throughput.json`` (what
one ``cloudmover-worker`` did when ``bench/fleet_sim.py`` measured it, and the
model's other parameters). The head node's ``PRICE_TABLE`` setting names a
JSON file merged over both: its top-level keys are those of ``prices.json``,
plus ``throughput`` for the throughput file, and any nested mapping replaces
only the keys it names (``{"ec2_per_hour": {"eu-west-1": {"m5.xlarge": 0.2}}}``
changes one price).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline import errors

SHIPPED_PRICES = Path(__file__).with_name("prices.json")
SHIPPED_THROUGHPUT = Path(__file__).with_name("throughput.json")
GB = 1 << 30    # AWS bills data transfer per GB of 2**30 bytes
PRICE_SECTIONS = ("ec2_per_hour", "s3_requests_per_1000", "transfer_out_per_gb", "transfer_pair_per_gb",
                  "instances", "billing")
KNOWN_KEYS = frozenset(("as_of", "currency", "notes", "sources", "throughput") + PRICE_SECTIONS)


class EstimateError(errors.PermanentError):
    """A cost or time estimate cannot be made; the message says why."""

    code = "estimate_error"


class UnknownPrice(EstimateError):
    """The price table has no price for a region or instance type."""

    code = "unknown_price"


@dataclass(frozen=True)
class InstanceSpec:
    vcpus: int
    memory_gib: float
    network_gbps: float     # baseline bandwidth

    @property
    def network_bytes_per_s(self) -> float:
        return self.network_gbps * 1e9 / 8


@dataclass(frozen=True)
class WorkerRate:
    """What one worker process does: items (whole objects or parts) per second and bytes per second,
    as the terms of ``seconds = items / items_per_s + bytes / bytes_per_s``."""
    items_per_s: float
    bytes_per_s: float


@dataclass(frozen=True)
class ThroughputModel:
    """``throughput.json``: measured worker rates and the model's assumptions (see that file's notes)."""
    measured_on: str
    server_side: WorkerRate              # CopyObject / UploadPartCopy: no bytes through the worker
    streamed: WorkerRate                 # GET streamed into PUT / UploadPart
    job_overhead_s: float                # fixed time per job (planning start, first task, the job's end)
    encode_bytes_per_s_per_vcpu: float   # image codec, one thread
    decode_bytes_per_s_per_vcpu: float
    vcpus_per_worker_process: int        # one worker process per this many vCPUs of an instance
    object_threads: int                  # whole objects one process keeps in flight
    copy_bytes_in_flight: int            # ... and at most this many bytes of them
    part_threads: int                    # parts one process keeps in flight
    request_latency_s: float             # S3 request latency a worker waits per request
    server_copy_bytes_per_s_per_request: float            # S3 server-side copy, same region
    server_copy_cross_region_bytes_per_s_per_request: float
    store_write_requests_per_s: float    # S3 PUT/COPY/POST per second per partitioned prefix
    boot_s: float                        # instance launch to first task
    idle_s: float                        # empty queue to termination

    @classmethod
    def from_dict(cls, data: dict) -> "ThroughputModel":
        try:
            worker, model, codec = data["worker"], data["model"], data["codec"]
            copy_rate = model["server_copy_bytes_per_s_per_request"]
            built = cls(
                measured_on=str(data["measured_on"]),
                server_side=WorkerRate(float(worker["server_side"]["items_per_s"]),
                                       float(worker["server_side"]["bytes_per_s"])),
                streamed=WorkerRate(float(worker["streamed"]["items_per_s"]), float(worker["streamed"]["bytes_per_s"])),
                job_overhead_s=float(worker["job_overhead_s"]),
                encode_bytes_per_s_per_vcpu=float(codec["encode_bytes_per_s_per_vcpu"]),
                decode_bytes_per_s_per_vcpu=float(codec["decode_bytes_per_s_per_vcpu"]),
                vcpus_per_worker_process=int(model["vcpus_per_worker_process"]),
                object_threads=int(model["object_threads"]), part_threads=int(model["part_threads"]),
                copy_bytes_in_flight=int(model["copy_bytes_in_flight"]),
                request_latency_s=float(model["request_latency_s"]),
                server_copy_bytes_per_s_per_request=float(copy_rate["same_region"]),
                server_copy_cross_region_bytes_per_s_per_request=float(copy_rate["cross_region"]),
                store_write_requests_per_s=float(model["store_write_requests_per_s"]),
                boot_s=float(model["boot_s"]), idle_s=float(model["idle_s"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise EstimateError(f"the throughput table is incomplete or malformed: {exc!r}") from None
        rates = (built.server_side.items_per_s, built.server_side.bytes_per_s, built.streamed.items_per_s,
                 built.streamed.bytes_per_s, built.encode_bytes_per_s_per_vcpu, built.decode_bytes_per_s_per_vcpu,
                 built.vcpus_per_worker_process, built.object_threads, built.part_threads,
                 built.copy_bytes_in_flight, built.request_latency_s,
                 built.server_copy_bytes_per_s_per_request, built.server_copy_cross_region_bytes_per_s_per_request,
                 built.store_write_requests_per_s)
        if min(rates) <= 0 or min(built.job_overhead_s, built.boot_s, built.idle_s) < 0:
            raise EstimateError("the throughput table needs positive rates and non-negative times")
        return built


@dataclass(frozen=True)
class RequestPrices:
    write_per_1000: float   # PUT, COPY, POST, LIST
    read_per_1000: float    # GET, HEAD and the rest


class PriceTable:
    """Prices and throughput, validated; lookups raise ``UnknownPrice`` naming what is missing."""

    def __init__(self, data: dict):
        _validate(data)
        self._data = data
        self._throughput = ThroughputModel.from_dict(data["throughput"])

    @property
    def as_of(self) -> str:
        return self._data["as_of"]

    @property
    def minimum_billed_seconds(self) -> int:
        return int(self._data["billing"]["minimum_seconds"])

    @property
    def throughput(self) -> ThroughputModel:
        return self._throughput

    @property
    def regions(self) -> list[str]:
        return sorted(self._data["ec2_per_hour"])

    def replaced(self, changes: dict) -> "PriceTable":
        """This table with ``changes`` merged over it (as a PRICE_TABLE file would be)."""
        return PriceTable(merge(self._data, changes))

    def instance_hour(self, *, region: str, instance_type: str) -> float:
        """On-demand $ per hour of ``instance_type`` in ``region``."""
        prices = self._region("ec2_per_hour", region, "EC2 prices")
        if instance_type not in prices:
            raise UnknownPrice(f"no EC2 price for {instance_type} in {region} in the price table of "
                               f"{self.as_of} (it has {', '.join(sorted(prices))}); add it with PRICE_TABLE")
        return float(prices[instance_type])

    def request_prices(self, region: str) -> RequestPrices:
        prices = self._region("s3_requests_per_1000", region, "S3 request prices")
        return RequestPrices(float(prices["write"]), float(prices["read"]))

    def transfer_per_gb(self, *, source_region: str, destination_region: str) -> float:
        """$ per GB moved from one region to another; 0 within a region."""
        out = self._region("transfer_out_per_gb", source_region, "inter-region transfer prices")
        self._region("transfer_out_per_gb", destination_region, "inter-region transfer prices")
        if source_region == destination_region:
            return 0.0
        pair = self._data.get("transfer_pair_per_gb", {}).get(f"{source_region}>{destination_region}")
        return float(out if pair is None else pair)

    def instance(self, instance_type: str) -> InstanceSpec:
        spec = self._data["instances"].get(instance_type)
        if spec is None:
            raise UnknownPrice(f"unknown instance type {instance_type!r}: the price table of {self.as_of} "
                               f"describes {', '.join(sorted(self._data['instances']))}")
        return InstanceSpec(int(spec["vcpus"]), float(spec["memory_gib"]), float(spec["network_gbps"]))

    def _region(self, section: str, region: str, what: str):
        found = self._data[section].get(region)
        if found is None:
            raise UnknownPrice(f"unknown region {region!r}: the price table of {self.as_of} has no {what} "
                               f"for it (it covers {', '.join(sorted(self._data[section]))}); "
                               f"add them with PRICE_TABLE")
        return found


def load_price_table(override: str | Path | None = None) -> PriceTable:
    """The shipped prices and throughput, with the ``override`` file (if any) merged over them."""
    data = _read(SHIPPED_PRICES)
    data["throughput"] = _read(SHIPPED_THROUGHPUT)
    if override is not None:
        data = merge(data, read_override(override))
    return PriceTable(data)


def price_table(config: dict) -> PriceTable:
    """The price table a head node with ``config`` uses (``PRICE_TABLE``)."""
    return load_price_table(config.get("PRICE_TABLE"))


def read_override(path: str | Path) -> dict:
    """The contents of a ``PRICE_TABLE`` file; ValueError saying what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"PRICE_TABLE {path}: cannot read it: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"PRICE_TABLE {path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"PRICE_TABLE {path}: must be a JSON object")
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise ValueError(f"PRICE_TABLE {path}: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(KNOWN_KEYS))})")
    return data


def check_override(path: str | Path) -> None:
    """Validate a ``PRICE_TABLE`` file as the head node loads it (at start); ValueError if unusable."""
    try:
        load_price_table(path)
    except EstimateError as exc:
        raise ValueError(f"PRICE_TABLE {path}: {exc}") from None


def merge(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in: nested mappings key by key, anything else replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _validate(data: dict) -> None:
    for section in PRICE_SECTIONS + ("as_of", "throughput"):
        if section not in data:
            raise EstimateError(f"the price table has no {section!r} section")
    for section in ("ec2_per_hour", "s3_requests_per_1000"):
        for region, prices in data[section].items():
            for name, price in prices.items():
                _non_negative(price, f"{section}.{region}.{name}")
    for section in ("transfer_out_per_gb", "transfer_pair_per_gb"):
        for name, price in data[section].items():
            _non_negative(price, f"{section}.{name}")
    for region, prices in data["s3_requests_per_1000"].items():
        if set(prices) != {"write", "read"}:
            raise EstimateError(f"s3_requests_per_1000.{region} needs exactly 'write' and 'read'")
    for name, spec in data["instances"].items():
        for field in ("vcpus", "memory_gib", "network_gbps"):
            if not _positive(spec.get(field)):
                raise EstimateError(f"instances.{name}.{field} must be a positive number")


def _non_negative(value, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise EstimateError(f"{where} must be a number of dollars, not negative (got {value!r})")


def _positive(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0
