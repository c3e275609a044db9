"""The cost and time estimate (headnode/estimate.py) against hand calculations from the shipped
price table, price overrides, clear errors, listing-based job shapes on a real SeaweedFS bucket
and on a local directory, and the instance-hours a finished job used."""
from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest

from headnode.config import load_config
from headnode.estimate import Fleet, actual_usage, choose_fleet, estimate, estimate_copy
from headnode.jobshape import JobShape, shape_from_listing
from headnode.pricing import SHIPPED_THROUGHPUT, EstimateError, UnknownPrice, load_price_table, price_table
from pipeline.planner import Location, PlanSettings
from pipeline.store import StoreSpec, open_store

MiB, GiB = 1 << 20, 1 << 30


@pytest.fixture(scope="module")
def table():
    return load_price_table()


@pytest.fixture(scope="module")
def measured():
    """The shipped throughput file, read directly (the hand calculation uses its numbers)."""
    return json.loads(SHIPPED_THROUGHPUT.read_text())


def known_job() -> JobShape:
    return JobShape.from_sizes([1 * MiB] * 1000 + [300_000_000] * 3)


def test_known_job_matches_hand_calculation(table, measured):
    est = estimate(known_job(), kind="copy", tier="plus", source_region="us-east-1",
                   destination_region="eu-west-1", table=table)

    # fleet: Plus is 12 workers; a 300 MB object (over 250 MB) asks for m5.2xlarge; in the destination region
    assert (est.workers, est.instance_type, est.worker_region) == (12, "m5.2xlarge", "eu-west-1")
    # planner: 300,000,000 / 64 MiB = 4.47 -> 5 parts each
    parts = 3 * 5
    items = 1000 + parts
    total_bytes = 1000 * MiB + 3 * 300_000_000
    assert (est.shape.multipart_objects, est.shape.parts, est.items) == (3, parts, items)

    # S3 requests, server-side copy. Source (us-east-1): 1 LIST page of 1,000 keys + 1 more; a HEAD and a
    # tags GET per multipart object. Destination (eu-west-1): 1,000 COPY, 3 create + 3 complete, 15
    # UploadPartCopy; a HEAD per multipart object to verify.
    assert (est.requests.source_write, est.requests.source_read) == (2, 6)
    assert (est.requests.destination_write, est.requests.destination_read) == (1021, 3)
    # prices per 1,000 requests, us-east-1 and eu-west-1 alike: write $0.005, read $0.0004
    request_cost = (2 * 0.005 + 6 * 0.0004) / 1000 + (1021 * 0.005 + 3 * 0.0004) / 1000
    assert est.request_cost == pytest.approx(request_cost)

    # inter-region transfer out of us-east-1: $0.02 per GB of 2**30 bytes
    assert est.transfer_gb == pytest.approx(total_bytes / GiB)
    assert est.transfer_cost == pytest.approx(total_bytes / GiB * 0.02)

    # duration: 4 worker processes per m5.2xlarge (8 vCPUs, one per 2), server-side, between regions
    worker, model = measured["worker"]["server_side"], measured["model"]
    latency, copy_rate = model["request_latency_s"], model["server_copy_bytes_per_s_per_request"]["cross_region"]
    in_flight_items = (1000 * model["object_threads"] + parts * model["part_threads"]) / items
    in_flight_bytes = (1000 * MiB * model["object_threads"] + 900_000_000 * model["part_threads"]) / total_bytes
    process_items = min(worker["items_per_s"], in_flight_items / latency)
    process_bytes = min(worker["bytes_per_s"], in_flight_bytes * copy_rate)
    fleet_items = min(12 * 4 * process_items, model["store_write_requests_per_s"])
    fleet_bytes = 12 * 4 * process_bytes
    transfer_s = items / fleet_items + total_bytes / fleet_bytes
    assert est.transfer_s == pytest.approx(transfer_s)
    assert est.duration_s == pytest.approx(model["boot_s"] + measured["worker"]["job_overhead_s"] + transfer_s)

    # instance-hours: 12 instances from boot to idle retirement, per second, at least 60 s; m5.2xlarge
    # in eu-west-1 is $0.428 an hour
    billed = max(60, math.ceil(model["boot_s"] + transfer_s + model["idle_s"]))
    assert est.billed_seconds_per_instance == billed
    assert est.instance_hours == pytest.approx(12 * billed / 3600)
    assert est.instance_cost == pytest.approx(12 * billed / 3600 * 0.428)
    assert est.total_cost == pytest.approx(12 * billed / 3600 * 0.428 + request_cost + total_bytes / GiB * 0.02)

    shown = est.to_dict()
    assert shown["total_cost"] == pytest.approx(est.total_cost)
    assert shown["requests"]["cost"] == pytest.approx(request_cost)
    assert shown["price_table_as_of"] == table.as_of and shown["shape"]["exact"] is True


