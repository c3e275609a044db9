"""The ``cloudmover`` command: ``up``, ``serve``, ``cp``, ``codec``, ``aws launch``, ``backup`` and
``restore`` (``backup_cli``).

``cp`` runs an embedded head node in-process, with local worker processes and
a throwaway data directory, unless ``--data-dir`` names one to keep; with
``--head-node`` it runs the job on a head node already serving (``remote``).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from pipeline import errors
from pipeline.exiting import exit_now
from headnode import backup_cli, progress
from headnode.config import ensure_data_dir, ensure_secret, load_config
from headnode.savings import codec_summary

EXIT_FAILED, EXIT_USAGE = 1, 2


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="cloudmover", description="Copy and move data between object stores.")
    commands = parser.add_subparsers(dest="command", required=True)

    cp = commands.add_parser("cp", help="copy (or move) objects, with a live progress bar")
    cp.add_argument("source", help="s3://bucket/prefix, folder:NAME/path or a local path")
    cp.add_argument("destination")
    cp.add_argument("--move", action="store_true", help="delete each source once its copy is verified")
    cp.add_argument("--recursive", action="store_true", help="include objects under sub-prefixes")
    cp.add_argument("--sync", action="store_true", help="skip objects already present with the same checksum")
    cp.add_argument("--tier", choices=("express", "plus", "ultra"), default="express")
    cp.add_argument("--codec", choices=("none", "compress", "decompress"), default="none",
                    help="image codec: store images compressed (encoded in the source region), "
                         "or restore compressed objects (decoded in the destination region)")
    cp.add_argument("--endpoint-url", help="S3 endpoint for s3:// locations (S3-compatible stores)")
    cp.add_argument("--json", action="store_true", help="print the result as JSON, no progress bar")
    cp.add_argument("--data-dir", help="keep the embedded head node's database and queue here")
    cp.add_argument("--head-node", default=os.environ.get("CLOUDMOVER_HEAD_NODE"),
                    help="run the job on this running head node (https://HOST:9090; default "
                         "$CLOUDMOVER_HEAD_NODE) instead of an embedded one; its API token comes from "
                         "$CLOUDMOVER_API_TOKEN or --token-file")
    cp.add_argument("--token-file", help="file holding the head node's API token (its DATA_DIR/api.token, "
                                         "or a user's token)")
    cp.add_argument("--ca-file", default=os.environ.get("CLOUDMOVER_CA_FILE"),
                    help="certificate to trust for the head node (its DATA_DIR/tls/cert.pem when self-signed)")
    cp.set_defaults(run=_cp)

    for name, helptext in (("up", "the embedded default: head node, queues and local workers"),
                           ("serve", "the head node, with the worker fleet its configuration names "
                                     "(CLOUDMOVER_FLEET: none, local or ec2; default none)")):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--data-dir", help="where the database, queue and certificate live")
        sub.add_argument("--host")
        sub.add_argument("--port", type=int)
        sub.set_defaults(run=_serve, fleet="local" if name == "up" else None)

    _add_codec(commands, argv)
    backup_cli.add_parsers(commands)
    from headnode.launch import add_parser as add_aws   # stdlib only: boto3 loads when `aws launch` runs
    add_aws(commands)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.run(args)


def _add_codec(commands, argv: list[str]) -> None:
    """The ``codec`` command. Its parser needs the codec (numpy and the kernels, about 0.2 s
    to load), so only ``cloudmover codec …`` loads it; for any other command a stand-in
    keeps ``codec`` listed in the help."""
    if argv[:1] == ["codec"]:
        from codec import cli as codec_cli
        codec_cli.add_parser(commands)
    else:
        commands.add_parser("codec", help="the lossless image codec on local files")


def _cp(args) -> int:
    if args.head_node:
        return _cp_remote(args)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="cloudmover-cp-")
    try:
        return _run_cp(args, data_dir)
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


def _run_cp(args, data_dir: str) -> int:
    try:
        config = load_config({"DATA_DIR": data_dir, "FLEET": "local"})
    except ValueError as exc:
        print(f"cloudmover: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.data_dir and config["BUS_URL"].startswith("sqlite-queue:"):
        # The queue is deleted with the run: it need not survive a power loss (one fsync per
        # commit), only a killed worker, which NORMAL still does.
        config["BUS_OPTIONS"] = {"synchronous": "NORMAL", **config["BUS_OPTIONS"]}
    # Workers take a few tenths of a second to start: they start first, while this
    # process loads the head node and checks the job against the stores.
    fleet = _start_workers(config, args)
    try:
        from headnode.node import HeadNode

        node = HeadNode(config, fleet=fleet).start()
    except BaseException:
        if fleet:
            fleet.stop_all()
        raise
    try:
        try:
            job = node.service.create(source=args.source, destination=args.destination, move=args.move,
                                      recursive=args.recursive, sync=args.sync, tier=args.tier,
                                      endpoint_url=args.endpoint_url, submitted_by="cli", codec=args.codec)
        except errors.PipelineError as exc:
            print(f"cloudmover: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return _follow(node.service, job, as_json=args.json,
                       codec=lambda job: codec_summary(job, node.service.config))
    finally:
        node.stop()


def _cp_remote(args) -> int:
    """The job on a running head node: sent through its API, followed until it ends."""
    from headnode.remote import RemoteError, RemoteJobs

    if args.data_dir:
        print("cloudmover: --data-dir is for an embedded head node; not with --head-node", file=sys.stderr)
        return EXIT_USAGE
    try:
        token = (Path(args.token_file).read_text() if args.token_file
                 else os.environ.get("CLOUDMOVER_API_TOKEN", ""))
    except OSError as exc:
        print(f"cloudmover: cannot read the token file: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not token.strip():
        print("cloudmover: --head-node needs an API token: set CLOUDMOVER_API_TOKEN or use --token-file",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        jobs = RemoteJobs(args.head_node, token.strip(), ca_file=args.ca_file)
        job = jobs.create(source=args.source, destination=args.destination, move=args.move,
                          recursive=args.recursive, sync=args.sync, tier=args.tier, codec=args.codec,
                          endpoint_url=args.endpoint_url)
    except RemoteError as exc:
        print(f"cloudmover: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _follow(jobs, job, as_json=args.json, codec=lambda job: job.codec, refresh=0.5)
    except RemoteError as exc:   # the job goes on at the head node; say where to look
        print(f"cloudmover: lost the head node while following job {job.id}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _follow(service, job, *, as_json: bool, codec, refresh: float = progress.POLL_SECONDS) -> int:
    """Watch ``job`` to its end (Ctrl-C cancels it) and report it; the exit status.
    ``service``: the in-process job service or a running head node's (``remote.RemoteJobs``);
    ``codec(job)``: the job's codec summary."""
    try:
        job = progress.watch(service, job.id, quiet=as_json, refresh=refresh)
    except KeyboardInterrupt:
        service.cancel(job.id)
        print("cloudmover: cancelled", file=sys.stderr)
        return 130
    return _report(job, service.failures(job.id, limit=1000), codec=codec(job), as_json=as_json)


