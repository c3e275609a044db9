"""The entropy tables' kernels (codec/tables.py) give exactly what their numpy
reference gives (tests/support/codec_tables_reference.py): pooled counts,
frequencies, stored bytes, and for any stored bytes, sound or damaged, the
same frequencies or the same complaint.  And the rANS coder, given two tiles at
once, codes each to the bytes it gets alone."""
import numpy as np
import pytest
import zstandard
from hypothesis import given, settings, strategies as st

from codec import tables
from codec.errors import CodecError
from tests.support import codec_tables_reference as reference

SHAPE = (reference.NTABLES, reference.NTOKENS)


@st.composite
def histograms(draw) -> np.ndarray:
    """Token counts as an encoder gathers them: most contexts empty or rare
    (so they pool), a few busy, one token often dominant (so the rounding
    takes the slow path), magnitudes from one sample to billions."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    used = rng.random(reference.NTABLES) < draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    scale = 10.0 ** rng.uniform(0, draw(st.sampled_from([1, 4, 9])), size=(reference.NTABLES, 1))
    spread = rng.random(SHAPE) < draw(st.sampled_from([0.02, 0.2, 1.0]))
    counts = np.floor(rng.exponential(1.0, SHAPE) * scale * spread).astype(np.uint64)
    if draw(st.booleans()):      # a dominant token: its share rounds up past the rest
        counts[:, 0] += (scale[:, 0] * 1e3).astype(np.uint64)
    return counts * used[:, None]


@settings(max_examples=300, deadline=None)
@given(histograms())
def test_kernels_match_the_reference(histogram):
    pooled = tables.pool(histogram)
    np.testing.assert_array_equal(pooled, reference.pool(histogram))
    freq = tables.normalize(pooled)
    np.testing.assert_array_equal(freq, reference.normalize(pooled))
    raw = zstandard.ZstdDecompressor().decompress(tables.serialize(freq))
    assert raw == reference.table_bytes(freq)
    np.testing.assert_array_equal(tables.parse(memoryview(tables.serialize(freq))), freq)


def outcome(parse, blob):
    try:
        return parse(blob).tolist()
    except CodecError as error:
        return str(error)


@settings(max_examples=300, deadline=None)
@given(histograms(), st.data())
def test_damaged_tables_get_the_reference_verdict(histogram, data):
    raw = bytearray(reference.table_bytes(reference.normalize(reference.pool(histogram))))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "grow", "count"]))
        if action == "flip" and raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del raw[data.draw(st.integers(0, len(raw))):]
        elif action == "grow":
            raw += bytes(data.draw(st.lists(st.integers(0, 255), min_size=1, max_size=6)))
        elif action == "count" and len(raw) >= reference.NTABLES:
            raw[data.draw(st.integers(0, reference.NTABLES - 1))] = data.draw(
                st.sampled_from([0, 1, 63, 64, 65, reference.POOLED]))
    blob = zstandard.ZstdCompressor().compress(bytes(raw))
    assert outcome(lambda b: tables.parse(memoryview(b)), blob) == outcome(reference.parse_table_bytes, bytes(raw))


@pytest.mark.parametrize("raw, message", [
    (b"", "truncated"),
    (bytes([1] + [0] * 111) + bytes([64, 0, 4]), "corrupt"),                       # token 64
    (bytes([1] + [0] * 111) + bytes([3, 0, 0]), "corrupt"),                        # frequency 0
    (bytes([2] + [0] * 111) + bytes([3, 0, 2, 3, 0, 2]), "a token twice"),
    (bytes([1] + [0] * 111) + bytes([3, 0, 3]), "corrupt"),                        # sums to 768
    (bytes([reference.POOLED] + [0] * 111), "a pooled table with nothing before it"),
])
def test_each_complaint(raw, message):
    with pytest.raises(CodecError, match=message):
        tables.parse(memoryview(zstandard.ZstdCompressor().compress(raw)))


@settings(max_examples=100, deadline=None)
@given(histograms(), st.integers(0, 3000), st.integers(0, 3000), st.integers(0, 2**32 - 1))
def test_two_tiles_coded_at_once_get_the_bytes_each_gets_alone(histogram, length, other_length, seed):
    """``rans_tiles`` interleaves two tiles' steps for speed (codec/rastercoder.py codes tiles
    in twos); each tile's bytes must be what ``rans_tile`` gives it alone, whatever the lengths
    (zero, odd, one far longer than the other)."""
    from codec.pyx import lossless
    freq = tables.normalize(tables.pool(histogram))
    (entries,) = tables.encoder(freq)
    rng = np.random.default_rng(seed)
    used = np.flatnonzero(freq.reshape(-1)) if freq.any() else np.arange(freq.size)
    tiles = [rng.choice(used, n).astype(np.uint16) for n in (length, other_length)]

    def room(symbols):
        return np.full(symbols.size * 2 + 24, 0xA5, dtype=np.uint8)
    alone = []
    for symbols in tiles:
        out = room(symbols)
        alone.append(out[lossless.rans_tile(symbols, entries, out):].tobytes())
    outs = [room(symbols) for symbols in tiles]
    begins = lossless.rans_tiles(*tiles, entries, *outs)
    assert [out[begin:].tobytes() for out, begin in zip(outs, begins)] == alone
    with pytest.raises(ValueError, match="too small"):
        lossless.rans_tiles(*tiles, entries, outs[0], np.empty(2 * other_length + 23, dtype=np.uint8))


@settings(max_examples=60, deadline=None)
@given(histograms(), st.integers(1, 3))
def test_the_tables_made_on_threads_are_the_tables_made_one_after_another(histogram, threads):
    """From the threads' histograms (each counting its own tiles) in one kernel: the tables
    of their sum, pooled, normalised and made into the encoder's entries step by step."""
    histogram = np.asarray(histogram, dtype=np.uint64)
    shares = np.random.default_rng(int(histogram.sum()) % 2**32).integers(0, 2, (threads,) + histogram.shape,
                                                                       dtype=np.uint64)
    copies = np.zeros((threads,) + histogram.shape, dtype=np.uint64)
    left = histogram.copy()
    for copy in range(threads - 1):
        copies[copy] = left * shares[copy] // np.uint64(2)    # a part of what is left to each thread but the last
        left -= copies[copy]
    copies[-1] = left
    pooled = tables.pool(histogram)
    freq, (entries,) = tables.encoder_from_histograms(copies, threads=threads)
    np.testing.assert_array_equal(freq, tables.normalize(pooled))
    np.testing.assert_array_equal(entries, tables.encoder(freq)[0])