def test_same_region_server_side_copy_has_no_transfer_charge(table):
    est = estimate(known_job(), kind="copy", tier="express", source_region="eu-west-1",
                   destination_region="eu-west-1", table=table)
    assert (est.transfer_gb, est.transfer_cost, est.workers) == (0.0, 0.0, 4)


def test_streamed_copy_reads_every_byte_and_move_heads_each_copy(table):
    est = estimate(known_job(), kind="move", tier="express", source_region="us-east-1",
                   destination_region="us-west-2", table=table, server_side=False)
    # source: LIST x2; HEAD + tags GET x3; a GET per whole object and per part
    assert (est.requests.source_write, est.requests.source_read) == (2, 6 + 1000 + 15)
    # destination: the same writes as a server-side copy; HEADs: 3 verifications + 1003 before deletes
    assert (est.requests.destination_write, est.requests.destination_read) == (1021, 3 + 1003)
    assert est.rates.mode == "streamed" and est.server_side is False


def test_compress_job_works_in_the_source_region_and_moves_encoded_bytes(table):
    shape = JobShape.from_sizes([8 * MiB] * 100)
    est = estimate(shape, kind="compress", tier="plus", source_region="eu-west-1",
                   destination_region="us-east-1", table=table, codec_ratio=2.0,
                   plan=PlanSettings(whole_object_limit=GiB))
    assert (est.workers, est.instance_type, est.worker_region) == (15, "c5.9xlarge", "eu-west-1")
    assert est.price_per_instance_hour == 1.728
    assert est.transfer_bytes == 100 * 8 * MiB // 2
    assert est.transfer_cost == pytest.approx(100 * 8 * MiB / 2 / GiB * 0.02)


@pytest.mark.parametrize("kind,largest,codec_max,expected", [
    ("copy", 250_000_000, GiB, "m5.xlarge"),
    ("move", 250_000_001, GiB, "m5.2xlarge"),
    ("copy", 64 * MiB * 10_000, GiB, "m5.2xlarge"),
    ("copy", 64 * MiB * 10_000 + 1, GiB, "m5.4xlarge"),
    ("compress", 3 * GiB, GiB, "c5.9xlarge"),         # moves unchanged: the codec never holds it
    ("decompress", 3 * GiB, 5 * GiB, "c5.18xlarge"),
    ("compress", 2 * GiB, 5 * GiB, "c5.9xlarge"),
])
def test_instance_type_rules(kind, largest, codec_max, expected):
    assert choose_fleet(kind=kind, tier="express", largest_object=largest,
                        codec_max_object=codec_max).instance_type == expected


@pytest.mark.parametrize("kind,counts", [("copy", (4, 12, 40)), ("compress", (5, 15, 45))])
def test_worker_count_per_tier(kind, counts):
    assert tuple(choose_fleet(kind=kind, tier=tier, largest_object=0).count
                 for tier in ("express", "plus", "ultra")) == counts


def test_price_override_through_the_config_file(tmp_path):
    override = tmp_path / "prices.json"
    override.write_text(json.dumps({"ec2_per_hour": {"eu-west-1": {"m5.2xlarge": 1.0}},
                                    "transfer_out_per_gb": {"us-east-1": 0.05},
                                    "throughput": {"model": {"boot_s": 0, "idle_s": 0}}}))
    config = load_config({"DATA_DIR": str(tmp_path / "data"), "PRICE_TABLE": str(override)})
    table = price_table(config)
    est = estimate(known_job(), kind="copy", tier="plus", source_region="us-east-1",
                   destination_region="eu-west-1", table=table)
    assert est.price_per_instance_hour == 1.0
    assert est.instance_cost == pytest.approx(12 * est.billed_seconds_per_instance / 3600 * 1.0)
    assert est.transfer_price_per_gb == 0.05
    assert est.billed_seconds_per_instance == max(60, math.ceil(est.transfer_s))   # no boot, no idle
    # what the file does not name keeps its shipped price
    assert table.instance_hour(region="eu-west-1", instance_type="m5.xlarge") == 0.214
    assert table.transfer_per_gb(source_region="eu-west-1", destination_region="us-east-1") == 0.02


