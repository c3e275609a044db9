"""The image codec's round trip, its container's self-checks, and its format freeze.

Property tests round-trip random images of every depth and shape through the
raster coder and whole files through ``codec.encode``/``decode``; damaged,
truncated, empty and foreign input must raise ``CodecError`` (never another
exception, never wrong bytes); committed golden encodings fail the suite if
the wire format changes without a new container version.
"""
import struct
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import zstandard
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import codec
from codec import rastercoder
from codec.errors import CodecError
from codec.formats import samples

GOLDEN = Path(__file__).parent / "golden" / "codec"
SEED = 4711


def smooth_image(shape, bits, salt=0):
    """Seeded picture-like samples: gradients and texture plus a little noise."""
    height, width, channels = shape
    generator = np.random.default_rng([SEED, salt, *shape, bits])
    y, x = np.mgrid[0:height, 0:width]
    top = (1 << bits) - 1
    planes = []
    for c in range(channels):
        wave = np.sin(x / (5.0 + 3 * c)) * np.cos(y / 7.0) * 0.3 + 0.5 + 0.1 * c
        planes.append(wave * top + generator.normal(0, max(1.0, top / 200), (height, width)))
    return np.clip(np.stack(planes, axis=-1), 0, top).astype(np.uint16)


@st.composite
def rasters(draw):
    bits = draw(st.integers(1, 16))
    shape = (draw(st.integers(1, 40)), draw(st.integers(1, 40)), draw(st.integers(1, 6)))
    kind = draw(st.sampled_from(["noise", "smooth", "constant", "extremes"]))
    generator = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    top = (1 << bits) - 1
    if kind == "noise":
        pixels = generator.integers(0, top, size=shape, endpoint=True)
    elif kind == "smooth":
        pixels = smooth_image(shape, bits, salt=draw(st.integers(0, 99)))
    elif kind == "constant":
        pixels = np.full(shape, draw(st.integers(0, top)))
    else:
        pixels = generator.choice([0, top], size=shape)
    return pixels.astype(np.uint16), bits


@settings(max_examples=150, deadline=None)
@given(rasters(), st.sampled_from([1, 2, 3]), st.sampled_from([1, 2]))
def test_raster_coder_round_trips_every_depth_and_shape(raster, level, threads):
    pixels, bits = raster
    coded = rastercoder.encode(pixels, bits, level=level, threads=threads)
    decoded, decoded_bits = rastercoder.decode(coded, shape=pixels.shape, threads=threads)
    assert decoded_bits == bits
    np.testing.assert_array_equal(decoded, pixels)


def test_small_rasters_are_cut_into_an_even_count_of_even_tiles_for_two_threads():
    rows = lambda height, width, channels: rastercoder.tile_rows(width * channels, height)
    tiles = lambda height, width, channels: -(-height // rows(height, width, channels))
    assert tiles(300, 484, 1) == 4          # 145,200 samples: one tile and a sliver before
    assert tiles(303, 384, 1) == 4          # 116,352 samples: three of 2^15 or more, made even
    assert tiles(128, 128, 1) == 1          # 16,384 samples: too few to share
    assert tiles(1024, 1024, 3) == 24       # a frame keeps its tiles of 2^17 samples
    assert (tiles(600, 512, 3), rows(600, 512, 3)) == (8, 75)    # seven tiles of 2^17 made eight
    assert (tiles(300, 451, 3), rows(300, 451, 3)) == (4, 75)    # not 97 + 97 + 97 + 9 rows
    assert tiles(2000, 1000, 3) == 46       # 46 of 2^17: enough to share as they are
    assert rastercoder.worth_threads(300, 484, 1) and not rastercoder.worth_threads(128, 128, 1)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.binary(max_size=3000) | st.integers(0, 1 << 20), max_size=12), st.integers(1, 3))
def test_the_parallel_join_gives_the_bytes_of_a_plain_join(pieces, threads):
    from codec.pyx import lossless
    parts = [bytes(p % 251 for p in range(piece)) if isinstance(piece, int) else piece for piece in pieces]
    parts = [memoryview(part) if i % 2 else part for i, part in enumerate(parts)]     # any bytes-like
    assert lossless.join(parts, threads) == b"".join(parts)


