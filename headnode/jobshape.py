"""What a job will move: objects, bytes and how the planner will split them.

``JobShape`` is the input of the cost and time estimate. It comes from a
listing through the store interface (S3 or a local directory, as the planner
lists a source): the whole listing when it fits in ``max_pages`` pages, else a
bounded sample, extrapolated as follows and flagged ``exact=False``.

Sampling a huge prefix. Keys are listed in order, so the first pages cover the
start of the key space. Each key is mapped to a number in [0, 1): its
characters after the prefix, each ranked in its position's alphabet, read as
the digits of a mixed-radix fraction. A position's alphabet is the smallest
class (digits, hex digits, letters, letters and digits) holding every
character the sample has there, else every character of the sample; where a
sampled key ends, the position gets one more digit, below the others, so
that a shorter key sorts first, as S3 sorts. Numbered keys of one length map
evenly. The last key is found by bisecting that space with one-key listings
(``start_after`` a constructed key), then listing on from the last key found
until a page comes back short. Then ``max_pages // 4`` more pages (at least 2)
start at evenly spread points between the end of the first pages and the last
key: a page that starts after point p and ends at key k holds exactly the
keys in (p, k], which, with the pages listed on from the last key, gives the
key density beyond the first pages. The
object count is the first pages' keys plus that density times the remaining
key space; bytes, multipart objects and parts are the sampled objects' means
times that count; the largest object is the largest seen (a lower bound). The
estimate is good when keys are spread evenly over their alphabet (numbered,
hashed, dated names), poor when a few sub-prefixes hold most keys unevenly.
"""
from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
from typing import Iterable

from pipeline.planner import PlanSettings, is_multipart, part_ranges
from pipeline.store import ObjectInfo

PAGE_SIZE = 1000      # S3's largest listing page; the planner lists with it too
MAX_PAGES = 100       # a listing this long is taken whole (100,000 objects)
PROBES = 48           # one-key listings spent finding the last key of a sampled prefix


@dataclass
class JobShape:
    objects: int
    bytes: int
    multipart_objects: int = 0   # objects the planner splits into parts
    multipart_bytes: int = 0
    parts: int = 0               # parts of those objects
    largest_object: int = 0
    exact: bool = True           # False: extrapolated from a sample
    sampled_objects: int = 0     # objects actually listed
    list_requests: int = 0       # listing requests the estimate itself made
    method: str = "given"

    @property
    def whole_objects(self) -> int:
        return self.objects - self.multipart_objects

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_mix(cls, mix: Iterable[tuple[int, int]], *, settings: PlanSettings = PlanSettings(),
                 method: str = "size mix") -> "JobShape":
        """An exact shape for ``count`` objects of ``size`` bytes for each (count, size)."""
        tally = _Tally(settings)
        for count, size in mix:
            tally.add_many(count, size)
        return tally.shape(exact=True, method=method)

    @classmethod
    def from_sizes(cls, sizes: Iterable[int], *, settings: PlanSettings = PlanSettings()) -> "JobShape":
        return cls.from_mix(((1, size) for size in sizes), settings=settings, method="sizes")


