"""The image codec stage: encode or decode one whole object on its way.

In a compress job an object whose bytes the codec recognises as an image
(``codec.sniff``; the extension is not trusted) is encoded, and the container
is kept only when it is smaller and, with ``verify``, only after decoding it
gave back the original bytes. It is stored under the same key, typed
``application/x-cloudmover-codec``, with user metadata naming the container
version and the original's size, MD5, format and content type. A decompress
job restores such objects (content type and user metadata too) and checks the
result against the recorded size and MD5; a damaged container fails that
object with "corrupt codec container: …". Everything else moves unchanged
through the ordinary strategies (server-side copy where possible).

The stage holds whole objects in memory, so objects above ``max_object`` move
unchanged (with a note for the job log), and the bytes it holds count against
the worker's MemoryBudget: ``MEMORY_FACTOR`` times the larger of the stored
and original sizes (original, container, the codec's working arrays).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import codec
from codec.checksum import Checksum
from pipeline import errors
from pipeline.checksums import already_present, content_md5, plain_md5
from pipeline.store import ObjectAttributes
from worker import strategies
from worker.codec_settings import CodecSettings   # kept apart: a plain worker never loads the codec

# measured (tracemalloc) peaks of codec.encode and codec.decode are 2.3-5.5x the
# file on top of it, plus the container and the verifying decode the stage holds
MEMORY_FACTOR = 8
PROBE_BYTES = 64 << 10     # a decompress job reads this much first: metadata and magic
CONTENT_TYPE = "application/x-cloudmover-codec"
META_CODEC = "cloudmover-codec"                    # the container version
META_SIZE = "cloudmover-original-size"
META_CHECKSUM = "cloudmover-original-checksum"     # "md5:<hex>" of the original bytes
META_FORMAT = "cloudmover-original-format"
META_CONTENT_TYPE = "cloudmover-original-content-type"
META_ETAG = "cloudmover-original-etag"      # the original's ETag (a local file's version) when it was encoded
CODEC_KEYS = (META_CODEC, META_SIZE, META_CHECKSUM, META_FORMAT, META_CONTENT_TYPE, META_ETAG)


@dataclass(frozen=True)
class Moved:
    """How one object of a codec job moved: the fields its ``CopiedObject`` adds."""
    checksum: str | None
    written: int | None = None
    codec: str | None = None        # "encoded" | "decoded" | None (moved unchanged)
    note: str | None = None


class CorruptContainer(errors.PermanentError):
    """An object marked as encoded does not decode to its recorded original."""

    code = "corrupt_container"


def already_there(source, destination, obj: dict, *, mode: str) -> bool:
    """Sync mode: the destination holds what a ``mode`` job would write there. An object that
    moves unchanged is compared as any copy is (``checksums.already_present``); an encoded one by
    the original its metadata records: the source's ETag then, or else its MD5 (a local file's is
    hashed); a restored one by the MD5 its container's metadata records. A local file carries no
    metadata: there the container's own header says the original's size and XXH3-128, and the
    other side is hashed to compare."""
    if already_present(source, destination, obj):
        return True
    key, dest_key = obj["key"], obj["dest_key"]
    if mode == "compress":
        if not hasattr(destination, "metadata"):
            found = destination.head(dest_key)
            original = found and _original_in_header(destination, dest_key, found.size)
            return bool(original) and original[0] == obj["size"] and original[1] == _xxh3(source, key, obj.get("etag"))
        recorded = destination.metadata(dest_key)
        if not recorded or recorded.get(META_SIZE) != str(obj["size"]):
            return False
        if obj.get("etag") and recorded.get(META_ETAG) == obj["etag"]:
            return True     # the source is as it was when it was encoded
        original = content_md5(source, key, obj.get("etag"))
        return original is not None and recorded.get(META_CHECKSUM) == f"md5:{original}"
    if not hasattr(source, "metadata"):
        original = _original_in_header(source, key, obj["size"])
        found = original and destination.head(dest_key)
        return bool(found) and found.size == original[0] and _xxh3(destination, dest_key, None) == original[1]
    recorded = source.metadata(key)
    if not recorded or META_CODEC not in recorded:
        return False
    try:
        size, original = _recorded_original(recorded, f"decode {source.spec.url(key)}")
    except CorruptContainer:
        return False        # decoding it says so
    found = destination.head(dest_key)
    if original is None or found is None or found.size != size:
        return False
    return content_md5(destination, dest_key, found.etag if found.etag_is_md5 else None) == original


def _original_in_header(store, key: str, size: int) -> tuple[int, bytes] | None:
    """(size, XXH3-128) of the original that the container stored at ``key`` records in its
    header; None when the object is no container."""
    _, head = _probe(store, {"key": key, "size": size})
    try:
        return codec.original(head)
    except codec.CodecError:
        return None


def _xxh3(store, key: str, etag: str | None) -> bytes:
    """The XXH3-128 of an object's bytes, as a container records its original's."""
    digest = Checksum()
    with strategies.reading(store.get(key, etag=etag), f"read {store.spec.url(key)}") as body:
        for chunk in iter(lambda: body.read(strategies.READ_CHUNK), b""):
            digest.update(chunk)
    return digest.digest()


def move(source, destination, obj: dict, *, mode: str, memory: strategies.MemoryBudget,
         copying: strategies.MemoryBudget, settings: CodecSettings) -> Moved:
    """Move one object of a ``mode`` job ("compress" or "decompress"). ``memory`` and ``copying``:
    the worker's budgets (see ``strategies.copy_object``), for what moves unchanged too."""
    budgets = {"memory": memory, "copying": copying}
    if obj["size"] == 0:
        return _copy(source, destination, obj, **budgets)
    if mode == "compress":
        return _compress(source, destination, obj, **budgets, settings=settings)
    if mode == "decompress":
        return _decompress(source, destination, obj, **budgets, settings=settings)
    raise ValueError(f"unknown codec mode {mode!r}")