def test_tile_rows_beyond_what_an_int_holds_mean_one_tile():
    # found by hypothesis: a flipped byte made a one-tile raster's header say 4e9 rows a tile,
    # and the decoding kernel's int argument overflowed (OverflowError, not CodecError)
    pixels = smooth_image((40, 30, 3), 10)
    coded = bytearray(rastercoder.encode(pixels, 10))
    rows_at = rastercoder.HEADER.size - 4
    assert int.from_bytes(coded[rows_at:rows_at + 4], "little") >= 40      # one tile
    coded[rows_at:rows_at + 4] = (2**32 - 1).to_bytes(4, "little")
    decoded, _ = rastercoder.decode(bytes(coded), shape=pixels.shape, threads=2)
    np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize("shape", [(700, 33, 1), (300, 257, 3), (64, 64, 4)])
def test_many_tiles_round_trip_in_parallel(shape, monkeypatch):
    monkeypatch.setattr(rastercoder, "TILE_SAMPLES", 2048)    # force many tiles
    pixels = smooth_image(shape, 12)
    coded = rastercoder.encode(pixels, 12, threads=3)
    decoded, _ = rastercoder.decode(coded, shape=pixels.shape, threads=3)
    np.testing.assert_array_equal(decoded, pixels)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(8, 1), (10, 3), (12, 1), (16, 3)]),
       st.floats(0.5, 1.0), st.integers(1, 3))
def test_ruling_palettes_out_from_a_sample_of_rows_changes_nothing(seed, depth, share, threads):
    """Encoding first marks the levels of a sample of rows, and marks every sample only when
    that leaves a palette possible. Whatever the share of levels an image uses (around the
    share where palettes stop paying, with rows that use fewer than the whole), the bytes
    are those of marking every sample at once."""
    bits, channels = depth
    rng = np.random.default_rng(seed)
    levels = rng.choice(1 << bits, size=max(1, int(share * (1 << bits))), replace=False)
    pixels = rng.choice(levels, size=(300, 200, channels)).astype(np.uint8 if bits == 8 else np.uint16)
    pixels[:150] //= 2                       # the sampled rows cannot stand for the rest
    data = samples.write_pnm(pixels, maxval=(1 << bits) - 1)
    sampled = codec.encode(data, threads=threads)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rastercoder, "SAMPLED_ROWS", 0)      # an empty sample: every sample is marked
        assert codec.encode(data, threads=threads) == sampled
    assert codec.decode(sampled) == data


def test_threads_change_neither_the_encoding_nor_the_decoded_bytes():
    # large enough for two threads, and for decoding straight into the returned bytes
    data = samples.write_pnm(smooth_image((300, 200, 3), 16, salt=5), maxval=65535)
    encoded = [codec.encode(data, threads=threads) for threads in (1, 2, 3)]
    assert encoded[0] == encoded[1] == encoded[2]
    for threads in (1, 2, 3):
        decoded = codec.decode(encoded[0], threads=threads)
        assert type(decoded) is bytes and decoded == data


def image_files():
    """Whole files of several kinds, each with pixels the codec should find."""
    rgb10 = smooth_image((48, 40, 3), 10, salt=1)
    gray8 = smooth_image((50, 30, 1), 8, salt=2).astype(np.uint8)
    rgb16 = smooth_image((32, 24, 3), 16, salt=3)
    return {
        "dpx10.dpx": samples.write_dpx(rgb10, bits=10, packing=1, big_endian=True),
        "dpx10le.dpx": samples.write_dpx(rgb10, bits=10, packing=1, big_endian=False),
        "gray8.tif": samples.write_tiff(gray8[:, :, 0]),
        "rgb16be.tif": samples.write_tiff(rgb16, big_endian=True),
    }


@pytest.mark.parametrize("name", sorted(image_files()))
@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_files_round_trip_and_pixels_are_coded(name, level):
    data = image_files()[name]
    encoded = codec.encode(data, level=level)
    assert codec.decode(encoded) == data
    described = codec.info(encoded)
    assert described["original_size"] == len(data)
    if level:
        assert described["format"] == codec.sniff(data) is not None
        assert described["rasters"] and all(r["method"] == "pixels" for r in described["rasters"])
        assert len(encoded) < len(data)
    else:
        assert described["rasters"] == []


