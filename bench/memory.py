"""Head node memory on a big job: peak RSS while copying N small objects.

Runs ``cloudmover cp`` (whose process is the embedded head node; workers are
separate processes) on N small files and samples the head node's resident
memory, reporting the peak next to the job's size, so a leak or a listing
held whole in memory shows as a peak that grows with N.

    python bench/memory.py --objects 100000            # local directory → local directory
    python bench/memory.py --objects 100000 --s3       # local directory → a SeaweedFS bucket
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def make_files(root: Path, count: int, size: int) -> None:
    payload = os.urandom(size)
    for n in range(count):
        directory = root / f"d{n // 1000:04d}"
        if n % 1000 == 0:
            directory.mkdir(parents=True)
        (directory / f"f{n:07d}").write_bytes(payload)


def sample_peak(process: subprocess.Popen, peak: list) -> None:
    handle = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            peak[0] = max(peak[0], handle.memory_info().rss)
        except psutil.Error:
            return
        time.sleep(0.05)


def run(source: Path, destination: str, env: dict) -> dict:
    command = [str(Path(sys.executable).parent / "cloudmover"), "cp", str(source), destination,
               "--recursive", "--json", "--tier", "ultra"]
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    sampler = threading.Thread(target=sample_peak, args=(process, peak))
    sampler.start()
    out, err = process.communicate()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"cloudmover cp failed ({process.returncode}): {err[-2000:]}")
    result = json.loads(out)
    return {"objects": result["copied"], "seconds": round(time.monotonic() - started, 1),
            "head_node_peak_rss_mib": round(peak[0] / 2**20, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per object")
    parser.add_argument("--s3", action="store_true", help="copy into a local SeaweedFS bucket")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cm-bench-memory-") as temp:
        source = Path(temp) / "source"
        make_files(source, args.objects, args.size)
        env = {**os.environ, "CLOUDMOVER_BATCH_OBJECTS": "200"}
        if args.s3:
            from localservers import SeaweedServer
            with SeaweedServer(buckets=("bench-memory",)) as s3:
                env.update(AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key,
                           CLOUDMOVER_ENDPOINT_URL=s3.endpoint_url)
                result = run(source, "s3://bench-memory/copy/", env)
        else:
            result = run(source, str(Path(temp) / "destination"), env)
    print(json.dumps(result))
    print(f"{result['objects']:,} objects in {result['seconds']} s; "
          f"head node peak RSS {result['head_node_peak_rss_mib']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
