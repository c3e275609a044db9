"""S3's wire formats for the lean request path: what botocore would otherwise write and parse.

Object attributes as request headers and back from a HEAD response, the
ListObjectsV2 and GetObjectTagging answers, and the CompleteMultipartUpload
request body. Each mirrors what botocore does with the same bytes (keys come
URL-encoded in listings and are decoded with ``unquote_plus``; an ``Expires``
that is not an HTTP date is dropped), so the two paths give the same result.
"""
from __future__ import annotations

import datetime as dt
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import unquote_plus, urlencode
from xml.etree import ElementTree
from html import escape   # not xml.sax.saxutils, which loads urllib.request (20 ms)

from pipeline import errors
from pipeline.store import ObjectAttributes, ObjectInfo

_HEADER_NAMES = {"CacheControl": "Cache-Control", "ContentDisposition": "Content-Disposition",
                 "ContentEncoding": "Content-Encoding", "ContentLanguage": "Content-Language",
                 "Expires": "Expires", "WebsiteRedirectLocation": "x-amz-website-redirect-location"}
_META = "x-amz-meta-"


def attribute_headers(attrs: ObjectAttributes) -> dict | None:
    """HTTP headers carrying ``attrs``; None when a value cannot travel as a plain header."""
    headers = {}
    for name, value in attrs.headers.items():
        headers[_HEADER_NAMES[name]] = format_datetime(value, usegmt=True) if name == "Expires" else value
    if attrs.content_type:
        headers["Content-Type"] = attrs.content_type
    for name, value in attrs.metadata.items():
        headers[f"{_META}{name}"] = value
    if attrs.tags:
        headers["x-amz-tagging"] = urlencode(attrs.tags)
    if attrs.storage_class and attrs.storage_class != "STANDARD":
        headers["x-amz-storage-class"] = attrs.storage_class
    if not all(str(v).isascii() and "\n" not in str(v) and "\r" not in str(v) for v in headers.values()):
        return None   # botocore knows how to send those
    return headers


def attributes_from_headers(headers: dict[str, str]) -> ObjectAttributes:
    """What follows an object to its copy (tags aside), from its HEAD answer's lower-cased headers."""
    copied = {}
    for name, header in _HEADER_NAMES.items():
        value = headers.get(header.lower())
        if value and name == "Expires":
            value = _http_date(value)
        if value:
            copied[name] = value
    return ObjectAttributes(content_type=headers.get("content-type"),
                            metadata={k[len(_META):]: v for k, v in headers.items() if k.startswith(_META)},
                            headers=copied, storage_class=headers.get("x-amz-storage-class"))


def _http_date(value: str) -> dt.datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.utcoffset() == dt.timedelta(0) else None


def _root(body: bytes, what: str) -> tuple[ElementTree.Element, str]:
    """The parsed document and its namespace prefix ('{…}' or '')."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:   # a proxy's error page, a truncated body
        raise errors.TransientStoreError(f"{what}: unreadable answer: {exc}") from None
    return root, root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""


def parse_listing(body: bytes, *, what: str) -> tuple[list[ObjectInfo], str | None]:
    """The objects of a ListObjectsV2 answer, and the token of the next page (None: last page)."""
    root, ns = _root(body, what)
    decode = unquote_plus if root.findtext(f"{ns}EncodingType") == "url" else str
    objects = [ObjectInfo(decode(item.findtext(f"{ns}Key")), int(item.findtext(f"{ns}Size")),
                          (item.findtext(f"{ns}ETag") or "").strip('"') or None)
               for item in root.iterfind(f"{ns}Contents")]
    if root.findtext(f"{ns}IsTruncated") != "true":
        return objects, None
    token = root.findtext(f"{ns}NextContinuationToken")
    if not token:   # ending here would silently leave the rest of the source out
        raise errors.StoreError(f"{what}: the listing is truncated but gives no continuation token")
    return objects, token


def parse_tags(body: bytes, *, what: str) -> dict:
    """The tags of a GetObjectTagging answer."""
    root, ns = _root(body, what)
    return {tag.findtext(f"{ns}Key"): tag.findtext(f"{ns}Value") or ""
            for tag in root.iter(f"{ns}Tag")}


def xml_text(body: bytes, name: str, *, what: str) -> str:
    """The text of the first ``name`` element of an answer (UploadId, ETag…); an error if absent."""
    root, ns = _root(body, what)
    found = root.findtext(f".//{ns}{name}") if root.tag != f"{ns}{name}" else root.text
    if not found:
        raise errors.StoreError(f"{what}: the answer holds no {name}")
    return found


def complete_body(parts: list[dict]) -> bytes:
    """The CompleteMultipartUpload request body: every part's number and ETag, in order."""
    listed = "".join(f"<Part><PartNumber>{p['part_number']}</PartNumber>"
                     f"<ETag>&quot;{escape(p['etag'], quote=False)}&quot;</ETag></Part>"
                     for p in sorted(parts, key=lambda p: p["part_number"]))
    return (f'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{listed}'
            f"</CompleteMultipartUpload>").encode()