@pytest.mark.parametrize("data", [b"", b"x", b"plain text " * 1000, bytes(range(256)) * 100,
                                  codec.container.MAGIC + b"not really a container"],
                         ids=["empty", "one-byte", "text", "binary", "magic-prefixed"])
def test_anything_else_round_trips_as_verbatim_bytes(data):
    encoded = codec.encode(data)
    assert codec.is_encoded(encoded)
    assert codec.decode(encoded) == data
    assert codec.info(encoded)["format"] is None


def test_padding_bits_the_layout_does_not_model_are_kept_exactly():
    data = bytearray(samples.write_dpx(smooth_image((8, 9, 3), 10), bits=10, packing=1))
    for offset in range(2048 + 3, len(data), 4):
        data[offset] |= 0x03          # method A keeps two padding bits at the bottom of each word
    assert codec.decode(codec.encode(bytes(data))) == bytes(data)


def test_level_and_threads_are_validated():
    with pytest.raises(ValueError, match="level"):
        codec.encode(b"abc", level=7)


# ---- damaged input ------------------------------------------------------------

@pytest.fixture(scope="module")
def containers():
    files = image_files()
    return {name: (data, codec.encode(data)) for name, data in list(files.items())[:2]} | {
        "text": (b"just text\n" * 50, codec.encode(b"just text\n" * 50))}


@pytest.mark.parametrize("data,message", [
    (b"", "empty input"),
    (b"GIF89a....", "bad magic"),
    (b"\x89CMV\r\n\x1a", "truncated"),
])
def test_foreign_and_empty_input_is_refused_clearly(data, message):
    with pytest.raises(CodecError, match=message):
        codec.decode(data)
    with pytest.raises(CodecError):
        codec.info(data)


def test_every_truncation_is_refused(containers):
    for name, (_, encoded) in containers.items():
        step = max(1, len(encoded) // 300)
        for length in range(0, len(encoded), step):
            with pytest.raises(CodecError):
                codec.decode(encoded[:length])


def test_a_newer_container_version_is_refused_by_name(containers):
    _, encoded = containers["text"]
    newer = encoded[:8] + bytes([codec.container.VERSION + 1]) + encoded[9:]
    with pytest.raises(CodecError, match="version"):
        codec.decode(newer)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_damaged_containers_raise_codec_error_or_give_the_original(containers, data):
    name = data.draw(st.sampled_from(sorted(containers)))
    original, encoded = containers[name]
    damaged = bytearray(encoded)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(damaged) - 1))
        damaged[position] ^= data.draw(st.integers(1, 255))
    try:
        decoded = codec.decode(bytes(damaged))
    except CodecError:
        return
    assert decoded == original          # a flip the format ignores; never different bytes


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzzed_bytes_after_the_magic_never_crash(tail):
    candidate = codec.container.MAGIC + bytes([codec.container.VERSION]) + tail
    with pytest.raises(CodecError):
        codec.decode(candidate)


# ---- format freeze ------------------------------------------------------------

GOLDEN_INPUTS = sorted(p for p in GOLDEN.glob("*") if p.suffix not in (".cmv", ".py")) if GOLDEN.exists() else []


def test_golden_files_are_committed():
    # regenerate deliberately with `python tests/golden/codec/regenerate.py` after bumping the version
    assert len(GOLDEN_INPUTS) >= 4, f"golden inputs missing in {GOLDEN}"


@pytest.mark.parametrize("source", GOLDEN_INPUTS, ids=lambda p: p.name)
def test_encoding_is_frozen(source):
    golden = source.with_name(source.name + ".cmv")
    data = source.read_bytes()
    expected = golden.read_bytes()
    assert codec.decode(expected) == data, "a committed container no longer decodes"
    assert codec.encode(data, threads=1) == expected, (
        "the encoding changed: bump codec.container.VERSION (or the raster coder's) and regenerate")
    assert codec.encode(data, threads=2) == expected, "the encoding depends on the thread count"


def test_a_forged_original_size_is_refused_before_anything_that_size_is_allocated():
    # found by atheris: a 60-byte container claiming a 4 GiB original made decode allocate it
    forged = bytearray(codec.encode(b"not an image " * 3))
    size_at = len(codec.container.MAGIC) + 2          # after the version and the empty format name
    forged[size_at:size_at + 8] = (4 << 30).to_bytes(8, "little")
    tracemalloc.start()
    with pytest.raises(CodecError, match="do not fit"):
        codec.decode(bytes(forged))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20
    with pytest.raises(CodecError, match="more than the 1048576 bytes allowed"):
        codec.decode(bytes(forged), max_size=1 << 20)


