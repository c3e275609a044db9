"""``cloudmover codec encode|decode|info|bench PATH…``: the codec on local files.

``encode`` writes ``PATH.cmv`` beside each file, ``decode`` writes the original
back (``PATH.cmv`` → ``PATH``), refusing to overwrite unless ``--force``;
``info`` prints what a container holds; ``bench`` round-trips each file in
memory ``--repeat`` times and prints its ratio and its best encode/decode MB/s
(a first run pays for setting up: threads, tables, buffers).  A file that fails
is reported with the codec's reason and the exit status is non-zero; the
others still run.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import codec
from codec.errors import CodecError

SUFFIX = ".cmv"


def add_parser(commands) -> None:
    parser = commands.add_parser("codec", help="the lossless image codec on local files")
    actions = parser.add_subparsers(dest="codec_action", required=True)
    for name, helptext in (("encode", f"compress each file into FILE{SUFFIX}"),
                           ("decode", f"restore each FILE{SUFFIX} to FILE, byte for byte"),
                           ("info", "describe each container"),
                           ("bench", "round-trip each file in memory: ratio and MB/s")):
        action = actions.add_parser(name, help=helptext)
        action.add_argument("paths", nargs="+", metavar="PATH")
        action.add_argument("--threads", type=int, help="threads per file (default: the machine's cores)")
        if name in ("encode", "bench"):
            action.add_argument("--level", type=int, choices=codec.LEVELS, default=codec.DEFAULT_LEVEL)
        if name in ("encode", "decode"):
            action.add_argument("--force", action="store_true", help="overwrite existing outputs")
        if name in ("info", "bench"):
            action.add_argument("--json", action="store_true", help="print JSON")
        if name == "bench":
            action.add_argument("--repeat", type=_positive, default=3, help="round trips per file, best kept "
                                "(default 3)")
        action.set_defaults(run=run)


def run(args) -> int:
    handler = {"encode": _encode, "decode": _decode, "info": _info, "bench": _bench}[args.codec_action]
    failed = 0
    results = []
    for name in args.paths:
        path = Path(name)
        try:
            if path.is_dir():
                raise CodecError(f"is a directory: name the files in it (such as {path / '*'})")
            results.append(handler(path, args))
        except (CodecError, OSError) as error:
            failed += 1
            print(f"{path}: {_reason(error)}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps(results, indent=2))
    elif args.codec_action == "bench" and len(results) > 1:
        _print_bench_total(results)
    return 1 if failed else 0


def _encode(path: Path, args) -> dict:
    target = path.with_name(path.name + SUFFIX)
    _refuse_overwrite(target, args.force)
    data = path.read_bytes()
    encoded = codec.encode(data, level=args.level, threads=args.threads)
    _write(target, encoded)
    kind = codec.info(encoded)["format"] or "not an image (stored generically)"
    print(f"{path} → {target}: {len(data):,} → {len(encoded):,} bytes ({_ratio(len(data), len(encoded))}, {kind})")
    return {}


def _decode(path: Path, args) -> dict:
    if path.suffix != SUFFIX:
        raise CodecError(f"expected a {SUFFIX} file")
    target = path.with_suffix("")
    _refuse_overwrite(target, args.force)
    decoded = codec.decode(path.read_bytes(), threads=args.threads)
    _write(target, decoded)
    print(f"{path} → {target}: {len(decoded):,} bytes, checksum verified")
    return {}


def _info(path: Path, args) -> dict:
    described = codec.info(path.read_bytes())
    described["path"] = str(path)
    if not args.json:
        print(f"{path}: {described['format'] or 'not an image'}, {described['original_size']:,} → "
              f"{described['encoded_size']:,} bytes ({_ratio(described['original_size'], described['encoded_size'])}), "
              f"{len(described['rasters'])} raster(s), {described['checksum']}")
        for raster in described["rasters"]:
            print(f"  {raster['width']}×{raster['height']}×{raster['channels']} {raster['bits']}-bit "
                  f"{raster['sample']} at {raster['offset']}: {raster['method']}, {raster['encoded_size']:,} bytes")
    return described


def _bench(path: Path, args) -> dict:
    data = path.read_bytes()
    encode_s = decode_s = float("inf")
    for attempt in range(args.repeat):
        started = time.perf_counter()
        encoded = codec.encode(data, level=args.level, threads=args.threads)
        encoded_at = time.perf_counter()
        decoded = codec.decode(encoded, threads=args.threads)
        decoded_at = time.perf_counter()
        if attempt == 0 and decoded != data:
            raise CodecError("round trip gave different bytes")
        encode_s, decode_s = min(encode_s, encoded_at - started), min(decode_s, decoded_at - encoded_at)
    result = {"path": str(path), "format": codec.info(encoded)["format"], "size": len(data),
              "encoded_size": len(encoded), "encode_s": encode_s, "decode_s": decode_s, "runs": args.repeat}
    if not args.json:
        print(f"{path}: {result['format'] or 'not an image'}, {_ratio(len(data), len(encoded))}, "
              f"encode {_rate(len(data), encode_s)}, decode {_rate(len(data), decode_s)} (best of {args.repeat}), "
              f"bit-exact")
    return result


def _print_bench_total(results: list[dict]) -> None:
    size = sum(r["size"] for r in results)
    encoded = sum(r["encoded_size"] for r in results)
    print(f"total: {len(results)} files, {_ratio(size, encoded)}, "
          f"encode {_rate(size, sum(r['encode_s'] for r in results))}, "
          f"decode {_rate(size, sum(r['decode_s'] for r in results))}")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _refuse_overwrite(target: Path, force: bool) -> None:
    if target.exists() and not force:
        raise CodecError(f"{target} exists (use --force to overwrite)")


def _write(target: Path, data: bytes) -> None:
    # write beside, then rename: an interrupted run never leaves a half file under the real name
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    partial.replace(target)


def _ratio(original: int, encoded: int) -> str:
    return f"ratio {original / encoded:.3f}" if encoded else "ratio n/a"


def _rate(size: int, seconds: float) -> str:
    return f"{size / seconds / 1e6:.1f} MB/s" if seconds > 0 else "n/a"


def _reason(error: Exception) -> str:
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cloudmover")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
