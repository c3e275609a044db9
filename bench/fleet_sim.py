"""Measure one worker's throughput, then predict big jobs per tier and region pair.

Step 1 (skipped with ``--no-measure``): one ``cloudmover-worker`` process (the
local fleet's express size) copies three corpora from a throwaway SeaweedFS
bucket through an in-process head node, as ``cloudmover cp`` does, twice per
copy mode: server-side (source and destination share endpoint and
credentials) and streamed (the destination folder carries its own access
key, so the worker GETs and PUTs every byte). The corpora:

    tiny    1 x 1 KiB           the fixed cost of one job
    small   2,000 x 16 KiB      dominated by per-object work
    large   3 x 128 MiB         multipart (2 parts each), dominated by bytes

For each mode the medians are fitted to ``t = overhead + items / items_per_s
+ bytes / bytes_per_s`` (items: whole objects plus parts; overhead: the tiny
job), and written, with the image codec's single-thread speed from
``bench/results/codec.json`` when ``bench/codec.py`` left one there, to
``bench/results/worker-throughput.json``; ``--ship`` also writes them over
``headnode/throughput.json``, the file the head node's estimate uses.

Step 2: the estimate model of ``headnode/estimate.py`` (the same function the
head node calls) predicts a 10 TB / 10,000,000-object job for each tier and a
few region pairs, server-side and streamed, and prints the table and its
assumptions.

    .venv/bin/python bench/fleet_sim.py                 # measure (about a minute), then predict
    .venv/bin/python bench/fleet_sim.py --no-measure    # predict from the stored measurement
"""
# ruff: noqa: E402  -- imports after the sys.path fix below.
import os
import sys

# Running bench/fleet_sim.py puts bench/ first on sys.path, where bench/copy.py would shadow the
# stdlib module `copy`; the repository root (for scripts/) goes there instead.
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == BENCH_DIR:
    sys.path[0] = REPO_ROOT

import argparse
import json
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.codec_build import source_digest
from headnode.estimate import estimate
from headnode.jobshape import JobShape
from headnode.pricing import SHIPPED_THROUGHPUT, load_price_table
from pipeline.planner import PlanSettings

KiB, MiB = 1 << 10, 1 << 20
RESULTS = Path(BENCH_DIR) / "results" / "worker-throughput.json"
CODEC_RESULTS = Path(BENCH_DIR) / "results" / "codec.json"
CORPORA = {"tiny": (1, 1 * KiB), "small": (2000, 16 * KiB), "large": (3, 128 * MiB)}
PART_SIZE = 64 * MiB
MODES = ("server_side", "streamed")
TIERS = ("express", "plus", "ultra")
ROUTES = (("us-east-1", "us-east-1"), ("us-east-1", "us-west-2"), ("us-east-1", "eu-west-1"),
          ("eu-west-1", "ap-southeast-2"))
# 10 TB (10^13 bytes) in 10,000,000 objects: mostly small files, the bytes mostly in medium ones,
# and a tail of multipart objects under 250 MB (so the m5.xlarge rule applies)
TB = 10**13
MIX_SMALL, MIX_MEDIUM = (9_000_000, 256 * KiB), (990_000, 6 * MiB)
MIX_LARGE_COUNT = 10_000
MIX_LARGE_SIZE = (TB - MIX_SMALL[0] * MIX_SMALL[1] - MIX_MEDIUM[0] * MIX_MEDIUM[1]) // MIX_LARGE_COUNT
MIX = (MIX_SMALL, MIX_MEDIUM, (MIX_LARGE_COUNT, MIX_LARGE_SIZE))


# -- step 1: measure ------------------------------------------------------------------------------

