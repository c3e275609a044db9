"""The README's run command: CloudMover on one machine, with something to copy.

Starts a local S3-compatible server (SeaweedFS, from PyPI) holding two demo
buckets, ``demo-source`` (sample data: many small files, a few large ones)
and ``demo-destination``; runs a first copy job between them with
``cloudmover cp`` (live progress bar); then runs the embedded default,
``cloudmover up``, until Ctrl-C, and prints how to use it.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localservers import SeaweedServer  # noqa: E402

from codec.formats.samples import picture, write_dpx, write_tiff  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CLOUDMOVER_DATA_DIR", ROOT / "cloudmover-data")).resolve()
BIN = Path(sys.executable).parent


def seed(client) -> None:
    if client.list_objects_v2(Bucket="demo-source", MaxKeys=1).get("KeyCount"):
        return
    rng = random.Random(2026)
    files = {f"frames/shot-{n // 100:02d}/frame-{n:05d}.dpx": rng.randbytes(rng.randint(4_000, 64_000))
             for n in range(500)}
    files.update({f"masters/reel-{n}.mov": rng.randbytes(80 << 20) for n in range(2)})
    # and real frames, for the image codec (the names above hold random bytes, which it moves unchanged)
    files.update({f"frames/plates/plate-{n:03d}.dpx": write_dpx(picture(n, height=540, width=960), bits=10)
                  for n in range(6)})
    files.update({f"frames/plates/scan-{n:03d}.tif": write_tiff(picture(n, height=480, width=640, bits=16))
                  for n in range(4)})
    files["README.txt"] = b"Sample data for the CloudMover demo.\n"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket="demo-source", Key=kv[0], Body=kv[1]), files.items()))


def _interrupt(*_):
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    port = int(os.environ.get("CLOUDMOVER_DEMO_S3_PORT", 8333))
    with SeaweedServer(DATA / "seaweed", s3_port=port, buckets=("demo-source", "demo-destination")) as s3:
        seed(s3.client())
        env = {**os.environ, "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
               "AWS_DEFAULT_REGION": s3.region, "CLOUDMOVER_ENDPOINT_URL": s3.endpoint_url}
        print(f"\nLocal S3 server: {s3.endpoint_url} (key {s3.access_key}); buckets demo-source, "
              f"demo-destination\n\nFirst job: copy s3://demo-source/ to s3://demo-destination/\n", flush=True)
        first = subprocess.run([BIN / "cloudmover", "cp", "s3://demo-source/", "s3://demo-destination/",
                                "--recursive", "--endpoint-url", s3.endpoint_url], env=env)
        print(f"\nTry it yourself (in another shell):\n"
              f"  export AWS_ACCESS_KEY_ID={s3.access_key} AWS_SECRET_ACCESS_KEY=cloudmover-test-secret  # the demo server's key\n"
              f"  .venv/bin/cloudmover cp s3://demo-source/frames/ s3://demo-destination/again/ --recursive "
              f"--endpoint-url {s3.endpoint_url}\n\nStarting the embedded default (Ctrl-C stops it)…\n"
              f"In the web UI, add folders with endpoint {s3.endpoint_url}, region {s3.region}, access key pair "
              f"{s3.access_key} / cloudmover-test-secret, buckets demo-source and demo-destination.\n", flush=True)
        up = subprocess.Popen([BIN / "cloudmover", "up", "--data-dir", str(DATA / "headnode")], env=env)
        try:
            up.wait()
        except KeyboardInterrupt:
            up.terminate()
            up.wait()
        return first.returncode


if __name__ == "__main__":
    sys.exit(main())