def test_max_size_lets_real_containers_through():
    data = image_files()["dpx10.dpx"]
    assert codec.decode(codec.encode(data), max_size=len(data)) == data
    with pytest.raises(CodecError, match="allowed"):
        codec.decode(codec.encode(data), max_size=len(data) - 1)


@pytest.mark.parametrize("finding", sorted((Path(__file__).parent / "golden" / "fuzz").glob("*.bin")),
                         ids=lambda p: p.stem)
def test_fuzzing_findings_stay_fixed(finding):
    # inputs atheris found (scripts/fuzz_codec.py): each crashed or exhausted memory once
    tracemalloc.start()
    with pytest.raises(CodecError):
        codec.decode(finding.read_bytes())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16 << 20


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 16), st.lists(st.integers(0, 65535), min_size=0, max_size=40),
       st.sampled_from(["rising", "flat steps", "any"]))
def test_stored_palettes_are_read_as_numpy_reads_them(bits, deltas, kind):
    """``palette.parse`` reads a palette's deltas with a kernel: the values when they rise
    strictly below 2**bits, else None (the caller's "corrupt palette"), as numpy's running sum."""
    from codec.pyx import lossless
    if kind == "rising":                        # small steps, none zero after the first: mostly sound
        deltas = [d % 7 + (i > 0) for i, d in enumerate(deltas)]
    elif kind == "flat steps":                  # small steps, some zero: a value twice
        deltas = [d % 3 for d in deltas]
    raw = np.array(deltas, dtype="<u2").tobytes()
    values = np.cumsum(np.array(deltas, dtype=np.int64))
    sound = len(deltas) > 0 and values[-1] < 1 << bits and bool((np.diff(values) > 0).all())
    got = lossless.palette_values(raw, bits)
    if sound:
        np.testing.assert_array_equal(got, values.astype(np.uint16))
    else:
        assert got is None
    assert lossless.palette_values(raw + b"\0", bits) is None, "an odd byte count is refused"


@pytest.mark.parametrize("deltas, why", [([3, 0, 4], "a level twice"), ([1, 65535], "past the depth")])
def test_a_corrupt_stored_palette_is_refused_by_name(deltas, why):
    """A palette whose stored deltas repeat a level or leave the bit depth: the codec's own error."""
    from codec import palette
    packed = zstandard.ZstdCompressor().compress(np.array(deltas, dtype="<u2").tobytes())
    stored = bytes([1]) + palette.ENTRY.pack(len(deltas), len(packed)) + packed
    with pytest.raises(CodecError, match="coded raster has a corrupt palette"):
        palette.parse(memoryview(stored), 0, planes=1, bits=12)


def test_a_tile_index_is_read_whole_and_checked_to_fill_its_payload():
    """Each tile's streams follow the index back to back; the last one's are copied out with
    the decoder's padding after each; a payload longer or shorter than its streams, or a rANS
    stream too short to hold its final states, is refused by name."""
    from codec.pyx import lossless

    def payload(entries, tail=b""):
        index = b"".join(bytes(predictors) + struct.pack("<BII", lean, rans, extra)
                         for predictors, lean, rans, extra in entries)
        streams = bytes(range(1, 1 + sum(rans + extra for *_, rans, extra in entries)))
        return np.frombuffer(b"head" + index + streams + tail, dtype=np.uint8)

    entries = [([3, 1], 1, 16, 5), ([2, 0], 0, 20, 0)]
    (predictors, decorrelate, streams, last), wrong = lossless.tile_index(payload(entries), 4, 2, 2)
    assert wrong is None
    assert predictors.tolist() == [[3, 1], [2, 0]] and decorrelate.tolist() == [1, 0]
    start = 4 + 2 * 11
    assert streams.tolist() == [[start, 16, start + 16, 5], [0, 20, 20 + lossless.PADDING, 0]]
    assert last.tolist() == list(range(22, 42)) + [0] * (2 * lossless.PADDING)
    assert lossless.tile_index(payload(entries, b"!"), 4, 2, 2) == (None, "trailing")
    assert lossless.tile_index(payload(entries)[:-1], 4, 2, 2) == (None, "truncated")
    assert lossless.tile_index(payload(entries)[:20], 4, 2, 2) == (None, "truncated")      # the index itself
    assert lossless.tile_index(payload([([0, 0], 0, 15, 9)]), 4, 1, 2) == (None, "unclean")
    pixels = smooth_image((64, 48, 3), 10)
    coded = rastercoder.encode(pixels, 10)
    for damaged, message in ((coded + b"\0", "trailing bytes"), (coded[:-1], "truncated")):
        with pytest.raises(CodecError, match=message):
            rastercoder.decode(damaged, shape=pixels.shape)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([12, 16]), st.floats(0.0005, 0.8), st.floats(0.2, 3.0),
       st.booleans())