def items_of(count: int, size: int) -> int:
    """Whole objects, or parts for objects the planner splits (above PART_SIZE, as configured here)."""
    return count * -(-size // PART_SIZE) if size > PART_SIZE else count


def upload(client, bucket: str, prefix: str, count: int, size: int) -> None:
    body = os.urandom(size) if size <= 16 * MiB else None

    def put(i: int) -> None:
        data = body if body is not None else os.urandom(size)
        client.put_object(Bucket=bucket, Key=f"{prefix}/{i:06d}", Body=data)
    with ThreadPoolExecutor(8 if size <= 16 * MiB else 2) as pool:
        list(pool.map(put, range(count)))


def delete_prefix(client, bucket: str, prefix: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def timed_job(node, *, source: str, destination: str, expected: int, timeout: float) -> float:
    """Seconds from creating the copy job to its end, as ``cloudmover cp`` waits for it."""
    started = time.perf_counter()
    job = node.service.create(source=source, destination=destination, recursive=True, tier="express")
    while not (job := node.service.await_finish(job.id, timeout=1.0)).finished:
        if time.perf_counter() - started > timeout:
            node.service.cancel(job.id)
            raise RuntimeError(f"copy {source} took over {timeout} s")
    elapsed = time.perf_counter() - started
    if job.state != "complete" or job.objects_done != expected:
        raise RuntimeError(f"copy {source} -> {destination} ended {job.state}: "
                           f"{job.objects_done}/{expected} objects, {job.error or ''}")
    return elapsed


def fit(times: dict[str, float]) -> dict:
    """items_per_s and bytes_per_s from the small and large runs, the tiny run as fixed overhead."""
    overhead = times["tiny"]
    (n1, b1), (n2, b2) = [(items_of(*CORPORA[c]), CORPORA[c][0] * CORPORA[c][1]) for c in ("small", "large")]
    t1, t2 = max(times["small"] - overhead, 1e-3), max(times["large"] - overhead, 1e-3)
    det = n1 * b2 - n2 * b1
    per_item, per_byte = (t1 * b2 - t2 * b1) / det, (n1 * t2 - n2 * t1) / det
    if per_item <= 0 or per_byte <= 0:   # noise beat the fit: take each corpus as purely one term
        per_item, per_byte = t1 / n1, t2 / b2
    return {"items_per_s": 1 / per_item, "bytes_per_s": 1 / per_byte, "overhead_s": overhead}


def measure(repeat: int) -> dict:
    from scripts.localservers import SeaweedServer
    from headnode.node import HeadNode

    with SeaweedServer() as server, tempfile.TemporaryDirectory(prefix="cm-fleetsim-") as data_dir:
        for name, value in (("AWS_ACCESS_KEY_ID", server.access_key), ("AWS_SECRET_ACCESS_KEY", server.secret_key),
                            ("AWS_DEFAULT_REGION", server.region)):
            os.environ[name] = value
        client = server.client()
        for bucket in ("fleetsim-src", "fleetsim-dst"):
            client.create_bucket(Bucket=bucket)
        for corpus, (count, size) in CORPORA.items():
            print(f"== uploading {corpus}: {count} x {size:,} bytes", file=sys.stderr, flush=True)
            upload(client, "fleetsim-src", corpus, count, size)
        base = {"bucket": "fleetsim-dst", "endpoint_url": server.endpoint_url}
        folders = {"src": {"bucket": "fleetsim-src", "endpoint_url": server.endpoint_url},
                   "server_side": base,
                   "streamed": {**base, "access_key_id": server.access_key, "secret_access_key": server.secret_key}}
        node = HeadNode({"DATA_DIR": data_dir, "TLS": False, "SECRET_KEY": "fleet-sim", "API_TOKEN": "fleet-sim",
                         "FOLDERS": folders, "PART_SIZE": PART_SIZE, "MULTIPART_THRESHOLD": PART_SIZE,
                         "LOCAL_WORKERS": {"express": 1, "plus": 1, "ultra": 1}}).start()
        runs = []
        try:
            timed_job(node, source="folder:src/tiny/", destination="folder:server_side/warm/",
                      expected=1, timeout=120)   # starts the worker
            for run in range(repeat):
                for mode in MODES:
                    for corpus, (count, _) in CORPORA.items():
                        dest = f"{mode}/{corpus}/{run}"
                        seconds = timed_job(node, source=f"folder:src/{corpus}/", expected=count, timeout=600,
                                            destination=f"folder:{mode}/{dest}/")
                        delete_prefix(client, "fleetsim-dst", dest)
                        runs.append({"mode": mode, "corpus": corpus, "run": run, "seconds": seconds})
                        print(f"   {mode:<12} {corpus:<6} {seconds:7.2f} s", file=sys.stderr, flush=True)
        finally:
            node.stop()
    medians = {mode: {c: statistics.median(r["seconds"] for r in runs if r["mode"] == mode and r["corpus"] == c)
                      for c in CORPORA} for mode in MODES}
    fitted = {mode: fit(medians[mode]) for mode in MODES}
    return {"runs": runs, "fitted": fitted, "repeat": repeat}


def codec_rates(shipped: dict) -> dict:
    """The codec's single-thread MB/s from a full bench/codec.py run of this very codec, else the
    shipped values (with a warning)."""
    try:
        report = json.loads(CODEC_RESULTS.read_text())
        overall = report["summary"]["overall"]["cloudmover"]
        usable = (report.get("codec_sources") == source_digest() and not report["settings"]["quick"]
                  and report["settings"]["level"] == 2)
    except (OSError, KeyError, TypeError, ValueError):
        usable = False
    if not usable:
        print(f"note: {CODEC_RESULTS} is missing or not a full level-2 run of this codec; the codec's speed "
              f"stays as shipped (run bench/codec.py --json {CODEC_RESULTS} first)", file=sys.stderr)
        return shipped["codec"]
    return {"encode_bytes_per_s_per_vcpu": overall["encode_MBps"] * 1e6,
            "decode_bytes_per_s_per_vcpu": overall["decode_MBps"] * 1e6,
            "source": f"bench/codec.py, CloudMover one thread, overall over its corpus "
                      f"({CODEC_RESULTS.name} of {time.strftime('%Y-%m-%d', time.gmtime(CODEC_RESULTS.stat().st_mtime))})"}


def throughput_file(measured: dict, shipped: dict) -> dict:
    fitted = measured["fitted"]
    out = dict(shipped)
    out["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out["measured_on"] = (f"one cloudmover-worker process against SeaweedFS on the same {os.cpu_count()}-core "
                          f"machine ({platform.machine()}, 127.0.0.1), by bench/fleet_sim.py")
    out["worker"] = {mode: {"items_per_s": round(fitted[mode]["items_per_s"], 1),
                            "bytes_per_s": round(fitted[mode]["bytes_per_s"])} for mode in MODES}
    out["worker"]["job_overhead_s"] = round(statistics.median(fitted[m]["overhead_s"] for m in MODES), 3)
    out["codec"] = codec_rates(shipped)
    out["runs"] = measured["runs"]
    return out


# -- step 2: predict -------------------------------------------------------------------------------

def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def predict(table) -> list[dict]:
    shape = JobShape.from_mix(MIX, settings=PlanSettings())
    rows = []
    for source, destination in ROUTES:
        for server_side in (True, False):
            for tier in TIERS:
                est = estimate(shape, kind="copy", tier=tier, source_region=source, destination_region=destination,
                               table=table, server_side=server_side)
                rows.append(est)
    return rows


def print_prediction(table, rows) -> None:
    shape = rows[0].shape
    print(f"\n10 TB / 10,000,000-object copy: {MIX_SMALL[0]:,} x {MIX_SMALL[1] // KiB} KiB, "
          f"{MIX_MEDIUM[0]:,} x {MIX_MEDIUM[1] // MiB} MiB, {MIX_LARGE_COUNT:,} x {MIX_LARGE_SIZE / 1e6:.1f} MB "
          f"({shape.bytes:,} bytes; {shape.multipart_objects:,} multipart objects in {shape.parts:,} parts)")
    head = (f"{'route':<28}{'mode':<13}{'tier':<9}{'workers':>12}{'duration':>11}{'inst-h':>9}{'EC2 $':>9}"
            f"{'S3 req $':>10}{'xfer $':>9}{'total $':>10}  limited by")
    print(head)
    for est in rows:
        route = f"{est.source_region} -> {est.destination_region}"
        mode = "server-side" if est.server_side else "streamed"
        print(f"{route:<28}{mode:<13}{est.tier:<9}{f'{est.workers} x {est.instance_type}':>12}"
              f"{hours(est.duration_s):>11}{est.instance_hours:>9.1f}{est.instance_cost:>9.2f}"
              f"{est.request_cost:>10.2f}{est.transfer_cost:>9.2f}{est.total_cost:>10.2f}  "
              f"{', '.join(dict.fromkeys(est.rates.limited_by)) or 'measured worker rates'}")
    model = table.throughput
    print("\nAssumptions:")
    for note in rows[0].assumptions:
        print(f"- {note}")
    print(f"- one worker process, measured: server-side {model.server_side.items_per_s:,.0f} items/s and "
          f"{model.server_side.bytes_per_s / 1e6:,.0f} MB/s, streamed {model.streamed.items_per_s:,.0f} items/s and "
          f"{model.streamed.bytes_per_s / 1e6:,.0f} MB/s (t = items/items_per_s + bytes/bytes_per_s); "
          f"per-job overhead {model.job_overhead_s:.2f} s")
    print(f"- S3 server-side copy {model.server_copy_bytes_per_s_per_request / 1e6:.0f} MB/s per request in a region, "
          f"{model.server_copy_cross_region_bytes_per_s_per_request / 1e6:.0f} MB/s between regions (assumed); "
          f"streamed copies capped by each instance's baseline network bandwidth")
    print("- throughput scales linearly with instances up to the S3 write-request cap; listing and planning "
          "(by the head node) keep ahead of the workers; no retries or throttling")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-measure", action="store_true", help="reuse the stored throughput measurement")
    parser.add_argument("--repeat", type=int, default=2, help="runs per mode and corpus (median taken)")
    parser.add_argument("--ship", action="store_true", help="also write the measurement over headnode/throughput.json")
    parser.add_argument("--json-out", type=Path, help="also write the predictions here")
    args = parser.parse_args(argv)
    shipped = json.loads(SHIPPED_THROUGHPUT.read_text())
    if args.no_measure:
        throughput = json.loads(RESULTS.read_text()) if RESULTS.exists() else shipped
        print(f"throughput from {RESULTS if RESULTS.exists() else SHIPPED_THROUGHPUT}", file=sys.stderr)
    else:
        throughput = throughput_file(measure(args.repeat), shipped)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(throughput, indent=2) + "\n")
        print(f"wrote {RESULTS}", file=sys.stderr)
        if args.ship:
            SHIPPED_THROUGHPUT.write_text(json.dumps(throughput, indent=2) + "\n")
            print(f"wrote {SHIPPED_THROUGHPUT}", file=sys.stderr)
    table = load_price_table().replaced({"throughput": throughput})
    rows = predict(table)
    print_prediction(table, rows)
    if args.json_out:
        args.json_out.write_text(json.dumps([row.to_dict() for row in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
