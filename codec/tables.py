"""The raster coder's entropy tables: from token counts to rANS tables and back.

Per context table (``lossless.TABLES`` of them, ``lossless.TOKENS`` tokens
each) the encoder counts tokens; contexts too rare to pay for a table of their
own are pooled with their neighbours (same plane class, adjacent activity),
and every used table is scaled to frequencies summing to SCALE.

Stored form (zstd-compressed): per table one count byte, the number of tokens
it uses, or POOLED when it repeats the last table that had its own entries;
then, table after table, (u8 token, u16 frequency) for each entry.
"""
import numpy as np
import zstandard

from codec.errors import CodecError
from codec.pyx import lossless

SCALE = 1 << lossless.SCALE_BITS
NTABLES = lossless.TABLES
NTOKENS = lossless.TOKENS
NCONTEXTS = lossless.CONTEXTS
POOLED = 255
ENTRY = np.dtype([("token", "u1"), ("freq", "<u2")])


def pool(histogram: np.ndarray) -> np.ndarray:
    """Counts with each run of rare neighbouring contexts sharing their sum.
    A table costs about two bytes a token; a context pools until its run has
    enough samples for its own statistics to pay for that.  (Plain Python
    integers: this runs once a raster, serially, and numpy per table cost
    more than the tables' sums.)"""
    histogram = histogram.astype(np.int64)
    pooled = histogram.copy()
    totals = histogram.sum(axis=1).tolist()
    floor = max(2048, sum(totals) // 256)
    for first in range(0, NTABLES, NCONTEXTS):
        groups, run, count = [], [], 0
        for table in range(first, first + NCONTEXTS):
            if totals[table] == 0:
                continue
            run.append(table)
            count += totals[table]
            if count >= floor:
                groups.append(run)
                run, count = [], 0
        if run:
            if groups:
                groups[-1] += run
            else:
                groups.append(run)
        for group in groups:
            if len(group) > 1:          # a table alone keeps its own counts
                pooled[group] = histogram[group].sum(axis=0)
    return pooled


def normalize(histogram: np.ndarray) -> np.ndarray:
    """Frequencies summing to SCALE per used table, every seen token at least 1."""
    histogram = histogram.astype(np.float64)
    totals = histogram.sum(axis=1, keepdims=True)
    freq = np.floor(histogram * SCALE / np.maximum(totals, 1)).astype(np.int64)
    freq[(histogram > 0) & (freq == 0)] = 1
    # settle rounding on the most frequent token: one step for every table
    # whose biggest token can take it all, the loop below for the rest
    used = np.flatnonzero(totals[:, 0])
    surplus = freq[used].sum(axis=1) - SCALE
    biggest = np.argmax(freq[used], axis=1)
    room = freq[used, biggest] - 1
    easy = surplus <= room
    freq[used[easy], biggest[easy]] -= surplus[easy]
    for table in used[~easy]:
        row = freq[table]
        surplus = int(row.sum()) - SCALE
        while surplus != 0:
            biggest = int(np.argmax(row))
            change = surplus if surplus < 0 else min(surplus, int(row[biggest]) - 1)
            row[biggest] -= change
            surplus -= change
    return freq


def serialize(freq: np.ndarray) -> bytes:
    counts = (freq > 0).sum(axis=1).astype(np.uint8)
    # a used table equal to the last one with its own entries is equal to the
    # used table just before it (that one has its own or is equal to it)
    used = np.flatnonzero(counts)
    counts[used[1:][(freq[used[1:]] == freq[used[:-1]]).all(axis=1)]] = POOLED
    own = (counts > 0) & (counts != POOLED)
    tables, tokens = np.nonzero(freq * own[:, None])
    entries = np.empty(len(tokens), dtype=ENTRY)
    entries["token"] = tokens
    entries["freq"] = freq[tables, tokens]
    # level 12: within 1% of level 19 on these few kB, at a third of the time (serial work)
    return zstandard.ZstdCompressor(level=12).compress(counts.tobytes() + entries.tobytes())


def parse(blob: memoryview) -> np.ndarray:
    try:
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(bytes(blob))
    except zstandard.ZstdError as error:
        raise CodecError(f"coded raster tables are corrupt: {error}") from None
    if len(raw) < NTABLES:
        raise CodecError("coded raster tables are truncated")
    counts = np.frombuffer(raw, dtype=np.uint8, count=NTABLES).astype(np.int64)
    own = counts != POOLED
    if (counts[own] > NTOKENS).any() or len(raw) != NTABLES + ENTRY.itemsize * int(counts[own].sum()):
        raise CodecError("coded raster tables are corrupt")
    entries = np.frombuffer(raw, dtype=ENTRY, offset=NTABLES)
    tables = np.repeat(np.arange(NTABLES), np.where(own, counts, 0))
    tokens = entries["token"].astype(np.int64)
    if (tokens >= NTOKENS).any() or (entries["freq"] == 0).any():
        raise CodecError("coded raster tables are corrupt")
    freq = np.zeros((NTABLES, NTOKENS), dtype=np.int64)
    np.add.at(freq, (tables, tokens), entries["freq"].astype(np.int64))
    if ((freq > 0).sum(axis=1)[own] != counts[own]).any():
        raise CodecError("coded raster tables are corrupt: a token twice in one table")
    if ((freq.sum(axis=1) != SCALE) & own & (counts > 0)).any():
        raise CodecError("coded raster tables are corrupt")
    last = None
    for table in range(NTABLES):
        if not own[table]:
            if last is None:
                raise CodecError("coded raster tables are corrupt: a pooled table with nothing before it")
            freq[table] = freq[last]
        elif counts[table]:
            last = table
    return freq


def encoder(freq: np.ndarray) -> tuple[np.ndarray]:
    """The rANS encoder's table: per symbol, its frequency's reciprocal,
    bias and complement (Giesen's rans64), packed by the kernels."""
    return (lossless.encoder_entries(np.ascontiguousarray(freq, dtype=np.int64)),)


def decoder(blob: memoryview):
    """The decoder's one table: per (table << SCALE_BITS | slot), the slot's
    token with its frequency and the slot's offset in the token's range,
    packed as freq | offset << 11 | token << 21 (one load per sample)."""
    return (lossless.decoder_entries(parse(blob)),)
