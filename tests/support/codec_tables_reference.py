"""The entropy tables' bookkeeping as numpy did it before it became kernels
(codec/tables.py at 1bd6181): the reference the kernels must match exactly,
since the coded bytes depend on every frequency."""
import numpy as np

from codec.errors import CodecError

SCALE, NTABLES, NTOKENS, NCONTEXTS, POOLED = 1024, 112, 64, 28, 255
ENTRY = np.dtype([("token", "u1"), ("freq", "<u2")])


def pool(histogram: np.ndarray) -> np.ndarray:
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
            if len(group) > 1:
                pooled[group] = histogram[group].sum(axis=0)
    return pooled


def normalize(histogram: np.ndarray) -> np.ndarray:
    histogram = histogram.astype(np.float64)
    totals = histogram.sum(axis=1, keepdims=True)
    freq = np.floor(histogram * SCALE / np.maximum(totals, 1)).astype(np.int64)
    freq[(histogram > 0) & (freq == 0)] = 1
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


def table_bytes(freq: np.ndarray) -> bytes:
    counts = (freq > 0).sum(axis=1).astype(np.uint8)
    used = np.flatnonzero(counts)
    counts[used[1:][(freq[used[1:]] == freq[used[:-1]]).all(axis=1)]] = POOLED
    own = (counts > 0) & (counts != POOLED)
    tables, tokens = np.nonzero(freq * own[:, None])
    entries = np.empty(len(tokens), dtype=ENTRY)
    entries["token"] = tokens
    entries["freq"] = freq[tables, tokens]
    return counts.tobytes() + entries.tobytes()


def parse_table_bytes(raw: bytes) -> np.ndarray:
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
