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

from codec.compressors import compressor, decompressor
from codec.errors import CodecError
from codec.pyx import lossless

SCALE = 1 << lossless.SCALE_BITS
NTABLES = lossless.TABLES
NTOKENS = lossless.TOKENS
POOLED = lossless.POOLED


def pool(histogram: np.ndarray) -> np.ndarray:
    """Counts with each run of rare neighbouring contexts sharing their sum.
    A table costs about two bytes a token; a context pools until its run has
    enough samples for its own statistics to pay for that: max(2048, all
    samples / 256).  Per plane class, used contexts in order form runs that
    close on reaching it; a last short run joins the run before it.  (These
    steps, and the others below, are kernels: this runs once a raster,
    serially, and numpy's per-call costs were a fifth of a small image's
    encoding.)"""
    return lossless.pool_counts(np.ascontiguousarray(histogram, dtype=np.uint64))


def normalize(histogram: np.ndarray) -> np.ndarray:
    """Frequencies summing to SCALE per used table, every seen token at least
    1: floor(count * SCALE / total) in float64, then the rounding settled on
    the most frequent token."""
    return lossless.normalize_counts(np.ascontiguousarray(histogram, dtype=np.int64))


def serialize(freq: np.ndarray) -> bytes:
    # level 3: 2% larger than level 12 on these few kB (0.003% of the bench corpus's
    # output) at a seventh of the time, which is serial work on one thread
    return compressor(3).compress(lossless.table_bytes(np.ascontiguousarray(freq, dtype=np.int64)))


def parse(blob: memoryview) -> np.ndarray:
    try:
        raw = decompressor().decompressobj().decompress(bytes(blob))
    except zstandard.ZstdError as error:
        raise CodecError(f"coded raster tables are corrupt: {error}") from None
    freq, wrong = lossless.parse_table_bytes(raw)
    if wrong is not None:
        raise CodecError(_PARSE_ERRORS[wrong])
    return freq


_PARSE_ERRORS = {
    "truncated": "coded raster tables are truncated",
    "corrupt": "coded raster tables are corrupt",
    "twice": "coded raster tables are corrupt: a token twice in one table",
    "orphan": "coded raster tables are corrupt: a pooled table with nothing before it",
}


def encoder(freq: np.ndarray, room: np.ndarray | None = None) -> tuple[np.ndarray]:
    """The rANS encoder's table: per symbol, its frequency's reciprocal,
    bias and complement (Giesen's rans64), packed by the kernels (in ``room``,
    when given: see ``lossless.encoder_entries``)."""
    return (lossless.encoder_entries(np.ascontiguousarray(freq, dtype=np.int64), room),)


def encoder_from_histograms(histograms: np.ndarray, room: np.ndarray | None = None, threads: int = 1) -> tuple:
    """(``normalize(pool(...))``, ``encoder(...)``'s table) of the sum of ``histograms``
    (copies × TABLES × TOKENS, uint64: one a thread), the tables made side by side on
    ``threads`` threads (``lossless.encoder_from_histograms``)."""
    freq, entries = lossless.encoder_from_histograms(histograms, room, threads)
    return freq, (entries,)


def decoder(blob: memoryview, room: np.ndarray | None = None):
    """The decoder's one table: per (table << SCALE_BITS | slot), the slot's
    token with its frequency and the slot's offset in the token's range,
    packed as freq | offset << 11 | token << 21 (one load per sample); in
    ``room`` when given (see ``lossless.decoder_entries``)."""
    return (lossless.decoder_entries(parse(blob), room),)