@pytest.mark.parametrize("content,reason", [
    (None, "cannot read it"),
    ("{not json", "not valid JSON"),
    (json.dumps({"ec2_prices": {}}), "unknown key(s) ec2_prices"),
    (json.dumps({"ec2_per_hour": {"us-east-1": {"m5.xlarge": -1}}}), "not negative"),
    (json.dumps({"throughput": {"worker": {"streamed": {"items_per_s": 0}}}}), "positive rates"),
])
def test_a_bad_price_table_refuses_to_start(tmp_path, content, reason):
    path = tmp_path / "prices.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match="PRICE_TABLE") as raised:
        load_config({"DATA_DIR": str(tmp_path / "data"), "PRICE_TABLE": str(path)})
    assert reason in str(raised.value)


def test_unknown_region_or_instance_type_is_a_clear_error(table):
    with pytest.raises(UnknownPrice, match=r"unknown region 'mars-north-1'.*PRICE_TABLE"):
        estimate(known_job(), kind="copy", tier="plus", source_region="us-east-1",
                 destination_region="mars-north-1", table=table)
    with pytest.raises(UnknownPrice, match=r"unknown region 'mars-north-1'"):   # a source region's transfer price
        estimate(known_job(), kind="copy", tier="plus", source_region="mars-north-1",
                 destination_region="us-east-1", table=table)
    with pytest.raises(UnknownPrice, match=r"no EC2 price for z9\.huge in us-east-1"):
        table.instance_hour(region="us-east-1", instance_type="z9.huge")
    with pytest.raises(UnknownPrice, match=r"unknown instance type 'z9\.huge'"):
        table.instance("z9.huge")
    with pytest.raises(EstimateError, match="unknown delivery tier 'turbo'"):
        estimate(known_job(), kind="copy", tier="turbo", source_region="us-east-1",
                 destination_region="us-east-1", table=table)
    assert UnknownPrice.code == "unknown_price"


def test_a_shape_given_as_counts_estimates_its_parts(table):
    shape = JobShape(objects=1003, bytes=1000 * MiB + 900_000_000, multipart_objects=3,
                     multipart_bytes=900_000_000, largest_object=300_000_000)
    est = estimate(shape, kind="copy", tier="plus", source_region="us-east-1", destination_region="eu-west-1",
                   table=table)
    assert est.items == 1000 + math.ceil(900_000_000 / (64 * MiB))
    assert any("parts estimated" in note for note in est.assumptions)


# -- job shapes from listings ------------------------------------------------------------------------

def sizes_of(count: int) -> list[int]:
    return [1000 + (i % 7) * 100 for i in range(count)]


@pytest.fixture
def numbered_bucket(buckets, s3_env):
    """1,200 objects est/00000 … est/01199 (1,000-1,600 bytes) in a fresh SeaweedFS bucket."""
    client, source = s3_env.client(), buckets[0]
    sizes = sizes_of(1200)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.put_object(Bucket=source, Key=f"est/{i:05d}", Body=b"x" * sizes[i]),
                      range(len(sizes))))
    store = open_store(StoreSpec("s3", source, s3_env.region, s3_env.endpoint_url))
    yield store, sizes
    store.close()


def test_a_listing_that_fits_the_budget_is_exact(numbered_bucket):
    store, sizes = numbered_bucket
    shape = shape_from_listing(store, "est/", page_size=50, max_pages=30)
    assert shape.exact and shape.method == "full listing"
    assert (shape.objects, shape.bytes, shape.largest_object) == (1200, sum(sizes), max(sizes))
    assert shape.list_requests == 1200 // 50   # S3 marks the last page: no request after it


def test_a_huge_prefix_is_sampled_within_tolerance(numbered_bucket):
    """1,200 keys, 8 pages of 50 taken whole: the rest estimated from a bounded sample, within 10%."""
    store, sizes = numbered_bucket
    shape = shape_from_listing(store, "est/", page_size=50, max_pages=8, probes=32)
    assert not shape.exact and shape.method.startswith("sampled")
    # listed: 8 pages and the one that showed more, 2 spread pages, at most 4 walked from the last key
    assert shape.sampled_objects <= (8 + 1 + 2 + 4) * 50 < 1200
    assert shape.list_requests <= 8 + 1 + 2 + 32 + 4
    assert shape.objects == pytest.approx(1200, rel=0.10)
    assert shape.bytes == pytest.approx(sum(sizes), rel=0.10)