def _start_workers(config: dict, args):
    """The local fleet, with the workers of the job's region starting; None without one."""
    from headnode.demand import JobDemand
    from headnode.fleet import local_fleet
    from headnode.regions import region_of

    ensure_data_dir(config)
    ensure_secret(config, "SECRET_KEY", "secret.key")
    fleet = local_fleet(config)
    if fleet is None:
        return None
    try:
        region = region_of(args.source, args.destination, codec=args.codec, config=config)
    except errors.PipelineError:   # the job is refused when created, with this reason
        return fleet
    fleet.reconcile({region: [JobDemand(job_id=None, tier=args.tier, codec=args.codec, planned=False)]})
    return fleet


def _report(job, failures: list, *, codec: dict | None, as_json: bool) -> int:
    elapsed = ((job.finished_at or job.created_at) - (job.started_at or job.created_at)).total_seconds()
    summary = {"job_id": job.id, "state": job.state, "objects": job.objects_total,
               "copied": job.objects_done, "skipped": job.objects_skipped, "failed": job.objects_failed,
               "deleted": job.objects_deleted, "bytes": job.bytes_done, "seconds": round(elapsed, 3),
               "retries": job.retries, "error": job.error, "bytes_saved": job.bytes_saved,
               "codec": codec,
               "failures": [{"key": f.key, "reason": f.reason, "kind": f.kind} for f in failures]}
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{job.state.replace('_', ' ')}: {job.objects_done} copied, {job.objects_skipped} already present, "
              f"{job.objects_failed} failed, {job.objects_deleted} source(s) deleted; "
              f"{progress.transfer_text(job.bytes_done, elapsed)}")
        if summary["codec"]:
            print(_codec_line(summary["codec"]))
        if job.error:
            print(f"error: {job.error}", file=sys.stderr)
        for failure in failures:
            print(f"failed: {failure.key}: {failure.reason}", file=sys.stderr)
    return 0 if job.state == "complete" else EXIT_FAILED


def _codec_line(codec: dict) -> str:
    done = (f"{codec['objects_encoded']} image(s) encoded" if codec["mode"] == "compress"
            else f"{codec['objects_decoded']} image(s) decoded")
    storage = (f", storage {_usd(codec['storage_cost_saved_per_month_usd'])}/month"
               if codec["mode"] == "compress" else "")
    return (f"image codec ({codec['mode']}): {done}, {codec['bytes_saved']:,} bytes saved "
            f"(transfer {_usd(codec['transfer_cost_saved_usd'])}{storage})")


def _usd(amount: float) -> str:
    """Dollars to a hundredth of a cent; a saving too small for that says so, not "$0.0000"."""
    if 0 < amount < 0.00005:
        return "under $0.0001"
    return f"${amount:.4f}"


def _serve(args) -> int:
    from headnode.server import serve

    overrides = {"FLEET": args.fleet} if args.fleet else {}
    if not args.fleet and "CLOUDMOVER_FLEET" not in os.environ:
        overrides["FLEET"] = "none"
    for key, value in (("DATA_DIR", args.data_dir), ("HOST", args.host), ("PORT", args.port)):
        if value is not None:
            overrides[key] = value
    try:
        config = load_config(overrides)
    except ValueError as exc:
        print(f"cloudmover: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return serve(config)


def run() -> None:
    """The ``cloudmover`` command. The job is over once ``main`` returns: end at once."""
    exit_now(main())


if __name__ == "__main__":
    run()