def test_palettes_are_chosen_by_their_stored_size(seed, bits, share, scale, later):
    """A plane gets a palette when what its ranks save pays twice for its stored values. Planes
    that pay whatever their stored size, or twice what such values pack to in practice, are
    packed later, beside pass one; the choice and the stored bytes are those of packing every
    plane first."""
    from codec import palette
    from codec.threads import Inline, Later
    generator = np.random.default_rng(seed)
    used = np.zeros((3, 1 << bits), dtype=np.uint8)
    for plane in range(3):      # random levels (hard to pack), evenly spaced ones (easy), a few
        count = max(1, int(share * (1 << bits) / (plane + 1)))
        picks = generator.choice(1 << bits, count, replace=False) if plane != 1 else \
            np.arange(0, 1 << bits, max(1, (1 << bits) // count))
        used[plane, picks] = 1
    values = [np.flatnonzero(marks).astype(np.uint16) for marks in used]
    stored = [palette._pack(v) for v in values]
    # samples per plane around where the palettes stop paying
    samples = int(scale * 32 * len(stored[0]) / max(0.01, bits - np.log2(len(values[0]))))
    pool = Later() if later else Inline()
    # the marks as threads leave them: a level marked in either copy counts
    first = used & generator.integers(0, 2, used.shape, dtype=np.uint8)
    marks = np.stack([first, used ^ first])
    chosen = palette.choose(marks, bits, samples, pool=pool, threads=2)
    if later:
        pool.run_all()
    written = palette.serialize(chosen)
    for plane in range(3):
        count = len(values[plane])
        pays = palette._may_pay(plane, count, bits) and \
            samples * (bits - np.log2(count)) / 16 >= 2 * len(stored[plane])
        assert (chosen.values[plane] is not None) == pays
        assert len(stored[plane]) <= palette._packed_bound(count)
        gamma = sum(2 * (int(d) | 1).bit_length() - 1 for d in np.diff(values[plane], prepend=0))
        assert len(stored[plane]) <= palette._likely_size(count, gamma)
        if pays:
            np.testing.assert_array_equal(chosen.values[plane], values[plane])
            # the kernel's rank of each value is its place among the plane's values
            np.testing.assert_array_equal(chosen.ranks()[0][plane][values[plane]], np.arange(count))
    assert written == palette.serialize(palette.Palettes(
        [v if c is not None else None for v, c in zip(values, chosen.values)],
        [Inline.submit(lambda s=s: s) for s in stored]))


def test_a_side_job_runs_once_beside_the_tiles_and_keeps_its_error_for_its_owner():
    """The kernels' threads race for a side job: exactly one runs it, whatever the thread count;
    an error in it never escapes into a kernel's thread but reaches whoever asks for the result."""
    from codec.threads import Later, Pending
    pixels = smooth_image((300, 257, 3), 12)
    runs = []
    for threads in (1, 2, 3):
        side = Pending(lambda: runs.append(threads) or "done")
        coded = b"".join(rastercoder.encode_parts(
            rastercoder.Samples(pixels.reshape(-1).view(np.uint8), *pixels.shape, 2, sys.byteorder == "big"),
            12, threads=threads, checked=False, side=side))
        assert side.result() == "done"
        assert coded == rastercoder.encode(pixels, 12, threads=1)
    assert runs == [1, 2, 3]
    failing = Pending(lambda: 1 / 0)
    failing()           # as a kernel's thread calls it: nothing raised there
    failing()           # nor run twice
    with pytest.raises(ZeroDivisionError):
        failing.result()
    later = Later()
    packed = [later.submit(lambda n=n: runs.append(n)) for n in (7, 8)]
    assert runs == [1, 2, 3]            # submitted, not run
    later.run_all()
    assert runs == [1, 2, 3, 7, 8] and [job.result() for job in packed] == [None, None]


def test_the_running_checksum_waits_for_every_byte_before_a_piece():
    """Pieces marked written in any order, from several threads, give the checksum of the whole;
    a piece marked before the bytes ahead of it are written is hashed only once they are."""
    import threading
    from codec.checksum import RunningChecksum, checksum
    data = bytearray(np.random.default_rng(3).bytes(1 << 20))
    final = bytes(data)
    running = RunningChecksum(data)
    data[:1000] = bytes(1000)               # not written yet
    running.written(1000, 5000)             # written before the bytes ahead of it
    data[:1000] = final[:1000]
    running.written(0, 1000)
    edges = sorted({5000, len(data), *np.random.default_rng(4).integers(5000, len(data), 60).tolist()})
    pieces = list(zip(edges, edges[1:]))
    np.random.default_rng(5).shuffle(pieces)
    threads = [threading.Thread(target=lambda mine=pieces[i::4]: [running.written(*p) for p in mine])
               for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert running.digest() == checksum(final)
    assert RunningChecksum(final).digest() == checksum(final), "nothing marked: all hashed at the end"


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000), st.lists(st.integers(0, 5000), max_size=6))
def test_the_kernels_checksum_is_xxhash_xxh3_128(data, cuts):
    from codec.checksum import checksum
    from codec.pyx.lossless import Checksum
    running = Checksum()
    edges = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for start, end in zip(edges, edges[1:]):
        running.update(data[start:end])
    assert running.digest() == checksum(data)


@pytest.mark.parametrize("fmt", ["pnm16", "dpx10"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_kernels_threads_checksum_the_tiles_as_they_come_out(fmt, threads, monkeypatch):
    """A raster written in place is hashed by the kernels (tile by tile, or band by band
    where words are packed after), not in one serial pass once it is whole."""
    from codec.checksum import RunningChecksum
    monkeypatch.setattr(rastercoder, "TILE_SAMPLES", 4096)     # many tiles
    pixels = smooth_image((300, 64, 3), 10 if fmt == "dpx10" else 16, salt=9)
    data = (samples.write_dpx(pixels, bits=10, packing=1, big_endian=True) if fmt == "dpx10"
            else samples.write_pnm(pixels, maxval=(1 << 16) - 1))
    coded = codec.encode(data, threads=threads)
    fed, whole = [], []
    monkeypatch.setattr(RunningChecksum, "fed", lambda self, end, fed_=RunningChecksum.fed: (
        fed.append(end), fed_(self, end))[1])
    monkeypatch.setattr(RunningChecksum, "written", lambda self, start, end, written_=RunningChecksum.written: (
        whole.append((start, end)), written_(self, start, end))[1])
    assert codec.decode(coded, threads=threads) == data
    assert fed, "the kernels were not given the checksum"
    assert all(end - start < len(data) // 2 for start, end in whole), "a raster was hashed after it was whole"
    # the checksum the kernels took is the one compared: a stored checksum one bit off is refused
    kind = b"dpx" if fmt == "dpx10" else b"pnm"
    digest_at = len(codec.container.MAGIC) + 2 + len(kind) + 8
    assert coded[digest_at - 8 - len(kind):digest_at - 8] == kind
    forged = bytearray(coded)
    forged[digest_at] ^= 0x01
    with pytest.raises(CodecError, match="checksum"):
        codec.decode(bytes(forged), threads=threads)


def test_a_containers_first_bytes_say_its_originals_size_and_checksum():
    from codec.checksum import checksum
    for name, data in image_files().items():
        encoded = codec.encode(data)
        assert codec.original(encoded[:codec.ORIGINAL_PREFIX]) == (len(data), checksum(data)), name
        assert codec.original(encoded) == (len(data), checksum(data)), name
    short = codec.encode(b"not an image")
    assert len(short) < codec.ORIGINAL_PREFIX and codec.original(short)[0] == len(b"not an image")
    for foreign in (b"", b"\x89CMV", b"GIF89a" + bytes(400), short[:20]):
        with pytest.raises(CodecError):
            codec.original(foreign)