# -- compress ---------------------------------------------------------------------
def _compress(source, destination, obj, *, memory, copying, settings: CodecSettings) -> Moved:
    if obj["size"] > settings.max_object:
        return _copy(source, destination, obj, memory=memory, copying=copying,
                     note=f"larger than the codec limit of {settings.max_object} bytes: moved unchanged")
    with memory.holding(MEMORY_FACTOR * obj["size"]):
        held = _read(source, obj)
        if META_CODEC in held.attrs.metadata or codec.is_encoded(held.data):
            return _pass_on(source, destination, obj, held, copying, note="already encoded: moved unchanged")
        image_format = codec.sniff(held.data)
        if image_format is None:
            return _pass_on(source, destination, obj, held, copying)
        container, why_not = _encode(held, settings)
        if container is None:
            return _pass_on(source, destination, obj, held, copying,
                            note=f"{image_format} image {why_not}: moved unchanged")
        attrs = ObjectAttributes(
            content_type=CONTENT_TYPE, headers=held.attrs.headers, tags=held.attrs.tags,
            storage_class=held.attrs.storage_class,
            metadata={**held.attrs.metadata, **_codec_metadata(held, container, image_format, obj.get("etag"))})
        checksum = _write(destination, obj["dest_key"], container, attrs=attrs,
                          what=f"write encoded {source.spec.url(obj['key'])}")
    return Moved(checksum, written=len(container), codec="encoded")


def _encode(held: strategies.Read, settings: CodecSettings) -> tuple[bytes | None, str]:
    """The container for ``held``, or None and why it is not worth keeping."""
    try:
        container = codec.encode(held.data, level=settings.level, threads=settings.threads)
    except codec.CodecError as exc:
        return None, f"could not be encoded ({exc})"
    if len(container) >= len(held.data):
        return None, "did not shrink"
    if settings.verify:
        try:
            same = hashlib.md5(codec.decode(container, threads=settings.threads), usedforsecurity=False).digest()
        except codec.CodecError as exc:
            return None, f"did not decode back ({exc})"
        if same != held.md5:
            return None, "did not decode back to the original bytes"
    return container, ""


def _codec_metadata(held: strategies.Read, container: bytes, image_format: str, etag: str | None) -> dict:
    info = codec.info(container)
    metadata = {META_CODEC: str(info["container_version"]), META_SIZE: str(len(held.data)),
                META_CHECKSUM: f"md5:{held.md5.hex()}", META_FORMAT: str(info.get("format") or image_format)}
    if etag:
        metadata[META_ETAG] = etag
    if held.attrs.content_type:
        metadata[META_CONTENT_TYPE] = held.attrs.content_type
    return metadata