def test_estimate_of_a_copy_between_two_buckets(numbered_bucket, buckets, s3_env, tmp_path):
    """From locations as the head node parses them: the listing, REGION for a bucket without one,
    server-side because the two buckets share endpoint and credentials."""
    store, sizes = numbered_bucket
    config = load_config({"DATA_DIR": str(tmp_path / "data")})
    source = Location(StoreSpec("s3", buckets[0], None, s3_env.endpoint_url), "est/")
    destination = Location(StoreSpec("s3", buckets[1], "eu-west-1", s3_env.endpoint_url), "copy/")
    est = estimate_copy(source, destination, source_store=store, kind="copy", tier="express", config=config)
    assert (est.shape.objects, est.shape.bytes, est.shape.exact) == (1200, sum(sizes), True)
    assert (est.source_region, est.worker_region, est.server_side) == ("us-east-1", "eu-west-1", True)
    assert est.transfer_cost == pytest.approx(sum(sizes) / GiB * 0.02)
    local = Location(StoreSpec("local", str(tmp_path)), "")
    with pytest.raises(EstimateError, match="local directory has no region"):
        estimate_copy(local, destination, source_store=store, kind="copy", tier="express", config=config)


def test_a_local_directory_is_sampled_the_same_way(tmp_path):
    sizes = sizes_of(600)
    for i, size in enumerate(sizes):
        (tmp_path / f"f{i:04d}.dat").write_bytes(b"y" * size)
    store = open_store(StoreSpec("local", str(tmp_path)))
    sampled = shape_from_listing(store, "", page_size=20, max_pages=6, probes=32)
    assert not sampled.exact and sampled.objects == pytest.approx(600, rel=0.10)
    exact = shape_from_listing(store, "", page_size=20, max_pages=40)
    assert exact.exact and (exact.objects, exact.bytes) == (600, sum(sizes))


def test_listing_shape_splits_objects_as_the_planner_does(tmp_path):
    (tmp_path / "big").write_bytes(b"\0" * (3 * MiB + 1))
    (tmp_path / "small").write_bytes(b"\0" * 10)
    store = open_store(StoreSpec("local", str(tmp_path)))
    copy = shape_from_listing(store, "", settings=PlanSettings(multipart_threshold=MiB, part_size=MiB))
    assert (copy.multipart_objects, copy.multipart_bytes, copy.parts) == (1, 3 * MiB + 1, 4)
    codec = shape_from_listing(store, "", settings=PlanSettings(multipart_threshold=MiB, part_size=MiB,
                                                                whole_object_limit=4 * MiB))
    assert (codec.multipart_objects, codec.parts) == (0, 0)     # the codec takes it whole
    assert JobShape.from_sizes([3 * MiB + 1, 10], settings=PlanSettings(multipart_threshold=MiB,
                                                                        part_size=MiB)) == copy.__class__(
        objects=2, bytes=3 * MiB + 11, multipart_objects=1, multipart_bytes=3 * MiB + 1, parts=4,
        largest_object=3 * MiB + 1, sampled_objects=2, method="sizes")


# -- what a job used ---------------------------------------------------------------------------------

def test_actual_instance_hours_from_launch_and_termination_records(table):
    t0 = datetime(2026, 11, 26, 12, 0, 0)
    runs = [("m5.xlarge", t0, t0 + timedelta(seconds=30)),              # billed the 60 s minimum
            ("m5.xlarge", t0, t0 + timedelta(seconds=3600.4)),          # per second, rounded up
            ("m5.2xlarge", t0.timestamp() + 0, None)]                    # still running at `now`
    usage = actual_usage(runs, region="us-east-1", table=table, now=t0 + timedelta(seconds=120))
    by_type = {line.instance_type: line for line in usage.lines}
    assert (by_type["m5.xlarge"].instances, by_type["m5.xlarge"].billed_seconds) == (2, 60 + 3601)
    assert by_type["m5.2xlarge"].billed_seconds == 120 and usage.still_running == 1
    assert usage.instance_hours == pytest.approx((60 + 3601 + 120) / 3600)
    assert usage.cost == pytest.approx((60 + 3601) / 3600 * 0.192 + 120 / 3600 * 0.384)
    assert usage.to_dict()["lines"][0]["instance_type"] == "m5.2xlarge"


def test_usage_records_that_make_no_sense_are_refused(table):
    t0 = datetime(2026, 11, 26, 12, 0, 0)
    with pytest.raises(EstimateError, match="stopped before it started"):
        actual_usage([("m5.xlarge", t0, t0 - timedelta(seconds=1))], region="us-east-1", table=table)
    with pytest.raises(UnknownPrice, match="z9.huge"):
        actual_usage([("z9.huge", t0, t0)], region="us-east-1", table=table)


def test_fleet_is_a_plain_value():
    assert choose_fleet(kind="copy", tier="ultra", largest_object=1) == Fleet("m5.xlarge", 40, "no object over 250 MB")