def shape_from_listing(store, prefix: str, *, recursive: bool = True, settings: PlanSettings = PlanSettings(),
                       max_pages: int = MAX_PAGES, page_size: int = PAGE_SIZE, probes: int = PROBES) -> JobShape:
    """The shape of the job that would copy ``prefix`` of ``store`` (``settings``: the job's plan
    settings, for multipart and the codec's limit). Exact when the listing has at most
    ``max_pages`` pages of ``page_size`` keys; else sampled, with at most ``max_pages // 4``
    (at least 2) more pages spread over the key space, ``probes`` one-key listings and a few
    pages walked from the last key they find."""
    if max_pages < 1 or page_size < 1:
        raise ValueError("max_pages and page_size must be positive")
    tally, requests = _Tally(settings), 0
    pages = store.list(prefix, recursive=recursive, page_size=page_size)
    try:
        for page in pages:
            requests += 1
            tally.add(page)
            if requests >= max_pages:
                break
        else:
            return tally.shape(exact=True, method="full listing", list_requests=requests)
        extra = next(pages, None)
        while extra is not None and not extra:   # a local listing ends with an empty page
            extra = next(pages, None)
    finally:
        pages.close()
    if extra is None:
        return tally.shape(exact=True, method="full listing", list_requests=requests)
    tally.add(extra)
    requests += 1
    sampler = _Sampler(store, prefix, recursive=recursive, page_size=page_size, keys=tally.keys)
    count = sampler.estimate_count(head_count=tally.count, spread_pages=max(2, max_pages // 4), probes=probes)
    for page in sampler.pages:
        tally.add(page)
    return tally.extrapolated(max(count, tally.count), list_requests=requests + sampler.requests)


class _Tally:
    """Counts of listed objects, as the planner will split them."""

    def __init__(self, settings: PlanSettings):
        self.settings = settings
        self.count = self.bytes = self.multipart = self.multipart_bytes = self.parts = self.largest = 0
        self.keys: list[str] = []
        self._seen: set[str] = set()

    def add(self, page: Iterable[ObjectInfo]) -> None:
        for obj in page:
            if obj.key in self._seen:   # a spread page may overlap another
                continue
            self._seen.add(obj.key)
            self.keys.append(obj.key)
            self.add_many(1, obj.size)

    def add_many(self, count: int, size: int) -> None:
        self.count += count
        self.bytes += count * size
        self.largest = max(self.largest, size) if count else self.largest
        if count and is_multipart(size, self.settings):
            self.multipart += count
            self.multipart_bytes += count * size
            self.parts += count * len(part_ranges(size, self.settings))

    def shape(self, *, exact: bool, method: str, list_requests: int = 0) -> JobShape:
        return JobShape(objects=self.count, bytes=self.bytes, multipart_objects=self.multipart,
                        multipart_bytes=self.multipart_bytes, parts=self.parts, largest_object=self.largest,
                        exact=exact, sampled_objects=self.count, list_requests=list_requests, method=method)

    def extrapolated(self, count: int, *, list_requests: int) -> JobShape:
        scale = count / self.count if self.count else 0.0
        return JobShape(objects=count, bytes=round(self.bytes * scale),
                        multipart_objects=round(self.multipart * scale),
                        multipart_bytes=round(self.multipart_bytes * scale), parts=round(self.parts * scale),
                        largest_object=self.largest, exact=False, sampled_objects=self.count,
                        list_requests=list_requests, method="sampled listing, key-space density")


class _Sampler:
    """Key-space arithmetic and the extra listings of a sampled prefix (see the module docstring)."""

    WALK_PAGES = 4   # pages listed on from the last key the bisection found

    def __init__(self, store, prefix: str, *, recursive: bool, page_size: int, keys: list[str]):
        self.store, self.prefix, self.recursive, self.page_size = store, prefix, recursive, page_size
        suffixes = [key[len(prefix):] for key in keys]
        everything = "".join(sorted({c for s in suffixes for c in s}))
        self.alphabets: list[tuple[str, int]] = []   # per position: characters, and 1 if a key may end there
        span = 1
        for i in range(max(map(len, suffixes))):
            ends = int(any(len(s) == i for s in suffixes))
            alphabet = _alphabet({s[i] for s in suffixes if len(s) > i}, everything)
            span *= len(alphabet) + ends
            if span > 2**52:   # beyond what a float tells apart
                break
            self.alphabets.append((alphabet, ends))
        self.first, self.head_last = min(keys), max(keys)
        self.pages: list[list[ObjectInfo]] = []
        self.requests = 0
        self._keys = self._width = 0.0    # keys listed after known points, and the key space they span

    def position(self, key: str) -> float:
        value, scale = 0.0, 1.0
        for i, (alphabet, ends) in enumerate(self.alphabets):
            scale /= len(alphabet) + ends
            if i < len(key) - len(self.prefix):
                value += (bisect.bisect_left(alphabet, key[len(self.prefix) + i]) + ends) * scale
            elif ends:
                break   # a key ending here sorts before every longer one
        return value

    def key_at(self, position: float) -> str:
        chars = []
        for alphabet, ends in self.alphabets:
            position *= len(alphabet) + ends
            digit = int(position)
            position -= digit
            if ends and digit == 0:
                break
            chars.append(alphabet[min(digit - ends, len(alphabet) - 1)])
        return self.prefix + "".join(chars)

    def estimate_count(self, *, head_count: int, spread_pages: int, probes: int) -> int:
        start = self.position(self.head_last)
        end = self.position(self._last_key(probes))
        for i in range(max(0, spread_pages)):
            self._page_after(self.key_at(start + (end - start) * (i + 0.5) / spread_pages))
        if self._width > 0:
            density = self._keys / self._width
        else:   # nothing to measure beyond the first pages: their own density
            density = head_count / max(start - self.position(self.first), 1e-300)
        return round(head_count + density * max(0.0, end - start))

    def _list(self, *, after: str, size: int) -> list[ObjectInfo]:
        self.requests += 1
        pages = self.store.list(self.prefix, recursive=self.recursive, start_after=after, page_size=size)
        try:
            return next(pages, [])
        finally:
            pages.close()

    def _page_after(self, after: str) -> list[ObjectInfo]:
        """One page after ``after``: it holds exactly the keys in (after, its last key]."""
        page = self._list(after=after, size=self.page_size)
        if page:
            self.pages.append(page)
            self._keys += len(page)
            self._width += max(0.0, self.position(page[-1].key) - self.position(after))
        return page

    def _last_key(self, probes: int) -> str:
        """The prefix's last key: bisect the key space with one-key listings, then list on from
        the last key found until a page comes back short (a few pages at most)."""
        found, high = self.head_last, 1.0
        for _ in range(probes):
            low = self.position(found)
            probe = self.key_at((low + high) / 2)
            if probe <= found:
                break
            hit = self._list(after=probe, size=1)
            if hit:
                found = hit[0].key
            else:
                high = (low + high) / 2
        for _ in range(self.WALK_PAGES):
            page = self._page_after(found)
            if not page:
                break
            found = page[-1].key
            if len(page) < self.page_size:
                break
        return found


CLASSES = ("0123456789", "0123456789abcdef", "0123456789ABCDEF", "abcdefghijklmnopqrstuvwxyz",
           "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789abcdefghijklmnopqrstuvwxyz",
           "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _alphabet(seen: set[str], everything: str) -> str:
    """The characters a key position ranges over: the smallest class (digits, hex, letters, …) holding
    every character the sample has there, so that a numbered key's digits count evenly; else all the
    characters of the sample."""
    for chars in CLASSES:
        if seen <= set(chars):
            return chars
    return everything