# -- decompress -------------------------------------------------------------------
def _decompress(source, destination, obj, *, memory, copying, settings: CodecSettings) -> Moved:
    metadata, head = _probe(source, obj)
    # local files carry no metadata: there the container's own magic marks it
    if META_CODEC not in metadata and not (source.spec.kind == "local" and codec.is_encoded(head)):
        return _copy(source, destination, obj, memory=memory, copying=copying)
    what = f"decode {source.spec.url(obj['key'])}"
    expected_size, expected_md5 = _recorded_original(metadata, what)
    if max(obj["size"], expected_size or 0) > settings.max_object:
        return _copy(source, destination, obj, memory=memory, copying=copying,
                     note=f"larger than the codec limit of {settings.max_object} bytes once restored: "
                          "moved unchanged (still encoded)")
    # without the recorded size (a local file), assume a ratio of MEMORY_FACTOR
    with memory.holding(MEMORY_FACTOR * max(obj["size"], expected_size or MEMORY_FACTOR * obj["size"])):
        held = _read(source, obj)
        try:
            restored = codec.decode(held.data, threads=settings.threads, max_size=settings.max_object)
        except codec.CodecError as exc:
            raise CorruptContainer(f"corrupt codec container: {what}: {exc}") from exc
        md5 = hashlib.md5(restored, usedforsecurity=False).hexdigest()
        if expected_size is not None and len(restored) != expected_size:
            raise CorruptContainer(f"corrupt codec container: {what}: restored {len(restored)} bytes, "
                                   f"the original had {expected_size}")
        if expected_md5 is not None and md5 != expected_md5:
            raise CorruptContainer(f"corrupt codec container: {what}: the restored bytes' MD5 {md5} "
                                   f"differs from the original's {expected_md5}")
        attrs = ObjectAttributes(
            content_type=held.attrs.metadata.get(META_CONTENT_TYPE), headers=held.attrs.headers,
            tags=held.attrs.tags, storage_class=held.attrs.storage_class,
            metadata={k: v for k, v in held.attrs.metadata.items() if k not in CODEC_KEYS})
        checksum = _write(destination, obj["dest_key"], restored, attrs=attrs,
                          what=f"write decoded {source.spec.url(obj['key'])}")
    return Moved(checksum, written=len(restored), codec="decoded")


def _recorded_original(metadata: dict, what: str) -> tuple[int | None, str | None]:
    """The original's size and MD5 as the metadata records them (None: not recorded)."""
    size, checksum = metadata.get(META_SIZE), metadata.get(META_CHECKSUM)
    try:
        size = int(size) if size is not None else None
    except ValueError:
        raise CorruptContainer(f"corrupt codec container: {what}: metadata {META_SIZE}={size!r} "
                               "is not a size") from None
    if checksum is not None and not (checksum.startswith("md5:") and plain_md5(checksum[4:])):
        raise CorruptContainer(f"corrupt codec container: {what}: metadata {META_CHECKSUM}={checksum!r} "
                               "is not an MD5")
    return size, checksum[4:] if checksum else None


def _probe(source, obj: dict) -> tuple[dict, bytes]:
    """The user metadata and first bytes of an object, in one small read."""
    download = source.get(obj["key"], etag=obj.get("etag"), offset=0, length=min(obj["size"], PROBE_BYTES))
    with strategies.reading(download, f"read {source.spec.url(obj['key'])}") as body:
        head = body.read()
    return download.attributes.metadata, head


# -- reading and writing ------------------------------------------------------------
def _read(source, obj: dict) -> strategies.Read:
    return strategies.read_object(source, obj["key"], size=obj["size"], etag=obj.get("etag"),
                                  what=f"read {source.spec.url(obj['key'])}")


def _copy(source, destination, obj: dict, *, memory, copying, note: str | None = None) -> Moved:
    return Moved(strategies.copy_object(source, destination, obj, memory=memory, copying=copying), note=note)


def _pass_on(source, destination, obj: dict, held: strategies.Read, copying: strategies.MemoryBudget, *,
             note: str | None = None) -> Moved:
    """Move an object unchanged whose bytes are already here: server-side when the stores allow
    (a server-side copy holds no memory: only its ``copying`` share)."""
    if source.spec.same_endpoint(destination.spec):
        return Moved(strategies.copy_object(source, destination, obj, memory=None, copying=copying), note=note)
    return Moved(_write(destination, obj["dest_key"], held.data, attrs=held.attrs,
                        what=f"copy {source.spec.url(obj['key'])}", md5=held.md5), note=note)


def _write(destination, dest_key: str, data: bytes, *, attrs: ObjectAttributes, what: str,
           md5: bytes | None = None) -> str:
    md5 = md5 or hashlib.md5(data, usedforsecurity=False).digest()
    return strategies.put_verified(destination, dest_key, data, md5=md5, attrs=attrs, what=what)
